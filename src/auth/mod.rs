//! Delegated authentication and authorization, as Kubernetes' aggregated API servers do them. Pure logic over
//! small traits; the kube-backed reviewers live in [`crate::cluster`].
//!
//! - [`config`]: the authentication configuration (CA bundles, front-proxy settings) from flags and the
//!   `extension-apiserver-authentication` ConfigMap.
//! - [`x509`]: a connection's client certificate chain, verified against a CA bundle once per connection and
//!   configuration generation.
//! - [`authn`]: [`Authenticator`]: front proxy -> client certificate -> bearer token (TokenReview) -> anonymous.
//! - [`request_info`]: the request attributes kube-apiserver's `RequestInfo` computes (verb, resource, ...).
//! - [`authz`]: [`Authorizer`]: always-allow paths -> `system:masters` -> SubjectAccessReview, cached.
//! - [`error`]: [`Error`], why a request was refused (401, 403, 429, 500); [`crate::response`] renders it.
//! - [`rate`]: the token buckets bounding what unauthenticated clients cost (reviews, log lines).

pub mod authn;
pub mod authz;
pub mod config;
pub mod error;
pub mod flags;
pub mod rate;
pub mod request_info;
pub mod x509;

#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;

pub use authn::{AuthenticationError, Authenticator, CacheCounters, TokenReviewer};
pub use authz::{AccessReviewer, Authorizer, Decision, PathPatternError, check_always_allow_paths};
pub use config::{AuthConfigError, AuthenticationConfig, AuthenticationFlags, CaBundle, RequestHeaderConfig};
pub use error::Error;
pub use request_info::{Attributes, Target, custom_write_attributes, external_write_attributes, request_attributes};
pub use x509::ClientCertChain;

/// The user every request is attributed to when no authenticator recognises it.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of [`ANONYMOUS_USER`].
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group added to every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Members of this group are allowed everything without a SubjectAccessReview.
pub const MASTERS_GROUP: &str = "system:masters";

/// Who made a request, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Unique id; often empty.
    pub uid: String,
    /// Groups, in the order the authenticator gave them.
    pub groups: Vec<String>,
    /// Extra attributes (scopes, credential id, ...).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// `system:anonymous` in group `system:unauthenticated`.
    pub fn anonymous() -> Self {
        UserInfo {
            name: ANONYMOUS_USER.to_string(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED_GROUP.to_string()],
            extra: BTreeMap::new(),
        }
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS_USER
    }

    /// Adds `system:authenticated` unless the user already has it or `system:unauthenticated` (Kubernetes'
    /// `AuthenticatedGroupAdder`).
    pub(crate) fn add_authenticated_group(&mut self) {
        if self.groups.iter().any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP) {
            return;
        }
        self.groups.push(AUTHENTICATED_GROUP.to_string());
    }
}

/// Why a TokenReview or SubjectAccessReview gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The review could not be sent, or kube-apiserver answered with an error.
    #[error("{review} request failed: {source}")]
    Request {
        /// `TokenReview` or `SubjectAccessReview`.
        review: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// kube-apiserver answered, but the answer cannot be used.
    #[error("{review} answer is unusable: {reason}")]
    BadAnswer {
        /// `TokenReview` or `SubjectAccessReview`.
        review: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_is_system_anonymous_in_unauthenticated() {
        let user = UserInfo::anonymous();
        assert_eq!(user.name, "system:anonymous");
        assert_eq!(user.groups, vec!["system:unauthenticated".to_string()]);
        assert!(user.is_anonymous());
        assert!(!UserInfo { name: "alice".into(), ..UserInfo::default() }.is_anonymous());
    }

    #[test]
    fn authenticated_group_is_added_once_and_never_to_unauthenticated() {
        let mut user = UserInfo { name: "alice".into(), groups: vec!["dev".into()], ..UserInfo::default() };
        user.add_authenticated_group();
        user.add_authenticated_group();
        assert_eq!(user.groups, vec!["dev".to_string(), "system:authenticated".to_string()]);
        let mut anonymous = UserInfo::anonymous();
        anonymous.add_authenticated_group();
        assert_eq!(anonymous.groups, vec!["system:unauthenticated".to_string()]);
    }
}
