package scenarios

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenarios c–g: the HPA of kube-controller-manager scales Deployments on values written to the adapter
// (docs/e2e-harness.md §5). Each applies one manifest of e2e/manifests into its own namespace.

// TestC_HPAObjectAverageValue: Object metric (Service frontend, requests_per_second), AverageValue target 10:
// replicas = ceil(value / 10).
func TestC_HPAObjectAverageValue(t *testing.T) {
	ns := newNamespace(t, "e2e-c")
	c := ctx(t)
	rps := "/write-metrics/namespaces/" + ns + "/services/frontend/requests_per_second"
	checkErr(t, "apply Deployment + HPA frontend", func() error { return applyManifest(t, ns, "hpa-object-averagevalue.yaml") })
	checkEventually(t, scaleTimeout, "deployment frontend has 1 pod", func() error { return podsAre(c, ns, "frontend", 1, false) })
	put(t, rps, "10.5")
	checkEventually(t, scaleTimeout, "HPA reads 10.5 (currentMetrics averageValue 10500m), ScalingActive=True/ValidMetricFound", func() error {
		return hpaReads(c, ns, "frontend", "object", "averageValue", "10500m", false)
	})
	checkErr(t, "10.5 vs target 10 is within tolerance: stays at 1 replica", func() error { return staysAt(c, ns, "frontend", 1, 3*time.Second) })
	put(t, rps, "55")
	checkEventually(t, scaleTimeout, "55 / 10 -> spec.replicas 6", func() error { return replicasIs(c, ns, "frontend", 6) })
	checkEventually(t, scaleTimeout, "ReplicaSet created 6 pods", func() error { return podsAre(c, ns, "frontend", 6, false) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "frontend") })
	checkErr(t, "AbleToScale=True", func() error { return hpaConditionIs(c, ns, "frontend", "AbleToScale", "True", "") })
	put(t, rps, "4")
	checkEventually(t, scaleTimeout, "4 / 10 -> spec.replicas 1", func() error { return replicasIs(c, ns, "frontend", 1) })
	checkEventually(t, scaleTimeout, "scale-down deleted the pods (1 left)", func() error { return podsAre(c, ns, "frontend", 1, false) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound after scale-down", func() error { return hpaValid(c, ns, "frontend") })
}

// TestD_HPAExternalAverageValue: External metric pending_jobs{queue=jobs}, AverageValue target 5:
// replicas = ceil(sum / 5). A decoy series pending_jobs{queue=other}=1000 would push the HPA to maxReplicas if
// the selector were ignored.
func TestD_HPAExternalAverageValue(t *testing.T) {
	ns := newNamespace(t, "e2e-d")
	c := ctx(t)
	jobs := "/write-external-metrics/namespaces/" + ns + "/pending_jobs?labels=queue=jobs"
	put(t, "/write-external-metrics/namespaces/"+ns+"/pending_jobs?labels=queue=other", "1000")
	put(t, jobs, "5")
	checkErr(t, "apply Deployment + HPA worker", func() error { return applyManifest(t, ns, "hpa-external-averagevalue.yaml") })
	checkEventually(t, scaleTimeout, "HPA reads pending_jobs{queue=jobs} = 5, ScalingActive=True/ValidMetricFound", func() error {
		return hpaReads(c, ns, "worker", "external", "averageValue", "5", false)
	})
	checkErr(t, "at target: stays at 1 replica", func() error { return staysAt(c, ns, "worker", 1, 3*time.Second) })
	put(t, jobs, "27")
	checkEventually(t, scaleTimeout, "27 / 5 -> spec.replicas 6 (decoy series not counted)", func() error { return replicasIs(c, ns, "worker", 6) })
	checkEventually(t, scaleTimeout, "ReplicaSet created 6 pods", func() error { return podsAre(c, ns, "worker", 6, false) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "worker") })
	put(t, jobs, "3")
	checkEventually(t, scaleTimeout, "3 / 5 -> spec.replicas 1", func() error { return replicasIs(c, ns, "worker", 1) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound after scale-down", func() error { return hpaValid(c, ns, "worker") })
}

// TestE_HPAObjectValue: Object metric (Service api, inflight_requests), Value target 10:
// replicas = ceil(value / 10 x Running+Ready pods). The fake kubelet marks pods Running+Ready after each scale.
func TestE_HPAObjectValue(t *testing.T) {
	ns := newNamespace(t, "e2e-e")
	c := ctx(t)
	inflight := "/write-metrics/namespaces/" + ns + "/services/api/inflight_requests"
	reads := func(v string) func() error {
		return func() error { return hpaReads(c, ns, "api", "object", "value", v, true) }
	}
	checkErr(t, "apply Deployment + HPA api", func() error { return applyManifest(t, ns, "hpa-object-value.yaml") })
	checkEventually(t, scaleTimeout, "deployment api has 1 pod", func() error { return podsAre(c, ns, "api", 1, false) })
	checkErr(t, "fake kubelet: mark the pod Running+Ready", func() error { return fakeKubelet(c, ns, "api") })
	checkErr(t, "1 pod Running+Ready", func() error { return podsAre(c, ns, "api", 1, true) })
	put(t, inflight, "10")
	checkEventually(t, scaleTimeout, "HPA reads value 10, ScalingActive=True/ValidMetricFound", func() error {
		return hpaReads(c, ns, "api", "object", "value", "10", false)
	})
	checkErr(t, "at target: stays at 1 replica", func() error { return staysAt(c, ns, "api", 1, 3*time.Second) })
	// 30/10 = 3 x 1 ready pod -> 3. The 2 new pods are Pending (not ready), so the count stays 3.
	put(t, inflight, "30")
	checkEventually(t, scaleTimeout, "30 / 10 x 1 ready pod -> spec.replicas 3", func() error { return replicasIs(c, ns, "api", 3) })
	checkEventually(t, scaleTimeout, "ReplicaSet created 3 pods", func() error { return podsAre(c, ns, "api", 3, false) })
	// Back at target before the new pods become ready, so that readiness alone changes nothing.
	put(t, inflight, "10")
	checkEventually(t, scaleTimeout, "HPA reads value 10 again (3 pods)", reads("10"))
	checkErr(t, "fake kubelet: mark the 3 pods Running+Ready", func() error { return fakeKubelet(c, ns, "api") })
	checkErr(t, "3 pods Running+Ready", func() error { return podsAre(c, ns, "api", 3, true) })
	checkErr(t, "at target with 3 ready pods: stays at 3", func() error { return staysAt(c, ns, "api", 3, 3*time.Second) })
	// 20/10 = 2 x 3 ready pods -> 6 (with 1 ready pod it would be 2: the patch is what makes this exact).
	put(t, inflight, "20")
	checkEventually(t, scaleTimeout, "20 / 10 x 3 ready pods -> spec.replicas 6", func() error { return replicasIs(c, ns, "api", 6) })
	checkEventually(t, scaleTimeout, "ReplicaSet created 6 pods", func() error { return podsAre(c, ns, "api", 6, false) })
	put(t, inflight, "10")
	checkEventually(t, scaleTimeout, "HPA reads value 10 again (6 pods)", reads("10"))
	checkErr(t, "fake kubelet: mark the 6 pods Running+Ready", func() error { return fakeKubelet(c, ns, "api") })
	checkErr(t, "6 pods Running+Ready", func() error { return podsAre(c, ns, "api", 6, true) })
	checkErr(t, "at target with 6 ready pods: stays at 6", func() error { return staysAt(c, ns, "api", 6, 3*time.Second) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "api") })
}

// TestF_TTLExpiry: a value written with ttl=5s expires: reads answer NotFound, the HPA reports
// FailedGetObjectMetric and keeps its replica count (no scale-down on a missing metric).
func TestF_TTLExpiry(t *testing.T) {
	ns := newNamespace(t, "e2e-f")
	c := ctx(t)
	rps := "/write-metrics/namespaces/" + ns + "/services/ttl/requests_per_second"
	failed := func() error { return hpaConditionIs(c, ns, "ttl", "ScalingActive", "False", "FailedGetObjectMetric") }
	checkErr(t, "apply Deployment + HPA ttl", func() error { return applyManifest(t, ns, "hpa-object-ttl.yaml") })
	put(t, rps, "30")
	checkEventually(t, scaleTimeout, "30 / 10 -> spec.replicas 3", func() error { return replicasIs(c, ns, "ttl", 3) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "ttl") })
	put(t, rps+"?ttl=5s", "30")
	written := time.Now()
	checkErr(t, "before expiry the value reads 30", func() error {
		return wantValues(c, c2+"/namespaces/"+ns+"/services/ttl/requests_per_second", "ttl=30")
	})
	checkEventually(t, 20*time.Second, "after expiry the value reads NotFound", func() error {
		return rawNotFound(c, c2+"/namespaces/"+ns+"/services/ttl/requests_per_second", "requests_per_second")
	})
	t.Logf("value gone %.1fs after the ttl=5s write", time.Since(written).Seconds())
	checkEventually(t, scaleTimeout, "HPA ScalingActive=False/FailedGetObjectMetric", failed)
	checkErr(t, "no scale-down on the missing metric: stays at 3 for 5s", func() error { return staysAt(c, ns, "ttl", 3, 5*time.Second) })
	checkErr(t, "still ScalingActive=False/FailedGetObjectMetric", failed)
	checkErr(t, "a FailedGetObjectMetric event was recorded", func() error {
		l, err := cs.CoreV1().Events(ns).List(c, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=ttl,reason=FailedGetObjectMetric",
		})
		if err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return fmt.Errorf("no FailedGetObjectMetric event for hpa/ttl in %s", ns)
		}
		return nil
	})
}

