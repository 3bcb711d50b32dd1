//! Authentication: who made a request (docs/wire-contract.md §6.2).
//!
//! The authenticators run in Kubernetes' order, front proxy -> client certificate -> bearer token; the first that
//! recognises the request wins and its user gets group `system:authenticated`. An authenticator may abstain (no
//! certificate, no header) or fail (a certificate that does not verify, a CN not allowed, a token that the
//! TokenReview rejects). When none recognises the request, any failure is a 401, otherwise the user is
//! `system:anonymous`.
//!
//! Bearer tokens cost a TokenReview each, and any client can send as many distinct ones as it likes: answers
//! (valid or not) are cached in a cache bounded in bytes, and reviews of tokens not in the cache are rate-limited
//! (beyond the rate, 429 with `Retry-After`, since the review might have authenticated the request). Cached tokens
//! never wait for the bucket, so clients already known keep being answered while it is empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName};

use super::config::{AuthenticationConfig, RequestHeaderConfig};
use super::rate::{LogLimiter, TokenBucket, retry_after_secs};
use super::x509::{CaRole, ClientCertChain};
use super::{Error, ReviewError, UserInfo};

/// The extra key under which Kubernetes records which credential authenticated a user.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// Default of `--authentication-token-webhook-cache-max-bytes`: the TokenReview cache's size, as estimated by
/// `token_entry_weight`. 16 MiB hold about 58,000 rejected tokens, or 25,000 service accounts (a name, a few
/// groups and extras).
pub const DEFAULT_TOKEN_CACHE_MAX_BYTES: usize = 16 << 20;
/// Default of `--token-review-rate`: TokenReviews a second for tokens not in the cache.
pub const DEFAULT_TOKEN_REVIEW_RATE: usize = 100;
/// What an entry costs besides its user's strings: the key, the cache's own bookkeeping, the strings' headers.
const TOKEN_ENTRY_OVERHEAD_BYTES: usize = 256;
/// Default of `--unauthorized-log-rate`: log lines a second about requests that fail authentication.
pub const DEFAULT_UNAUTHORIZED_LOG_RATE: usize = 10;

/// Cache key: the SHA-256 of a token. Not the token itself, so that the cache never holds credentials and every
/// key is the same size however long the token a client sends.
type TokenKey = [u8; 32];

/// A cached TokenReview answer: the token's user, `None` when the token does not authenticate anyone.
type TokenAnswer = Option<Arc<UserInfo>>;

/// The estimated bytes of one cached TokenReview answer: the user's strings plus the key and
/// [`TOKEN_ENTRY_OVERHEAD_BYTES`].
fn token_entry_weight(key: &TokenKey, answer: &TokenAnswer) -> u32 {
    let user = answer.as_deref().map_or(0, |user| {
        let extra: usize = user.extra.iter().map(|(k, v)| k.len() + v.iter().map(String::len).sum::<usize>()).sum();
        user.name.len() + user.uid.len() + user.groups.iter().map(String::len).sum::<usize>() + extra
    });
    u32::try_from(key.len() + user + TOKEN_ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
}

fn token_cache(ttl: Duration, max_bytes: usize) -> Option<moka::future::Cache<TokenKey, TokenAnswer>> {
    (!ttl.is_zero()).then(|| {
        moka::future::Cache::builder()
            .max_capacity(u64::try_from(max_bytes).unwrap_or(u64::MAX))
            .weigher(token_entry_weight)
            .time_to_live(ttl)
            .build()
    })
}

/// Hits and misses of a review cache, for `/metrics` (docs/wire-contract.md §11). A miss is a lookup that made a
/// review; a lookup answered by a concurrent identical one's counts as a hit.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheCounters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// (hits, misses) so far.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

/// Checks a bearer token (a TokenReview in a cluster).
#[async_trait]
pub trait TokenReviewer: Send + Sync + 'static {
    /// The token's user, or `None` when the token does not authenticate anyone.
    async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError>;
}

/// Why an authenticator rejected a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    /// The client certificate does not chain to the front-proxy CA.
    #[error("front proxy: {0}")]
    FrontProxyCertificate(String),
    /// The front proxy's certificate has a common name that is not allowed.
    #[error("x509: subject with cn={0} is not in the allowed list")]
    NameNotAllowed(String),
    /// The client certificate does not chain to the client CA.
    #[error("client certificate: {0}")]
    ClientCertificate(String),
    /// The TokenReview says the token is not valid.
    #[error("invalid bearer token")]
    InvalidToken,
    /// The TokenReview could not be made.
    #[error(transparent)]
    TokenReview(Arc<ReviewError>),
    /// The token is not in the cache and no TokenReview is left this second (`--token-review-rate`).
    #[error("too many TokenReviews; retry after {0:?}")]
    RateLimited(Duration),
}

