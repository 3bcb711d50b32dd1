package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

var apiServices = []string{"v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"}

// apiServicesAvailable: the adapter's three APIServices are Available.
func apiServicesAvailable(c context.Context) error {
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	for _, name := range apiServices {
		u, err := dyn.Resource(gvr).Get(c, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		ok := false
		for _, cd := range conds {
			m, _ := cd.(map[string]any)
			if m["type"] == "Available" {
				ok = m["status"] == "True"
				if !ok {
					return fmt.Errorf("APIService %s: Available=%v %v: %v", name, m["status"], m["reason"], m["message"])
				}
			}
		}
		if !ok {
			return fmt.Errorf("APIService %s has no Available condition", name)
		}
	}
	return nil
}

// adapterAnswers: the adapter answers the request with WANT and "<status> <body>" matches the regex PATTERN.
func adapterAnswers(a answer, err error, want int, pattern string) error {
	if err != nil {
		return err
	}
	if a.code != want || !regexp.MustCompile(pattern).MatchString(a.String()) {
		return fmt.Errorf("answer %.1500s; want %d matching /%s/", a, want, pattern)
	}
	return nil
}

// proxied are the headers of a request forwarded by a front proxy for USER (in GROUP unless empty).
func proxied(user, group string) []string {
	h := []string{"X-Remote-User", user}
	if group != "" {
		h = append(h, "X-Remote-Group", group)
	}
	return h
}

// readPathWith42 creates pod my-pod in NS with my_custom_metric = 42 (two checks) and returns its read path.
func readPathWith42(t *testing.T, ns string) string {
	checkErr(t, "create pod my-pod", func() error { return newPod(ns, "my-pod", "my-app") })
	put(t, "/write-metrics/namespaces/"+ns+"/pods/my-pod/my_custom_metric", "42")
	return c2 + "/namespaces/" + ns + "/pods/my-pod/my_custom_metric"
}

// TestH_ReadAuthorization: kube-apiserver (RBAC) and the adapter (SubjectAccessReview for the proxied user) both
// decide reads; X-Remote-* headers count only with a front-proxy certificate.
func TestH_ReadAuthorization(t *testing.T) {
	ns := newNamespace(t, "e2e-h")
	c := ctx(t)
	readPath := readPathWith42(t, ns)
	as := func(user string) (*kubernetes.Clientset, error) {
		ic := rest.CopyConfig(cfg)
		ic.Impersonate = rest.ImpersonationConfig{UserName: user}
		return kubernetes.NewForConfig(ic)
	}
	checkErr(t, "user e2e-nobody (no RBAC) through kube-apiserver: 403 Forbidden", func() error {
		nobody, err := as("e2e-nobody")
		if err != nil {
			return err
		}
		b, err := nobody.Discovery().RESTClient().Get().RequestURI(readPath).DoRaw(c)
		if err == nil {
			return fmt.Errorf("succeeded: %s", b)
		}
		if !apierrors.IsForbidden(err) {
			return fmt.Errorf("want Forbidden, got %v", err)
		}
		return nil
	})
	checkErr(t, "bind ClusterRole custom-metrics-reader to user e2e-reader", func() error {
		t.Cleanup(func() {
			deleteQuietly(cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), "e2e-reader", metav1.DeleteOptions{}))
		})
		_, err := cs.RbacV1().ClusterRoleBindings().Create(c, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "custom-metrics-reader"},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "e2e-reader"}},
		}, metav1.CreateOptions{})
		return err
	})
	checkEventually(t, 10*time.Second, "user e2e-reader through kube-apiserver reads 42", func() error {
		reader, err := as("e2e-reader")
		if err != nil {
			return err
		}
		b, err := reader.Discovery().RESTClient().Get().RequestURI(readPath).DoRaw(c)
		if err != nil {
			return err
		}
		if !strings.Contains(jsonCompact(b), `"value":"42"`) {
			return fmt.Errorf("got %s", b)
		}
		return nil
	})
	checkErr(t, "the adapter itself denies e2e-nobody (front proxy) with the Kubernetes 403 text", func() error {
		a, err := adapterGet("front-proxy-client", readPath, proxied("e2e-nobody", "")...)
		if err := adapterAnswers(a, err, 403, ""); err != nil {
			return err
		}
		s, err := a.status()
		if err != nil {
			return err
		}
		want := `pods.custom.metrics.k8s.io "my-pod" is forbidden: User "e2e-nobody" cannot get resource "pods/my_custom_metric" in API group "custom.metrics.k8s.io" in the namespace "` + ns + `"`
		if !strings.Contains(s.Message, want) {
			return fmt.Errorf("message %q, want it to contain %q", s.Message, want)
		}
		return nil
	})
	checkErr(t, "the adapter lets e2e-reader (front proxy) read 42", func() error {
		a, err := adapterGet("front-proxy-client", readPath, proxied("e2e-reader", "")...)
		return adapterAnswers(a, err, 200, `"value": ?"42"`)
	})
	checkErr(t, "X-Remote-User/X-Remote-Group without a front-proxy certificate are ignored: anonymous, 403", func() error {
		a, err := adapterGet("", readPath, proxied("e2e-admin", "system:masters")...)
		return adapterAnswers(a, err, 403, "system:anonymous")
	})
	checkErr(t, "... also with a certificate of the cluster CA instead of the front-proxy CA: not e2e-admin, 403", func() error {
		a, err := adapterGet("kcm", readPath, proxied("e2e-admin", "system:masters")...)
		return adapterAnswers(a, err, 403, "is forbidden")
	})
	checkErr(t, "/readyz needs no authorization", func() error {
		a, err := adapterGet("", "/readyz")
		return adapterAnswers(a, err, 200, "^200 ok$")
	})
	checkErr(t, "the aggregator's availability checks pass the adapter's authentication: all three APIServices Available", func() error {
		return apiServicesAvailable(c)
	})
}