// TestG_HPAPodsMetric: Pods metric with the Deployment's label selector, AverageValue target 50: the adapter
// answers the wildcard read from its label index. 2 running pods x 100 -> ceil(2 x 100/50) = 4; then 10 each -> 1.
func TestG_HPAPodsMetric(t *testing.T) {
	ns := newNamespace(t, "e2e-g")
	c := ctx(t)
	// putPods writes VALUE for every pod labelled app=podsweb.
	putPods := func(value string) error {
		n, err := eachPod(c, ns, "podsweb", func(p string) error {
			return writeMetric("/write-metrics/namespaces/"+ns+"/pods/"+p+"/requests_in_flight", value)
		})
		if err == nil {
			t.Logf("wrote requests_in_flight=%s for %d pods", value, n)
		}
		return err
	}
	checkErr(t, "apply Deployment + decoy pod + HPA podsweb", func() error { return applyManifest(t, ns, "hpa-pods-averagevalue.yaml") })
	checkEventually(t, scaleTimeout, "deployment podsweb has 2 pods", func() error { return podsAre(c, ns, "podsweb", 2, false) })
	// The HPA ignores Pending pods for Pods metrics: the fake kubelet makes these two Running (the pods created
	// by the scale-up stay Pending and are ignored, so the count stays what the two running pods' values say).
	checkErr(t, "fake kubelet: mark the 2 pods Running+Ready", func() error { return fakeKubelet(c, ns, "podsweb") })
	put(t, "/write-metrics/namespaces/"+ns+"/pods/decoy/requests_in_flight", "10000")
	checkErr(t, "every podsweb pod requests_in_flight = 100", func() error { return putPods("100") })
	checkErr(t, "the wildcard read with labelSelector app=podsweb lists exactly the 2 podsweb pods at 100", func() error {
		return podsReadAt(c, ns, "podsweb", "requests_in_flight", "100", 2)
	})
	checkEventually(t, scaleTimeout, "2 pods x 100 / 50 -> spec.replicas 4 (decoy not counted)", func() error { return replicasIs(c, ns, "podsweb", 4) })
	checkEventually(t, scaleTimeout, "ReplicaSet created 4 pods", func() error { return podsAre(c, ns, "podsweb", 4, false) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "podsweb") })
	checkErr(t, "every podsweb pod requests_in_flight = 10", func() error { return putPods("10") })
	checkEventually(t, scaleTimeout, "2 running pods x 10 / 50 -> spec.replicas 1", func() error { return replicasIs(c, ns, "podsweb", 1) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound after scale-down", func() error { return hpaValid(c, ns, "podsweb") })
}
