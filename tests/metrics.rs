//! `/metrics` (docs/wire-contract.md §11): scraped after known traffic and parsed with the official Prometheus
//! Python client's text parser, in standalone mode and in cluster mode (authorized as `get` on the non-resource URL
//! `/metrics`).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::cluster::ClusterServer;
use serde_json::{Value, json};

/// Parses the exposition with `prometheus_client.parser` and prints every sample as JSON.
const PARSER: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as error:
    print("prometheus-client is missing (pip install prometheus-client): %s" % error)
    sys.exit(3)
families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    samples = [[s.name, s.labels, s.value] for s in family.samples]
    families.append({"name": family.name, "type": family.type, "samples": samples})
print(json.dumps(families))
"#;

/// One parsed sample.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of `text` and each family's type, as the official parser reads them; panics with what to install
/// when the parser is missing, and with the parser's error when the text is not valid.
fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install python3 and `pip install prometheus-client`"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.code() != Some(3), "{stdout}");
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: Value = serde_json::from_str(&stdout).unwrap();
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for family in families.as_array().unwrap() {
        types.insert(family["name"].as_str().unwrap().to_string(), family["type"].as_str().unwrap().to_string());
        for sample in family["samples"].as_array().unwrap() {
            let labels = sample[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            samples.push(Sample {
                name: sample[0].as_str().unwrap().to_string(),
                labels,
                value: sample[2].as_f64().unwrap(),
            });
        }
    }
    (samples, types)
}

/// The sum of the samples named `name` whose labels include `labels`; panics when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(!matching.is_empty(), "no sample {name} with {labels:?}");
    matching.iter().map(|s| s.value).sum()
}

/// Every family scraped is documented in the README, by its exposed name.
fn assert_documented(types: &BTreeMap<String, String>) {
    let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for (family, kind) in types {
        let exposed = if kind == "counter" { format!("`{family}_total`") } else { format!("`{family}`") };
        assert!(readme.contains(&exposed), "{exposed} ({kind}) is not documented in the README");
    }
}

fn request_labels<'a>(
    verb: &'a str,
    group: &'a str,
    version: &'a str,
    resource: &'a str,
    scope: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("verb", verb),
        ("group", group),
        ("version", version),
        ("resource", resource),
        ("subresource", ""),
        ("scope", scope),
    ]
}