/// Authenticates requests; cheap to share (`Arc`).
pub struct Authenticator {
    config: Arc<ArcSwap<AuthenticationConfig>>,
    tokens: Option<Arc<dyn TokenReviewer>>,
    /// SHA-256 of a token -> its user (`None`: not authenticated). Tokens are never kept in clear.
    token_cache: Option<moka::future::Cache<TokenKey, TokenAnswer>>,
    token_cache_ttl: Duration,
    /// TokenReviews left for tokens not in the cache.
    token_reviews: TokenBucket,
    /// Bounds the log lines of 401s, which any client can cause.
    unauthorized_log: LogLimiter,
    cache_counters: Arc<CacheCounters>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config.load())
            .field("tokens", &self.tokens.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator reading the configuration in force from `config` on every request. Without `tokens`,
    /// bearer tokens are ignored. Token reviews, positive and negative, are remembered for `token_cache_ttl`
    /// (zero: not at all); failed reviews are not remembered. 401s are logged at most
    /// [`DEFAULT_UNAUTHORIZED_LOG_RATE`] times a second (see [`Authenticator::with_unauthorized_log_rate`]); the
    /// token limits are [`DEFAULT_TOKEN_CACHE_MAX_BYTES`] and [`DEFAULT_TOKEN_REVIEW_RATE`] (see
    /// [`Authenticator::with_token_review_limits`]).
    pub fn new(
        config: Arc<ArcSwap<AuthenticationConfig>>,
        tokens: Option<Arc<dyn TokenReviewer>>,
        token_cache_ttl: Duration,
    ) -> Self {
        Authenticator {
            config,
            tokens,
            token_cache: token_cache(token_cache_ttl, DEFAULT_TOKEN_CACHE_MAX_BYTES),
            token_cache_ttl,
            token_reviews: TokenBucket::new(rate(DEFAULT_TOKEN_REVIEW_RATE)),
            unauthorized_log: LogLimiter::new(rate(DEFAULT_UNAUTHORIZED_LOG_RATE)),
            cache_counters: Arc::default(),
        }
    }

    /// The TokenReview cache's hits and misses (none counted when the cache is off).
    pub fn cache_counters(&self) -> Arc<CacheCounters> {
        Arc::clone(&self.cache_counters)
    }

    /// The same authenticator, its TokenReview cache holding at most `cache_max_bytes` (as estimated by
    /// `token_entry_weight`) and at most `reviews_per_second` TokenReviews a second made for tokens not in the
    /// cache (with no cache, for every token). Call before the first request: the cache starts empty.
    pub fn with_token_review_limits(mut self, cache_max_bytes: usize, reviews_per_second: usize) -> Self {
        self.token_cache = token_cache(self.token_cache_ttl, cache_max_bytes);
        self.token_reviews = TokenBucket::new(rate(reviews_per_second));
        self
    }

    /// The same authenticator, logging at most `per_second` 401s a second; each line written says how many were
    /// left out since the previous one (`suppressed`).
    pub fn with_unauthorized_log_rate(mut self, per_second: usize) -> Self {
        self.unauthorized_log = LogLimiter::new(rate(per_second));
        self
    }

    /// Front proxy (a certificate chaining to the requestheader CA with an allowed CN; identity from headers, which
    /// are then removed from `headers`) -> x509 client certificate (client CA; CN = user, O = groups) -> bearer
    /// token through the [`TokenReviewer`] (the `Authorization` header is removed when it authenticates) ->
    /// anonymous. Authenticated users get `system:authenticated`.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] when no authenticator recognises the request and at least one failed;
    /// [`Error::TokenReviewRateLimited`] when, besides, its bearer token could not be reviewed for the rate.
    pub async fn authenticate(
        &self,
        headers: &mut HeaderMap,
        client_certs: Option<&ClientCertChain>,
    ) -> Result<UserInfo, Error> {
        let chain = client_certs.filter(|c| !c.is_empty());
        let mut errors = Vec::new();
        let found = {
            let config = self.config.load();
            front_proxy(&config, chain, headers, &mut errors)
                .or_else(|| client_certificate(&config, chain, &mut errors))
        };
        let found = match found {
            Some(user) => Some(user),
            None => match self.bearer_token(headers).await {
                Ok(Some(user)) => {
                    headers.remove(AUTHORIZATION);
                    Some(user)
                }
                Ok(None) => None,
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
        };
        match found {
            Some(mut user) => {
                user.add_authenticated_group();
                Ok(user)
            }
            None if errors.is_empty() => Ok(UserInfo::anonymous()),
            // Not a 401: the review might have authenticated the request. Not logged either: the 429 says it all,
            // and the client causing it is already causing more than the log should take.
            None if let Some(wait) = rate_limited(&errors) => {
                Err(Error::TokenReviewRateLimited { retry_after_secs: retry_after_secs(wait) })
            }
            None => {
                if let Some(suppressed) = self.unauthorized_log.admit() {
                    let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    tracing::info!(errors = ?reasons, suppressed, "unable to authenticate the request");
                }
                Err(Error::Unauthorized(errors))
            }
        }
    }

    async fn bearer_token(&self, headers: &HeaderMap) -> Result<Option<UserInfo>, AuthenticationError> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let value = String::from_utf8_lossy(value.as_bytes());
        let mut parts = value.trim().splitn(3, ' ');
        let (Some(scheme), Some(token)) = (parts.next(), parts.next()) else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Ok(None);
        }
        let review = async { tokens.review(token).await.map(|user| user.map(Arc::new)) };
        let user = match &self.token_cache {
            Some(cache) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
                let mut key = [0u8; 32];
                key.copy_from_slice(digest.as_ref());
                // A cached answer, good or bad, costs nothing and never waits for the bucket.
                match cache.get(&key).await {
                    Some(user) => {
                        self.cache_counters.hit();
                        user
                    }
                    None => {
                        // Concurrent requests with the same new token share one review but each takes from the
                        // bucket: the limit errs on the side of fewer reviews.
                        self.token_reviews.try_take().map_err(AuthenticationError::RateLimited)?;
                        let counted = async {
                            self.cache_counters.miss();
                            review.await
                        };
                        cache.try_get_with(key, counted).await.map_err(AuthenticationError::TokenReview)?
                    }
                }
            }
            None => {
                self.token_reviews.try_take().map_err(AuthenticationError::RateLimited)?;
                review.await.map_err(|e| AuthenticationError::TokenReview(Arc::new(e)))?
            }
        };
        match user {
            Some(user) => Ok(Some(UserInfo::clone(&user))),
            None => Err(AuthenticationError::InvalidToken),
        }
    }
}

