//! Authorization: a union of always-allowed non-resource paths, the `system:masters` group and a
//! SubjectAccessReview, whose answers are cached (allowed and denied for their own TTLs, the cache bounded in
//! bytes). A denial is Kubernetes' 403; a review that cannot be made is a 500. Reviews for anonymous requests,
//! which anyone can vary at will (one per distinct path), are rate-limited: beyond the rate a request that would
//! need one is answered 429 with `Retry-After`, not denied, since the review might have allowed it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::rate::TokenBucket;

use async_trait::async_trait;

use super::authn::CacheCounters;
use super::request_info::{Attributes, Target};
use super::{Error, MASTERS_GROUP, ReviewError};
use crate::selector::go_quote;

/// Default of `--authorization-webhook-cache-max-bytes`: the decision cache's size, as estimated by
/// `entry_weight`. 16 MiB hold about 40,000 typical entries (a user with a few groups and a metric path).
pub const DEFAULT_CACHE_MAX_BYTES: usize = 16 << 20;
/// Default of `--anonymous-authorization-rate`: SubjectAccessReviews a second for anonymous requests.
pub const DEFAULT_ANONYMOUS_REVIEW_RATE: usize = 10;
/// What an entry costs besides its strings: the cache's own bookkeeping and the strings' headers, roughly.
const ENTRY_OVERHEAD_BYTES: usize = 256;

/// The estimated bytes of one cached decision: its strings plus [`ENTRY_OVERHEAD_BYTES`].
fn entry_weight(attributes: &Attributes, decision: &Decision) -> u32 {
    let user = &attributes.user;
    let extra: usize = user.extra.iter().map(|(k, v)| k.len() + v.iter().map(String::len).sum::<usize>()).sum();
    let target = match &attributes.target {
        Target::NonResource { path } => path.len(),
        Target::Resource { namespace, group, version, resource, subresource, name } => {
            namespace.len() + group.len() + version.len() + resource.len() + subresource.len() + name.len()
        }
    };
    let bytes = user.name.len()
        + user.uid.len()
        + user.groups.iter().map(String::len).sum::<usize>()
        + extra
        + attributes.verb.len()
        + target
        + decision.reason.len()
        + ENTRY_OVERHEAD_BYTES;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A SubjectAccessReview's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The authorizer's reason (may be empty); appended to the 403 message.
    pub reason: String,
}

/// Asks whether a request is allowed (a SubjectAccessReview in a cluster).
#[async_trait]
pub trait AccessReviewer: Send + Sync + 'static {
    /// The decision for `attributes`.
    async fn review(&self, attributes: &Attributes) -> Result<Decision, ReviewError>;
}

/// An always-allow path pattern that Kubernetes would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("only a trailing * is allowed in --authorization-always-allow-paths: {0:?}")]
pub struct PathPatternError(pub String);

/// Checks `--authorization-always-allow-paths` values: a `*` is only allowed at the end.
pub fn check_always_allow_paths(paths: &[String]) -> Result<(), PathPatternError> {
    for path in paths {
        let p = path.trim_start_matches('/');
        if p.len() > 1 && p[..p.len() - 1].contains('*') {
            return Err(PathPatternError(path.clone()));
        }
    }
    Ok(())
}

/// Per-entry lifetime: the allowed or the denied TTL.
struct DecisionExpiry {
    allowed: Duration,
    denied: Duration,
}

impl moka::Expiry<Attributes, Decision> for DecisionExpiry {
    fn expire_after_create(&self, _key: &Attributes, value: &Decision, _created_at: Instant) -> Option<Duration> {
        Some(if value.allowed { self.allowed } else { self.denied })
    }
}

/// Authorizes requests; cheap to share (`Arc`).
pub struct Authorizer {
    reviewer: Arc<dyn AccessReviewer>,
    /// Always-allowed paths without their leading `/`.
    exact_paths: HashSet<String>,
    /// Always-allowed path prefixes without their leading `/` (patterns ending in `*`).
    path_prefixes: Vec<String>,
    decisions: moka::future::Cache<Attributes, Decision>,
    ttls: DecisionExpiry,
    /// SubjectAccessReviews left for anonymous requests.
    anonymous_reviews: TokenBucket,
    cache_counters: Arc<CacheCounters>,
}

