// Package scenarios holds the end-to-end scenarios a–m (docs/e2e-harness.md §10) as Go tests. They run against
// a control plane and an adapter started by e2e/run (or e2e/up), whose endpoints come in environment variables:
//
//	KUBECONFIG           admin kubeconfig of kube-apiserver (system:masters)
//	ADAPTER_SECURE_PORT  the adapter's HTTPS port on 127.0.0.1 (API and writes)
//	WRITER_TOKEN         a bearer token allowed to write every metric
//	E2E_WORKDIR          the harness workdir: pki/ (certificates), logs/adapter.log, pids
//	E2E_SCALE_TIMEOUT    bound of each HPA wait in seconds (default 45)
//	E2E_REPO             the repository root (default ../../.., the package directory's)
//
// Every scenario is one Test function that creates its own namespace (and any cluster-scoped object it needs)
// and removes them when it ends; every check is a subtest, so that `go test -v` reports one result per check.
package scenarios

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	c1 = "/apis/custom.metrics.k8s.io/v1beta1"
	c2 = "/apis/custom.metrics.k8s.io/v1beta2"
	e1 = "/apis/external.metrics.k8s.io/v1beta1"
)

// The harness, set up once by TestMain.
var (
	cfg          *rest.Config
	cs           *kubernetes.Clientset
	dyn          dynamic.Interface
	mapper       *restmapper.DeferredDiscoveryRESTMapper
	adapterURL   string
	writerToken  string
	workdir      string
	pkiDir       string
	repoDir      string
	scaleTimeout = 45 * time.Second
)

// statusTimeout bounds the wait for an HPA's status after a scale was seen: the controller updates the target's
// scale first and its own status after, so a check right after the scale can still read the previous sync's status.
const statusTimeout = 15 * time.Second

func TestMain(m *testing.M) {
	// Listing the scenarios (-test.list, which e2e/run does to see what E2E_RUN selects) needs no control plane.
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e scenarios: %v\n"+
			"They need the e2e control plane: run e2e/run, or start e2e/up and export the variables it prints.\n", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func setup() error {
	for _, v := range []string{"KUBECONFIG", "ADAPTER_SECURE_PORT", "WRITER_TOKEN", "E2E_WORKDIR"} {
		if os.Getenv(v) == "" {
			return fmt.Errorf("%s is not set", v)
		}
	}
	workdir = os.Getenv("E2E_WORKDIR")
	pkiDir = filepath.Join(workdir, "pki")
	adapterURL = "https://127.0.0.1:" + os.Getenv("ADAPTER_SECURE_PORT")
	writerToken = os.Getenv("WRITER_TOKEN")
	repoDir = os.Getenv("E2E_REPO")
	if repoDir == "" {
		repoDir = "../../.."
	}
	if s := os.Getenv("E2E_SCALE_TIMEOUT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("E2E_SCALE_TIMEOUT=%q: %w", s, err)
		}
		scaleTimeout = time.Duration(n) * time.Second
	}
	var err error
	if cfg, err = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG")); err != nil {
		return err
	}
	cfg.Timeout = 10 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = rest.DefaultKubernetesUserAgent() + " e2e-scenarios"
	if cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("kube-apiserver %s unreachable: %w", cfg.Host, err)
	}
	return nil
}

func ctx(t *testing.T) context.Context { return t.Context() }

// ---------------------------------------------------------------------------------------------------
// Checks.

// Every check is a subtest, and reports its result on a line of its own as soon as it ends:
// "e2e-check: PASS|FAIL <scenario letter>: <name>", which e2e/run counts (docs/e2e-harness.md §8). A scenario that
// fails outside its checks (a failed set-up) reports "FAIL <letter>: (outside its checks)" when it ends.

var failedChecks sync.Map // scenario test name -> *atomic.Int32

// scenario starts a scenario: call it first in every Test function.
func scenario(t *testing.T) {
	n := new(atomic.Int32)
	failedChecks.Store(t.Name(), n)
	t.Cleanup(func() { // registered first, so it runs after every other cleanup
		if t.Failed() && n.Load() == 0 {
			fmt.Printf("e2e-check: FAIL %s: (outside its checks, see above)\n", letter(t.Name()))
		}
	})
}

// letter is the scenario's letter: TestC_HPAObjectAverageValue -> c.
func letter(test string) string {
	if l, ok := strings.CutPrefix(test, "Test"); ok && l != "" {
		return strings.ToLower(l[:1])
	}
	return test
}

