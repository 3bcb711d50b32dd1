// Command cmclient is the conformance client of the end-to-end suite: it reads metrics from the adapter
// through a real kube-apiserver (aggregation layer) with the official k8s.io/metrics clients, the same
// clients kube-controller-manager's HPA uses.
//
// What a full pass proves:
//   - the APIServices route custom.metrics.k8s.io (v1beta1 and v1beta2) and external.metrics.k8s.io
//     through the aggregator to the adapter (front-proxy mTLS, delegated authn/authz);
//   - the discovery-chosen version (custom_metrics.NewAvailableAPIsGetter, as the HPA does), a client
//     pinned to v1beta1 and one pinned to v1beta2 decode the adapter's answers into the same values;
//   - object reads carry the right describedObject, metric name, value and timestamp; metricLabelSelector
//     filters stored series (match -> value, mismatch -> NotFound);
//   - wildcard reads with a labelSelector return exactly the matching objects;
//   - root-scoped Namespace metrics and external metrics with a series selector work;
//   - unknown metrics and objects are reported as NotFound (apierrors.IsNotFound on the client side).
//
// Usage: KUBECONFIG=admin.kubeconfig cmclient [-run REGEXP] [-list] [-print-writes] ...
// Each check prints "PASS name" or "FAIL name: reason"; the last line is "N passed, N failed".
// Exit status: 0 all passed, 1 a check failed (or kube-apiserver unreachable), 2 usage error.
//
// The fixture (below) must be written through the adapter's write API before cmclient runs;
// "cmclient -print-writes" prints the writes as "POST <path> <value>" lines. The objects need not exist
// in the cluster for object reads (the adapter serves stored values), except for the wildcard
// (labelSelector) checks: the pods of podFixture must exist in namespace fixtureNamespace with their
// labels, because the selector is evaluated against the cluster's objects.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	cmv1beta1 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	"k8s.io/metrics/pkg/client/custom_metrics"
	"k8s.io/metrics/pkg/client/external_metrics"
)

// ---------------------------------------------------------------------------------------------------
// Fixture: what the harness writes through the adapter's write API before running cmclient.

const fixtureNamespace = "e2e"

// Service web in namespace e2e.
const (
	svcName       = "web"
	svcMetric     = "requests_per_second" // = svcValue, no labels
	svcValue      = "55"
	labeledMetric = "latency_ms" // = labeledValue, written with ?labels=tier=gold
	labeledValue  = "250"
	labeledKey    = "tier"
	labeledMatch  = "gold"   // metricLabelSelector tier=gold   -> the value
	labeledOther  = "silver" // metricLabelSelector tier=silver -> NotFound
)

// Pods in namespace e2e, metric qps. For the wildcard check these pods must also exist in the cluster
// with these labels; selecting app=web must return exactly web-a and web-b.
const (
	podMetric   = "qps"
	podSelector = "app=web" // must equal podSel below
)

var podFixture = []struct{ name, app, value string }{
	{"web-a", "web", "10"},
	{"web-b", "web", "20"},
	{"other", "other", "99"},
}

// Metric on the (cluster-scoped) Namespace object e2e itself.
const (
	nsMetric = "work_queue"
	nsValue  = "5"
)

// External metric queue_depth in namespace e2e, two series.
const (
	extMetric   = "queue_depth"
	extLabelKey = "queue"
)

var extFixture = []struct{ queue, value string }{
	{"jobs", "7"},
	{"other", "3"},
}

// Names that are never written.
const (
	unknownMetric = "no_such_metric"
	unknownPod    = "no-such-pod"
)

