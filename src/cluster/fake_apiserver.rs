//! The one fake kube-apiserver of the tests: a hyper HTTP/1 server on 127.0.0.1 with a [`kube::Client`] pointed
//! at it, recording every request.
//!
//! It answers from state the test sets up (discovery documents, listable and watchable metadata collections,
//! forbidden and stalled paths) and, for what that state does not serve, with the test's own closure
//! ([`FakeApiServer::answering`]), which reviews and ConfigMap tests use to answer POSTed objects or stream a
//! watch of their own. Without a closure, unknown paths are a 404 `Status`, as kube-apiserver answers them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A request received by [`FakeApiServer`].
#[derive(Debug, Clone)]
pub(crate) struct RecordedRequest {
    /// Method.
    pub method: http::Method,
    /// Path.
    pub path: String,
    /// Raw query (empty when absent).
    pub query: String,
    /// The `Accept` header (empty when absent).
    pub accept: String,
    /// The JSON body (`Null` when empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// Whether this is a watch (`watch=true` in the query) rather than a get or list.
    pub(crate) fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true")
    }
}

/// How [`FakeApiServer`] answers one request.
pub(crate) enum FakeResponse {
    /// A JSON body with this status.
    Json(u16, Value),
    /// A 200 whose body streams every value received as one JSON line (a watch); the body ends when the sender
    /// is dropped, and stays open without data as long as it is not (a stalled request).
    Stream(mpsc::UnboundedReceiver<Value>),
}

/// A test's own answer to the requests the server's state does not serve.
type Handler = dyn Fn(&RecordedRequest) -> FakeResponse + Send + Sync;

/// A Kubernetes `Status` failure body.
pub(crate) fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    })
}

/// A response body: whole, or JSON lines from a channel.
enum Body {
    Full(Option<Bytes>),
    Lines(mpsc::UnboundedReceiver<Value>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Lines(values) => values.poll_recv(cx).map(|value| {
                value.map(|value| {
                    let mut line = serde_json::to_vec(&value).unwrap();
                    line.push(b'\n');
                    Ok(Frame::data(Bytes::from(line)))
                })
            }),
        }
    }
}

impl FakeResponse {
    fn into_http(self) -> http::Response<Body> {
        let (status, body) = match self {
            FakeResponse::Json(status, value) => (status, Body::Full(Some(Bytes::from(value.to_string())))),
            FakeResponse::Stream(values) => (200, Body::Lines(values)),
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }
}

/// One listable, watchable collection of metadata-only objects.
#[derive(Default)]
struct Collection {
    /// (namespace, name) -> labels.
    objects: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// The open watches; a closed one is dropped at the next event.
    watchers: Vec<mpsc::UnboundedSender<Value>>,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<RecordedRequest>>,
    documents: Mutex<HashMap<String, Value>>,
    collections: Mutex<HashMap<String, Collection>>,
    forbidden: Mutex<HashSet<String>>,
    /// Paths whose requests get headers and then nothing; the senders keep those bodies open.
    stalled: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Value>>>>,
    resource_version: AtomicU64,
    handler: Option<Box<Handler>>,
}

/// A `PartialObjectMetadata` as kube-apiserver sends it for `as=PartialObjectMetadata` requests.
fn object(namespace: &str, name: &str, labels: &BTreeMap<String, String>, rv: u64) -> Value {
    let mut metadata = json!({"name": name, "labels": labels, "resourceVersion": rv.to_string()});
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata})
}

impl State {
    /// Stalled paths first (they stand for a hung kube-apiserver), then documents, forbidden paths, collections,
    /// the test's handler, and a 404.
    fn answer(&self, request: &RecordedRequest) -> FakeResponse {
        let path = &request.path;
        if let Some(senders) = self.stalled.lock().unwrap().get_mut(path) {
            let (sender, receiver) = mpsc::unbounded_channel();
            senders.push(sender);
            return FakeResponse::Stream(receiver);
        }
        if let Some(document) = self.documents.lock().unwrap().get(path) {
            return FakeResponse::Json(200, document.clone());
        }
        if self.forbidden.lock().unwrap().contains(path) {
            let message = format!("{path} is forbidden: User \"system:serviceaccount:x:adapter\" cannot list");
            return FakeResponse::Json(403, status_body(403, "Forbidden", &message));
        }
        if let Some(collection) = self.collections.lock().unwrap().get_mut(path) {
            if request.is_watch() {
                let (sender, receiver) = mpsc::unbounded_channel();
                collection.watchers.push(sender);
                return FakeResponse::Stream(receiver);
            }
            let rv = self.resource_version.load(Ordering::SeqCst);
            let items: Vec<Value> =
                collection.objects.iter().map(|((ns, name), labels)| object(ns, name, labels, rv)).collect();
            let list = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": rv.to_string()}, "items": items});
            return FakeResponse::Json(200, list);
        }
        match &self.handler {
            Some(handler) => handler(request),
            None => FakeResponse::Json(
                404,
                status_body(404, "NotFound", "the server could not find the requested resource"),
            ),
        }
    }
}

