//! Replicas on one real Redis (docs/architecture.md §10): two or three `RedisStore`s on one `redis-server`, as
//! adapter replicas would be. Visibility across replicas is awaited by polling, never timed; the bound on the polls
//! only keeps a broken build from hanging.

mod common;

use common::eventually;

use std::time::{Duration, Instant};

use custom_metrics_apiserver::quantity::Quantity;
use custom_metrics_apiserver::store::history::HISTORY_BYTES;
use custom_metrics_apiserver::store::redis::{RedisStore, TimeSource};
use custom_metrics_apiserver::store::redis_testing::RedisServer;
use custom_metrics_apiserver::store::{
    CustomSeriesId, Limits, MetricStore, Recent, SampleWrite, SeriesLabels, StoreError,
};

async fn replica(server: &RedisServer, limits: Limits, max_staleness: Duration) -> RedisStore {
    let since = Instant::now();
    let store = RedisStore::connect(&server.options(max_staleness), limits, TimeSource::Redis).unwrap();
    store.wait_synced_since(since).await;
    store
}

fn pod(name: &str) -> CustomSeriesId<'_> {
    CustomSeriesId { resource: "pods", namespace: "default", name, metric: "m" }
}

fn write(value: &str, ttl: Option<Duration>) -> SampleWrite {
    SampleWrite { value: Quantity::parse(value).unwrap(), labels: SeriesLabels::empty(), ttl, kind: Default::default() }
}