// printWrites prints the fixture as write-API requests (paths per docs/wire-contract.md §4.1 and §10 items 1, 11).
func printWrites() {
	ns := fixtureNamespace
	fmt.Printf("POST /write-metrics/namespaces/%s/services/%s/%s %s\n", ns, svcName, svcMetric, svcValue)
	fmt.Printf("POST /write-metrics/namespaces/%s/services/%s/%s?labels=%s=%s %s\n", ns, svcName, labeledMetric, labeledKey, labeledMatch, labeledValue)
	for _, p := range podFixture {
		fmt.Printf("POST /write-metrics/namespaces/%s/pods/%s/%s %s\n", ns, p.name, podMetric, p.value)
	}
	fmt.Printf("POST /write-metrics/namespaces/%s/metrics/%s %s\n", ns, nsMetric, nsValue)
	for _, e := range extFixture {
		fmt.Printf("POST /write-external-metrics/namespaces/%s/%s?labels=%s=%s %s\n", ns, extMetric, extLabelKey, e.queue, e.value)
	}
}

// ---------------------------------------------------------------------------------------------------
// Runner.

type env struct {
	cm            custom_metrics.CustomMetricsClient // discovery-chosen version (like the HPA)
	cm1           custom_metrics.CustomMetricsClient // pinned to v1beta1
	cm2           custom_metrics.CustomMetricsClient // pinned to v1beta2
	em            external_metrics.ExternalMetricsClient
	apis          custom_metrics.AvailableAPIsGetter
	wantPreferred string
	maxAge        time.Duration
}

type check struct {
	name string
	fn   func(*env) error
}

