//! Rates of counters through HTTP (docs/wire-contract.md §4.6) against a standalone server on 127.0.0.1: counters
//! written with `?kind=counter`, in batches and by Pushgateway pushes (text and protobuf) are served as
//! `x_per_second`; a series with one sample has no rate; a stored series of the rate's name wins; discovery lists
//! the rates. The store stamps writes with the system clock, so the checks bound the rate by the time slept between
//! two writes (the span is at least that long) instead of asserting timings; the exact arithmetic (spans, resets,
//! the window) is tested with a manual clock in `store::history` and the store conformance suite.

mod common;

use std::time::Duration;

use common::{TestServer, items, start};
use custom_metrics_apiserver::ingest::exposition::{ProtoLabelPair, ProtoMetric, ProtoMetricFamily, ProtoValue};
use custom_metrics_apiserver::quantity::Quantity;
use custom_metrics_apiserver::store::history::quantity_f64;
use prost::Message;
use serde_json::{Value, json};

const V1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";
const PROTOBUF: &str = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Time between the two writes of a counter: its rate's span is at least this long.
const PAUSE: Duration = Duration::from_millis(1_100);

fn pod(name: &str, metric: &str) -> String {
    format!("{V2}/namespaces/shop/pods/{name}/{metric}")
}

fn number(value: &Value) -> f64 {
    quantity_f64(&Quantity::parse(value.as_str().unwrap_or_else(|| panic!("not a quantity: {value}"))).unwrap())
}

/// Checks a rate item: an increase of `increase` over at least [`PAUSE`] (and the rate positive), and its window.
fn assert_rate(item: &Value, increase: f64, window_field: &str) {
    let rate = number(&item["value"]);
    assert!(rate > 0.0 && rate <= increase / PAUSE.as_secs_f64(), "{increase} over at least {PAUSE:?}: {item}");
    let window = item[window_field].as_i64().unwrap_or_else(|| panic!("no {window_field} in {item}"));
    assert!(window >= 2, "the span rounded up to whole seconds: {item}");
}

async fn write(server: &TestServer, path: &str, body: &str) {
    let (status, text) = server.post(path, body).await;
    assert_eq!(status, 200, "{path}: {text}");
}

async fn push(server: &TestServer, path: &str, body: impl Into<Vec<u8>>, content_type: &str) {
    let response = server
        .writer
        .put(server.write_url(path))
        .header("content-type", content_type)
        .body(body.into())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
}

