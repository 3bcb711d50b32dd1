package scenarios

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario n (docs/e2e-harness.md §12): two adapter replicas on one Redis behind the APIServices, kube-apiserver
// with --enable-aggregator-routing=true picking a replica per request from the Service's EndpointSlice. It runs only
// under e2e/replicas, which starts that control plane in a network namespace of its own and says where the
// replicas are in E2E_REPLICAS (name=address,...; all on ADAPTER_SECURE_PORT); e2e/run runs it after the others.

// The name the aggregator verifies the replicas' certificate against, whatever address it dials.
const adapterServerName = "custom-metrics-apiserver.custom-metrics.svc"

// The EndpointSlice e2e/replicas wrote (e2e/manifests/adapter-registration-replicas.yaml).
const replicaSlice = "custom-metrics-apiserver-replicas"

type replica struct{ name, address string }

func (r replica) String() string { return r.name }

func (r replica) url(path string) string {
	return "https://" + r.address + ":" + os.Getenv("ADAPTER_SECURE_PORT") + path
}

// replicasUnderTest parses E2E_REPLICAS; without it (any harness but e2e/replicas) the scenario is skipped.
func replicasUnderTest(t *testing.T) []replica {
	spec := os.Getenv("E2E_REPLICAS")
	if spec == "" {
		t.Skip("scenario n needs two replicas behind the APIServices: e2e/replicas starts them (e2e/run runs it)")
	}
	var rs []replica
	for _, item := range strings.Split(spec, ",") {
		name, address, ok := strings.Cut(item, "=")
		if !ok {
			t.Fatalf("E2E_REPLICAS=%q: want name=address,...", spec)
		}
		rs = append(rs, replica{name, address})
	}
	if len(rs) != 2 {
		t.Fatalf("E2E_REPLICAS=%q: want two replicas", spec)
	}
	return rs
}

// replicaClient verifies a replica as the aggregator does (ServerName adapterServerName against adapter-ca.crt)
// and presents pki/CERT.crt unless CERT is empty. No keep-alive: every request dials, so a killed replica is seen.
func replicaClient(cert string) (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(pkiDir, "adapter-ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("adapter-ca.crt holds no certificate")
	}
	tc := &tls.Config{RootCAs: pool, ServerName: adapterServerName, MinVersion: tls.VersionTLS12}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, cert+".crt"), filepath.Join(pkiDir, cert+".key"))
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true, Proxy: nil}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// do sends METHOD PATH (BODY) straight to the replica; with proxied, as kube-apiserver's front proxy would for a
// member of system:masters.
func (r replica) do(method, path, body string, proxied bool, headers ...string) (answer, error) {
	cert := ""
	if proxied {
		cert = "front-proxy-client"
		headers = append(headers, "X-Remote-User", "e2e-admin", "X-Remote-Group", "system:masters")
	}
	client, err := replicaClient(cert)
	if err != nil {
		return answer{}, err
	}
	return send(client, method, r.url(path), body, headers...)
}

// write POSTs VALUE at PATH to this replica as the e2e writer; anything but 200 is an error.
func (r replica) write(path, value string) error {
	a, err := r.do(http.MethodPost, path, strconv.Quote(value), false, "Authorization", "Bearer "+writerToken)
	if err != nil {
		return err
	}
	if a.code != http.StatusOK {
		return fmt.Errorf("%s: write %s = %s answered %s", r, path, value, a)
	}
	return nil
}

// serves: this replica alone answers PATH (a read of one object) with VALUE.
func (r replica) serves(path, value string) error {
	a, err := r.do(http.MethodGet, path, "", true)
	if err != nil {
		return err
	}
	if a.code != http.StatusOK {
		return fmt.Errorf("%s: GET %s answered %.500s", r, path, a)
	}
	if !strings.Contains(a.body, `"value":"`+value+`"`) {
		return fmt.Errorf("%s: GET %s answered %.500s, want value %s", r, path, a.body, value)
	}
	return nil
}

func (r replica) ready() error {
	a, err := r.do(http.MethodGet, "/readyz", "", false)
	if err != nil {
		return err
	}
	if a.code != http.StatusOK || a.body != "ok" {
		return fmt.Errorf("%s: /readyz answered %s", r, a)
	}
	return nil
}

