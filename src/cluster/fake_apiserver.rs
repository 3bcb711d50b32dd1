//! The one fake kube-apiserver of the tests: a hyper HTTP/1 server on 127.0.0.1 with a [`kube::Client`] pointed
//! at it, recording every request.
//!
//! It answers from state the test sets up (discovery documents, listable and watchable metadata collections,
//! forbidden and stalled paths) and, for what that state does not serve, with the test's own closure
//! ([`FakeApiServer::answering`]), which reviews and ConfigMap tests use to answer POSTed objects or stream a
//! watch of their own. Without a closure, unknown paths are a 404 `Status`, as kube-apiserver answers them.
//!
//! For black-box tests of cluster mode (`tests/cluster_mode.rs`) it also plays a small cluster of its own:
//! [`FakeApiServer::serve_discovery`] (the core group and `apps`, a watchable pods collection),
//! [`FakeApiServer::add_token`] (TokenReviews), [`FakeApiServer::allow`] (SubjectAccessReviews, as RBAC would
//! answer them) and [`FakeApiServer::write_kubeconfig`]. [`FakeApiServer::store_objects`] makes it keep whole
//! objects (Secrets, APIServices) with get, create, update and merge-patch and kube-apiserver's conflicts. Built for the crate's tests and, with the `test-support`
//! feature, for the integration tests in `tests/`; never part of the shipped binary.

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
pub struct RecordedRequest {
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
    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true")
    }
}

/// How [`FakeApiServer`] answers one request.
pub enum FakeResponse {
    /// A JSON body with this status.
    Json(u16, Value),
    /// A 200 whose body streams every value received as one JSON line (a watch); the body ends when the sender
    /// is dropped, and stays open without data as long as it is not (a stalled request).
    Stream(mpsc::UnboundedReceiver<Value>),
}

/// A test's own answer to the requests the server's state does not serve.
type Handler = dyn Fn(&RecordedRequest) -> FakeResponse + Send + Sync;

/// A Kubernetes `Status` failure body.
pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
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
    /// Token -> (user, groups), once [`FakeApiServer::add_token`] is called; until then TokenReviews go to the
    /// handler.
    tokens: Mutex<Option<HashMap<String, FakeUser>>>,
    /// (user, verb) pairs allowed, once [`FakeApiServer::allow`] is called; until then SubjectAccessReviews go to
    /// the handler.
    allowed: Mutex<Option<HashSet<(String, String)>>>,
    /// Whole objects under the collection paths given to [`FakeApiServer::store_objects`].
    objects: Mutex<Objects>,
    handler: Option<Box<Handler>>,
}

/// Stored objects: the collection paths served, and each object by its path (`<collection>/<name>`).
#[derive(Default)]
struct Objects {
    collections: HashSet<String>,
    items: BTreeMap<String, Value>,
}

/// RFC 7386 JSON merge patch: `null` removes, objects merge, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(target) = target else { return };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// A token's user: name and groups.
type FakeUser = (String, Vec<String>);