/// How long to wait for a TokenReview, when that is why authentication failed.
fn rate_limited(errors: &[AuthenticationError]) -> Option<Duration> {
    errors.iter().find_map(|e| match e {
        AuthenticationError::RateLimited(wait) => Some(*wait),
        _ => None,
    })
}

/// A rate flag's value as a bucket's rate.
fn rate(per_second: usize) -> u32 {
    u32::try_from(per_second).unwrap_or(u32::MAX)
}

/// The front-proxy authenticator (Kubernetes' requestheader authenticator behind its x509 CA verifier).
fn front_proxy(
    config: &AuthenticationConfig,
    chain: Option<&ClientCertChain>,
    headers: &mut HeaderMap,
    errors: &mut Vec<AuthenticationError>,
) -> Option<UserInfo> {
    let (Some(rh), Some(chain)) = (&config.request_header, chain) else {
        return None;
    };
    if let Err(error) = chain.verify(CaRole::FrontProxy, config.generation(), &rh.ca) {
        errors.push(AuthenticationError::FrontProxyCertificate(error));
        return None;
    }
    let common_name = match chain.subject() {
        Ok(subject) => &subject.common_name,
        Err(error) => {
            errors.push(AuthenticationError::FrontProxyCertificate(error));
            return None;
        }
    };
    if !rh.allowed_names.is_empty() && !rh.allowed_names.iter().any(|n| n == common_name) {
        errors.push(AuthenticationError::NameNotAllowed(common_name.clone()));
        return None;
    }
    let name = first_value(headers, &rh.username_headers)?;
    let user = UserInfo {
        name,
        uid: first_value(headers, &rh.uid_headers).unwrap_or_default(),
        groups: all_values(headers, &rh.group_headers),
        extra: extra_values(headers, &rh.extra_headers_prefixes),
    };
    remove_request_headers(headers, rh);
    Some(user)
}

/// The x509 client-certificate authenticator: user = CN, groups = O.
fn client_certificate(
    config: &AuthenticationConfig,
    chain: Option<&ClientCertChain>,
    errors: &mut Vec<AuthenticationError>,
) -> Option<UserInfo> {
    let (Some(ca), Some(chain)) = (&config.client_ca, chain) else {
        return None;
    };
    if let Err(error) = chain.verify(CaRole::Client, config.generation(), ca) {
        errors.push(AuthenticationError::ClientCertificate(error));
        return None;
    }
    let subject = match chain.subject() {
        Ok(subject) => subject,
        Err(error) => {
            errors.push(AuthenticationError::ClientCertificate(error));
            return None;
        }
    };
    if subject.common_name.is_empty() {
        return None;
    }
    let mut extra = BTreeMap::new();
    extra.insert(CREDENTIAL_ID_KEY.to_string(), vec![format!("X509SHA256={}", subject.sha256_hex)]);
    Some(UserInfo {
        name: subject.common_name.clone(),
        uid: String::new(),
        groups: subject.organizations.clone(),
        extra,
    })
}

