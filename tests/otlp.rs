//! The OTLP/HTTP metrics receiver (`POST /v1/metrics`, docs/wire-contract.md §4.7) against a standalone server on
//! 127.0.0.1: binary protobuf and OTLP JSON exports, gzip, each Kubernetes resource attribute mapped onto its
//! object and read back through the Kubernetes APIs, partial success for the points that cannot be stored, and the
//! failures (400, 413, 415) with their `google.rpc.Status` bodies.

mod common;

use std::io::Write;

use common::{TestServer, items, start};
use custom_metrics_apiserver::ingest::otlp::RpcStatus;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};

const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";
const PROTOBUF: &str = "application/x-protobuf";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..KeyValue::default()
    }
}

fn attributes(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, v)).collect()
}

fn point(value: f64, labels: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes(labels),
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..NumberDataPoint::default()
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric { name: name.into(), data: Some(metric::Data::Gauge(Gauge { data_points: points })), ..Metric::default() }
}

fn sum(name: &str, monotonic: bool, points: Vec<NumberDataPoint>) -> Metric {
    let data = Sum {
        data_points: points,
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
        is_monotonic: monotonic,
    };
    Metric { name: name.into(), data: Some(metric::Data::Sum(data)), ..Metric::default() }
}

fn resource(pairs: &[(&str, &str)], metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource { attributes: attributes(pairs), ..Resource::default() }),
        scope_metrics: vec![ScopeMetrics { metrics, ..ScopeMetrics::default() }],
        ..ResourceMetrics::default()
    }
}

fn export(resources: Vec<ResourceMetrics>) -> Vec<u8> {
    ExportMetricsServiceRequest { resource_metrics: resources }.encode_to_vec()
}