/// Where kube clients post TokenReviews.
pub const TOKEN_REVIEWS_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// Where kube clients post SubjectAccessReviews.
pub const ACCESS_REVIEWS_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

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
    /// reviews once tokens or permissions are set, the test's handler, and a 404.
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
        if let Some(answer) = self.stored_object(request) {
            return answer;
        }
        if request.method == http::Method::POST
            && let Some(answer) = self.review(request)
        {
            return answer;
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

impl State {
    /// Get, create (409 AlreadyExists when it exists), update (409 Conflict on a stale `resourceVersion`) and
    /// merge-patch of stored objects, as kube-apiserver answers them; `None` outside the stored collections.
    fn stored_object(&self, request: &RecordedRequest) -> Option<FakeResponse> {
        let mut objects = self.objects.lock().unwrap();
        let path = request.path.as_str();
        let not_found = || FakeResponse::Json(404, status_body(404, "NotFound", &format!("{path} not found")));
        let stamp = |object: &mut Value| {
            let rv = self.resource_version.fetch_add(1, Ordering::SeqCst) + 1;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
        };
        if request.method == http::Method::POST && objects.collections.contains(path) {
            let name = request.body["metadata"]["name"].as_str().unwrap_or("").to_string();
            let item = format!("{path}/{name}");
            if objects.items.contains_key(&item) {
                let message = format!("{name} already exists");
                return Some(FakeResponse::Json(409, status_body(409, "AlreadyExists", &message)));
            }
            let mut object = request.body.clone();
            stamp(&mut object);
            objects.items.insert(item, object.clone());
            return Some(FakeResponse::Json(201, object));
        }
        let (collection, _) = path.rsplit_once('/')?;
        if !objects.collections.contains(collection) {
            return None;
        }
        let Some(stored) = objects.items.get(path).cloned() else { return Some(not_found()) };
        let mut object = match request.method {
            http::Method::GET => return Some(FakeResponse::Json(200, stored)),
            http::Method::PUT => {
                let given = &request.body["metadata"]["resourceVersion"];
                if !given.is_null() && *given != stored["metadata"]["resourceVersion"] {
                    let message = "the object has been modified; please apply your changes to the latest version";
                    return Some(FakeResponse::Json(409, status_body(409, "Conflict", message)));
                }
                request.body.clone()
            }
            http::Method::PATCH => {
                let mut object = stored;
                merge_patch(&mut object, &request.body);
                object
            }
            http::Method::DELETE => {
                objects.items.remove(path);
                return Some(FakeResponse::Json(200, stored));
            }
            _ => return Some(FakeResponse::Json(405, status_body(405, "MethodNotAllowed", "not allowed"))),
        };
        stamp(&mut object);
        objects.items.insert(path.to_string(), object.clone());
        Some(FakeResponse::Json(200, object))
    }

    /// A TokenReview or SubjectAccessReview answered from the tokens and permissions set, when they are set.
    fn review(&self, request: &RecordedRequest) -> Option<FakeResponse> {
        let body = &request.body;
        if request.path == TOKEN_REVIEWS_PATH {
            let tokens = self.tokens.lock().unwrap();
            let tokens = tokens.as_ref()?;
            let token = body["spec"]["token"].as_str().unwrap_or("");
            let status = match tokens.get(token) {
                Some((user, groups)) => json!({"authenticated": true, "user": {"username": user, "groups": groups}}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            return Some(FakeResponse::Json(201, review_answer(body, status)));
        }
        if request.path == ACCESS_REVIEWS_PATH {
            let allowed = self.allowed.lock().unwrap();
            let allowed = allowed.as_ref()?;
            let spec = &body["spec"];
            let user = spec["user"].as_str().unwrap_or("").to_string();
            let verb = spec["resourceAttributes"]["verb"].as_str().or(spec["nonResourceAttributes"]["verb"].as_str());
            let status = if allowed.contains(&(user, verb.unwrap_or("").to_string())) {
                json!({"allowed": true, "reason": "allowed by the fake API server"})
            } else {
                json!({"allowed": false})
            };
            return Some(FakeResponse::Json(201, review_answer(body, status)));
        }
        None
    }
}

/// The posted review with `status` set, as kube-apiserver answers.
fn review_answer(posted: &Value, status: Value) -> Value {
    let mut answer = posted.clone();
    answer["status"] = status;
    answer
}

/// The fake server; stops when dropped.
pub struct FakeApiServer {
    client: kube::Client,
    address: std::net::SocketAddr,
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
    pub async fn start() -> Self {
        Self::serve(State::default()).await
    }

    /// Starts a server that answers with `handler` whatever its state does not serve (everything, unless
    /// documents or collections are added).
    pub async fn answering(handler: impl Fn(&RecordedRequest) -> FakeResponse + Send + Sync + 'static) -> Self {
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
        FakeApiServer { client, address, state, task }
    }

    /// The server's address (plain HTTP).
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Writes a kubeconfig file whose current context is this server, without credentials.
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n",
            self.address
        );
        std::fs::write(path, kubeconfig)
    }

    /// Serves a small cluster's discovery (legacy form): the core group (`pods`, `namespaces`, `nodes`,
    /// `services`) and `apps` (`deployments`), and makes `/api/v1/pods` a watchable collection, which is what
    /// cluster mode needs to start.
    pub fn serve_discovery(&self) {
        let resource = |name: &str, singular: &str, kind: &str, namespaced: bool| {
            json!({"name": name, "singularName": singular, "kind": kind, "namespaced": namespaced,
                "verbs": ["get", "list", "watch"]})
        };
        self.set_document("/api", json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}));
        self.set_document(
            "/api/v1",
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
                resource("pods", "pod", "Pod", true),
                resource("namespaces", "namespace", "Namespace", false),
                resource("nodes", "node", "Node", false),
                resource("services", "service", "Service", true),
            ]}),
        );
        let apps = json!({"groupVersion": "apps/v1", "version": "v1"});
        self.set_document(
            "/apis",
            json!({"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [{"name": "apps", "versions": [apps], "preferredVersion": apps}]}),
        );
        self.set_document(
            "/apis/apps/v1",
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
                resource("deployments", "deployment", "Deployment", true),
            ]}),
        );
        self.add_collection("/api/v1/pods");
    }

    /// Answers TokenReviews from now on: `token` authenticates `user` in `groups`; any other token is invalid.
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        let groups = groups.iter().map(ToString::to_string).collect();
        let mut tokens = self.state.tokens.lock().unwrap();
        tokens.get_or_insert_with(HashMap::new).insert(token.to_string(), (user.to_string(), groups));
    }

    /// Answers SubjectAccessReviews from now on: `user` may do `verb` on anything (resources and paths); anything
    /// not allowed so is denied without a reason, as RBAC denies.
    pub fn allow(&self, user: &str, verb: &str) {
        let mut allowed = self.state.allowed.lock().unwrap();
        allowed.get_or_insert_with(HashSet::new).insert((user.to_string(), verb.to_string()));
    }

    /// Answers SubjectAccessReviews from now on, denying everything not allowed with [`FakeApiServer::allow`].
    pub fn deny_by_default(&self) {
        self.state.allowed.lock().unwrap().get_or_insert_with(HashSet::new);
    }

    /// Keeps whole objects POSTed to `collection` (e.g. `/api/v1/namespaces/ns/secrets`) and serves them at
    /// `<collection>/<name>` with get, update, merge-patch and delete; absent ones are a 404.
    pub fn store_objects(&self, collection: &str) {
        self.state.objects.lock().unwrap().collections.insert(collection.to_string());
    }

    /// Stores `object` in `collection` (see [`FakeApiServer::store_objects`]) under its `metadata.name`, as if
    /// created by someone else.
    pub fn put_object(&self, collection: &str, mut object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_string();
        let rv = self.state.resource_version.fetch_add(1, Ordering::SeqCst) + 1;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let mut objects = self.state.objects.lock().unwrap();
        objects.collections.insert(collection.to_string());
        objects.items.insert(format!("{collection}/{name}"), object);
    }

    /// The stored object at `path`.
    pub fn stored(&self, path: &str) -> Option<Value> {
        self.state.objects.lock().unwrap().items.get(path).cloned()
    }

    /// Changes the stored object at `path` with a JSON merge patch, as someone else would.
    pub fn patch_stored(&self, path: &str, patch: &Value) {
        let rv = self.state.resource_version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut objects = self.state.objects.lock().unwrap();
        let object = objects.items.get_mut(path).unwrap_or_else(|| panic!("no stored object {path}"));
        merge_patch(object, patch);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
    }

    /// A client of this server.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests received so far satisfy `filter`.
    pub fn count(&self, filter: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.state.requests.lock().unwrap().iter().filter(|r| filter(r)).count()
    }

    /// Serves `document` at `path` (a discovery document).
    pub fn set_document(&self, path: &str, document: Value) {
        self.state.documents.lock().unwrap().insert(path.to_string(), document);
    }

    /// Makes `path` a listable, watchable collection.
    pub fn add_collection(&self, path: &str) {
        self.state.collections.lock().unwrap().entry(path.to_string()).or_default();
    }

    /// Never finishes answering requests for `path`.
    pub fn stall(&self, path: &str) {
        self.state.stalled.lock().unwrap().entry(path.to_string()).or_default();
    }

    /// Answers 403 Forbidden for `path`.
    pub fn forbid(&self, path: &str) {
        self.state.forbidden.lock().unwrap().insert(path.to_string());
    }

    /// Answers `path` again as before [`Self::forbid`].
    pub fn unforbid(&self, path: &str) {
        self.state.forbidden.lock().unwrap().remove(path);
    }

    /// Ends the open watches of `path` (their streams close, as when a connection drops).
    pub fn break_watches(&self, path: &str) {
        if let Some(collection) = self.state.collections.lock().unwrap().get_mut(path) {
            collection.watchers.clear();
        }
    }

    /// Tells the open watches of `path` that their resource version is too old (an `ERROR` event with a 410 Status,
    /// as kube-apiserver sends after compaction) and ends them: watchers list again.
    pub fn expire_watches(&self, path: &str) {
        let gone = json!({"type": "ERROR", "object": status_body(410, "Expired", "too old resource version")});
        if let Some(collection) = self.state.collections.lock().unwrap().get_mut(path) {
            for watcher in collection.watchers.drain(..) {
                let _ = watcher.send(gone.clone());
            }
        }
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
    pub fn add_object(&self, path: &str, namespace: &str, name: &str, labels: &[(&str, &str)]) {
        self.event(path, "ADDED", namespace, name, labels, false);
    }

    /// Deletes an object (a DELETED event to open watches).
    pub fn delete_object(&self, path: &str, namespace: &str, name: &str) {
        self.event(path, "DELETED", namespace, name, &[], true);
    }

    /// Whether a watch of `path` is open.
    pub fn is_watched(&self, path: &str) -> bool {
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

    /// Reviews go to the closure until tokens or permissions are set (the review tests answer their own), then
    /// are answered from them.
    #[tokio::test]
    async fn reviews_are_answered_from_tokens_and_permissions_once_set() {
        let server = FakeApiServer::answering(|_| FakeResponse::Json(418, json!({}))).await;
        let http = server.client();
        let post = |path: &str, body: Value| {
            http::Request::post(path)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap()
        };
        let token_review = |token: &str| json!({"kind": "TokenReview", "spec": {"token": token}});
        let access_review = |user: &str, verb: &str| json!({"kind": "SubjectAccessReview", "spec": {"user": user, "nonResourceAttributes": {"path": "/x", "verb": verb}}});
        assert!(http.request::<Value>(post(TOKEN_REVIEWS_PATH, token_review("t"))).await.is_err());
        assert!(http.request::<Value>(post(ACCESS_REVIEWS_PATH, access_review("alice", "get"))).await.is_err());

        server.add_token("t", "alice", &["dev"]);
        let answer = http.request::<Value>(post(TOKEN_REVIEWS_PATH, token_review("t"))).await.unwrap();
        assert_eq!(answer["status"], json!({"authenticated": true, "user": {"username": "alice", "groups": ["dev"]}}));
        let answer = http.request::<Value>(post(TOKEN_REVIEWS_PATH, token_review("other"))).await.unwrap();
        assert_eq!(answer["status"]["authenticated"], false);

        server.allow("alice", "get");
        let answer = http.request::<Value>(post(ACCESS_REVIEWS_PATH, access_review("alice", "get"))).await.unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        let answer = http.request::<Value>(post(ACCESS_REVIEWS_PATH, access_review("alice", "create"))).await.unwrap();
        assert_eq!(answer["status"], json!({"allowed": false}));
        assert_eq!(answer["spec"]["user"], "alice", "the answer is the posted review with its status");
    }
}
