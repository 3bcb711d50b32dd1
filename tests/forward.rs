//! Forwarding to another adapter (docs/architecture.md §13): our server with `--forward-*` in front of a neighbour
//! adapter faked in the test (a small hyper server answering canned Kubernetes lists, recording what it is asked).

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::cluster::{Ca, ClusterServer};
use common::{TestServer, eventually, items};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::ExtendedKeyUsagePurpose;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";
const THEIR_EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue-depth";
/// The neighbour's answer to a read of `queue-depth`, byte for byte.
const THEIR_EXTERNAL_BODY: &str = r#"{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},"items":[{"metricName":"queue-depth","metricLabels":{"from":"neighbour"},"timestamp":"2026-01-01T00:00:00Z","value":"7"}]}"#;
const THEIR_CONTENT_TYPE: &str = "application/json; charset=neighbour";
const THEIR_CUSTOM_BODY: &str =
    r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta1","metadata":{},"items":[]}"#;

/// What the neighbour answers.
const ANSWER: u8 = 0;
/// Reads the request and never answers.
const HANG: u8 = 1;
/// 503 to everything.
const UNAVAILABLE: u8 = 2;

/// One request the neighbour received.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    authorization: Option<String>,
    accept: Option<String>,
    client_certificate: bool,
}

/// The fake neighbour adapter.
struct Neighbour {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

/// The neighbour's TLS: a server certificate for localhost from `ca`, client certificates of `client_ca` asked
/// for but not required (so that the test sees whether one came).
struct NeighbourTls {
    acceptor: tokio_rustls::TlsAcceptor,
}

fn their_discovery(group_version: &str) -> Option<Value> {
    let resource = |name: &str, kind: &str| json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": ["get"]});
    let resources = match group_version {
        "external.metrics.k8s.io/v1beta1" => {
            vec![resource("queue-depth", "ExternalMetricValueList"), resource("shared", "ExternalMetricValueList")]
        }
        "custom.metrics.k8s.io/v1beta1" | "custom.metrics.k8s.io/v1beta2" => {
            vec![resource("pods/their-metric", "MetricValueList"), resource("pods/q", "MetricValueList")]
        }
        _ => return None,
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

fn answer(path: &str) -> Response<Full<Bytes>> {
    let respond = |status: u16, content_type: &str, body: String| {
        Response::builder().status(status).header("content-type", content_type).body(Full::from(body)).unwrap()
    };
    if let Some(document) = path.strip_prefix("/apis/").and_then(their_discovery) {
        return respond(200, "application/json", document.to_string());
    }
    if path.starts_with(THEIR_EXTERNAL) {
        return respond(200, THEIR_CONTENT_TYPE, THEIR_EXTERNAL_BODY.to_string());
    }
    if path.contains("/their-metric") {
        return respond(200, "application/json", THEIR_CUSTOM_BODY.to_string());
    }
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "the neighbour has no such metric", "reason": "NotFound", "code": 404});
    respond(404, "application/json", status.to_string())
}

impl Neighbour {
    async fn start(tls: Option<NeighbourTls>) -> Neighbour {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(ANSWER));
        let acceptor = tls.map(|tls| tls.acceptor);
        let (seen_in, mode_in) = (Arc::clone(&seen), Arc::clone(&mode));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (seen, mode, acceptor) = (Arc::clone(&seen_in), Arc::clone(&mode_in), acceptor.clone());
                tokio::spawn(async move {
                    let serve = |client_certificate: bool| {
                        service_fn(move |request: Request<hyper::body::Incoming>| {
                            let (seen, mode) = (Arc::clone(&seen), Arc::clone(&mode));
                            async move {
                                let header =
                                    |name: &str| request.headers().get(name).map(|v| v.to_str().unwrap().to_string());
                                let path_and_query = request.uri().path_and_query().unwrap().to_string();
                                seen.lock().unwrap().push(Seen {
                                    path_and_query: path_and_query.clone(),
                                    authorization: header("authorization"),
                                    accept: header("accept"),
                                    client_certificate,
                                });
                                match mode.load(Ordering::SeqCst) {
                                    HANG => std::future::pending::<()>().await,
                                    UNAVAILABLE => {
                                        return Ok::<_, Infallible>(
                                            Response::builder().status(503).body(Full::from("down")).unwrap(),
                                        );
                                    }
                                    _ => {}
                                }
                                Ok::<_, Infallible>(answer(request.uri().path()))
                            }
                        })
                    };
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), serve(false)).await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let client_certificate = stream.get_ref().1.peer_certificates().is_some();
                            let _ = http.serve_connection(TokioIo::new(stream), serve(client_certificate)).await;
                        }
                    }
                });
            }
        });
        Neighbour { url, seen, mode, task }
    }

    fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// The metric reads it received (discovery reads left out).
    fn reads(&self) -> Vec<Seen> {
        let discovery = |path: &str| path.strip_prefix("/apis/").is_some_and(|gv| their_discovery(gv).is_some());
        self.seen.lock().unwrap().iter().filter(|s| !discovery(&s.path_and_query)).cloned().collect()
    }

    fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A GET on our server: status, content type, body as received.
