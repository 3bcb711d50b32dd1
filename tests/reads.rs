//! What one read may cost: the size of its selectors, the items and bytes of one response, and list bodies that
//! are written in bounded pieces instead of one buffer.

mod common;

use common::start;

const V1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";

/// The raw body of a GET with every timestamp value replaced by `T`.
async fn raw(server: &common::TestServer, path: &str) -> (u16, String) {
    let response = server.client.get(server.api_url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let mut text = response.text().await.unwrap();
    for key in ["\"timestamp\":\"", "\"timestamp\": \""] {
        let mut from = 0;
        while let Some(found) = text[from..].find(key) {
            let value_start = from + found + key.len();
            let end = value_start + text[value_start..].find('"').unwrap();
            assert!(common::is_whole_second_utc(&text[value_start..end]), "{text}");
            text.replace_range(value_start..end, "T");
            from = value_start;
        }
    }
    (status, text)
}

/// A GET over HTTP/1.1, whose request line may be far longer than an HTTP/2 header list (the audit's 55 KB GET was
/// one): (status, body as JSON).
async fn get_http1(server: &common::TestServer, path: &str) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server.cert_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let response = client.get(server.api_url(path)).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// At most the first 300 characters of a body, for assertion messages.
fn short(body: &serde_json::Value) -> String {
    body.to_string().chars().take(300).collect()
}

/// The audit's request: 8,000 `!kN` terms (55 KB).
fn audit_selector() -> String {
    (0..8000).map(|i| format!("!k{i}")).collect::<Vec<_>>().join(",")
}

#[tokio::test]
async fn the_audits_selector_is_refused_with_400_naming_the_flag() {
    let server = start(&[]).await;
    for i in 0..20 {
        assert_eq!(server.post(&format!("/write-metrics/namespaces/default/pods/p-{i}/m"), "1").await.0, 200);
    }
    server.post("/write-external-metrics/namespaces/default/e?labels=a=b", "1").await;
    let selector = audit_selector();
    assert!(selector.len() > 50_000);

    let (status, body) =
        get_http1(&server, &format!("{V2}/namespaces/default/pods/*/m?metricLabelSelector={selector}")).await;
    assert_eq!(status, 400, "{}", short(&body));
    assert_eq!(body["reason"], "BadRequest");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("metricLabelSelector") && message.contains("--max-selector-bytes") && message.len() < 300,
        "{message}"
    );

    for path in [format!("{V1}/namespaces/default/pods/*/m"), format!("{EXT}/namespaces/default/e")] {
        let (status, body) = get_http1(&server, &format!("{path}?labelSelector={selector}")).await;
        assert_eq!(status, 400, "{path}: {}", short(&body));
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("labelSelector") && message.contains("--max-selector-bytes"), "{message}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_selector_of_exactly_the_limit_is_served_and_one_byte_more_is_not() {
    let server = start(&["--max-selector-bytes=17"]).await;
    server.post("/write-metrics/namespaces/default/pods/p/m?labels=queue=orders", "1").await;
    // 17 bytes once decoded ('+' is a space).
    let at_limit = "queue+in+(orders)";
    let (status, body) = server.get(&format!("{V2}/namespaces/default/pods/*/m?metricLabelSelector={at_limit}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let over = "queue+in+(orders+)";
    let (status, body) = server.get(&format!("{V2}/namespaces/default/pods/*/m?metricLabelSelector={over}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("metricLabelSelector is 18 bytes long, at most 17 are allowed (--max-selector-bytes)"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn lists_beyond_max_list_items_are_refused_with_403_naming_the_flag() {
    let server = start(&["--max-list-items=3"]).await;
    for i in 0..3 {
        server.post(&format!("/write-metrics/namespaces/default/pods/p-{i}/m?labels=n={i}"), "1").await;
        server.post(&format!("/write-metrics/namespaces/default/pods/one/m{i}"), "1").await;
        server.post(&format!("/write-external-metrics/namespaces/default/e?labels=n={i}"), "1").await;
    }
    let wildcard = format!("{V2}/namespaces/default/pods/*/m");
    let per_object = format!("{V1}/namespaces/default/pods/one/");
    let external = format!("{EXT}/namespaces/default/e");
    for path in [&wildcard, &per_object, &external] {
        let (status, body) = server.get(path).await;
        assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(3)), "{path}: {body}");
    }

    server.post("/write-metrics/namespaces/default/pods/p-3/m?labels=n=3", "1").await;
    server.post("/write-metrics/namespaces/default/pods/one/m3", "1").await;
    server.post("/write-external-metrics/namespaces/default/e?labels=n=3", "1").await;
    for path in [&wildcard, &per_object, &external] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(
            body["message"],
            "the response would hold 4 items, at most 3 are served in one response (--max-list-items): narrow the read with labelSelector or metricLabelSelector",
            "{path}"
        );
    }
    // The cap applies to what would be returned: a selector that leaves three is served.
    let (status, body) = server.get(&format!("{wildcard}?metricLabelSelector=n+notin+(3)")).await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(3)), "{body}");
    let (status, body) = server.get(&format!("{external}?labelSelector=n+notin+(0)")).await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(3)), "{body}");
    // A single object's read is no list.
    assert_eq!(server.get(&format!("{V2}/namespaces/default/pods/p-3/m")).await.0, 200);
    server.stop().await;
}