fn decision_cache(ttls: &DecisionExpiry, max_bytes: usize) -> moka::future::Cache<Attributes, Decision> {
    moka::future::Cache::builder()
        .max_capacity(u64::try_from(max_bytes).unwrap_or(u64::MAX))
        .weigher(entry_weight)
        .expire_after(DecisionExpiry { allowed: ttls.allowed, denied: ttls.denied })
        .build()
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("exact_paths", &self.exact_paths)
            .field("path_prefixes", &self.path_prefixes)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// An authorizer asking `reviewer`, allowing `always_allow_paths` (non-resource requests only; exact paths, or
    /// prefixes when ending in `*`; see [`check_always_allow_paths`]; an invalid pattern is logged and only matches
    /// itself) and caching allowed answers for `allowed_ttl`, denied ones for `denied_ttl`, with the default limits
    /// ([`DEFAULT_CACHE_MAX_BYTES`], [`DEFAULT_ANONYMOUS_REVIEW_RATE`]; see [`Authorizer::with_limits`]).
    pub fn new(
        reviewer: Arc<dyn AccessReviewer>,
        always_allow_paths: Vec<String>,
        allowed_ttl: Duration,
        denied_ttl: Duration,
    ) -> Self {
        let mut exact_paths = HashSet::new();
        let mut path_prefixes = Vec::new();
        for pattern in always_allow_paths {
            if let Err(error) = check_always_allow_paths(std::slice::from_ref(&pattern)) {
                tracing::warn!(%error, "always-allow path pattern taken literally");
            }
            let pattern = pattern.trim_start_matches('/');
            match pattern.strip_suffix('*') {
                Some(prefix) => path_prefixes.push(prefix.to_string()),
                None => {
                    exact_paths.insert(pattern.to_string());
                }
            }
        }
        let ttls = DecisionExpiry { allowed: allowed_ttl, denied: denied_ttl };
        Authorizer {
            reviewer,
            exact_paths,
            path_prefixes,
            decisions: decision_cache(&ttls, DEFAULT_CACHE_MAX_BYTES),
            ttls,
            anonymous_reviews: TokenBucket::new(rate(DEFAULT_ANONYMOUS_REVIEW_RATE)),
            cache_counters: Arc::default(),
        }
    }

    /// The decision cache's hits and misses.
    pub fn cache_counters(&self) -> Arc<CacheCounters> {
        Arc::clone(&self.cache_counters)
    }

    /// The same authorizer, its decision cache holding at most `cache_max_bytes` (as estimated by
    /// `entry_weight`) and at most `anonymous_reviews_per_second` SubjectAccessReviews a second made for
    /// anonymous requests. Call before the first request: the cache starts empty.
    pub fn with_limits(mut self, cache_max_bytes: usize, anonymous_reviews_per_second: usize) -> Self {
        self.decisions = decision_cache(&self.ttls, cache_max_bytes);
        self.anonymous_reviews = TokenBucket::new(rate(anonymous_reviews_per_second));
        self
    }

    fn always_allowed(&self, path: &str) -> bool {
        let path = path.trim_start_matches('/');
        self.exact_paths.contains(path) || self.path_prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// Always-allow paths (non-resource requests only) -> group `system:masters` -> the cached review.
    ///
    /// # Errors
    ///
    /// [`Error::Forbidden`] with Kubernetes' message and details when denied;
    /// [`Error::AuthorizationFailed`] (a 500) when the review cannot be made.
    pub async fn authorize(&self, attributes: &Attributes) -> Result<(), Error> {
        if let Target::NonResource { path } = &attributes.target
            && self.always_allowed(path)
        {
            return Ok(());
        }
        if attributes.user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return Ok(());
        }
        // A cached decision costs nothing; a new review for an anonymous request takes from the bucket.
        if attributes.user.is_anonymous()
            && !self.decisions.contains_key(attributes)
            && let Err(wait) = self.anonymous_reviews.try_take()
        {
            let retry_after_secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            return Err(Error::AnonymousRateLimited { retry_after_secs });
        }
        // Concurrent identical requests share one review; failures are not cached. The review's future runs only on a
        // miss, so telling hits from misses costs no second lookup.
        let reviewed = AtomicBool::new(false);
        let review = async {
            reviewed.store(true, Ordering::Relaxed);
            self.cache_counters.miss();
            self.reviewer.review(attributes).await
        };
        let decision = self.decisions.try_get_with_by_ref(attributes, review).await;
        if !reviewed.load(Ordering::Relaxed) {
            self.cache_counters.hit();
        }
        let decision = decision.map_err(Error::AuthorizationFailed)?;
        if decision.allowed { Ok(()) } else { Err(forbidden(attributes, &decision.reason)) }
    }
}