func report(t *testing.T, name string, ok bool) {
	result := "PASS"
	if !ok {
		result = "FAIL"
		if n, found := failedChecks.Load(t.Name()); found {
			n.(*atomic.Int32).Add(1)
		}
	}
	fmt.Printf("e2e-check: %s %s: %s\n", result, letter(t.Name()), name)
}

// check runs one named check as a subtest; it reports whether the check passed.
func check(t *testing.T, name string, fn func(t *testing.T)) bool {
	t.Helper()
	ok := t.Run(name, fn)
	report(t, name, ok)
	return ok
}

// checkErr is check for a check that is a function returning an error.
func checkErr(t *testing.T, name string, fn func() error) bool {
	t.Helper()
	return check(t, name, func(t *testing.T) {
		if err := fn(); err != nil {
			t.Fatal(err)
		}
	})
}

// eventually polls fn every 0.5 s until it returns nil; fails with fn's last error after within.
func eventually(t *testing.T, within time.Duration, fn func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		err := fn()
		if err == nil {
			t.Logf("true after %.1fs", time.Since(start).Seconds())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %s: %v", within, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("cancelled: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkEventually is a check that passes once fn returns nil within the bound.
func checkEventually(t *testing.T, within time.Duration, name string, fn func() error) bool {
	t.Helper()
	return check(t, name, func(t *testing.T) { eventually(t, within, fn) })
}

// ---------------------------------------------------------------------------------------------------
// Objects.

// newNamespace starts a scenario (see scenario) with a namespace named PREFIX-<random>, deleted when the test ends.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	scenario(t)
	ns, err := cs.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: map[string]string{"e2e": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s-*: %v", prefix, err)
	}
	t.Cleanup(func() {
		deleteQuietly(cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}))
	})
	t.Logf("namespace %s", ns.Name)
	return ns.Name
}

func deleteQuietly(err error) {
	if err != nil && !apierrors.IsNotFound(err) {
		fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
	}
}

// newPod creates a pod (image pause, never pulled: there is no kubelet) with the label app=APP.
func newPod(ns, name, app string) error {
	_, err := cs.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "c", Image: "pause"}},
		},
	}, metav1.CreateOptions{})
	return err
}