var checks = []check{
	{"preferred-version", checkPreferredVersion},
	{"object-same-value-all-versions", checkSameValueAllVersions},
	{"object-described-service", checkDescribedService},
	{"objects-label-selector", checkObjectsLabelSelector},
	{"objects-label-selector-v1beta1", checkObjectsLabelSelectorV1beta1},
	{"metric-label-selector-match", checkMetricSelectorMatch},
	{"metric-label-selector-mismatch-notfound", checkMetricSelectorMismatch},
	{"root-scoped-namespace-metric", checkNamespaceMetric},
	{"external-selector-one-series", checkExternalSelector},
	{"external-all-series", checkExternalAll},
	{"unknown-metric-notfound", checkUnknownMetric},
	{"unknown-metric-notfound-v1beta1", checkUnknownMetricV1beta1},
	{"unknown-object-notfound", checkUnknownObject},
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "admin kubeconfig of kube-apiserver (default $KUBECONFIG)")
	run := flag.String("run", "", "run only the checks whose name matches this regular expression")
	list := flag.Bool("list", false, "list the check names and exit")
	writes := flag.Bool("print-writes", false, "print the fixture as write-API requests (POST <path> <value>) and exit")
	wantPreferred := flag.String("want-preferred", "v1beta2", "custom.metrics.k8s.io version discovery must prefer (empty: accept any)")
	maxAge := flag.Duration("max-age", 15*time.Minute, "maximum accepted age of a metric timestamp")
	timeout := flag.Duration("timeout", 10*time.Second, "timeout of each request")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: KUBECONFIG=admin.kubeconfig %s [flags]\n\nChecks the adapter through kube-apiserver with the k8s.io/metrics clients.\n\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *writes {
		printWrites()
		return
	}
	filter, err := regexp.Compile(*run)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cmclient: bad -run: %v\n", err)
		os.Exit(2)
	}
	var selected []check
	for _, c := range checks {
		if filter.MatchString(c.name) {
			selected = append(selected, c)
		}
	}
	if *list {
		for _, c := range selected {
			fmt.Println(c.name)
		}
		return
	}
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "cmclient: no kubeconfig: set KUBECONFIG or -kubeconfig")
		os.Exit(2)
	}

	e, err := setup(*kubeconfig, *timeout)
	if err != nil {
		fmt.Printf("FAIL setup: %v\n", err)
		fmt.Println("0 passed, 1 failed")
		os.Exit(1)
	}
	e.wantPreferred = *wantPreferred
	e.maxAge = *maxAge

	passed, failed := 0, 0
	for _, c := range selected {
		if err := c.fn(e); err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", c.name, err)
		} else {
			passed++
			fmt.Printf("PASS %s\n", c.name)
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

func setup(kubeconfig string, timeout time.Duration) (*env, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.Timeout = timeout
	cfg.QPS, cfg.Burst = 50, 100 // discovery for the RESTMapper alone is dozens of requests
	cfg.UserAgent = rest.DefaultKubernetesUserAgent() + " e2e-cmclient"
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Fail fast, with one clear line, when there is no cluster.
	if _, err := dc.ServerVersion(); err != nil {
		return nil, fmt.Errorf("kube-apiserver %s unreachable: %w", cfg.Host, err)
	}
	var mapper meta.RESTMapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	e := &env{apis: custom_metrics.NewAvailableAPIsGetter(dc)}
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

// ---------------------------------------------------------------------------------------------------
// Helpers.

var (
	gkService   = schema.GroupKind{Kind: "Service"}
	gkPod       = schema.GroupKind{Kind: "Pod"}
	gkNamespace = schema.GroupKind{Kind: "Namespace"}
)

func sel(k, v string) labels.Selector { return labels.SelectorFromSet(labels.Set{k: v}) }

func wantQuantity(what string, got resource.Quantity, want string) error {
	w := resource.MustParse(want)
	if got.Cmp(w) != 0 {
		return fmt.Errorf("%s: value %s, want %s", what, got.String(), w.String())
	}
	return nil
}

func (e *env) wantFresh(what string, ts time.Time) error {
	if ts.IsZero() {
		return fmt.Errorf("%s: timestamp is zero/null", what)
	}
	if age := time.Since(ts); age > e.maxAge || age < -time.Minute {
		return fmt.Errorf("%s: timestamp %s is %s old (max %s)", what, ts.UTC().Format(time.RFC3339), age.Round(time.Second), e.maxAge)
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
		return fmt.Errorf("%s: want NotFound, got reason %q (HTTP %d): %v", what, apierrors.ReasonForError(err), statusCode(err), err)
	}
	if !strings.Contains(err.Error(), metric) {
		return fmt.Errorf("%s: NotFound does not name metric %q, so it is not the adapter's answer (APIService not routed?): %v", what, metric, err)
	}
	return nil
}

func statusCode(err error) int32 {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return s.Status().Code
	}
	return 0
}

// ---------------------------------------------------------------------------------------------------
// Checks.

func checkPreferredVersion(e *env) error {
	gv, err := e.apis.PreferredVersion()
	if err != nil {
		return fmt.Errorf("discovery of custom.metrics.k8s.io: %w", err)
	}
	if gv.Group != cmv1beta2.SchemeGroupVersion.Group {
		return fmt.Errorf("preferred group version %s is not in custom.metrics.k8s.io", gv)
	}
	if e.wantPreferred != "" && gv.Version != e.wantPreferred {
		return fmt.Errorf("discovery prefers %s, want %s (APIService versionPriority)", gv, e.wantPreferred)
	}
	return nil
}

func checkSameValueAllVersions(e *env) error {
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
		v, err := c.c.NamespacedMetrics(fixtureNamespace).GetForObject(gkService, svcName, svcMetric, labels.Everything())
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

func checkDescribedService(e *env) error {
	v, err := e.cm.NamespacedMetrics(fixtureNamespace).GetForObject(gkService, svcName, svcMetric, labels.Everything())
	if err != nil {
		return err
	}
	d := v.DescribedObject
	if d.Kind != "Service" || d.Name != svcName || d.Namespace != fixtureNamespace {
		return fmt.Errorf("describedObject kind=%q namespace=%q name=%q, want Service %s/%s", d.Kind, d.Namespace, d.Name, fixtureNamespace, svcName)
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
	return e.wantFresh("value", v.Timestamp.Time)
}

func objectsLabelSelector(c custom_metrics.CustomMetricsClient) error {
	const hint = " [needs pods web-a, web-b (app=web) and other (app=other) in namespace e2e and the adapter's cluster-mode label index]"
	podSel := labels.SelectorFromSet(labels.Set{"app": "web"})
	l, err := c.NamespacedMetrics(fixtureNamespace).GetForObjects(gkPod, podSel, podMetric, labels.Everything())
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
		if it.DescribedObject.Kind != "Pod" || it.DescribedObject.Namespace != fixtureNamespace {
			return fmt.Errorf("item %q: describedObject kind=%q namespace=%q, want Pod in %s", it.DescribedObject.Name, it.DescribedObject.Kind, it.DescribedObject.Namespace, fixtureNamespace)
		}
		if it.Metric.Name != podMetric {
			return fmt.Errorf("item %q: metric.name %q, want %q", it.DescribedObject.Name, it.Metric.Name, podMetric)
		}
		got[it.DescribedObject.Name] = it.Value.String()
	}
	sort.Strings(names)
	if len(l.Items) != len(want) {
		return fmt.Errorf("labelSelector %s returned %d items %v, want exactly %d (web-a, web-b)%s", podSelector, len(l.Items), names, len(want), hint)
	}
	for n, v := range want {
		g, ok := got[n]
		if !ok {
			return fmt.Errorf("labelSelector %s returned %v, missing %s%s", podSelector, names, n, hint)
		}
		if q := resource.MustParse(g); q.Cmp(resource.MustParse(v)) != 0 {
			return fmt.Errorf("pod %s: value %s, want %s", n, g, v)
		}
	}
	return nil
}

func checkObjectsLabelSelector(e *env) error        { return objectsLabelSelector(e.cm) }
func checkObjectsLabelSelectorV1beta1(e *env) error { return objectsLabelSelector(e.cm1) }

func checkMetricSelectorMatch(e *env) error {
	v, err := e.cm.NamespacedMetrics(fixtureNamespace).GetForObject(gkService, svcName, labeledMetric, sel(labeledKey, labeledMatch))
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

func checkMetricSelectorMismatch(e *env) error {
	_, err := e.cm.NamespacedMetrics(fixtureNamespace).GetForObject(gkService, svcName, labeledMetric, sel(labeledKey, labeledOther))
	return wantNotFound("metricLabelSelector "+labeledKey+"="+labeledOther, labeledMetric, err)
}

func checkNamespaceMetric(e *env) error {
	v, err := e.cm.RootScopedMetrics().GetForObject(gkNamespace, fixtureNamespace, nsMetric, labels.Everything())
	if err != nil {
		return err
	}
	d := v.DescribedObject
	if d.Kind != "Namespace" || d.Name != fixtureNamespace || d.Namespace != "" {
		return fmt.Errorf("describedObject kind=%q namespace=%q name=%q, want Namespace %s (cluster-scoped)", d.Kind, d.Namespace, d.Name, fixtureNamespace)
	}
	if v.Metric.Name != nsMetric {
		return fmt.Errorf("metric.name %q, want %q", v.Metric.Name, nsMetric)
	}
	return wantQuantity("value", v.Value, nsValue)
}

func checkExternalSelector(e *env) error {
	want := extFixture[0]
	l, err := e.em.NamespacedMetrics(fixtureNamespace).List(extMetric, sel(extLabelKey, want.queue))
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
	return e.wantFresh("value", it.Timestamp.Time)
}

func checkExternalAll(e *env) error {
	l, err := e.em.NamespacedMetrics(fixtureNamespace).List(extMetric, labels.Everything())
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

func checkUnknownMetric(e *env) error {
	_, err := e.cm.NamespacedMetrics(fixtureNamespace).GetForObject(gkService, svcName, unknownMetric, labels.Everything())
	return wantNotFound("services/"+svcName+"/"+unknownMetric, unknownMetric, err)
}

func checkUnknownMetricV1beta1(e *env) error {
	_, err := e.cm1.NamespacedMetrics(fixtureNamespace).GetForObject(gkService, svcName, unknownMetric, labels.Everything())
	return wantNotFound("services/"+svcName+"/"+unknownMetric, unknownMetric, err)
}

func checkUnknownObject(e *env) error {
	_, err := e.cm.NamespacedMetrics(fixtureNamespace).GetForObject(gkPod, unknownPod, podMetric, labels.Everything())
	return wantNotFound("pods/"+unknownPod+"/"+podMetric, podMetric, err)
}
