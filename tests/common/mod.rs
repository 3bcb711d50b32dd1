//! A server of ours on 127.0.0.1 in standalone mode, and clients that speak to it the way users do; [`cluster`]:
//! the same in cluster mode, against the fake kube-apiserver; [`processes`]: Redis and adapter binaries as processes
//! to kill and restart; [`clients`]: the real Go clients of e2e/clients.

#![allow(dead_code)]

pub mod clients;
pub mod cluster;
pub mod processes;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use custom_metrics_apiserver::app::{self, Running};
use custom_metrics_apiserver::config::Config;

/// A running server and HTTP clients for both of its ports.
pub struct TestServer {
    pub running: Option<Running>,
    pub secure: SocketAddr,
    pub write: SocketAddr,
    /// Trusts only the server's own certificate (so the certificate's names are verified).
    pub client: reqwest::Client,
    /// Plain HTTP/1.1 for the write port.
    pub writer: reqwest::Client,
    pub cert_pem: String,
    _cert_dir: tempfile::TempDir,
}

pub fn install_crypto() {
    // reqwest is built without a provider; ours is ring, like the server's.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts a server with `extra` flags after `--standalone`.
pub async fn start(extra: &[&str]) -> TestServer {
    install_crypto();
    let cert_dir = tempfile::tempdir().unwrap();
    let cert_flag = format!("--cert-dir={}", cert_dir.path().display());
    let mut args = vec!["custom-metrics-apiserver", "--standalone", "--secure-port=0", cert_flag.as_str()];
    args.extend_from_slice(extra);
    let mut config = Config::from_args(args).unwrap();
    // Port 0 means "disabled" for the write port on the command line; tests want an ephemeral one.
    config.write_addr = Some("127.0.0.1:0".parse().unwrap());
    let running = app::start(&config).await.unwrap();
    let cert_pem = std::fs::read_to_string(cert_dir.path().join("apiserver.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let writer = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    TestServer {
        secure: running.secure_addr,
        write: running.write_addr.unwrap(),
        running: Some(running),
        client,
        writer,
        cert_pem,
        _cert_dir: cert_dir,
    }
}

impl TestServer {
    /// `https://localhost:<port><path>` (the certificate names localhost).
    pub fn api_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.secure.port())
    }

    pub fn write_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.write.port())
    }

    /// GET on the secure port: (status, body as JSON or as a string value).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.get(self.api_url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// The value of the first item a metrics read of `path` lists; Err(status) when the read fails, Err(404) when it
    /// lists nothing.
    pub async fn first_value(&self, path: &str) -> Result<String, u16> {
        let (status, list) = self.get(path).await;
        if status != 200 {
            return Err(status);
        }
        match list["items"].as_array().and_then(|items| items.first()) {
            Some(item) => Ok(item["value"].as_str().unwrap().to_string()),
            None => Err(404),
        }
    }

    /// POST `body` to a write path: (status, body text).
    pub async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let response = self.writer.post(self.write_url(path)).body(body.to_string()).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn delete(&self, path: &str) -> (u16, String) {
        let response = self.writer.delete(self.write_url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// The items of a list, with every `timestamp` checked for the wire format and then blanked.
pub fn items(list: &serde_json::Value) -> Vec<serde_json::Value> {
    let items = list["items"].as_array().unwrap_or_else(|| panic!("no items in {list}")).clone();
    items
        .into_iter()
        .map(|mut item| {
            let ts = item["timestamp"].as_str().unwrap_or_else(|| panic!("no timestamp in {item}")).to_string();
            assert!(is_whole_second_utc(&ts), "timestamp {ts}");
            item["timestamp"] = serde_json::Value::String("T".into());
            item
        })
        .collect()
}

/// `2026-07-01T10:00:00Z`.
pub fn is_whole_second_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18].iter().all(|&i| b[i].is_ascii_digit())
}

/// Polls `condition` until it holds; panics with `what` after a minute (a hang, not a timing claim).
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < Duration::from_secs(60), "never happened within a minute: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
