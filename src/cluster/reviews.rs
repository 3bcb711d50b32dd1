//! TokenReview and SubjectAccessReview through kube-apiserver: the cluster's [`TokenReviewer`] and
//! [`AccessReviewer`] (wire-contract §6.2 step 3, §6.3). Caching is the authenticator's and authorizer's job.

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use crate::auth::{AccessReviewer, Attributes, Decision, ReviewError, Target, TokenReviewer, UserInfo};

const TOKEN_REVIEW: &str = "TokenReview";
const ACCESS_REVIEW: &str = "SubjectAccessReview";

/// `Some(s)` unless `s` is empty (Go's `omitempty`).
fn given(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Reviews bearer tokens with `POST /apis/authentication.k8s.io/v1/tokenreviews`.
#[derive(Clone)]
pub struct KubeTokenReviewer {
    api: Api<TokenReview>,
}

impl KubeTokenReviewer {
    /// A reviewer using `client` (the `--authentication-kubeconfig` client).
    pub fn new(client: kube::Client) -> Self {
        KubeTokenReviewer { api: Api::all(client) }
    }
}

#[async_trait]
impl TokenReviewer for KubeTokenReviewer {
    async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), audiences: None },
            ..TokenReview::default()
        };
        let answer = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ReviewError::Request { review: TOKEN_REVIEW, source: Box::new(e) })?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            if let Some(error) = status.error.filter(|e| !e.is_empty()) {
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
    api: Api<SubjectAccessReview>,
}

impl KubeAccessReviewer {
    /// A reviewer using `client` (the `--authorization-kubeconfig` client).
    pub fn new(client: kube::Client) -> Self {
        KubeAccessReviewer { api: Api::all(client) }
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
        let answer = self
            .api
            .create(&PostParams::default(), &access_review(attributes))
            .await
            .map_err(|e| ReviewError::Request { review: ACCESS_REVIEW, source: Box::new(e) })?;
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
    use crate::auth::{custom_write_attributes, request_attributes};
    use crate::cluster::fake_apiserver::{FakeApiServer, FakeResponse, RecordedRequest, status_body};
    use serde_json::json;
    use std::collections::BTreeMap;

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