#[tokio::test]
async fn after_known_traffic_the_scrape_parses_and_counts_requests_writes_and_freshness() {
    let server = common::start(&[]).await;
    for pod in ["web-1", "web-2", "web-3"] {
        let (status, body) = server.post(&format!("/write-metrics/namespaces/default/pods/{pod}/q"), "5").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server.post("/write-metrics/namespaces/Default/pods/web-1/q", "5").await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/q").await;
    assert_eq!(status, 200);
    let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/missing").await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q").await;
    assert_eq!(status, 200);
    // Not on the plain write port.
    let response = server.writer.get(server.write_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);

    let response = server.client.get(server.api_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let (samples, types) = parse(&response.text().await.unwrap());

    let custom = "custom.metrics.k8s.io";
    let writes = "metrics_apiserver_writes_total";
    assert_eq!(value(&samples, writes, &[("group", custom), ("result", "accepted"), ("code", "200")]), 3.0);
    assert_eq!(value(&samples, writes, &[("group", custom), ("result", "refused"), ("code", "422")]), 1.0);
    assert_eq!(value(&samples, writes, &[]), 4.0, "the GET on the write port is no write");

    let total = "apiserver_request_total";
    let object_read = request_labels("GET", custom, "v1beta2", "pods", "resource");
    assert_eq!(value(&samples, total, &[object_read.as_slice(), &[("code", "200")]].concat()), 2.0);
    assert_eq!(value(&samples, total, &[object_read.as_slice(), &[("code", "404")]].concat()), 1.0);
    let writes_as_requests = request_labels("POST", "", "", "", "");
    assert_eq!(value(&samples, total, &[writes_as_requests.as_slice(), &[("code", "200")]].concat()), 3.0);
    assert_eq!(value(&samples, total, &[writes_as_requests.as_slice(), &[("code", "422")]].concat()), 1.0);
    assert_eq!(types["apiserver_request"], "counter");

    let durations = "apiserver_request_duration_seconds";
    assert_eq!(types[durations], "histogram");
    assert_eq!(value(&samples, &format!("{durations}_count"), &object_read), 3.0);
    let bounds: Vec<String> = samples
        .iter()
        .filter(|s| s.name == format!("{durations}_bucket") && s.labels.get("verb").map(String::as_str) == Some("GET"))
        .filter(|s| s.labels.get("resource").map(String::as_str) == Some("pods"))
        .map(|s| s.labels["le"].clone())
        .collect();
    // As Kubernetes exposes them (Go's float formatting).
    let kubernetes = [
        "0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1", "1.25", "1.5", "2", "3", "4", "5", "6", "8",
        "10", "15", "20", "30", "45", "60", "+Inf",
    ];
    assert_eq!(bounds, kubernetes);

    // The scrape itself is the one request in flight.
    let inflight = "apiserver_current_inflight_requests";
    assert_eq!(value(&samples, inflight, &[("request_kind", "readOnly")]), 1.0);
    assert_eq!(value(&samples, inflight, &[("request_kind", "mutating")]), 0.0);

    // Four values returned: web-1 alone, then web-1, web-2 and web-3 by the wildcard.
    let freshness = "metrics_apiserver_metric_freshness_seconds";
    assert_eq!(value(&samples, &format!("{freshness}_count"), &[]), 4.0);
    assert_eq!(value(&samples, &format!("{freshness}_bucket"), &[("le", "+Inf")]), 4.0);

    assert_eq!(value(&samples, "metrics_apiserver_stored_series", &[("group", custom)]), 3.0);
    assert_eq!(value(&samples, "metrics_apiserver_stored_series", &[("group", "external.metrics.k8s.io")]), 0.0);
    assert_eq!(value(&samples, "metrics_apiserver_expired_series_total", &[]), 0.0);
    assert!(value(&samples, "metrics_apiserver_store_bytes", &[]) > 0.0);
    // Standalone: no cluster, no label index, no delegated reviews.
    assert!(!types.contains_key("metrics_apiserver_label_index_objects"), "{types:?}");
    assert!(!samples.iter().any(|s| s.name.starts_with("apiserver_delegated_auth")), "no reviews were made");
    assert_documented(&types);
    server.stop().await;
}

#[tokio::test]
async fn in_cluster_mode_metrics_need_get_on_the_metrics_path_and_count_the_delegated_reviews() {
    let server = ClusterServer::start(&[]).await;
    server.fake.add_token("scraper-token", "scraper", &[]);
    server.fake.add_token("nobody-token", "nobody", &[]);
    server.fake.allow("scraper", "get");
    let client = server.client(None);

    let answer = server.send(client.get(server.url("/metrics")).bearer_auth("nobody-token")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.body["message"], r#"forbidden: User "nobody" cannot get path "/metrics""#);
    let answer = server.send(client.get(server.url("/metrics"))).await;
    assert_eq!(answer.status, 403, "anonymous: {answer:?}");
    let reviews = server.access_reviews();
    assert_eq!(reviews[0]["nonResourceAttributes"], json!({"path": "/metrics", "verb": "get"}));

    for _ in 0..2 {
        let answer = server.send(client.get(server.url("/metrics")).bearer_auth("scraper-token")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let response = client.get(server.url("/metrics")).bearer_auth("scraper-token").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (samples, types) = parse(&response.text().await.unwrap());
    assert_documented(&types);

    // Two tokens reviewed once each; the scraper's later requests came from the cache.
    assert_eq!(value(&samples, "apiserver_delegated_authn_request_total", &[("code", "201")]), 2.0);
    assert_eq!(value(&samples, "apiserver_delegated_authn_request_duration_seconds_count", &[("code", "201")]), 2.0);
    assert_eq!(value(&samples, "authentication_token_cache_request_total", &[("status", "miss")]), 2.0);
    assert_eq!(value(&samples, "authentication_token_cache_request_total", &[("status", "hit")]), 2.0);
    // Three SubjectAccessReviews (nobody, anonymous, scraper); the scraper's later requests from the cache.
    assert_eq!(value(&samples, "apiserver_delegated_authz_request_total", &[("code", "201")]), 3.0);
    assert_eq!(value(&samples, "apiserver_delegated_authz_request_duration_seconds_count", &[]), 3.0);
    let cache = "metrics_apiserver_access_review_cache_requests_total";
    assert_eq!(value(&samples, cache, &[("result", "miss")]), 3.0);
    assert_eq!(value(&samples, cache, &[("result", "hit")]), 2.0);

    let metrics_get = request_labels("GET", "", "", "", "");
    let total = "apiserver_request_total";
    assert_eq!(value(&samples, total, &[metrics_get.as_slice(), &[("code", "403")]].concat()), 2.0);
    assert_eq!(value(&samples, total, &[metrics_get.as_slice(), &[("code", "200")]].concat()), 2.0);
    // The pods watch runs from the start.
    assert_eq!(value(&samples, "metrics_apiserver_label_index_watches", &[]), 1.0);
    assert_eq!(value(&samples, "metrics_apiserver_swept_series_total", &[]), 0.0);
    assert_eq!(value(&samples, "metrics_apiserver_label_index_watch_restarts_total", &[]), 0.0);
    server.stop().await;
}

/// With `--store=redis://…`: the store's round trips by operation, the copy's lag, its full loads by reason and the
/// delay of changes reaching it, and the stored series counted from the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_redis_store_the_scrape_has_round_trips_lag_resyncs_and_the_copys_series() {
    let mut redis = custom_metrics_apiserver::store::redis_testing::RedisServer::start();
    let store = format!("--store={}", redis.address());
    let server = common::start(&[&store]).await;
    for pod in ["web-1", "web-2", "web-3"] {
        let (status, body) = server.post(&format!("/write-metrics/namespaces/default/pods/{pod}/q"), "5").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server.post("/write-external-metrics/namespaces/default/queue", "7").await;
    assert_eq!(status, 200, "{body}");
    let batch = r#"{"items": [{"namespace": "default", "resource": "pods", "name": "web-4", "metric": "q", "value": "1"},
                  {"namespace": "default", "resource": "pods", "name": "web-5", "metric": "q", "value": "2"}]}"#;
    let (status, body) = server.post("/write-metrics", batch).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.delete("/write-metrics/namespaces/default/pods/web-5/q").await;
    assert_eq!(status, 200, "{body}");

    let scrape = async || {
        let response = server.client.get(server.api_url("/metrics")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        parse(&response.text().await.unwrap())
    };
    let (samples, types) = scrape().await;
    assert_documented(&types);
    let custom = "custom.metrics.k8s.io";
    assert_eq!(value(&samples, "metrics_apiserver_stored_series", &[("group", custom)]), 4.0);
    assert_eq!(value(&samples, "metrics_apiserver_stored_series", &[("group", "external.metrics.k8s.io")]), 1.0);
    assert_eq!(value(&samples, "metrics_apiserver_expired_series_total", &[]), 0.0);

    let round_trips = "metrics_apiserver_store_request_duration_seconds";
    assert_eq!(types[round_trips], "histogram");
    let count = format!("{round_trips}_count");
    assert_eq!(value(&samples, &count, &[("operation", "write")]), 4.0, "three custom writes, one external");
    assert_eq!(value(&samples, &count, &[("operation", "batch")]), 1.0, "the batch is one round trip");
    assert_eq!(value(&samples, &count, &[("operation", "delete")]), 1.0);
    assert_eq!(value(&samples, &count, &[("operation", "load")]), 1.0, "the copy was loaded once");
    assert!(value(&samples, &count, &[("operation", "time")]) >= 1.0);
    assert_eq!(value(&samples, &format!("{round_trips}_bucket"), &[("operation", "write"), ("le", "+Inf")]), 4.0);

    let resyncs = "metrics_apiserver_store_resyncs_total";
    assert_eq!(value(&samples, resyncs, &[("reason", "start")]), 1.0);
    assert_eq!(value(&samples, resyncs, &[("reason", "server_changed")]), 0.0);
    let lag = value(&samples, "metrics_apiserver_store_replication_lag_seconds", &[]);
    assert!((0.0..30.0).contains(&lag), "in sync: {lag}");
    // Every change reached the copy through the stream: 4 writes, 2 batch items, 1 delete.
    assert_eq!(value(&samples, "metrics_apiserver_store_apply_delay_seconds_count", &[]), 7.0);

    // Redis restarted (another run_id): the copy is loaded again, counted by its reason.
    redis.restart();
    let mut reloaded = false;
    for _ in 0..6000 {
        let (samples, _) = scrape().await;
        if value(&samples, resyncs, &[("reason", "server_changed")]) == 1.0 {
            assert_eq!(value(&samples, "metrics_apiserver_stored_series", &[("group", custom)]), 4.0, "from the AOF");
            assert_eq!(value(&samples, &count, &[("operation", "load")]), 2.0);
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(reloaded, "the copy was never reloaded after the restart");
    server.stop().await;
}
