//! Pushgateway-compatible pushes (`PUT`/`POST`/`DELETE /metrics/job/...`, docs/wire-contract.md §4.5) against a
//! standalone server on 127.0.0.1: text, protobuf and gzip bodies stored and read back through the Kubernetes APIs,
//! the semantics per grouping key, refusals as `Status` objects that store nothing, and the bounds.

mod common;

use std::io::Write;

use common::{TestServer, items, start};
use custom_metrics_apiserver::ingest::exposition::{
    ProtoHistogram, ProtoLabelPair, ProtoMetric, ProtoMetricFamily, ProtoValue,
};
use prost::Message;
use serde_json::{Value, json};

const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";
const PROTOBUF: &str = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Sends `method` to a push path of the write port: (status, body as JSON or as a string value).
async fn push(
    server: &TestServer,
    method: &str,
    path: &str,
    body: impl Into<Vec<u8>>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = server.writer.request(method.parse().unwrap(), server.write_url(path)).body(body.into());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The external series of `metric` in `shop`: (labels, value), sorted.
async fn external(server: &TestServer, metric: &str) -> Vec<(Value, Value)> {
    let (status, list) = server.get(&format!("{EXT}/namespaces/shop/{metric}")).await;
    assert_eq!(status, 200, "{list}");
    items(&list).into_iter().map(|item| (item["metricLabels"].clone(), item["value"].clone())).collect()
}

fn pod(metric: &str) -> String {
    format!("{V2}/namespaces/shop/pods/web-1/{metric}")
}

const FIRST_PUSH: &str = "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{pod=\"web-1\"} 10\n\
# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 7\n\
# TYPE latency_seconds histogram\nlatency_seconds_bucket{pod=\"web-1\",le=\"0.1\"} 3\n\
latency_seconds_bucket{pod=\"web-1\",le=\"+Inf\"} 4\nlatency_seconds_sum{pod=\"web-1\"} 0.75\nlatency_seconds_count{pod=\"web-1\"} 4\n";

#[tokio::test]
async fn put_post_and_delete_follow_pushgateways_semantics_per_grouping_key() {
    let server = start(&[]).await;
    let group = "/metrics/job/app/namespace/shop";
    assert_eq!(push(&server, "PUT", group, FIRST_PUSH, &[]).await, (200, Value::String(String::new())));
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("10".into()));
    assert_eq!(server.first_value(&pod("latency_seconds_count")).await, Ok("4".into()));
    assert_eq!(server.first_value(&pod("latency_seconds_sum")).await, Ok("750m".into()));
    // Buckets are not stored.
    assert_eq!(server.first_value(&pod("latency_seconds_bucket")).await, Err(404));
    // The grouping key's labels are the sample's: job on the external series' identity, and on the custom value.
    assert_eq!(external(&server, "queue_depth").await, [(json!({"job": "app", "queue": "orders"}), json!("7"))]);
    let by_job = |job: &str| format!("{}?metricLabelSelector=job%3D{job}", pod("requests_total"));
    assert_eq!(server.first_value(&by_job("app")).await, Ok("10".into()));
    assert_eq!(server.first_value(&by_job("other")).await, Err(404));

    // POST replaces the families it pushes, and only those.
    assert_eq!(push(&server, "POST", group, "queue_depth{queue=\"billing\"} 1\n", &[]).await.0, 200);
    assert_eq!(external(&server, "queue_depth").await, [(json!({"job": "app", "queue": "billing"}), json!("1"))]);
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("10".into()));
    assert_eq!(server.first_value(&pod("latency_seconds_count")).await, Ok("4".into()));
    // An empty POST changes nothing.
    assert_eq!(push(&server, "POST", group, "", &[]).await.0, 200);
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("10".into()));

    // Another group, with the same job and another label, is another group.
    let other = "/metrics/job/app/namespace/shop/instance/b";
    assert_eq!(push(&server, "PUT", other, "other_metric 5\n", &[]).await.0, 200);

    // PUT replaces the whole group.
    assert_eq!(push(&server, "PUT", group, "requests_total{pod=\"web-1\"} 11\n", &[]).await.0, 200);
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("11".into()));
    assert_eq!(server.first_value(&pod("latency_seconds_count")).await, Err(404));
    assert_eq!(server.first_value(&pod("latency_seconds_sum")).await, Err(404));
    assert_eq!(external(&server, "queue_depth").await, []);
    assert_eq!(external(&server, "other_metric").await.len(), 1);

    // DELETE removes the group's series and answers 202, as Pushgateway does; the other group stays.
    assert_eq!(push(&server, "DELETE", group, "", &[]).await, (202, Value::String(String::new())));
    assert_eq!(server.first_value(&pod("requests_total")).await, Err(404));
    assert_eq!(external(&server, "other_metric").await, [(json!({"instance": "b", "job": "app"}), json!("5"))]);
    // Deleting a group that holds nothing is no error.
    assert_eq!(push(&server, "DELETE", "/metrics/job/never/namespace/shop", "", &[]).await.0, 202);
    // A PUT with an empty body empties the group.
    assert_eq!(push(&server, "PUT", other, "", &[]).await.0, 200);
    assert_eq!(external(&server, "other_metric").await, []);
    server.stop().await;
}