/// The fake server; stops when dropped.
pub(crate) struct FakeApiServer {
    client: kube::Client,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts a server that knows nothing yet: every path is a 404 until documents or collections are added.
    pub(crate) async fn start() -> Self {
        Self::serve(State::default()).await
    }

    /// Starts a server that answers with `handler` whatever its state does not serve (everything, unless
    /// documents or collections are added).
    pub(crate) async fn answering(handler: impl Fn(&RecordedRequest) -> FakeResponse + Send + Sync + 'static) -> Self {
        Self::serve(State { handler: Some(Box::new(handler)), ..State::default() }).await
    }

    async fn serve(state: State) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(state);
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = Arc::clone(&serving);
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let request = record(request).await;
                        state.requests.lock().unwrap().push(request.clone());
                        Ok::<_, Infallible>(state.answer(&request).into_http())
                    }
                });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        FakeApiServer { client, state, task }
    }

    /// A client of this server.
    pub(crate) fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Every request received so far, in order.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests received so far satisfy `filter`.
    pub(crate) fn count(&self, filter: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.state.requests.lock().unwrap().iter().filter(|r| filter(r)).count()
    }

    /// Serves `document` at `path` (a discovery document).
    pub(crate) fn set_document(&self, path: &str, document: Value) {
        self.state.documents.lock().unwrap().insert(path.to_string(), document);
    }

    /// Makes `path` a listable, watchable collection.
    pub(crate) fn add_collection(&self, path: &str) {
        self.state.collections.lock().unwrap().entry(path.to_string()).or_default();
    }

    /// Never finishes answering requests for `path`.
    pub(crate) fn stall(&self, path: &str) {
        self.state.stalled.lock().unwrap().entry(path.to_string()).or_default();
    }

    /// Answers 403 Forbidden for `path`.
    pub(crate) fn forbid(&self, path: &str) {
        self.state.forbidden.lock().unwrap().insert(path.to_string());
    }

    /// Changes the collection at `path` (creating it if needed) and tells its open watches.
    fn event(&self, path: &str, kind: &str, namespace: &str, name: &str, labels: &[(&str, &str)], delete: bool) {
        let rv = self.state.resource_version.fetch_add(1, Ordering::SeqCst) + 1;
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut collections = self.state.collections.lock().unwrap();
        let collection = collections.entry(path.to_string()).or_default();
        let key = (namespace.to_string(), name.to_string());
        if delete {
            collection.objects.remove(&key);
        } else {
            collection.objects.insert(key, labels.clone());
        }
        let event = json!({"type": kind, "object": object(namespace, name, &labels, rv)});
        collection.watchers.retain(|watcher| watcher.send(event.clone()).is_ok());
    }

    /// Creates an object (an ADDED event to open watches).
    pub(crate) fn add_object(&self, path: &str, namespace: &str, name: &str, labels: &[(&str, &str)]) {
        self.event(path, "ADDED", namespace, name, labels, false);
    }

    /// Deletes an object (a DELETED event to open watches).
    pub(crate) fn delete_object(&self, path: &str, namespace: &str, name: &str) {
        self.event(path, "DELETED", namespace, name, &[], true);
    }

    /// Whether a watch of `path` is open.
    pub(crate) fn is_watched(&self, path: &str) -> bool {
        let collections = self.state.collections.lock().unwrap();
        collections.get(path).is_some_and(|c| c.watchers.iter().any(|w| !w.is_closed()))
    }
}

/// Reads a whole request into its record; the body is read before answering so that every answer sees it.
async fn record(request: http::Request<hyper::body::Incoming>) -> RecordedRequest {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let accept = parts.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    RecordedRequest {
        accept: accept.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        method: parts.method,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state answers what it knows even when a closure is given, and every request is recorded whole, since
    /// tests of both kinds assert on those records.
    #[tokio::test]
    async fn state_answers_first_then_the_closure_and_every_request_is_recorded() {
        let server = FakeApiServer::answering(|request| FakeResponse::Json(201, request.body.clone())).await;
        server.set_document("/api", json!({"kind": "APIVersions", "versions": ["v1"]}));
        let http = server.client();

        let document = http.request::<Value>(http::Request::get("/api").body(Vec::new()).unwrap()).await.unwrap();
        assert_eq!(document["kind"], "APIVersions");
        let posted = json!({"kind": "TokenReview", "spec": {"token": "t"}});
        let request = http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews?dryRun=All")
            .header(http::header::ACCEPT, "application/json")
            .body(serde_json::to_vec(&posted).unwrap())
            .unwrap();
        assert_eq!(http.request::<Value>(request).await.unwrap(), posted);

        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!((requests[0].method.as_str(), requests[0].path.as_str()), ("GET", "/api"));
        assert_eq!(requests[0].body, Value::Null);
        let review = &requests[1];
        assert_eq!((review.method.as_str(), review.query.as_str()), ("POST", "dryRun=All"));
        assert_eq!((review.accept.as_str(), &review.body), ("application/json", &posted));
        assert!(!review.is_watch());
        assert_eq!(server.count(|r| r.path == "/api"), 1);
    }
}
