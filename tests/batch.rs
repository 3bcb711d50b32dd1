//! Batch writes (`POST /write-metrics`, docs/wire-contract.md §4.4) against a standalone server on 127.0.0.1:
//! stored and read back through the Kubernetes APIs, refused whole with every bad item named, bounded.

mod common;

use common::{TestServer, items, start};
use serde_json::{Value, json};

const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";

/// POSTs `body` to the batch path of the write port: (status, body as JSON or as a string value).
async fn batch(server: &TestServer, body: impl Into<String>) -> (u16, Value) {
    let response = server.writer.post(server.write_url("/write-metrics")).body(body.into()).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn items_body(items: &[Value]) -> String {
    json!({ "items": items }).to_string()
}

#[tokio::test]
async fn a_mixed_batch_is_stored_and_read_back_through_the_apis() {
    let server = start(&[]).await;
    let body = items_body(&[
        json!({"namespace": "default", "resource": "pods", "name": "web-1", "metric": "q", "value": "42",
            "labels": {"queue": "orders"}}),
        // Resolved as a single write's path is: `deployment` is deployments.apps.
        json!({"namespace": "default", "resource": "deployment", "name": "web", "metric": "rps", "value": 1.5}),
        json!({"resource": "nodes", "name": "n1", "metric": "temp", "value": "300m", "ttl": "1h"}),
        json!({"resource": "namespaces", "name": "default", "metric": "work", "value": 9}),
        json!({"namespace": "default", "metric": "queue_depth", "labels": {"queue": "orders"}, "value": "17"}),
        json!({"namespace": "default", "metric": "queue_depth", "labels": "queue=billing", "value": "18", "ttl": 60}),
    ]);
    assert_eq!(batch(&server, body).await, (200, Value::String(String::new())));

    let (status, list) =
        server.get(&format!("{V2}/namespaces/default/pods/web-1/q?metricLabelSelector=queue%3Dorders")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(items(&list)[0]["value"], "42");
    assert_eq!(
        server.first_value(&format!("{V2}/namespaces/default/deployments.apps/web/rps")).await,
        Ok("1500m".into())
    );
    assert_eq!(server.first_value(&format!("{V2}/nodes/n1/temp")).await, Ok("300m".into()));
    assert_eq!(server.first_value(&format!("{V2}/namespaces/default/metrics/work")).await, Ok("9".into()));
    let (status, list) = server.get(&format!("{EXT}/namespaces/default/queue_depth")).await;
    assert_eq!(status, 200, "{list}");
    let external: Vec<(Value, Value)> =
        items(&list).into_iter().map(|item| (item["metricLabels"].clone(), item["value"].clone())).collect();
    assert_eq!(external, [(json!({"queue": "billing"}), json!("18")), (json!({"queue": "orders"}), json!("17"))]);
    // The last write of a series in a batch wins, as in a sequence of single writes.
    let body = items_body(&[
        json!({"resource": "nodes", "name": "n1", "metric": "temp", "value": 1}),
        json!({"resource": "nodes", "name": "n1", "metric": "temp", "value": 2}),
    ]);
    assert_eq!(batch(&server, body).await.0, 200);
    assert_eq!(server.first_value(&format!("{V2}/nodes/n1/temp")).await, Ok("2".into()));
    // An empty batch stores nothing and is not an error.
    assert_eq!(batch(&server, r#"{"items": []}"#).await.0, 200);
    server.stop().await;
}

/// A good item, which must not be stored when any other item of its batch is bad.
fn good() -> Value {
    json!({"namespace": "default", "resource": "pods", "name": "good", "metric": "q", "value": 1})
}

const GOOD_READ: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/good/q";

#[tokio::test]
async fn each_kind_of_bad_item_refuses_the_batch_with_its_index_and_stores_nothing() {
    let server = start(&["--max-labels-per-series=2"]).await;
    let ns = |item: Value| {
        let mut item = item;
        item["namespace"] = json!("default");
        item
    };
    // (bad item, field of the cause, HTTP code, cause reason, start of the message)
    let cases: Vec<(Value, &str, u16, &str, &str)> = vec![
        (ns(json!({"metric": "m", "value": "abc"})), "value", 400, "FieldValueInvalid", "invalid value \"abc\""),
        (ns(json!({"metric": "m", "value": "\"1"})), "value", 400, "FieldValueInvalid", "invalid value"),
        (ns(json!({"metric": "m", "value": null})), "value", 400, "FieldValueRequired", "Required value: value"),
        (ns(json!({"metric": "m", "value": true})), "value", 400, "FieldValueInvalid", "invalid value \"true\""),
        (ns(json!({"value": 1})), "metric", 400, "FieldValueRequired", "Required value: metric"),
        (json!({"metric": "m", "value": 1}), "namespace", 400, "FieldValueRequired", "Required value: namespace"),
        (ns(json!({"metric": "a b", "value": 1})), "metric", 422, "FieldValueInvalid", "invalid metric name \"a b\""),
        (
            json!({"namespace": "Default", "metric": "m", "value": 1}),
            "namespace",
            422,
            "FieldValueInvalid",
            "invalid namespace \"Default\"",
        ),
        (
            ns(json!({"resource": "pods", "name": "Web", "metric": "m", "value": 1})),
            "name",
            422,
            "FieldValueInvalid",
            "invalid object name \"Web\"",
        ),
        (
            ns(json!({"resource": "pods", "metric": "m", "value": 1})),
            "name",
            400,
            "FieldValueRequired",
            "Required value: name",
        ),
        (
            ns(json!({"name": "x", "metric": "m", "value": 1})),
            "name",
            400,
            "FieldValueInvalid",
            "an external item has no name",
        ),
        (
            ns(json!({"resource": "widgets", "name": "a", "metric": "m", "value": 1})),
            "resource",
            404,
            "FieldValueNotFound",
            "the server doesn't have a resource type \"widgets\"",
        ),
        (
            json!({"resource": "pods", "name": "a", "metric": "m", "value": 1}),
            "namespace",
            400,
            "FieldValueInvalid",
            "pods is namespaced",
        ),
        (
            ns(json!({"resource": "nodes", "name": "a", "metric": "m", "value": 1})),
            "namespace",
            400,
            "FieldValueInvalid",
            "nodes is cluster-scoped",
        ),
        (
            ns(json!({"metric": "m", "value": 1, "labels": {"-a": "b"}})),
            "labels",
            400,
            "FieldValueInvalid",
            "<nil>: Invalid value: \"-a\"",
        ),
        (
            ns(json!({"metric": "m", "value": 1, "labels": "a"})),
            "labels",
            400,
            "FieldValueInvalid",
            "invalid selector: [a]",
        ),
        (
            ns(json!({"metric": "m", "value": 1, "ttl": "soon"})),
            "ttl",
            400,
            "FieldValueInvalid",
            "\"soon\" is not a duration",
        ),
        (ns(json!({"metric": "m", "value": 1, "ttl": "1ns"})), "ttl", 400, "FieldValueInvalid", "\"1ns\" is too short"),
        (
            ns(json!({"metric": "m", "value": 1, "colour": "red"})),
            "",
            400,
            "FieldValueInvalid",
            "not an item: unknown field `colour`",
        ),
        (json!(42), "", 400, "FieldValueInvalid", "not an item"),
        // Refused by the store as it applies the batch: the good item, applied first, is undone.
        (
            ns(json!({"metric": "m", "value": 1, "labels": {"a": "1", "b": "2", "c": "3"}})),
            "",
            422,
            "FieldValueTooMany",
            "too many labels: 3 given, at most 2",
        ),
    ];
    for (bad, field, code, reason, message) in cases {
        let (status, answer) = batch(&server, items_body(&[good(), bad.clone()])).await;
        assert_eq!(status, code, "{bad}: {answer}");
        assert_eq!(answer["kind"], "Status", "{bad}: {answer}");
        assert_eq!(answer["code"], code, "{bad}: {answer}");
        let expected_field = if field.is_empty() { "items[1]".to_string() } else { format!("items[1].{field}") };
        let causes = answer["details"]["causes"].as_array().unwrap_or_else(|| panic!("{bad}: {answer}"));
        assert_eq!(causes.len(), 1, "{bad}: {answer}");
        assert_eq!(causes[0]["field"], expected_field.as_str(), "{bad}: {answer}");
        assert_eq!(causes[0]["reason"], reason, "{bad}: {answer}");
        let cause_message = causes[0]["message"].as_str().unwrap();
        assert!(cause_message.starts_with(message), "{bad}: {cause_message}");
        let summary = answer["message"].as_str().unwrap();
        assert!(
            summary.starts_with(
                "the batch was refused and nothing was stored: 1 of 2 items cannot be written; the first, items[1]"
            ),
            "{summary}"
        );
        assert_eq!(server.first_value(GOOD_READ).await, Err(404), "{bad}: the good item was stored");
    }
    // Several bad items: every one is named, in order, and the code is the first one's.
    let body = items_body(&[
        json!({"namespace": "default", "metric": "m", "value": "abc"}),
        good(),
        json!({"namespace": "default", "resource": "widgets", "name": "a", "metric": "m", "value": 1}),
        json!({"namespace": "Default", "metric": "m"}),
    ]);
    let (status, answer) = batch(&server, body).await;
    assert_eq!(status, 400, "{answer}");
    let fields: Vec<&str> =
        answer["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["items[0].value", "items[2].resource", "items[3].namespace", "items[3].value"]);
    assert!(answer["message"].as_str().unwrap().contains("3 of 4 items cannot be written"), "{answer}");
    assert_eq!(server.first_value(GOOD_READ).await, Err(404));
    let (_, discovery) = server.get(V2).await;
    assert!(!discovery.to_string().contains("pods/q"), "{discovery}");
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_a_batch_is_a_400_and_the_route_takes_only_post() {
    let server = start(&[]).await;
    for body in ["", "5", "[]", "{}", r#"{"items": {}}"#, r#"{"items": [], "more": 1}"#, r#"{"items": []} x"#] {
        let (status, answer) = batch(&server, body).await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        assert!(answer["message"].as_str().unwrap().starts_with("invalid batch: "), "{body:?}: {answer}");
    }
    let response = server.writer.get(server.write_url("/write-metrics")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let response = server
        .writer
        .post(server.write_url("/write-metrics?ttl=30s"))
        .body(items_body(&[good()]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("invalid query parameter ttl: unknown parameter; a batch takes no parameters")
    );
    let response = server
        .writer
        .post(server.write_url("/write-metrics"))
        .header("Content-Encoding", "gzip")
        .body(items_body(&[good()]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(server.first_value(GOOD_READ).await, Err(404));
    server.stop().await;
}

fn numbered(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"namespace": "default", "resource": "pods", "name": format!("p-{i}"), "metric": "m", "value": i})).collect()
}

#[tokio::test]
async fn too_many_items_or_too_large_a_body_is_a_413_and_stores_nothing() {
    let server = start(&["--max-batch-items=3", "--max-batch-body-bytes=1024"]).await;
    assert_eq!(batch(&server, items_body(&numbered(3))).await.0, 200);
    assert_eq!(server.first_value(&format!("{V2}/namespaces/default/pods/p-2/m")).await, Ok("2".into()));
    let mut four = numbered(4);
    for item in &mut four {
        item["metric"] = json!("other");
    }
    let (status, answer) = batch(&server, items_body(&four)).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["reason"], "RequestEntityTooLarge");
    assert_eq!(answer["message"], "the batch holds more than 3 items, the most one batch may hold (--max-batch-items)");
    assert_eq!(server.first_value(&format!("{V2}/namespaces/default/pods/p-0/other")).await, Err(404));
    let padded = format!("{}{}", items_body(&numbered(1)), " ".repeat(1024));
    let (status, answer) = batch(&server, padded).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["message"], "request body exceeds 1024 bytes (--max-batch-body-bytes)");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_may_be_larger_than_a_single_writes_body_limit() {
    let server = start(&["--max-request-body-bytes=64"]).await;
    let body = items_body(&numbered(1000));
    assert!(body.len() > 64 * 100);
    assert_eq!(batch(&server, body).await.0, 200);
    assert_eq!(server.first_value(&format!("{V2}/namespaces/default/pods/p-999/m")).await, Ok("999".into()));
    let (_, list) = server.get(&format!("{V2}/namespaces/default/pods/*/m")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1000);
    server.stop().await;
}

#[tokio::test]
async fn a_store_that_fills_up_mid_batch_is_undone_and_the_batch_refused() {
    let server = start(&["--max-series=4"]).await;
    // Two series before the batch: one the batch replaces (value, labels, lifetime), one it leaves alone.
    let seed = "/write-metrics/namespaces/default/pods/a/m?labels=v=old&ttl=1h";
    assert_eq!(server.post(seed, "1").await.0, 200);
    assert_eq!(server.post("/write-external-metrics/namespaces/default/e?labels=k=old", "5").await.0, 200);
    let body = items_body(&[
        json!({"namespace": "default", "resource": "pods", "name": "a", "metric": "m", "value": 2, "labels": {"v": "new"}}),
        json!({"namespace": "default", "resource": "pods", "name": "b", "metric": "m", "value": 3}),
        json!({"namespace": "default", "metric": "e", "labels": {"k": "new"}, "value": 6}),
        json!({"namespace": "default", "resource": "pods", "name": "c", "metric": "m", "value": 4}),
    ]);
    let (status, answer) = batch(&server, body).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["reason"], "Forbidden");
    let causes = answer["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 1, "{answer}");
    assert_eq!(causes[0]["field"], "items[3]");
    assert_eq!(causes[0]["reason"], "FieldValueForbidden");
    assert!(causes[0]["message"].as_str().unwrap().starts_with("series limit reached"), "{answer}");
    // Everything as before the batch.
    let (status, list) = server.get(&format!("{V2}/namespaces/default/pods/a/m?metricLabelSelector=v%3Dold")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(items(&list)[0]["value"], "1");
    for pod in ["b", "c"] {
        assert_eq!(server.first_value(&format!("{V2}/namespaces/default/pods/{pod}/m")).await, Err(404), "{pod}");
    }
    let (_, list) = server.get(&format!("{EXT}/namespaces/default/e")).await;
    let labels: Vec<Value> = items(&list).into_iter().map(|item| item["metricLabels"].clone()).collect();
    assert_eq!(labels, [json!({"k": "old"})], "{list}");
    // The series the batch created were removed: room for exactly two more series, as before it.
    let two = items_body(&numbered(2));
    assert_eq!(batch(&server, two).await.0, 200);
    assert_eq!(server.post("/write-metrics/namespaces/default/pods/z/m", "1").await.0, 403);
    server.stop().await;
}
