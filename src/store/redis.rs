//! The Redis store: replicas share their values through Redis (or Valkey) and each serves reads from a local copy
//! (docs/architecture.md §10).
//!
//! - A write goes through a Lua script in Redis that takes Redis `TIME`, checks the cluster-wide series count against
//!   --max-series, stores the latest value in a hash, and appends the change to a stream trimmed with `MAXLEN ~`. It
//!   is acknowledged once Redis answered and this replica's copy has applied the stream entry (read-your-writes).
//! - Concurrent writes are queued to a writer task that sends what is queued as one script run (many writes, one
//!   round trip, one reply), one run at a time; `put_many` sends its batch as one pipeline of such runs.
//! - Every replica tails the stream (`XREAD BLOCK`) on a connection of its own into a [`MemoryStore`] (the mirror),
//!   its own writes included. It loads the whole hash on start, when its position was trimmed away, and when the
//!   Redis server changed (`run_id`). Reads never leave the process.
//! - Timestamps and deadlines come from Redis time, so that every replica agrees on them; the mirror estimates Redis
//!   time from the local clock and the offset measured with `TIME`.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::StreamRangeReply;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

use super::memory::PURGE_INTERVAL;
use super::{
    CustomMetricDescriptor, CustomSeriesId, Limits, MemoryStore, MetricStore, Put, Recent, ReplicationStats, Sample,
    SampleWrite, SeriesKind, SeriesLabels, StoreError, StoreStats, check_custom_id, check_external_id, check_labels,
};
use crate::clock::{Clock, SystemClock};
use crate::histogram::AtomicHistogram;
use crate::quantity::Quantity;

/// The prefix of the store's keys; a hash tag, so that a Redis Cluster would keep them in one slot.
pub const DEFAULT_KEY_PREFIX: &str = "{custom-metrics}";

/// Entries the stream keeps at least (`XADD … MAXLEN ~`): a replica that falls further behind reloads everything.
pub const STREAM_LENGTH: usize = 100_000;

/// Stream entries one `XREAD` returns at most: an entry holds up to 256 writes (a full script run), so a reply to a
/// replica far behind holds at most 32,768 writes, a few MB (docs/architecture.md §10, "The stream's length").
const READ_COUNT: usize = 128;

/// How long one `XREAD` waits for new entries at most; also how often an idle replica confirms that it is in sync.
const BLOCK: Duration = Duration::from_secs(1);

/// How long a Redis command may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the tail's connection waits for an answer: a blocked `XREAD`, or the full load of a large store.
const TAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a write waits for this replica's copy to apply it once Redis accepted it.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after it was sent a write may still change anything in Redis (by Redis time); a script that runs later
/// does nothing. Well within [`REDIS_TIMEOUT`], after which the write is answered 503 and the writer may write again:
/// a command held up on its way (a slow network, a frozen Redis) must not land after a newer, acknowledged write
/// (docs/architecture.md §10, "Failure behaviour").
const APPLY_WINDOW: Duration = Duration::from_secs(1);

/// Writes one run of [`PUT_LUA`] carries at most: a run blocks Redis for its duration (a few microseconds a write).
const MAX_BATCH: usize = 256;

/// Yields of the writer task at most while it gathers a run: under load it gathers until the run is as large as the
/// last one, so that the writes of every connection waiting for an answer go together (with bench/redis's 32
/// connections about 30 writes a run instead of 15 with one yield, and a third less CPU per write for Redis and a
/// tenth less for the replica, on a busy machine); a lone write still goes after one yield.
const GATHER_YIELDS: usize = 8;

/// Runs of queued writes in flight at once on the write connection: while one is, new writes queue up and go
/// together in the next run (docs/architecture.md §10, "Writes"). One gave the largest runs and the most writes per
/// second under bench/redis's write load (a rough measurement on a busy machine: about 31,000/s with one, 27,000/s
/// with two, 26,000/s with four: more runs in flight make them smaller, and each run costs both processes).
const MAX_IN_FLIGHT: usize = 1;

/// Pause between two attempts of the tail to reach Redis.
const RETRY: Duration = Duration::from_millis(200);

/// Upper bounds, in seconds, of the round-trip and apply-delay histograms: from a loopback round trip to the write
/// timeout.
const LATENCY_BUCKETS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The operations whose round trips are timed, as `/metrics` labels them.
#[derive(Clone, Copy)]
enum Operation {
    /// One write's script (with its `WAIT`, if any).
    Write,
    /// A batch's pipeline.
    Batch,
    /// A delete's script.
    Delete,
    /// The full load of the copy.
    Load,
    /// `TIME`, on every load and health check.
    Time,
}

const OPERATIONS: [&str; 5] = ["write", "batch", "delete", "load", "time"];

/// Why the copy was loaded in full, as `/metrics` labels it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Resync {
    /// The first load.
    Start,
    /// Entries after the copy's position were trimmed away.
    Trimmed,
    /// Another server, or the same one restarted (`run_id`).
    ServerChanged,
}

const RESYNCS: [&str; 3] = ["start", "trimmed", "server_changed"];

/// The store's own figures for `/metrics`.
struct Figures {
    /// Seconds, by [`Operation`].
    round_trips: [AtomicHistogram; OPERATIONS.len()],
    /// Seconds from a change's `XADD` to the copy applying it, never below 0 (clock estimates).
    apply_delay: AtomicHistogram,
    resyncs: [AtomicU64; RESYNCS.len()],
    /// Series the replaced copies had expired: a full load starts a new copy, the counter goes on. Locked while
    /// a copy is swapped in and while the figures are read, so that a scrape never sees the counter go back.
    expired_before: Mutex<u64>,
}

impl Default for Figures {
    fn default() -> Self {
        Figures {
            round_trips: std::array::from_fn(|_| AtomicHistogram::new(&LATENCY_BUCKETS)),
            apply_delay: AtomicHistogram::new(&LATENCY_BUCKETS),
            resyncs: std::array::from_fn(|_| AtomicU64::new(0)),
            expired_before: Mutex::new(0),
        }
    }
}

/// The largest ttl, in milliseconds, that a deadline in Lua's doubles keeps exactly (2^52); longer ones never expire.
const MAX_EXACT_TTL_MILLIS: u128 = 1 << 52;

/// The opening of both scripts: `now` from `ARGV[1]` (the caller's clock, in tests) or, when it is empty, Redis `TIME`;
/// then nothing is done when `now` is past the time in `ARGV[n]`, if given (see [`APPLY_WINDOW`]).
macro_rules! script_opening {
    ($apply_by:literal) => {
        concat!(
            "
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
if ARGV[",
            $apply_by,
            "] ~= '' and now > tonumber(ARGV[",
            $apply_by,
            "]) then
  return redis.error_reply('LATE this write reached Redis after the adapter had given up on it; nothing was changed')
end
"
        )
    };
}

/// The write of one or more values, in order (KEYS: hash, deadlines, stream; ARGV: now or '' for Redis TIME, the
/// time after which it must do nothing or '' (see [`APPLY_WINDOW`]), max series, the stream's length in writes, then
/// for each write its field and `ttl,payload`, the ttl in ms or -1 (see [`write_arg`])). One run carries many writes:
/// `TIME`, the expiry sweep, the stream's last id and the stream entry are paid once per run instead of once per write
/// (docs/architecture.md §10, "Writes"). Removes up to 64 expired series per write first, so that they do not count against the limit. The
/// run's stored writes go into ONE stream entry, `B <entry before> <field> <record> <field> <record> …` in order
/// (Redis keeps an entry's fields, repeated ones included, in order), which names the entry before it so that a
/// replica finds out when entries it had not read were trimmed away; `B`, not the single change's `b`, so that a
/// replica of an older version, which knows only single changes, sees no predecessor and loads the whole hash instead
/// of applying a part of the entry. The stream is trimmed to its length divided by the entry's writes, so that it
/// keeps about that many writes whatever the runs' sizes. A field's deadline is removed from the sorted set only when
/// its record had one. Returns {the entry's id, or '' when nothing was stored; one character per write, '1' stored,
/// '0' refused because the series is new and the limit is reached}.
const PUT_LUA: &str = concat!(
    script_opening!(2),
    r"
local n = (#ARGV - 4) / 2
for _, f in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64 * n)) do
  redis.call('HDEL', KEYS[1], f)
  redis.call('ZREM', KEYS[2], f)
end
local fields = {}
for i = 5, #ARGV, 2 do fields[#fields + 1] = ARGV[i] end
local old = redis.call('HMGET', KEYS[1], unpack(fields))
local count = redis.call('HLEN', KEYS[1])
local max = tonumber(ARGV[3])
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local before = '0-0'
if #last > 0 then before = last[1][1] end
local stamp = string.format('%.0f,', now)
local seen, timed_before, deadlines, outcome = {}, {}, {}, {}
local entry, size = {'B', before}, 2
for j = 1, n do
  local i = 3 + 2 * j
  local field = ARGV[i]
  if not old[j] and not seen[field] and count >= max then
    outcome[j] = '0'
  else
    if not seen[field] then
      if old[j] then
        -- A record is timestamp,deadline,payload; a deadline of -1 is none.
        local comma = string.find(old[j], ',', 1, true)
        timed_before[field] = not comma or string.byte(old[j], comma + 1) ~= 45
      else
        count = count + 1
      end
      seen[field] = true
    end
    local write = ARGV[i + 1]
    local record
    if string.byte(write, 1) == 45 then
      -- '-1,payload': no deadline, and the record is the stamp and the argument.
      deadlines[field] = false
      record = stamp .. write
    else
      local comma = string.find(write, ',', 1, true)
      local deadline = now + tonumber(string.sub(write, 1, comma - 1))
      deadlines[field] = deadline
      record = stamp .. string.format('%.0f', deadline) .. string.sub(write, comma)
    end
    entry[size + 1] = field
    entry[size + 2] = record
    size = size + 2
    outcome[j] = '1'
  end
end
local stored = (size - 2) / 2
if stored == 0 then return {'', table.concat(outcome)} end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', math.max(1, math.floor(tonumber(ARGV[4]) / stored)), '*',
  unpack(entry))