/// The length of a 200 response's body.
async fn body_len(server: &common::TestServer, path: &str) -> usize {
    let response = server.client.get(server.api_url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().len()
}

async fn write(server: &common::TestServer) {
    for i in 0..5 {
        server.post(&format!("/write-metrics/namespaces/default/pods/p-{i}/m?labels=a=b"), "1").await;
    }
}

#[tokio::test]
async fn a_response_over_max_response_bytes_is_refused_and_one_of_exactly_the_limit_is_served() {
    let path = format!("{V1}/namespaces/default/pods/*/m?metricLabelSelector=a%3Db");
    let pretty = format!("{path}&pretty=true");
    let server = start(&[]).await;
    write(&server).await;
    let compact = body_len(&server, &path).await;
    let indented = body_len(&server, &pretty).await;
    server.stop().await;

    for (path, size) in [(&path, compact), (&pretty, indented)] {
        let at_limit = format!("--max-response-bytes={size}");
        let server = start(&[at_limit.as_str()]).await;
        write(&server).await;
        assert_eq!(body_len(&server, path).await, size);
        server.stop().await;

        let below = format!("--max-response-bytes={}", size - 1);
        let server = start(&[below.as_str()]).await;
        write(&server).await;
        let (status, body) = server.get(path).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(
            body["message"],
            format!(
                "the response would be larger than {} bytes, the most served in one response (--max-response-bytes): narrow the read with labelSelector or metricLabelSelector",
                size - 1
            )
        );
        server.stop().await;
    }
}

/// The exact bytes of list responses, compact and indented, in every version and for empty lists: streaming them
/// must not change one byte.
#[tokio::test]
async fn list_bodies_are_byte_for_byte_the_documented_json() {
    let server = start(&[]).await;
    server.post("/write-metrics/namespaces/default/pods/a/q?labels=queue=orders", "1").await;
    server.post("/write-metrics/namespaces/default/pods/b/q?labels=queue=orders", "1500m").await;
    server.post("/write-external-metrics/namespaces/default/e?labels=x=1,y=2", "2").await;
    server.post("/write-external-metrics/namespaces/default/e", "3").await;

    let selector = "metricLabelSelector=queue+in+(orders),!gone";
    let cases = [
        (format!("{V2}/namespaces/default/pods/*/q?{selector}"), false),
        (format!("{V2}/namespaces/default/pods/*/q?{selector}&pretty=true"), true),
        (format!("{V1}/namespaces/default/pods/*/q?{selector}&pretty=true"), true),
        (format!("{V1}/namespaces/default/pods/*/q?pretty=true"), true),
        (format!("{V2}/namespaces/default/pods/*/none?pretty=true"), true),
        (format!("{V2}/namespaces/default/pods/*/none"), false),
        (format!("{EXT}/namespaces/default/e?pretty=true"), true),
        (format!("{EXT}/namespaces/default/none?pretty=true"), true),
    ];
    let expected = [
        r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},"items":[{"describedObject":{"kind":"Pod","namespace":"default","name":"a","apiVersion":"/v1"},"metric":{"name":"q","selector":{"matchExpressions":[{"key":"gone","operator":"DoesNotExist"},{"key":"queue","operator":"In","values":["orders"]}]}},"timestamp":"T","value":"1"},{"describedObject":{"kind":"Pod","namespace":"default","name":"b","apiVersion":"/v1"},"metric":{"name":"q","selector":{"matchExpressions":[{"key":"gone","operator":"DoesNotExist"},{"key":"queue","operator":"In","values":["orders"]}]}},"timestamp":"T","value":"1500m"}]}
"#,
        r#"{
  "kind": "MetricValueList",
  "apiVersion": "custom.metrics.k8s.io/v1beta2",
  "metadata": {},
  "items": [
    {
      "describedObject": {
        "kind": "Pod",
        "namespace": "default",
        "name": "a",
        "apiVersion": "/v1"
      },
      "metric": {
        "name": "q",
        "selector": {
          "matchExpressions": [
            {
              "key": "gone",
              "operator": "DoesNotExist"
            },
            {
              "key": "queue",
              "operator": "In",
              "values": [
                "orders"
              ]
            }
          ]
        }
      },
      "timestamp": "T",
      "value": "1"
    },
    {
      "describedObject": {
        "kind": "Pod",
        "namespace": "default",
        "name": "b",
        "apiVersion": "/v1"
      },
      "metric": {
        "name": "q",
        "selector": {
          "matchExpressions": [
            {
              "key": "gone",
              "operator": "DoesNotExist"
            },
            {
              "key": "queue",
              "operator": "In",
              "values": [
                "orders"
              ]
            }
          ]
        }
      },
      "timestamp": "T",
      "value": "1500m"
    }
  ]
}"#,
        r#"{
  "kind": "MetricValueList",
  "apiVersion": "custom.metrics.k8s.io/v1beta1",
  "metadata": {},
  "items": [
    {
      "describedObject": {
        "kind": "Pod",
        "namespace": "default",
        "name": "a",
        "apiVersion": "/v1"
      },
      "metricName": "q",
      "timestamp": "T",
      "value": "1",
      "selector": {
        "matchExpressions": [
          {
            "key": "gone",
            "operator": "DoesNotExist"
          },
          {
            "key": "queue",
            "operator": "In",
            "values": [
              "orders"
            ]
          }
        ]
      }
    },
    {
      "describedObject": {
        "kind": "Pod",
        "namespace": "default",
        "name": "b",
        "apiVersion": "/v1"
      },
      "metricName": "q",
      "timestamp": "T",
      "value": "1500m",
      "selector": {
        "matchExpressions": [
          {
            "key": "gone",
            "operator": "DoesNotExist"
          },
          {
            "key": "queue",
            "operator": "In",
            "values": [
              "orders"
            ]
          }
        ]
      }
    }
  ]
}"#,
        r#"{
  "kind": "MetricValueList",
  "apiVersion": "custom.metrics.k8s.io/v1beta1",
  "metadata": {},
  "items": [
    {
      "describedObject": {
        "kind": "Pod",
        "namespace": "default",
        "name": "a",
        "apiVersion": "/v1"
      },
      "metricName": "q",
      "timestamp": "T",
      "value": "1",
      "selector": null
    },
    {
      "describedObject": {
        "kind": "Pod",
        "namespace": "default",
        "name": "b",
        "apiVersion": "/v1"
      },
      "metricName": "q",
      "timestamp": "T",
      "value": "1500m",
      "selector": null
    }
  ]
}"#,
        r#"{
  "kind": "MetricValueList",
  "apiVersion": "custom.metrics.k8s.io/v1beta2",
  "metadata": {},
  "items": []
}"#,
        r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},"items":[]}
