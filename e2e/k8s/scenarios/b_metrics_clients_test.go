package scenarios

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cmv1beta1 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	"k8s.io/metrics/pkg/client/custom_metrics"
	"k8s.io/metrics/pkg/client/external_metrics"
)

// Scenario b: the official k8s.io/metrics clients, the ones kube-controller-manager's HPA uses, through
// kube-apiserver (docs/e2e-harness.md §6). What a full pass proves:
//   - the APIServices route custom.metrics.k8s.io (v1beta1 and v1beta2) and external.metrics.k8s.io through the
//     aggregator to the adapter (front-proxy mTLS, delegated authentication and authorization);
//   - the discovery-chosen version (custom_metrics.NewAvailableAPIsGetter, as the HPA does), a client pinned to
//     v1beta1 and one pinned to v1beta2 decode the adapter's answers into the same values;
//   - object reads carry the right describedObject, metric name, value and timestamp; metricLabelSelector
//     filters stored series (match -> value, mismatch -> NotFound);
//   - wildcard reads with a labelSelector return exactly the matching objects (pods web-a, web-b of
//     metrics-clients-pods.yaml; the selector is evaluated against the cluster's objects);
//   - root-scoped Namespace metrics and external metrics with a series selector work;
//   - unknown metrics and objects are reported as NotFound (apierrors.IsNotFound on the client side).

// The fixture, written through the adapter's write API.
const (
	svcName       = "web"
	svcMetric     = "requests_per_second" // = svcValue, no labels
	svcValue      = "55"
	labeledMetric = "latency_ms" // = labeledValue, written with ?labels=tier=gold
	labeledValue  = "250"
	labeledKey    = "tier"
	labeledMatch  = "gold"   // metricLabelSelector tier=gold   -> the value
	labeledOther  = "silver" // metricLabelSelector tier=silver -> NotFound
	podMetric     = "qps"
	nsMetric      = "work_queue" // on the scenario's Namespace object itself
	nsValue       = "5"
	extMetric     = "queue_depth"
	extLabelKey   = "queue"
	unknownMetric = "no_such_metric"
	unknownPod    = "no-such-pod"
	maxAge        = 15 * time.Minute
)

// Pods of metrics-clients-pods.yaml; selecting app=web must return exactly web-a and web-b.
var podFixture = []struct{ name, app, value string }{
	{"web-a", "web", "10"},
	{"web-b", "web", "20"},
	{"other", "other", "99"},
}

var extFixture = []struct{ queue, value string }{
	{"jobs", "7"},
	{"other", "3"},
}

var (
	gkService   = schema.GroupKind{Kind: "Service"}
	gkPod       = schema.GroupKind{Kind: "Pod"}
	gkNamespace = schema.GroupKind{Kind: "Namespace"}
)

// metricsClients are the k8s.io/metrics clients of one scenario.
type metricsClients struct {
	ns   string
	cm   custom_metrics.CustomMetricsClient // discovery-chosen version (like the HPA)
	cm1  custom_metrics.CustomMetricsClient // pinned to v1beta1
	cm2  custom_metrics.CustomMetricsClient // pinned to v1beta2
	em   external_metrics.ExternalMetricsClient
	apis custom_metrics.AvailableAPIsGetter
}

func newMetricsClients(ns string) (*metricsClients, error) {
	e := &metricsClients{ns: ns, apis: custom_metrics.NewAvailableAPIsGetter(cs.Discovery())}
	var err error
	e.cm = custom_metrics.NewForConfig(cfg, mapper, e.apis)
	if e.cm1, err = custom_metrics.NewForVersionForConfig(cfg, mapper, cmv1beta1.SchemeGroupVersion); err != nil {
		return nil, fmt.Errorf("v1beta1 client: %w", err)
	}
	if e.cm2, err = custom_metrics.NewForVersionForConfig(cfg, mapper, cmv1beta2.SchemeGroupVersion); err != nil {
		return nil, fmt.Errorf("v1beta2 client: %w", err)
	}
	if e.em, err = external_metrics.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("external metrics client: %w", err)
	}
	return e, nil
}

