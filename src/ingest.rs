//! The write API: a path, a body and the `labels` and `ttl` parameters become one store write
//! (docs/wire-contract.md §4.1, §10 items 1, 9, 11, 13).
//!
//! Routes (POST writes, DELETE removes):
//! - W1 `/write-metrics/namespaces/{namespace}/{resource}/{name}/{metric}`: an object of a namespaced resource;
//! - W2 `/write-metrics/{resource}/{name}/{metric}`: an object of a cluster-scoped resource (nodes, namespaces);
//! - W3 `/write-metrics/{resource}/{name}/metrics/{metric}`: the same, as in `.../namespaces/{name}/metrics/{metric}`;
//! - `/write-external-metrics/namespaces/{namespace}/{metric}?labels=k=v,...`: an external series;
//! - `/write-metrics` alone: a batch of values, all stored or none ([`batch`], docs/wire-contract.md §4.4);
//! - `/metrics/job/{job}{/{label}/{value}}`: Pushgateway-compatible pushes ([`push`], docs/wire-contract.md §4.5);
//! - `/v1/metrics`: OTLP/HTTP metric exports ([`otlp`], docs/wire-contract.md §4.7).
//!
//! Bad input is refused with a 4xx `Status` that names what was wrong, and nothing is stored. Uses the store, the
//! quantity and selector cores and the resource mapper; never the read API.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Limited};

use crate::cluster::ResourceMapper;
use crate::path::decode_segments;
use crate::quantity::{Quantity, QuantityError};
use crate::response::{self, HttpResponse, RequestError};
use crate::selector::parse_labels_map;
use crate::server::body::{BodyTimedOut, drain};
use crate::store::{
    CustomSeriesId, MAX_METRIC_NAME_LEN, MAX_NAMESPACE_LEN, MAX_OBJECT_NAME_LEN, MetricStore, SampleWrite, SeriesKind,
    SeriesLabels,
};

pub mod batch;
pub mod exposition;
pub mod otlp;
pub mod push;

/// Ingest's per-request lookup tables (batch items, push samples, exposition families), asked once per item:
/// foldhash, randomly seeded per table as std's SipHash is but several times faster on short keys; a table lives for
/// one request and holds at most --max-batch-items keys.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set twin of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use batch::{BATCH_PATH, BatchItem, BatchLimits, parse_batch};
pub use otlp::{OTLP_METRICS_PATH, is_otlp_path};
pub use push::{ObjectLabels, PUSH_PREFIX, PushGroups, PushOptions, is_push_path};

/// Prefix of the custom-metric write routes.
pub const WRITE_PREFIX: &str = "/write-metrics/";
/// Prefix of the external-metric write route.
pub const WRITE_EXTERNAL_PREFIX: &str = "/write-external-metrics/";

/// What every write path starts with: the route table's first, cheap check.
pub const WRITE_PATHS_PREFIX: &str = "/write-";

/// Whether a path belongs to the write API.
pub fn is_write_path(path: &str) -> bool {
    path.starts_with(WRITE_PREFIX)
        || path.starts_with(WRITE_EXTERNAL_PREFIX)
        || path == "/write-metrics"
        || path == "/write-external-metrics"
}

/// What a write path names; segments are borrowed from the path unless they were percent-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteTarget<'a> {
    /// A value on one object.
    Custom {
        /// The namespace in the path; `None` on the cluster-scoped routes.
        namespace: Option<Cow<'a, str>>,
        /// The resource as written in the path.
        resource: Cow<'a, str>,
        /// Object name.
        name: Cow<'a, str>,
        /// Metric name.
        metric: Cow<'a, str>,
    },
    /// An external series (its labels come from the query).
    External {
        /// Namespace.
        namespace: Cow<'a, str>,
        /// Metric name.
        metric: Cow<'a, str>,
    },
}