"#,
        r#"{
  "kind": "ExternalMetricValueList",
  "apiVersion": "external.metrics.k8s.io/v1beta1",
  "metadata": {},
  "items": [
    {
      "metricName": "e",
      "metricLabels": {},
      "timestamp": "T",
      "value": "3"
    },
    {
      "metricName": "e",
      "metricLabels": {
        "x": "1",
        "y": "2"
      },
      "timestamp": "T",
      "value": "2"
    }
  ]
}"#,
        r#"{
  "kind": "ExternalMetricValueList",
  "apiVersion": "external.metrics.k8s.io/v1beta1",
  "metadata": {},
  "items": []
}"#,
    ];
    for ((path, pretty), expected) in cases.iter().zip(expected) {
        let (status, body) = raw(&server, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, expected, "{path} (pretty: {pretty})");
    }
    server.stop().await;
}

/// The API handler over a store holding `count` pods with metric `m`, each labelled with a 200-byte value.
async fn api_with_pods(count: usize) -> custom_metrics_apiserver::api::Api {
    use std::sync::Arc;

    use custom_metrics_apiserver::api::{Api, ReadLimits};
    use custom_metrics_apiserver::cluster::{BuiltinMapper, StandaloneLabelIndex};
    use custom_metrics_apiserver::quantity::Quantity;
    use custom_metrics_apiserver::store::{
        CustomSeriesId, Limits, MemoryStore, MetricStore, SampleWrite, SeriesLabels,
    };

    let store = MemoryStore::new(Limits::default());
    let labels = SeriesLabels::from_map([("a".to_string(), "v".repeat(200))].into());
    for i in 0..count {
        let name = format!("pod-{i:05}");
        let id = CustomSeriesId { resource: "pods", namespace: "default", name: &name, metric: "m" };
        let write = SampleWrite {
            value: Quantity::parse("42").unwrap(),
            labels: labels.clone(),
            ttl: None,
            kind: Default::default(),
        };
        store.put_custom(id, write).await.unwrap();
    }
    Api::new(
        Arc::new(store),
        Arc::new(BuiltinMapper::default()),
        Arc::new(StandaloneLabelIndex),
        1000,
        ReadLimits::default(),
    )
}