async fn discovered(server: &TestServer, path: &str) -> Vec<String> {
    let (status, list) = server.get(path).await;
    assert_eq!(status, 200, "{list}");
    list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_counter_written_with_kind_counter_is_served_as_its_rate() {
    let server = start(&[]).await;
    let counter = "/write-metrics/namespaces/shop/pods/web-1/requests_total?kind=counter&labels=route=a";
    write(&server, counter, "100").await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-2/requests_total?kind=counter&labels=route=b", "5").await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/queue", "3").await;

    // One sample: no rate, never a made-up value.
    let (status, answer) = server.get(&pod("web-1", "requests_per_second")).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["reason"], "NotFound", "{answer}");
    let (status, list) = server.get(&pod("*", "requests_per_second")).await;
    assert_eq!((status, items(&list).len()), (200, 0), "{list}");
    // Discovery lists the counter's rate beside it, and no rate for the gauge.
    let names = discovered(&server, V2).await;
    for name in ["pods/queue", "pods/requests_per_second", "pods/requests_total"] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    assert!(!names.contains(&"pods/queue_per_second".to_string()), "{names:?}");

    tokio::time::sleep(PAUSE).await;
    write(&server, counter, "160").await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/queue", "9").await;

    let (status, list) = server.get(&pod("web-1", "requests_per_second")).await;
    assert_eq!(status, 200, "{list}");
    let item = &items(&list)[0];
    assert_eq!(item["metric"]["name"], "requests_per_second");
    assert_eq!(item["describedObject"]["name"], "web-1");
    assert_rate(item, 60.0, "windowSeconds");
    // v1beta1 names the span `window`, as Kubernetes' types do.
    let (status, list) = server.get(&format!("{V1}/namespaces/shop/pods/web-1/requests_per_second")).await;
    assert_eq!(status, 200, "{list}");
    assert_rate(&items(&list)[0], 60.0, "window");
    // The value itself is still served as written.
    assert_eq!(server.first_value(&pod("web-1", "requests_total")).await, Ok("160".into()));

    // Lists: web-2 has one sample only, so it is missing; the metric label selector applies to the counter's labels.
    let (status, list) = server.get(&pod("*", "requests_per_second")).await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<Value> = items(&list).iter().map(|item| item["describedObject"]["name"].clone()).collect();
    assert_eq!(listed, [json!("web-1")]);
    let (_, list) = server.get(&format!("{}?metricLabelSelector=route%3Db", pod("*", "requests_per_second"))).await;
    assert!(items(&list).is_empty(), "{list}");
    let (_, list) = server.get(&format!("{}?metricLabelSelector=route%3Da", pod("*", "requests_per_second"))).await;
    assert_eq!(items(&list).len(), 1, "{list}");
    let (status, _) =
        server.get(&format!("{}?metricLabelSelector=route%3Db", pod("web-1", "requests_per_second"))).await;
    assert_eq!(status, 404);

    // A gauge has no rate, however often it is written.
    let (status, answer) = server.get(&pod("web-1", "queue_per_second")).await;
    assert_eq!(status, 404, "{answer}");

    // A gauge write turns the counter into a gauge: its rate is gone.
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/requests_total?kind=gauge", "170").await;
    let (status, answer) = server.get(&pod("web-1", "requests_per_second")).await;
    assert_eq!(status, 404, "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_bad_kind_is_refused_and_stores_nothing() {
    let server = start(&[]).await;
    let (status, text) = server.post("/write-metrics/namespaces/shop/pods/web-1/jobs_total?kind=Counter", "1").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("kind") && text.contains("counter"), "{text}");
    assert_eq!(server.first_value(&pod("web-1", "jobs_total")).await, Err(404));
    let batch = json!({"items": [
        {"namespace": "shop", "resource": "pods", "name": "web-1", "metric": "jobs_total", "value": 1, "kind": "summary"}
    ]});
    let (status, text) = server.post("/write-metrics", &batch.to_string()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("items[0].kind"), "{text}");
    assert_eq!(server.first_value(&pod("web-1", "jobs_total")).await, Err(404));
    server.stop().await;
}

#[tokio::test]
async fn a_stored_series_named_like_the_rate_wins() {
    let server = start(&[]).await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/hits_per_second", "7").await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/hits_total?kind=counter", "1").await;
    tokio::time::sleep(PAUSE).await;
    write(&server, "/write-metrics/namespaces/shop/pods/web-1/hits_total?kind=counter", "50").await;
    let (status, list) = server.get(&pod("web-1", "hits_per_second")).await;
    assert_eq!(status, 200, "{list}");
    let item = &items(&list)[0];
    assert_eq!(item["value"], "7", "{item}");
    assert!(item.get("windowSeconds").is_none(), "a stored value has no window: {item}");
    let names = discovered(&server, V2).await;
    assert_eq!(names.iter().filter(|name| *name == "pods/hits_per_second").count(), 1, "listed once: {names:?}");
    server.stop().await;
}