#[tokio::test]
async fn a_series_pushed_by_another_group_is_that_groups() {
    let server = start(&[]).await;
    let body = "requests_total{namespace=\"shop\",pod=\"web-1\"} 1\n";
    assert_eq!(push(&server, "PUT", "/metrics/job/a", body, &[]).await.0, 200);
    // The same object and metric from job b: one custom value per object, now b's.
    let body = "requests_total{namespace=\"shop\",pod=\"web-1\"} 2\n";
    assert_eq!(push(&server, "PUT", "/metrics/job/b", body, &[]).await.0, 200);
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("2".into()));
    // Neither a PUT nor a DELETE of group a removes what b pushed last.
    assert_eq!(push(&server, "PUT", "/metrics/job/a", "", &[]).await.0, 200);
    assert_eq!(push(&server, "DELETE", "/metrics/job/a", "", &[]).await.0, 202);
    assert_eq!(server.first_value(&pod("requests_total")).await, Ok("2".into()));
    assert_eq!(push(&server, "DELETE", "/metrics/job/b", "", &[]).await.0, 202);
    assert_eq!(server.first_value(&pod("requests_total")).await, Err(404));
    server.stop().await;
}

fn family(name: &str, kind: i32, metric: ProtoMetric) -> ProtoMetricFamily {
    ProtoMetricFamily { name: Some(name.into()), help: Some("help".into()), r#type: Some(kind), metric: vec![metric] }
}

fn pod_label() -> Vec<ProtoLabelPair> {
    vec![ProtoLabelPair { name: Some("pod".into()), value: Some("web-1".into()) }]
}

fn delimited(families: &[ProtoMetricFamily]) -> Vec<u8> {
    let mut body = Vec::new();
    for family in families {
        family.encode_length_delimited(&mut body).unwrap();
    }
    body
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn delimited_protobuf_and_gzip_bodies_as_client_golang_sends_them() {
    let server = start(&[]).await;
    let body = delimited(&[
        family(
            "jobs_total",
            0,
            ProtoMetric { label: pod_label(), counter: Some(ProtoValue { value: Some(3.0) }), ..Default::default() },
        ),
        family(
            "duration_seconds",
            4,
            ProtoMetric {
                label: pod_label(),
                histogram: Some(ProtoHistogram {
                    sample_count: Some(6),
                    sample_sum: Some(1.5),
                    sample_count_float: None,
                }),
                ..Default::default()
            },
        ),
    ]);
    let group = "/metrics/job/worker/namespace/shop";
    assert_eq!(push(&server, "PUT", group, body.clone(), &[("content-type", PROTOBUF)]).await.0, 200);
    assert_eq!(server.first_value(&pod("jobs_total")).await, Ok("3".into()));
    assert_eq!(server.first_value(&pod("duration_seconds_count")).await, Ok("6".into()));
    assert_eq!(server.first_value(&pod("duration_seconds_sum")).await, Ok("1500m".into()));
    // The same bytes without the protobuf content type are read as text, and refused as such.
    let (status, answer) = push(&server, "PUT", group, body.clone(), &[]).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["kind"], "Status");

    // gzip, text and protobuf.
    let text = gzip(b"jobs_total{pod=\"web-1\"} 4\n");
    assert_eq!(push(&server, "PUT", group, text, &[("content-encoding", "gzip")]).await.0, 200);
    assert_eq!(server.first_value(&pod("jobs_total")).await, Ok("4".into()));
    assert_eq!(server.first_value(&pod("duration_seconds_count")).await, Err(404));
    let compressed = gzip(&body);
    let headers = [("content-type", PROTOBUF), ("content-encoding", "gzip")];
    assert_eq!(push(&server, "POST", group, compressed, &headers).await.0, 200);
    assert_eq!(server.first_value(&pod("duration_seconds_count")).await, Ok("6".into()));
    // Another encoding is refused.
    let (status, answer) = push(&server, "PUT", group, "x 1", &[("content-encoding", "br")]).await;
    assert_eq!((status, answer["reason"].as_str()), (415, Some("UnsupportedMediaType")), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_push_with_a_bad_sample_is_refused_whole_with_each_sample_named() {
    let server = start(&[]).await;
    let group = "/metrics/job/app/namespace/shop";
    let body = "requests_total{pod=\"web-1\"} 1\n\
        bad_value{pod=\"web-1\"} NaN\n\
        infinite{queue=\"a\"} +Inf\n\
        q{pod=\"web-1\",code=\"200\"} 1\nq{pod=\"web-1\",code=\"500\"} 2\n\
        path_label{path=\"/api\"} 1\n\
        stamped 1 1700000000000\n";
    let (status, answer) = push(&server, "PUT", group, body, &[]).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["reason"], "BadRequest");
    let message = answer["message"].as_str().unwrap();
    assert!(message.starts_with("the push was refused and nothing was stored: 5 of 7 samples cannot be stored; the first, bad_value{pod=\"web-1\"}: the value is NaN"), "{message}");
    let causes: Vec<(&str, &str)> = answer["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["field"].as_str().unwrap(), c["message"].as_str().unwrap()))
        .collect();
    let fields: Vec<&str> = causes.iter().map(|c| c.0).collect();
    assert_eq!(
        fields,
        [
            "bad_value{pod=\"web-1\"}",
            "infinite{queue=\"a\"}",
            "q{pod=\"web-1\",code=\"500\"}",
            "path_label{path=\"/api\"}",
            "stamped",
        ]
    );
    assert!(causes[1].1.contains("+Inf"), "{causes:?}");
    assert!(causes[2].1.contains("same value as q{pod=\"web-1\",code=\"200\"}"), "{causes:?}");
    assert!(causes[3].1.contains("Kubernetes labels"), "{causes:?}");
    assert!(causes[4].1.contains("timestamp"), "{causes:?}");
    assert_eq!(server.first_value(&pod("requests_total")).await, Err(404), "a refused push stored a value");

    // A sample that maps to nothing says why.
    let (status, answer) = push(&server, "PUT", "/metrics/job/app", "lonely 1\n", &[]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["details"]["causes"][0]["message"].as_str().unwrap().contains("maps to nothing"), "{answer}");
    // So does an object name that is not one.
    let (status, answer) = push(&server, "PUT", "/metrics/job/app", "x{namespace=\"shop\",pod=\"Web\"} 1\n", &[]).await;
    assert_eq!(status, 400, "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn bodies_and_paths_that_are_not_pushes_are_refused() {
    let server = start(&[]).await;
    let group = "/metrics/job/app/namespace/shop";
    for (body, expected) in [
        ("m{a=\"x} 1\n", "invalid push body: text format parsing error in line 1: unterminated value"),
        ("# TYPE m gaugehistogram\nm 1\n", "unknown metric type \"gaugehistogram\""),
        ("ok 1\nm one\n", "line 2: expected float as value"),
    ] {
        let (status, answer) = push(&server, "PUT", group, body, &[]).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(expected), "{body}: {answer}");
    }
    assert_eq!(server.first_value(&pod("ok")).await, Err(404));
    let (status, answer) = push(&server, "PUT", "/metrics/job/app/first//x/y", "m 1", &[]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("first@base64/="), "{answer}");
    let (status, answer) = push(&server, "PUT", "/metrics/job/app/odd", "m 1", &[]).await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = push(&server, "GET", group, "", &[]).await;
    assert_eq!(status, 405);
    let response = server.writer.patch(server.write_url(group)).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "PUT, POST, DELETE");
    let (status, answer) = push(&server, "PUT", &format!("{group}?ttl=5m"), "m 1", &[]).await;
    assert_eq!(status, 400, "{answer}");
    // `/metrics` itself is not a push path: the write port has no scrape endpoint.
    assert_eq!(push(&server, "PUT", "/metrics", "m 1", &[]).await.0, 404);
    // A value in base64 is decoded, `/` and the empty value included.
    let path = "/metrics/job/app/namespace/shop/dir@base64/L3Zhci90bXA/empty@base64/=";
    let (status, answer) = push(&server, "PUT", path, "m 1", &[]).await;
    // A Kubernetes label value has no `/`: the sample is refused, naming the decoded value.
    assert_eq!(status, 400, "{answer}");
    assert!(answer["details"]["causes"][0]["message"].as_str().unwrap().contains("dir=\"/var/tmp\""), "{answer}");
    let path = "/metrics/job@base64/YXBw/namespace/shop/tier@base64/ZnJvbnQ/empty@base64/=";
    assert_eq!(push(&server, "PUT", path, "m 1", &[]).await.0, 200);
    assert_eq!(external(&server, "m").await, [(json!({"job": "app", "tier": "front"}), json!("1"))]);
    server.stop().await;
}

#[tokio::test]
async fn the_scrape_endpoint_stays_on_the_secure_port() {
    let server = start(&[]).await;
    let response = server.client.get(server.api_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("# HELP "));
    server.stop().await;
}

#[tokio::test]
async fn pushes_are_bounded_by_the_batch_limits_and_the_groups_by_max_push_series() {
    let server = start(&["--max-batch-body-bytes=2000", "--max-batch-items=3", "--max-push-series=4"]).await;
    let group = "/metrics/job/app/namespace/shop";
    // A gzip bomb: about 1 kB on the wire, 1 MiB once inflated.
    let bomb = gzip(&vec![b'#'; 1 << 20]);
    assert!(bomb.len() < 2000, "{}", bomb.len());
    let (status, answer) = push(&server, "PUT", group, bomb, &[("content-encoding", "gzip")]).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["message"], "request body exceeds 2000 bytes once decompressed (--max-batch-body-bytes)");
    let (status, answer) = push(&server, "PUT", group, format!("m {}\n", "1".repeat(2000)), &[]).await;
    assert_eq!(status, 413, "{answer}");
    // Samples beyond --max-batch-items; buckets do not count.
    let (status, answer) = push(&server, "PUT", group, "a 1\nb 1\nc 1\nd 1\n", &[]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("--max-batch-items"), "{answer}");
    let histogram = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\nx 1\n";
    assert_eq!(push(&server, "PUT", group, histogram, &[]).await.0, 200);
    // Three series remembered; a second group of two would make five.
    let (status, answer) = push(&server, "PUT", "/metrics/job/other/namespace/shop", "a 1\nb 1\n", &[]).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("--max-push-series"), "{answer}");
    assert_eq!(external(&server, "a").await, []);
    // Replacing the group's own series makes room.
    assert_eq!(push(&server, "PUT", group, "a 1\nb 1\n", &[]).await.0, 200);
    assert_eq!(push(&server, "PUT", "/metrics/job/other/namespace/shop", "a 1\nb 1\n", &[]).await.0, 200);
    server.stop().await;
}
