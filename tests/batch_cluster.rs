//! Batch writes in cluster mode, on the secure port (`--write-auth=token`): authenticated, never anonymous, and
//! authorized once per distinct (namespace, resource, metric) through the write gate before anything is stored
//! (docs/wire-contract.md §4.4, §6.3).

mod common;

use common::cluster::{ClusterServer, creates_all_but_secret};
use serde_json::{Value, json};

const READ: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/q";

/// writer may create every metric but `secret` (custom or external) and read everything.
async fn server() -> ClusterServer {
    ClusterServer::start_for_writer(creates_all_but_secret).await
}

fn batch(items: &[Value]) -> String {
    json!({ "items": items }).to_string()
}

fn pod_item(name: &str, metric: &str, value: i64) -> Value {
    json!({"namespace": "default", "resource": "pod", "name": name, "metric": metric, "value": value})
}

#[tokio::test]
async fn an_anonymous_batch_is_401_without_any_review() {
    let server = server().await;
    let client = server.client(None);
    let answer = server.send(client.post(server.url("/write-metrics")).body(batch(&[pod_item("web-1", "q", 1)]))).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.body["message"], "Unauthorized");
    assert!(server.access_reviews().is_empty(), "{:?}", server.access_reviews());
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!(read.status, 404, "{read:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_is_authorized_once_per_distinct_namespace_resource_and_metric() {
    let server = server().await;
    let client = server.client(None);
    let items = [
        pod_item("web-1", "q", 1),
        pod_item("web-2", "q", 2),
        pod_item("web-3", "q", 3),
        pod_item("web-1", "r", 4),
        json!({"resource": "namespaces", "name": "default", "metric": "work", "value": 5}),
        json!({"namespace": "default", "metric": "queue", "labels": {"q": "a"}, "value": 6}),
        json!({"namespace": "default", "metric": "queue", "labels": {"q": "b"}, "value": 7}),
    ];
    let answer =
        server.send(client.post(server.url("/write-metrics")).bearer_auth("writer-token").body(batch(&items))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // Made a few at a time: in any order.
    let sorted = |mut values: Vec<Value>| {
        values.sort_by_key(Value::to_string);
        values
    };
    let creates: Vec<Value> = server
        .access_reviews()
        .into_iter()
        .filter(|spec| spec["resourceAttributes"]["verb"] == "create")
        .map(|spec| spec["resourceAttributes"].clone())
        .collect();
    assert_eq!(
        sorted(creates),
        sorted(vec![
            // No object name: the check covers every object of the resource in the namespace.
            json!({"namespace": "default", "verb": "create", "group": "custom.metrics.k8s.io", "version": "v1beta2",
                "resource": "pods", "subresource": "q"}),
            json!({"namespace": "default", "verb": "create", "group": "custom.metrics.k8s.io", "version": "v1beta2",
                "resource": "pods", "subresource": "r"}),
            // A Namespace object's metric: the attributes of its R5 read, as for a single write.
            json!({"namespace": "default", "verb": "create", "group": "custom.metrics.k8s.io", "version": "v1beta2",
                "resource": "metrics", "name": "work"}),
            json!({"namespace": "default", "verb": "create", "group": "external.metrics.k8s.io", "version": "v1beta1",
                "resource": "queue"}),
        ])
    );
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!((read.status, &read.body["items"][0]["value"]), (200, &json!("1")), "{read:?}");
    // Answered from the access-review cache the second time.
    let before = server.access_reviews().len();
    let answer =
        server.send(client.post(server.url("/write-metrics")).bearer_auth("writer-token").body(batch(&items))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(server.access_reviews().len(), before);
    server.stop().await;
}

#[tokio::test]
async fn one_item_the_user_may_not_write_refuses_the_batch_with_403_and_stores_nothing() {
    let server = server().await;
    let client = server.client(None);
    let items = [
        pod_item("web-1", "q", 1),
        pod_item("web-1", "secret", 2),
        json!({"namespace": "default", "metric": "secret", "value": 3}),
        pod_item("web-2", "secret", 4),
    ];
    let answer =
        server.send(client.post(server.url("/write-metrics")).bearer_auth("writer-token").body(batch(&items))).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.body["reason"], "Forbidden");
    let causes = answer.body["details"]["causes"].as_array().unwrap();
    let fields: Vec<&str> = causes.iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["items[1]", "items[2]", "items[3]"]);
    assert!(causes.iter().all(|c| c["reason"] == "FieldValueForbidden"), "{causes:?}");
    assert_eq!(
        causes[0]["message"],
        r#"pods.custom.metrics.k8s.io is forbidden: User "writer" cannot create resource "pods/secret" in API group "custom.metrics.k8s.io" in the namespace "default""#
    );
    assert_eq!(
        causes[1]["message"],
        r#"secret.external.metrics.k8s.io is forbidden: User "writer" cannot create resource "secret" in API group "external.metrics.k8s.io" in the namespace "default""#
    );
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!(read.status, 404, "the allowed item of a refused batch was stored: {read:?}");
    // Items that resolve to nothing and items refused by authorization are named together.
    let items = [
        pod_item("web-1", "secret", 1),
        json!({"namespace": "default", "resource": "widgets", "name": "a", "metric": "q", "value": 1}),
    ];
    let answer =
        server.send(client.post(server.url("/write-metrics")).bearer_auth("writer-token").body(batch(&items))).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let fields: Vec<&str> =
        answer.body["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["items[0]", "items[1].resource"]);
    server.stop().await;
}
