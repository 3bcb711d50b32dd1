// Command pushgateway pushes a counter, a gauge and a histogram with client_golang's push package, exactly as an
// application pushes to a Pushgateway, to the adapter's push endpoint (docs/wire-contract.md §4.5). The Rust test
// tests/push_clients.rs runs it and reads the values back through the custom and external metrics APIs.
//
//	pushgateway -url http://127.0.0.1:8080 -job billing -namespace shop -format protobuf -method put -value 3
package main

import (
	"flag"
	"log"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/prometheus/common/expfmt"
)

func main() {
	url := flag.String("url", "", "the gateway URL: the adapter's write port")
	job := flag.String("job", "client-golang", "the job of the grouping key")
	namespace := flag.String("namespace", "default", "the namespace label of the grouping key")
	format := flag.String("format", "protobuf", "protobuf (the push package's default) or text")
	method := flag.String("method", "put", "put (Push), post (Add) or delete (Delete)")
	value := flag.Float64("value", 1, "the counter's value; the gauge is twice it")
	flag.Parse()

	registry := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total", Help: "Requests served."}, []string{"pod"})
	requests.WithLabelValues("web-1").Add(*value)
	depth := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "queue_depth", Help: "Messages waiting.", ConstLabels: prometheus.Labels{"queue": "orders"},
	})
	depth.Set(*value * 2)
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "latency_seconds", Help: "Request latency.", Buckets: []float64{0.1, 1},
	}, []string{"pod"})
	latency.WithLabelValues("web-1").Observe(0.25)
	latency.WithLabelValues("web-1").Observe(0.5)
	registry.MustRegister(requests, depth, latency)

	pusher := push.New(*url, *job).Grouping("namespace", *namespace).Gatherer(registry)
	switch *format {
	case "protobuf":
	case "text":
		pusher = pusher.Format(expfmt.NewFormat(expfmt.TypeTextPlain))
	default:
		log.Fatalf("unknown -format %q", *format)
	}
	var err error
	switch *method {
	case "put":
		err = pusher.Push()
	case "post":
		err = pusher.Add()
	case "delete":
		err = pusher.Delete()
	default:
		log.Fatalf("unknown -method %q", *method)
	}
	if err != nil {
		log.Fatal(err)
	}
}
