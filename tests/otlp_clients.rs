//! A real OpenTelemetry client exports to a standalone adapter (docs/wire-contract.md §4.7): the OpenTelemetry Go
//! SDK's OTLP/HTTP metric exporter (`otlpmetrichttp`, e2e/clients/otlp, built by e2e/clients/build from the Go module
//! proxy and cached outside the repository), configured by flags and, as the README shows, by the standard
//! `OTEL_*` environment variables alone; the values are read back through the custom metrics API. Skips, saying
//! why, only when `go` is missing; CI has it.

mod common;

use common::clients::go_client;
use common::start;

const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";

/// Runs the client with `args` and `env` alone of the `OTEL_*` variables it reads.
async fn run(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) {
    let output = common::clients::run(
        tokio::process::Command::new(program)
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .env_remove("OTEL_RESOURCE_ATTRIBUTES")
            .envs(env.iter().copied()),
    )
    .await;
    // The SDK logs a partial success and exits 0: the test reads what was stored, and the log says why not.
    assert!(output.stderr.is_empty(), "the client reported: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn the_opentelemetry_go_sdk_exports_gauges_counters_and_histograms() {
    let Some(client) = go_client("OTLP_CLIENT_BIN", "OpenTelemetry Go SDK") else { return };
    let server = start(&[]).await;
    let endpoint = server.write_url("/v1/metrics");
    let read = |pod: &str, metric: &str| format!("{V2}/namespaces/shop/pods/{pod}/{metric}");

    // Binary protobuf, uncompressed (the exporter's defaults).
    run(&client, &["-endpoint", &endpoint, "-namespace", "shop", "-pod", "web-1", "-value", "3"], &[]).await;
    let gauge = format!("{}?metricLabelSelector=queue%3Dorders", read("web-1", "queue_depth"));
    assert_eq!(server.first_value(&gauge).await, Ok("3".into()));
    assert_eq!(server.first_value(&read("web-1", "requests")).await, Ok("3".into()));
    assert_eq!(server.first_value(&read("web-1", "latency_count")).await, Ok("2".into()));
    assert_eq!(server.first_value(&read("web-1", "latency_sum")).await, Ok("9".into()));

    // gzip-compressed.
    let args = ["-endpoint", &endpoint, "-namespace", "shop", "-pod", "web-1", "-value", "4.5", "-gzip"];
    run(&client, &args, &[]).await;
    assert_eq!(server.first_value(&gauge).await, Ok("4500m".into()));

    // The README's SDK setup: the endpoint, the compression and the resource from environment variables only.
    let env = [
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
        ("OTEL_RESOURCE_ATTRIBUTES", "k8s.namespace.name=shop,k8s.pod.name=web-2"),
    ];
    run(&client, &["-value", "7"], &env).await;
    assert_eq!(server.first_value(&read("web-2", "queue_depth")).await, Ok("7".into()));
    server.stop().await;
}
