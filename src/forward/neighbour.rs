//! One neighbour adapter: its HTTP client, the bounds on what is sent to it (timeouts, requests in flight, answer
//! size), its circuit breaker, and the cache of its discovery documents (docs/architecture.md §13).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, StatusCode, header};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::breaker::{Breaker, CircuitState, Refusal};
use super::flags::ForwardConfig;
use crate::response::{Body, HttpResponse};

const AUDIT_ID: header::HeaderName = header::HeaderName::from_static("audit-id");

/// Why a forwarded request got no answer from the neighbour; answered with 503 and a `Status` naming the neighbour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The circuit is open (docs/architecture.md §13).
    #[error(
        "the neighbour adapter {neighbour} is failing: its circuit is open after {failures} consecutive failures, next attempt in {retry_in:?}"
    )]
    CircuitOpen {
        /// The neighbour's URL.
        neighbour: String,
        /// The failures that opened it.
        failures: u32,
        /// Until the probe.
        retry_in: Duration,
    },
    /// Half-open: another request probes the neighbour.
    #[error("the neighbour adapter {neighbour} is failing: its circuit is half-open and another request probes it")]
    Probing {
        /// The neighbour's URL.
        neighbour: String,
    },
    /// `--forward-max-connections` requests are in flight.
    #[error("the neighbour adapter {neighbour} already has {limit} requests in flight (--forward-max-connections)")]
    Busy {
        /// The neighbour's URL.
        neighbour: String,
        /// The bound.
        limit: usize,
    },
    /// No answer: connection refused, TLS, timeout, a broken answer.
    #[error("forwarding to the neighbour adapter {neighbour}: {message}")]
    Failed {
        /// The neighbour's URL.
        neighbour: String,
        /// What went wrong.
        message: String,
    },
    /// The answer is longer than `--max-response-bytes`.
    #[error("the neighbour adapter {neighbour} answered with more than {limit} bytes (--max-response-bytes)")]
    TooLarge {
        /// The neighbour's URL.
        neighbour: String,
        /// The bound.
        limit: usize,
    },
    /// `--forward-token-file` could not be read.
    #[error("reading --forward-token-file {path}: {message}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// What the neighbour answered.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// A discovery document's resources as last read.
#[derive(Debug)]
struct CachedDiscovery {
    /// When it was read; `None` while the first read runs.
    read_at: Option<Instant>,
    entries: Arc<Vec<Value>>,
    /// Whether a read is under way (only one at a time).
    refreshing: bool,
    /// Why the last read failed.
    error: Option<String>,
}

/// Counters of `/metrics` and the health snapshot.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
    pub discovery_failures: AtomicU64,
}

/// One neighbour.
pub struct Neighbour {
    pub(super) group: &'static str,
    pub(super) url: String,
    client: reqwest::Client,
    token_file: Option<PathBuf>,
    pub(super) breaker: Breaker,
    failure_threshold: u32,
    in_flight: Semaphore,
    pub(super) max_connections: usize,
    max_response_bytes: usize,
    discovery_ttl: Duration,
    discovery: Mutex<HashMap<&'static str, CachedDiscovery>>,
    pub(super) counters: Counters,
    pub(super) last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Neighbour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neighbour").field("group", &self.group).field("url", &self.url).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each value is replaced whole under the lock: one left by a panicking thread is still consistent.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Neighbour {
    /// The neighbour serving `group` at `url`, reached with `client`.
    pub(super) fn new(
        group: &'static str,
        url: String,
        client: reqwest::Client,
        config: &ForwardConfig,
        max_response_bytes: usize,
    ) -> Self {
        Neighbour {
            group,
            url,
            client,
            token_file: config.token_file.clone(),
            breaker: Breaker::new(config.failure_threshold, config.cool_down),
            failure_threshold: config.failure_threshold,
            in_flight: Semaphore::new(config.max_connections),
            max_connections: config.max_connections,
            max_response_bytes,
            discovery_ttl: config.discovery_ttl,
            discovery: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            last_error: Mutex::new(None),
        }
    }

    /// The neighbour's URL, as it names it in errors.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests in flight now.
    pub(super) fn in_flight(&self) -> usize {
        self.max_connections.saturating_sub(self.in_flight.available_permits())
    }

    /// Forwards `request` (its path and query as received; `Accept` and `Audit-ID` along) and gives back the
    /// neighbour's answer unchanged: status code, body, content type.
    ///
    /// # Errors
    ///
    /// No answer (see [`ForwardError`]).
    pub async fn forward<B>(&self, request: &Request<B>) -> Result<HttpResponse, ForwardError> {
        let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let headers = request.headers();
        let answer = self.send(path_and_query, headers.get(header::ACCEPT), headers.get(AUDIT_ID)).await?;
        let mut response = HttpResponse::new(Body::from(answer.body));
        *response.status_mut() = answer.status;
        if let Some(content_type) = answer.content_type {
            response.headers_mut().insert(header::CONTENT_TYPE, content_type);
        }
        Ok(response)
    }

