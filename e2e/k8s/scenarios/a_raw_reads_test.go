package scenarios

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// aggregatedDiscovery is kube-apiserver's /apis as apidiscovery.k8s.io/v2 (what kubectl uses).
type aggregatedDiscovery struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Versions []struct {
			Version   string `json:"version"`
			Freshness string `json:"freshness"`
			Resources []struct {
				Resource string   `json:"resource"`
				Verbs    []string `json:"verbs"`
			} `json:"resources"`
		} `json:"versions"`
	} `json:"items"`
}

func getAggregatedDiscovery(t *testing.T) (aggregatedDiscovery, error) {
	var d aggregatedDiscovery
	b, err := cs.Discovery().RESTClient().Get().AbsPath("/apis").
		SetHeader("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList").DoRaw(ctx(t))
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	return d, nil
}

// TestA_RawReads: reads through kube-apiserver (aggregator -> adapter), as kubectl get --raw does.
func TestA_RawReads(t *testing.T) {
	ns := newNamespace(t, "e2e-a")
	checkErr(t, "create the README's pod my-pod", func() error { return newPod(ns, "my-pod", "my-app") })
	// The README's flow.
	put(t, "/write-metrics/namespaces/"+ns+"/pods/my-pod/my_custom_metric", "42")
	put(t, "/write-metrics/namespaces/"+ns+"/pods/my-pod/requests_per_second", "100")
	put(t, "/write-external-metrics/namespaces/"+ns+"/queue_depth?labels=queue=jobs", "7")
	put(t, "/write-external-metrics/namespaces/"+ns+"/queue_depth?labels=queue=other", "3")

	checkErr(t, "/apis lists custom.metrics.k8s.io with versions [v1beta2, v1beta1], preferred v1beta2", func() error {
		var l metav1.APIGroupList
		if err := rawJSON(ctx(t), "/apis", &l); err != nil {
			return err
		}
		var got []string
		for _, g := range l.Groups {
			if g.Name == "custom.metrics.k8s.io" {
				var vs []string
				for _, v := range g.Versions {
					vs = append(vs, v.Version)
				}
				got = append(got, g.PreferredVersion.Version+" "+strings.Join(vs, ","))
			}
		}
		if !slices.Equal(got, []string{"v1beta2 v1beta2,v1beta1"}) {
			return fmt.Errorf("custom.metrics.k8s.io (preferred versions): %q", got)
		}
		return nil
	})
	checkErr(t, "/apis lists external.metrics.k8s.io v1beta1", func() error {
		var l metav1.APIGroupList
		if err := rawJSON(ctx(t), "/apis", &l); err != nil {
			return err
		}
		var got []string
		for _, g := range l.Groups {
			if g.Name == "external.metrics.k8s.io" {
				got = append(got, g.PreferredVersion.GroupVersion)
			}
		}
		if !slices.Equal(got, []string{"external.metrics.k8s.io/v1beta1"}) {
			return fmt.Errorf("external.metrics.k8s.io preferred: %q", got)
		}
		return nil
	})
	for _, v := range []string{"v1beta1", "v1beta2"} {
		checkErr(t, "discovery /apis/custom.metrics.k8s.io/"+v+" lists pods/my_custom_metric and pods/requests_per_second", func() error {
			var l metav1.APIResourceList
			if err := rawJSON(ctx(t), "/apis/custom.metrics.k8s.io/"+v, &l); err != nil {
				return err
			}
			if l.Kind != "APIResourceList" || l.GroupVersion != "custom.metrics.k8s.io/"+v {
				return fmt.Errorf("kind %q groupVersion %q", l.Kind, l.GroupVersion)
			}
			for _, n := range []string{"pods/my_custom_metric", "pods/requests_per_second"} {
				if !slices.ContainsFunc(l.APIResources, func(r metav1.APIResource) bool {
					return r.Name == n && r.Namespaced && r.Kind == "MetricValueList" && slices.Equal(r.Verbs, []string{"get"})
				}) {
					return fmt.Errorf("no namespaced MetricValueList resource %s with verbs [get] in %+v", n, l.APIResources)
				}
			}
			return nil
		})
	}
	checkErr(t, "discovery "+e1+" lists queue_depth", func() error {
		var l metav1.APIResourceList
		if err := rawJSON(ctx(t), e1, &l); err != nil {
			return err
		}
		if l.GroupVersion != "external.metrics.k8s.io/v1beta1" || !slices.ContainsFunc(l.APIResources, func(r metav1.APIResource) bool {
			return r.Name == "queue_depth" && r.Kind == "ExternalMetricValueList"
		}) {
			return fmt.Errorf("groupVersion %q, resources %+v", l.GroupVersion, l.APIResources)
		}
		return nil
	})
	// kube-apiserver's aggregated discovery (what kubectl uses) has fetched the adapter's discovery documents.
	checkEventually(t, 30*time.Second, "aggregated discovery /apis (apidiscovery.k8s.io/v2) has custom.metrics.k8s.io v1beta2+v1beta1, not Stale", func() error {
		d, err := getAggregatedDiscovery(t)
		if err != nil {
			return err
		}
		var got []string
		for _, g := range d.Items {
			if g.Metadata.Name == "custom.metrics.k8s.io" {
				for _, v := range g.Versions {
					f := v.Freshness
					if f == "" {
						f = "Current"
					}
					got = append(got, v.Version+"/"+f)
				}
			}
		}
		if !slices.Equal(got, []string{"v1beta2/Current", "v1beta1/Current"}) {
			return fmt.Errorf("custom.metrics.k8s.io versions/freshness %q", got)
		}
		return nil
	})

	for _, v := range []string{"v1beta1", "v1beta2"} {
		checkErr(t, v+" pod by name: my-pod my_custom_metric = 42", func() error {
			var l metricValueList
			if err := rawJSON(ctx(t), "/apis/custom.metrics.k8s.io/"+v+"/namespaces/"+ns+"/pods/my-pod/my_custom_metric", &l); err != nil {
				return err
			}
			if l.Kind != "MetricValueList" || l.APIVersion != "custom.metrics.k8s.io/"+v || len(l.Items) != 1 {
				return fmt.Errorf("%+v", l)
			}
			i := l.Items[0]
			if (v == "v1beta1" && i.MetricName != "my_custom_metric") || (v == "v1beta2" && i.Metric.Name != "my_custom_metric") ||
				i.Value != "42" || i.DescribedObject.Kind != "Pod" || i.DescribedObject.Namespace != ns || i.DescribedObject.Name != "my-pod" {
				return fmt.Errorf("item %+v", i)
			}
			return nil
		})
	}
	for _, v := range []string{"v1beta1", "v1beta2"} {
		checkErr(t, v+" pods/* my_custom_metric = [my-pod 42]", func() error {
			return wantItems("/apis/custom.metrics.k8s.io/"+v+"/namespaces/"+ns+"/pods/*/my_custom_metric", t, "my-pod my_custom_metric 42")
		})
	}
	for _, v := range []string{"v1beta2", "v1beta1"} {
		checkErr(t, v+" my-pod requests_per_second = 100 (README)", func() error {
			return wantItems("/apis/custom.metrics.k8s.io/"+v+"/namespaces/"+ns+"/pods/my-pod/requests_per_second", t, "my-pod requests_per_second 100")
		})
	}
	for _, v := range []string{"v1beta1", "v1beta2"} {
		checkErr(t, v+" per-object listing pods/my-pod/ = both metrics", func() error {
			path := "/apis/custom.metrics.k8s.io/" + v + "/namespaces/" + ns + "/pods/my-pod/"
			var l metricValueList
			if err := rawJSON(ctx(t), path, &l); err != nil {
				return err
			}
			var got []string
			for _, i := range l.Items {
				got = append(got, i.name()+"="+i.Value)
			}
			slices.Sort(got)
			if l.Kind != "MetricValueList" || !slices.Equal(got, []string{"my_custom_metric=42", "requests_per_second=100"}) {
				return fmt.Errorf("GET %s: kind %q, items %q", path, l.Kind, got)
			}
			return nil
		})
	}
	checkErr(t, "external queue_depth{queue=jobs} = 7 (labelSelector)", func() error {
		var l externalValueList
		if err := rawJSON(ctx(t), e1+"/namespaces/"+ns+"/queue_depth?labelSelector=queue%3Djobs", &l); err != nil {
			return err
		}
		if l.Kind != "ExternalMetricValueList" || len(l.Items) != 1 || l.Items[0].MetricName != "queue_depth" ||
			fmt.Sprint(l.Items[0].MetricLabels) != "map[queue:jobs]" || l.Items[0].Value != "7" {
			return fmt.Errorf("%+v", l)
		}
		return nil
	})
	checkErr(t, "external queue_depth, no selector = both series", func() error {
		var l externalValueList
		if err := rawJSON(ctx(t), e1+"/namespaces/"+ns+"/queue_depth", &l); err != nil {
			return err
		}
		var got []string
		for _, i := range l.Items {
			got = append(got, i.MetricLabels["queue"]+"="+i.Value)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"jobs=7", "other=3"}) {
			return fmt.Errorf("series %q", got)
		}
		return nil
	})
	checkErr(t, "unknown metric answers NotFound", func() error {
		return rawNotFound(ctx(t), c2+"/namespaces/"+ns+"/pods/my-pod/no_such_metric", "no_such_metric")
	})
}

// wantItems: PATH lists exactly the items WANT, each "object metric value".
func wantItems(path string, t *testing.T, want ...string) error {
	var l metricValueList
	if err := rawJSON(ctx(t), path, &l); err != nil {
		return err
	}
	got := []string{}
	for _, i := range l.Items {
		got = append(got, i.DescribedObject.Name+" "+i.name()+" "+i.Value)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("GET %s: items %q, want %q", path, got, want)
	}
	return nil
}
