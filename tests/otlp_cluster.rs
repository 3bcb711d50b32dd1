//! OTLP exports in cluster mode, on the secure port (`--write-auth=token`): authenticated, never anonymous, and
//! authorized as batches and pushes are, once per distinct (namespace, resource, metric) through the write gate;
//! one denied check refuses the whole export with 403 and stores nothing (docs/wire-contract.md §4.7, §6.3).

mod common;

use common::cluster::{ClusterServer, creates_all_but_secret};
use serde_json::{Value, json};

const READ: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/requests";

/// writer may create every metric but `secret`, and read everything.
async fn server() -> ClusterServer {
    ClusterServer::start_for_writer(creates_all_but_secret).await
}

/// An OTLP JSON export: for each (pod, metric, value), a gauge point on that pod of namespace shop; `queue` as an
/// external metric of shop.
fn export(points: &[(&str, &str, f64)]) -> String {
    let resources: Vec<Value> = points
        .iter()
        .map(|(pod, metric, value)| {
            let mut attributes = vec![json!({"key": "k8s.namespace.name", "value": {"stringValue": "shop"}})];
            if !pod.is_empty() {
                attributes.push(json!({"key": "k8s.pod.name", "value": {"stringValue": pod}}));
            }
            json!({"resource": {"attributes": attributes}, "scopeMetrics": [{"metrics": [
                {"name": metric, "gauge": {"dataPoints": [{"asDouble": value}]}}]}]})
        })
        .collect();
    json!({ "resourceMetrics": resources }).to_string()
}

#[tokio::test]
async fn an_anonymous_export_is_401_without_any_review() {
    let server = server().await;
    let client = server.client(None);
    let request = client
        .post(server.url("/v1/metrics"))
        .header("content-type", "application/json")
        .body(export(&[("web-1", "requests", 1.0)]));
    let answer = server.send(request).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(server.access_reviews().is_empty(), "{:?}", server.access_reviews());
    server.stop().await;
}

#[tokio::test]
async fn an_export_is_authorized_per_distinct_metric_and_one_refusal_refuses_it_whole() {
    let server = server().await;
    let client = server.client(None);
    let post = |body: String| {
        client
            .post(server.url("/v1/metrics"))
            .bearer_auth("writer-token")
            .header("content-type", "application/json")
            .body(body)
    };
    let body =
        export(&[("web-1", "requests", 1.0), ("web-2", "requests", 2.0), ("", "queue", 3.0), ("", "queue", 4.0)]);
    let answer = server.send(post(body)).await;
    // The second `queue` point is the same external series as the first: rejected, the others stored.
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["partialSuccess"]["rejectedDataPoints"], "1", "{answer:?}");
    let mut expected = vec![
        json!({"namespace": "shop", "verb": "create", "group": "custom.metrics.k8s.io", "version": "v1beta2",
            "resource": "pods", "subresource": "requests"}),
        json!({"namespace": "shop", "verb": "create", "group": "external.metrics.k8s.io", "version": "v1beta1",
            "resource": "queue"}),
    ];
    expected.sort_by_key(Value::to_string);
    assert_eq!(server.reviewed("create"), expected);
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!((read.status, &read.body["items"][0]["value"]), (200, &json!("1")), "{read:?}");

    // A metric the user may not create refuses the export: 403, a google.rpc.Status, nothing stored.
    let answer = server.send(post(export(&[("web-1", "requests", 9.0), ("web-1", "secret", 1.0)]))).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(
        answer.body["message"],
        r#"pods.custom.metrics.k8s.io is forbidden: User "writer" cannot create resource "pods/secret" in API group "custom.metrics.k8s.io" in the namespace "shop""#
    );
    assert_eq!(answer.body["code"], 7);
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!(read.body["items"][0]["value"], "1", "the allowed point of a refused export was stored: {read:?}");
    server.stop().await;
}