/// What the receiver answered: status, `Content-Type`, body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    /// The protobuf `ExportMetricsServiceResponse` of a 200.
    fn response(&self) -> ExportMetricsServiceResponse {
        assert_eq!(
            (self.status, self.content_type.as_str()),
            (200, PROTOBUF),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        ExportMetricsServiceResponse::decode(self.body.as_slice()).unwrap()
    }

    /// The protobuf `google.rpc.Status` of a failure.
    fn rpc_status(&self) -> RpcStatus {
        assert_eq!(self.content_type, PROTOBUF, "{}", String::from_utf8_lossy(&self.body));
        RpcStatus::decode(self.body.as_slice()).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn send(server: &TestServer, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let mut request = server.writer.post(server.write_url("/v1/metrics")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = response.bytes().await.unwrap().to_vec();
    Answer { status, content_type, body }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn each_kubernetes_resource_attribute_maps_onto_its_object() {
    let server = start(&[]).await;
    let ns = ("k8s.namespace.name", "shop");
    let body = export(vec![
        resource(&[ns, ("k8s.pod.name", "web-1"), ("k8s.node.name", "n1")], vec![gauge("m", vec![point(1.0, &[])])]),
        resource(&[ns, ("k8s.replicaset.name", "web-5d")], vec![gauge("m", vec![point(2.0, &[])])]),
        resource(&[ns, ("k8s.deployment.name", "web")], vec![gauge("m", vec![point(3.0, &[])])]),
        resource(&[ns, ("k8s.statefulset.name", "db")], vec![gauge("m", vec![point(4.0, &[])])]),
        resource(&[ns, ("k8s.daemonset.name", "agent")], vec![gauge("m", vec![point(5.0, &[])])]),
        resource(&[ns, ("k8s.job.name", "backup-1")], vec![gauge("m", vec![point(6.0, &[])])]),
        resource(&[ns, ("k8s.cronjob.name", "backup")], vec![gauge("m", vec![point(7.0, &[])])]),
        resource(&[("k8s.node.name", "n1")], vec![gauge("m", vec![point(8.0, &[])])]),
        resource(&[ns, ("service.name", "queue")], vec![gauge("m", vec![point(9.0, &[("queue", "orders")])])]),
    ]);
    let answer = send(&server, body, &[("content-type", PROTOBUF)]).await;
    assert_eq!(answer.response(), ExportMetricsServiceResponse { partial_success: None });
    for (path, value) in [
        ("/namespaces/shop/pods/web-1/m", "1"),
        ("/namespaces/shop/replicasets.apps/web-5d/m", "2"),
        ("/namespaces/shop/deployments.apps/web/m", "3"),
        ("/namespaces/shop/statefulsets.apps/db/m", "4"),
        ("/namespaces/shop/daemonsets.apps/agent/m", "5"),
        ("/namespaces/shop/jobs.batch/backup-1/m", "6"),
        ("/namespaces/shop/cronjobs.batch/backup/m", "7"),
        ("/nodes/n1/m", "8"),
    ] {
        assert_eq!(server.first_value(&format!("{V2}{path}")).await, Ok(value.to_string()), "{path}");
    }
    let (status, list) = server.get(&format!("{EXT}/namespaces/shop/m")).await;
    assert_eq!(status, 200, "{list}");
    let external: Vec<(Value, Value)> =
        items(&list).into_iter().map(|item| (item["metricLabels"].clone(), item["value"].clone())).collect();
    assert_eq!(external, [(json!({"queue": "orders"}), json!("9"))]);
    server.stop().await;
}

#[tokio::test]
async fn gauges_sums_and_histograms_are_stored_with_dotted_names_kept() {
    let server = start(&[]).await;
    let pod = [("k8s.namespace.name", "shop"), ("k8s.pod.name", "web-1")];
    let histogram = Metric {
        name: "http.server.request.duration".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                count: 4,
                sum: Some(0.75),
                bucket_counts: vec![3, 1],
                explicit_bounds: vec![0.1],
                ..HistogramDataPoint::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Metric::default()
    };
    let int_point = NumberDataPoint { value: Some(number_data_point::Value::AsInt(12)), ..NumberDataPoint::default() };
    let body = export(vec![resource(
        &pod,
        vec![
            gauge("queue.depth", vec![point(0.5, &[("http.request.method", "GET")])]),
            sum("requests", true, vec![int_point]),
            sum("in_flight", false, vec![point(-2.0, &[])]),
            histogram,
        ],
    )]);
    assert_eq!(send(&server, body, &[("content-type", PROTOBUF)]).await.response().partial_success, None);
    let read = |metric: &str| format!("{V2}/namespaces/shop/pods/web-1/{metric}");
    assert_eq!(server.first_value(&read("queue.depth")).await, Ok("500m".into()));
    assert_eq!(server.first_value(&read("requests")).await, Ok("12".into()));
    assert_eq!(server.first_value(&read("in_flight")).await, Ok("-2".into()));
    assert_eq!(server.first_value(&read("http.server.request.duration_count")).await, Ok("4".into()));
    assert_eq!(server.first_value(&read("http.server.request.duration_sum")).await, Ok("750m".into()));
    assert_eq!(server.first_value(&read("http.server.request.duration")).await, Err(404));
    // Data-point attributes are the value's labels.
    let selected = format!("{}?metricLabelSelector=http.request.method%3DGET", read("queue.depth"));
    assert_eq!(server.first_value(&selected).await, Ok("500m".into()));
    server.stop().await;
}

/// OTLP JSON as the specification writes it: camelCase keys, 64-bit integers as strings, enums as integers, an
/// unknown field ignored.
const JSON_EXPORT: &str = r#"{"resourceMetrics": [{
  "resource": {"attributes": [
    {"key": "k8s.namespace.name", "value": {"stringValue": "shop"}},
    {"key": "k8s.pod.name", "value": {"stringValue": "web-1"}}]},
  "scopeMetrics": [{"scope": {"name": "app"}, "metrics": [
    {"name": "requests", "unit": "1", "futureField": true, "sum": {"aggregationTemporality": 2, "isMonotonic": true,
     "dataPoints": [{"asInt": "42", "timeUnixNano": "1700000000000000000",
                     "attributes": [{"key": "code", "value": {"intValue": "200"}}]}]}},
    {"name": "load", "gauge": {"dataPoints": [{"asDouble": 1.5, "timeUnixNano": "1700000000000000000"}]}},
    {"name": "bad", "gauge": {"dataPoints": [{"asDouble": 1, "attributes": [{"key": "path", "value": {"stringValue": "/x"}}]}]}}
  ]}]
}]}"#;

#[tokio::test]
async fn json_exports_are_answered_in_json() {
    let server = start(&[]).await;
    let answer = send(&server, JSON_EXPORT.as_bytes().to_vec(), &[("content-type", "application/json")]).await;
    assert_eq!((answer.status, answer.content_type.as_str()), (200, "application/json"));
    let body = answer.json();
    assert_eq!(body["partialSuccess"]["rejectedDataPoints"], "1", "{body}");
    let message = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("1 of 3 data points were not stored"), "{message}");
    assert!(
        message.contains("bad{path=\"/x\"} (pods shop/web-1): the attribute path=\"/x\" cannot be a label"),
        "{message}"
    );
    let read = |metric: &str| format!("{V2}/namespaces/shop/pods/web-1/{metric}");
    assert_eq!(
        server.first_value(&format!("{}?metricLabelSelector=code%3D200", read("requests"))).await,
        Ok("42".into())
    );
    assert_eq!(server.first_value(&read("load")).await, Ok("1500m".into()));
    assert_eq!(server.first_value(&read("bad")).await, Err(404));
    // A full success is an empty object.
    let good = JSON_EXPORT.replace(r#""stringValue": "/x""#, r#""stringValue": "x""#);
    let answer = send(&server, good.into_bytes(), &[("content-type", "application/json; charset=utf-8")]).await;
    assert_eq!((answer.status, answer.json()), (200, json!({})));
    server.stop().await;
}

#[tokio::test]
async fn points_that_cannot_be_stored_are_rejected_and_the_others_kept() {
    let server = start(&[]).await;
    let pod = [("k8s.namespace.name", "shop"), ("k8s.pod.name", "web-1")];
    let body = export(vec![
        resource(
            &pod,
            vec![
                gauge("good", vec![point(1.0, &[])]),
                gauge("nan", vec![point(f64::NAN, &[])]),
                gauge("inf", vec![point(f64::INFINITY, &[])]),
                // Found by fuzz/fuzz_targets/otlp_body.rs: a metric without a name.
                gauge("", vec![point(1.0, &[])]),
                // Two points of one pod that differ only in attributes are one value: the second is rejected.
                gauge("twice", vec![point(1.0, &[("a", "x")]), point(2.0, &[("a", "y")])]),
            ],
        ),
        resource(&[("service.name", "lost")], vec![gauge("nowhere", vec![point(1.0, &[])])]),
        resource(&[("k8s.pod.name", "web-1")], vec![gauge("no_namespace", vec![point(1.0, &[])])]),
    ]);
    let partial = send(&server, body, &[("content-type", PROTOBUF)]).await.response().partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 6, "{}", partial.error_message);
    for expected in [
        "6 of 8 data points were not stored (the others were)",
        "nan (pods shop/web-1): the value is NaN",
        "inf (pods shop/web-1): the value is +Inf",
        " (pods shop/web-1): the metric has no name",
        "the same value as an earlier data point of twice",
        "nowhere: the resource maps to nothing",
        "no_namespace: the resource names pods \"web-1\" (k8s.pod.name) but no namespace",
    ] {
        assert!(partial.error_message.contains(expected), "{expected}: {}", partial.error_message);
    }
    let read = |metric: &str| format!("{V2}/namespaces/shop/pods/web-1/{metric}");
    assert_eq!(server.first_value(&read("good")).await, Ok("1".into()));
    assert_eq!(server.first_value(&read("twice")).await, Ok("1".into()));
    assert_eq!(server.first_value(&read("nan")).await, Err(404));
    server.stop().await;
}

