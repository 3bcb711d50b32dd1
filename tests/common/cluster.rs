//! A server of ours in cluster mode, on 127.0.0.1, against the fake kube-apiserver (`cluster::fake_apiserver`):
//! discovery, a pods watch, TokenReviews and SubjectAccessReviews all answered in-process, so that the whole
//! cluster-mode request path runs in seconds without kube-apiserver.

use std::time::Duration;

use custom_metrics_apiserver::app::{self, Running};
use custom_metrics_apiserver::cluster::fake_apiserver::{
    ACCESS_REVIEWS_PATH, FakeApiServer, FakeResponse, TOKEN_REVIEWS_PATH, status_body,
};
use custom_metrics_apiserver::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};

/// The common name the front proxy's certificate has, and the only one allowed (`--requestheader-allowed-names`).
pub const FRONT_PROXY_CN: &str = "front-proxy-client";

/// The write tests' usual permissions for [`ClusterServer::start_for_writer`]: create every metric but `secret`, read
/// everything.
pub fn creates_all_but_secret(verb: &str, metric: &Value) -> bool {
    match verb {
        "create" => metric != "secret",
        "get" | "list" => true,
        _ => false,
    }
}

/// A CA made for the test.
pub struct Ca {
    /// Its certificate.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(cn: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: Issuer::new(params, key) }
    }

    /// A client certificate (CN `cn`, O `org` if any) and its key, as one PEM for `reqwest::Identity`.
    pub fn client_identity(&self, cn: &str, org: Option<&str>) -> reqwest::Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params.distinguished_name.push(DnType::OrganizationName, org);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
    }

    /// (certificate PEM, key PEM) for `names` (the first is the common name), for `usage`.
    pub fn sign(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

/// A cluster-mode server, the fake kube-apiserver it uses, and the CAs its clients' certificates come from.
pub struct ClusterServer {
    pub running: Option<Running>,
    pub fake: FakeApiServer,
    /// The requestheader (front-proxy) CA (`--requestheader-client-ca-file`).
    pub front_proxy_ca: Ca,
    /// The client CA (`--client-ca-file`).
    pub client_ca: Ca,
    port: u16,
    server_cert: String,
    _dir: tempfile::TempDir,
}

/// What a request got: status, `Audit-ID` echoed, body as JSON (or as a string value).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub audit_id: Option<String>,
    pub body: serde_json::Value,
}

impl ClusterServer {
    /// Starts the fake cluster (discovery, pods, no tokens, every SubjectAccessReview denied) and our server in
    /// cluster mode against it, with `extra` flags.
    pub async fn start(extra: &[&str]) -> Self {
        let fake = FakeApiServer::start().await;
        fake.deny_by_default();
        Self::start_against(fake, extra).await
    }

    /// The same, with SubjectAccessReviews answered by `review` (the review's `spec` → allowed): for permissions
    /// finer than [`FakeApiServer::allow`]'s user and verb.
    pub async fn start_with_reviews(extra: &[&str], review: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        let fake = FakeApiServer::answering(move |request| {
            if request.path != ACCESS_REVIEWS_PATH {
                return FakeResponse::Json(404, status_body(404, "NotFound", "not found"));
            }
            let mut answer = request.body.clone();
            answer["status"] = json!({"allowed": review(&request.body["spec"])});
            FakeResponse::Json(201, answer)
        })
        .await;
        Self::start_against(fake, extra).await
    }

    /// The same, for the write tests: the user `writer` (bearer token `writer-token`) may do what
    /// `allowed(verb, metric)` says, nobody else anything; the metric is what a review names, the subresource of a
    /// custom metric or the resource of an external one.
    pub async fn start_for_writer(allowed: impl Fn(&str, &Value) -> bool + Send + Sync + 'static) -> Self {
        let server = Self::start_with_reviews(&[], move |spec| {
            let attributes = &spec["resourceAttributes"];
            let metric = if attributes["subresource"].is_string() {
                &attributes["subresource"]
            } else {
                &attributes["resource"]
            };
            spec["user"] == "writer" && attributes["verb"].as_str().is_some_and(|verb| allowed(verb, metric))
        })
        .await;
        server.fake.add_token("writer-token", "writer", &[]);
        server
    }

    async fn start_against(fake: FakeApiServer, extra: &[&str]) -> Self {
        super::install_crypto();
        fake.serve_discovery();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        fake.write_kubeconfig(&kubeconfig).unwrap();
        let (front_proxy_ca, client_ca) = (Ca::new("front-proxy-ca"), Ca::new("client-ca"));
        let front_proxy_ca_file = dir.path().join("front-proxy-ca.crt");
        let client_ca_file = dir.path().join("client-ca.crt");
        std::fs::write(&front_proxy_ca_file, &front_proxy_ca.pem).unwrap();
        std::fs::write(&client_ca_file, &client_ca.pem).unwrap();
        let cert_dir = dir.path().join("certs");
        let flags = [
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--cert-dir={}", cert_dir.display()),
            format!("--client-ca-file={}", client_ca_file.display()),
            format!("--requestheader-client-ca-file={}", front_proxy_ca_file.display()),
            format!("--requestheader-allowed-names={FRONT_PROXY_CN}"),
            "--bind-address=127.0.0.1".to_string(),
            "--secure-port=0".to_string(),
        ];
        let args = ["custom-metrics-apiserver"]
            .into_iter()
            .chain(flags.iter().map(String::as_str))
            .chain(extra.iter().copied());
        let config = Config::from_args(args).unwrap();
        assert!(config.cluster().is_some(), "not in cluster mode");
        let running = app::start(&config).await.unwrap();
        let server_cert = std::fs::read_to_string(cert_dir.join("apiserver.crt")).unwrap();
        ClusterServer {
            port: running.secure_addr.port(),
            running: Some(running),
            fake,
            front_proxy_ca,
            client_ca,
            server_cert,
            _dir: dir,
        }
    }

    /// A client trusting the server's certificate, presenting `identity` if any.
    pub fn client(&self, identity: Option<reqwest::Identity>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.server_cert.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10));
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().unwrap()
    }

    /// The front proxy: a client with a certificate of the front-proxy CA and an allowed common name.
    pub fn front_proxy(&self) -> reqwest::Client {
        self.client(Some(self.front_proxy_ca.client_identity(FRONT_PROXY_CN, None)))
    }

    /// `https://localhost:<port><path>` (the certificate names localhost).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Sends `request` and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let audit_id = response.headers().get("audit-id").map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Answer { status, audit_id, body }
    }

    /// The SubjectAccessReviews the fake received, their `spec`s in order.
    pub fn access_reviews(&self) -> Vec<serde_json::Value> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.path == ACCESS_REVIEWS_PATH)
            .map(|r| r.body["spec"].clone())
            .collect()
    }

    /// The resource attributes of the SubjectAccessReviews the fake received for `verb`, sorted (as JSON text).
    pub fn reviewed(&self, verb: &str) -> Vec<Value> {
        let mut attributes: Vec<Value> = self
            .access_reviews()
            .into_iter()
            .filter(|spec| spec["resourceAttributes"]["verb"] == verb)
            .map(|spec| spec["resourceAttributes"].clone())
            .collect();
        attributes.sort_by_key(Value::to_string);
        attributes
    }

    /// How many TokenReviews the fake received.
    pub fn token_reviews(&self) -> usize {
        self.fake.count(|r| r.path == TOKEN_REVIEWS_PATH)
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}