/// Parses a write path (W1-W3, external). Any empty segment matches nothing.
pub fn parse_path<'a>(path: &'a str) -> Result<WriteTarget<'a>, RequestError> {
    let not_found = || RequestError::WriteRouteNotFound;
    // Cloning a segment copies text only when it was percent-decoded; the others borrow from `path`.
    if let Some(rest) = path.strip_prefix(WRITE_EXTERNAL_PREFIX) {
        return match segments(rest)?.as_slice() {
            [ns_literal, namespace, metric] if ns_literal == "namespaces" => {
                Ok(WriteTarget::External { namespace: namespace.clone(), metric: metric.clone() })
            }
            _ => Err(not_found()),
        };
    }
    let rest = path.strip_prefix(WRITE_PREFIX).ok_or_else(not_found)?;
    let custom =
        |namespace: Option<&Cow<'a, str>>, resource: &Cow<'a, str>, name: &Cow<'a, str>, metric: &Cow<'a, str>| {
            Ok(WriteTarget::Custom {
                namespace: namespace.cloned(),
                resource: resource.clone(),
                name: name.clone(),
                metric: metric.clone(),
            })
        };
    match segments(rest)?.as_slice() {
        [ns_literal, namespace, resource, name, metric] if ns_literal == "namespaces" => {
            custom(Some(namespace), resource, name, metric)
        }
        [resource, name, metrics_literal, metric] if metrics_literal == "metrics" => {
            custom(None, resource, name, metric)
        }
        [resource, name, metric] => custom(None, resource, name, metric),
        _ => Err(not_found()),
    }
}

/// The decoded segments of a write path; an empty segment matches no route.
fn segments(path: &str) -> Result<Vec<Cow<'_, str>>, RequestError> {
    let segments = decode_segments(path).map_err(|_| RequestError::WriteRouteNotFound)?;
    if segments.iter().any(|s| s.is_empty()) {
        return Err(RequestError::WriteRouteNotFound);
    }
    Ok(segments)
}

/// The query parameters of a write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteQuery {
    /// `labels=k=v,k2=v2`.
    pub labels: SeriesLabels,
    /// `ttl=30s`.
    pub ttl: Option<Duration>,
    /// `kind=counter` or `kind=gauge` (the default): only counters have a rate (docs/wire-contract.md §4.6).
    pub kind: SeriesKind,
}

/// Parses the query of a write; unknown parameters are refused so that a typo never goes unnoticed.
pub fn parse_query(query: Option<&str>) -> Result<WriteQuery, RequestError> {
    let mut parsed = WriteQuery::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let bad = |reason: String| RequestError::BadQueryParameter { name: key.to_string(), reason };
        match key.as_ref() {
            "labels" => {
                let map = parse_labels_map(&value).map_err(|e| bad(e.to_string()))?;
                parsed.labels = SeriesLabels::from_map(map);
            }
            "ttl" => parsed.ttl = Some(parse_ttl(&value).map_err(bad)?),
            "kind" => parsed.kind = parse_kind(&value).map_err(bad)?,
            _ => {
                return Err(bad("unknown parameter; the write API accepts labels, ttl and kind".to_string()));
            }
        }
    }
    Ok(parsed)
}

/// A series' kind: `gauge` or `counter`.
fn parse_kind(text: &str) -> Result<SeriesKind, String> {
    SeriesKind::parse(text).ok_or_else(|| format!("{text:?} is not a kind: give gauge (the default) or counter"))
}

/// The store keeps deadlines in milliseconds: a shorter TTL would be truncated to zero and the value never seen.
const MIN_TTL: Duration = Duration::from_millis(1);

/// A TTL: a duration such as `30s`, `5m` or `1h30m`, or a number of seconds. Zero and anything below the store's
/// resolution (1ms) are refused: a value that expires at once is a mistake. Huge TTLs are accepted; the store
/// saturates the deadline.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let ttl = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration such as 30s, 5m or 1h30m ({e})"))?,
    };
    if ttl < MIN_TTL {
        return Err(format!("{text:?} is too short: a TTL must be at least 1ms, the store's resolution"));
    }
    Ok(ttl)
}

