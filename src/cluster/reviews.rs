//! TokenReview and SubjectAccessReview through kube-apiserver: the cluster's [`TokenReviewer`] and
//! [`AccessReviewer`]. Caching is the authenticator's and authorizer's job.
//!
//! The reviews are posted as raw requests whose answers are parsed here, not through `kube::Api`: kube's client
//! logs the whole body of an answer it cannot parse, and a TokenReview answer echoes the token in `spec.token`.
//! Errors built here carry no part of an answer's body but a `Status` message, with the token cut out.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{AccessReviewer, Attributes, Decision, ReviewError, Target, TokenReviewer, UserInfo};

const TOKEN_REVIEW: &str = "TokenReview";
const ACCESS_REVIEW: &str = "SubjectAccessReview";
const TOKEN_REVIEWS_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// Largest review answer read; real ones are well under a kilobyte.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// `Some(s)` unless `s` is empty (Go's `omitempty`).
fn given(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Why kube-apiserver's answer to a review was an error.
#[derive(Debug, thiserror::Error)]
enum AnswerError {
    /// An error status with a `Status` body.
    #[error("kube-apiserver answered {code} {reason}: {message}")]
    Status { code: u16, reason: String, message: String },
    /// An error status without a readable `Status` body (the body is not shown: it may hold the token).
    #[error("kube-apiserver answered {code} with a body that is not a Status")]
    NoStatus { code: u16 },
    /// The request failed or the answer could not be read.
    #[error(transparent)]
    Client(#[from] kube::Error),
    /// The answer was larger than [`MAX_ANSWER_BYTES`] or its body failed.
    #[error("reading the answer: {0}")]
    Body(String),
}

/// Where and what a JSON parse failed on, without the offending text (serde_json quotes it).
fn json_error(error: &serde_json::Error) -> String {
    let category = match error.classify() {
        serde_json::error::Category::Io => "I/O",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "type",
        serde_json::error::Category::Eof => "truncation",
    };
    format!("JSON {category} error at line {} column {}", error.line(), error.column())
}

/// Posts `body` to `path` and parses the answer; `secret` is cut out of any error message.
async fn post_review<B: Serialize, A: DeserializeOwned>(
    client: &kube::Client,
    review: &'static str,
    path: &str,
    body: &B,
    secret: &str,
) -> Result<A, ReviewError> {
    let request_error = |error: AnswerError| ReviewError::Request { review, source: Box::new(error) };
    let bytes = serde_json::to_vec(body).map_err(|e| request_error(AnswerError::Client(kube::Error::SerdeError(e))))?;
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(kube::client::Body::from(bytes))
        .map_err(|e| request_error(AnswerError::Client(kube::Error::HttpError(e))))?;
    let response = client.send(request).await.map_err(|e| request_error(AnswerError::Client(e)))?;
    let status = response.status();
    let answer: Bytes = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| request_error(AnswerError::Body(e.to_string())))?
        .to_bytes();
    if !status.is_success() {
        let code = status.as_u16();
        let error = match serde_json::from_slice::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>(&answer) {
            Ok(s) => AnswerError::Status {
                code,
                reason: s.reason.unwrap_or_default(),
                message: redact(&s.message.unwrap_or_default(), secret),
            },
            Err(_) => AnswerError::NoStatus { code },
        };
        return Err(request_error(error));
    }
    serde_json::from_slice(&answer)
        .map_err(|e| ReviewError::BadAnswer { review, reason: format!("not a {review}: {}", json_error(&e)) })
}

/// `text` with every occurrence of `secret` replaced.
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() { text.to_string() } else { text.replace(secret, "[redacted]") }
}

/// Reviews bearer tokens with `POST /apis/authentication.k8s.io/v1/tokenreviews`.
#[derive(Clone)]
pub struct KubeTokenReviewer {
    client: kube::Client,
}

impl KubeTokenReviewer {
    /// A reviewer using `client` (the `--authentication-kubeconfig` client).
    pub fn new(client: kube::Client) -> Self {
        KubeTokenReviewer { client }
    }
}