    async fn token(&self) -> Result<Option<String>, ForwardError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let file = path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(file)).await;
        match read {
            Ok(Ok(token)) => Ok(Some(token.trim().to_string())),
            Ok(Err(error)) => Err(ForwardError::Token { path: path.clone(), message: error.to_string() }),
            Err(error) => Err(ForwardError::Token { path: path.clone(), message: error.to_string() }),
        }
    }

    /// One GET to the neighbour through the breaker and the in-flight bound.
    async fn send(
        &self,
        path_and_query: &str,
        accept: Option<&HeaderValue>,
        audit_id: Option<&HeaderValue>,
    ) -> Result<Answer, ForwardError> {
        let neighbour = || self.url.clone();
        let refused = |error: ForwardError| {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            error
        };
        let admission = self.breaker.admit().map_err(|refusal| {
            refused(match refusal {
                Refusal::Open(retry_in) => {
                    ForwardError::CircuitOpen { neighbour: neighbour(), failures: self.failure_threshold, retry_in }
                }
                Refusal::Probing => ForwardError::Probing { neighbour: neighbour() },
            })
        })?;
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| refused(ForwardError::Busy { neighbour: neighbour(), limit: self.max_connections }))?;
        let mut builder = self.client.get(format!("{}{path_and_query}", self.url));
        if let Some(accept) = accept {
            builder = builder.header(header::ACCEPT, accept.clone());
        }
        if let Some(audit_id) = audit_id {
            builder = builder.header(AUDIT_ID, audit_id.clone());
        }
        if let Some(token) = self.token().await? {
            builder = builder.bearer_auth(token);
        }
        match self.receive(builder).await {
            Ok(answer) => {
                self.counters.answered.fetch_add(1, Ordering::Relaxed);
                // An overloaded or unreachable backend behind the neighbour is its failure; any other answer, a 500
                // for one broken metric included, shows that it serves.
                if matches!(answer.status.as_u16(), 502..=504) {
                    self.note_error(format!("answered {}", answer.status));
                    admission.failed();
                } else {
                    admission.succeeded();
                }
                Ok(answer)
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.note_error(error.to_string());
                // A long answer is still an answer: one oversized list must not cut off every other read.
                if matches!(error, ForwardError::TooLarge { .. }) {
                    admission.succeeded();
                } else {
                    admission.failed();
                }
                Err(error)
            }
        }
    }

    fn note_error(&self, message: String) {
        *lock(&self.last_error) = Some(message);
    }

    /// Sends and reads the whole answer, at most `max_response_bytes` of body.
    async fn receive(&self, builder: reqwest::RequestBuilder) -> Result<Answer, ForwardError> {
        let failed =
            |error: reqwest::Error| ForwardError::Failed { neighbour: self.url.clone(), message: describe(&error) };
        let too_large = || ForwardError::TooLarge { neighbour: self.url.clone(), limit: self.max_response_bytes };
        let mut response = builder.send().await.map_err(failed)?;
        if response.content_length().is_some_and(|len| len > self.max_response_bytes as u64) {
            return Err(too_large());
        }
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, content_type, body: body.freeze() })
    }

    /// The resources of the neighbour's discovery document of `api_version` (`group/version`), as last read; never
    /// waits for the neighbour. A copy younger than `--forward-discovery-ttl` is served as it is; an older one is
    /// served while one read runs in the background; before the first read ends there are no entries. A failed
    /// read leaves no entries until the next one succeeds.
    pub fn resources(self: &Arc<Self>, api_version: &'static str) -> Arc<Vec<Value>> {
        let mut cache = lock(&self.discovery);
        let cached = cache.entry(api_version).or_insert_with(|| CachedDiscovery {
            read_at: None,
            entries: Arc::default(),
            refreshing: false,
            error: None,
        });
        let fresh = cached.read_at.is_some_and(|at| at.elapsed() < self.discovery_ttl);
        if !fresh && !cached.refreshing {
            cached.refreshing = true;
            let this = Arc::clone(self);
            tokio::spawn(async move { this.refresh(api_version).await });
        }
        Arc::clone(&cached.entries)
    }

    async fn refresh(&self, api_version: &'static str) {
        let (entries, error) = match self.read_discovery(api_version).await {
            Ok(entries) => (entries, None),
            Err(error) => {
                self.counters.discovery_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(neighbour = %self.url, group_version = api_version, %error, "the neighbour's discovery failed: its entries are left out");
                (Vec::new(), Some(error))
            }
        };
        let cached =
            CachedDiscovery { read_at: Some(Instant::now()), entries: Arc::new(entries), refreshing: false, error };
        lock(&self.discovery).insert(api_version, cached);
    }

    /// Reads `/apis/<api_version>`: its `resources`, each an object with a name. A 404 (the neighbour does not
    /// serve that version) is no entries and no failure.
    async fn read_discovery(&self, api_version: &str) -> Result<Vec<Value>, String> {
        let accept = HeaderValue::from_static("application/json");
        let answer =
            self.send(&format!("/apis/{api_version}"), Some(&accept), None).await.map_err(|e| e.to_string())?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            status => return Err(format!("it answered {status}")),
        }
        let document: Value =
            serde_json::from_slice(&answer.body).map_err(|e| format!("its answer is not JSON: {e}"))?;
        let Some(resources) = document.get("resources").and_then(Value::as_array) else {
            return Err("its answer is not an APIResourceList".to_string());
        };
        Ok(resources.iter().filter(|r| r.get("name").is_some_and(Value::is_string)).cloned().collect())
    }

    /// The discovery documents as last read: (group-version, entries, error of the last read).
    pub(super) fn discovery_state(&self) -> Vec<(&'static str, usize, Option<String>)> {
        let mut state: Vec<_> = lock(&self.discovery)
            .iter()
            .map(|(version, cached)| (*version, cached.entries.len(), cached.error.clone()))
            .collect();
        state.sort();
        state
    }

    /// The circuit's state and the consecutive failures counted while closed.
    pub(super) fn circuit(&self) -> (CircuitState, u32) {
        self.breaker.state()
    }
}

/// A reqwest error with its causes: "error sending request" alone says nothing.
fn describe(error: &reqwest::Error) -> String {
    let mut message = if error.is_timeout() { "timed out".to_string() } else { error.to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