/// Only `identity` (or no encoding) is accepted. Every `Content-Encoding` header and every coding listed in one
/// counts: a body declared `gzip` in a second header, or in a value that is not visible ASCII, is not read as plain.
fn check_content_encoding(headers: &http::HeaderMap) -> Result<(), RequestError> {
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(RequestError::UnsupportedEncoding(String::from_utf8_lossy(value.as_bytes()).into_owned()));
        };
        for coding in text.split(',').map(str::trim) {
            if !coding.is_empty() && !coding.eq_ignore_ascii_case("identity") {
                return Err(RequestError::UnsupportedEncoding(coding.to_string()));
            }
        }
    }
    Ok(())
}

/// Parses a write body (docs/wire-contract.md §10 item 9): a JSON string (`"42"`), a JSON number (`42`), or a raw
/// quantity (`1500m`), surrounded by optional white space.
pub fn parse_body(body: &[u8]) -> Result<Quantity, RequestError> {
    let text =
        std::str::from_utf8(body).map_err(|_| RequestError::BadJson("the body is not UTF-8 text".to_string()))?.trim();
    if text.is_empty() {
        return Err(RequestError::EmptyBody);
    }
    let decoded: Cow<'_, str> = if text.starts_with('"') {
        match plain_json_string(text) {
            // The common case, `"42"`, needs no JSON decoder.
            Some(inner) => Cow::Borrowed(inner),
            None => Cow::Owned(serde_json::from_str(text).map_err(|e| RequestError::BadJson(e.to_string()))?),
        }
    } else {
        Cow::Borrowed(text)
    };
    // Go's Quantity unmarshalling trims spaces inside the string too.
    let quantity_text = decoded.trim();
    let quantity = Quantity::parse(quantity_text)
        .map_err(|source| RequestError::BadValue { body: shorten(quantity_text), source })?;
    // Go parses a number part without digits ("-", "+", ".", "e3") as 0. A writer who sends one meant something
    // else, so the write API refuses it instead of storing a 0 nobody wrote.
    let number = quantity_text.trim_start_matches(['+', '-']);
    let number_len = number.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    if !number.as_bytes()[..number_len].iter().any(u8::is_ascii_digit) {
        return Err(RequestError::BadValue { body: shorten(quantity_text), source: QuantityError::Numeric });
    }
    Ok(quantity)
}

/// The content of a JSON string literal that has no escapes, no inner quotes and no control characters (what
/// JSON forbids unescaped), so that it decodes to itself; `None` for anything else.
fn plain_json_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    inner.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20).then_some(inner)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// A DNS-1123 label: namespaces.
fn validate_namespace(value: &str) -> Result<(), RequestError> {
    validate_dns_name("namespace", value, MAX_NAMESPACE_LEN, false)
}

/// A DNS-1123 subdomain: object names.
fn validate_object_name(value: &str) -> Result<(), RequestError> {
    validate_dns_name("object name", value, MAX_OBJECT_NAME_LEN, true)
}

fn validate_dns_name(what: &'static str, value: &str, max: usize, dots: bool) -> Result<(), RequestError> {
    let invalid = |reason: String| RequestError::InvalidName { what, value: value.to_string(), reason };
    if value.len() > max {
        return Err(invalid(format!("must be no more than {max} characters")));
    }
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    let ok = if dots { value.split('.').all(part_ok) } else { part_ok(value) };
    if !ok {
        let shape = if dots { "a lowercase RFC 1123 subdomain" } else { "a lowercase RFC 1123 label" };
        return Err(invalid(format!(
            "must be {shape}: lower case alphanumeric characters{}, starting and ending with an alphanumeric character",
            if dots { ", '-' or '.'" } else { " or '-'" }
        )));
    }
    Ok(())
}

