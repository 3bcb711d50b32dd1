//! Pushes in cluster mode, on the secure port (`--write-auth=token`): authenticated, never anonymous, and authorized
//! as batches are, once per distinct (namespace, resource, metric) through the write gate, with `delete` for the
//! series a push replaces or a DELETE removes (docs/wire-contract.md §4.5, §6.3).

mod common;

use common::cluster::{ClusterServer, creates_all_but_secret};
use serde_json::{Value, json};

const READ: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/requests_total";
const GROUP: &str = "/metrics/job/app/namespace/shop";

/// writer may create every metric but `secret`, delete every metric but `keep`, and read everything.
async fn server() -> ClusterServer {
    ClusterServer::start_for_writer(|verb, metric| {
        if verb == "delete" { metric != "keep" } else { creates_all_but_secret(verb, metric) }
    })
    .await
}

#[tokio::test]
async fn an_anonymous_push_is_401_without_any_review() {
    let server = server().await;
    let client = server.client(None);
    let answer = server.send(client.put(server.url(GROUP)).body("requests_total{pod=\"web-1\"} 1\n")).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.body["kind"], "Status");
    assert!(server.access_reviews().is_empty(), "{:?}", server.access_reviews());
    server.stop().await;
}

#[tokio::test]
async fn a_push_is_authorized_per_distinct_metric_and_replacing_needs_delete() {
    let server = server().await;
    let client = server.client(None);
    let body = "requests_total{pod=\"web-1\"} 1\nrequests_total{pod=\"web-2\"} 2\nkeep{pod=\"web-1\"} 3\nqueue{q=\"a\"} 4\nqueue{q=\"b\"} 5\n";
    let answer = server.send(client.put(server.url(GROUP)).bearer_auth("writer-token").body(body)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let pods = |metric: &str| {
        json!({"namespace": "shop", "verb": "create", "group": "custom.metrics.k8s.io", "version": "v1beta2",
            "resource": "pods", "subresource": metric})
    };
    let mut expected = vec![
        pods("keep"),
        pods("requests_total"),
        json!({"namespace": "shop", "verb": "create", "group": "external.metrics.k8s.io", "version": "v1beta1",
            "resource": "queue"}),
    ];
    expected.sort_by_key(Value::to_string);
    assert_eq!(server.reviewed("create"), expected);
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!((read.status, &read.body["items"][0]["value"]), (200, &json!("1")), "{read:?}");

    // Replacing the group deletes `keep`, which writer may not delete: refused with 403, nothing changed.
    let answer = server
        .send(client.put(server.url(GROUP)).bearer_auth("writer-token").body("requests_total{pod=\"web-1\"} 9\n"))
        .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let causes = answer.body["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0]["field"], "the group's keep of pods shop/web-1");
    assert_eq!(causes[0]["reason"], "FieldValueForbidden");
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!(read.body["items"][0]["value"], "1", "{read:?}");
    // The refused PUT asked for delete on each distinct metric it would have replaced.
    let delete = |resource: &str, subresource: Option<&str>| {
        let (group, version) = if subresource.is_some() {
            ("custom.metrics.k8s.io", "v1beta2")
        } else {
            ("external.metrics.k8s.io", "v1beta1")
        };
        let mut spec =
            json!({"namespace": "shop", "verb": "delete", "group": group, "version": version, "resource": resource});
        if let Some(subresource) = subresource {
            spec["subresource"] = json!(subresource);
        }
        spec
    };
    let mut expected =
        vec![delete("pods", Some("keep")), delete("pods", Some("requests_total")), delete("queue", None)];
    expected.sort_by_key(Value::to_string);
    assert_eq!(server.reviewed("delete"), expected);
    // A POST replaces only its families: web-2's requests_total goes, `keep` stays.
    let answer = server
        .send(client.post(server.url(GROUP)).bearer_auth("writer-token").body("requests_total{pod=\"web-1\"} 9\n"))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let web_2 = server.send(client.get(server.url(&READ.replace("web-1", "web-2"))).bearer_auth("writer-token")).await;
    assert_eq!(web_2.status, 404, "{web_2:?}");
    let keep =
        server.send(client.get(server.url(&READ.replace("requests_total", "keep"))).bearer_auth("writer-token")).await;
    assert_eq!(keep.body["items"][0]["value"], "3", "{keep:?}");
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!(read.body["items"][0]["value"], "9", "{read:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_sample_the_user_may_not_write_refuses_the_push_and_delete_is_authorized_too() {
    let server = server().await;
    let client = server.client(None);
    let body = "requests_total{pod=\"web-1\"} 1\nsecret{pod=\"web-1\"} 2\n";
    let answer = server.send(client.put(server.url(GROUP)).bearer_auth("writer-token").body(body)).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let causes = answer.body["details"]["causes"].as_array().unwrap();
    assert_eq!(causes[0]["field"], "secret{pod=\"web-1\"}");
    assert_eq!(
        causes[0]["message"],
        r#"pods.custom.metrics.k8s.io is forbidden: User "writer" cannot create resource "pods/secret" in API group "custom.metrics.k8s.io" in the namespace "default""#
            .replace("\"default\"", "\"shop\"")
    );
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!(read.status, 404, "the allowed sample of a refused push was stored: {read:?}");

    // DELETE asks for delete on each distinct metric of the group.
    let body = "requests_total{pod=\"web-1\"} 1\nkeep{pod=\"web-1\"} 2\n";
    let answer = server.send(client.put(server.url(GROUP)).bearer_auth("writer-token").body(body)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = server.send(client.delete(server.url(GROUP)).bearer_auth("writer-token")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let read = server.send(client.get(server.url(READ)).bearer_auth("writer-token")).await;
    assert_eq!(read.status, 200, "a refused DELETE removed a value: {read:?}");
    let answer =
        server.send(client.put(server.url(GROUP)).bearer_auth("writer-token").body("keep{pod=\"web-1\"} 2\n")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    server.stop().await;
}