// manifest reads e2e/manifests/NAME (or a path relative to the repository) as unstructured objects.
func manifest(name string) ([]*unstructured.Unstructured, error) {
	path := filepath.Join(repoDir, name)
	if !strings.Contains(name, "/") {
		path = filepath.Join(repoDir, "e2e", "manifests", name)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// resourceFor maps an object's kind to its resource and tells whether it is namespaced.
func resourceFor(o *unstructured.Unstructured) (schema.GroupVersionResource, bool, error) {
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		mapper.Reset() // a CRD created since the last discovery
		if m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return schema.GroupVersionResource{}, false, err
		}
	}
	return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// apply applies the objects with server-side apply (as kubectl apply --server-side would), namespaced objects
// into NS when NS is not empty; with dryRun nothing is stored.
func apply(c context.Context, ns string, objs []*unstructured.Unstructured, dryRun bool) error {
	for _, o := range objs {
		gvr, namespaced, err := resourceFor(o)
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if namespaced {
			if ns != "" {
				o.SetNamespace(ns)
			}
			ri = dyn.Resource(gvr).Namespace(o.GetNamespace())
		}
		opts := metav1.ApplyOptions{FieldManager: "e2e-scenarios", Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Apply(c, o.GetName(), o, opts); err != nil {
			return fmt.Errorf("apply %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// applyManifest applies a manifest file into NS (see apply) and deletes what it created when the test ends.
func applyManifest(t *testing.T, ns, name string) error {
	objs, err := manifest(name)
	if err != nil {
		return err
	}
	t.Cleanup(func() {
		for _, o := range objs {
			gvr, namespaced, err := resourceFor(o)
			if err != nil {
				continue
			}
			ri := dynamic.ResourceInterface(dyn.Resource(gvr))
			if namespaced {
				ri = dyn.Resource(gvr).Namespace(o.GetNamespace())
			}
			deleteQuietly(ri.Delete(context.Background(), o.GetName(), metav1.DeleteOptions{}))
		}
	})
	return apply(context.Background(), ns, objs, false)
}

// ---------------------------------------------------------------------------------------------------
// Reads through kube-apiserver (what kubectl get --raw does).

// rawGet GETs PATH (with its query) from kube-apiserver as the admin, or as USER when impersonating.
func rawGet(c context.Context, path string) ([]byte, error) {
	return cs.Discovery().RESTClient().Get().RequestURI(path).DoRaw(c)
}

// rawJSON GETs PATH and decodes the JSON answer into v.
func rawJSON(c context.Context, path string, v any) error {
	b, err := rawGet(c, path)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: not JSON of the expected shape (%v): %.2000s", path, err, b)
	}
	return nil
}

// rawNotFound: GET PATH fails with NotFound and a Status message naming WHAT (so that kube-apiserver's own 404
// for an unrouted group does not pass for the adapter's answer).
func rawNotFound(c context.Context, path, what string) error {
	b, err := cs.Discovery().RESTClient().Get().RequestURI(path).Do(c).Raw()
	if err == nil {
		return fmt.Errorf("GET %s succeeded, want NotFound: %.500s", path, b)
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("GET %s: want NotFound, got %v", path, err)
	}
	var s metav1.Status
	if json.Unmarshal(b, &s) != nil || s.Kind != "Status" || s.Reason != metav1.StatusReasonNotFound || !strings.Contains(s.Message, what) {
		return fmt.Errorf("GET %s: want a NotFound Status naming %q, got %v: %.500s", path, what, err, b)
	}
	return nil
}

// The wire shapes of the metrics APIs, with values as the strings on the wire.
type objectRef struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	APIVersion string `json:"apiVersion"`
}

type metricValue struct {
	DescribedObject objectRef `json:"describedObject"`
	MetricName      string    `json:"metricName"` // v1beta1
	Metric          struct {
		Name string `json:"name"`
	} `json:"metric"` // v1beta2
	Value     string `json:"value"`
	Timestamp string `json:"timestamp"`
}

// name is the metric's name in either version.
func (m metricValue) name() string {
	if m.MetricName != "" {
		return m.MetricName
	}
	return m.Metric.Name
}

type metricValueList struct {
	Kind       string        `json:"kind"`
	APIVersion string        `json:"apiVersion"`
	Items      []metricValue `json:"items"`
}

type externalValueList struct {
	Kind  string `json:"kind"`
	Items []struct {
		MetricName   string            `json:"metricName"`
		MetricLabels map[string]string `json:"metricLabels"`
		Value        string            `json:"value"`
	} `json:"items"`
}

// metricValues reads PATH and returns "name=value" for every item (name being the described object's).
func metricValues(c context.Context, path string) ([]string, error) {
	var l metricValueList
	if err := rawJSON(c, path, &l); err != nil {
		return nil, err
	}
	out := []string{}
	for _, i := range l.Items {
		out = append(out, i.DescribedObject.Name+"="+i.Value)
	}
	return out, nil
}

// wantValues: PATH lists exactly WANT ("object=value", in order).
func wantValues(c context.Context, path string, want ...string) error {
	got, err := metricValues(c, path)
	if err != nil {
		return err
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("GET %s: items %v, want %v", path, got, want)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------------
// Requests straight to the adapter.

// adapterClient is an HTTPS client that verifies the adapter against adapter-ca.crt and, when CERT is not
// empty, presents pki/CERT.crt.
func adapterClient(cert string) (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(pkiDir, "adapter-ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("adapter-ca.crt holds no certificate")
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, cert+".crt"), filepath.Join(pkiDir, cert+".key"))
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, Proxy: nil}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.code, a.body) }

// status decodes the body as a Kubernetes Status.
func (a answer) status() (metav1.Status, error) {
	var s metav1.Status
	if err := json.Unmarshal([]byte(a.body), &s); err != nil || s.Kind != "Status" {
		return s, fmt.Errorf("not a Status object: %s", a)
	}
	return s, nil
}

// adapterDo sends METHOD PATH (BODY) to the adapter with CLIENT and the given headers.
func adapterDo(client *http.Client, method, path, body string, headers ...string) (answer, error) {
	return send(client, method, adapterURL+path, body, headers...)
}

// send sends METHOD URL (BODY) with CLIENT and the given headers (name, value, name, value, ...).
func send(client *http.Client, method, url, body string, headers ...string) (answer, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{resp.StatusCode, resp.Header, string(b)}, nil
}

// adapterGet GETs PATH from the adapter, presenting pki/CERT.crt unless CERT is empty.
func adapterGet(cert, path string, headers ...string) (answer, error) {
	client, err := adapterClient(cert)
	if err != nil {
		return answer{}, err
	}
	return adapterDo(client, http.MethodGet, path, "", headers...)
}

// writeStatus POSTs VALUE (a JSON quantity string) to the write API at PATH with TOKEN (none if empty).
func writeStatus(token, path, value string) (answer, error) {
	client, err := adapterClient("")
	if err != nil {
		return answer{}, err
	}
	var h []string
	if token != "" {
		h = []string{"Authorization", "Bearer " + token}
	}
	return adapterDo(client, http.MethodPost, path, strconv.Quote(value), h...)
}

// writeMetric writes VALUE at PATH as the e2e writer; anything but 200 is an error.
func writeMetric(path, value string) error {
	a, err := writeStatus(writerToken, path, value)
	if err != nil {
		return err
	}
	if a.code != http.StatusOK {
		return fmt.Errorf("write %s = %s answered %s", path, value, a)
	}
	return nil
}

// scenarioNamespace matches the namespaces the scenarios create (newNamespace, and l's second one).
var scenarioNamespace = regexp.MustCompile(`/namespaces/e2e-[a-z]-([a-z]+-)?[a-z0-9]{5}/`)

// put is a check that writes VALUE at PATH as the e2e writer. Its name says NS for the scenario's namespace, so
// that it is the same in every run.
func put(t *testing.T, path, value string) bool {
	t.Helper()
	name := "write " + scenarioNamespace.ReplaceAllString(path, "/namespaces/NS/") + " = " + value
	return checkErr(t, name, func() error { return writeMetric(path, value) })
}

// ---------------------------------------------------------------------------------------------------
// Deployments, pods and HPAs.

func replicas(c context.Context, ns, name string) (int32, error) {
	d, err := cs.AppsV1().Deployments(ns).Get(c, name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if d.Spec.Replicas == nil {
		return 0, fmt.Errorf("deployment %s has no spec.replicas", name)
	}
	return *d.Spec.Replicas, nil
}

// replicasIs: the Deployment's spec.replicas (written by the HPA) is N; the error shows the HPA's view.
func replicasIs(c context.Context, ns, name string, n int32) error {
	r, err := replicas(c, ns, name)
	if err != nil {
		return err
	}
	if r == n {
		return nil
	}
	return fmt.Errorf("deployment/%s spec.replicas=%d, want %d; %s", name, r, n, hpaView(c, ns, name))
}

func hpaView(c context.Context, ns, name string) string {
	h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(c, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hpa desiredReplicas=%d", h.Status.DesiredReplicas)
	for _, cd := range h.Status.Conditions {
		fmt.Fprintf(&b, "; %s=%s %s: %s", cd.Type, cd.Status, cd.Reason, cd.Message)
	}
	return b.String()
}

// staysAt: spec.replicas is N at every sample (every 0.5 s) for D.
func staysAt(c context.Context, ns, name string, n int32, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		r, err := replicas(c, ns, name)
		if err != nil {
			return err
		}
		if r != n {
			return fmt.Errorf("deployment/%s spec.replicas=%d, want it to stay %d; %s", name, r, n, hpaView(c, ns, name))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil
}

func podsOf(c context.Context, ns, app string) ([]corev1.Pod, error) {
	l, err := cs.CoreV1().Pods(ns).List(c, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func podReady(p corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podsAre: exactly N pods labelled app=APP exist, none being deleted; with ready, all Running with Ready=True.
func podsAre(c context.Context, ns, app string, n int, ready bool) error {
	pods, err := podsOf(c, ns, app)
	if err != nil {
		return err
	}
	var desc []string
	ok := len(pods) == n
	for _, p := range pods {
		desc = append(desc, fmt.Sprintf("%s(%s, ready=%v, deleting=%v)", p.Name, p.Status.Phase, podReady(p), p.DeletionTimestamp != nil))
		if p.DeletionTimestamp != nil || (ready && !podReady(p)) {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("pods app=%s: %v; want %d (ready: %v)", app, desc, n, ready)
	}
	return nil
}

// fakeKubelet marks every pod labelled app=APP Running and Ready (docs/e2e-harness.md §5.4).
func fakeKubelet(c context.Context, ns, app string) error {
	pods, err := podsOf(c, ns, app)
	if err != nil {
		return err
	}
	patch := []byte(`{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`)
	for _, p := range pods {
		if _, err := cs.CoreV1().Pods(ns).Patch(c, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
			return err
		}
	}
	return nil
}

// podNames: the names of the pods labelled app=APP, sorted.
func podNames(c context.Context, ns, app string) ([]string, error) {
	pods, err := podsOf(c, ns, app)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names, nil
}

// eachPod calls WRITE with the name of each pod labelled app=APP (there must be one at least), as each pod would
// write its own value; it returns how many pods there were.
func eachPod(c context.Context, ns, app string, write func(pod string) error) (int, error) {
	names, err := podNames(c, ns, app)
	if err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("no %s pods", app)
	}
	for _, p := range names {
		if err := write(p); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

// podsReadAt: the wildcard read of METRIC on the pods of NS with labelSelector app=APP lists exactly the N pods
// labelled app=APP, each at VALUE.
func podsReadAt(c context.Context, ns, app, metric, value string, n int) error {
	names, err := podNames(c, ns, app)
	if err != nil {
		return err
	}
	var want []string
	for _, name := range names {
		want = append(want, name+"="+value)
	}
	got, err := metricValues(c, c2+"/namespaces/"+ns+"/pods/*/"+metric+"?labelSelector=app%3D"+app)
	if err != nil {
		return err
	}
	slices.Sort(got)
	if len(got) != n || !slices.Equal(got, want) {
		return fmt.Errorf("items %s, want %s", strings.Join(got, " "), strings.Join(want, " "))
	}
	return nil
}

// hpaCondition is the (status, reason) of the HPA's condition TYPE, or ("", "") when it has none.
func hpaCondition(c context.Context, ns, name, typ string) (string, string, error) {
	h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(c, name, metav1.GetOptions{})
	if err != nil {
		return "", "", err
	}
	for _, cd := range h.Status.Conditions {
		if string(cd.Type) == typ {
			return string(cd.Status), cd.Reason, nil
		}
	}
	return "", "", nil
}

// hpaConditionIs: the HPA's condition TYPE has STATUS and, unless empty, REASON.
func hpaConditionIs(c context.Context, ns, name, typ, status, reason string) error {
	s, r, err := hpaCondition(c, ns, name, typ)
	if err != nil {
		return err
	}
	if s != status || (reason != "" && r != reason) {
		return fmt.Errorf("hpa %s: %s=%s/%s, want %s/%s; %s", name, typ, s, r, status, reason, hpaView(c, ns, name))
	}
	return nil
}

func hpaValid(c context.Context, ns, name string) error {
	return hpaConditionIs(c, ns, name, "ScalingActive", "True", "ValidMetricFound")
}

// hpaCurrent is the HPA's current metric values as strings (WHICH picks the field from a metric status).
func hpaCurrent(c context.Context, ns, name string, which func(m map[string]any) string) ([]string, error) {
	u, err := dyn.Resource(schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}).
		Namespace(ns).Get(c, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	ms, _, _ := unstructured.NestedSlice(u.Object, "status", "currentMetrics")
	out := []string{}
	for _, m := range ms {
		mm, _ := m.(map[string]any)
		out = append(out, which(mm))
	}
	return out, nil
}

// current picks status.currentMetrics[*].SOURCE.current.FIELD as the string on the wire.
func current(source, field string) func(m map[string]any) string {
	return func(m map[string]any) string {
		s, _, _ := unstructured.NestedString(m, source, "current", field)
		return s
	}
}

// hpaReads: the HPA is ScalingActive=True/ValidMetricFound (unless onlyValue) and its current metrics are
// exactly [WANT].
func hpaReads(c context.Context, ns, name, source, field, want string, onlyValue bool) error {
	if !onlyValue {
		if err := hpaValid(c, ns, name); err != nil {
			return err
		}
	}
	got, err := hpaCurrent(c, ns, name, current(source, field))
	if err != nil {
		return err
	}
	if len(got) != 1 || got[0] != want {
		return fmt.Errorf("hpa %s currentMetrics %s.current.%s = %q, want [%s]", name, source, field, got, want)
	}
	return nil
}

// newDeployment creates a Deployment of REPLICAS pods labelled app=NAME.
func newDeployment(c context.Context, ns, name string, n int32) error {
	labels := map[string]string{"app": name}
	_, err := cs.AppsV1().Deployments(ns).Create(c, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers:                    []corev1.Container{{Name: "c", Image: "pause"}},
				},
			},
		},
	}, metav1.CreateOptions{})
	return err
}

// ---------------------------------------------------------------------------------------------------
// Small helpers.

// adapterLog is the adapter's log so far.
func adapterLog() (string, error) {
	b, err := os.ReadFile(filepath.Join(workdir, "logs", "adapter.log"))
	return string(b), err
}

// adapterPID is the adapter's process id as recorded by the harness (E2E_WORKDIR/pids: "PID NAME" lines).
func adapterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(workdir, "pids"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == "adapter" {
			return strconv.Atoi(f[0])
		}
	}
	return 0, errors.New("no adapter in " + filepath.Join(workdir, "pids"))
}

func jsonCompact(b []byte) string {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return string(b)
	}
	return out.String()
}