/// Metric names travel as URL path segments (HPA validates them the same way): printable ASCII without `/`, `%`
/// or white space, not `.` or `..`.
fn validate_metric_name(value: &str) -> Result<(), RequestError> {
    let invalid = |reason: &str| RequestError::InvalidName {
        what: "metric name",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.len() > MAX_METRIC_NAME_LEN {
        return Err(invalid("must be no more than 253 characters"));
    }
    if value == "." || value == ".." {
        return Err(invalid("may not be '.' or '..'"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%') {
        return Err(invalid("may contain only printable ASCII characters other than '/', '%' and white space"));
    }
    Ok(())
}

/// A write target resolved to its store identity: what a [`WriteGate`] decides on.
#[derive(Debug)]
pub enum Series<'a> {
    /// A value attached to an object.
    Custom(ResolvedCustom<'a>),
    /// An external metric series.
    External {
        /// Namespace.
        namespace: &'a str,
        /// Metric name.
        metric: &'a str,
    },
}

/// A custom target whose resource is resolved (group-qualified) and whose scope is checked.
#[derive(Debug)]
pub struct ResolvedCustom<'a> {
    /// Normalised group-qualified resource, e.g. `pods`, `deployments.apps`.
    pub resource: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: &'a str,
    /// Object name.
    pub name: &'a str,
    /// Metric name.
    pub metric: &'a str,
}

/// Whether the caller may make a resolved write (`delete` for DELETE). Asked after the path is validated and
/// resolved, before the body is read or anything is stored.
#[async_trait::async_trait]
pub trait WriteGate: Send + Sync {
    /// `Ok` lets the write proceed; an error is the response.
    async fn admit(&self, series: &Series<'_>, delete: bool) -> Result<(), RequestError>;
}

/// `--write-auth=none`: every write is admitted.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenGate;

#[async_trait::async_trait]
impl WriteGate for OpenGate {
    async fn admit(&self, _series: &Series<'_>, _delete: bool) -> Result<(), RequestError> {
        Ok(())
    }
}

impl ResolvedCustom<'_> {
    fn id(&self) -> CustomSeriesId<'_> {
        CustomSeriesId { resource: &self.resource, namespace: self.namespace, name: self.name, metric: self.metric }
    }
}

/// The write handler.
pub struct Ingest {
    store: Arc<dyn MetricStore>,
    mapper: Arc<dyn ResourceMapper>,
    default_ttl: Option<Duration>,
    max_body_bytes: usize,
    batch: BatchLimits,
    push: Arc<PushOptions>,
}

impl Ingest {
    /// A write handler over `store`. `default_ttl` applies when a write names none; bodies above
    /// `max_body_bytes` are refused with 413.
    pub fn new(
        store: Arc<dyn MetricStore>,
        mapper: Arc<dyn ResourceMapper>,
        default_ttl: Option<Duration>,
        max_body_bytes: usize,
    ) -> Self {
        Ingest {
            store,
            mapper,
            default_ttl,
            max_body_bytes,
            batch: BatchLimits::default(),
            push: Arc::new(PushOptions::default()),
        }
    }

    /// The bounds of batch writes (`--max-batch-items`, `--max-batch-body-bytes`).
    pub fn with_batch_limits(mut self, batch: BatchLimits) -> Self {
        self.batch = batch;
        self
    }

    /// How pushes are mapped (`--object-labels`) and their groups remembered (`--max-push-series`); one value
    /// shared by the write endpoints of every listener, so that a group is one group whichever port it is pushed to.
    pub fn with_push(mut self, push: Arc<PushOptions>) -> Self {
        self.push = push;
        self
    }

    /// Answers one write or delete, if `gate` admits it.
    pub async fn handle<B>(&self, request: Request<B>, gate: &dyn WriteGate) -> HttpResponse
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let mut body = Some(body);
        let result = self.apply(&parts, &mut body, gate).await;
        if let Some(unread) = body {
            drain(unread, self.max_body_bytes).await;
        }
        match result {
            Ok(response) => response,
            Err(error) => error.into_response(response::wants_pretty(None, &parts.headers)),
        }
    }

    /// Takes `body` only when it reads it.
    async fn apply<B>(
        &self,
        request: &http::request::Parts,
        body: &mut Option<B>,
        gate: &dyn WriteGate,
    ) -> Result<HttpResponse, RequestError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if is_push_path(request.uri.path()) {
            return self.apply_push(request, body, gate).await;
        }
        if is_otlp_path(request.uri.path()) {
            return self.apply_otlp(request, body, gate).await;
        }
        if request.uri.path() == BATCH_PATH {
            return self.apply_batch(request, body, gate).await;
        }
        let target = parse_path(request.uri.path())?;
        let method = request.method.clone();
        if method != Method::POST && method != Method::DELETE {
            return Err(RequestError::MethodNotAllowed { allow: "POST, DELETE" });
        }
        let query = parse_query(request.uri.query())?;
        match &target {
            WriteTarget::Custom { namespace, name, metric, .. } => {
                if let Some(namespace) = namespace {
                    validate_namespace(namespace)?;
                }
                validate_object_name(name)?;
                validate_metric_name(metric)?;
            }
            WriteTarget::External { namespace, metric } => {
                validate_namespace(namespace)?;
                validate_metric_name(metric)?;
            }
        }
        let series = self.series(&target).await?;
        gate.admit(&series, method == Method::DELETE).await?;
        if method == Method::DELETE {
            let existed = match &series {
                Series::Custom(custom) => self.store.delete_custom(custom.id()).await?,
                Series::External { namespace, metric } => {
                    self.store.delete_external(namespace, metric, &query.labels).await?
                }
            };
            return if existed { Ok(response::empty_response()) } else { Err(RequestError::NothingToDelete) };
        }
        let value = match body.take() {
            Some(body) => self.read_value(&request.headers, body).await?,
            None => return Err(RequestError::EmptyBody),
        };
        let write = SampleWrite { value, labels: query.labels, ttl: query.ttl.or(self.default_ttl), kind: query.kind };
        match &series {
            Series::Custom(custom) => self.store.put_custom(custom.id(), write).await?,
            Series::External { namespace, metric } => self.store.put_external(namespace, metric, write).await?,
        }
        Ok(response::empty_response())
    }

    /// The store identity of a write target: custom resources resolved and their scope checked.
    async fn series<'a>(&self, target: &'a WriteTarget<'_>) -> Result<Series<'a>, RequestError> {
        match target {
            WriteTarget::Custom { namespace, resource, name, metric } => {
                let (resource, namespace) = self.resolve(resource, namespace.as_deref()).await?;
                Ok(Series::Custom(ResolvedCustom { resource, namespace, name, metric }))
            }
            WriteTarget::External { namespace, metric } => Ok(Series::External { namespace, metric }),
        }
    }

    /// The group-qualified resource and the store namespace of a custom write, checking the route's scope.
    async fn resolve<'a>(&self, resource: &str, namespace: Option<&'a str>) -> Result<(String, &'a str), RequestError> {
        let info = self.mapper.resolve(resource).await?;
        let group_resource = info.group_resource();
        match (info.namespaced, namespace) {
            (true, Some(namespace)) => Ok((group_resource, namespace)),
            (false, None) => Ok((group_resource, "")),
            (true, None) => Err(RequestError::WrongScope(format!(
                "{group_resource} is namespaced: write to /write-metrics/namespaces/{{namespace}}/{group_resource}/{{name}}/{{metric}}"
            ))),
            (false, Some(_)) => Err(RequestError::WrongScope(format!(
                "{group_resource} is cluster-scoped: write to /write-metrics/{group_resource}/{{name}}/{{metric}}"
            ))),
        }
    }

    async fn read_value<B>(&self, headers: &http::HeaderMap, body: B) -> Result<Quantity, RequestError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        parse_body(&self.read_bytes(headers, body, self.max_body_bytes).await?)
    }

    /// A whole body of at most `limit` bytes, within `--request-body-timeout`, uncompressed.
    async fn read_bytes<B>(&self, headers: &http::HeaderMap, body: B, limit: usize) -> Result<Vec<u8>, RequestError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        check_content_encoding(headers)?;
        self.read_limited(headers, body, limit).await
    }

    /// A whole body of at most `limit` bytes, within `--request-body-timeout`, as sent (its encoding not checked).
    async fn read_limited<B>(&self, headers: &http::HeaderMap, body: B, limit: usize) -> Result<Vec<u8>, RequestError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(RequestError::BodyTooLarge { limit });
        }
        let failed = |error: Box<dyn std::error::Error + Send + Sync>| {
            if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                RequestError::BodyTooLarge { limit }
            } else if let Some(BodyTimedOut { timeout }) = error.downcast_ref::<BodyTimedOut>() {
                RequestError::BodyTimeout { timeout: *timeout }
            } else {
                RequestError::BodyRead(error.to_string())
            }
        };
        // A plain buffer: `collect()` would queue the frames in a `VecDeque` and copy them out again. Sized from
        // `Content-Length`, at most PREALLOCATED_BODY_BYTES ahead of the bytes that arrive: a large export is not
        // copied at every doubling, and a client that declares much and sends little holds little.
        let mut body = std::pin::pin!(Limited::new(body, limit));
        let mut bytes = Vec::with_capacity(declared.map_or(0, |len| len.min(PREALLOCATED_BODY_BYTES) as usize));
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(failed)?.into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        Ok(bytes)
    }
}