/// `body` with the first occurrence of `text` turned into bytes that are not UTF-8.
fn not_utf8(mut body: Vec<u8>, text: &str) -> Vec<u8> {
    let at = body.windows(text.len()).position(|w| w == text.as_bytes()).unwrap();
    body[at] = 0xff;
    body
}

#[tokio::test]
async fn strings_that_are_not_utf8_reject_the_points_that_read_them() {
    let server = start(&[]).await;
    let pod = [("k8s.namespace.name", "shop"), ("k8s.pod.name", "web-1")];
    let mut described = gauge("described", vec![point(2.0, &[])]);
    described.description = "description-to-break".into();
    let body = export(vec![
        resource(
            &pod,
            vec![
                gauge("kept", vec![point(1.0, &[("a", "x")])]),
                gauge("label", vec![point(1.0, &[("a", "value-to-break")])]),
                gauge("name-to-break", vec![point(1.0, &[])]),
                described,
            ],
        ),
        resource(&[("k8s.namespace.name", "namespace-to-break")], vec![gauge("m", vec![point(1.0, &[])])]),
    ]);
    let body = ["value-to-break", "name-to-break", "description-to-break", "namespace-to-break"]
        .into_iter()
        .fold(body, not_utf8);
    let partial = send(&server, body, &[("content-type", PROTOBUF)]).await.response().partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 3, "{}", partial.error_message);
    for expected in [
        "label{a=\"\u{fffd}alue-to-break\"} (pods shop/web-1): the attribute a is not UTF-8",
        "\u{fffd}ame-to-break (pods shop/web-1): the metric name is not UTF-8",
        "m: the resource attribute k8s.namespace.name is not UTF-8",
    ] {
        assert!(partial.error_message.contains(expected), "{expected}: {}", partial.error_message);
    }
    // A field the receiver does not read may hold anything.
    let read = |metric: &str| format!("{V2}/namespaces/shop/pods/web-1/{metric}");
    assert_eq!(server.first_value(&read("described")).await, Ok("2".into()));
    assert_eq!(server.first_value(&read("kept")).await, Ok("1".into()));
    server.stop().await;
}