redis.call('HSET', KEYS[1], unpack(entry, 3))
local timed, untimed = {}, {}
for field, deadline in pairs(deadlines) do
  if deadline then
    timed[#timed + 1] = deadline
    timed[#timed + 1] = field
  elseif timed_before[field] then
    untimed[#untimed + 1] = field
  end
end
if #timed > 0 then redis.call('ZADD', KEYS[2], unpack(timed)) end
if #untimed > 0 then redis.call('ZREM', KEYS[2], unpack(untimed)) end
return {id, table.concat(outcome)}
"
);

/// The removal of series (KEYS as [`PUT_LUA`]; ARGV: now or '', stream length, the time after which it must do
/// nothing or '', fields). Returns {live removed, removed, last stream id or ''}.
const DELETE_LUA: &str = concat!(
    script_opening!(3),
    r"
local live, removed, id = 0, 0, ''
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local before = '0-0'
if #last > 0 then before = last[1][1] end
for i = 4, #ARGV do
  local f = ARGV[i]
  local record = redis.call('HGET', KEYS[1], f)
  if record then
    local deadline = tonumber(string.match(record, '^[^,]*,([^,]*),'))
    if deadline < 0 or deadline > now then live = live + 1 end
    redis.call('HDEL', KEYS[1], f)
    redis.call('ZREM', KEYS[2], f)
    id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'b', before, 'd', f)
    before = id
    removed = removed + 1
  end
end
return {live, removed, id}
"
);

static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_LUA));
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE_LUA));

/// A password that never shows in logs or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The PEM CA bundle that a `rediss://` store verifies the server with; `Debug` shows its size only.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle(pub Vec<u8>);

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes of PEM>", self.0.len())
    }
}

/// Where the Redis store is and how it behaves, from the store flags (src/store/flags.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://host:port/db` or `rediss://host:port/db`, without credentials: how messages name the store.
    pub address: String,
    /// TLS (`rediss://`): the server's certificate is verified against `ca`, else the system's roots, and its name
    /// against `host`.
    pub tls: bool,
    /// `--store-ca-file`'s bundle, with `tls` only.
    pub ca: Option<CaBundle>,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database number.
    pub db: i64,
    /// ACL user, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<Password>,
    /// How long reads are served while the copy is not in sync before the store reports unhealthy.
    pub max_staleness: Duration,
    /// Redis replicas that must confirm each write (`WAIT`) before it is acknowledged; 0 for none.
    pub wait_replicas: u32,
    /// How long a write waits for those confirmations.
    pub wait_timeout: Duration,
    /// Prefix of every key the store uses.
    pub key_prefix: String,
}

/// Where timestamps and deadlines come from.
pub enum TimeSource {
    /// Redis `TIME`, as a server runs.
    Redis,
    /// A clock the caller controls, given to the scripts instead of `TIME` and used by the copy: for tests, which
    /// cannot move Redis time (docs/architecture.md §10).
    Clock(Arc<dyn Clock>),
}

/// The mirror's estimate of Redis time: the local clock plus the offset measured with `TIME`.
#[derive(Default)]
struct RedisClock {
    offset: AtomicI64,
    /// Whether `offset` was measured yet.
    measured: AtomicBool,
}

impl Clock for RedisClock {
    fn now_millis(&self) -> i64 {
        SystemClock.now_millis().saturating_add(self.offset.load(Ordering::Relaxed))
    }
}

/// A write waiting for the writer task (see [`writer`]).
struct Queued {
    field: String,
    /// [`write_arg`].
    write: String,
    /// The last moment, by the copy's estimate of Redis time, at which it may still apply (see [`APPLY_WINDOW`]),
    /// taken when it was queued.
    apply_by: Option<i64>,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// [`PUT_LUA`]'s argument of one write besides its field: `ttl,payload`, the ttl in milliseconds or -1 for none (and
/// for one too long to be kept exactly), the payload JSON; for a write without a ttl, what the record holds after its
/// timestamp. One string, written in one go: Redis and its Lua then handle two arguments per write, not three.
fn write_arg(ttl: Option<Duration>, payload: &PayloadOut<'_>) -> Result<String, StoreError> {
    use std::io::Write as _;
    let mut arg = Vec::with_capacity(64);
    let written = match ttl.map(|ttl| ttl.as_millis()) {
        Some(millis) if millis < MAX_EXACT_TTL_MILLIS => write!(arg, "{millis},"),
        _ => arg.write_all(b"-1,"),
    };
    written
        .map_err(serde_json::Error::io)
        .and_then(|()| serde_json::to_writer(&mut arg, payload))
        .map_err(|e| StoreError::Unavailable(format!("encoding a value for Redis: {e}")))?;
    // serde_json writes UTF-8, and so does the ttl's formatting.
    String::from_utf8(arg).map_err(|e| StoreError::Unavailable(format!("encoding a value for Redis: {e}")))
}

/// A stream id, `milliseconds-sequence`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Position(u64, u64);

impl Position {
    fn parse(text: &str) -> Option<Position> {
        let (ms, seq) = text.split_once('-')?;
        Some(Position(ms.parse().ok()?, seq.parse().ok()?))
    }
}

/// [`Position::parse`] of the bytes Redis sent.
fn position_of(bytes: &[u8]) -> Option<Position> {
    Position::parse(std::str::from_utf8(bytes).ok()?)
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// The keys of one store.
struct Keys {
    /// HASH: series field -> record (`timestamp,deadline,payload`).
    series: String,
    /// ZSET: series field scored by its deadline, for series that have one.
    deadlines: String,
    /// STREAM: one entry per run of writes, `B` entry-before then field record pairs; one per removal, `b`
    /// entry-before `d` field (see [`Entry`]).
    stream: String,
}

/// What the value of a series carries besides time: the value, the labels of a custom series, and its kind, `"k":"c"`
/// for a counter and left out for a gauge (so that records written before kinds existed read as gauges). Every
/// replica's copy keeps the same history from the stream's entries (docs/architecture.md §9, "History").
#[derive(Serialize)]
struct PayloadOut<'a> {
    v: &'a Quantity,
    l: Vec<(&'a str, &'a str)>,
    #[serde(skip_serializing_if = "SeriesKind::is_gauge")]
    k: SeriesKind,
}

#[derive(Deserialize)]
struct PayloadIn {
    v: Quantity,
    #[serde(default)]
    l: Vec<(String, String)>,
    #[serde(default)]
    k: SeriesKind,
}

/// A series field: `["c", resource, namespace, name, metric]` or `["e", namespace, metric, labels]`, its strings
/// borrowed from the text where they hold no escapes: the tail parses one per stream entry (docs/architecture.md §10).
enum Field<'a> {
    Custom { resource: Text<'a>, namespace: Text<'a>, name: Text<'a>, metric: Text<'a> },
    External { namespace: Text<'a>, metric: Text<'a>, labels: Vec<(Text<'a>, Text<'a>)> },
}

/// A JSON string of a field, borrowed when it can be.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"["c",resource,namespace,name,metric] or ["e",namespace,metric,labels]"#)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
                fn next<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(
                    seq: &mut A,
                    index: usize,
                ) -> Result<T, A::Error> {
                    seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(index, &Visitor))
                }
                let kind: Text<'de> = next(&mut seq, 0)?;
                let field = match &*kind.0 {
                    "c" => Field::Custom {
                        resource: next(&mut seq, 1)?,
                        namespace: next(&mut seq, 2)?,
                        name: next(&mut seq, 3)?,
                        metric: next(&mut seq, 4)?,
                    },
                    "e" => Field::External {
                        namespace: next(&mut seq, 1)?,
                        metric: next(&mut seq, 2)?,
                        labels: next(&mut seq, 3)?,
                    },
                    other => return Err(serde::de::Error::custom(format!("unknown kind {other:?}"))),
                };
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::custom("more elements than its kind has"));
                }
                Ok(field)
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

fn pairs(labels: &SeriesLabels) -> Vec<(&str, &str)> {
    labels.iter().map(|(k, v)| (&**k, &**v)).collect()
}

fn labels_from(pairs: Vec<(String, String)>) -> SeriesLabels {
    SeriesLabels::from_map(pairs.into_iter().collect())
}

fn labels_of(pairs: Vec<(Text<'_>, Text<'_>)>) -> SeriesLabels {
    SeriesLabels::from_map(pairs.into_iter().map(|(k, v)| (k.0.into_owned(), v.0.into_owned())).collect())
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unavailable(format!("encoding a value for Redis: {e}")))
}

fn custom_field(id: &CustomSeriesId<'_>) -> Result<String, StoreError> {
    encode(&("c", id.resource, id.namespace, id.name, id.metric))
}

fn external_field(namespace: &str, metric: &str, labels: &SeriesLabels) -> Result<String, StoreError> {
    encode(&("e", namespace, metric, pairs(labels)))
}

/// The mirror's own limits: what Redis accepted is applied whatever the count; names, labels and bytes were checked
/// before the write was sent. The history's bounds are the store's.
fn mirror_limits(limits: &Limits) -> Limits {
    Limits {
        max_series: usize::MAX,
        max_store_bytes: usize::MAX,
        max_labels_per_series: usize::MAX,
        max_label_bytes_per_series: usize::MAX,
        rates: limits.rates,
    }
}

/// The state of the tail, for health.
#[derive(Default)]
struct SyncState {
    /// When the copy last had everything the stream held.
    synced_at: Option<Instant>,
    /// The last failure to follow Redis, until the next success.
    error: Option<String>,
}

