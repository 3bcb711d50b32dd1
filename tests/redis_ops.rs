//! The Redis store's operational options on real `redis-server`s (docs/architecture.md §10): TLS (`rediss://` with
//! `--store-ca-file`) and waiting for Redis replicas (`--store-wait-replicas`). Visibility is awaited by polling,
//! never timed; the bound on the polls only keeps a broken build from hanging.

use std::future::Future;
use std::time::{Duration, Instant};

use custom_metrics_apiserver::quantity::Quantity;
use custom_metrics_apiserver::store::redis::{CaBundle, RedisOptions, RedisStore, TimeSource};
use custom_metrics_apiserver::store::redis_testing::RedisServer;
use custom_metrics_apiserver::store::{CustomSeriesId, Limits, MetricStore, SampleWrite, SeriesLabels, StoreError};

/// Polls `condition` until it holds; panics after a minute (a hang, not a timing claim).
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < Duration::from_secs(60), "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn replica(options: &RedisOptions) -> RedisStore {
    let since = Instant::now();
    let store = RedisStore::connect(options, Limits::default(), TimeSource::Redis).unwrap();
    store.wait_synced_since(since).await;
    store
}

fn pod(name: &str) -> CustomSeriesId<'_> {
    CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" }
}

fn write(value: &str) -> SampleWrite {
    SampleWrite { value: Quantity::parse(value).unwrap(), labels: SeriesLabels::empty(), ttl: None }
}

async fn value(store: &RedisStore, name: &str) -> Option<String> {
    store.get_custom(pod(name)).await.unwrap().map(|s| s.value.to_string())
}

fn with_ca(server: &RedisServer, ca: &RedisServer) -> RedisOptions {
    let mut options = server.options(Duration::from_secs(30));
    options.ca = Some(CaBundle(ca.ca_pem().expect("a TLS server").as_bytes().to_vec()));
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_values_over_tls_verified_with_the_ca_file() {
    let server = RedisServer::start_tls();
    assert!(server.address().starts_with("rediss://"), "{}", server.address());
    let options = with_ca(&server, &server);
    let a = replica(&options).await;
    let b = replica(&options).await;
    a.put_custom(pod("x"), write("7")).await.unwrap();
    assert_eq!(value(&a, "x").await.as_deref(), Some("7"));
    eventually("B sees A's write over TLS", || async { value(&b, "x").await.as_deref() == Some("7") }).await;
    assert_eq!(a.health().await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_of_another_ca_is_refused_and_the_store_stays_not_ready() {
    let server = RedisServer::start_tls();
    let stranger = RedisServer::start_tls();
    let store = RedisStore::connect(&with_ca(&server, &stranger), Limits::default(), TimeSource::Redis).unwrap();
    eventually("health names the certificate problem", || async {
        matches!(store.health().await, Err(StoreError::Unavailable(message))
            if message.contains(&server.address()) && message.contains("never in sync") && message.contains("certificate"))
    })
    .await;
    match store.put_custom(pod("x"), write("1")).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains(&server.address()), "the message names the store: {message}")
        }
        other => panic!("a write over a refused TLS connection must fail as unavailable, got {other:?}"),
    }
    // The server's own CA is accepted on the same server: the refusal was the CA's, nothing else.
    let trusted = replica(&with_ca(&server, &server)).await;
    assert_eq!(value(&trusted, "x").await, None, "the refused write stored nothing");
}