#[tokio::test]
async fn a_full_store_rejects_the_points_it_cannot_take_and_keeps_the_others() {
    let server = start(&["--max-series=2"]).await;
    let pod = |name: &'static str| [("k8s.namespace.name", "shop"), ("k8s.pod.name", name)];
    let body = |value: f64| {
        export(vec![
            resource(&pod("web-1"), vec![gauge("m", vec![point(value, &[])])]),
            resource(&pod("web-2"), vec![gauge("m", vec![point(value, &[])])]),
        ])
    };
    assert_eq!(send(&server, body(1.0), &[("content-type", PROTOBUF)]).await.response().partial_success, None);
    // Two more series than the store takes; the two it holds are updated.
    let mut three = body(2.0);
    three.extend(export(vec![
        resource(&pod("web-3"), vec![gauge("m", vec![point(2.0, &[])])]),
        resource(&pod("web-4"), vec![gauge("m", vec![point(2.0, &[])])]),
    ]));
    let partial = send(&server, three, &[("content-type", PROTOBUF)]).await.response().partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 2, "{}", partial.error_message);
    assert!(partial.error_message.contains("--max-series"), "{}", partial.error_message);
    let read = |name: &str| format!("{V2}/namespaces/shop/pods/{name}/m");
    assert_eq!(server.first_value(&read("web-1")).await, Ok("2".into()));
    assert_eq!(server.first_value(&read("web-2")).await, Ok("2".into()));
    assert_eq!(server.first_value(&read("web-3")).await, Err(404));
    server.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_a_gzip_bomb_costs_the_limit() {
    let server = start(&["--max-batch-body-bytes=65536"]).await;
    let pod = [("k8s.namespace.name", "shop"), ("k8s.pod.name", "web-1")];
    let body = export(vec![resource(&pod, vec![gauge("m", vec![point(3.0, &[])])])]);
    let answer = send(&server, gzip(&body), &[("content-type", PROTOBUF), ("content-encoding", "gzip")]).await;
    assert_eq!(answer.response().partial_success, None);
    assert_eq!(server.first_value(&format!("{V2}/namespaces/shop/pods/web-1/m")).await, Ok("3".into()));

    // 10 MiB of zeros in a few kilobytes: refused once 64 KiB are inflated.
    let bomb = gzip(&vec![0; 10 << 20]);
    assert!(bomb.len() < 65536);
    let answer = send(&server, bomb, &[("content-type", PROTOBUF), ("content-encoding", "gzip")]).await;
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.rpc_status().message,
        "request body exceeds 65536 bytes once decompressed (--max-batch-body-bytes)"
    );
    let answer = send(&server, body, &[("content-type", PROTOBUF), ("content-encoding", "br")]).await;
    assert_eq!(answer.status, 415);
    server.stop().await;
}

