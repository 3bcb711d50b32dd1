package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// otlpClient builds (or finds in its cache) e2e/clients/otlp, the OpenTelemetry Go SDK's OTLP/HTTP metric exporter
// (e2e/clients/build, a module of its own so that this generated one stays as generate-go-mod writes it).
func otlpClient() (string, error) {
	out, err := exec.Command(filepath.Join(repoDir, "e2e/clients/build")).Output()
	if err != nil {
		return "", fmt.Errorf("e2e/clients/build: %w", err)
	}
	scanner := bufio.NewScanner(bytes.NewReader(out))
	for scanner.Scan() {
		if bin, ok := strings.CutPrefix(scanner.Text(), "OTLP_CLIENT_BIN="); ok {
			return bin, nil
		}
	}
	return "", fmt.Errorf("e2e/clients/build printed no OTLP_CLIENT_BIN: %s", out)
}

// exportGauge exports the gauge queue.depth=VALUE with the SDK, as pod POD of namespace NS (its resource
// attributes), to the adapter's secure port as the e2e writer, trusting the adapter's CA through the standard
// OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE variable.
func exportGauge(c context.Context, client, ns, pod, value string) error {
	cmd := exec.CommandContext(c, client, "-endpoint", adapterURL+"/v1/metrics", "-token", writerToken,
		"-namespace", ns, "-pod", pod, "-gauge", "queue.depth", "-value", value)
	cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE="+filepath.Join(pkiDir, "adapter-ca.crt"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("otlp client for pod %s: %w: %s", pod, err, out)
	}
	if len(out) > 0 {
		// A partial success is logged by the SDK, which still exits 0.
		return fmt.Errorf("otlp client for pod %s reported: %s", pod, out)
	}
	return nil
}

// TestP_HPAPodsMetricOTLP: an HPA scales a Deployment on a Pods metric that the OpenTelemetry Go SDK exports over
// OTLP/HTTP with k8s.pod.name resource attributes (issue 14 item 5 (a); docs/wire-contract.md §4.7): 2 → 4 → 1.
func TestP_HPAPodsMetricOTLP(t *testing.T) {
	ns := newNamespace(t, "e2e-p")
	c := ctx(t)
	var client string
	if !checkErr(t, "build the OpenTelemetry Go SDK client (e2e/clients/build)", func() (err error) {
		client, err = otlpClient()
		return err
	}) {
		return
	}
	// exportPods exports VALUE as each otelweb pod, one SDK process per pod as each pod would.
	exportPods := func(value string) error {
		n, err := eachPod(c, ns, "otelweb", func(p string) error { return exportGauge(c, client, ns, p, value) })
		if err == nil {
			t.Logf("exported queue.depth=%s for %d pods", value, n)
		}
		return err
	}
	checkErr(t, "apply Deployment + HPA otelweb (Pods metric queue.depth)", func() error { return applyManifest(t, ns, "hpa-pods-otlp.yaml") })
	checkEventually(t, scaleTimeout, "deployment otelweb has 2 pods", func() error { return podsAre(c, ns, "otelweb", 2, false) })
	checkErr(t, "fake kubelet: mark the 2 pods Running+Ready", func() error { return fakeKubelet(c, ns, "otelweb") })
	checkErr(t, "the OTel SDK exports queue.depth = 100 as each otelweb pod", func() error { return exportPods("100") })
	checkErr(t, "the wildcard read with labelSelector app=otelweb lists the 2 pods at 100", func() error {
		return podsReadAt(c, ns, "otelweb", "queue.depth", "100", 2)
	})
	checkEventually(t, scaleTimeout, "2 pods x 100 / 50 -> spec.replicas 4", func() error { return replicasIs(c, ns, "otelweb", 4) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "otelweb") })
	// The scale-up's new pods stay Pending, and the HPA ignores them: the two running pods' values decide.
	checkErr(t, "the OTel SDK exports queue.depth = 10 as each otelweb pod", func() error { return exportPods("10") })
	checkEventually(t, scaleTimeout, "2 running pods x 10 / 50 -> spec.replicas 1", func() error { return replicasIs(c, ns, "otelweb", 1) })
}