#[async_trait]
impl TokenReviewer for KubeTokenReviewer {
    async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), audiences: None },
            ..TokenReview::default()
        };
        let answer: TokenReview = post_review(&self.client, TOKEN_REVIEW, TOKEN_REVIEWS_PATH, &review, token).await?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            if let Some(error) = status.error.filter(|e| !e.is_empty()) {
                let error = redact(&error, token);
                tracing::debug!(%error, "token review: not authenticated");
            }
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }
}

/// Asks `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` whether a request is allowed.
#[derive(Clone)]
pub struct KubeAccessReviewer {
    client: kube::Client,
}

impl KubeAccessReviewer {
    /// A reviewer using `client` (the `--authorization-kubeconfig` client).
    pub fn new(client: kube::Client) -> Self {
        KubeAccessReviewer { client }
    }
}

/// The review kube-apiserver's webhook authorizer would send for `attributes`.
fn access_review(attributes: &Attributes) -> SubjectAccessReview {
    let user = &attributes.user;
    let (resource_attributes, non_resource_attributes) = match &attributes.target {
        Target::Resource { namespace, group, version, resource, subresource, name } => (
            Some(ResourceAttributes {
                namespace: given(namespace),
                verb: given(&attributes.verb),
                group: given(group),
                version: given(version),
                resource: given(resource),
                subresource: given(subresource),
                name: given(name),
                field_selector: None,
                label_selector: None,
            }),
            None,
        ),
        Target::NonResource { path } => {
            (None, Some(NonResourceAttributes { path: given(path), verb: given(&attributes.verb) }))
        }
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: given(&user.name),
            uid: given(&user.uid),
            groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes,
            non_resource_attributes,
        },
        ..SubjectAccessReview::default()
    }
}