/// The body of a GET answered by `api`, frame by frame, with the response's status.
async fn frames_of(api: &custom_metrics_apiserver::api::Api, path: &str) -> (u16, Vec<bytes::Bytes>) {
    use http_body_util::BodyExt;

    let request = http::Request::get(path).body(()).unwrap();
    let response = api.handle(&request).await;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    (status, frames)
}

/// A list of more than a megabyte is never one buffer: it comes in frames of about 64 KiB (one item more at most), in
/// compact and indented form, and is the complete list.
#[tokio::test]
async fn a_large_wildcard_read_is_sent_in_bounded_frames() {
    const FRAME_MAX: usize = 64 * 1024 + 4096;
    let api = api_with_pods(5000).await;
    let selector = "metricLabelSelector=a+notin+(x),!b";
    for (path, pretty) in [
        (format!("{V2}/namespaces/default/pods/*/m?{selector}"), false),
        (format!("{V1}/namespaces/default/pods/*/m?{selector}&pretty=true"), true),
    ] {
        let (status, frames) = frames_of(&api, &path).await;
        assert_eq!(status, 200);
        let total: usize = frames.iter().map(|f| f.len()).sum();
        assert!(total > 1 << 20, "{total} bytes");
        let largest = frames.iter().map(|f| f.len()).max().unwrap();
        assert!(largest <= FRAME_MAX, "a frame of {largest} bytes");
        assert!(frames.len() >= total / FRAME_MAX, "{} frames for {total} bytes", frames.len());

        let body = frames.concat();
        assert_eq!(body.ends_with(b"}\n"), !pretty);
        let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 5000);
        assert_eq!(items[4999]["describedObject"]["name"], "pod-04999");
    }
}

/// Over the wire, a streamed list still carries its exact Content-Length on HTTP/1.1, and both protocols deliver
/// the same bytes.
#[tokio::test]
async fn a_streamed_list_has_its_content_length_and_the_same_bytes_on_both_protocols() {
    let server = start(&[]).await;
    let label = "v".repeat(60);
    for i in 0..1500 {
        let path = format!("/write-metrics/namespaces/default/pods/pod-{i:04}/m?labels=a={label},b={label},c={label}");
        assert_eq!(server.post(&path, "1").await.0, 200);
    }
    let path = format!("{V1}/namespaces/default/pods/*/m?metricLabelSelector=a,b,c,!d,!e&pretty=true");
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server.cert_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let response = http1.get(server.api_url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let length: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let over_http1 = response.bytes().await.unwrap();
    assert_eq!(over_http1.len(), length);
    assert!(length > 512 * 1024, "{length} bytes: long enough to be streamed");

    let response = server.client.get(server.api_url(&path)).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.bytes().await.unwrap(), over_http1);
    let list: serde_json::Value = serde_json::from_slice(&over_http1).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1500);
    server.stop().await;
}
