package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// TestK_DeletedObject: the values of a deleted object leave label-selected reads at once and the store after
// the grace period (--deleted-object-grace-period, 5s in the harness).
func TestK_DeletedObject(t *testing.T) {
	ns := newNamespace(t, "e2e-k")
	c := ctx(t)
	wild := c2 + "/namespaces/" + ns + "/pods/*/load?labelSelector=app%3Ddoomed"
	checkErr(t, "create pods doomed (app=doomed) and survivor", func() error {
		if err := newPod(ns, "doomed", "doomed"); err != nil {
			return err
		}
		return newPod(ns, "survivor", "survivor")
	})
	put(t, "/write-metrics/namespaces/"+ns+"/pods/doomed/load", "3")
	put(t, "/write-metrics/namespaces/"+ns+"/pods/survivor/load", "8")
	checkEventually(t, 10*time.Second, "wildcard app=doomed lists doomed", func() error { return wantValues(c, wild, "doomed=3") })
	checkErr(t, "delete pod doomed (and see it gone)", func() error {
		if err := cs.CoreV1().Pods(ns).Delete(c, "doomed", metav1.DeleteOptions{}); err != nil {
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := cs.CoreV1().Pods(ns).Get(c, "doomed", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pod doomed still there after 30s (%v)", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	checkEventually(t, 10*time.Second, "wildcard app=doomed is empty once the delete is seen", func() error { return wantValues(c, wild) })
	checkEventually(t, 30*time.Second, "after the grace period the value itself is gone (NotFound)", func() error {
		return rawNotFound(c, c2+"/namespaces/"+ns+"/pods/doomed/load", "load")
	})
	checkErr(t, "objects that exist keep their values", func() error {
		return wantValues(c, c2+"/namespaces/"+ns+"/pods/survivor/load", "survivor=8")
	})
}

// TestL_DiscoveryWithValues: once a value is stored, kube-apiserver's aggregated discovery lists our group with
// synthesized parent resources whose "verbs" is null; the adapter's own discovery (refreshed every 3 s in the
// harness) must keep working, or resources created afterwards are never learned, and namespace deletion
// (which needs every group's discovery) must complete.
func TestL_DiscoveryWithValues(t *testing.T) {
	ns := newNamespace(t, "e2e-l")
	c := ctx(t)
	checkErr(t, "create Deployment frontend (0 replicas)", func() error { return newDeployment(c, ns, "frontend", 0) })
	put(t, "/write-metrics/namespaces/"+ns+"/deployments.apps/frontend/queue_depth", "4")
	checkErr(t, "APIServices Available with values stored", func() error { return apiServicesAvailable(c) })
	checkEventually(t, 30*time.Second, "kube-apiserver's aggregated discovery lists a custom.metrics.k8s.io resource with verbs null", func() error {
		d, err := getAggregatedDiscovery(t)
		if err != nil {
			return err
		}
		for _, g := range d.Items {
			if g.Metadata.Name != "custom.metrics.k8s.io" {
				continue
			}
			for _, v := range g.Versions {
				for _, r := range v.Resources {
					if r.Verbs == nil {
						return nil
					}
				}
			}
		}
		return fmt.Errorf("no custom.metrics.k8s.io resource with verbs null in %+v", d.Items)
	})
	// Two refresh periods of the adapter (3 s) with that document in place.
	time.Sleep(7 * time.Second)
	checkErr(t, "create CRD widgets.e2e.example.com", func() error { return applyManifest(t, "", "crd-widgets.yaml") })
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	checkEventually(t, 30*time.Second, "the CRD is Established", func() error {
		u, err := dyn.Resource(crds).Get(c, "widgets.e2e.example.com", metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, cd := range conds {
			if m, _ := cd.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("not Established: %v", conds)
	})
	widgets := schema.GroupVersionResource{Group: "e2e.example.com", Version: "v1", Resource: "widgets"}
	checkEventually(t, 30*time.Second, "create Widget w1", func() error {
		w := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "e2e.example.com/v1", "kind": "Widget", "metadata": map[string]any{"name": "w1", "namespace": ns},
		}}
		_, err := dyn.Resource(widgets).Namespace(ns).Create(c, w, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	checkEventually(t, 30*time.Second, "a value on widgets.e2e.example.com/w1 is accepted (the adapter learned the CRD)", func() error {
		return writeMetric("/write-metrics/namespaces/"+ns+"/widgets.e2e.example.com/w1/load", "5")
	})
	checkErr(t, "it reads back through kube-apiserver with describedObject Widget e2e.example.com/v1", func() error {
		path := c2 + "/namespaces/" + ns + "/widgets.e2e.example.com/w1/load"
		var l metricValueList
		if err := rawJSON(c, path, &l); err != nil {
			return err
		}
		if len(l.Items) != 1 {
			return fmt.Errorf("GET %s: %+v", path, l)
		}
		i := l.Items[0]
		if i.Value != "5" || i.DescribedObject.Kind != "Widget" || i.DescribedObject.APIVersion != "e2e.example.com/v1" || i.DescribedObject.Name != "w1" {
			return fmt.Errorf("GET %s: item %+v", path, i)
		}
		return nil
	})
	checkErr(t, "the adapter logged no failed discovery refresh", func() error {
		log, err := adapterLog()
		if err != nil {
			return err
		}
		re := regexp.MustCompile(`API discovery (failed|after an unknown resource name failed)|periodic API discovery failed`)
		for _, line := range strings.Split(log, "\n") {
			if re.MatchString(line) {
				return fmt.Errorf("adapter.log: %s", line)
			}
		}
		return nil
	})
	checkErr(t, "the adapter's /readyz?verbose names the groups it skipped", func() error {
		a, err := adapterGet("", "/readyz?verbose")
		return adapterAnswers(a, err, 200, `discovery ok: skipped groups: .*custom\.metrics\.k8s\.io \(not needed\)`)
	})
	// What kubectl api-resources does: every group's discovery, none failing.
	checkErr(t, "discovery of every group (kubectl api-resources) reports no error (and lists widgets)", func() error {
		dc, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			return err
		}
		_, lists, err := dc.ServerGroupsAndResources()
		if err != nil {
			return err
		}
		for _, l := range lists {
			if l.GroupVersion == "e2e.example.com/v1" && slices.ContainsFunc(l.APIResources, func(r metav1.APIResource) bool { return r.Name == "widgets" }) {
				return nil
			}
		}
		return fmt.Errorf("widgets not listed")
	})
	var doomed string
	checkErr(t, "create a namespace with pod victim", func() error {
		n, err := cs.CoreV1().Namespaces().Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-l-doomed-"}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		doomed = n.Name
		t.Cleanup(func() {
			deleteQuietly(cs.CoreV1().Namespaces().Delete(context.Background(), doomed, metav1.DeleteOptions{}))
		})
		return newPod(doomed, "victim", "victim")
	})
	put(t, "/write-metrics/namespaces/"+doomed+"/pods/victim/load", "1")
	put(t, "/write-metrics/namespaces/"+doomed+"/metrics/load", "1")
	checkErr(t, "delete the namespace", func() error { return cs.CoreV1().Namespaces().Delete(c, doomed, metav1.DeleteOptions{}) })
	checkEventually(t, 60*time.Second, "the namespace deletes completely while the adapter is up", func() error {
		n, err := cs.CoreV1().Namespaces().Get(c, doomed, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var conds []string
		for _, cd := range n.Status.Conditions {
			conds = append(conds, fmt.Sprintf("%s=%s %s: %s", cd.Type, cd.Status, cd.Reason, cd.Message))
		}
		return fmt.Errorf("namespace %s is %s; %s", doomed, n.Status.Phase, strings.Join(conds, "; "))
	})
}

// TestM_UnauthenticatedBounded: every distinct anonymous path would cost a SubjectAccessReview and every 401 a log
// line; both are rate-limited (--anonymous-authorization-rate, --unauthorized-log-rate, 10/s by default).
func TestM_UnauthenticatedBounded(t *testing.T) {
	scenario(t)
	// burst: N requests to distinct paths PREFIX0..PREFIX(N-1) straight to the adapter over one connection;
	// returns how many got each status code.
	burst := func(n int, prefix string, headers ...string) (map[int]int, error) {
		client, err := adapterClient("")
		if err != nil {
			return nil, err
		}
		codes := map[int]int{}
		for i := range n {
			a, err := adapterDo(client, http.MethodGet, prefix+strconv.Itoa(i), "", headers...)
			if err != nil {
				return nil, err
			}
			codes[a.code]++
		}
		return codes, nil
	}
	checkErr(t, "60 anonymous requests on distinct paths: 403 within the review rate, 429 beyond it", func() error {
		codes, err := burst(60, "/anonymous-burst/")
		if err != nil {
			return err
		}
		if codes[403] == 0 || codes[429] == 0 || codes[403]+codes[429] != 60 {
			return fmt.Errorf("status codes %v, want 403s and 429s only", codes)
		}
		return nil
	})
	checkErr(t, "the 429 is a TooManyRequests Status with Retry-After", func() error {
		a, err := adapterGet("", "/anonymous-burst/x")
		if err != nil {
			return err
		}
		ra, err := strconv.Atoi(a.header.Get("Retry-After"))
		if a.code != 429 || err != nil || ra < 1 {
			return fmt.Errorf("answer %s, Retry-After %q", a, a.header.Get("Retry-After"))
		}
		s, err := a.status()
		if err != nil {
			return err
		}
		if s.Code != 429 || s.Reason != metav1.StatusReasonTooManyRequests {
			return fmt.Errorf("Status code %d reason %q", s.Code, s.Reason)
		}
		return nil
	})
	unauthorizedLines := func() (int, error) {
		log, err := adapterLog()
		return strings.Count(log, "unable to authenticate the request"), err
	}
	checkErr(t, "100 401s in a burst write fewer than 60 log lines, a later one counting those left out", func() error {
		before, err := unauthorizedLines()
		if err != nil {
			return err
		}
		codes, err := burst(100, c2+"/namespaces/default/pods/my-pod/m", "Authorization", "Bearer not-a-token")
		if err != nil {
			return err
		}
		if codes[401] != 100 {
			return fmt.Errorf("status codes %v, want 100 401s", codes)
		}
		time.Sleep(1200 * time.Millisecond)
		if _, err := writeStatus("not-a-token", "/write-metrics/namespaces/default/pods/my-pod/m", "1"); err != nil {
			return err
		}
		after, err := unauthorizedLines()
		if err != nil {
			return err
		}
		t.Logf("401 log lines: %d for 101 401s", after-before)
		if after-before >= 60 {
			return fmt.Errorf("%d log lines for 101 401s", after-before)
		}
		log, _ := adapterLog()
		lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
		lines = lines[max(0, len(lines)-200):]
		re := regexp.MustCompile(`"suppressed":[1-9]`)
		for _, l := range lines {
			if strings.Contains(l, "unable to authenticate") && re.MatchString(l) {
				return nil
			}
		}
		return fmt.Errorf("no 'unable to authenticate' line with a suppressed count in the last 200 log lines")
	})
	checkErr(t, "/readyz still answers", func() error {
		a, err := adapterGet("", "/readyz")
		return adapterAnswers(a, err, 200, "^200 ok$")
	})
}