fn header_text(value: &http::HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// The first value of the first of `names` that has a non-empty first value.
fn first_value(headers: &HeaderMap, names: &[HeaderName]) -> Option<String> {
    names.iter().filter_map(|name| headers.get(name)).map(header_text).find(|v| !v.is_empty())
}

/// Every non-empty value of every one of `names`, each header line one value.
fn all_values(headers: &HeaderMap, names: &[HeaderName]) -> Vec<String> {
    names.iter().flat_map(|name| headers.get_all(name)).map(header_text).filter(|v| !v.is_empty()).collect()
}

/// Extra attributes: key = the header name after the prefix, lower-cased and percent-decoded.
fn extra_values(headers: &HeaderMap, prefixes: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prefix in prefixes {
        for (name, value) in headers {
            if let Some(key) = name.as_str().strip_prefix(prefix.as_str()) {
                extra.entry(path_unescape(key)).or_default().push(header_text(value));
            }
        }
    }
    extra
}

fn remove_request_headers(headers: &mut HeaderMap, rh: &RequestHeaderConfig) {
    for name in rh.username_headers.iter().chain(&rh.uid_headers).chain(&rh.group_headers) {
        headers.remove(name);
    }
    let extra: Vec<HeaderName> = headers
        .keys()
        .filter(|name| rh.extra_headers_prefixes.iter().any(|p| name.as_str().starts_with(p.as_str())))
        .cloned()
        .collect();
    for name in extra {
        headers.remove(name);
    }
}

/// Go's `url.PathUnescape`, keeping the input unchanged when it is not valid (as Kubernetes does).
fn path_unescape(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => return encoded.to_string(),
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| encoded.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::{
        AuthenticationFlags, CM_ALLOWED_NAMES, CM_CLIENT_CA, CM_EXTRA_PREFIXES, CM_GROUP_HEADERS, CM_REQUESTHEADER_CA,
        CM_UID_HEADERS, CM_USERNAME_HEADERS,
    };
    use crate::auth::testing::TestCa;
    use crate::logging::testing::Captured;
    use http::HeaderValue;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fixture {
        client_ca: TestCa,
        proxy_ca: TestCa,
        config: Arc<ArcSwap<AuthenticationConfig>>,
    }

    fn configmap(client_ca: &TestCa, proxy_ca: &TestCa, allowed: &str) -> BTreeMap<String, String> {
        [
            (CM_CLIENT_CA, client_ca.pem()),
            (CM_REQUESTHEADER_CA, proxy_ca.pem()),
            (CM_ALLOWED_NAMES, allowed.to_string()),
            (CM_USERNAME_HEADERS, r#"["X-Remote-User"]"#.to_string()),
            (CM_GROUP_HEADERS, r#"["X-Remote-Group"]"#.to_string()),
            (CM_EXTRA_PREFIXES, r#"["X-Remote-Extra-"]"#.to_string()),
            (CM_UID_HEADERS, r#"["X-Remote-Uid"]"#.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    impl Fixture {
        fn new(allowed: &str) -> Self {
            let client_ca = TestCa::new("client-ca");
            let proxy_ca = TestCa::new("front-proxy-ca");
            let data = configmap(&client_ca, &proxy_ca, allowed);
            let config =
                AuthenticationConfig::from_flags_and_configmap(&AuthenticationFlags::default(), Some(&data)).unwrap();
            Fixture { client_ca, proxy_ca, config: Arc::new(ArcSwap::from_pointee(config)) }
        }

        fn authenticator(&self) -> Authenticator {
            Authenticator::new(Arc::clone(&self.config), None, Duration::ZERO)
        }

        fn proxy_chain(&self) -> ClientCertChain {
            self.proxy_ca.client_chain("front-proxy-client", &[])
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn alice_headers() -> HeaderMap {
        headers(&[("X-Remote-User", "alice"), ("X-Remote-Group", "dev"), ("Accept", "application/json")])
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn the_front_proxy_identity_comes_from_the_headers_which_are_then_removed() {
        let fixture = Fixture::new(r#"["front-proxy-client"]"#);
        let mut headers = headers(&[
            ("x-remote-user", "alice"),
            ("X-REMOTE-USER", "ignored-second-value"),
            ("X-Remote-Uid", "uid-1"),
            ("X-Remote-Group", "dev"),
            ("X-Remote-Group", ""),
            ("x-remote-group", "ops"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-scopes", "b"),
            ("X-Remote-Extra-Example.com%2fTeam", "blue"),
            ("X-Remote-Extra-Bad%zz", "kept"),
            ("Accept", "application/json"),
        ]);
        let user = fixture.authenticator().authenticate(&mut headers, Some(&fixture.proxy_chain())).await.unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.uid, "uid-1");
        assert_eq!(user.groups, strings(&["dev", "ops", "system:authenticated"]));
        let mut extra = BTreeMap::new();
        extra.insert("scopes".to_string(), strings(&["a", "b"]));
        extra.insert("example.com/team".to_string(), strings(&["blue"]));
        extra.insert("bad%zz".to_string(), strings(&["kept"]));
        assert_eq!(user.extra, extra);
        assert_eq!(headers.len(), 1, "only Accept remains: {headers:?}");
        assert!(headers.contains_key("accept"));
    }

    #[tokio::test]
    async fn remote_user_headers_never_authenticate_without_a_verified_front_proxy_certificate() {
        let fixture = Fixture::new("");
        let authenticator = fixture.authenticator();

        // A certificate from a CA the adapter does not trust: an authentication error.
        let stranger = TestCa::new("front-proxy-ca").client_chain("front-proxy-client", &[]);
        let mut h = alice_headers();
        let result = authenticator.authenticate(&mut h, Some(&stranger)).await;
        assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");

        // A certificate from the client CA: the certificate's identity, never the header's.
        let bob = fixture.client_ca.client_chain("bob", &["team"]);
        let mut h = alice_headers();
        let user = authenticator.authenticate(&mut h, Some(&bob)).await.unwrap();
        assert_eq!(user.name, "bob");
        assert_eq!(user.groups, strings(&["team", "system:authenticated"]));

        // No certificate: anonymous.
        let mut h = alice_headers();
        let user = authenticator.authenticate(&mut h, None).await.unwrap();
        assert_eq!(user, UserInfo::anonymous());
        let user = authenticator.authenticate(&mut h, Some(&ClientCertChain::new(vec![]))).await.unwrap();
        assert_eq!(user, UserInfo::anonymous());
    }

    #[tokio::test]
    async fn a_front_proxy_common_name_outside_the_allowed_list_is_a_401() {
        let fixture = Fixture::new(r#"["front-proxy-client"]"#);
        let chain = fixture.proxy_ca.client_chain("someone-else", &[]);
        let mut h = alice_headers();
        match fixture.authenticator().authenticate(&mut h, Some(&chain)).await {
            Err(Error::Unauthorized(errors)) => {
                let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
                assert!(
                    messages.contains(&"x509: subject with cn=someone-else is not in the allowed list".to_string()),
                    "{messages:?}"
                );
            }
            other => panic!("expected a 401, got {other:?}"),
        }
        // An empty allowed list accepts any name.
        let fixture = Fixture::new("[]");
        let chain = fixture.proxy_ca.client_chain("someone-else", &[]);
        let mut h = alice_headers();
        assert_eq!(fixture.authenticator().authenticate(&mut h, Some(&chain)).await.unwrap().name, "alice");
    }

    #[tokio::test]
    async fn a_front_proxy_request_without_user_header_is_not_the_proxy() {
        let fixture = Fixture::new("");
        let mut h = headers(&[("X-Remote-Group", "system:masters")]);
        // The front proxy abstains, and its certificate does not chain to the client CA: as in Kubernetes, a 401.
        let result = fixture.authenticator().authenticate(&mut h, Some(&fixture.proxy_chain())).await;
        assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");
        assert!(h.contains_key("x-remote-group"), "headers are removed only when used");

        // Without a client CA, nothing fails: anonymous.
        let proxy_only = AuthenticationConfig::new(None, fixture.config.load().request_header.clone());
        fixture.config.store(Arc::new(proxy_only));
        let user = fixture.authenticator().authenticate(&mut h, Some(&fixture.proxy_chain())).await.unwrap();
        assert_eq!(user, UserInfo::anonymous());
    }

    #[tokio::test]
    async fn a_client_certificate_gives_cn_as_user_and_o_as_groups() {
        let fixture = Fixture::new("");
        let chain = fixture.client_ca.client_chain("carol", &["dev", "ops"]);
        let user = fixture.authenticator().authenticate(&mut HeaderMap::new(), Some(&chain)).await.unwrap();
        assert_eq!(user.name, "carol");
        assert_eq!(user.groups, strings(&["dev", "ops", "system:authenticated"]));
        let credential = &user.extra[CREDENTIAL_ID_KEY];
        assert!(credential[0].starts_with("X509SHA256=") && credential[0].len() == 11 + 64, "{credential:?}");

        // No common name: this authenticator abstains, so the front proxy's failure to verify it decides (401)...
        let no_cn = ClientCertChain::new(vec![fixture.client_ca.leaf_with(None, &["dev"], vec![])]);
        let result = fixture.authenticator().authenticate(&mut HeaderMap::new(), Some(&no_cn)).await;
        assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");
        // ... and without a front proxy configured, the request is anonymous.
        let client_only = AuthenticationConfig::new(fixture.config.load().client_ca.clone(), None);
        fixture.config.store(Arc::new(client_only));
        let no_cn = ClientCertChain::new(vec![fixture.client_ca.leaf_with(None, &["dev"], vec![])]);
        let user = fixture.authenticator().authenticate(&mut HeaderMap::new(), Some(&no_cn)).await.unwrap();
        assert!(user.is_anonymous());
    }

    #[tokio::test]
    async fn a_rotated_front_proxy_ca_applies_to_an_open_connection() {
        let fixture = Fixture::new("");
        let authenticator = fixture.authenticator();
        let new_ca = TestCa::new("new-front-proxy-ca");
        let connection = new_ca.client_chain("front-proxy-client", &[]);
        let mut h = alice_headers();
        assert!(authenticator.authenticate(&mut h, Some(&connection)).await.is_err());

        let data = configmap(&fixture.client_ca, &new_ca, "");
        let rotated =
            AuthenticationConfig::from_flags_and_configmap(&AuthenticationFlags::default(), Some(&data)).unwrap();
        fixture.config.store(Arc::new(rotated));
        let mut h = alice_headers();
        assert_eq!(authenticator.authenticate(&mut h, Some(&connection)).await.unwrap().name, "alice");
        // And the old CA no longer counts.
        let mut h = alice_headers();
        assert!(authenticator.authenticate(&mut h, Some(&fixture.proxy_chain())).await.is_err());
    }

    /// A token reviewer that knows one token and counts its calls.
    struct Tokens {
        calls: AtomicUsize,
        fail: bool,
    }

    #[async_trait]
    impl TokenReviewer for Tokens {
        async fn review(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(ReviewError::BadAnswer { review: "TokenReview", reason: "test".into() });
            }
            // "good" is the HPA's token; "big-..." tokens are valid too, for users named after them.
            let name = if token.starts_with("big-") { token } else { "system:serviceaccount:default:hpa" };
            Ok((token == "good" || token.starts_with("big-")).then(|| UserInfo {
                name: name.into(),
                groups: strings(&["system:serviceaccounts", "system:authenticated"]),
                ..UserInfo::default()
            }))
        }
    }

    fn token_authenticator(fail: bool, ttl: Duration) -> (Authenticator, Arc<Tokens>) {
        let tokens = Arc::new(Tokens { calls: AtomicUsize::new(0), fail });
        let config = Arc::new(ArcSwap::from_pointee(AuthenticationConfig::default()));
        let reviewer: Arc<dyn TokenReviewer> = tokens.clone();
        (Authenticator::new(config, Some(reviewer), ttl), tokens)
    }

    #[tokio::test(start_paused = true)]
    async fn log_lines_of_401s_are_rate_limited_and_count_what_they_leave_out() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(crate::logging::filter(0))
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let (authenticator, _) = token_authenticator(false, Duration::ZERO);
        let authenticator = authenticator.with_unauthorized_log_rate(4);
        let lines = || {
            let text = captured.text();
            text.lines().filter(|l| l.contains("unable to authenticate")).map(String::from).collect::<Vec<_>>()
        };
        for _ in 0..25 {
            let mut h = headers(&[("Authorization", "Bearer bad")]);
            assert!(matches!(authenticator.authenticate(&mut h, None).await, Err(Error::Unauthorized(_))));
        }
        assert_eq!(lines().len(), 4, "{:?}", lines());
        assert!(lines().iter().all(|l| l.contains("suppressed=0")), "{:?}", lines());
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut h = headers(&[("Authorization", "Bearer bad")]);
        assert!(authenticator.authenticate(&mut h, None).await.is_err());
        assert_eq!(lines().len(), 5);
        assert!(lines()[4].contains("suppressed=21"), "{}", lines()[4]);
    }

    #[tokio::test]
    async fn a_bearer_token_is_reviewed_and_removed_from_the_request() {
        let (authenticator, _) = token_authenticator(false, Duration::from_secs(10));
        let mut h = headers(&[("Authorization", "Bearer good")]);
        let user = authenticator.authenticate(&mut h, None).await.unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:hpa");
        assert_eq!(user.groups, strings(&["system:serviceaccounts", "system:authenticated"]));
        assert!(!h.contains_key(AUTHORIZATION));

        let mut h = headers(&[("Authorization", "bearer bad")]);
        match authenticator.authenticate(&mut h, None).await {
            Err(Error::Unauthorized(errors)) => {
                assert!(matches!(errors[..], [AuthenticationError::InvalidToken]), "{errors:?}")
            }
            other => panic!("expected a 401, got {other:?}"),
        }
        assert!(h.contains_key(AUTHORIZATION));

        for value in ["Basic Zm9vOmJhcg==", "Bearer", "Bearer  good", "   "] {
            let mut h = headers(&[("Authorization", value)]);
            assert!(authenticator.authenticate(&mut h, None).await.unwrap().is_anonymous(), "{value:?}");
        }
    }

    #[tokio::test]
    async fn token_reviews_are_cached_both_ways_but_failures_are_not() {
        let (authenticator, tokens) = token_authenticator(false, Duration::from_secs(10));
        for _ in 0..3 {
            let _ = authenticator.authenticate(&mut headers(&[("Authorization", "Bearer good")]), None).await;
            let _ = authenticator.authenticate(&mut headers(&[("Authorization", "Bearer bad")]), None).await;
        }
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);

        let (authenticator, tokens) = token_authenticator(true, Duration::from_secs(10));
        for _ in 0..3 {
            let result = authenticator.authenticate(&mut headers(&[("Authorization", "Bearer good")]), None).await;
            assert!(matches!(result, Err(Error::Unauthorized(_))));
        }
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 3);

        let (authenticator, tokens) = token_authenticator(false, Duration::ZERO);
        for _ in 0..3 {
            let _ = authenticator.authenticate(&mut headers(&[("Authorization", "Bearer good")]), None).await;
        }
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 3, "a zero TTL caches nothing");
    }

    fn bearer(token: &str) -> HeaderMap {
        headers(&[("Authorization", &format!("Bearer {token}"))])
    }

    #[tokio::test]
    async fn the_token_cache_is_bounded_in_bytes() {
        let (authenticator, tokens) = token_authenticator(false, Duration::from_secs(600));
        let authenticator = authenticator.with_token_review_limits(64 << 10, 1_000);
        // 100 valid 8 KiB tokens, each for a user named after it: 100 entries of over 8 KiB cannot all be kept in
        // 64 KiB. A token itself is never kept, only its hash.
        let token = |i: usize| format!("big-{i}-{}", "t".repeat(8 << 10));
        for i in 0..100 {
            assert_eq!(authenticator.authenticate(&mut bearer(&token(i)), None).await.unwrap().name, token(i));
        }
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 100);
        let cache = authenticator.token_cache.as_ref().unwrap();
        cache.run_pending_tasks().await;
        assert!(cache.weighted_size() <= 64 << 10, "{}", cache.weighted_size());
        assert!(cache.entry_count() <= 8, "{} entries kept", cache.entry_count());
        assert!(cache.entry_count() > 0, "answers are still cached");
        let user = Some(Arc::new(UserInfo { name: token(0), ..UserInfo::default() }));
        assert!(token_entry_weight(&[0; 32], &user) > 8 << 10);
        assert_eq!(token_entry_weight(&[0; 32], &None), token_entry_weight(&[1; 32], &None), "keys are fixed size");
    }

    #[tokio::test(start_paused = true)]
    async fn reviews_of_uncached_tokens_are_rate_limited_with_a_429() {
        let (authenticator, tokens) = token_authenticator(false, Duration::from_secs(600));
        let authenticator = authenticator.with_token_review_limits(DEFAULT_TOKEN_CACHE_MAX_BYTES, 3);
        for i in 0..3 {
            let result = authenticator.authenticate(&mut bearer(&format!("bad-{i}")), None).await;
            assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");
        }
        let refused = authenticator.authenticate(&mut bearer("bad-3"), None).await.unwrap_err();
        assert!(matches!(refused, Error::TokenReviewRateLimited { retry_after_secs: 1 }), "{refused:?}");
        let response = crate::response::RequestError::from(refused).into_response(false);
        assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 3, "no TokenReview beyond the rate");

        // A bad token already reviewed is a 401 from the cache, whatever the bucket holds.
        for _ in 0..10 {
            let result = authenticator.authenticate(&mut bearer("bad-0"), None).await;
            assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");
        }
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 3);
        // The bucket refills at its rate.
        tokio::time::advance(Duration::from_millis(350)).await;
        let result = authenticator.authenticate(&mut bearer("bad-3"), None).await;
        assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_good_token_is_answered_while_the_bucket_is_empty() {
        let (authenticator, tokens) = token_authenticator(false, Duration::from_secs(600));
        let authenticator = authenticator.with_token_review_limits(DEFAULT_TOKEN_CACHE_MAX_BYTES, 2);
        authenticator.authenticate(&mut bearer("good"), None).await.unwrap();
        // Distinct bad tokens empty the bucket.
        let mut limited = 0;
        for i in 0..20 {
            if let Err(Error::TokenReviewRateLimited { .. }) =
                authenticator.authenticate(&mut bearer(&format!("bad-{i}")), None).await
            {
                limited += 1;
            }
        }
        assert_eq!(limited, 19, "one bad token reviewed, the bucket being empty after it");
        for _ in 0..100 {
            let user = authenticator.authenticate(&mut bearer("good"), None).await.unwrap();
            assert_eq!(user.name, "system:serviceaccount:default:hpa");
        }
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_cache_every_token_review_counts_against_the_rate() {
        let (authenticator, tokens) = token_authenticator(false, Duration::ZERO);
        let authenticator = authenticator.with_token_review_limits(DEFAULT_TOKEN_CACHE_MAX_BYTES, 2);
        authenticator.authenticate(&mut bearer("good"), None).await.unwrap();
        authenticator.authenticate(&mut bearer("good"), None).await.unwrap();
        let refused = authenticator.authenticate(&mut bearer("good"), None).await.unwrap_err();
        assert!(matches!(refused, Error::TokenReviewRateLimited { .. }), "{refused:?}");
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);
    }

    /// Through the cluster's TokenReviewer: the TokenReviews counted are those the API server receives.
    #[tokio::test(start_paused = true)]
    async fn beyond_the_rate_no_token_review_reaches_the_api_server() {
        use crate::cluster::fake_apiserver::{FakeApiServer, FakeResponse, RecordedRequest};
        use crate::cluster::reviews::KubeTokenReviewer;
        const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
        let server = FakeApiServer::answering(|request: &RecordedRequest| {
            let mut review = request.body.clone();
            review["status"] = if review["spec"]["token"] == "good" {
                serde_json::json!({"authenticated": true, "user": {"username": "writer"}})
            } else {
                serde_json::json!({"authenticated": false, "error": "invalid token"})
            };
            FakeResponse::Json(201, review)
        })
        .await;
        let config = Arc::new(ArcSwap::from_pointee(AuthenticationConfig::default()));
        let reviewer: Arc<dyn TokenReviewer> = Arc::new(KubeTokenReviewer::new(server.client()));
        let authenticator = Authenticator::new(config, Some(reviewer), Duration::from_secs(10))
            .with_token_review_limits(DEFAULT_TOKEN_CACHE_MAX_BYTES, 5);
        assert_eq!(authenticator.authenticate(&mut bearer("good"), None).await.unwrap().name, "writer");
        let mut statuses = Vec::new();
        for i in 0..5 {
            let result = authenticator.authenticate(&mut bearer(&format!("bad-{i}")), None).await;
            statuses.push(
                result
                    .map_err(|e| crate::response::RequestError::from(e).into_response(false).status().as_u16())
                    .unwrap_err(),
            );
        }
        assert_eq!(statuses, [401, 401, 401, 401, 429]);
        assert_eq!(server.count(|r| r.path == PATH), 5, "the sixth new token is not reviewed");
        // The writer's cached token and the bad tokens already reviewed cost no review and are not limited.
        for _ in 0..10 {
            assert_eq!(authenticator.authenticate(&mut bearer("good"), None).await.unwrap().name, "writer");
            let result = authenticator.authenticate(&mut bearer("bad-0"), None).await;
            assert!(matches!(result, Err(Error::Unauthorized(_))), "{result:?}");
        }
        assert_eq!(server.count(|r| r.path == PATH), 5);
    }

    #[tokio::test]
    async fn the_front_proxy_wins_over_a_token() {
        let fixture = Fixture::new("");
        let tokens: Arc<dyn TokenReviewer> = Arc::new(Tokens { calls: AtomicUsize::new(0), fail: false });
        let authenticator = Authenticator::new(Arc::clone(&fixture.config), Some(tokens), Duration::ZERO);
        let mut h = alice_headers();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer good"));
        let user = authenticator.authenticate(&mut h, Some(&fixture.proxy_chain())).await.unwrap();
        assert_eq!(user.name, "alice");
        // A token rescues a connection whose certificate fails, as in Kubernetes' union of authenticators.
        let stranger = TestCa::new("x").client_chain("x", &[]);
        let user = authenticator.authenticate(&mut h, Some(&stranger)).await.unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:hpa");
    }

    #[test]
    fn path_unescape_follows_go() {
        assert_eq!(path_unescape("example.com%2fteam"), "example.com/team");
        assert_eq!(path_unescape("a+b"), "a+b");
        assert_eq!(path_unescape("bad%zz"), "bad%zz");
        assert_eq!(path_unescape("cut%2"), "cut%2");
        assert_eq!(path_unescape("%e2%82%ac"), "€");
    }
}