/// A rate flag's value as a bucket's rate.
fn rate(per_second: usize) -> u32 {
    u32::try_from(per_second).unwrap_or(u32::MAX)
}

/// Kubernetes' 403 for a denied request (`responsewriters.ForbiddenStatusError`).
pub fn forbidden(attributes: &Attributes, reason: &str) -> Error {
    let user = go_quote(&attributes.user.name);
    let verb = &attributes.verb;
    let (what, group, resource, name) = match &attributes.target {
        Target::NonResource { path } => (format!("User {user} cannot {verb} path {}", go_quote(path)), "", "", ""),
        Target::Resource { namespace, group, resource, subresource, name, .. } => {
            let shown = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {}", go_quote(namespace))
            };
            let what = format!(
                "User {user} cannot {verb} resource {} in API group {} {scope}",
                go_quote(&shown),
                go_quote(group)
            );
            (what, group.as_str(), resource.as_str(), name.as_str())
        }
    };
    // Messages must not look like HTML; the reason is the authorizer's and is kept as is.
    let mut error = what.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    if !reason.is_empty() {
        error = format!("{error}: {reason}");
    }
    let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
    let message = if qualified.is_empty() {
        format!("forbidden: {error}")
    } else if name.is_empty() {
        format!("{qualified} is forbidden: {error}")
    } else {
        format!("{qualified} {} is forbidden: {error}", go_quote(name))
    };
    Error::Forbidden { message, name: name.to_string(), group: group.to_string(), kind: resource.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use crate::auth::request_info::{external_write_attributes, request_attributes};
    use http::Method;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Allows users named in `allowed`, answers with `reason`, counts calls; fails when `fail`.
    struct Reviews {
        allowed: Vec<&'static str>,
        reason: &'static str,
        fail: bool,
        calls: AtomicUsize,
        seen: Mutex<Vec<Attributes>>,
    }

    impl Reviews {
        fn new(allowed: Vec<&'static str>) -> Arc<Self> {
            Arc::new(Reviews { allowed, reason: "", fail: false, calls: AtomicUsize::new(0), seen: Mutex::new(vec![]) })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl AccessReviewer for Reviews {
        async fn review(&self, attributes: &Attributes) -> Result<Decision, ReviewError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.seen.lock().unwrap().push(attributes.clone());
            if self.fail {
                return Err(ReviewError::BadAnswer { review: "SubjectAccessReview", reason: "test failure".into() });
            }
            Ok(Decision { allowed: self.allowed.contains(&attributes.user.name.as_str()), reason: self.reason.into() })
        }
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..UserInfo::default() }
    }

    fn get(path: &str, user: UserInfo) -> Attributes {
        request_attributes(&Method::GET, path, None, user)
    }

    fn make_authorizer(reviews: &Arc<Reviews>, allowed_ttl: u64, denied_ttl: u64) -> Authorizer {
        let reviewer: Arc<dyn AccessReviewer> = reviews.clone();
        Authorizer::new(
            reviewer,
            vec!["/healthz".into(), "/readyz".into(), "/livez".into(), "/debug/*".into()],
            Duration::from_secs(allowed_ttl),
            Duration::from_secs(denied_ttl),
        )
    }

    fn message(error: Error) -> String {
        match error {
            Error::Forbidden { message, .. } => message,
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn always_allowed_paths_skip_the_review_for_non_resource_requests_only() {
        let reviews = Reviews::new(vec![]);
        let authorizer = make_authorizer(&reviews, 10, 10);
        for path in ["/healthz", "/readyz", "/livez", "/debug/pprof/heap", "/debug/"] {
            authorizer.authorize(&get(path, UserInfo::anonymous())).await.unwrap();
        }
        assert_eq!(reviews.calls(), 0);
        for path in ["/healthz/ping", "/metrics", "/debug", "/apis/healthz/v1/x"] {
            assert!(authorizer.authorize(&get(path, UserInfo::anonymous())).await.is_err(), "{path}");
        }
        assert_eq!(reviews.calls(), 4);
    }

    #[tokio::test]
    async fn the_decision_cache_is_bounded_in_bytes() {
        let reviews = Reviews::new(vec![]);
        let authorizer = make_authorizer(&reviews, 600, 600).with_limits(64 << 10, 10);
        // 100 users asking for a 4 KB path each: 100 decisions of over 4 KB cannot all be kept in 64 KiB.
        let long_path = format!("/{}", "p".repeat(4 << 10));
        for i in 0..100 {
            let who = user(&format!("user-{i}"), &["system:authenticated"]);
            assert!(authorizer.authorize(&get(&long_path, who)).await.is_err());
        }
        authorizer.decisions.run_pending_tasks().await;
        assert!(authorizer.decisions.weighted_size() <= 64 << 10, "{}", authorizer.decisions.weighted_size());
        assert!(authorizer.decisions.entry_count() <= 16, "{} entries kept", authorizer.decisions.entry_count());
        assert!(authorizer.decisions.entry_count() > 0, "decisions are still cached");
        let one = get(&long_path, user("user-0", &[]));
        assert!(entry_weight(&one, &Decision { allowed: false, reason: String::new() }) > 4 << 10);
    }

    #[tokio::test(start_paused = true)]
    async fn reviews_for_anonymous_requests_are_rate_limited_with_a_429() {
        let reviews = Reviews::new(vec!["system:anonymous", "alice"]);
        let authorizer = make_authorizer(&reviews, 600, 600).with_limits(DEFAULT_CACHE_MAX_BYTES, 3);
        for i in 0..3 {
            authorizer.authorize(&get(&format!("/anything/{i}"), UserInfo::anonymous())).await.unwrap();
        }
        let refused = authorizer.authorize(&get("/anything/3", UserInfo::anonymous())).await.unwrap_err();
        assert!(matches!(refused, Error::AnonymousRateLimited { retry_after_secs: 1 }), "{refused:?}");
        let response = crate::response::RequestError::from(refused).into_response(false);
        assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        assert_eq!(reviews.calls(), 3, "no review beyond the rate");

        // Cached decisions and authenticated users are not limited.
        authorizer.authorize(&get("/anything/0", UserInfo::anonymous())).await.unwrap();
        authorizer.authorize(&get("/anything/9", user("alice", &["system:authenticated"]))).await.unwrap();
        assert_eq!(reviews.calls(), 4);

        tokio::time::advance(Duration::from_secs(1)).await;
        for i in 3..6 {
            authorizer.authorize(&get(&format!("/anything/{i}"), UserInfo::anonymous())).await.unwrap();
        }
        assert!(authorizer.authorize(&get("/anything/6", UserInfo::anonymous())).await.is_err());
        assert_eq!(reviews.calls(), 7);
    }

    #[tokio::test]
    async fn system_masters_skips_the_review() {
        let reviews = Reviews::new(vec![]);
        let authorizer = make_authorizer(&reviews, 10, 10);
        let aggregator = user("system:kube-aggregator", &["system:masters", "system:authenticated"]);
        authorizer.authorize(&get("/apis/custom.metrics.k8s.io/v1beta2", aggregator)).await.unwrap();
        assert_eq!(reviews.calls(), 0);
    }

    #[tokio::test]
    async fn the_review_decides_and_sees_the_attributes() {
        let reviews = Reviews::new(vec!["hpa"]);
        let authorizer = make_authorizer(&reviews, 10, 10);
        let attributes = get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q", user("hpa", &[]));
        authorizer.authorize(&attributes).await.unwrap();
        assert_eq!(reviews.seen.lock().unwrap()[0], attributes);
        let denied = get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q", user("alice", &[]));
        assert_eq!(
            message(authorizer.authorize(&denied).await.unwrap_err()),
            r#"pods.custom.metrics.k8s.io "*" is forbidden: User "alice" cannot get resource "pods/q" in API group "custom.metrics.k8s.io" in the namespace "default""#
        );
    }

    #[tokio::test]
    async fn decisions_are_cached_per_user_with_separate_allowed_and_denied_ttls() {
        let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q";
        let reviews = Reviews::new(vec!["hpa"]);
        let authorizer = make_authorizer(&reviews, 3600, 0);
        for _ in 0..3 {
            authorizer.authorize(&get(path, user("hpa", &[]))).await.unwrap();
        }
        assert_eq!(reviews.calls(), 1, "allowed cached");
        for _ in 0..3 {
            assert!(authorizer.authorize(&get(path, user("alice", &[]))).await.is_err());
        }
        assert_eq!(reviews.calls(), 4, "denied not cached with a zero TTL");
        authorizer.authorize(&get(path, user("hpa", &["other-group"]))).await.unwrap();
        assert_eq!(reviews.calls(), 5, "groups are part of the key");

        let reviews = Reviews::new(vec!["hpa"]);
        let authorizer = make_authorizer(&reviews, 0, 3600);
        for _ in 0..3 {
            authorizer.authorize(&get(path, user("hpa", &[]))).await.unwrap();
            assert!(authorizer.authorize(&get(path, user("alice", &[]))).await.is_err());
        }
        assert_eq!(reviews.calls(), 4, "three allowed reviews, one cached denial");
    }

    #[tokio::test]
    async fn a_failed_review_is_an_internal_error_and_not_cached() {
        let reviews = Arc::new(Reviews {
            allowed: vec![],
            reason: "",
            fail: true,
            calls: AtomicUsize::new(0),
            seen: Mutex::new(vec![]),
        });
        let authorizer = make_authorizer(&reviews, 10, 10);
        for _ in 0..2 {
            let error = authorizer.authorize(&get("/metrics", user("alice", &[]))).await.unwrap_err();
            assert!(matches!(error, Error::AuthorizationFailed(_)), "{error:?}");
            assert!(error.to_string().contains("test failure"), "{error}");
        }
        assert_eq!(reviews.calls(), 2);
    }

    #[test]
    fn forbidden_messages_follow_kubernetes() {
        let alice = || user("alice", &[]);
        let cases: Vec<(Attributes, &str, &str)> = vec![
            (
                get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/metrics/q", alice()),
                "",
                r#"metrics.custom.metrics.k8s.io "q" is forbidden: User "alice" cannot get resource "metrics" in API group "custom.metrics.k8s.io" in the namespace "default""#,
            ),
            (
                get("/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/q", alice()),
                "",
                r#"nodes.custom.metrics.k8s.io "n1" is forbidden: User "alice" cannot get resource "nodes/q" in API group "custom.metrics.k8s.io" at the cluster scope"#,
            ),
            (
                get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth", alice()),
                "no RBAC policy matched",
                r#"queue_depth.external.metrics.k8s.io is forbidden: User "alice" cannot list resource "queue_depth" in API group "external.metrics.k8s.io" in the namespace "default": no RBAC policy matched"#,
            ),
            (
                external_write_attributes(alice(), "default", "queue_depth"),
                "",
                r#"queue_depth.external.metrics.k8s.io is forbidden: User "alice" cannot create resource "queue_depth" in API group "external.metrics.k8s.io" in the namespace "default""#,
            ),
            (get("/metrics", alice()), "", r#"forbidden: User "alice" cannot get path "/metrics""#),
            (
                get("/api/v1/pods", user("a\"<b>", &[])),
                "",
                r#"pods is forbidden: User "a\"&lt;b&gt;" cannot list resource "pods" in API group "" at the cluster scope"#,
            ),
        ];
        for (attributes, reason, expected) in cases {
            assert_eq!(message(forbidden(&attributes, reason)), expected);
        }
        match forbidden(&get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q", alice()), "") {
            Error::Forbidden { name, group, kind, .. } => {
                assert_eq!((name.as_str(), group.as_str(), kind.as_str()), ("*", "custom.metrics.k8s.io", "pods"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_a_trailing_star_is_allowed_in_path_patterns() {
        assert!(check_always_allow_paths(&["/healthz".into(), "/debug/*".into(), "*".into(), "/".into()]).is_ok());
        assert_eq!(check_always_allow_paths(&["/a*/b".into()]), Err(PathPatternError("/a*/b".into())));
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\x01é\"");
    }
}