fn labels(pairs: &[(&str, &str)]) -> SeriesLabels {
    SeriesLabels::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

async fn value(store: &RedisStore, name: &str) -> Option<String> {
    store.get_custom(pod(name)).await.unwrap().map(|s| s.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_read_from_the_other_with_the_same_redis_timestamp() {
    let server = RedisServer::start();
    let a = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    let b = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    let before = std::time::SystemTime::now();
    a.put_custom(pod("x"), SampleWrite { labels: labels(&[("q", "1")]), ..write("1500m", None) }).await.unwrap();
    let mine = a.get_custom(pod("x")).await.unwrap().expect("the writer reads its own write at once");
    eventually("B sees A's write", || async { value(&b, "x").await.is_some() }).await;
    assert_eq!(b.get_custom(pod("x")).await.unwrap(), Some(mine.clone()), "same value, labels and timestamp");
    let local = before.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((mine.timestamp_millis - local).abs() < 60_000, "a Redis TIME timestamp: {}", mine.timestamp_millis);

    b.put_external("ns", "queue", SampleWrite { labels: labels(&[("q", "a")]), ..write("7", None) }).await.unwrap();
    eventually("A sees B's external write", || async { !a.list_external("ns", "queue").await.unwrap().is_empty() })
        .await;
    assert_eq!(a.list_external("ns", "queue").await.unwrap(), b.list_external("ns", "queue").await.unwrap());

    // Deletes travel too, both ways.
    assert!(b.delete_custom(pod("x")).await.unwrap());
    assert_eq!(value(&b, "x").await, None, "the deleter reads its own delete at once");
    eventually("A sees B's delete", || async { value(&a, "x").await.is_none() }).await;
    assert!(a.delete_external("ns", "queue", &labels(&[("q", "a")])).await.unwrap());
    eventually("B sees A's delete", || async { b.list_external("ns", "queue").await.unwrap().is_empty() }).await;
    assert!(!a.delete_custom(pod("x")).await.unwrap(), "nothing left to delete on either replica");
    assert_eq!((a.series_count(), b.series_count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_ends_on_both_replicas_at_the_same_redis_deadline() {
    let server = RedisServer::start();
    let a = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    let b = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    a.put_custom(pod("short"), write("1", Some(Duration::from_millis(300)))).await.unwrap();
    a.put_custom(pod("hour"), write("1", Some(Duration::from_secs(3600)))).await.unwrap();
    a.put_custom(pod("long"), write("1", None)).await.unwrap();
    eventually("B sees all three", || async { b.series_count() == 3 }).await;
    let on_a = a.get_custom(pod("hour")).await.unwrap().unwrap();
    let on_b = b.get_custom(pod("hour")).await.unwrap().unwrap();
    assert_eq!(on_a.expires_at_millis, on_a.timestamp_millis + 3_600_000, "the deadline is Redis time plus the ttl");
    assert_eq!(on_a, on_b, "one timestamp and one deadline for every replica");
    eventually("the value expires on A", || async { value(&a, "short").await.is_none() }).await;
    eventually("the value expires on B", || async { value(&b, "short").await.is_none() }).await;
    assert_eq!(value(&b, "long").await.as_deref(), Some("1"));
    assert_eq!(value(&b, "hour").await.as_deref(), Some("1"));
    a.purge_expired();
    assert_eq!(a.series_count(), 2, "the expired value is purged from the copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_series_holds_for_the_whole_cluster_of_replicas() {
    let server = RedisServer::start();
    let limits = Limits { max_series: 3, ..Limits::default() };
    let a = replica(&server, limits, Duration::from_secs(30)).await;
    let b = replica(&server, limits, Duration::from_secs(30)).await;
    a.put_custom(pod("a1"), write("1", None)).await.unwrap();
    b.put_custom(pod("b1"), write("1", None)).await.unwrap();
    a.put_external("ns", "e", write("1", None)).await.unwrap();
    let refused = Err(StoreError::SeriesLimit { limit: 3 });
    assert_eq!(b.put_custom(pod("b2"), write("1", None)).await, refused, "B counts A's series");
    assert_eq!(a.put_custom(pod("a2"), write("1", None)).await, refused);
    assert_eq!(
        b.put_external("ns", "e", SampleWrite { labels: labels(&[("k", "v")]), ..write("1", None) }).await,
        refused
    );
    b.put_custom(pod("a1"), write("2", None)).await.unwrap();
    assert!(b.delete_custom(pod("b1")).await.unwrap());
    a.put_custom(pod("a2"), write("1", None)).await.unwrap();
    eventually("both copies hold the same three series", || async {
        a.series_count() == 3 && b.series_count() == 3 && value(&a, "a1").await.as_deref() == Some("2")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_after_the_writes_loads_the_full_state() {
    let server = RedisServer::start();
    let a = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    for i in 0..50 {
        a.put_custom(
            pod(&format!("p{i}")),
            SampleWrite { labels: labels(&[("i", &i.to_string())]), ..write("1", None) },
        )
        .await
        .unwrap();
    }
    for i in 0..10 {
        assert!(a.delete_custom(pod(&format!("p{i}"))).await.unwrap());
    }
    a.put_custom(pod("p20"), write("9", Some(Duration::from_secs(3600)))).await.unwrap();
    a.put_external("ns", "e", SampleWrite { labels: labels(&[("k", "v")]), ..write("3", None) }).await.unwrap();
    let late = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    assert_eq!(late.series_count(), 41);
    assert_eq!(
        late.list_custom_objects("pods", "default", "m").await.unwrap(),
        a.list_custom_objects("pods", "default", "m").await.unwrap(),
        "values, labels, timestamps and deadlines alike"
    );
    assert_eq!(late.list_external("ns", "e").await.unwrap(), a.list_external("ns", "e").await.unwrap());
    assert_eq!(late.list_custom_metrics().await.unwrap(), a.list_custom_metrics().await.unwrap());
    // p20 was written twice: `a` applied both entries and keeps the first in p20's history; a full load reads only
    // the latest record, so the late copy has no history for it (docs/architecture.md §9 "History", §10).
    let p20 = ["p20".to_string()];
    let history =
        |recent: Vec<(String, SeriesLabels, Recent)>| recent[0].2.samples.iter().map(|&(_, v)| v).collect::<Vec<f64>>();
    assert_eq!(history(a.recent_custom("pods", "default", "m", Some(&p20)).await.unwrap()), [1.0, 9.0]);
    assert_eq!(history(late.recent_custom("pods", "default", "m", Some(&p20)).await.unwrap()), [9.0]);
    assert_eq!(late.bytes_used() + HISTORY_BYTES, a.bytes_used(), "the same copy, the same accounting but for it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_writes_fail_reads_go_on_health_fails_and_the_replica_resyncs_when_it_returns() {
    let mut server = RedisServer::start();
    let a = replica(&server, Limits::default(), Duration::from_millis(500)).await;
    a.put_custom(pod("before"), write("1", None)).await.unwrap();
    assert_eq!(a.health().await, Ok(()));

    server.kill();
    let refused = a.put_custom(pod("during"), write("1", None)).await;
    match &refused {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains(&server.address()), "the message names the store: {message}")
        }
        other => panic!("a write without Redis must fail as unavailable, got {other:?}"),
    }
    assert!(matches!(a.delete_custom(pod("before")).await, Err(StoreError::Unavailable(_))));
    assert_eq!(value(&a, "before").await.as_deref(), Some("1"), "reads are served from the copy");
    eventually("health fails once the copy is older than --store-max-staleness", || async {
        matches!(a.health().await, Err(StoreError::Unavailable(message)) if message.contains("stale"))
    })
    .await;
    assert_eq!(value(&a, "before").await.as_deref(), Some("1"), "still served, for the replicas that are in sync");

    // Redis comes back with its AOF: the replica follows again by itself, no restart.
    server.restart();
    eventually("health recovers", || async { a.health().await.is_ok() }).await;
    // The write connection reconnects on its next command; the first may still meet the old, failed one.
    eventually("writes succeed again", || async { a.put_custom(pod("after"), write("2", None)).await.is_ok() }).await;
    assert_eq!(value(&a, "after").await.as_deref(), Some("2"));
    assert_eq!(value(&a, "before").await.as_deref(), Some("1"), "the acknowledged write survived the restart");
    assert_eq!(value(&a, "during").await, None, "the refused write stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_redis_server_is_loaded_afresh() {
    let mut server = RedisServer::start();
    let a = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    a.put_custom(pod("old"), write("1", None)).await.unwrap();
    // A new server without the old data (another run_id): the copy must follow it, not keep what is gone.
    server.replace();
    let b = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    eventually("the replica's copy drops what the new server does not hold", || async {
        value(&a, "old").await.is_none()
    })
    .await;
    eventually("a write to the new server reaches the replica", || async {
        b.put_custom(pod("new"), write("2", None)).await.is_ok() && value(&a, "new").await.as_deref() == Some("2")
    })
    .await;
    assert_eq!(a.series_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_position_was_trimmed_away_reloads_the_full_state() {
    let server = RedisServer::start();
    let a = replica(&server, Limits::default(), Duration::from_secs(30)).await;
    a.put_custom(pod("x"), write("1", None)).await.unwrap();
    // A change that enters the stream and is trimmed away in the same atomic step (as `MAXLEN ~` does to a replica
    // that fell too far behind): A can only learn of it by loading the whole hash again.
    let client = redis::Client::open(server.address()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let script = redis::Script::new(
        r"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
          redis.call('XADD', KEYS[2], '*', 'p', ARGV[1], 'r', ARGV[2])
          redis.call('XTRIM', KEYS[2], 'MAXLEN', 0)
          return 1",
    );
    let _: i64 = script
        .key("{custom-metrics}:series")
        .key("{custom-metrics}:changes")
        .arg(r#"["c","pods","default","y","m"]"#)
        .arg(r#"1000,-1,{"v":"5","l":[]}"#)
        .invoke_async(&mut conn)
        .await
        .unwrap();
    // The next change names the entry before it, which A never applied: A must load everything again.
    a.put_custom(pod("z"), write("2", None)).await.unwrap();
    assert_eq!(value(&a, "y").await.as_deref(), Some("5"), "the change A never read, from the full load");
    assert_eq!(value(&a, "x").await.as_deref(), Some("1"));
    assert_eq!(value(&a, "z").await.as_deref(), Some("2"));
    assert_eq!(a.series_count(), 3);
    let resyncs = a.stats().and_then(|stats| stats.replication).map(|replication| replication.resyncs);
    assert_eq!(resyncs, Some(vec![("start", 1), ("trimmed", 1), ("server_changed", 0)]), "counted for /metrics");
}

/// Two adapters (standalone, `--store=redis://…`) on one Redis, through their HTTP APIs: a write to one is served by
/// the other; without Redis, writes answer 503 with a Status naming the store, reads go on, and `/readyz` fails (500,
/// as Kubernetes' health checks answer) after the staleness; when Redis returns, both are ready again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_adapters_on_one_redis_share_values_and_answer_503_without_it() {
    let mut redis = RedisServer::start();
    let store = format!("--store={}", redis.address());
    let a = common::start(&[&store, "--store-max-staleness=1s"]).await;
    let b = common::start(&[&store, "--store-max-staleness=1s"]).await;
    let write = "/write-metrics/namespaces/default/pods/p/m";
    let read = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p/m";
    assert_eq!(a.post(write, "42").await.0, 200);
    assert_eq!(a.get(read).await.1["items"][0]["value"], "42", "the writer serves its write at once");
    eventually("B serves A's write", || async { b.get(read).await.1["items"][0]["value"] == "42" }).await;

    redis.kill();
    let (status, text) = a.post(write, "43").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Redis store") && text.contains(&redis.address()), "the Status names the store: {text}");
    assert!(text.contains("\"kind\":\"Status\""), "{text}");
    assert_eq!(b.get(read).await.1["items"][0]["value"], "42", "reads are served from the copy");
    eventually("B reports not ready, naming the store", || async {
        let (status, body) = b.get("/readyz?verbose").await;
        status == 500 && body.as_str().is_some_and(|text| text.contains("[-]store"))
    })
    .await;
    assert_eq!(b.get("/livez").await.0, 200, "a Redis outage never fails liveness");

    redis.restart();
    for server in [&a, &b] {
        eventually("ready again", || async { server.get("/readyz").await.0 == 200 }).await;
    }
    eventually("writes succeed again", || async { b.post(write, "44").await.0 == 200 }).await;
    eventually("A serves B's write", || async { a.get(read).await.1["items"][0]["value"] == "44" }).await;
    a.stop().await;
    b.stop().await;
}
