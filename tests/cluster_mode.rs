//! The cluster-mode request path, black-box over HTTPS: authentication (front proxy, client certificates, bearer
//! tokens, anonymous), authorization (always-allow paths, `system:masters`, SubjectAccessReviews and their cache)
//! and the write gate (docs/wire-contract.md §6.2, §6.3, §10 item 12), against the fake kube-apiserver, in-process.

mod common;

use common::cluster::{Ca, ClusterServer, FRONT_PROXY_CN};
use serde_json::{Value, json};

const READ: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/q";
const WRITE: &str = "/write-metrics/namespaces/default/pods/web-1/q";

fn groups(spec: &Value) -> Vec<&str> {
    spec["groups"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_front_proxy_certificate_makes_the_x_remote_headers_the_user() {
    let server = ClusterServer::start(&[]).await;
    server.fake.allow("alice", "get");
    let request = server
        .front_proxy()
        .get(server.url("/apis/custom.metrics.k8s.io/v1beta2"))
        .header("X-Remote-User", "alice")
        .header("X-Remote-Group", "dev");
    let answer = server.send(request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["kind"], "APIResourceList");
    let reviews = server.access_reviews();
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0]["user"], "alice");
    assert_eq!(groups(&reviews[0]), ["dev", "system:authenticated"]);
    assert_eq!(
        reviews[0]["nonResourceAttributes"],
        json!({"path": "/apis/custom.metrics.k8s.io/v1beta2", "verb": "get"})
    );
    server.stop().await;
}