func TestB_MetricsClients(t *testing.T) {
	ns := newNamespace(t, "e2e-b")
	if !checkErr(t, "create the fixture pods web-a, web-b (app=web), other (app=other) and Service web", func() error {
		return applyManifest(t, ns, "metrics-clients-pods.yaml")
	}) {
		t.FailNow()
	}
	put(t, fmt.Sprintf("/write-metrics/namespaces/%s/services/%s/%s", ns, svcName, svcMetric), svcValue)
	put(t, fmt.Sprintf("/write-metrics/namespaces/%s/services/%s/%s?labels=%s=%s", ns, svcName, labeledMetric, labeledKey, labeledMatch), labeledValue)
	for _, p := range podFixture {
		put(t, fmt.Sprintf("/write-metrics/namespaces/%s/pods/%s/%s", ns, p.name, podMetric), p.value)
	}
	put(t, fmt.Sprintf("/write-metrics/namespaces/%s/metrics/%s", ns, nsMetric), nsValue)
	for _, e := range extFixture {
		put(t, fmt.Sprintf("/write-external-metrics/namespaces/%s/%s?labels=%s=%s", ns, extMetric, extLabelKey, e.queue), e.value)
	}

	e, err := newMetricsClients(ns)
	if err != nil {
		t.Fatal(err)
	}
	checkErr(t, "preferred-version", e.preferredVersion)
	checkErr(t, "object-same-value-all-versions", e.sameValueAllVersions)
	checkErr(t, "object-described-service", e.describedService)
	checkErr(t, "objects-label-selector", func() error { return e.objectsLabelSelector(e.cm) })
	checkErr(t, "objects-label-selector-v1beta1", func() error { return e.objectsLabelSelector(e.cm1) })
	checkErr(t, "metric-label-selector-match", e.metricSelectorMatch)
	checkErr(t, "metric-label-selector-mismatch-notfound", func() error {
		_, err := e.cm.NamespacedMetrics(ns).GetForObject(gkService, svcName, labeledMetric, sel(labeledKey, labeledOther))
		return wantNotFound("metricLabelSelector "+labeledKey+"="+labeledOther, labeledMetric, err)
	})
	checkErr(t, "root-scoped-namespace-metric", e.namespaceMetric)
	checkErr(t, "external-selector-one-series", e.externalSelector)
	checkErr(t, "external-all-series", e.externalAll)
	checkErr(t, "unknown-metric-notfound", func() error {
		_, err := e.cm.NamespacedMetrics(ns).GetForObject(gkService, svcName, unknownMetric, labels.Everything())
		return wantNotFound("services/"+svcName+"/"+unknownMetric, unknownMetric, err)
	})
	checkErr(t, "unknown-metric-notfound-v1beta1", func() error {
		_, err := e.cm1.NamespacedMetrics(ns).GetForObject(gkService, svcName, unknownMetric, labels.Everything())
		return wantNotFound("services/"+svcName+"/"+unknownMetric, unknownMetric, err)
	})
	checkErr(t, "unknown-object-notfound", func() error {
		_, err := e.cm.NamespacedMetrics(ns).GetForObject(gkPod, unknownPod, podMetric, labels.Everything())
		return wantNotFound("pods/"+unknownPod+"/"+podMetric, podMetric, err)
	})
}

func sel(k, v string) labels.Selector { return labels.SelectorFromSet(labels.Set{k: v}) }

func wantQuantity(what string, got resource.Quantity, want string) error {
	w := resource.MustParse(want)
	if got.Cmp(w) != 0 {
		return fmt.Errorf("%s: value %s, want %s", what, got.String(), w.String())
	}
	return nil
}

func wantFresh(what string, ts time.Time) error {
	if ts.IsZero() {
		return fmt.Errorf("%s: timestamp is zero/null", what)
	}
	if age := time.Since(ts); age > maxAge || age < -time.Minute {
		return fmt.Errorf("%s: timestamp %s is %s old (max %s)", what, ts.UTC().Format(time.RFC3339), age.Round(time.Second), maxAge)
	}
	return nil
}