async fn get_raw(server: &TestServer, path: &str) -> (u16, String, String) {
    let response = server.client.get(server.api_url(path)).header("accept", "application/json").send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

fn names(list: &Value) -> Vec<String> {
    list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

async fn forwarding_external(neighbour: &Neighbour, extra: &[&str]) -> TestServer {
    let flag = format!("--forward-external-metrics={}", neighbour.url);
    let mut args = vec![flag.as_str()];
    args.extend_from_slice(extra);
    common::start(&args).await
}

#[tokio::test]
async fn an_external_metric_we_do_not_hold_is_forwarded_with_its_path_and_query_and_answered_unchanged() {
    let neighbour = Neighbour::start(None).await;
    let server = forwarding_external(&neighbour, &[]).await;
    let path = format!("{THEIR_EXTERNAL}?labelSelector=queue%3Din%2Cregion%21%3Deu&pretty=true");
    let (status, content_type, body) = get_raw(&server, &path).await;
    assert_eq!((status, content_type.as_str(), body.as_str()), (200, THEIR_CONTENT_TYPE, THEIR_EXTERNAL_BODY));
    let reads = neighbour.reads();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].path_and_query, path);
    assert_eq!(reads[0].authorization, None, "no credentials were configured");
    assert_eq!(reads[0].accept.as_deref(), Some("application/json"));
    // Its error answers too: status and body as it sent them.
    let (status, _, body) = get_raw(&server, &format!("{EXTERNAL}/namespaces/default/nobody-has-it")).await;
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], "the neighbour has no such metric");
    server.stop().await;
}

#[tokio::test]
async fn an_external_metric_we_hold_in_the_namespace_is_ours_even_when_the_selector_matches_none_of_it() {
    let neighbour = Neighbour::start(None).await;
    let server = forwarding_external(&neighbour, &[]).await;
    assert_eq!(server.post("/write-external-metrics/namespaces/default/shared?labels=queue%3Da", "5").await.0, 200);
    let (status, list) = server.get(&format!("{EXTERNAL}/namespaces/default/shared")).await;
    assert_eq!(status, 200);
    assert_eq!(items(&list)[0]["value"], "5");
    let (status, list) = server.get(&format!("{EXTERNAL}/namespaces/default/shared?labelSelector=queue%3Dz")).await;
    assert_eq!((status, items(&list).len()), (200, 0), "{list}");
    assert!(neighbour.reads().is_empty(), "{:?}", neighbour.reads());
    // Held in `default` only: in another namespace the metric is the neighbour's (docs/architecture.md §13).
    let (status, _, _) = get_raw(&server, &format!("{EXTERNAL}/namespaces/other/shared")).await;
    assert_eq!(status, 404);
    assert_eq!(neighbour.reads()[0].path_and_query, format!("{EXTERNAL}/namespaces/other/shared"));
    server.stop().await;
}

