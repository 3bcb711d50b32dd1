//! HTTP responses: JSON bodies, and the one place where every request error becomes a Kubernetes `Status`
//! (docs/wire-contract.md §3) with its HTTP code.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use serde::Serialize;

use crate::auth;
use crate::cluster::{LabelIndexError, MapperError};
use crate::quantity::QuantityError;
use crate::selector::SelectorError;
use crate::store::StoreError;

/// The response type of every handler.
pub type HttpResponse = Response<Body>;

/// The body of every response: one buffer (nearly every answer), or a long list written a piece at a time so that
/// it is never held in memory whole.
pub enum Body {
    /// The whole body.
    Full(Full<Bytes>),
    /// A body produced as the connection takes it.
    Chunks(Box<dyn Chunks>),
}

/// A body produced a piece at a time, of a length known in advance.
pub trait Chunks: Send + 'static {
    /// The next piece; `None` once all [`Chunks::remaining`] bytes have been given.
    fn next_chunk(&mut self) -> Option<Bytes>;
    /// Bytes still to come.
    fn remaining(&self) -> u64;
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(full) => f.debug_tuple("Full").field(full).finish(),
            Body::Chunks(chunks) => f.debug_struct("Chunks").field("remaining", &chunks.remaining()).finish(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::Full(Full::new(bytes))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(cx),
            Body::Chunks(chunks) => Poll::Ready(chunks.next_chunk().map(|chunk| Ok(Frame::data(chunk)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Chunks(chunks) => chunks.remaining() == 0,
        }
    }

    // The exact length lets HTTP/1.1 send Content-Length instead of chunked encoding for streamed lists too.
    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Chunks(chunks) => SizeHint::with_exact(chunks.remaining()),
        }
    }
}

