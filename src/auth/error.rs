//! Why a request was not let through authentication or authorization. The HTTP side (codes, `Status` bodies,
//! `Retry-After`) is [`crate::response`]'s: this module knows nothing of HTTP responses.

use std::sync::Arc;

use super::ReviewError;
use super::authn::AuthenticationError;

/// A request refused by authentication or authorization (docs/wire-contract.md §6.2, §6.3).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No authenticator recognised the request and at least one rejected it (kept for logs, never shown).
    #[error("Unauthorized")]
    Unauthorized(Vec<AuthenticationError>),
    /// Authorization denied the request (Kubernetes' `ForbiddenStatusError`).
    #[error("{message}")]
    Forbidden {
        /// The whole message, e.g. `pods.custom.metrics.k8s.io "*" is forbidden: User "alice" cannot …`.
        message: String,
        /// `details.name`: the object name, if any.
        name: String,
        /// `details.group`: the API group.
        group: String,
        /// `details.kind`: the resource.
        kind: String,
    },
    /// The authorization check (SubjectAccessReview) could not be made.
    #[error("the authorization check could not be made: {0}")]
    AuthorizationFailed(Arc<ReviewError>),
    /// Too many authorization checks for anonymous requests (`--anonymous-authorization-rate`); retry later.
    #[error(
        "too many requests from unauthenticated clients need an authorization check (--anonymous-authorization-rate); retry after {retry_after_secs} s"
    )]
    AnonymousRateLimited {
        /// Whole seconds until a check is available again (at least 1), also sent as `Retry-After`.
        retry_after_secs: u64,
    },
    /// Too many TokenReviews for bearer tokens not in the cache (`--token-review-rate`); retry later.
    #[error(
        "too many requests with new bearer tokens need a TokenReview (--token-review-rate); retry after {retry_after_secs} s"
    )]
    TokenReviewRateLimited {
        /// Whole seconds until a review is available again (at least 1), also sent as `Retry-After`.
        retry_after_secs: u64,
    },
}