#[tokio::test]
async fn x_remote_headers_without_the_front_proxy_certificate_are_ignored() {
    let server = ClusterServer::start(&[]).await;
    server.fake.allow("alice", "get");
    // No certificate: the request is anonymous, whatever the headers say.
    let request = server.client(None).get(server.url(READ)).header("X-Remote-User", "alice");
    let answer = server.send(request).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let message = answer.body["message"].as_str().unwrap();
    assert!(message.contains(r#"User "system:anonymous" cannot get resource "pods/q""#), "{message}");
    // A certificate of the client CA, not the front proxy's: its subject is the user, the headers are ignored.
    let carol = server.client(Some(server.client_ca.client_identity("carol", None)));
    let answer = server.send(carol.get(server.url(READ)).header("X-Remote-User", "alice")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    // The front proxy's CA with a common name that is not allowed does not make a front proxy either.
    let impostor = server.client(Some(server.front_proxy_ca.client_identity("impostor", None)));
    let answer = server.send(impostor.get(server.url(READ)).header("X-Remote-User", "alice")).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    // The front proxy's common name on a certificate of the client CA: a client named so, not a front proxy.
    let lookalike = server.client(Some(server.client_ca.client_identity(FRONT_PROXY_CN, None)));
    let answer = server.send(lookalike.get(server.url(READ)).header("X-Remote-User", "alice")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let users: Vec<Value> = server.access_reviews().iter().map(|spec| spec["user"].clone()).collect();
    assert_eq!(users, [json!("system:anonymous"), json!("carol"), json!(FRONT_PROXY_CN)]);
    server.stop().await;
}

#[tokio::test]
async fn a_client_certificate_of_the_client_ca_authenticates_its_subject() {
    let server = ClusterServer::start(&[]).await;
    server.fake.allow("carol", "get");
    let carol = server.client(Some(server.client_ca.client_identity("carol", Some("dev"))));
    let answer = server.send(carol.get(server.url("/apis/custom.metrics.k8s.io/v1beta2"))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let reviews = server.access_reviews();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["user"], "carol");
    assert_eq!(groups(&reviews[0]), ["dev", "system:authenticated"]);
    // A certificate of a CA the server does not trust for clients is refused, not taken as anonymous.
    let stranger = server.client(Some(Ca::new("unknown").client_identity("carol", None)));
    let answer = server.send(stranger.get(server.url("/apis/custom.metrics.k8s.io/v1beta2"))).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_bearer_token_is_reviewed_once_with_a_token_review() {
    let server = ClusterServer::start(&[]).await;
    server.fake.add_token("reader-token", "reader", &["readers"]);
    server.fake.allow("reader", "get");
    let client = server.client(None);
    for _ in 0..2 {
        let answer = server.send(client.get(server.url("/apis")).bearer_auth("reader-token")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(server.token_reviews(), 1, "the second request is answered from the token cache");
    let reviews = server.access_reviews();
    assert_eq!(reviews[0]["user"], "reader");
    assert_eq!(groups(&reviews[0]), ["readers", "system:authenticated"]);

    let answer = server.send(client.get(server.url("/apis")).bearer_auth("wrong-token")).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
            "reason": "Unauthorized", "code": 401})
    );
    assert_eq!(server.token_reviews(), 2);
    server.stop().await;
}

#[tokio::test]
async fn subject_access_reviews_allow_and_deny_and_both_answers_are_cached() {
    let server = ClusterServer::start(&[]).await;
    server.fake.add_token("alice-token", "alice", &[]);
    server.fake.add_token("bob-token", "bob", &[]);
    server.fake.allow("alice", "get");
    let client = server.client(None);
    for _ in 0..2 {
        let answer = server.send(client.get(server.url(READ)).bearer_auth("alice-token")).await;
        // Allowed: the read itself finds nothing stored.
        assert_eq!(answer.status, 404, "{answer:?}");
        assert_eq!(answer.body["reason"], "NotFound");
        let answer = server.send(client.get(server.url(READ)).bearer_auth("bob-token")).await;
        assert_eq!(answer.status, 403, "{answer:?}");
        assert_eq!(
            answer.body["message"],
            r#"pods.custom.metrics.k8s.io "web-1" is forbidden: User "bob" cannot get resource "pods/q" in API group "custom.metrics.k8s.io" in the namespace "default""#
        );
        assert_eq!(answer.body["details"], json!({"name": "web-1", "group": "custom.metrics.k8s.io", "kind": "pods"}));
    }
    let users: Vec<Value> = server.access_reviews().iter().map(|spec| spec["user"].clone()).collect();
    assert_eq!(users, [json!("alice"), json!("bob")], "the second requests are answered from the cache");
    let review = &server.access_reviews()[0];
    assert_eq!(
        review["resourceAttributes"],
        json!({"namespace": "default", "verb": "get", "group": "custom.metrics.k8s.io", "version": "v1beta2",
            "resource": "pods", "subresource": "q", "name": "web-1"})
    );
    server.stop().await;
}

#[tokio::test]
async fn an_anonymous_write_is_401_without_any_review() {
    let server = ClusterServer::start(&[]).await;
    let answer = server.send(server.client(None).post(server.url(WRITE)).body("42")).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.body["message"], "Unauthorized");
    // Nor do the front proxy's headers make a write without its certificate anything but anonymous.
    let request = server.client(None).post(server.url(WRITE)).header("X-Remote-User", "writer").body("42");
    assert_eq!(server.send(request).await.status, 401);
    assert!(server.access_reviews().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_write_is_authorized_on_what_it_resolves_to_and_refused_writes_store_nothing() {
    let server = ClusterServer::start(&[]).await;
    server.fake.add_token("writer-token", "writer", &[]);
    server.fake.add_token("nobody-token", "nobody", &[]);
    server.fake.add_token("reader-token", "reader", &[]);
    server.fake.allow("writer", "create");
    server.fake.allow("reader", "get");
    let client = server.client(None);
    let read = || server.send(client.get(server.url(READ)).bearer_auth("reader-token"));

    // A token without RBAC: 403, and nothing is stored.
    let answer = server.send(client.post(server.url(WRITE)).bearer_auth("nobody-token").body("42")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(
        answer.body["message"],
        r#"pods.custom.metrics.k8s.io "web-1" is forbidden: User "nobody" cannot create resource "pods/q" in API group "custom.metrics.k8s.io" in the namespace "default""#
    );
    assert_eq!(read().await.status, 404);

    // The resource as written (`pod`) is resolved through discovery before the review.
    let path = "/write-metrics/namespaces/default/pod/web-1/q";
    let answer = server.send(client.post(server.url(path)).bearer_auth("writer-token").body("42")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = read().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["items"][0]["value"], "42");
    let create = server.access_reviews().into_iter().find(|spec| spec["user"] == "writer").unwrap();
    assert_eq!(
        create["resourceAttributes"],
        json!({"namespace": "default", "verb": "create", "group": "custom.metrics.k8s.io", "version": "v1beta2",
            "resource": "pods", "subresource": "q", "name": "web-1"})
    );

    // DELETE is authorized as delete, which the writer may not do: the value stays.
    let answer = server.send(client.delete(server.url(WRITE)).bearer_auth("writer-token")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body["message"].as_str().unwrap().contains(r#"cannot delete resource "pods/q""#), "{answer:?}");
    assert_eq!(read().await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn always_allowed_paths_need_no_credentials_and_no_review() {
    let server = ClusterServer::start(&[]).await;
    let client = server.client(None);
    for path in ["/healthz", "/livez"] {
        let answer = server.send(client.get(server.url(path))).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, Some("ok")), "{path}");
    }
    // Answered by the health endpoint (ready or not yet: the pods watch may still be listing), not refused.
    let answer = server.send(client.get(server.url("/readyz"))).await;
    assert!(matches!(answer.status, 200 | 500) && answer.body.is_string(), "{answer:?}");
    assert!(server.access_reviews().is_empty(), "{:?}", server.access_reviews());
    // Other paths need the review, which denies the anonymous user: the default list is exact paths.
    for (path, message) in [
        ("/version", r#"forbidden: User "system:anonymous" cannot get path "/version""#),
        ("/healthz/ping", r#"forbidden: User "system:anonymous" cannot get path "/healthz/ping""#),
    ] {
        let answer = server.send(client.get(server.url(path))).await;
        assert_eq!((answer.status, answer.body["message"].as_str()), (403, Some(message)), "{path}");
    }
    assert_eq!(server.access_reviews().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn system_masters_need_no_subject_access_review() {
    let server = ClusterServer::start(&[]).await;
    let proxy = server.front_proxy();
    let as_admin = |request: reqwest::RequestBuilder| {
        request.header("X-Remote-User", "admin").header("X-Remote-Group", "system:masters")
    };
    let answer = server.send(as_admin(proxy.post(server.url(WRITE)).body("7"))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = server.send(as_admin(proxy.get(server.url(READ)))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["items"][0]["value"], "7");
    assert!(server.access_reviews().is_empty(), "{:?}", server.access_reviews());
    // The same user without the group is reviewed, and denied.
    let answer = server.send(proxy.get(server.url(READ)).header("X-Remote-User", "admin")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(server.access_reviews().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn the_audit_id_is_echoed_on_answers_and_refusals() {
    let server = ClusterServer::start(&[]).await;
    let client = server.client(None);
    let answer = server.send(client.get(server.url("/healthz")).header("Audit-ID", "a-1")).await;
    assert_eq!((answer.status, answer.audit_id.as_deref()), (200, Some("a-1")));
    let answer = server.send(client.post(server.url(WRITE)).header("Audit-ID", "a-2").body("1")).await;
    assert_eq!((answer.status, answer.audit_id.as_deref()), (401, Some("a-2")));
    let answer = server.send(client.get(server.url("/healthz"))).await;
    assert_eq!(answer.audit_id, None);
    server.stop().await;
}