// createToken is a fresh token of ServiceAccount NS/NAME.
func createToken(c context.Context, ns, name string) (string, error) {
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(c, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// writeAnswers: the write answers WANT with a Status message containing MESSAGE, or an empty body when MESSAGE
// is empty.
func writeAnswers(token, path, value string, want int, message string) error {
	a, err := writeStatus(token, path, value)
	if err != nil {
		return err
	}
	if a.code != want {
		return fmt.Errorf("answer %s, want %d", a, want)
	}
	if message == "" {
		if a.body != "" {
			return fmt.Errorf("answer %s, want an empty body", a)
		}
		return nil
	}
	s, err := a.status()
	if err != nil {
		return err
	}
	if !strings.Contains(s.Message, message) && s.Reason != metav1.StatusReason(message) {
		return fmt.Errorf("answer %s, want a Status with %q", a, message)
	}
	return nil
}

// TestI_WriteAuthorization: bearer token -> TokenReview -> SubjectAccessReview (verb create). The example writer
// of deploy/k8s/example-writer.yaml may write pods/requests_per_second in namespace default only, so this
// scenario's pod lives in default.
func TestI_WriteAuthorization(t *testing.T) {
	ns := newNamespace(t, "e2e-i")
	c := ctx(t)
	const pod = "e2e-i-target"
	rps := "/write-metrics/namespaces/default/pods/" + pod + "/requests_per_second"
	mine := "/write-metrics/namespaces/default/pods/" + pod + "/my_custom_metric"
	checkErr(t, "create pod default/"+pod, func() error {
		t.Cleanup(func() {
			deleteQuietly(cs.CoreV1().Pods("default").Delete(context.Background(), pod, metav1.DeleteOptions{}))
		})
		return newPod("default", pod, "e2e-i")
	})
	put(t, mine, "42")
	checkErr(t, "no token: 401 Unauthorized", func() error { return writeAnswers("", rps, "7", 401, "Unauthorized") })
	checkErr(t, "an invalid token: 401 Unauthorized", func() error { return writeAnswers("not-a-token", rps, "7", 401, "Unauthorized") })
	var noRBAC string
	checkErr(t, "create ServiceAccount "+ns+"/e2e-no-rbac and a token", func() error {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "e2e-no-rbac"}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		var err error
		noRBAC, err = createToken(c, ns, "e2e-no-rbac")
		return err
	})
	checkErr(t, "a valid token without RBAC: 403 naming the user and the create verb", func() error {
		return writeAnswers(noRBAC, rps, "7", 403,
			`User "system:serviceaccount:`+ns+`:e2e-no-rbac" cannot create resource "pods/requests_per_second"`)
	})
	checkErr(t, "apply deploy/k8s/example-writer.yaml", func() error { return applyManifest(t, "", "deploy/k8s/example-writer.yaml") })
	var example string
	checkEventually(t, 15*time.Second, "the example writer may write pods/requests_per_second in default: 200", func() error {
		if example == "" {
			var err error
			if example, err = createToken(c, "default", "metrics-writer"); err != nil {
				return err
			}
		}
		return writeAnswers(example, rps, "7", 200, "")
	})
	checkErr(t, "the written value reads back through kube-apiserver", func() error {
		return wantValues(c, c2+"/namespaces/default/pods/"+pod+"/requests_per_second", pod+"=7")
	})
	checkErr(t, "the example writer may not write another metric: 403", func() error {
		return writeAnswers(example, mine, "1", 403, "Forbidden")
	})
	checkErr(t, "... nor in another namespace: 403", func() error {
		return writeAnswers(example, "/write-metrics/namespaces/"+ns+"/pods/web-a/requests_per_second", "1", 403, "Forbidden")
	})
	checkErr(t, "the refused writes changed nothing", func() error {
		return wantValues(c, c2+"/namespaces/default/pods/"+pod+"/my_custom_metric", pod+"=42")
	})
}

// TestJ_FrontProxyCARotation: a second front-proxy CA added to ConfigMap kube-system/extension-apiserver-authentication
// is trusted without restarting the adapter.
func TestJ_FrontProxyCARotation(t *testing.T) {
	ns := newNamespace(t, "e2e-j")
	c := ctx(t)
	readPath := readPathWith42(t, ns)
	pidBefore, err := adapterPID()
	if err != nil {
		t.Fatal(err)
	}
	masters := proxied("e2e-admin", "system:masters")
	checkErr(t, "before: a certificate of the new front-proxy CA chains to no trusted CA: 401", func() error {
		a, err := adapterGet("front-proxy-client-2", readPath, masters...)
		return adapterAnswers(a, err, 401, "Unauthorized")
	})
	checkErr(t, "add the new CA to extension-apiserver-authentication", func() error {
		ca2, err := os.ReadFile(filepath.Join(pkiDir, "front-proxy-ca-2.crt"))
		if err != nil {
			return err
		}
		cms := cs.CoreV1().ConfigMaps("kube-system")
		cm, err := cms.Get(c, "extension-apiserver-authentication", metav1.GetOptions{})
		if err != nil {
			return err
		}
		const key = "requestheader-client-ca-file"
		before := cm.Data[key]
		t.Cleanup(func() {
			// Take the second CA out again, so that no other scenario depends on this one.
			cm, err := cms.Get(context.Background(), "extension-apiserver-authentication", metav1.GetOptions{})
			if err == nil {
				cm.Data[key] = before
				_, err = cms.Update(context.Background(), cm, metav1.UpdateOptions{})
			}
			deleteQuietly(err)
		})
		cm.Data[key] = strings.TrimRight(before, "\n") + "\n" + string(ca2)
		_, err = cms.Update(c, cm, metav1.UpdateOptions{})
		return err
	})
	checkEventually(t, 30*time.Second, "after: the same request is trusted (system:masters) and reads 42", func() error {
		a, err := adapterGet("front-proxy-client-2", readPath, masters...)
		return adapterAnswers(a, err, 200, `"value": ?"42"`)
	})
	checkErr(t, "the original front-proxy CA still works", func() error {
		a, err := adapterGet("front-proxy-client", readPath, masters...)
		return adapterAnswers(a, err, 200, `"value": ?"42"`)
	})
	checkErr(t, "the adapter was not restarted", func() error {
		pid, err := adapterPID()
		if err != nil {
			return err
		}
		if pid != pidBefore {
			return fmt.Errorf("adapter pid %d, was %d", pid, pidBefore)
		}
		return syscall.Kill(pid, 0)
	})
}