/// What the store and its tail share.
struct Shared {
    mirror: ArcSwap<MemoryStore>,
    /// The mirror's time.
    clock: Arc<dyn Clock>,
    /// Set when time is Redis time: the offset to keep measuring.
    redis_clock: Option<Arc<RedisClock>>,
    /// Set when time is the caller's: the scripts' `now`.
    fixed_clock: Option<Arc<dyn Clock>>,
    limits: Limits,
    client: Client,
    writes: ConnectionManager,
    keys: Keys,
    /// The last stream position the mirror applied.
    applied: watch::Sender<Position>,
    sync: Mutex<SyncState>,
    max_staleness: Duration,
    /// --store-wait-replicas and --store-wait-timeout, when replicas are waited for.
    wait: Option<(u32, Duration)>,
    figures: Figures,
    /// How long one `XREAD` waits: well within the staleness, so that an idle replica stays in sync.
    block: Duration,
    address: String,
}

/// The Redis-backed [`MetricStore`]; see the module documentation.
pub struct RedisStore {
    shared: Arc<Shared>,
    /// Single writes, to the writer task.
    queue: mpsc::UnboundedSender<Queued>,
    _tail: AbortOnDropHandle<()>,
    _writer: AbortOnDropHandle<()>,
    attached: Mutex<Vec<Box<dyn Any + Send>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisStore {
    /// Opens the store: connects lazily and starts the tail, which loads the copy; until it has, [`Self::health`]
    /// fails. Fails only for options the client refuses. Must be called within a tokio runtime.
    pub fn connect(options: &RedisOptions, limits: Limits, time: TimeSource) -> Result<RedisStore, StoreError> {
        let unavailable = |e: RedisError| StoreError::Unavailable(format!("Redis store {}: {e}", options.address));
        let info = options.address.as_str().into_connection_info().map_err(unavailable)?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &options.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &options.password {
            settings = settings.set_password(&password.0);
        }
        let info = info.set_redis_settings(settings);
        let client = match &options.ca {
            // rustls with the crate's one provider (ring): the same TLS stack as the serving side.
            Some(ca) => {
                Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(ca.0.clone()) })
            }
            None => Client::open(info),
        }
        .map_err(unavailable)?;
        // A write's answer comes after its `WAIT`, if any.
        let response_timeout =
            REDIS_TIMEOUT + if options.wait_replicas > 0 { options.wait_timeout } else { Duration::ZERO };
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_TIMEOUT);
        let writes = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        let (clock, redis_clock, fixed_clock): (Arc<dyn Clock>, _, _) = match time {
            TimeSource::Redis => {
                let redis_clock = Arc::new(RedisClock::default());
                let clock: Arc<dyn Clock> = redis_clock.clone();
                (clock, Some(redis_clock), None)
            }
            TimeSource::Clock(clock) => (Arc::clone(&clock), None, Some(clock)),
        };
        let prefix = &options.key_prefix;
        let mirror = MemoryStore::start_with_clock(mirror_limits(&limits), Arc::clone(&clock), PURGE_INTERVAL);
        let shared = Arc::new(Shared {
            mirror: ArcSwap::from_pointee(mirror),
            clock,
            redis_clock,
            fixed_clock,
            limits,
            client,
            writes,
            keys: Keys {
                series: format!("{prefix}:series"),
                deadlines: format!("{prefix}:deadlines"),
                stream: format!("{prefix}:changes"),
            },
            applied: watch::Sender::new(Position::default()),
            sync: Mutex::new(SyncState::default()),
            max_staleness: options.max_staleness,
            wait: (options.wait_replicas > 0).then_some((options.wait_replicas, options.wait_timeout)),
            figures: Figures::default(),
            block: BLOCK.min(options.max_staleness / 3).max(Duration::from_millis(10)),
            address: options.address.clone(),
        });
        let tail = AbortOnDropHandle::new(tokio::spawn(tail(Arc::clone(&shared))));
        let (queue, queued) = mpsc::unbounded_channel();
        let writer = AbortOnDropHandle::new(tokio::spawn(writer(Arc::clone(&shared), queued)));
        Ok(RedisStore { shared, queue, _tail: tail, _writer: writer, attached: Mutex::new(Vec::new()) })
    }

    /// Keeps `value` alive as long as the store: a test ties the Redis server it started to the store.
    pub fn attach(&self, value: impl Any + Send) {
        lock(&self.attached).push(Box::new(value));
    }

    /// Waits until the copy has been in sync with Redis at least once since `since` (polls; no deadline).
    pub async fn wait_synced_since(&self, since: Instant) {
        loop {
            if lock(&self.shared.sync).synced_at.is_some_and(|at| at >= since) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Removes what has expired from the copy by its clock now (the copy's expiry task does it every few seconds).
    pub fn purge_expired(&self) -> usize {
        self.shared.mirror.load_full().purge_expired()
    }

    /// Queues the write for the writer task, which sends it with the writes queued meanwhile in one script run, and
    /// answers once Redis stored it and this replica's copy applied it (see [`writer`]).
    async fn put(&self, field: String, write: String) -> Result<(), StoreError> {
        let (answer, answered) = oneshot::channel();
        let write = Queued { field, write, apply_by: self.shared.apply_by(), answer };
        self.queue.send(write).map_err(|_| self.shared.stopped())?;
        answered.await.unwrap_or_else(|_| Err(self.shared.stopped()))
    }

    /// Removes the fields; returns (live ones removed, all removed).
    async fn delete(&self, fields: Vec<String>) -> Result<(usize, usize), StoreError> {
        let shared = &self.shared;
        let (live, removed, id): (usize, usize, String) = if shared.wait.is_some() {
            let mut args = vec![shared.now_arg(), STREAM_LENGTH.to_string(), shared.apply_by_arg()];
            args.extend(fields);
            let (mut replies, replicas) = shared.run(Operation::Delete, &DELETE, DELETE_LUA, &[args], false).await?;
            let reply = replies.pop().ok_or_else(|| shared.bad_reply("no reply"))?;
            let outcome: (usize, usize, String) =
                redis::from_redis_value(reply).map_err(|e| shared.bad_reply(&e.to_string()))?;
            // Nothing removed, nothing to replicate.
            if outcome.1 > 0 {
                replicas?;
            }
            outcome
        } else {
            let mut invocation = DELETE.prepare_invoke();
            invocation.key(&shared.keys.series).key(&shared.keys.deadlines).key(&shared.keys.stream);
            invocation.arg(shared.now_arg()).arg(STREAM_LENGTH).arg(shared.apply_by_arg());
            for field in fields {
                invocation.arg(field);
            }
            let mut conn = shared.writes.clone();
            let started = Instant::now();
            let reply = invocation.invoke_async(&mut conn).await;
            shared.round_trip(Operation::Delete, started);
            reply.map_err(|e| shared.unavailable(&e))?
        };
        if removed > 0 {
            let position = Position::parse(&id).ok_or_else(|| shared.bad_reply(&id))?;
            shared.confirm(position).await?;
        }
        Ok((live, removed))
    }

    /// Checks a custom write before it is sent: names, labels, and this replica's byte budget. Returns its field and
    /// [`write_arg`].
    fn check_custom(&self, id: &CustomSeriesId<'_>, write: &SampleWrite) -> Result<(String, String), StoreError> {
        check_custom_id(id)?;
        check_labels(&write.labels, &self.shared.limits)?;
        let mirror = self.shared.mirror.load_full();
        self.shared.check_bytes(mirror.custom_growth(*id, write), mirror.bytes_used())?;
        let payload = PayloadOut { v: &write.value, l: pairs(&write.labels), k: write.kind };
        Ok((custom_field(id)?, write_arg(write.ttl, &payload)?))
    }

    /// [`Self::check_custom`] for an external write; its labels go into the field, not the payload.
    fn check_external(
        &self,
        namespace: &str,
        metric: &str,
        write: &SampleWrite,
    ) -> Result<(String, String), StoreError> {
        check_external_id(namespace, metric)?;
        check_labels(&write.labels, &self.shared.limits)?;
        let mirror = self.shared.mirror.load_full();
        let growth = mirror.external_growth(namespace, metric, write);
        self.shared.check_bytes(growth, mirror.bytes_used())?;
        let payload = PayloadOut { v: &write.value, l: Vec::new(), k: write.kind };
        Ok((external_field(namespace, metric, &write.labels)?, write_arg(write.ttl, &payload)?))
    }
}

impl Shared {
    /// Runs `script` once per entry of `calls` (its ARGV; KEYS are the store's) as one pipeline on the write
    /// connection, then `WAIT` when --store-wait-replicas is set: one round trip, and the `WAIT` covers exactly
    /// these writes (it waits for what this connection wrote before it). Loads the script first when `load`, else
    /// only when Redis answers that it lacks it. Returns each call's reply, and whether enough replicas confirmed.
    async fn run(
        &self,
        operation: Operation,
        script: &Script,
        text: &str,
        calls: &[Vec<String>],
        load: bool,
    ) -> Result<(Vec<Value>, Result<(), StoreError>), StoreError> {
        let build = |load: bool| {
            let mut pipe = redis::pipe();
            if load {
                pipe.cmd("SCRIPT").arg("LOAD").arg(text).ignore();
            }
            for args in calls {
                pipe.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(3)
                    .arg(&self.keys.series)
                    .arg(&self.keys.deadlines)
                    .arg(&self.keys.stream)
                    .arg(args);
            }
            if let Some((replicas, timeout)) = self.wait {
                pipe.cmd("WAIT").arg(replicas).arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
            }
            pipe
        };
        let mut conn = self.writes.clone();
        let no_script = redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);
        let started = Instant::now();
        let replies = match build(load).query_async(&mut conn).await {
            Err(error) if !load && error.kind() == no_script => build(true).query_async(&mut conn).await,
            result => result,
        };
        self.round_trip(operation, started);
        let mut replies: Vec<Value> = replies.map_err(|e| self.unavailable(&e))?;
        let Some((wanted, timeout)) = self.wait else {
            if replies.len() != calls.len() {
                return Err(self.bad_reply(&format!("{} replies to {} scripts", replies.len(), calls.len())));
            }
            return Ok((replies, Ok(())));
        };
        let confirmed: i64 = match replies.pop() {
            Some(reply) => redis::from_redis_value(reply).map_err(|e| self.bad_reply(&e.to_string()))?,
            None => return Err(self.bad_reply("no reply to WAIT")),
        };
        if replies.len() != calls.len() {
            return Err(self.bad_reply(&format!("{} replies to {} scripts", replies.len(), calls.len())));
        }
        let enough = if confirmed >= i64::from(wanted) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "Redis store {}: {confirmed} of {wanted} Redis replicas confirmed the write within {timeout:?} \
                 (--store-wait-replicas); the primary has it, so it may still be stored",
                self.address
            )))
        };
        Ok((replies, enough))
    }

    fn round_trip(&self, operation: Operation, started: Instant) {
        self.figures.round_trips[operation as usize].observe(started.elapsed().as_secs_f64());
    }

    /// The figures of the copy and of its following, for `/metrics`.
    fn stats(&self) -> Option<StoreStats> {
        let expired_before = lock(&self.figures.expired_before);
        let mut stats = self.mirror.load_full().stats()?;
        stats.expired_series = stats.expired_series.saturating_add(*expired_before);
        drop(expired_before);
        let figures = &self.figures;
        stats.replication = Some(ReplicationStats {
            lag_seconds: lock(&self.sync).synced_at.map(|at| at.elapsed().as_secs_f64()),
            resyncs: RESYNCS.iter().zip(&figures.resyncs).map(|(r, n)| (*r, n.load(Ordering::Relaxed))).collect(),
            round_trips: OPERATIONS.iter().zip(&figures.round_trips).map(|(o, l)| (*o, l.snapshot())).collect(),
            apply_delay: figures.apply_delay.snapshot(),
        });
        Some(stats)
    }

    fn unavailable(&self, error: &RedisError) -> StoreError {
        StoreError::Unavailable(format!("Redis store {}: {error}", self.address))
    }

    fn bad_reply(&self, reply: &str) -> StoreError {
        StoreError::Unavailable(format!("Redis store {}: unexpected reply {reply:?}", self.address))
    }

    /// The scripts' `now`: empty for Redis `TIME`.
    fn now_arg(&self) -> String {
        self.fixed_clock.as_ref().map(|clock| clock.now_millis().to_string()).unwrap_or_default()
    }

    /// The scripts' last moment to apply a write sent now, by the mirror's estimate of Redis time (see
    /// [`APPLY_WINDOW`]); empty, so no limit, until that estimate has been measured once.
    fn apply_by_arg(&self) -> String {
        self.apply_by().map(|at| at.to_string()).unwrap_or_default()
    }

    /// [`Self::apply_by_arg`] as a number; `None` for no limit.
    fn apply_by(&self) -> Option<i64> {
        if self.redis_clock.as_ref().is_some_and(|clock| !clock.measured.load(Ordering::Relaxed)) {
            return None;
        }
        let window = i64::try_from(APPLY_WINDOW.as_millis()).unwrap_or(i64::MAX);
        Some(self.clock.now_millis().saturating_add(window))
    }

    /// The ARGV of one [`PUT_LUA`] run carrying `writes` (field, [`write_arg`]), none of which may be applied after
    /// `apply_by`.
    fn put_args(&self, apply_by: Option<i64>, writes: impl ExactSizeIterator<Item = [String; 2]>) -> Vec<String> {
        let mut args = Vec::with_capacity(4 + 2 * writes.len());
        args.extend([
            self.now_arg(),
            apply_by.map(|at| at.to_string()).unwrap_or_default(),
            self.limits.max_series.to_string(),
            STREAM_LENGTH.to_string(),
        ]);
        args.extend(writes.flatten());
        args
    }

    /// The outcome of each of the `count` writes of one [`PUT_LUA`] run: the position of the run's stream entry, or
    /// the series limit.
    fn put_outcomes(&self, reply: Value, count: usize) -> Result<Vec<Result<Position, StoreError>>, StoreError> {
        let bad = || self.bad_reply(&format!("{reply:?}"));
        let Value::Array(parts) = &reply else { return Err(bad()) };
        let [Value::BulkString(id), Value::BulkString(stored)] = parts.as_slice() else { return Err(bad()) };
        if stored.len() != count {
            return Err(self.bad_reply(&format!("{} outcomes of {count} writes", stored.len())));
        }
        // No id when nothing was stored.
        let position = if stored.contains(&b'1') { Some(position_of(id).ok_or_else(bad)?) } else { None };
        stored
            .iter()
            .map(|outcome| match (outcome, position) {
                (b'1', Some(position)) => Ok(Ok(position)),
                (b'0', _) => Ok(Err(StoreError::SeriesLimit { limit: self.limits.max_series })),
                _ => Err(bad()),
            })
            .collect()
    }

    /// A write's answer when the writer task is gone (the store is being dropped).
    fn stopped(&self) -> StoreError {
        StoreError::Unavailable(format!("Redis store {}: the store is shutting down", self.address))
    }

    /// Sends one run of [`PUT_LUA`] with the queued writes, then answers each: its own outcome, the replicas' `WAIT`,
    /// and the copy's confirmation. `slot` is given back once Redis answered, before the copy confirms.
    async fn write_batch(&self, batch: Vec<Queued>, slot: OwnedSemaphorePermit) {
        // The earliest limit of the run's writes: none of them may apply after its writer could have had a 503.
        let apply_by = batch.iter().filter_map(|write| write.apply_by).min();
        let mut answers = Vec::with_capacity(batch.len());
        let args = self.put_args(
            apply_by,
            batch.into_iter().map(|write| {
                answers.push(write.answer);
                [write.field, write.write]
            }),
        );
        let sent = self.run(Operation::Write, &PUT, PUT_LUA, &[args], false).await;
        drop(slot);
        let outcomes = sent.and_then(|(mut replies, replicas)| {
            let reply = replies.pop().ok_or_else(|| self.bad_reply("no reply"))?;
            let mut outcomes = self.put_outcomes(reply, answers.len())?;
            if let Err(error) = replicas {
                for outcome in outcomes.iter_mut().filter(|outcome| outcome.is_ok()) {
                    *outcome = Err(error.clone());
                }
            }
            Ok(outcomes)
        });
        let mut outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(error) => {
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
                return;
            }
        };
        let last = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()).max().copied();
        if let Some(last) = last
            && let Err(error) = self.confirm(last).await
        {
            for outcome in outcomes.iter_mut().filter(|outcome| outcome.is_ok()) {
                *outcome = Err(error.clone());
            }
        }
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            // A writer that went away (its request was dropped) needs no answer.
            let _ = answer.send(outcome.map(drop));
        }
    }

    fn check_bytes(&self, needed: usize, used: usize) -> Result<(), StoreError> {
        let limit = self.limits.max_store_bytes;
        if needed > 0 && used.checked_add(needed).is_none_or(|total| total > limit) {
            return Err(StoreError::StoreBytesLimit { used, needed, limit });
        }
        Ok(())
    }

    /// Waits until the mirror applied the stream entry at `position`: the writer reads its own write.
    async fn confirm(&self, position: Position) -> Result<(), StoreError> {
        let mut applied = self.applied.subscribe();
        match tokio::time::timeout(CONFIRM_TIMEOUT, applied.wait_for(|applied| *applied >= position)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StoreError::Unavailable(format!(
                "Redis store {}: the write was stored but this replica's copy did not apply it within {CONFIRM_TIMEOUT:?}",
                self.address
            ))),
        }
    }

    fn synced(&self) {
        let mut sync = lock(&self.sync);
        sync.synced_at = Some(Instant::now());
        sync.error = None;
    }

    fn failed(&self, error: String) {
        let mut sync = lock(&self.sync);
        // Logged once per cause, not on every retry of an outage.
        if sync.error.as_ref() != Some(&error) {
            tracing::warn!(store = %self.address, %error, "cannot follow the Redis store");
        }
        sync.error = Some(error);
    }

    /// Measures the offset of Redis time from the local clock.
    async fn measure_time(&self, conn: &mut (impl redis::aio::ConnectionLike + Send)) -> Result<(), RedisError> {
        let Some(redis_clock) = &self.redis_clock else {
            return Ok(());
        };
        let before = SystemClock.now_millis();
        let started = Instant::now();
        let answer = redis::cmd("TIME").query_async(conn).await;
        self.round_trip(Operation::Time, started);
        let (secs, micros): (i64, i64) = answer?;
        let after = SystemClock.now_millis();
        let redis_now = secs.saturating_mul(1000).saturating_add(micros / 1000);
        redis_clock.offset.store(redis_now - before / 2 - after / 2, Ordering::Relaxed);
        redis_clock.measured.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Loads the whole hash into a new mirror with the stream position it matches, and swaps it in.
    async fn reload(&self, conn: &mut MultiplexedConnection, why: Resync) -> Result<Position, RedisError> {
        self.measure_time(conn).await?;
        let started = Instant::now();
        let loaded: Result<(HashMap<String, String>, StreamRangeReply), RedisError> = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(&self.keys.series)
            .cmd("XREVRANGE")
            .arg(&self.keys.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await;
        self.round_trip(Operation::Load, started);
        let (records, last) = loaded?;
        let position = last.ids.first().and_then(|entry| Position::parse(&entry.id)).unwrap_or_default();
        let mirror =
            MemoryStore::start_with_clock(mirror_limits(&self.limits), Arc::clone(&self.clock), PURGE_INTERVAL);
        for (field, record) in &records {
            if let Err(error) = put_record(&mirror, field, record) {
                tracing::warn!(store = %self.address, %error, "skipped a stored series");
            }
        }
        tracing::info!(store = %self.address, series = records.len(), %position, ?why, "loaded the store's copy");
        let mut expired_before = lock(&self.figures.expired_before);
        let replaced = self.mirror.swap(Arc::new(mirror));
        *expired_before = expired_before.saturating_add(replaced.stats().map_or(0, |stats| stats.expired_series));
        drop(expired_before);
        self.figures.resyncs[why as usize].fetch_add(1, Ordering::Relaxed);
        self.applied.send_replace(position);
        // A consistent snapshot: the copy held everything Redis did at that moment.
        self.synced();
        Ok(position)
    }

    /// Applies what the stream holds after `position`; `None` when entries after it were trimmed away (an entry
    /// names another entry before it than the last one applied).
    async fn follow(
        &self,
        conn: &mut MultiplexedConnection,
        position: Position,
    ) -> Result<Option<Position>, RedisError> {
        let read: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(self.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(position.to_string())
            .query_async(conn)
            .await?;
        // Read from the reply as it came, without a map or a string per entry (docs/architecture.md §10, "The copy").
        let entries = stream_entries(&read).map_err(|detail| {
            RedisError::from((redis::ErrorKind::UnexpectedReturnType, "unexpected XREAD reply", detail))
        })?;
        let count = entries.len();
        let mut last = position;
        let mirror = self.mirror.load_full();
        for (id, fields) in entries {
            let entry = Entry::of(fields);
            if entry.before.and_then(position_of) != Some(last) {
                tracing::warn!(store = %self.address, position = %last, id = %String::from_utf8_lossy(id), "entries after this replica's position were trimmed away");
                return Ok(None);
            }
            if let Err(error) = entry.apply(&mirror).await {
                tracing::warn!(store = %self.address, id = %String::from_utf8_lossy(id), %error, "skipped a stream entry");
            }
            if let Some(id) = position_of(id) {
                // The id's milliseconds are Redis's time of the XADD; the copy's clock estimates Redis's time.
                let delay_millis = self.clock.now_millis().saturating_sub(i64::try_from(id.0).unwrap_or(i64::MAX));
                // One observation per change, as when every change had an entry of its own.
                let delay = delay_millis.max(0) as f64 / 1000.0;
                for _ in 0..entry.changes() {
                    self.figures.apply_delay.observe(delay);
                }
                last = last.max(id);
            }
        }
        if count > 0 {
            self.applied.send_replace(last);
        }
        if count < READ_COUNT {
            self.synced();
        }
        Ok(Some(last))
    }
}

/// A series field.
fn parse_field(text: &str) -> Result<Field<'_>, String> {
    serde_json::from_str(text).map_err(|e| format!("field {text:?}: {e}"))
}

/// A stream entry as the reply holds it: its id and its field-value list.
type RawEntry<'a> = (&'a [u8], &'a [Value]);

/// The entries of an `XREAD` reply on one stream; none when it timed out.
fn stream_entries(reply: &Value) -> Result<Vec<RawEntry<'_>>, String> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        // RESP2: [[stream, entries]]; RESP3: {stream: entries}.
        Value::Array(streams) => streams
            .iter()
            .map(|stream| match stream {
                Value::Array(pair) if pair.len() == 2 => Ok(&pair[1]),
                other => Err(format!("stream {other:?}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Map(streams) => streams.iter().map(|(_, entries)| Ok(entries)).collect::<Result<Vec<_>, String>>()?,
        other => return Err(format!("{other:?}")),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else { return Err(format!("entries {entries:?}")) };
        out.reserve(entries.len());
        for entry in entries {
            match entry {
                Value::Array(parts) => match parts.as_slice() {
                    [Value::BulkString(id), Value::Array(fields)] => out.push((id.as_slice(), fields.as_slice())),
                    other => return Err(format!("entry {other:?}")),
                },
                other => return Err(format!("entry {other:?}")),
            }
        }
    }
    Ok(out)
}

/// One stream entry's fields, in either shape: a run of writes, `B` (the entry before it) then `<field> <record>`
/// pairs in order ([`PUT_LUA`]); or a single change, `b` (the entry before it) then `p` and `r` (a put) or `d` (a
/// delete), as [`DELETE_LUA`] writes and as writes were stored before runs went into one entry (a rolling upgrade
/// leaves such entries in the stream). A single change's fields it does not know are left alone.
#[derive(Default)]
struct Entry<'a> {
    before: Option<&'a [u8]>,
    /// A run's `<field> <record>` pairs.
    run: Option<&'a [Value]>,
    put: Option<&'a [u8]>,
    record: Option<&'a [u8]>,
    delete: Option<&'a [u8]>,
}

impl<'a> Entry<'a> {
    fn of(fields: &'a [Value]) -> Entry<'a> {
        let mut entry = Entry::default();
        if let [Value::BulkString(name), Value::BulkString(before), run @ ..] = fields
            && name.as_slice() == b"B"
        {
            entry.before = Some(before.as_slice());
            entry.run = Some(run);
            return entry;
        }
        for pair in fields.chunks_exact(2) {
            let (Value::BulkString(name), Value::BulkString(value)) = (&pair[0], &pair[1]) else { continue };
            let slot = match name.as_slice() {
                b"b" => &mut entry.before,
                b"p" => &mut entry.put,
                b"r" => &mut entry.record,
                b"d" => &mut entry.delete,
                _ => continue,
            };
            *slot = Some(value.as_slice());
        }
        entry
    }

    /// How many changes the entry carries.
    fn changes(&self) -> usize {
        self.run.map_or(1, |run| run.len() / 2)
    }

    /// Applies the entry to the mirror: every write of a run, in order, even when one of them fails.
    async fn apply(&self, mirror: &MemoryStore) -> Result<(), String> {
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"));
        if let Some(run) = self.run {
            let mut failed = Vec::new();
            if run.len() % 2 != 0 {
                failed.push("a field without its record".to_string());
            }
            for pair in run.chunks_exact(2) {
                let applied = match (&pair[0], &pair[1]) {
                    (Value::BulkString(field), Value::BulkString(record)) => {
                        text(field).and_then(|field| put_record(mirror, field, text(record)?))
                    }
                    other => Err(format!("not a field and its record: {other:?}")),
                };
                if let Err(error) = applied {
                    failed.push(error);
                }
            }
            return if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) };
        }
        if let Some(field) = self.put {
            let record = self.record.ok_or("a put without its record")?;
            return put_record(mirror, text(field)?, text(record)?);
        }
        let field = text(self.delete.ok_or("neither a put nor a delete")?)?;
        match parse_field(field)? {
            Field::Custom { resource, namespace, name, metric } => {
                let id =
                    CustomSeriesId { resource: &resource.0, namespace: &namespace.0, name: &name.0, metric: &metric.0 };
                mirror.delete_custom(id).await.map_err(|e| e.to_string())?;
            }
            Field::External { namespace, metric, labels } => {
                mirror.delete_external(&namespace.0, &metric.0, &labels_of(labels)).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// Stores one record (`timestamp,deadline,payload`) of a field in the mirror.
fn put_record(mirror: &MemoryStore, field: &str, record: &str) -> Result<(), String> {
    let mut parts = record.splitn(3, ',');
    let (Some(timestamp), Some(deadline), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("record {record:?} is not timestamp,deadline,payload"));
    };
    let timestamp_millis: i64 = timestamp.parse().map_err(|_| format!("bad timestamp in {record:?}"))?;
    let deadline: i64 = deadline.parse().map_err(|_| format!("bad deadline in {record:?}"))?;
    let payload: PayloadIn = serde_json::from_str(payload).map_err(|e| format!("payload {payload:?}: {e}"))?;
    let expires_at_millis = if deadline < 0 { i64::MAX } else { deadline };
    let sample = |labels| Sample { value: payload.v, timestamp_millis, expires_at_millis, labels, kind: payload.k };
    let result = match parse_field(field)? {
        Field::Custom { resource, namespace, name, metric } => {
            let id =
                CustomSeriesId { resource: &resource.0, namespace: &namespace.0, name: &name.0, metric: &metric.0 };
            mirror.put_custom_sample(id, sample(labels_from(payload.l)))
        }
        Field::External { namespace, metric, labels } => {
            mirror.put_external_sample(&namespace.0, &metric.0, sample(labels_of(labels)))
        }
    };
    result.map_err(|e| e.to_string())
}

/// The writer task: sends the single writes queued meanwhile as one run of [`PUT_LUA`] (up to [`MAX_BATCH`]), with
/// at most [`MAX_IN_FLIGHT`] runs waiting for Redis at once. A lone write goes at once; under load the writes that
/// arrive while runs are in flight go together in the next, so that Redis and this process pay the script's fixed
/// cost, the round trip and the reply once for many writes (docs/architecture.md §10, "Writes"). Dropping the task
/// (with the store) drops the runs in flight, whose writers get [`Shared::stopped`].
async fn writer(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut runs = JoinSet::new();
    // The size of the last run sent.
    let mut last_run = 0;
    loop {
        while runs.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Requests already readable get to queue their writes first, so that they go in this run, not the next: a
        // yield costs nothing when nothing else is ready. Under load, up to GATHER_YIELDS until the run is as large as
        // the last one (docs/architecture.md §10, "Writes").
        for _ in 0..GATHER_YIELDS {
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH
                && let Ok(write) = queue.try_recv()
            {
                batch.push(write);
            }
            if batch.len() >= last_run.clamp(1, MAX_BATCH) {
                break;
            }
        }
        last_run = batch.len();
        let shared = Arc::clone(&shared);
        runs.spawn(async move { shared.write_batch(batch, slot).await });
    }
}

/// The tail: follows the stream into the mirror for as long as the store lives, reconnecting and reloading as needed.
async fn tail(shared: Arc<Shared>) {
    let mut position = None;
    let mut run_id = None;
    let mut why = Resync::Start;
    loop {
        let error = follow_session(&shared, &mut position, &mut run_id, &mut why).await;
        shared.failed(error.to_string());
        tokio::time::sleep(RETRY).await;
    }
}

/// One connection's worth of following; returns why it ended.
async fn follow_session(
    shared: &Shared,
    position: &mut Option<Position>,
    run_id: &mut Option<String>,
    why: &mut Resync,
) -> RedisError {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(TAIL_TIMEOUT));
    let mut conn = match shared.client.get_multiplexed_async_connection_with_config(&config).await {
        Ok(conn) => conn,
        Err(error) => return error,
    };
    let info: String = match redis::cmd("INFO").arg("server").query_async(&mut conn).await {
        Ok(info) => info,
        Err(error) => return error,
    };
    let server = info.lines().find_map(|line| line.strip_prefix("run_id:")).map(|id| id.trim().to_string());
    if server != *run_id {
        // Another server (or the same one restarted): stream ids may have gone back, so start from its contents.
        if run_id.is_some() {
            *why = Resync::ServerChanged;
        }
        *position = None;
        *run_id = server;
    }
    loop {
        let from = match *position {
            Some(from) => from,
            None => match shared.reload(&mut conn, *why).await {
                Ok(from) => from,
                Err(error) => return error,
            },
        };
        match shared.follow(&mut conn, from).await {
            Ok(next) => {
                if next.is_none() {
                    *why = Resync::Trimmed;
                }
                *position = next;
            }
            Err(error) => return error,
        }
    }
}

#[async_trait]
impl MetricStore for RedisStore {
    async fn put_custom(&self, id: CustomSeriesId<'_>, write: SampleWrite) -> Result<(), StoreError> {
        let (field, arg) = self.check_custom(&id, &write)?;
        self.put(field, arg).await
    }

    async fn delete_custom(&self, id: CustomSeriesId<'_>) -> Result<bool, StoreError> {
        check_custom_id(&id)?;
        Ok(self.delete(vec![custom_field(&id)?]).await?.0 > 0)
    }

    async fn get_custom(&self, id: CustomSeriesId<'_>) -> Result<Option<Sample>, StoreError> {
        self.shared.mirror.load_full().get_custom(id).await
    }

    async fn list_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        self.shared.mirror.load_full().list_custom_objects(resource, namespace, metric).await
    }

    async fn get_custom_objects(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
        names: &[String],
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        self.shared.mirror.load_full().get_custom_objects(resource, namespace, metric, names).await
    }

    async fn list_object_metrics(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<(String, Sample)>, StoreError> {
        self.shared.mirror.load_full().list_object_metrics(resource, namespace, name).await
    }

    async fn list_custom_metrics(&self) -> Result<Vec<CustomMetricDescriptor>, StoreError> {
        self.shared.mirror.load_full().list_custom_metrics().await
    }

    async fn custom_objects(&self, resource: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.shared.mirror.load_full().custom_objects(resource).await
    }

    /// Removes the series of the object's metrics that this replica's copy knows of (live or expired): a metric
    /// written through another replica that this copy has not applied yet is left for the next sweep.
    async fn delete_object(&self, resource: &str, namespace: &str, name: &str) -> Result<usize, StoreError> {
        let metrics = self.shared.mirror.load_full().metrics_of(resource, namespace);
        let mut fields = Vec::with_capacity(metrics.len());
        for metric in &metrics {
            fields.push(custom_field(&CustomSeriesId { resource, namespace, name, metric })?);
        }
        if fields.is_empty() {
            return Ok(0);
        }
        Ok(self.delete(fields).await?.1)
    }

    async fn put_external(&self, namespace: &str, metric: &str, write: SampleWrite) -> Result<(), StoreError> {
        let (field, arg) = self.check_external(namespace, metric, &write)?;
        self.put(field, arg).await
    }

    async fn delete_external(&self, namespace: &str, metric: &str, labels: &SeriesLabels) -> Result<bool, StoreError> {
        check_external_id(namespace, metric)?;
        Ok(self.delete(vec![external_field(namespace, metric, labels)?]).await?.0 > 0)
    }

    async fn list_external(&self, namespace: &str, metric: &str) -> Result<Vec<Sample>, StoreError> {
        self.shared.mirror.load_full().list_external(namespace, metric).await
    }

    async fn list_external_metrics(&self) -> Result<Vec<String>, StoreError> {
        self.shared.mirror.load_full().list_external_metrics().await
    }

    /// From this replica's copy, like every read.
    async fn series_page(
        &self,
        filter: &super::SeriesFilter,
        after: Option<&super::SeriesPosition>,
        limit: usize,
    ) -> Result<Vec<super::StoredSeries>, StoreError> {
        self.shared.mirror.load_full().series_page(filter, after, limit).await
    }

    async fn list_external_counters(&self) -> Result<Vec<String>, StoreError> {
        self.shared.mirror.load_full().list_external_counters().await
    }

    async fn recent_custom(
        &self,
        resource: &str,
        namespace: &str,
        metric: &str,
        names: Option<&[String]>,
    ) -> Result<Vec<(String, SeriesLabels, Recent)>, StoreError> {
        self.shared.mirror.load_full().recent_custom(resource, namespace, metric, names).await
    }

    async fn recent_external(&self, namespace: &str, metric: &str) -> Result<Vec<(SeriesLabels, Recent)>, StoreError> {
        self.shared.mirror.load_full().recent_external(namespace, metric).await
    }

    /// The batch goes to Redis as one pipeline: one round trip, its writes in order in runs of `PUT_LUA` of up to
    /// `MAX_BATCH` writes, each write with its own outcome. The samples replaced are this replica's copy's when the
    /// batch is sent (another replica's write in flight is not seen).
    async fn put_many(&self, writes: Vec<Put<'_>>) -> Vec<Result<Option<Sample>, StoreError>> {
        let shared = &self.shared;
        let mirror = shared.mirror.load_full();
        let mut replaced: HashMap<String, Option<Sample>> = HashMap::new();
        let mut results: Vec<Result<Option<Sample>, StoreError>> = Vec::with_capacity(writes.len());
        let mut queued = Vec::new();
        let mut sent = Vec::new();
        for (i, put) in writes.into_iter().enumerate() {
            let checked = match &put {
                Put::Custom(id, write) => self.check_custom(id, write),
                Put::External { namespace, metric, write } => self.check_external(namespace, metric, write),
            };
            match checked {
                Ok((field, arg)) => {
                    // The batch's own earlier write to the series is what this one replaces.
                    let previous = match replaced.get(&field) {
                        Some(previous) => previous.clone(),
                        None => match &put {
                            Put::Custom(id, _) => mirror.get_custom(*id).await.unwrap_or_default(),
                            Put::External { namespace, metric, write } => mirror
                                .list_external(namespace, metric)
                                .await
                                .unwrap_or_default()
                                .into_iter()
                                .find(|sample| sample.labels == write.labels),
                        },
                    };
                    let write = match &put {
                        Put::Custom(_, write) | Put::External { write, .. } => write.clone(),
                    };
                    replaced.insert(field.clone(), Some(write.at(shared.clock.now_millis())));
                    queued.push([field, arg]);
                    sent.push(i);
                    results.push(Ok(previous));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        if sent.is_empty() {
            return results;
        }
        let apply_by = shared.apply_by();
        let mut queued = queued.into_iter();
        let mut calls = Vec::new();
        while queued.len() > 0 {
            calls.push(shared.put_args(apply_by, queued.by_ref().take(MAX_BATCH).collect::<Vec<_>>().into_iter()));
        }
        let (replies, replicas) = match shared.run(Operation::Batch, &PUT, PUT_LUA, &calls, true).await {
            Ok(replies) => replies,
            Err(error) => {
                for i in sent {
                    results[i] = Err(error.clone());
                }
                return results;
            }
        };
        let mut last = None;
        for (chunk, reply) in sent.chunks(MAX_BATCH).zip(replies) {
            let outcomes = match shared.put_outcomes(reply, chunk.len()) {
                Ok(outcomes) => outcomes,
                Err(error) => vec![Err(error); chunk.len()],
            };
            for (&i, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    Ok(position) => last = last.max(Some(position)),
                    Err(error) => results[i] = Err(error),
                }
            }
        }
        if last.is_some()
            && let Err(error) = replicas
        {
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(error.clone());
            }
            return results;
        }
        if let Some(position) = last
            && let Err(error) = shared.confirm(position).await
        {
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(error.clone());
            }
        }
        results
    }

    /// Healthy while the copy was in sync with Redis within --store-max-staleness; also refreshes the estimate of
    /// Redis time.
    async fn health(&self) -> Result<(), StoreError> {
        let shared = &self.shared;
        let mut conn = shared.writes.clone();
        let measured = shared.measure_time(&mut conn).await;
        let sync = lock(&shared.sync);
        let fresh = sync.synced_at.is_some_and(|at| at.elapsed() <= shared.max_staleness);
        if fresh {
            return Ok(());
        }
        let cause = match (&sync.error, measured) {
            (Some(error), _) => error.clone(),
            (None, Err(error)) => error.to_string(),
            (None, Ok(())) => "still loading".to_string(),
        };
        let age = match sync.synced_at {
            Some(at) => format!("last in sync {:?} ago", at.elapsed()),
            None => "never in sync yet".to_string(),
        };
        Err(StoreError::Unavailable(format!(
            "Redis store {}: this replica's copy is stale ({age}, more than --store-max-staleness={:?}): {cause}",
            shared.address, shared.max_staleness
        )))
    }

    fn series_count(&self) -> usize {
        self.shared.mirror.load_full().series_count()
    }

    fn bytes_used(&self) -> usize {
        self.shared.mirror.load_full().bytes_used()
    }

    /// The copy's series and expiries, and how it follows Redis.
    fn stats(&self) -> Option<StoreStats> {
        self.shared.stats()
    }
}

/// The conformance suite's subject: a store on a `redis-server` of its own, on the clock the suite moves (the scripts
/// take their `now` from it instead of `TIME`, docs/architecture.md §10).
#[cfg(any(test, feature = "test-support"))]
#[async_trait]
impl super::conformance::Subject for RedisStore {
    async fn create(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        let server = super::redis_testing::RedisServer::start();
        let since = Instant::now();
        let options = server.options(Duration::from_secs(30));
        let store = RedisStore::connect(&options, limits, TimeSource::Clock(clock)).expect("the options are valid");
        store.attach(server);
        store.wait_synced_since(since).await;
        store
    }

    async fn purge(&self) {
        self.purge_expired();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::eventually;

    crate::store_conformance!(RedisStore);

    #[test]
    fn stream_positions_order_by_time_then_sequence() {
        let parse = |text| Position::parse(text).unwrap();
        assert!(parse("5-1") < parse("5-2"));
        assert!(parse("5-9") < parse("10-0"), "numerically, not as text");
        assert_eq!(parse("1700000000000-3").to_string(), "1700000000000-3");
        assert_eq!(Position::parse("5"), None);
        assert_eq!(Position::parse("a-1"), None);
    }

    /// A store on `server`, on `clock`, once its copy is loaded.
    async fn store_on(
        server: &super::super::redis_testing::RedisServer,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> RedisStore {
        let since = Instant::now();
        let store = RedisStore::connect(&server.options(Duration::from_secs(30)), limits, TimeSource::Clock(clock))
            .expect("the options are valid");
        store.wait_synced_since(since).await;
        store
    }

    /// Calls of a Redis command so far (`INFO commandstats`).
    async fn calls(server: &super::super::redis_testing::RedisServer, command: &str) -> u64 {
        let client = Client::open(server.address()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }

    fn pod(name: &str) -> CustomSeriesId<'_> {
        CustomSeriesId { resource: "pods", namespace: "ns", name, metric: "m" }
    }

    fn write(value: &str, ttl: Option<Duration>) -> SampleWrite {
        SampleWrite {
            value: Quantity::parse(value).unwrap(),
            labels: SeriesLabels::empty(),
            ttl,
            kind: SeriesKind::Gauge,
        }
    }

    #[tokio::test]
    async fn concurrent_writes_go_in_one_script_run_each_with_its_own_outcome() {
        let server = super::super::redis_testing::RedisServer::start();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let limits = Limits { max_series: 10, ..Limits::default() };
        let store = store_on(&server, limits, clock.clone()).await;
        // One PUT_LUA run reads the stream's last id once (XREVRANGE), whatever the number of writes it carries.
        let runs_before = calls(&server, "xrevrange").await;
        let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        let results =
            futures_util::future::join_all(names.iter().map(|name| store.put_custom(pod(name), write("1", None))))
                .await;
        assert_eq!(calls(&server, "xrevrange").await - runs_before, 1, "40 concurrent writes, one run");
        let accepted: Vec<&String> = names.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(n, _)| n).collect();
        assert_eq!(accepted.len(), 10, "{results:?}");
        assert!(
            results.iter().all(|r| matches!(r, Ok(()) | Err(StoreError::SeriesLimit { limit: 10 }))),
            "{results:?}"
        );
        for name in accepted {
            assert!(store.get_custom(pod(name)).await.unwrap().is_some(), "{name} acknowledged, so readable here");
        }
        // A later write to an accepted series goes through; a new one is still refused.
        assert_eq!(store.put_custom(pod("p0"), write("2", None)).await.is_ok(), results[0].is_ok());
        assert_eq!(store.series_count(), 10);
    }

    #[tokio::test]
    async fn under_load_a_run_gathers_writes_queued_over_several_yields() {
        let server = super::super::redis_testing::RedisServer::start();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let store = Arc::new(store_on(&server, Limits::default(), clock.clone()).await);
        let names: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
        // A run of six: the next gathers until it is as large.
        let results =
            futures_util::future::join_all(names.iter().map(|name| store.put_custom(pod(name), write("1", None))))
                .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let runs_before = calls(&server, "xrevrange").await;
        // Six writers whose writes arrive one yield after another, as requests read in turn do.
        let writers: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (store, name) = (Arc::clone(&store), name.clone());
                tokio::spawn(async move {
                    for _ in 0..i {
                        tokio::task::yield_now().await;
                    }
                    store.put_custom(pod(&name), write("2", None)).await
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        assert_eq!(calls(&server, "xrevrange").await - runs_before, 1, "six writes over five yields, one run");
    }

    #[tokio::test]
    async fn a_series_written_twice_in_one_run_keeps_the_deadline_of_its_last_write() {
        let server = super::super::redis_testing::RedisServer::start();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let store = store_on(&server, Limits::default(), clock.clone()).await;
        let ttl = Some(Duration::from_secs(5));
        let results = store
            .put_many(vec![
                Put::Custom(pod("kept"), write("1", ttl)),
                Put::Custom(pod("kept"), write("2", None)),
                Put::Custom(pod("gone"), write("3", None)),
                Put::Custom(pod("gone"), write("4", ttl)),
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        clock.advance(6_000);
        // A write sweeps what expired in Redis (by the deadlines' sorted set) before it applies.
        store.put_custom(pod("other"), write("5", None)).await.unwrap();
        store.purge_expired();
        assert_eq!(value_of(&store, "kept").await.as_deref(), Some("2"));
        assert_eq!(value_of(&store, "gone").await, None);
        // What Redis holds, as a replica that loads it in full sees it.
        let fresh = store_on(&server, Limits::default(), clock.clone()).await;
        assert_eq!(value_of(&fresh, "kept").await.as_deref(), Some("2"), "Redis kept it");
        assert_eq!(value_of(&fresh, "gone").await, None);
        assert_eq!(fresh.series_count(), 2, "`gone` was swept from the hash");
    }

    async fn value_of(store: &RedisStore, name: &str) -> Option<String> {
        store.get_custom(pod(name)).await.unwrap().map(|sample| sample.value.to_string())
    }

    #[tokio::test]
    async fn a_run_of_writes_goes_into_one_stream_entry_and_every_replica_applies_it_in_order() {
        let server = super::super::redis_testing::RedisServer::start();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let a = store_on(&server, Limits { max_series: 3, ..Limits::default() }, clock.clone()).await;
        let b = store_on(&server, Limits::default(), clock.clone()).await;
        let added = calls(&server, "xadd").await;
        let results = a
            .put_many(vec![
                Put::Custom(pod("x"), write("1", None)),
                Put::Custom(pod("y"), write("2", None)),
                Put::Custom(pod("x"), write("3", None)),
                Put::Custom(pod("w"), write("4", None)),
                Put::Custom(pod("over"), write("5", None)),
                Put::Custom(pod("x"), write("6", None)),
            ])
            .await;
        assert!(results[..4].iter().all(Result::is_ok) && results[5].is_ok(), "{results:?}");
        assert!(matches!(results[4], Err(StoreError::SeriesLimit { limit: 3 })), "{results:?}");
        assert_eq!(calls(&server, "xadd").await - added, 1, "one entry for the run's five stored writes");
        eventually("B applied the run", || async { value_of(&b, "w").await.is_some() }).await;
        assert_eq!(value_of(&b, "x").await.as_deref(), Some("6"), "x's writes applied in order");
        assert_eq!(value_of(&b, "y").await.as_deref(), Some("2"));
        assert_eq!(value_of(&b, "over").await, None);
        assert_eq!(b.series_count(), 3);
        // Concurrent single writes: one run, one entry too.
        let added = calls(&server, "xadd").await;
        let names = ["x", "y", "w"];
        let results =
            futures_util::future::join_all(names.iter().map(|name| a.put_custom(pod(name), write("7", None)))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(calls(&server, "xadd").await - added, 1);
        eventually("B applied the second run", || async {
            futures_util::future::join_all(names.iter().map(|name| value_of(&b, name)))
                .await
                .iter()
                .all(|value| value.as_deref() == Some("7"))
        })
        .await;
        // A run whose writes are all refused adds nothing to the stream.
        let added = calls(&server, "xadd").await;
        let refused = a.put_custom(pod("new"), write("1", None)).await;
        assert!(matches!(refused, Err(StoreError::SeriesLimit { limit: 3 })), "{refused:?}");
        assert_eq!(calls(&server, "xadd").await - added, 0);
    }

    #[tokio::test]
    async fn entries_of_the_single_change_shape_are_still_applied_between_runs() {
        let server = super::super::redis_testing::RedisServer::start();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let a = store_on(&server, Limits::default(), clock.clone()).await;
        let b = store_on(&server, Limits::default(), clock.clone()).await;
        a.put_custom(pod("run"), write("1", None)).await.unwrap();
        // Entries as a replica of the previous version writes them: one change each, `b` naming the entry before.
        let client = Client::open(server.address()).unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        let single = Script::new(
            r"local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1][1]
              if ARGV[2] == '' then
                redis.call('HDEL', KEYS[1], ARGV[1])
                return redis.call('XADD', KEYS[2], '*', 'b', last, 'd', ARGV[1])
              end
              redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
              return redis.call('XADD', KEYS[2], '*', 'b', last, 'p', ARGV[1], 'r', ARGV[2])",
        );
        let add = |field: String, record: &'static str| {
            let mut invocation = single.prepare_invoke();
            invocation.key(&a.shared.keys.series).key(&a.shared.keys.stream).arg(field).arg(record);
            let mut conn = conn.clone();
            async move {
                let _: String = invocation.invoke_async(&mut conn).await.unwrap();
            }
        };
        add(custom_field(&pod("old")).unwrap(), r#"1000000,-1,{"v":"2","l":[]}"#).await;
        add(custom_field(&pod("gone")).unwrap(), r#"1000000,-1,{"v":"3","l":[]}"#).await;
        add(custom_field(&pod("gone")).unwrap(), "").await;
        // A run after them names the last of them as the entry before it.
        a.put_custom(pod("run"), write("4", None)).await.unwrap();
        for store in [&a, &b] {
            eventually("the run after the single changes", || async {
                value_of(store, "run").await.as_deref() == Some("4")
            })
            .await;
            assert_eq!(value_of(store, "old").await.as_deref(), Some("2"));
            assert_eq!(value_of(store, "gone").await, None);
            assert_eq!(store.series_count(), 2);
            let resyncs = store.stats().and_then(|stats| stats.replication).map(|replication| replication.resyncs);
            assert_eq!(
                resyncs,
                Some(vec![("start", 1), ("trimmed", 0), ("server_changed", 0)]),
                "followed, not reloaded"
            );
        }
    }

    #[tokio::test]
    async fn the_stream_keeps_about_its_length_in_writes_whatever_the_runs_sizes() {
        let server = super::super::redis_testing::RedisServer::start();
        let client = Client::open(server.address()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        // One entry per node of the stream, so that `MAXLEN ~` trims to the entry.
        let _: () =
            redis::cmd("CONFIG").arg("SET").arg("stream-node-max-entries").arg(1).query_async(&mut conn).await.unwrap();
        let keys = ["{t}:series", "{t}:deadlines", "{t}:changes"];
        let run = |writes: usize, round: usize| {
            let mut invocation = PUT.prepare_invoke();
            invocation.key(keys[0]).key(keys[1]).key(keys[2]).arg("1000").arg("").arg(1000).arg(10);
            for i in 0..writes {
                invocation.arg(format!(r#"["c","pods","ns","p{round}-{i}","m"]"#)).arg(r#"-1,{"v":"1","l":[]}"#);
            }
            let mut conn = conn.clone();
            async move {
                let _: Value = invocation.invoke_async(&mut conn).await.unwrap();
            }
        };
        let length = |mut conn: MultiplexedConnection| async move {
            let length: usize = redis::cmd("XLEN").arg(keys[2]).query_async(&mut conn).await.unwrap();
            length
        };
        for round in 0..4 {
            run(5, round).await;
        }
        assert_eq!(length(conn.clone()).await, 2, "runs of 5 writes, a length of 10 writes: 2 entries");
        run(1, 4).await;
        assert_eq!(length(conn.clone()).await, 3, "a single write trims to 10 entries");
    }

    #[tokio::test]
    async fn a_deadline_is_removed_only_from_a_series_that_had_one() {
        let server = super::super::redis_testing::RedisServer::start();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let store = store_on(&server, Limits::default(), clock.clone()).await;
        let removed = calls(&server, "zrem").await;
        store.put_custom(pod("x"), write("1", None)).await.unwrap();
        store.put_custom(pod("x"), write("2", None)).await.unwrap();
        assert_eq!(calls(&server, "zrem").await - removed, 0, "x never had a deadline");
        store.put_custom(pod("x"), write("3", Some(Duration::from_secs(5)))).await.unwrap();
        store.put_custom(pod("x"), write("4", None)).await.unwrap();
        assert_eq!(calls(&server, "zrem").await - removed, 1, "x's deadline removed");
        clock.advance(6_000);
        // A write sweeps what expired in Redis before it applies: x no longer has a deadline, so it stays.
        store.put_custom(pod("y"), write("5", None)).await.unwrap();
        let fresh = store_on(&server, Limits::default(), clock.clone()).await;
        assert_eq!(value_of(&fresh, "x").await.as_deref(), Some("4"), "Redis kept it");
    }

    #[test]
    fn fields_parse_with_their_kind_and_shape() {
        let Ok(Field::Custom { resource, namespace, name, metric }) = parse_field(r#"["c","pods","ns","a\"b","m"]"#)
        else {
            panic!("a custom field")
        };
        assert_eq!((&*resource.0, &*namespace.0, &*name.0, &*metric.0), ("pods", "ns", "a\"b", "m"));
        assert!(matches!(resource.0, Cow::Borrowed(_)), "no copy without escapes");
        let Ok(Field::External { namespace, metric, labels }) = parse_field(r#"["e","ns","e",[["k","v"]]]"#) else {
            panic!("an external field")
        };
        assert_eq!(
            (&*namespace.0, &*metric.0, labels_of(labels).to_map()),
            ("ns", "e", [("k".into(), "v".into())].into())
        );
        for bad in
            [r#"["x","a"]"#, r#"["c","pods","ns","a"]"#, r#"["c","pods","ns","a","m","z"]"#, r#"["e","ns","e"]"#, "{}"]
        {
            assert!(parse_field(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_entries_are_read_from_the_reply_as_it_came() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        assert!(stream_entries(&Value::Nil).unwrap().is_empty(), "XREAD timed out");
        let entry = |id: &str, fields: &[&str]| {
            Value::Array(vec![bulk(id), Value::Array(fields.iter().map(|f| bulk(f)).collect())])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("stream"),
            Value::Array(vec![
                entry("5-1", &["b", "5-0", "x", "later", "p", "f", "r", "1,-1,{}"]),
                entry("5-2", &["b", "5-1", "d", "f"]),
                entry("5-3", &["B", "5-2", "f", "1,-1,{}", "g", "2,-1,{}", "f", "3,-1,{}"]),
            ]),
        ])]);
        let entries = stream_entries(&reply).unwrap();
        assert_eq!(entries.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [b"5-1".as_slice(), b"5-2", b"5-3"]);
        let put = Entry::of(entries[0].1);
        assert_eq!(
            (put.before, put.put, put.record, put.delete),
            (Some(&b"5-0"[..]), Some(&b"f"[..]), Some(&b"1,-1,{}"[..]), None),
            "a field it does not know is skipped"
        );
        let delete = Entry::of(entries[1].1);
        assert_eq!((delete.put, delete.delete, delete.changes()), (None, Some(&b"f"[..]), 1));
        let run = Entry::of(entries[2].1);
        assert_eq!((run.before, run.run.map(<[Value]>::len), run.changes()), (Some(&b"5-2"[..]), Some(6), 3));
        assert_eq!((run.put, run.delete), (None, None), "a run's fields are not read as a single change's");
        assert!(stream_entries(&Value::Int(3)).is_err());
        assert!(
            stream_entries(&Value::Array(vec![Value::Array(vec![bulk("stream"), Value::Array(vec![bulk("5-1")])])]))
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_run_entry_applies_its_writes_in_order_and_skips_only_a_bad_one() {
        let mirror =
            MemoryStore::with_clock(mirror_limits(&Limits::default()), Arc::new(crate::clock::ManualClock::new(0)));
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let (x, y) = (custom_field(&pod("x")).unwrap(), custom_field(&pod("y")).unwrap());
        let fields: Vec<Value> = [
            "B",
            "5-0",
            &x,
            r#"1000,-1,{"v":"1","l":[]}"#,
            r#"["x"]"#,
            r#"1000,-1,{"v":"2","l":[]}"#,
            &y,
            r#"1000,-1,{"v":"3","l":[]}"#,
            &x,
            r#"1000,-1,{"v":"4","l":[]}"#,
        ]
        .iter()
        .map(|text| bulk(text))
        .collect();
        let error = Entry::of(&fields).apply(&mirror).await.unwrap_err();
        assert!(error.contains(r#"field "[\"x\"]""#), "{error}");
        let value = |sample: Option<Sample>| sample.map(|s| s.value.to_string());
        assert_eq!(value(mirror.get_custom(pod("x")).await.unwrap()).as_deref(), Some("4"), "in order");
        assert_eq!(value(mirror.get_custom(pod("y")).await.unwrap()).as_deref(), Some("3"), "after the bad one");
    }

    #[test]
    fn a_write_argument_is_its_ttl_then_its_payload() {
        let payload = PayloadOut { v: &Quantity::parse("2").unwrap(), l: Vec::new(), k: SeriesKind::Gauge };
        assert_eq!(write_arg(Some(Duration::from_secs(5)), &payload).unwrap(), r#"5000,{"v":"2","l":[]}"#);
        assert_eq!(write_arg(None, &payload).unwrap(), r#"-1,{"v":"2","l":[]}"#);
        let forever = Some(Duration::from_millis(u64::MAX));
        assert_eq!(write_arg(forever, &payload).unwrap(), r#"-1,{"v":"2","l":[]}"#, "too long to be kept exactly");
    }

    #[tokio::test]
    async fn a_record_round_trips_through_the_mirror() {
        let mirror =
            MemoryStore::with_clock(mirror_limits(&Limits::default()), Arc::new(crate::clock::ManualClock::new(0)));
        let id = CustomSeriesId { resource: "pods", namespace: "ns", name: "a,b", metric: "m" };
        let labels = SeriesLabels::from_map([("k".to_string(), "v,w".to_string())].into());
        let payload =
            encode(&PayloadOut { v: &Quantity::parse("1500m").unwrap(), l: pairs(&labels), k: SeriesKind::Gauge })
                .unwrap();
        put_record(&mirror, &custom_field(&id).unwrap(), &format!("1000,61000,{payload}")).unwrap();
        let sample = mirror.get_custom(id).await.unwrap();
        assert_eq!(
            sample.map(|s| (s.value.to_string(), s.timestamp_millis, s.expires_at_millis, s.labels)),
            Some(("1500m".to_string(), 1000, 61000, labels.clone()))
        );
        let field = external_field("ns", "e", &labels).unwrap();
        let payload =
            encode(&PayloadOut { v: &Quantity::parse("2").unwrap(), l: Vec::new(), k: SeriesKind::Counter }).unwrap();
        assert!(payload.contains(r#""k":"c""#), "{payload}");
        put_record(&mirror, &field, &format!("1000,-1,{payload}")).unwrap();
        assert_eq!(mirror.series_count(), 2);
        let recent = mirror.recent_external("ns", "e").await.unwrap();
        assert_eq!(recent[0].1.kind, SeriesKind::Counter, "the kind travels in the payload");
        put_record(&mirror, &field, r#"2000,-1,{"v":"3","l":[]}"#).unwrap();
        let recent = mirror.recent_external("ns", "e").await.unwrap();
        assert_eq!(recent[0].1.kind, SeriesKind::Gauge, "a payload without a kind (written before kinds) is a gauge");
        assert!(put_record(&mirror, &field, "1000,-1").is_err(), "a record without its payload");
        assert!(put_record(&mirror, "[\"x\"]", &format!("1000,-1,{payload}")).is_err(), "an unknown field");
    }
}