#[tokio::test]
async fn external_counters_and_batch_items_have_rates() {
    let server = start(&[]).await;
    let batch = |value: u32| {
        json!({"items": [
            {"namespace": "shop", "metric": "jobs_total", "labels": {"queue": "a"}, "value": value, "kind": "counter"},
            {"namespace": "shop", "metric": "jobs_total", "labels": {"queue": "b"}, "value": value},
            {"namespace": "shop", "resource": "pods", "name": "web-1", "metric": "jobs", "value": value * 2,
             "kind": "counter"}
        ]})
        .to_string()
    };
    write(&server, "/write-metrics", &batch(10)).await;
    assert_eq!(discovered(&server, EXT).await, ["jobs_per_second", "jobs_total"]);
    let (status, list) = server.get(&format!("{EXT}/namespaces/shop/jobs_per_second")).await;
    assert_eq!((status, items(&list).len()), (200, 0), "one sample each: no rate yet: {list}");
    tokio::time::sleep(PAUSE).await;
    write(&server, "/write-metrics", &batch(40)).await;

    let (status, list) = server.get(&format!("{EXT}/namespaces/shop/jobs_per_second")).await;
    assert_eq!(status, 200, "{list}");
    let found = items(&list);
    assert_eq!(found.len(), 1, "queue=b is a gauge: {list}");
    assert_eq!(
        (&found[0]["metricName"], &found[0]["metricLabels"]),
        (&json!("jobs_per_second"), &json!({"queue": "a"}))
    );
    assert_rate(&found[0], 30.0, "window");
    let (_, list) = server.get(&format!("{EXT}/namespaces/shop/jobs_per_second?labelSelector=queue%3Db")).await;
    assert!(items(&list).is_empty(), "{list}");
    // `jobs` (no `_total`) is served as `jobs_per_second` on the pod.
    let (status, list) = server.get(&pod("web-1", "jobs_per_second")).await;
    assert_eq!(status, 200, "{list}");
    assert_rate(&items(&list)[0], 60.0, "windowSeconds");
    server.stop().await;
}

fn family(name: &str, kind: i32, value: f64) -> ProtoMetricFamily {
    let label = vec![ProtoLabelPair { name: Some("pod".into()), value: Some("web-1".into()) }];
    let value = Some(ProtoValue { value: Some(value) });
    let metric = match kind {
        0 => ProtoMetric { label, counter: value, ..Default::default() },
        1 => ProtoMetric { label, gauge: value, ..Default::default() },
        _ => ProtoMetric { label, untyped: value, ..Default::default() },
    };
    ProtoMetricFamily { name: Some(name.into()), help: Some("help".into()), r#type: Some(kind), metric: vec![metric] }
}

fn delimited(families: &[ProtoMetricFamily]) -> Vec<u8> {
    let mut body = Vec::new();
    for family in families {
        family.encode_length_delimited(&mut body).unwrap();
    }
    body
}

#[tokio::test]
async fn pushed_counters_have_rates_and_gauges_and_untyped_values_do_not() {
    let server = start(&[]).await;
    let text = |value: u32| {
        format!(
            "# TYPE http_requests_total counter\nhttp_requests_total{{pod=\"web-1\"}} {value}\n\
             # TYPE in_flight gauge\nin_flight{{pod=\"web-1\"}} {value}\nlast_batch{{pod=\"web-1\"}} {value}\n"
        )
    };
    let proto = |value: f64| delimited(&[family("bytes_total", 0, value), family("temperature", 1, value)]);
    push(&server, "/metrics/job/app/namespace/shop", text(100), "text/plain; version=0.0.4").await;
    push(&server, "/metrics/job/proto/namespace/shop", proto(1000.0), PROTOBUF).await;
    let (status, _) = server.get(&pod("web-1", "http_requests_per_second")).await;
    assert_eq!(status, 404, "one push: no rate yet");
    tokio::time::sleep(PAUSE).await;
    push(&server, "/metrics/job/app/namespace/shop", text(190), "text/plain; version=0.0.4").await;
    push(&server, "/metrics/job/proto/namespace/shop", proto(3000.0), PROTOBUF).await;

    let (status, list) = server.get(&pod("web-1", "http_requests_per_second")).await;
    assert_eq!(status, 200, "{list}");
    assert_rate(&items(&list)[0], 90.0, "windowSeconds");
    let (status, list) = server.get(&pod("web-1", "bytes_per_second")).await;
    assert_eq!(status, 200, "{list}");
    assert_rate(&items(&list)[0], 2000.0, "windowSeconds");
    for gauge in ["in_flight_per_second", "last_batch_per_second", "temperature_per_second"] {
        let (status, answer) = server.get(&pod("web-1", gauge)).await;
        assert_eq!(status, 404, "{gauge}: {answer}");
    }
    server.stop().await;
}