#[tokio::test]
async fn failures_answer_the_right_code_in_the_requests_encoding() {
    let server = start(&["--max-batch-items=3"]).await;
    // Not OTLP: 415, a Kubernetes Status (the encoding of the answer is unknown).
    for content_type in [Some("text/plain"), Some("application/protobuf"), None] {
        let headers: Vec<(&str, &str)> = content_type.iter().map(|c| ("content-type", *c)).collect();
        let answer = send(&server, b"{}".to_vec(), &headers).await;
        assert_eq!(answer.status, 415, "{content_type:?}");
        assert!(answer.json()["message"].as_str().unwrap().contains("is not an OTLP encoding"), "{content_type:?}");
    }
    // Undecodable: 400, google.rpc.Status in the request's encoding.
    let answer = send(&server, b"\xff\xff\xff".to_vec(), &[("content-type", PROTOBUF)]).await;
    assert_eq!(answer.status, 400);
    let status = answer.rpc_status();
    assert_eq!(status.code, 3);
    assert!(status.message.starts_with("invalid OTLP export: the body is not a binary protobuf"), "{status:?}");
    let answer = send(&server, b"{\"resourceMetrics\": 5}".to_vec(), &[("content-type", "application/json")]).await;
    assert_eq!((answer.status, answer.content_type.as_str()), (400, "application/json"));
    assert!(answer.json()["message"].as_str().unwrap().contains("not an OTLP JSON"), "{:?}", answer.json());
    // OTLP JSON's "NaN" (proto3 JSON writes non-finite doubles as strings) is not read as a number: that point has no
    // value and is rejected, the others stored (docs/wire-contract.md §4.7).
    let nan = JSON_EXPORT.replace(r#""asDouble": 1.5"#, r#""asDouble": "NaN""#);
    let answer = send(&server, nan.into_bytes(), &[("content-type", "application/json")]).await;
    assert_eq!(answer.status, 200);
    let message = answer.json()["partialSuccess"]["errorMessage"].as_str().unwrap().to_string();
    assert!(message.contains("load (pods shop/web-1): the data point has no value"), "{message}");
    // More data points than --max-batch-items: 413, nothing stored.
    let pod = [("k8s.namespace.name", "shop"), ("k8s.pod.name", "web-1")];
    let points = (0..4).map(|i| point(f64::from(i), &[("i", &i.to_string())])).collect();
    let answer =
        send(&server, export(vec![resource(&pod, vec![gauge("m", points)])]), &[("content-type", PROTOBUF)]).await;
    assert_eq!(answer.status, 413);
    assert!(answer.rpc_status().message.contains("more than 3 data points"));
    assert_eq!(server.first_value(&format!("{V2}/namespaces/shop/pods/web-1/m")).await, Err(404));
    // An empty export is a success.
    assert_eq!(send(&server, Vec::new(), &[("content-type", PROTOBUF)]).await.response().partial_success, None);
    // Only POST.
    let response = server.writer.get(server.write_url("/v1/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    server.stop().await;
}