// wantNotFound requires a NotFound error that names metric: kube-apiserver's own 404 for a group it does
// not serve ("the server could not find the requested resource") must not pass for the adapter's answer.
func wantNotFound(what, metric string, err error) error {
	if err == nil {
		return fmt.Errorf("%s: got a value, want NotFound", what)
	}
	if !apierrors.IsNotFound(err) {
		var s apierrors.APIStatus
		code := int32(0)
		if errors.As(err, &s) {
			code = s.Status().Code
		}
		return fmt.Errorf("%s: want NotFound, got reason %q (HTTP %d): %v", what, apierrors.ReasonForError(err), code, err)
	}
	if !strings.Contains(err.Error(), metric) {
		return fmt.Errorf("%s: NotFound does not name metric %q, so it is not the adapter's answer (APIService not routed?): %v", what, metric, err)
	}
	return nil
}

func (e *metricsClients) preferredVersion() error {
	gv, err := e.apis.PreferredVersion()
	if err != nil {
		return fmt.Errorf("discovery of custom.metrics.k8s.io: %w", err)
	}
	if gv.Group != cmv1beta2.SchemeGroupVersion.Group {
		return fmt.Errorf("preferred group version %s is not in custom.metrics.k8s.io", gv)
	}
	if gv.Version != "v1beta2" {
		return fmt.Errorf("discovery prefers %s, want v1beta2 (APIService versionPriority)", gv)
	}
	return nil
}

func (e *metricsClients) sameValueAllVersions() error {
	gv, err := e.apis.PreferredVersion()
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	clients := []struct {
		name string
		c    custom_metrics.CustomMetricsClient
	}{{"discovery(" + gv.Version + ")", e.cm}, {"v1beta1", e.cm1}, {"v1beta2", e.cm2}}
	var first *resource.Quantity
	for _, c := range clients {
		v, err := c.c.NamespacedMetrics(e.ns).GetForObject(gkService, svcName, svcMetric, labels.Everything())
		if err != nil {
			return fmt.Errorf("%s client: %w", c.name, err)
		}
		if err := wantQuantity(c.name+" client", v.Value, svcValue); err != nil {
			return err
		}
		if v.Metric.Name != svcMetric {
			return fmt.Errorf("%s client: metric name %q, want %q", c.name, v.Metric.Name, svcMetric)
		}
		if first == nil {
			first = &v.Value
		} else if first.Cmp(v.Value) != 0 {
			return fmt.Errorf("%s client read %s, first client read %s", c.name, v.Value.String(), first.String())
		}
	}
	return nil
}

func (e *metricsClients) describedService() error {
	v, err := e.cm.NamespacedMetrics(e.ns).GetForObject(gkService, svcName, svcMetric, labels.Everything())
	if err != nil {
		return err
	}
	d := v.DescribedObject
	if d.Kind != "Service" || d.Name != svcName || d.Namespace != e.ns {
		return fmt.Errorf("describedObject kind=%q namespace=%q name=%q, want Service %s/%s", d.Kind, d.Namespace, d.Name, e.ns, svcName)
	}
	if v.Metric.Name != svcMetric {
		return fmt.Errorf("metric.name %q, want %q", v.Metric.Name, svcMetric)
	}
	if v.Metric.Selector != nil && (len(v.Metric.Selector.MatchLabels) > 0 || len(v.Metric.Selector.MatchExpressions) > 0) {
		return fmt.Errorf("metric.selector %v, want none (no metricLabelSelector sent)", v.Metric.Selector)
	}
	if err := wantQuantity("value", v.Value, svcValue); err != nil {
		return err
	}
	return wantFresh("value", v.Timestamp.Time)
}

func (e *metricsClients) objectsLabelSelector(c custom_metrics.CustomMetricsClient) error {
	const hint = " [needs pods web-a, web-b (app=web) and other (app=other) and the adapter's cluster-mode label index]"
	podSel := sel("app", "web")
	l, err := c.NamespacedMetrics(e.ns).GetForObjects(gkPod, podSel, podMetric, labels.Everything())
	if err != nil {
		return fmt.Errorf("%w%s", err, hint)
	}
	want := map[string]string{}
	for _, p := range podFixture {
		if podSel.Matches(labels.Set{"app": p.app}) {
			want[p.name] = p.value
		}
	}
	got := map[string]string{}
	var names []string
	for _, it := range l.Items {
		names = append(names, it.DescribedObject.Name)
		if it.DescribedObject.Kind != "Pod" || it.DescribedObject.Namespace != e.ns {
			return fmt.Errorf("item %q: describedObject kind=%q namespace=%q, want Pod in %s", it.DescribedObject.Name, it.DescribedObject.Kind, it.DescribedObject.Namespace, e.ns)
		}
		if it.Metric.Name != podMetric {
			return fmt.Errorf("item %q: metric.name %q, want %q", it.DescribedObject.Name, it.Metric.Name, podMetric)
		}
		got[it.DescribedObject.Name] = it.Value.String()
	}
	slices.Sort(names)
	if len(l.Items) != len(want) {
		return fmt.Errorf("labelSelector app=web returned %d items %v, want exactly %d (web-a, web-b)%s", len(l.Items), names, len(want), hint)
	}
	for n, v := range want {
		g, ok := got[n]
		if !ok {
			return fmt.Errorf("labelSelector app=web returned %v, missing %s%s", names, n, hint)
		}
		if q := resource.MustParse(g); q.Cmp(resource.MustParse(v)) != 0 {
			return fmt.Errorf("pod %s: value %s, want %s", n, g, v)
		}
	}
	return nil
}