/// The most a body's buffer is sized to before its bytes arrive: a client that declares a large `Content-Length` and
/// sends nothing holds no more than this.
const PREALLOCATED_BODY_BYTES: u64 = 1 << 20;

/// Refuses a query parameter on an endpoint that takes none (batches, pushes, OTLP exports): a 400 naming the first
/// one, `why` telling the writer where what they meant goes instead.
fn refuse_parameters(request: &http::request::Parts, why: &str) -> Result<(), RequestError> {
    match form_urlencoded::parse(request.uri.query().unwrap_or("").as_bytes()).next() {
        Some((name, _)) => Err(RequestError::BadQueryParameter {
            name: name.into_owned(),
            reason: format!("unknown parameter; {why}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom<'a>(ns: Option<&'a str>, resource: &'a str, name: &'a str, metric: &'a str) -> WriteTarget<'a> {
        WriteTarget::Custom {
            namespace: ns.map(Cow::from),
            resource: resource.into(),
            name: name.into(),
            metric: metric.into(),
        }
    }

    #[test]
    fn write_routes_w1_w2_w3_and_external() {
        assert_eq!(
            parse_path("/write-metrics/namespaces/default/pods/my-pod/my_custom_metric").unwrap(),
            custom(Some("default"), "pods", "my-pod", "my_custom_metric")
        );
        assert_eq!(parse_path("/write-metrics/nodes/n1/temp").unwrap(), custom(None, "nodes", "n1", "temp"));
        assert_eq!(
            parse_path("/write-metrics/namespaces/default/work").unwrap(),
            custom(None, "namespaces", "default", "work")
        );
        assert_eq!(
            parse_path("/write-metrics/namespaces/default/metrics/work").unwrap(),
            custom(None, "namespaces", "default", "work")
        );
        assert_eq!(
            parse_path("/write-external-metrics/namespaces/default/queue").unwrap(),
            WriteTarget::External { namespace: "default".into(), metric: "queue".into() }
        );
    }

    #[test]
    fn paths_that_match_no_write_route_are_refused() {
        for path in [
            "/write-metrics",
            "/write-metrics/",
            "/write-metrics/pods/a",
            "/write-metrics/namespaces/default/pods/a/",
            "/write-metrics/namespaces/default/pods//m",
            "/write-metrics/a/b/c/d/e/f",
            "/write-metrics/pods/a/b/c",
            "/write-external-metrics/namespaces/default",
            "/write-external-metrics/default/m",
        ] {
            assert!(matches!(parse_path(path), Err(RequestError::WriteRouteNotFound)), "{path}");
        }
    }

    #[test]
    fn bodies_per_decision_9() {
        let ok = |body: &str| parse_body(body.as_bytes()).map(|q| q.to_string());
        assert_eq!(ok("\"42\"").unwrap(), "42");
        assert_eq!(ok("42").unwrap(), "42");
        assert_eq!(ok(" \"42\"\n").unwrap(), "42");
        assert_eq!(ok("\" 42 \"").unwrap(), "42");
        assert_eq!(ok("-7").unwrap(), "-7");
        assert!(matches!(parse_body(b""), Err(RequestError::EmptyBody)));
        assert!(matches!(parse_body(b"  \n"), Err(RequestError::EmptyBody)));
        assert!(matches!(parse_body(b"\"42"), Err(RequestError::BadJson(_))));
        assert!(matches!(parse_body(b"\"42\" trailing"), Err(RequestError::BadJson(_))));
        for bad in ["abc", "\"abc\"", "null", "true", "{}", "\"\""] {
            assert!(matches!(parse_body(bad.as_bytes()), Err(RequestError::BadValue { .. })), "{bad}");
        }
        assert!(matches!(parse_body(&[0xff, 0xfe]), Err(RequestError::BadJson(_))));
    }

    #[test]
    fn a_number_part_without_digits_is_refused_although_go_reads_it_as_zero() {
        for bad in ["-", "+", ".", "-.", "\"+.\"", "e3", "Ki", "\" . \""] {
            assert!(matches!(parse_body(bad.as_bytes()), Err(RequestError::BadValue { .. })), "{bad}");
        }
        let ok = |body: &str| parse_body(body.as_bytes()).map(|q| q.to_string());
        assert_eq!(ok(".5").unwrap(), "500m");
        assert_eq!(ok("-0").unwrap(), "0");
        assert_eq!(ok("1e3").unwrap(), "1e3");
        assert_eq!(ok("\"2Ki\"").unwrap(), "2Ki");
    }

    #[test]
    fn every_content_encoding_header_and_coding_counts() {
        let headers = |values: &[&[u8]]| {
            let mut map = http::HeaderMap::new();
            for value in values {
                map.append(header::CONTENT_ENCODING, http::HeaderValue::from_bytes(value).unwrap());
            }
            map
        };
        for ok in [&[][..], &[b"identity".as_slice()], &[b"IDENTITY", b""], &[b"identity, identity"]] {
            assert!(check_content_encoding(&headers(ok)).is_ok(), "{ok:?}");
        }
        for bad in [&[b"gzip".as_slice()][..], &[b"identity", b"gzip"], &[b"identity, gzip"], &[b"gzip\xff"]] {
            assert!(
                matches!(check_content_encoding(&headers(bad)), Err(RequestError::UnsupportedEncoding(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_plain_json_string_is_taken_as_is_only_when_the_json_decoder_agrees() {
        for text in [r#""42""#, r#""1500m""#, r#"" 4 ""#, r#""""#, "\"\u{e9}\"", "\"\u{7f}\""] {
            let decoded: String = serde_json::from_str(text).unwrap();
            assert_eq!(plain_json_string(text), Some(decoded.as_str()), "{text}");
        }
        // Escapes, inner quotes, control characters and unterminated strings are left to the JSON decoder.
        for text in [r#""4\u0032""#, r#""4\"2""#, r#""4"2""#, "\"4\t\"", "\"", r#""42"#, r#"42""#] {
            assert_eq!(plain_json_string(text), None, "{text}");
        }
        assert_eq!(parse_body(br#""4\u0032""#).map(|q| q.to_string()).unwrap(), "42");
        assert!(matches!(parse_body(b"\"4\t\""), Err(RequestError::BadJson(_))));
    }

    #[test]
    fn query_parameters_labels_and_ttl() {
        let q = parse_query(Some("labels=queue%3Dorders,zone%3Da&ttl=90s")).unwrap();
        assert_eq!(q.labels.to_map().get("queue").map(String::as_str), Some("orders"));
        assert_eq!(q.labels.len(), 2);
        assert_eq!(q.ttl, Some(Duration::from_secs(90)));
        assert_eq!(parse_query(Some("ttl=1h30m")).unwrap().ttl, Some(Duration::from_secs(5400)));
        assert_eq!(parse_query(Some("ttl=15")).unwrap().ttl, Some(Duration::from_secs(15)));
        assert_eq!(q.kind, SeriesKind::Gauge, "gauge unless said");
        assert_eq!(parse_query(Some("kind=counter")).unwrap().kind, SeriesKind::Counter);
        assert_eq!(parse_query(Some("kind=gauge&ttl=5s")).unwrap().kind, SeriesKind::Gauge);
        for bad in ["ttl=0", "ttl=soon", "ttl=-5s", "foo=bar", "labels=a", "kind=Counter", "kind=", "kind=histogram"] {
            assert!(matches!(parse_query(Some(bad)), Err(RequestError::BadQueryParameter { .. })), "{bad}");
        }
    }

    #[test]
    fn a_ttl_below_the_stores_resolution_is_refused_and_names_the_minimum() {
        for tiny in ["ttl=1ns", "ttl=500us", "ttl=999999ns", "ttl=0ms"] {
            let error = parse_query(Some(tiny)).unwrap_err();
            assert!(matches!(error, RequestError::BadQueryParameter { .. }), "{tiny}");
            assert!(error.to_string().contains("at least 1ms"), "{tiny}: {error}");
        }
        assert_eq!(parse_query(Some("ttl=1ms")).unwrap().ttl, Some(Duration::from_millis(1)));
        // Huge TTLs parse; the store saturates the deadline instead of overflowing.
        assert_eq!(parse_query(Some("ttl=1000000000h")).unwrap().ttl, Some(Duration::from_secs(3_600_000_000_000)));
        assert_eq!(parse_query(Some("ttl=18446744073709551615")).unwrap().ttl, Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_namespace("default").is_ok());
        assert!(validate_namespace("kube-system").is_ok());
        for bad in ["Default", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
        assert!(validate_object_name("web-1.example").is_ok());
        for bad in ["Web", "a..b", ".a", "a_b", &"a".repeat(254)] {
            assert!(validate_object_name(bad).is_err(), "{bad}");
        }
        for good in ["my_custom_metric", "requests-per-second", "a:b"] {
            assert!(validate_metric_name(good).is_ok(), "{good}");
        }
        for bad in [".", "..", "a b", "a%b", &"m".repeat(254)] {
            assert!(validate_metric_name(bad).is_err(), "{bad}");
        }
    }

    /// Records what it was asked and refuses everything.
    #[derive(Default)]
    struct RefusingGate(std::sync::Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl WriteGate for RefusingGate {
        async fn admit(&self, series: &Series<'_>, delete: bool) -> Result<(), RequestError> {
            let seen = match series {
                Series::Custom(c) => format!("{} {}/{}/{}/{}", delete, c.resource, c.namespace, c.name, c.metric),
                Series::External { namespace, metric } => format!("{delete} external {namespace}/{metric}"),
            };
            self.0.lock().unwrap().push(seen);
            Err(RequestError::NothingToDelete)
        }
    }

    #[tokio::test]
    async fn the_gate_sees_the_resolved_series_and_a_refusal_stores_nothing() {
        let store = Arc::new(crate::store::MemoryStore::new(crate::store::Limits::default()));
        let ingest = Ingest::new(store.clone(), Arc::new(crate::cluster::BuiltinMapper::default()), None, 4096);
        let gate = RefusingGate::default();
        let post =
            |path: &str| Request::post(path).body(http_body_util::Full::new(Bytes::from_static(b"\"42\""))).unwrap();
        for path in
            ["/write-metrics/namespaces/default/deployment/web/q", "/write-external-metrics/namespaces/default/queue"]
        {
            let response = ingest.handle(post(path), &gate).await;
            assert_eq!(response.status(), http::StatusCode::NOT_FOUND, "{path}");
        }
        let delete = Request::delete("/write-metrics/nodes/n1/temp").body(http_body_util::Empty::new()).unwrap();
        ingest.handle(delete, &gate).await;
        assert_eq!(
            *gate.0.lock().unwrap(),
            ["false deployments.apps/default/web/q", "false external default/queue", "true nodes//n1/temp"]
        );
        assert_eq!(store.series_count(), 0);
        let response = ingest.handle(post("/write-metrics/namespaces/default/pods/web/q"), &OpenGate).await;
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(store.series_count(), 1);
    }
}