/// Everything that can make a request fail, named after the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No route matches the path.
    #[error("the server could not find the requested resource")]
    RouteNotFound,
    /// A write path that matches no write route.
    #[error(
        "no write route matches this path; use /write-metrics/namespaces/{{namespace}}/{{resource}}/{{name}}/{{metric}}, /write-metrics/{{resource}}/{{name}}/{{metric}}, /write-metrics/namespaces/{{name}}/metrics/{{metric}} or /write-external-metrics/namespaces/{{namespace}}/{{metric}}"
    )]
    WriteRouteNotFound,
    /// The path has the shape of a route but cannot be one (Kubernetes' "invalid request path").
    #[error("invalid request path")]
    InvalidPath,
    /// The route exists but not for this method.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: &'static str,
    },
    /// The client accepts no media type we serve.
    #[error("only application/json is served; the Accept header {0:?} does not allow it")]
    NotAcceptable(String),
    /// No value is stored for the object and metric.
    #[error("the server could not find the metric {metric} for {resource} {name}{}", selector_suffix(.selector))]
    MetricNotFound {
        /// Metric name.
        metric: String,
        /// Group-qualified resource.
        resource: String,
        /// Object name.
        name: String,
        /// Canonical metric selector when a stored value did not match it.
        selector: Option<String>,
    },
    /// The resource name is unknown.
    #[error(transparent)]
    UnknownResource(#[from] MapperError),
    /// A resource used at the wrong scope.
    #[error("{0}")]
    WrongScope(String),
    /// `labelSelector` does not parse.
    #[error("{0}")]
    BadLabelSelector(SelectorError),
    /// `metricLabelSelector` does not parse or cannot be represented.
    #[error("invalid metricLabelSelector: {0}")]
    BadMetricLabelSelector(SelectorError),
    /// A selector query value is longer than allowed.
    #[error("{parameter} is {len} bytes long, at most {limit} are allowed (--max-selector-bytes)")]
    SelectorTooLong {
        /// `labelSelector` or `metricLabelSelector`.
        parameter: &'static str,
        /// Its length in bytes, decoded.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A list read would return more items than one response may hold.
    #[error(
        "the response would hold {count} items, at most {limit} are served in one response (--max-list-items): narrow the read with labelSelector or metricLabelSelector"
    )]
    TooManyItems {
        /// Items the read found.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A read's answer would be larger than one response may be.
    #[error(
        "the response would be larger than {limit} bytes, the most served in one response (--max-response-bytes): narrow the read with labelSelector or metricLabelSelector"
    )]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The label index cannot answer.
    #[error(transparent)]
    LabelIndex(#[from] LabelIndexError),
    /// The write body is empty.
    #[error("request body is empty: send a quantity such as \"42\", 42 or 1500m")]
    EmptyBody,
    /// The request body is larger than allowed.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// The body did not arrive within `--request-body-timeout` of the headers.
    #[error("the request body was not received within {timeout:?} of the request headers (--request-body-timeout)")]
    BodyTimeout {
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// A `Transfer-Encoding` other than `chunked` alone.
    #[error("Transfer-Encoding {0:?} is not supported; send the body with Content-Length or chunked alone")]
    UnsupportedTransferEncoding(String),
    /// Both `Transfer-Encoding` and `Content-Length`: the body's length is ambiguous.
    #[error("the request has both Transfer-Encoding and Content-Length; send only one of them")]
    ConflictingBodyLength,
    /// The body is not a quantity.
    #[error("invalid value {body:?}: {source}; send a quantity such as \"42\", 42 or 1500m")]
    BadValue {
        /// The body (shortened).
        body: String,
        /// Why it is not a quantity.
        source: QuantityError,
    },
    /// The body is a JSON string that does not decode.
    #[error("invalid JSON string in request body: {0}")]
    BadJson(String),
    /// Compressed bodies are not accepted.
    #[error("Content-Encoding {0:?} is not supported; send the body uncompressed")]
    UnsupportedEncoding(String),
    /// A bad query parameter.
    #[error("invalid query parameter {name}: {reason}")]
    BadQueryParameter {
        /// Parameter name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A name in the path is not valid.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A DELETE of a value that is not stored.
    #[error("no value is stored for this series")]
    NothingToDelete,
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Authentication or authorization refused the request.
    #[error(transparent)]
    Auth(#[from] auth::Error),
    /// A forwarded read got no answer from the neighbour adapter (docs/architecture.md §13).
    #[error(transparent)]
    Neighbour(#[from] crate::forward::ForwardError),
    /// A batch write body that is not a batch (docs/wire-contract.md §4.4).
    #[error("invalid batch: {0}; send {{\"items\": [...]}}")]
    BadBatch(String),
    /// A field of a batch item that is unexpected or of the wrong JSON type.
    #[error("{0}")]
    BadBatchItem(String),
    /// A field that a batch item of its kind must have.
    #[error("Required value: {0}")]
    BatchFieldRequired(&'static str),
    /// A batch with more items than `--max-batch-items`.
    #[error("the batch holds more than {limit} items, the most one batch may hold (--max-batch-items)")]
    TooManyBatchItems {
        /// The limit.
        limit: usize,
    },
    /// A batch body over `--max-batch-body-bytes`.
    #[error("request body exceeds {limit} bytes (--max-batch-body-bytes)")]
    BatchBodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A push path whose grouping key cannot be read (docs/wire-contract.md §4.5).
    #[error("invalid grouping key in the push path: {0}")]
    BadGroupingKey(String),
    /// A push body that does not parse in the format it was sent as.
    #[error("invalid push body: {0}")]
    BadPushBody(String),
    /// A push `Content-Encoding` other than gzip or identity.
    #[error("Content-Encoding {0:?} is not supported; send the body uncompressed or gzip-compressed")]
    UnsupportedPushEncoding(String),
    /// A push with more samples to store than `--max-batch-items`.
    #[error("the push holds more than {limit} samples to store, the most one push may hold (--max-batch-items)")]
    TooManyPushSamples {
        /// The limit.
        limit: usize,
    },
    /// A compressed push body that inflates beyond `--max-batch-body-bytes`.
    #[error("request body exceeds {limit} bytes once decompressed (--max-batch-body-bytes)")]
    DecompressedBodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Why one pushed sample cannot be stored: the cause of a [`RequestError::PushRefused`].
    #[error("{0}")]
    PushSampleRefused(String),
    /// The push groups remember `--max-push-series` series already.
    #[error(
        "the push groups already remember {limit} series (--max-push-series): delete groups (DELETE /metrics/job/...) or raise the limit"
    )]
    PushGroupsFull {
        /// The limit.
        limit: usize,
    },
    /// A push refused as a whole, nothing stored: each refused sample in `causes` (its `field` the sample as
    /// pushed, `name{labels}`), in body order.
    #[error(
        "the push was refused and nothing was stored: {refused} of {total} samples cannot be stored; the first, {}",
        first_cause(causes)
    )]
    PushRefused {
        /// Samples in the push.
        total: usize,
        /// Causes refused (samples, and series of the group the push would replace).
        refused: usize,
        /// The causes (never empty).
        causes: Vec<BatchCause>,
    },
    /// An OTLP export whose `Content-Type` is neither OTLP encoding (docs/wire-contract.md §4.7).
    #[error(
        "Content-Type {0:?} is not an OTLP encoding: send application/x-protobuf (binary protobuf) or application/json (OTLP JSON)"
    )]
    UnsupportedOtlpContentType(String),
    /// An OTLP export body that does not decode as an `ExportMetricsServiceRequest`.
    #[error("invalid OTLP export: {0}")]
    BadOtlpBody(String),
    /// An OTLP export with more data points than `--max-batch-items`.
    #[error("the export holds more than {limit} data points, the most one request may hold (--max-batch-items)")]
    TooManyOtlpPoints {
        /// The limit.
        limit: usize,
    },
    /// A batch refused as a whole, nothing stored: each refused item in `causes`, in item order.
    #[error(
        "the batch was refused and nothing was stored: {refused} of {total} items cannot be written; the first, {}",
        first_cause(causes)
    )]
    BatchRefused {
        /// Items in the batch.
        total: usize,
        /// Items refused.
        refused: usize,
        /// The refused items (never empty).
        causes: Vec<BatchCause>,
    },
}

