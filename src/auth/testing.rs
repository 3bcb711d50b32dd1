//! Test certificates made with rcgen: CAs, intermediates and client certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

use super::ClientCertChain;

/// A certificate authority that can sign client certificates and intermediates.
pub(crate) struct TestCa {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    params
}

impl TestCa {
    /// A self-signed root.
    pub(crate) fn new(cn: &str) -> Self {
        let params = ca_params(cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, issuer: Issuer::new(params, key) }
    }

    /// An intermediate CA signed by this one.
    pub(crate) fn intermediate(&self, cn: &str) -> Self {
        let params = ca_params(cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCa { cert, issuer: Issuer::new(params, key) }
    }

    /// This CA's certificate as PEM.
    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// This CA's certificate as DER.
    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A certificate with the given subject and extended key usages.
    pub(crate) fn leaf_with(
        &self,
        cn: Option<&str>,
        orgs: &[&str],
        eku: Vec<ExtendedKeyUsagePurpose>,
    ) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        // rcgen keeps one value per attribute type, so a second O is given as a custom type with O's OID.
        assert!(orgs.len() <= 2, "at most two organisations");
        if let Some(org) = orgs.first() {
            params.distinguished_name.push(DnType::OrganizationName, *org);
        }
        if let Some(org) = orgs.get(1) {
            params.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 10]), *org);
        }
        params.extended_key_usages = eku;
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &self.issuer).unwrap().der().clone()
    }

    /// A client certificate (EKU clientAuth) with common name `cn` and organisations `orgs`.
    pub(crate) fn client_cert(&self, cn: &str, orgs: &[&str]) -> CertificateDer<'static> {
        self.leaf_with(Some(cn), orgs, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// The chain a client presents: a client certificate from this CA, alone.
    pub(crate) fn client_chain(&self, cn: &str, orgs: &[&str]) -> ClientCertChain {
        ClientCertChain::new(vec![self.client_cert(cn, orgs)])
    }
}

/// A request received by [`FakeApiServer`].
#[derive(Debug, Clone)]
pub(crate) struct RecordedRequest {
    /// Method.
    pub method: http::Method,
    /// Path.
    pub path: String,
    /// Raw query (empty when absent).
    pub query: String,
    /// The JSON body (`Null` when empty).
    pub body: serde_json::Value,
}

/// What [`FakeApiServer`] answers.
pub(crate) enum FakeResponse {
    /// A JSON body with this status.
    Json(u16, serde_json::Value),
    /// A streamed body (a watch): every value received is sent as one JSON line; the body ends when the sender
    /// is dropped.
    Stream(tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>),
}

type FakeHandler = dyn Fn(&RecordedRequest) -> FakeResponse + Send + Sync;

/// A Kubernetes API server on 127.0.0.1 speaking plain HTTP/1.1, answering with a handler, recording requests.
pub(crate) struct FakeApiServer {
    /// A client pointed at it.
    pub client: kube::Client,
    /// Every request received, in order.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<RecordedRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A body fed by a channel.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>);

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

impl FakeApiServer {
    /// Starts the server.
    pub(crate) async fn start(handler: impl Fn(&RecordedRequest) -> FakeResponse + Send + Sync + 'static) -> Self {
        use http_body_util::BodyExt;
        use std::sync::{Arc, Mutex};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::default();
        let handler: Arc<FakeHandler> = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    let recorded = Arc::clone(&recorded);
                    async move {
                        let (parts, body) = request.into_parts();
                        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let request = RecordedRequest {
                            method: parts.method,
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().unwrap_or("").to_string(),
                            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                        };
                        recorded.lock().unwrap().push(request.clone());
                        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                        let status = match handler(&request) {
                            FakeResponse::Json(status, value) => {
                                let _ = sender.send(bytes::Bytes::from(serde_json::to_vec(&value).unwrap()));
                                status
                            }
                            FakeResponse::Stream(mut values) => {
                                tokio::spawn(async move {
                                    while let Some(value) = values.recv().await {
                                        let mut line = serde_json::to_vec(&value).unwrap();
                                        line.push(b'\n');
                                        if sender.send(bytes::Bytes::from(line)).is_err() {
                                            return;
                                        }
                                    }
                                });
                                200
                            }
                        };
                        let mut response = http::Response::new(ChannelBody(receiver));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        response
                            .headers_mut()
                            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                        Ok::<_, std::convert::Infallible>(response)
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
        FakeApiServer { client, requests, task }
    }

    /// The requests received so far.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// A Kubernetes `Status` failure body.
pub(crate) fn status_body(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    })
}
