//! The Redis store's operational options on real `redis-server`s (docs/architecture.md §10): TLS (`rediss://` with
//! `--store-ca-file`), waiting for Redis replicas (`--store-wait-replicas`), and the figures `/metrics` reads.
//! Visibility is awaited by polling, never timed; the bound on the polls only keeps a broken build from hanging.

mod common;

use common::eventually;

use std::time::{Duration, Instant};

use custom_metrics_apiserver::quantity::Quantity;
use custom_metrics_apiserver::store::redis::{CaBundle, RedisOptions, RedisStore, TimeSource};
use custom_metrics_apiserver::store::redis_testing::RedisServer;
use custom_metrics_apiserver::store::{
    CustomSeriesId, Limits, MetricStore, Put, SampleWrite, SeriesLabels, StoreError,
};

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
    SampleWrite {
        value: Quantity::parse(value).unwrap(),
        labels: SeriesLabels::empty(),
        ttl: None,
        kind: Default::default(),
    }
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

/// The series field of `pod(name)` in Redis's hash (docs/architecture.md §10).
fn field(name: &str) -> String {
    format!(r#"["c","pods","default","{name}","m"]"#)
}

/// What a Redis server (a replica here) holds for `pod(name)`, read directly.
async fn stored_on(server: &RedisServer, name: &str) -> Option<String> {
    let client = redis::Client::open(server.address()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HGET").arg("{custom-metrics}:series").arg(field(name)).query_async(&mut conn).await.unwrap()
}

fn is_short_of_replicas<T>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Unavailable(message)) if message.contains("0 of 1 Redis replicas"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_a_write_is_acknowledged_once_the_replica_has_it_and_refused_without_it() {
    let primary = RedisServer::start();
    let mut replica_server = RedisServer::start_replica_of(&primary);
    let mut options = primary.options(Duration::from_secs(30));
    options.wait_replicas = 1;
    options.wait_timeout = Duration::from_millis(200);
    let store = replica(&options).await;
    // The replica may still be copying the primary's data set; once it is online, every write waits for it.
    eventually("the replica confirms writes", || async { store.put_custom(pod("first"), write("1")).await.is_ok() })
        .await;
    store.put_custom(pod("x"), write("2")).await.unwrap();
    assert_eq!(stored_on(&replica_server, "x").await.map(|r| r.ends_with(r#"{"v":"2","l":[]}"#)), Some(true));
    let batch = vec![Put::Custom(pod("y"), write("3")), Put::Custom(pod("z"), write("4"))];
    assert_eq!(store.put_many(batch).await, vec![Ok(None), Ok(None)]);
    assert!(stored_on(&replica_server, "z").await.is_some(), "the batch's WAIT covered its last write");
    assert!(store.delete_custom(pod("y")).await.unwrap());
    assert_eq!(stored_on(&replica_server, "y").await, None, "a delete waits too");

    replica_server.kill();
    let refused = store.put_custom(pod("x"), write("5")).await;
    assert!(is_short_of_replicas(&refused), "{refused:?}");
    let batch = vec![Put::Custom(pod("b1"), write("1")), Put::Custom(pod("b2"), write("1"))];
    let results = store.put_many(batch).await;
    assert!(results.iter().all(is_short_of_replicas), "{results:?}");
    assert!(matches!(store.delete_custom(pod("z")).await, Err(StoreError::Unavailable(m)) if m.contains("0 of 1")));
    // As documented: the primary took the write that was refused, so it may still be served.
    eventually("the primary's value reaches the copy", || async { value(&store, "x").await.as_deref() == Some("5") })
        .await;
    // A delete of nothing has nothing to replicate: it answers as before.
    assert!(!store.delete_custom(pod("never")).await.unwrap());
}

/// Through the HTTP API: `--store-wait-replicas=1` with the replica gone answers 503 with a `Status` that says how many
/// replicas confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_short_of_replicas_answers_503_with_the_count_in_its_status() {
    let primary = RedisServer::start();
    let mut replica_server = RedisServer::start_replica_of(&primary);
    let store = format!("--store={}", primary.address());
    let server = common::start(&[&store, "--store-wait-replicas=1", "--store-wait-timeout=200ms"]).await;
    let path = "/write-metrics/namespaces/default/pods/p/m";
    eventually("the replica confirms writes", || async { server.post(path, "1").await.0 == 200 }).await;
    replica_server.kill();
    let (status, text) = server.post(path, "2").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("\"kind\":\"Status\"") && text.contains("0 of 1 Redis replicas"), "{text}");
    assert!(text.contains(&primary.address()), "the Status names the store: {text}");
    server.stop().await;
}

/// `/metrics` reads the copy's expiry count as a counter: a full load, which replaces the copy, must not make it go
/// back (docs/architecture.md §10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expired_count_survives_a_full_load_of_the_copy() {
    let mut server = RedisServer::start();
    let store = replica(&server.options(Duration::from_secs(30))).await;
    let short = SampleWrite { ttl: Some(Duration::from_millis(200)), ..write("1") };
    store.put_custom(pod("short"), short).await.unwrap();
    eventually("the value expires", || async { value(&store, "short").await.is_none() }).await;
    store.purge_expired();
    let stats = || store.stats().expect("the Redis store keeps figures");
    assert_eq!(stats().expired_series, 1);
    // The next write's script drops the expired series from Redis too, so the next load does not see it at all.
    store.put_custom(pod("long"), write("2")).await.unwrap();

    server.restart();
    let server_changed =
        || stats().replication.unwrap().resyncs.iter().any(|(why, n)| *why == "server_changed" && *n == 1);
    eventually("the copy is loaded again from the restarted server", || async { server_changed() }).await;
    assert_eq!(value(&store, "long").await.as_deref(), Some("2"));
    assert_eq!(stats().expired_series, 1, "the counter carries over the replaced copy's expiries");
}