func (e *metricsClients) metricSelectorMatch() error {
	v, err := e.cm.NamespacedMetrics(e.ns).GetForObject(gkService, svcName, labeledMetric, sel(labeledKey, labeledMatch))
	if err != nil {
		return fmt.Errorf("metricLabelSelector %s=%s: %w", labeledKey, labeledMatch, err)
	}
	if err := wantQuantity("value", v.Value, labeledValue); err != nil {
		return err
	}
	s := v.Metric.Selector
	if s == nil || s.MatchLabels[labeledKey] != labeledMatch {
		return fmt.Errorf("metric.selector %v, want matchLabels {%s: %s}", s, labeledKey, labeledMatch)
	}
	return nil
}

func (e *metricsClients) namespaceMetric() error {
	v, err := e.cm.RootScopedMetrics().GetForObject(gkNamespace, e.ns, nsMetric, labels.Everything())
	if err != nil {
		return err
	}
	d := v.DescribedObject
	if d.Kind != "Namespace" || d.Name != e.ns || d.Namespace != "" {
		return fmt.Errorf("describedObject kind=%q namespace=%q name=%q, want Namespace %s (cluster-scoped)", d.Kind, d.Namespace, d.Name, e.ns)
	}
	if v.Metric.Name != nsMetric {
		return fmt.Errorf("metric.name %q, want %q", v.Metric.Name, nsMetric)
	}
	return wantQuantity("value", v.Value, nsValue)
}

func (e *metricsClients) externalSelector() error {
	want := extFixture[0]
	l, err := e.em.NamespacedMetrics(e.ns).List(extMetric, sel(extLabelKey, want.queue))
	if err != nil {
		return err
	}
	if len(l.Items) != 1 {
		return fmt.Errorf("selector %s=%s returned %d items, want exactly 1", extLabelKey, want.queue, len(l.Items))
	}
	it := l.Items[0]
	if it.MetricName != extMetric {
		return fmt.Errorf("metricName %q, want %q", it.MetricName, extMetric)
	}
	if it.MetricLabels[extLabelKey] != want.queue {
		return fmt.Errorf("metricLabels %v, want %s=%s", it.MetricLabels, extLabelKey, want.queue)
	}
	if err := wantQuantity("value", it.Value, want.value); err != nil {
		return err
	}
	return wantFresh("value", it.Timestamp.Time)
}

func (e *metricsClients) externalAll() error {
	l, err := e.em.NamespacedMetrics(e.ns).List(extMetric, labels.Everything())
	if err != nil {
		return err
	}
	got := map[string]resource.Quantity{}
	var series []string
	for _, it := range l.Items {
		q := it.MetricLabels[extLabelKey]
		got[q] = it.Value
		series = append(series, fmt.Sprintf("{%s=%s}=%s", extLabelKey, q, it.Value.String()))
	}
	if len(l.Items) != len(extFixture) || len(got) != len(extFixture) {
		return fmt.Errorf("got series %s, want %d distinct", strings.Join(series, " "), len(extFixture))
	}
	for _, w := range extFixture {
		v, ok := got[w.queue]
		if !ok {
			return fmt.Errorf("got series %s, missing %s=%s", strings.Join(series, " "), extLabelKey, w.queue)
		}
		if err := wantQuantity(extLabelKey+"="+w.queue, v, w.value); err != nil {
			return err
		}
	}
	return nil
}
