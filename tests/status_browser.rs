//! The status page in a real browser (docs/architecture.md §14): headless Chromium driven through chromedriver's
//! WebDriver protocol (plain JSON over HTTP, with the reqwest client the other tests use). It loads the page of a
//! standalone server, checks that the written series appear with their values, narrows them with the filter form,
//! saves a screenshot, and fails if the page logged a console error. Needs `chromium` and `chromium-driver`
//! (Debian; .ci/run installs them); `CHROMEDRIVER` and `CHROMIUM` override where they are.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// A chromedriver process and one headless Chromium session, ended on drop.
struct Browser {
    driver: tokio::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

fn which(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_string())
}

impl Browser {
    async fn start() -> Browser {
        let driver_path = which("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = which("CHROMIUM", "/usr/bin/chromium");
        for path in [&driver_path, &chromium] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} not found: the browser test needs chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok();
            if let Some(response) = ready
                && response.json::<Value>().await.is_ok_and(|status| status["value"]["ready"] == true)
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1400", "--no-first-run", "--disable-extensions"]
            },
            // The console's messages, read back with the log endpoint.
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        Browser { driver, base, session, http }
    }

    /// A WebDriver command of the session; its `value`.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path}: {answer}");
        }
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    /// The elements matching a CSS selector.
    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .command(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})))
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|element| element.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string())
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        self.find_all(css).await.into_iter().next().unwrap_or_else(|| panic!("no element {css}"))
    }

    async fn text(&self, element: &str) -> String {
        self.command(reqwest::Method::GET, &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.command(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    async fn click(&self, element: &str) {
        self.command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// The browser console's messages since the last call: (level, message).
    async fn console(&self) -> Vec<(String, String)> {
        let log = self.command(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        log.as_array()
            .unwrap()
            .iter()
            .map(|entry| (entry["level"].as_str().unwrap().to_string(), entry["message"].as_str().unwrap().to_string()))
            .collect()
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, bytes).unwrap();
    }

    async fn quit(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.driver.kill().await;
    }
}

/// The console errors among `messages` (Chromium logs them as SEVERE: `console.error`, uncaught exceptions,
/// resources that failed to load, Content-Security-Policy violations).
fn console_errors(messages: &[(String, String)]) -> Vec<String> {
    messages.iter().filter(|(level, _)| level == "SEVERE").map(|(_, message)| message.clone()).collect()
}

#[tokio::test]
async fn the_page_shows_written_series_in_chromium_filters_them_and_logs_no_console_error() {
    let server = common::start(&["--admin-address=127.0.0.1:0"]).await;
    let admin = format!("http://{}/", server.running.as_ref().unwrap().admin_addr.unwrap());
    for (path, body) in [
        ("/write-metrics/namespaces/shop/pods/checkout-7d9f/http_requests_per_second?labels=route%3Dpay", "42"),
        (
            "/write-metrics/namespaces/shop/pods/checkout-5c2a/http_requests_per_second?labels=route%3Dpay&ttl=10m",
            "37500m",
        ),
        ("/write-metrics/namespaces/shop/deployments.apps/checkout/p99_latency_ms?ttl=1h", "180"),
        ("/write-external-metrics/namespaces/shop/queue_depth?labels=queue%3Dorders", "17"),
        ("/write-metrics/namespaces/bank/pods/ledger-0/http_requests_per_second", "8"),
        ("/write-external-metrics/namespaces/bank/queue_depth?labels=queue%3Dpayments&ttl=5m", "250"),
        ("/write-metrics/nodes/node-1/temperature_celsius", "61"),
    ] {
        let (status, text) = server.post(path, body).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    // A refused write, so that the page has a refusal to show.
    assert_eq!(
        server.post("/write-metrics/namespaces/shop/pods/checkout-7d9f/http_requests_per_second", "lots").await.0,
        400
    );

    let browser = Browser::start().await;
    // The check is real: a page that logs an error is caught.
    browser.go("data:text/html,<p>broken</p><script>console.error('boom')</script>").await;
    let caught = console_errors(&browser.console().await);
    assert!(caught.iter().any(|m| m.contains("boom")), "a console error went unnoticed: {caught:?}");

    browser.go(&admin).await;
    let rows = browser.find_all("#series-table tr.series").await;
    assert_eq!(rows.len(), 7);
    let table = browser.text(&browser.find("#series-table").await).await;
    for shown in [
        "checkout-7d9f",
        "42",
        "37500m",
        "180",
        "17",
        "250",
        "route=pay",
        "queue=payments",
        "shop / external / queue_depth",
    ] {
        assert!(table.contains(shown), "{shown:?} not shown: {table}");
    }
    let state = browser.text(&browser.find("#state").await).await;
    assert!(state.contains("memory") && state.contains("healthy"), "{state}");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    browser.screenshot(&out).await;
    println!("screenshot of the status page: {}", out.display());

    // The filter form narrows the list, and the address is the view's stable link.
    browser.type_into(&browser.find("#filter-namespace").await, "bank").await;
    browser.click(&browser.find("#apply").await).await;
    let started = Instant::now();
    while !browser.url().await.contains("namespace=bank") {
        assert!(started.elapsed() < Duration::from_secs(30), "the form was not submitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = browser.find_all("#series-table tr.series").await;
    assert_eq!(rows.len(), 2);
    let table = browser.text(&browser.find("#series-table").await).await;
    assert!(table.contains("ledger-0") && table.contains("250") && !table.contains("checkout"), "{table}");
    let link = browser.find("#permalink").await;
    let href = browser.command(reqwest::Method::GET, &format!("/element/{link}/attribute/href"), None).await;
    assert!(href.as_str().unwrap().contains("namespace=bank"), "{href}");

    let errors = console_errors(&browser.console().await);
    assert!(errors.is_empty(), "the status page logged console errors: {errors:?}");
    browser.quit().await;
    server.stop().await;
}