/// One refused item of a batch: the field that was wrong (`items[3].value`, or `items[3]` for the whole item) and
/// the error a single write would have answered.
#[derive(Debug)]
pub struct BatchCause {
    /// The field path, Kubernetes style.
    pub field: String,
    /// Why.
    pub error: RequestError,
}

fn first_cause(causes: &[BatchCause]) -> String {
    causes.first().map(|c| format!("{}: {}", c.field, c.error)).unwrap_or_default()
}

fn selector_suffix(selector: &Option<String>) -> String {
    selector.as_ref().map(|s| format!(" with selector {s}")).unwrap_or_default()
}

impl RequestError {
    /// The HTTP code and the Kubernetes `reason` of this error.
    fn code_and_reason(&self) -> (StatusCode, &'static str) {
        use RequestError::*;
        match self {
            RouteNotFound | WriteRouteNotFound | MetricNotFound { .. } | UnknownResource(_) | NothingToDelete => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            InvalidPath
            | WrongScope(_)
            | BadLabelSelector(_)
            | BadMetricLabelSelector(_)
            | SelectorTooLong { .. }
            | LabelIndex(LabelIndexError::NeedsCluster { .. })
            | EmptyBody
            | BodyRead(_)
            | BadValue { .. }
            | BadJson(_)
            | BadQueryParameter { .. }
            | BadBatch(_)
            | BadBatchItem(_)
            | BatchFieldRequired(_)
            | BadGroupingKey(_)
            | BadPushBody(_)
            | PushSampleRefused(_)
            | BadOtlpBody(_)
            | ConflictingBodyLength => (StatusCode::BAD_REQUEST, "BadRequest"),
            BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "Timeout"),
            // Kubernetes has no reason for 501; the Status then has none.
            UnsupportedTransferEncoding(_) => (StatusCode::NOT_IMPLEMENTED, ""),
            MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            BodyTooLarge { .. }
            | BatchBodyTooLarge { .. }
            | TooManyBatchItems { .. }
            | TooManyPushSamples { .. }
            | TooManyOtlpPoints { .. }
            | DecompressedBodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            // The code of the first refused item, as its single write would have answered: a client can tell a
            // batch to fix (4xx) from one to retry (503) the same way.
            BatchRefused { causes, .. } => match causes.first() {
                Some(cause) => cause.error.code_and_reason(),
                None => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            },
            // Pushgateway answers 400 to every push it refuses; a client retries or fixes by the code, so a refusal
            // that a retry can cure (authorization, a store that is down) keeps its own.
            PushRefused { causes, .. } => match causes.first().map(|cause| cause.error.code_and_reason()) {
                Some((code, reason))
                    if code.is_server_error()
                        || code == StatusCode::FORBIDDEN
                        || code == StatusCode::UNAUTHORIZED
                        || code == StatusCode::TOO_MANY_REQUESTS =>
                {
                    (code, reason)
                }
                _ => (StatusCode::BAD_REQUEST, "BadRequest"),
            },
            PushGroupsFull { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            UnsupportedEncoding(_) | UnsupportedPushEncoding(_) | UnsupportedOtlpContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            InvalidName { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            Store(
                StoreError::TooManyLabels { .. } | StoreError::LabelBytes { .. } | StoreError::NameTooLong { .. },
            ) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            // Kubernetes answers an exhausted quota with 403 Forbidden; the series limit is our quota.
            Store(StoreError::SeriesLimit { .. } | StoreError::StoreBytesLimit { .. }) => {
                (StatusCode::FORBIDDEN, "Forbidden")
            }
            // The read is well-formed but asks for more than one response may carry: a quota, as above. Not 429
            // or 503, which invite a retry that would fail the same way; kube-apiserver's aggregator passes the 403
            // through, and the HPA shows its message in its FailedGet...Metric event.
            TooManyItems { .. } | ResponseTooLarge { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            Store(StoreError::Unavailable(_)) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            // As kube-apiserver's aggregator answers for a backend it cannot reach.
            Neighbour(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            // The index may recover (RBAC granted, list finished): the client is told to retry, as for an
            // unavailable store.
            LabelIndex(LabelIndexError::WatchFailed { .. } | LabelIndexError::SyncTimeout { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
            }
            Auth(auth::Error::Unauthorized(_)) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Auth(auth::Error::Forbidden { .. }) => (StatusCode::FORBIDDEN, "Forbidden"),
            Auth(auth::Error::AuthorizationFailed(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            Auth(auth::Error::AnonymousRateLimited { .. } | auth::Error::TokenReviewRateLimited { .. }) => {
                (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
            }
        }
    }

    /// The HTTP code this error answers with: what an endpoint that renders errors in its own format (the OTLP
    /// receiver's `google.rpc.Status`, docs/wire-contract.md §4.7) sends.
    pub fn status_code(&self) -> StatusCode {
        self.code_and_reason().0
    }

    /// Kubernetes' `CauseType` of this error as the cause of a refused batch item.
    fn cause_type(&self) -> &'static str {
        use RequestError::*;
        match self {
            UnknownResource(_) => "FieldValueNotFound",
            Auth(_) | Store(StoreError::SeriesLimit { .. } | StoreError::StoreBytesLimit { .. }) => {
                "FieldValueForbidden"
            }
            Store(StoreError::TooManyLabels { .. }) => "FieldValueTooMany",
            Store(StoreError::LabelBytes { .. } | StoreError::NameTooLong { .. }) => "FieldValueTooLong",
            Store(StoreError::Unavailable(_)) => "UnexpectedServerResponse",
            BatchFieldRequired(_) => "FieldValueRequired",
            _ => "FieldValueInvalid",
        }
    }

    /// The error as a `Status` response.
    pub fn into_response(self, pretty: bool) -> HttpResponse {
        let (code, reason) = self.code_and_reason();
        // 501 answers what the client sent, not a failure of ours.
        if code.is_server_error() && code != StatusCode::NOT_IMPLEMENTED {
            tracing::warn!(error = %self, "request failed");
        }
        let message = self.to_string();
        let details = match &self {
            RequestError::RouteNotFound | RequestError::MethodNotAllowed { .. } => Some(StatusDetails::default()),
            RequestError::Auth(auth::Error::Forbidden { name, group, kind, .. }) => {
                let given = |s: &String| (!s.is_empty()).then(|| s.clone());
                Some(StatusDetails { name: given(name), group: given(group), kind: given(kind), ..Default::default() })
            }
            RequestError::BatchRefused { causes, .. } | RequestError::PushRefused { causes, .. } => {
                Some(StatusDetails {
                    causes: causes
                        .iter()
                        .map(|c| StatusCause {
                            reason: c.error.cause_type(),
                            message: c.error.to_string(),
                            field: c.field.clone(),
                        })
                        .collect(),
                    ..Default::default()
                })
            }
            _ => None,
        };
        let status = Status::failure(code, (!reason.is_empty()).then_some(reason), &message, details);
        let mut response = json_response(code, &status, pretty);
        match self {
            RequestError::MethodNotAllowed { allow } => {
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            RequestError::Auth(
                auth::Error::AnonymousRateLimited { retry_after_secs }
                | auth::Error::TokenReviewRateLimited { retry_after_secs },
            ) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// `details` of a `Status`; every key is omitted when empty.
#[derive(Debug, Default, Serialize)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<StatusCause>,
}

/// One entry of `details.causes` (Kubernetes' `StatusCause`, keys in wire order).
#[derive(Debug, Serialize)]
pub struct StatusCause {
    reason: &'static str,
    message: String,
    field: String,
}

/// The Kubernetes `Status` object, keys in wire order.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: EmptyObject,
    status: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails>,
    code: u16,
}

impl<'a> Status<'a> {
    /// A failure `Status`.
    pub fn failure(
        code: StatusCode,
        reason: Option<&'static str>,
        message: &'a str,
        details: Option<StatusDetails>,
    ) -> Self {
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: EmptyObject {},
            status: "Failure",
            message,
            reason,
            details,
            code: code.as_u16(),
        }
    }
}

/// Serializes as `{}` (Kubernetes' empty `ListMeta` / `ObjectMeta`).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct EmptyObject {}

/// A JSON response: compact with a trailing newline, or indented by two spaces without one (as Go's apiserver).
pub fn json_response<T: Serialize>(code: StatusCode, body: &T, pretty: bool) -> HttpResponse {
    let bytes = if pretty {
        serde_json::to_vec_pretty(body)
    } else {
        serde_json::to_vec(body).map(|mut v| {
            v.push(b'\n');
            v
        })
    };
    match bytes {
        Ok(bytes) => with_body(code, "application/json", Bytes::from(bytes)),
        Err(error) => serialization_failed(&error),
    }
}

/// The answer when a body could not be serialized: our wire types always serialize, so this is a bug, reported
/// without internals.
pub fn serialization_failed(error: &dyn std::fmt::Display) -> HttpResponse {
    tracing::error!(%error, "serializing a response failed");
    with_body(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", Bytes::from_static(b"internal error\n"))
}

/// A plain-text response.
pub fn text_response(code: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    with_body(code, "text/plain; charset=utf-8", body.into())
}

/// An empty 200 response (a successful write).
pub fn empty_response() -> HttpResponse {
    let mut response = Response::new(Body::from(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    response
}

/// A response with the headers every answer of ours carries.
pub fn with_body(code: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    with_any_body(code, content_type, Body::from(body))
}

/// A response whose body is written a piece at a time, with the headers of [`with_body`].
pub fn with_chunks(code: StatusCode, content_type: &'static str, chunks: Box<dyn Chunks>) -> HttpResponse {
    with_any_body(code, content_type, Body::Chunks(chunks))
}

fn with_any_body(code: StatusCode, content_type: &'static str, body: Body) -> HttpResponse {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Whether the response should be indented: `?pretty=true|1`, or a user agent that is a person's tool
/// (`curl`, `Wget`, a browser), as Kubernetes does.
pub fn wants_pretty(query_pretty: Option<&str>, headers: &HeaderMap) -> bool {
    if let Some(value) = query_pretty {
        return value == "true" || value == "1";
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .is_some_and(|ua| ua.starts_with("curl") || ua.starts_with("Wget") || ua.starts_with("Mozilla/5.0"))
}

/// Whether the `Accept` header allows `application/json` (absent, `*/*`, `application/*`, or JSON itself, with
/// any parameters).
pub fn accepts_json(headers: &HeaderMap) -> Result<(), RequestError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = accept.to_str().unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(());
    }
    let ok = accept.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(media.as_str(), "*/*" | "application/*" | "application/json")
    });
    if ok { Ok(()) } else { Err(RequestError::NotAcceptable(accept.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: HttpResponse) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn route_not_found_is_the_kubernetes_status_with_empty_details() {
        let response = RequestError::RouteNotFound.into_response(false);
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_of(response).await,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"the server could not find the requested resource\",\"reason\":\"NotFound\",\"details\":{},\"code\":404}\n"
        );
    }

    #[tokio::test]
    async fn metric_not_found_names_metric_resource_object_and_selector() {
        let error = RequestError::MetricNotFound {
            metric: "q".into(),
            resource: "deployments.apps".into(),
            name: "web".into(),
            selector: Some("a=b".into()),
        };
        let response = error.into_response(false);
        assert_eq!(response.status(), 404);
        let body = body_of(response).await;
        assert!(
            body.contains("\"message\":\"the server could not find the metric q for deployments.apps web with selector a=b\",\"reason\":\"NotFound\",\"code\":404"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn unauthorized_is_the_kubernetes_401_without_details() {
        let response = RequestError::from(auth::Error::Unauthorized(vec![auth::AuthenticationError::InvalidToken]))
            .into_response(false);
        assert_eq!(response.status(), 401);
        assert_eq!(
            body_of(response).await,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n"
        );
    }

    #[tokio::test]
    async fn forbidden_carries_name_group_and_kind_in_details() {
        let message = r#"pods.custom.metrics.k8s.io "*" is forbidden: User "alice" cannot get resource "pods/q" in API group "custom.metrics.k8s.io" in the namespace "default""#;
        let error = auth::Error::Forbidden {
            message: message.into(),
            name: "*".into(),
            group: "custom.metrics.k8s.io".into(),
            kind: "pods".into(),
        };
        let response = RequestError::from(error).into_response(false);
        assert_eq!(response.status(), 403);
        let body: serde_json::Value = serde_json::from_str(&body_of(response).await).unwrap();
        assert_eq!(body["message"], message);
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(body["code"], 403);
        assert_eq!(body["details"], serde_json::json!({"name": "*", "group": "custom.metrics.k8s.io", "kind": "pods"}));

        let non_resource = auth::Error::Forbidden {
            message: r#"forbidden: User "alice" cannot get path "/metrics""#.into(),
            name: String::new(),
            group: String::new(),
            kind: String::new(),
        };
        let body = body_of(RequestError::from(non_resource).into_response(false)).await;
        assert!(body.contains(r#""reason":"Forbidden","details":{},"code":403"#), "{body}");
    }

    #[tokio::test]
    async fn a_failed_authorization_check_is_an_internal_error() {
        let error = auth::Error::AuthorizationFailed(std::sync::Arc::new(auth::ReviewError::BadAnswer {
            review: "SubjectAccessReview",
            reason: "allowed and denied".into(),
        }));
        let response = RequestError::from(error).into_response(false);
        assert_eq!(response.status(), 500);
        let body: serde_json::Value = serde_json::from_str(&body_of(response).await).unwrap();
        assert_eq!(body["reason"], "InternalError");
        assert_eq!(
            body["message"],
            "the authorization check could not be made: SubjectAccessReview answer is unusable: allowed and denied"
        );
    }

    #[tokio::test]
    async fn a_refused_batch_is_one_status_with_the_first_items_code_and_every_cause() {
        let causes = vec![
            BatchCause { field: "items[1].namespace".into(), error: RequestError::BatchFieldRequired("namespace") },
            BatchCause { field: "items[3]".into(), error: RequestError::Store(StoreError::SeriesLimit { limit: 5 }) },
        ];
        let response = RequestError::BatchRefused { total: 4, refused: 2, causes }.into_response(false);
        assert_eq!(response.status(), 400);
        let body = body_of(response).await;
        let prefix = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the batch was refused and nothing was stored: 2 of 4 items cannot be written; the first, items[1].namespace: Required value: namespace","reason":"BadRequest","details":{"causes":[{"reason":"FieldValueRequired","message":"Required value: namespace","field":"items[1].namespace"},{"reason":"FieldValueForbidden","message":"series limit reached"#;
        assert!(body.starts_with(prefix), "{body}");
        assert!(body.ends_with("\"field\":\"items[3]\"}]},\"code\":400}\n"), "{body}");
    }

    #[tokio::test]
    async fn method_not_allowed_carries_the_allow_header() {
        let response = RequestError::MethodNotAllowed { allow: "GET" }.into_response(false);
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "GET");
    }

    #[tokio::test]
    async fn pretty_output_is_indented_without_trailing_newline() {
        let body = body_of(json_response(StatusCode::OK, &serde_json::json!({"a": 1}), true)).await;
        assert_eq!(body, "{\n  \"a\": 1\n}");
    }

    #[test]
    fn pretty_follows_the_query_then_the_user_agent() {
        let mut headers = HeaderMap::new();
        assert!(!wants_pretty(None, &headers));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("curl/8.0"));
        assert!(wants_pretty(None, &headers));
        assert!(!wants_pretty(Some("false"), &headers));
        assert!(wants_pretty(Some("1"), &HeaderMap::new()));
    }

    #[test]
    fn accept_allows_json_wildcards_and_rejects_protobuf_only() {
        let mut headers = HeaderMap::new();
        assert!(accepts_json(&headers).is_ok());
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.kubernetes.protobuf, */*"));
        assert!(accepts_json(&headers).is_ok());
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
        );
        assert!(accepts_json(&headers).is_ok());
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.kubernetes.protobuf"));
        assert!(matches!(accepts_json(&headers), Err(RequestError::NotAcceptable(_))));
    }
}