#[tokio::test]
async fn discovery_lists_our_metrics_then_the_neighbours_and_leaves_a_failing_neighbours_out() {
    let neighbour = Neighbour::start(None).await;
    let server = forwarding_external(&neighbour, &["--forward-discovery-ttl=0"]).await;
    // Nothing of ours yet: the neighbour's entries replace our placeholder.
    eventually("the neighbour's entries are listed", || async {
        names(&server.get(EXTERNAL).await.1) == ["queue-depth", "shared"]
    })
    .await;
    assert_eq!(server.post("/write-external-metrics/namespaces/default/shared", "1").await.0, 200);
    assert_eq!(server.post("/write-external-metrics/namespaces/default/mine", "1").await.0, 200);
    let (status, list) = server.get(EXTERNAL).await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["mine", "shared", "queue-depth"], "ours first, theirs after, no duplicate");
    assert_eq!(list["resources"][2]["kind"], "ExternalMetricValueList");
    neighbour.set_mode(UNAVAILABLE);
    eventually("the failing neighbour's entries are left out", || async {
        let (status, list) = server.get(EXTERNAL).await;
        assert_eq!(status, 200, "our discovery failed with the neighbour: {list}");
        names(&list) == ["mine", "shared"]
    })
    .await;
    let text = server.client.get(server.api_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let failures = text
        .lines()
        .find(|l| {
            l.starts_with("metrics_apiserver_forward_discovery_failures_total{group=\"external.metrics.k8s.io\"}")
        })
        .unwrap_or_else(|| panic!("no discovery failures counted:\n{text}"));
    assert_ne!(failures.rsplit(' ').next(), Some("0"), "{failures}");
    neighbour.set_mode(ANSWER);
    eventually("the neighbour's entries come back", || async {
        names(&server.get(EXTERNAL).await.1) == ["mine", "shared", "queue-depth"]
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_custom_metric_is_ours_by_resource_and_metric_and_the_rest_is_forwarded_in_its_version() {
    let neighbour = Neighbour::start(None).await;
    let flag = format!("--forward-custom-metrics={}", neighbour.url);
    let server = common::start(&[&flag]).await;
    assert_eq!(server.post("/write-metrics/namespaces/default/pods/web-1/q", "3").await.0, 200);
    // Ours: pods/q is held (web-1), so web-2's missing value is our 404, not the neighbour's.
    assert_eq!(
        server.first_value("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/q").await,
        Ok("3".into())
    );
    let (status, _, body) =
        get_raw(&server, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-2/q").await;
    assert_eq!(status, 404, "{body}");
    assert!(neighbour.reads().is_empty(), "{:?}", neighbour.reads());
    // Theirs, in the group-version asked for, with both selectors.
    let path = "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/their-metric?labelSelector=app%3Dweb&metricLabelSelector=x%3Dy";
    let (status, content_type, body) = get_raw(&server, path).await;
    assert_eq!((status, content_type.as_str(), body.as_str()), (200, "application/json", THEIR_CUSTOM_BODY));
    assert_eq!(neighbour.reads()[0].path_and_query, path);
    // Every metric of an object we hold nothing of.
    let (status, _, _) = get_raw(&server, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/db-0/").await;
    assert_eq!(status, 404);
    assert_eq!(
        neighbour.reads()[1].path_and_query,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/db-0/"
    );
    // Discovery of both versions: ours, then theirs without pods/q, which we list already.
    for version in ["v1beta1", "v1beta2"] {
        let path = format!("/apis/custom.metrics.k8s.io/{version}");
        eventually("the neighbour's custom entries are listed", || async {
            names(&server.get(&path).await.1) == ["pods/q", "pods/their-metric"]
        })
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unauthorized_user_is_refused_without_the_neighbour_being_called() {
    let neighbour = Neighbour::start(None).await;
    let flag = format!("--forward-external-metrics={}", neighbour.url);
    let server = ClusterServer::start(&[&flag, "--authorization-webhook-cache-unauthorized-ttl=0"]).await;
    let alice = server.client(Some(server.client_ca.client_identity("alice", None)));
    let answer = server.send(alice.get(server.url(THEIR_EXTERNAL))).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(neighbour.reads().is_empty(), "the neighbour was called for a refused user: {:?}", neighbour.reads());
    // Allowed, the same read is forwarded, after the same SubjectAccessReview as a read of ours.
    server.fake.allow("alice", "list");
    let answer = server.send(alice.get(server.url(THEIR_EXTERNAL))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(neighbour.reads().len(), 1);
    let reviews = server.access_reviews();
    let last = reviews.last().unwrap();
    assert_eq!(last["user"], "alice");
    assert_eq!(
        last["resourceAttributes"],
        json!({"group": "external.metrics.k8s.io", "version": "v1beta1", "resource": "queue-depth", "namespace": "default", "verb": "list"})
    );
    server.stop().await;
}

fn neighbour_tls(server_ca: &Ca, client_ca: &Ca) -> NeighbourTls {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = server_ca.sign(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(client_ca.pem.as_bytes()).unwrap()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).allow_unauthenticated().build().unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    NeighbourTls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[tokio::test]
async fn forwarded_reads_carry_our_token_or_client_certificate_to_a_neighbour_whose_certificate_is_verified() {
    common::install_crypto();
    let (server_ca, client_ca) = (Ca::new("neighbour-ca"), Ca::new("client-ca"));
    let neighbour = Neighbour::start(Some(neighbour_tls(&server_ca, &client_ca))).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.crt", &server_ca.pem);
    let token = write(dir.path(), "token", "our-token\n");
    let (cert, key) = client_ca.sign(&["custom-metrics-apiserver"], ExtendedKeyUsagePurpose::ClientAuth);
    let (cert, key) = (write(dir.path(), "tls.crt", &cert), write(dir.path(), "tls.key", &key));

    let flags = [
        format!("--forward-external-metrics={}", neighbour.url),
        format!("--forward-ca-file={}", ca.display()),
        format!("--forward-token-file={}", token.display()),
    ];
    let server = common::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(get_raw(&server, THEIR_EXTERNAL).await.0, 200);
    let read = neighbour.reads().pop().unwrap();
    assert_eq!(read.authorization.as_deref(), Some("Bearer our-token"));
    assert!(!read.client_certificate);
    // A rotated token is used at once.
    std::fs::write(&token, "rotated").unwrap();
    assert_eq!(get_raw(&server, THEIR_EXTERNAL).await.0, 200);
    assert_eq!(neighbour.reads().pop().unwrap().authorization.as_deref(), Some("Bearer rotated"));
    server.stop().await;

    let flags = [
        format!("--forward-external-metrics={}", neighbour.url),
        format!("--forward-ca-file={}", ca.display()),
        format!("--forward-client-cert-file={}", cert.display()),
        format!("--forward-client-key-file={}", key.display()),
    ];
    let server = common::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(get_raw(&server, THEIR_EXTERNAL).await.0, 200);
    let read = neighbour.reads().pop().unwrap();
    assert!(read.client_certificate, "no client certificate was presented");
    assert_eq!(read.authorization, None);
    server.stop().await;

    // Trusting another CA than the neighbour's: no answer, a 503 naming the neighbour.
    let other = write(dir.path(), "other.crt", &client_ca.pem);
    let flags =
        [format!("--forward-external-metrics={}", neighbour.url), format!("--forward-ca-file={}", other.display())];
    let before = neighbour.all().len();
    let server = common::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (status, _, body) = get_raw(&server, THEIR_EXTERNAL).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&neighbour.url), "{body}");
    assert_eq!(neighbour.all().len(), before, "a request reached a neighbour that was not verified");
    server.stop().await;
}

#[tokio::test]
async fn with_the_neighbour_hanging_our_reads_answer_while_forwarded_ones_wait_and_more_are_refused_at_once() {
    let neighbour = Neighbour::start(None).await;
    neighbour.set_mode(HANG);
    // One request slot is the discovery read (hanging too), three are forwarded reads.
    let server =
        Arc::new(forwarding_external(&neighbour, &["--forward-timeout=1h", "--forward-max-connections=4"]).await);
    assert_eq!(server.post("/write-external-metrics/namespaces/default/mine", "11").await.0, 200);
    let mut pending = Vec::new();
    for _ in 0..3 {
        let server = Arc::clone(&server);
        pending.push(tokio::spawn(async move { get_raw(&server, THEIR_EXTERNAL).await }));
    }
    eventually("the neighbour holds its discovery read and three reads", || async {
        neighbour.all().len() == 4 && neighbour.reads().len() == 3
    })
    .await;
    // A fourth is refused at once, naming the neighbour and the bound.
    let (status, _, body) = get_raw(&server, THEIR_EXTERNAL).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&neighbour.url) && body.contains("--forward-max-connections"), "{body}");
    // Our own reads and discovery answer while the neighbour holds every request it got.
    for _ in 0..20 {
        let (status, list) = server.get(&format!("{EXTERNAL}/namespaces/default/mine")).await;
        assert_eq!((status, items(&list)[0]["value"].as_str()), (200, Some("11")));
    }
    let (status, list) = server.get(EXTERNAL).await;
    assert_eq!((status, names(&list)), (200, vec!["mine".to_string()]));
    assert!(pending.iter().all(|read| !read.is_finished()), "a forwarded read finished");
    assert_eq!(neighbour.reads().len(), 3);
    for read in pending {
        read.abort();
    }
}

/// The `/metrics` sample `name` as text, or `None`.
async fn sample(server: &TestServer, name: &str) -> Option<String> {
    let text = server.client.get(server.api_url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(str::to_string))
}

#[tokio::test]
async fn after_consecutive_failures_the_circuit_opens_and_forwarded_reads_fail_at_once_naming_the_neighbour() {
    let neighbour = Neighbour::start(None).await;
    neighbour.set_mode(HANG);
    let server = forwarding_external(
        &neighbour,
        &["--forward-timeout=200ms", "--forward-failure-threshold=2", "--forward-cool-down=1h"],
    )
    .await;
    assert_eq!(server.post("/write-external-metrics/namespaces/default/mine", "11").await.0, 200);
    // Timed-out requests (the discovery read's among them) open the circuit within two forwarded reads.
    let mut refusals = 0;
    for _ in 0..3 {
        let (status, _, body) = get_raw(&server, THEIR_EXTERNAL).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains(&neighbour.url), "{body}");
        if body.contains("circuit is open") {
            refusals += 1;
        }
    }
    assert!(refusals >= 1, "the circuit never opened");
    let sent = neighbour.all().len();
    for _ in 0..5 {
        let (status, _, body) = get_raw(&server, THEIR_EXTERNAL).await;
        assert_eq!(status, 503);
        let status: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["reason"], "ServiceUnavailable");
        let message = status["message"].as_str().unwrap();
        assert!(message.contains(&neighbour.url) && message.contains("circuit is open"), "{message}");
    }
    assert_eq!(neighbour.all().len(), sent, "requests reached the neighbour while its circuit was open");
    let (status, list) = server.get(&format!("{EXTERNAL}/namespaces/default/mine")).await;
    assert_eq!((status, items(&list)[0]["value"].as_str()), (200, Some("11")));
    let open = r#"metrics_apiserver_forward_circuit_open{group="external.metrics.k8s.io"}"#;
    assert_eq!(sample(&server, open).await.as_deref(), Some("1"));
    let refused = r#"metrics_apiserver_forwarded_requests_total{group="external.metrics.k8s.io",result="refused"}"#;
    assert!(sample(&server, refused).await.unwrap().parse::<u64>().unwrap() >= 5);
    server.stop().await;
}

#[tokio::test]
async fn after_the_cool_down_one_probe_closes_the_circuit_once_the_neighbour_answers_again() {
    let neighbour = Neighbour::start(None).await;
    let server = forwarding_external(&neighbour, &["--forward-failure-threshold=1", "--forward-cool-down=1s"]).await;
    // The discovery read first, answered, so that the read below is the first failure.
    eventually("the neighbour's discovery is read", || async {
        names(&server.get(EXTERNAL).await.1).contains(&"queue-depth".to_string())
    })
    .await;
    neighbour.set_mode(UNAVAILABLE);
    // The 503 is passed back as the neighbour sent it, and opens the circuit.
    let (status, _, body) = get_raw(&server, THEIR_EXTERNAL).await;
    assert_eq!((status, body.as_str()), (503, "down"));
    let (status, _, body) = get_raw(&server, THEIR_EXTERNAL).await;
    assert_eq!(status, 503);
    assert!(body.contains("circuit is open"), "{body}");
    neighbour.set_mode(ANSWER);
    eventually("a probe closes the circuit", || async { get_raw(&server, THEIR_EXTERNAL).await.0 == 200 }).await;
    let open = r#"metrics_apiserver_forward_circuit_open{group="external.metrics.k8s.io"}"#;
    assert_eq!(sample(&server, open).await.as_deref(), Some("0"));
    server.stop().await;
}

#[tokio::test]
async fn an_answer_longer_than_max_response_bytes_is_refused() {
    let neighbour = Neighbour::start(None).await;
    let server = forwarding_external(&neighbour, &["--max-response-bytes=64"]).await;
    let (status, _, body) = get_raw(&server, THEIR_EXTERNAL).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--max-response-bytes") && body.contains(&neighbour.url), "{body}");
    server.stop().await;
}

#[test]
fn the_forwarding_metrics_are_documented_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for name in [
        "metrics_apiserver_forwarded_requests_total",
        "metrics_apiserver_forward_circuit_open",
        "metrics_apiserver_forward_in_flight",
        "metrics_apiserver_forward_discovery_failures_total",
    ] {
        assert!(readme.contains(&format!("`{name}`")), "{name} is not in the README");
    }
}