// readsServed is this replica's count of custom.metrics.k8s.io reads answered 200 (its /metrics).
func (r replica) readsServed() (float64, error) {
	a, err := r.do(http.MethodGet, "/metrics", "", true)
	if err != nil {
		return 0, err
	}
	if a.code != http.StatusOK {
		return 0, fmt.Errorf("%s: /metrics answered %.300s", r, a)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(a.body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `group="custom.metrics.k8s.io"`) ||
			!strings.Contains(line, `code="200"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: /metrics line %q: %v", r, line, err)
		}
		sum += v
	}
	return sum, nil
}

// pid is the replica's process id: the last "PID NAME" line for it in E2E_WORKDIR/pids.
func (r replica) pid() (int, error) {
	b, err := os.ReadFile(filepath.Join(workdir, "pids"))
	if err != nil {
		return 0, err
	}
	pid := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == r.name {
			if pid, err = strconv.Atoi(f[0]); err != nil {
				return 0, err
			}
		}
	}
	if pid == 0 {
		return 0, fmt.Errorf("no %s in %s", r, filepath.Join(workdir, "pids"))
	}
	return pid, nil
}

// kill sends SIGKILL to the replica and waits until its port refuses connections.
func (r replica) kill() error {
	pid, err := r.pid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %d (%s): %w", pid, r, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.ready() == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still answers 10 s after SIGKILL", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// restart runs the replica's start script again (E2E_WORKDIR/NAME.start, written by e2e/replicas) and records
// its pid for the harness, which stops it at the end.
func (r replica) restart() error {
	cmd := exec.Command(filepath.Join(workdir, r.name+".start"))
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	f, err := os.OpenFile(filepath.Join(workdir, "pids"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%d %s\n", cmd.Process.Pid, r.name)
	return err
}

// setReady sets the replica's endpoint condition `ready` in the EndpointSlice, as the EndpointSlice controller
// does from the pod's readiness probe in a cluster (the harness has neither a kubelet nor that controller).
func setReady(t *testing.T, r replica, ready bool) error {
	s, err := cs.DiscoveryV1().EndpointSlices("custom-metrics").Get(ctx(t), replicaSlice, metav1.GetOptions{})
	if err != nil {
		return err
	}
	found := false
	for i := range s.Endpoints {
		if len(s.Endpoints[i].Addresses) == 1 && s.Endpoints[i].Addresses[0] == r.address {
			s.Endpoints[i].Conditions.Ready = &ready
			found = true
		}
	}
	if !found {
		return fmt.Errorf("no endpoint %s in EndpointSlice %s", r.address, replicaSlice)
	}
	_, err = cs.DiscoveryV1().EndpointSlices("custom-metrics").Update(ctx(t), s, metav1.UpdateOptions{})
	return err
}

// readsInARow: N reads of PATH through kube-apiserver in a row all answer "frontend=VALUE".
func readsInARow(t *testing.T, n int, path, value string) error {
	for i := range n {
		if err := wantValues(ctx(t), path, "frontend="+value); err != nil {
			return fmt.Errorf("read %d of %d: %w", i+1, n, err)
		}
	}
	return nil
}

// bothServe: N reads of PATH through kube-apiserver in a row answer VALUE, and each replica's count of answered
// reads grew meanwhile (the aggregator picks a replica per request).
func bothServe(t *testing.T, rs []replica, n int, path, value string) error {
	before := make([]float64, len(rs))
	for i, r := range rs {
		v, err := r.readsServed()
		if err != nil {
			return err
		}
		before[i] = v
	}
	if err := readsInARow(t, n, path, value); err != nil {
		return err
	}
	for i, r := range rs {
		v, err := r.readsServed()
		if err != nil {
			return err
		}
		if v <= before[i] {
			return fmt.Errorf("%s answered none of %d reads through kube-apiserver (%v reads before and after)", r, n, v)
		}
		t.Logf("%s answered %v reads meanwhile (the HPA's included)", r, v-before[i])
	}
	return nil
}

// TestN_ReplicasOnRedis: an HPA scales on a value written to one replica; killing either replica does not stop
// the HPA from reading the metric (the other serves what was written through either), and a restarted replica
// serves what was written while it was down.
func TestN_ReplicasOnRedis(t *testing.T) {
	rs := replicasUnderTest(t)
	ns := newNamespace(t, "e2e-n")
	c := ctx(t)
	write := "/write-metrics/namespaces/" + ns + "/services/frontend/requests_per_second"
	read := c2 + "/namespaces/" + ns + "/services/frontend/requests_per_second"
	checkErr(t, "both replicas are ready", func() error { return errors.Join(rs[0].ready(), rs[1].ready()) })
	checkErr(t, "apply Deployment + HPA frontend (Object metric, AverageValue 10)", func() error {
		return applyManifest(t, ns, "hpa-object-averagevalue.yaml")
	})
	checkErr(t, "write 55 to adapter-a", func() error { return rs[0].write(write, "55") })
	checkEventually(t, 10*time.Second, "adapter-b serves 55 (through Redis)", func() error { return rs[1].serves(read, "55") })
	checkEventually(t, scaleTimeout, "55 / 10 -> spec.replicas 6", func() error { return replicasIs(c, ns, "frontend", 6) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "frontend") })
	checkEventually(t, 15*time.Second, "20 reads through kube-apiserver answer 55, both replicas answering", func() error {
		return bothServe(t, rs, 20, read, "55")
	})

	for i, step := range []struct {
		value string
		want  int32
	}{{"25", 3}, {"42", 5}} {
		victim, survivor := rs[i], rs[1-i]
		checkErr(t, fmt.Sprintf("kill -9 %s", victim), victim.kill)
		checkErr(t, fmt.Sprintf("write %s to %s", step.value, survivor), func() error { return survivor.write(write, step.value) })
		checkEventually(t, scaleTimeout, fmt.Sprintf("%s dead but still listed: the HPA reads %s through %s, %s / 10 -> spec.replicas %d",
			victim, step.value, survivor, step.value, step.want), func() error { return replicasIs(c, ns, "frontend", step.want) })
		checkErr(t, fmt.Sprintf("%s marked not ready in the EndpointSlice (its failing readiness probe)", victim), func() error {
			return setReady(t, victim, false)
		})
		checkEventually(t, 15*time.Second, fmt.Sprintf("20 reads through kube-apiserver in a row answer %s (%s alone)", step.value, survivor), func() error {
			return readsInARow(t, 20, read, step.value)
		})
		checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "frontend") })
		checkErr(t, fmt.Sprintf("restart %s", victim), victim.restart)
		checkEventually(t, 60*time.Second, fmt.Sprintf("%s is ready again (/readyz)", victim), victim.ready)
		checkErr(t, fmt.Sprintf("the restarted %s serves %s, written while it was down", victim, step.value), func() error {
			return victim.serves(read, step.value)
		})
		checkErr(t, fmt.Sprintf("%s marked ready again", victim), func() error { return setReady(t, victim, true) })
		checkEventually(t, 15*time.Second, fmt.Sprintf("20 reads through kube-apiserver answer %s, both replicas answering", step.value), func() error {
			return bothServe(t, rs, 20, read, step.value)
		})
	}
}
