// Command otlp exports a gauge, a counter and a histogram with the OpenTelemetry Go SDK's OTLP/HTTP metric exporter
// (otlpmetrichttp), exactly as an instrumented application does, to the adapter's OTLP receiver
// (docs/wire-contract.md §4.7). The resource carries the Kubernetes attributes the adapter maps onto objects
// (k8s.namespace.name, k8s.pod.name). The Rust test tests/otlp_clients.rs runs it and reads the values back.
//
//	otlp -endpoint http://127.0.0.1:8080/v1/metrics -namespace shop -pod web-1 -value 3 [-gzip] [-json]
//
// Without -endpoint the exporter is configured by the standard OTEL_EXPORTER_OTLP_* environment variables only (the
// README's SDK example), and the resource by OTEL_RESOURCE_ATTRIBUTES too. With -interval the values are exported
// again at that interval until the process is stopped (the e2e HPA scenario); otherwise once, at shutdown.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

func main() {
	endpoint := flag.String("endpoint", "", "the full URL of the receiver (…/v1/metrics); empty: the OTEL_EXPORTER_OTLP_* variables")
	namespace := flag.String("namespace", "", "k8s.namespace.name of the resource (empty: none)")
	pod := flag.String("pod", "", "k8s.pod.name of the resource (empty: none)")
	value := flag.Float64("value", 1, "the gauge's value; the counter counts round(value) and the histogram observes value and 2*value")
	gauge := flag.String("gauge", "queue_depth", "the gauge's name")
	gzip := flag.Bool("gzip", false, "gzip-compress the requests")
	interval := flag.Duration("interval", 0, "export again at this interval until stopped (0: once)")
	token := flag.String("token", "", "a bearer token sent as Authorization (cluster mode)")
	flag.Parse()

	ctx := context.Background()
	var options []otlpmetrichttp.Option
	if *endpoint != "" {
		options = append(options, otlpmetrichttp.WithEndpointURL(*endpoint))
	}
	if *gzip {
		options = append(options, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	}
	if *token != "" {
		options = append(options, otlpmetrichttp.WithHeaders(map[string]string{"Authorization": "Bearer " + *token}))
	}
	exporter, err := otlpmetrichttp.New(ctx, options...)
	if err != nil {
		log.Fatal(err)
	}
	var attributes []attribute.KeyValue
	if *namespace != "" {
		attributes = append(attributes, attribute.String("k8s.namespace.name", *namespace))
	}
	if *pod != "" {
		attributes = append(attributes, attribute.String("k8s.pod.name", *pod))
	}
	// resource.Default() reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; the flags' attributes win.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attributes...))
	if err != nil {
		log.Fatal(err)
	}
	readerOptions := []sdkmetric.PeriodicReaderOption{}
	if *interval > 0 {
		readerOptions = append(readerOptions, sdkmetric.WithInterval(*interval))
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exporter, readerOptions...)),
	)
	meter := provider.Meter("custom-metrics-apiserver/e2e/clients/otlp")

	depth, err := meter.Float64Gauge(*gauge, metric.WithDescription("Messages waiting."))
	if err != nil {
		log.Fatal(err)
	}
	requests, err := meter.Int64Counter("requests", metric.WithDescription("Requests served."))
	if err != nil {
		log.Fatal(err)
	}
	latency, err := meter.Float64Histogram("latency", metric.WithUnit("s"), metric.WithDescription("Request latency."))
	if err != nil {
		log.Fatal(err)
	}
	depth.Record(ctx, *value, metric.WithAttributes(attribute.String("queue", "orders")))
	requests.Add(ctx, int64(*value+0.5))
	latency.Record(ctx, *value)
	latency.Record(ctx, 2**value)

	if *interval > 0 {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
	}
	// Shutdown exports what was recorded and reports the export's error, if any.
	shutdown, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := provider.Shutdown(shutdown); err != nil {
		log.Fatal(err)
	}
}