#[async_trait]
impl AccessReviewer for KubeAccessReviewer {
    async fn review(&self, attributes: &Attributes) -> Result<Decision, ReviewError> {
        let answer: SubjectAccessReview =
            post_review(&self.client, ACCESS_REVIEW, ACCESS_REVIEWS_PATH, &access_review(attributes), "").await?;
        let status = answer.status.unwrap_or_default();
        if status.allowed && status.denied == Some(true) {
            return Err(ReviewError::BadAnswer {
                review: ACCESS_REVIEW,
                reason: "the review both allows and denies the request".to_string(),
            });
        }
        if let Some(error) = status.evaluation_error.filter(|e| !e.is_empty()) {
            tracing::debug!(%error, "subject access review evaluation error");
        }
        Ok(Decision { allowed: status.allowed, reason: status.reason.unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthenticationConfig, Authenticator};
    use crate::auth::{custom_write_attributes, request_attributes};
    use crate::cluster::fake_apiserver::{FakeApiServer, FakeResponse, RecordedRequest, status_body};
    use crate::logging::testing::Captured;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn token_server(answer: serde_json::Value) -> impl Fn(&RecordedRequest) -> FakeResponse {
        move |request| {
            if request.path == "/apis/authentication.k8s.io/v1/tokenreviews" {
                let mut body = request.body.clone();
                body["status"] = answer.clone();
                FakeResponse::Json(201, body)
            } else {
                FakeResponse::Json(404, status_body(404, "NotFound", "not found"))
            }
        }
    }

    #[tokio::test]
    async fn a_token_review_posts_the_token_and_reads_the_user() {
        let server = FakeApiServer::answering(token_server(json!({
            "authenticated": true,
            "user": {
                "username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                "uid": "u-1",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["kcm-1"]}
            }
        })))
        .await;
        let user = KubeTokenReviewer::new(server.client()).review("secret-token").await.unwrap().unwrap();
        assert_eq!(user.name, "system:serviceaccount:kube-system:horizontal-pod-autoscaler");
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.groups, vec!["system:serviceaccounts".to_string(), "system:authenticated".to_string()]);
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], vec!["kcm-1".to_string()]);

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, http::Method::POST);
        assert_eq!(requests[0].body["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(requests[0].body["kind"], "TokenReview");
        assert_eq!(requests[0].body["spec"], json!({"token": "secret-token"}));
    }

    #[tokio::test]
    async fn an_unauthenticated_token_is_none_and_an_api_error_is_an_error() {
        let server =
            FakeApiServer::answering(token_server(json!({"authenticated": false, "error": "token expired"}))).await;
        assert_eq!(KubeTokenReviewer::new(server.client()).review("old").await.unwrap(), None);

        let server = FakeApiServer::answering(|_: &RecordedRequest| {
            FakeResponse::Json(403, status_body(403, "Forbidden", "tokenreviews.authentication.k8s.io is forbidden"))
        })
        .await;
        let error = KubeTokenReviewer::new(server.client()).review("t").await.unwrap_err();
        assert!(matches!(error, ReviewError::Request { review: "TokenReview", .. }), "{error:?}");
    }

    /// Answers every TokenReview with one of three malformed answers, each echoing the posted review (and so the
    /// token): a 201 whose status does not parse, a 400 whose body is not a Status, a 403 Status whose message
    /// quotes the token.
    fn malformed_token_server(kind: usize) -> impl Fn(&RecordedRequest) -> FakeResponse {
        move |request| {
            let mut echo = request.body.clone();
            match kind {
                0 => {
                    echo["status"] = json!({"authenticated": "yes", "user": {"username": 7}});
                    FakeResponse::Json(201, echo)
                }
                1 => FakeResponse::Json(400, echo),
                _ => {
                    let token = echo["spec"]["token"].as_str().unwrap_or_default().to_string();
                    FakeResponse::Json(403, status_body(403, "Forbidden", &format!("token {token} is forbidden")))
                }
            }
        }
    }

    /// A token never reaches a log line, at any verbosity and in either log format, whatever kube-apiserver
    /// answers: the review runs through the authenticator (which logs its 401s) with a subscriber set up as the
    /// binary sets it up.
    #[tokio::test]
    async fn a_malformed_token_review_answer_never_puts_the_token_in_the_log() {
        const TOKEN: &str = "s3cr3t-t0ken-value-that-must-not-be-logged";
        for kind in 0..3 {
            let server = FakeApiServer::answering(malformed_token_server(kind)).await;
            for verbosity in [0, 4, 6, 10] {
                for json_format in [false, true] {
                    let captured = Captured::default();
                    let builder = tracing_subscriber::fmt()
                        .with_env_filter(crate::logging::filter(verbosity))
                        .with_writer(captured.clone())
                        .with_ansi(false);
                    let _default = if json_format {
                        tracing::subscriber::set_default(builder.json().finish())
                    } else {
                        tracing::subscriber::set_default(builder.finish())
                    };
                    let config = Arc::new(arc_swap::ArcSwap::from_pointee(AuthenticationConfig::new(None, None)));
                    let reviewer = Arc::new(KubeTokenReviewer::new(server.client()));
                    let authenticator = Authenticator::new(config, Some(reviewer), std::time::Duration::ZERO);
                    let mut headers = http::HeaderMap::new();
                    headers.insert(http::header::AUTHORIZATION, format!("Bearer {TOKEN}").parse().unwrap());
                    let error = authenticator.authenticate(&mut headers, None).await.unwrap_err();
                    let lines = captured.text();
                    let case = format!("answer {kind}, -v={verbosity}, json={json_format}");
                    assert!(lines.contains("unable to authenticate"), "{case}: the 401 is logged: {lines}");
                    assert!(!lines.contains(TOKEN), "{case}: the token is in the log:\n{lines}");
                    assert!(!format!("{error:?}").contains(TOKEN), "{case}: the token is in the error: {error:?}");
                }
            }
            assert!(server.requests().iter().all(|r| r.body["spec"]["token"] == TOKEN), "the token was posted");
        }
    }

    #[tokio::test]
    async fn review_errors_say_what_was_wrong_without_the_answer() {
        let server = FakeApiServer::answering(malformed_token_server(0)).await;
        let error = KubeTokenReviewer::new(server.client()).review("t").await.unwrap_err().to_string();
        assert!(
            error.starts_with("TokenReview answer is unusable: not a TokenReview: JSON type error at line 1"),
            "{error}"
        );
        let server = FakeApiServer::answering(malformed_token_server(1)).await;
        let error = KubeTokenReviewer::new(server.client()).review("t").await.unwrap_err().to_string();
        assert_eq!(error, "TokenReview request failed: kube-apiserver answered 400 with a body that is not a Status");
        let server = FakeApiServer::answering(malformed_token_server(2)).await;
        let error = KubeTokenReviewer::new(server.client()).review("xyzzy").await.unwrap_err().to_string();
        assert_eq!(
            error,
            "TokenReview request failed: kube-apiserver answered 403 Forbidden: token [redacted] is forbidden"
        );
    }

    fn access_server(status: serde_json::Value) -> impl Fn(&RecordedRequest) -> FakeResponse {
        move |request| {
            if request.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
                let mut body = request.body.clone();
                body["status"] = status.clone();
                FakeResponse::Json(201, body)
            } else {
                FakeResponse::Json(404, status_body(404, "NotFound", "not found"))
            }
        }
    }

    fn alice() -> UserInfo {
        let mut extra = BTreeMap::new();
        extra.insert("scopes".to_string(), vec!["a".to_string()]);
        UserInfo { name: "alice".into(), uid: "u-7".into(), groups: vec!["dev".into()], extra }
    }

    #[tokio::test]
    async fn a_resource_review_sends_user_and_resource_attributes() {
        let server =
            FakeApiServer::answering(access_server(json!({"allowed": false, "reason": "no RBAC policy matched"})))
                .await;
        let reviewer = KubeAccessReviewer::new(server.client());
        let attributes = custom_write_attributes(alice(), "deployments.apps", "default", "web", "q");
        let decision = reviewer.review(&attributes).await.unwrap();
        assert_eq!(decision, Decision { allowed: false, reason: "no RBAC policy matched".into() });
        let body = &server.requests()[0].body;
        assert_eq!(body["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(body["kind"], "SubjectAccessReview");
        assert_eq!(
            body["spec"],
            json!({
                "user": "alice",
                "uid": "u-7",
                "groups": ["dev"],
                "extra": {"scopes": ["a"]},
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "create",
                    "group": "custom.metrics.k8s.io",
                    "version": "v1beta2",
                    "resource": "deployments.apps",
                    "subresource": "q",
                    "name": "web"
                }
            })
        );
    }

    #[tokio::test]
    async fn a_non_resource_review_sends_path_and_verb() {
        let server = FakeApiServer::answering(access_server(json!({"allowed": true}))).await;
        let reviewer = KubeAccessReviewer::new(server.client());
        let user = UserInfo { name: "bob".into(), ..UserInfo::default() };
        let attributes = request_attributes(&http::Method::GET, "/apis/custom.metrics.k8s.io/v1beta2", None, user);
        assert_eq!(reviewer.review(&attributes).await.unwrap(), Decision { allowed: true, reason: String::new() });
        assert_eq!(
            server.requests()[0].body["spec"],
            json!({"user": "bob", "nonResourceAttributes": {"path": "/apis/custom.metrics.k8s.io/v1beta2", "verb": "get"}})
        );
    }

    #[tokio::test]
    async fn a_review_that_allows_and_denies_is_an_error() {
        let server = FakeApiServer::answering(access_server(json!({"allowed": true, "denied": true}))).await;
        let reviewer = KubeAccessReviewer::new(server.client());
        let attributes = request_attributes(&http::Method::GET, "/metrics", None, alice());
        assert!(matches!(reviewer.review(&attributes).await, Err(ReviewError::BadAnswer { .. })));
    }
}
