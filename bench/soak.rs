//! The soak test's load generator and checker (run it through `bench/soak`, see bench/README.md).
//!
//! It writes to a running server (the plain write port) and reads back over TLS + HTTP/2, and knows at every
//! moment which writes were acknowledged: each series is written by exactly one writer connection, one request at
//! a time, with values that count up (1, 2, 3, ...). So a series' acknowledged writes are totally ordered, and "every
//! acknowledged write is readable or superseded by a later acknowledged one" becomes: at the end, each series reads
//! back exactly its last acknowledged value, or nothing after an acknowledged delete or an expired TTL.
//!
//! Checked while running: reads never return a value older than one acknowledged before the read was sent; a
//! series whose last acknowledged operation was a write (no delete in flight) is never missing; a delete of such a
//! series finds it; TTL values are readable before their deadline and never after it; no answer is a 5xx, no
//! write or delete is refused, no request fails in transport. Checked at the end: every series as above, every
//! wildcard listing holds exactly the expected objects, the write rate reached `--min-write-rate`, the server's
//! RSS stayed within `--rss-limit-mib`. Exits 1 on any violation, printing the first ones.
//!
//! `--self-test` runs a short load, then changes series behind the checker's back through the write API (deletes,
//! an older value, a value never written, TTL series rewritten without a TTL) and passes only if the final check
//! reports exactly those series.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

const CUSTOM: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";
/// Slack on TTL deadlines, in milliseconds: the server stores deadlines in whole milliseconds of the same clock.
const TTL_MARGIN_MS: i64 = 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Violations printed at the end; all are counted.
const SHOWN_VIOLATIONS: usize = 20;

#[derive(Parser, Debug, Clone)]
#[command(about = "Soak load generator and checker for custom-metrics-apiserver (run it through bench/soak)")]
struct Args {
    /// The server's plain-HTTP write port.
    #[arg(long)]
    write_addr: SocketAddr,
    /// The server's TLS port (the Kubernetes APIs).
    #[arg(long)]
    read_addr: SocketAddr,
    /// The server's process id, whose VmRSS is sampled every second.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How long to load the server.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    duration: Duration,
    /// Target writes/s of the regular series (TTL writes come on top).
    #[arg(long, default_value_t = 11_000)]
    write_rate: u32,
    /// The run fails below this many acknowledged writes/s (regular and TTL together).
    #[arg(long, default_value_t = 10_000)]
    min_write_rate: u32,
    /// Single-object, per-object listing and external reads per second, together.
    #[arg(long, default_value_t = 2_000)]
    read_rate: u32,
    /// Wildcard reads (every pod of a namespace, one metric) per second.
    #[arg(long, default_value_t = 20)]
    wildcard_rate: u32,
    /// Discovery GETs per second (custom and external alternately).
    #[arg(long, default_value_t = 10)]
    discovery_rate: u32,
    /// HTTP/1.1 keep-alive connections for the writes.
    #[arg(long, default_value_t = 32)]
    write_connections: usize,
    /// TLS + HTTP/2 connections for the reads.
    #[arg(long, default_value_t = 4)]
    read_connections: usize,
    /// Namespaces soak-0 ... written to.
    #[arg(long, default_value_t = 4)]
    namespaces: u32,
    /// Pods per namespace.
    #[arg(long, default_value_t = 2_000)]
    pods: u32,
    /// Metrics per pod (m0, m1, ...).
    #[arg(long, default_value_t = 4)]
    metrics: u32,
    /// External series (metric x0, label series=N, spread over the namespaces).
    #[arg(long, default_value_t = 8_000)]
    external_series: u32,
    /// Series written with a TTL (pods t-N of namespace soak-ttl, metric ttl).
    #[arg(long, default_value_t = 1_000)]
    ttl_series: u32,
    /// The TTL of those writes.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    ttl: Duration,
    /// Share of the regular operations that delete the series instead of writing it.
    #[arg(long, default_value_t = 0.01)]
    delete_ratio: f64,
    /// The run fails when the server's RSS exceeds this many MiB.
    #[arg(long, default_value_t = 512)]
    rss_limit_mib: u64,
    /// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
    /// Inject lost, stale and unexpired values behind the checker's back and require it to report exactly those.
    #[arg(long)]
    self_test: bool,
    /// Also write the summary table (Markdown) to this file.
    #[arg(long)]
    summary_file: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------------------------
// Series naming

/// The series layout: regular series (custom ones, then external ones) and TTL series, each numbered from 0.
#[derive(Debug, Clone, Copy)]
struct Layout {
    namespaces: u32,
    pods: u32,
    metrics: u32,
    external: u32,
    ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Series {
    Custom { ns: u32, pod: u32, metric: u32 },
    External { ns: u32, label: u32 },
}

impl Layout {
    fn custom_count(&self) -> u32 {
        self.namespaces * self.pods * self.metrics
    }

    fn regular_count(&self) -> u32 {
        self.custom_count() + self.external
    }

    fn series(&self, id: u32) -> Series {
        if id < self.custom_count() {
            let rest = id / self.namespaces;
            Series::Custom { ns: id % self.namespaces, pod: rest % self.pods, metric: rest / self.pods }
        } else {
            let e = id - self.custom_count();
            Series::External { ns: e % self.namespaces, label: e }
        }
    }

    fn custom_id(&self, ns: u32, pod: u32, metric: u32) -> Option<u32> {
        (ns < self.namespaces && pod < self.pods && metric < self.metrics)
            .then(|| ns + self.namespaces * (pod + self.pods * metric))
    }

    #[cfg(test)]
    fn external_id(&self, label: u32) -> Option<u32> {
        (label < self.external).then(|| self.custom_count() + label)
    }

    fn name(&self, id: u32) -> String {
        match self.series(id) {
            Series::Custom { ns, pod, metric } => format!("soak-{ns}/pods/pod-{pod}/m{metric}"),
            Series::External { ns, label } => format!("external soak-{ns}/x0{{series={label}}}"),
        }
    }

    fn write_path(&self, id: u32) -> String {
        match self.series(id) {
            Series::Custom { ns, pod, metric } => {
                format!("/write-metrics/namespaces/soak-{ns}/pods/pod-{pod}/m{metric}")
            }
            Series::External { ns, label } => {
                format!("/write-external-metrics/namespaces/soak-{ns}/x0?labels=series%3D{label}")
            }
        }
    }

    fn read_path(&self, id: u32) -> String {
        match self.series(id) {
            Series::Custom { ns, pod, metric } => format!("{CUSTOM}/namespaces/soak-{ns}/pods/pod-{pod}/m{metric}"),
            Series::External { ns, label } => {
                format!("{EXTERNAL}/namespaces/soak-{ns}/x0?labelSelector=series%3D{label}")
            }
        }
    }

    fn ttl_name(t: u32) -> String {
        format!("soak-ttl/pods/t-{t}/ttl")
    }

    fn ttl_write_path(t: u32, ttl: Duration) -> String {
        format!("/write-metrics/namespaces/soak-ttl/pods/t-{t}/ttl?ttl={}ms", ttl.as_millis())
    }

    fn ttl_read_path(t: u32) -> String {
        format!("{CUSTOM}/namespaces/soak-ttl/pods/t-{t}/ttl")
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Shared state: what readers may expect of each series right now

/// A regular series' state for readers, written only by its writer: deletes started (16 bits), "may be absent"
/// (1 bit: never written, deleted, or a delete in flight), and the last acknowledged value (47 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Live(u64);

impl Live {
    const ABSENT: u64 = 1 << 47;
    const SEQ: u64 = Self::ABSENT - 1;

    fn new(deletes: u64, maybe_absent: bool, seq: u64) -> Self {
        Live(((deletes & 0xffff) << 48) | if maybe_absent { Self::ABSENT } else { 0 } | (seq & Self::SEQ))
    }
    fn deletes(self) -> u64 {
        self.0 >> 48
    }
    fn maybe_absent(self) -> bool {
        self.0 & Self::ABSENT != 0
    }
    fn seq(self) -> u64 {
        self.0 & Self::SEQ
    }
    /// Whether the series was present throughout, from `self` (before a read was sent) to `after` (after its
    /// answer): no delete in flight or started in between.
    fn present_throughout(self, after: Live) -> bool {
        !self.maybe_absent() && !after.maybe_absent() && self.deletes() == after.deletes()
    }
}

/// A TTL series' last acknowledged write for readers: its value (high 32 bits) and when it was acknowledged, in
/// milliseconds since the run's start (low 32 bits). 0 means never written.
fn pack_ttl(seq: u64, ack_rel_ms: i64) -> u64 {
    (seq << 32) | (ack_rel_ms.max(0) as u64 & 0xffff_ffff)
}
fn unpack_ttl(word: u64) -> (u64, i64) {
    (word >> 32, (word & 0xffff_ffff) as i64)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    series: String,
    what: String,
}

#[derive(Default)]
struct Stats {
    writes: AtomicU64,
    ttl_writes: AtomicU64,
    deletes: AtomicU64,
    single_reads: AtomicU64,
    object_listings: AtomicU64,
    external_reads: AtomicU64,
    wildcard_reads: AtomicU64,
    discovery_reads: AtomicU64,
    ttl_reads: AtomicU64,
    absent_reads: AtomicU64,
    expirations_checked: AtomicU64,
    presence_checked: AtomicU64,
    transport_errors: AtomicU64,
    server_errors: AtomicU64,
    /// (operation, status code) -> count, for every answer that is not 2xx.
    non_2xx: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

struct Shared {
    args: Args,
    layout: Layout,
    live: Vec<AtomicU64>,
    ttl_live: Vec<AtomicU64>,
    stats: Stats,
    violations: Mutex<Vec<Violation>>,
    violation_count: AtomicU64,
    stop: AtomicBool,
    /// Wall-clock milliseconds at the start of the run.
    t0_ms: i64,
    reads: ReadPool,
    max_rss_kib: AtomicU64,
    /// RSS once the series have all been written (the later of 10 s and a tenth of the run), 0 before.
    warm_rss_kib: AtomicU64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Shared {
    fn violation(&self, series: impl Into<String>, what: impl Into<String>) {
        let count = self.violation_count.fetch_add(1, Ordering::Relaxed);
        let violation = Violation { series: series.into(), what: what.into() };
        if count < 10 {
            eprintln!("soak: violation: {}: {}", violation.series, violation.what);
        }
        let mut list = self.violations.lock().unwrap();
        // Every violation is kept for --self-test's comparison; a soak gone wrong is bounded by its own length.
        if list.len() < 100_000 {
            list.push(violation);
        }
    }

    fn live(&self, id: u32) -> Live {
        Live(self.live[id as usize].load(Ordering::SeqCst))
    }

    fn rel_ms(&self) -> i64 {
        now_ms() - self.t0_ms
    }

    /// Counts an answer's status; 5xx and `unexpected` ones are violations.
    fn answer(&self, op: &'static str, series: &str, status: StatusCode, unexpected: bool) {
        if status.is_success() {
            return;
        }
        *self.stats.non_2xx.lock().unwrap().entry((op, status.as_u16())).or_default() += 1;
        if status.is_server_error() {
            self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
            self.violation(series, format!("{op} answered {status}"));
        } else if unexpected {
            self.violation(series, format!("{op} answered {status}"));
        }
    }

    fn transport_error(&self, op: &'static str, series: &str, error: &anyhow::Error) {
        self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
        self.violation(series, format!("{op} failed: {error:#}"));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Clients

async fn h1_connect(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One HTTP/1.1 keep-alive connection, reopened after a failure.
struct H1 {
    addr: SocketAddr,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl H1 {
    fn new(addr: SocketAddr) -> Self {
        H1 { addr, sender: None }
    }

    async fn send(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(method, path, body)).await;
        let result = result.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn send_inner(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(h1_connect(self.addr).await?);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Accepts the server's self-signed certificate: the soak talks to a server it started on loopback.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A few TLS + HTTP/2 connections shared by every reader; a closed one is reopened on its next use.
struct ReadPool {
    addr: SocketAddr,
    tls: TlsConnector,
    slots: Vec<tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>>,
    next: AtomicUsize,
}

impl ReadPool {
    fn new(addr: SocketAddr, connections: usize) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let slots = (0..connections.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect();
        Ok(ReadPool { addr, tls: TlsConnector::from(Arc::new(config)), slots, next: AtomicUsize::new(0) })
    }

    async fn sender(&self) -> anyhow::Result<http2::SendRequest<Full<Bytes>>> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut slot = slot.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let stream = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self.tls.connect(name, stream).await.context("TLS handshake")?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }

    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let attempt = async {
            let mut sender = self.sender().await?;
            sender.ready().await?;
            let uri = format!("https://{}{path}", self.addr);
            let request = Request::builder().uri(uri).body(Full::new(Bytes::new()))?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Answers

#[derive(Deserialize)]
struct ValueList {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "describedObject")]
    described_object: Option<Described>,
    metric: Option<MetricId>,
    #[serde(rename = "metricLabels")]
    metric_labels: Option<HashMap<String, String>>,
    value: String,
}

#[derive(Deserialize)]
struct Described {
    name: String,
}

#[derive(Deserialize)]
struct MetricId {
    name: String,
}

#[derive(Deserialize)]
struct ResourceList {
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
struct Resource {
    name: String,
}

/// The integer value of a quantity in Kubernetes' canonical form, as the server renders the integers written here
/// (`999`, `1k`, `1001`, `12M`).
fn quantity_value(text: &str) -> Option<u64> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let mantissa: u64 = text[..digits].parse().ok()?;
    let exponent = match &text[digits..] {
        "" => 0,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        _ => return None,
    };
    mantissa.checked_mul(10u64.checked_pow(exponent)?)
}

fn parse_list(body: &[u8]) -> Result<Vec<Item>, String> {
    serde_json::from_slice::<ValueList>(body).map(|list| list.items).map_err(|e| format!("unparseable answer: {e}"))
}

fn item_value(item: &Item) -> Result<u64, String> {
    quantity_value(&item.value).ok_or_else(|| format!("unparseable value {:?}", item.value))
}

// ---------------------------------------------------------------------------------------------------------------
// Writers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Never,
    Write(u64),
    Deleted,
}

/// What the writer of one regular series knows when the load stops.
#[derive(Debug, Clone)]
struct Owned {
    id: u32,
    /// The last value sent (acknowledged or not).
    sent: u64,
    last: Last,
    /// An operation's outcome is unknown (transport error or 5xx): the series is left out of the exact checks.
    uncertain: bool,
    acked_writes: u64,
}

/// A small PRNG (xorshift64*): the soak needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

fn interval(rate: f64) -> tokio::time::Interval {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut interval = tokio::time::interval(period);
    // Catch up after a stall, so that the rate averages out to the target when the server can keep up.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    interval
}

async fn writer(shared: Arc<Shared>, index: usize) -> Vec<Owned> {
    let args = &shared.args;
    let layout = shared.layout;
    let mut owned: Vec<Owned> = (0..layout.regular_count())
        .filter(|id| *id as usize % args.write_connections == index)
        .map(|id| Owned { id, sent: 0, last: Last::Never, uncertain: false, acked_writes: 0 })
        .collect();
    if owned.is_empty() {
        return owned;
    }
    let mut rng = Rng::new(index as u64 + 1);
    let mut conn = H1::new(args.write_addr);
    let mut ticks = interval(f64::from(args.write_rate) / args.write_connections as f64);
    let mut deletes = vec![0u64; owned.len()];
    while !shared.stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let slot = rng.below(owned.len() as u64) as usize;
        let series = &mut owned[slot];
        let id = series.id;
        let delete = matches!(series.last, Last::Write(_)) && rng.chance(args.delete_ratio);
        if delete {
            deletes[slot] += 1;
            // Readers must expect absence from now on; the value stays the lower bound of what they may read.
            let acked = Live(shared.live[id as usize].load(Ordering::SeqCst)).seq();
            shared.live[id as usize].store(Live::new(deletes[slot], true, acked).0, Ordering::SeqCst);
            match conn.send(Method::DELETE, &layout.write_path(id), Bytes::new()).await {
                Ok((status, _)) if status.is_success() => {
                    series.last = Last::Deleted;
                    shared.stats.deletes.fetch_add(1, Ordering::Relaxed);
                }
                Ok((StatusCode::NOT_FOUND, _)) if !series.uncertain => {
                    shared.answer("delete", &layout.name(id), StatusCode::NOT_FOUND, false);
                    if let Last::Write(seq) = series.last {
                        shared.violation(
                            layout.name(id),
                            format!("delete found nothing: the acknowledged write of {seq} was lost"),
                        );
                    }
                    series.last = Last::Deleted;
                }
                Ok((status, _)) => {
                    shared.answer("delete", &layout.name(id), status, true);
                    series.uncertain = true;
                }
                Err(error) => {
                    shared.transport_error("delete", &layout.name(id), &error);
                    series.uncertain = true;
                }
            }
            continue;
        }
        series.sent += 1;
        let seq = series.sent;
        match conn.send(Method::POST, &layout.write_path(id), Bytes::from(seq.to_string())).await {
            Ok((status, _)) if status.is_success() => {
                series.last = Last::Write(seq);
                series.acked_writes += 1;
                shared.live[id as usize].store(Live::new(deletes[slot], false, seq).0, Ordering::SeqCst);
                shared.stats.writes.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, _)) => {
                // A refused write changes nothing; a 5xx may have stored the value.
                shared.answer("write", &layout.name(id), status, true);
                series.uncertain |= status.is_server_error();
            }
            Err(error) => {
                shared.transport_error("write", &layout.name(id), &error);
                series.uncertain = true;
            }
        }
    }
    owned
}

/// What the owner of one TTL series knows when the load stops.
#[derive(Debug, Clone, Copy, Default)]
struct TtlOwned {
    seq: u64,
    /// Wall-clock milliseconds of the last acknowledged write's request and answer (0: none).
    sent_ms: i64,
    ack_ms: i64,
    uncertain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TtlStep {
    Write,
    CheckPresent,
    CheckAbsent,
}

/// Writes each of its TTL series with `--ttl`, reads it back before the deadline (must be there) and after it
/// (must be gone), then writes it again.
async fn ttl_worker(shared: Arc<Shared>, index: usize, workers: usize) -> Vec<(u32, TtlOwned)> {
    let args = &shared.args;
    let ttl_ms = args.ttl.as_millis() as i64;
    let mut rng = Rng::new(1000 + index as u64);
    let mut state: HashMap<u32, TtlOwned> = HashMap::new();
    let mut queue = BinaryHeap::new();
    for t in (0..args.ttl_series).filter(|t| *t as usize % workers == index) {
        state.insert(t, TtlOwned::default());
        // Spread the first writes over one TTL.
        queue.push(std::cmp::Reverse((now_ms() + rng.below(ttl_ms as u64) as i64, t, TtlStep::Write)));
    }
    let mut conn = H1::new(args.write_addr);
    while let Some(std::cmp::Reverse((due, t, step))) = queue.pop() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = due - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let name = Layout::ttl_name(t);
        let Some(owned) = state.get_mut(&t) else { continue };
        match step {
            TtlStep::Write => {
                let seq = owned.seq + 1;
                let sent = now_ms();
                match conn.send(Method::POST, &Layout::ttl_write_path(t, args.ttl), Bytes::from(seq.to_string())).await
                {
                    Ok((status, _)) if status.is_success() => {
                        let ack = now_ms();
                        *owned = TtlOwned { seq, sent_ms: sent, ack_ms: ack, uncertain: owned.uncertain };
                        shared.ttl_live[t as usize].store(pack_ttl(seq, ack - shared.t0_ms), Ordering::SeqCst);
                        shared.stats.ttl_writes.fetch_add(1, Ordering::Relaxed);
                        queue.push(std::cmp::Reverse((
                            ack + rng.below(ttl_ms as u64 / 2) as i64,
                            t,
                            TtlStep::CheckPresent,
                        )));
                        queue.push(std::cmp::Reverse((ack + ttl_ms + TTL_MARGIN_MS, t, TtlStep::CheckAbsent)));
                    }
                    Ok((status, _)) => {
                        shared.answer("ttl write", &name, status, true);
                        owned.uncertain |= status.is_server_error();
                        queue.push(std::cmp::Reverse((now_ms() + ttl_ms, t, TtlStep::Write)));
                    }
                    Err(error) => {
                        shared.transport_error("ttl write", &name, &error);
                        owned.uncertain = true;
                        queue.push(std::cmp::Reverse((now_ms() + ttl_ms, t, TtlStep::Write)));
                    }
                }
            }
            TtlStep::CheckPresent | TtlStep::CheckAbsent => {
                let owned = *owned;
                let sent = now_ms();
                let answer = shared.reads.get(&Layout::ttl_read_path(t)).await;
                let received = now_ms();
                shared.stats.ttl_reads.fetch_add(1, Ordering::Relaxed);
                let (status, body) = match answer {
                    Ok(answer) => answer,
                    Err(error) => {
                        shared.transport_error("ttl read", &name, &error);
                        if step == TtlStep::CheckAbsent {
                            queue.push(std::cmp::Reverse((now_ms() + ttl_ms, t, TtlStep::Write)));
                        }
                        continue;
                    }
                };
                if status != StatusCode::NOT_FOUND {
                    shared.answer("ttl read", &name, status, true);
                }
                if owned.uncertain {
                    // Keep the cycle going, but nothing exact can be said about this series any more.
                } else if step == TtlStep::CheckPresent {
                    // Only a read answered before the earliest possible deadline must find the value.
                    if received + TTL_MARGIN_MS < owned.sent_ms + ttl_ms {
                        shared.stats.presence_checked.fetch_add(1, Ordering::Relaxed);
                        match read_one(status, &body) {
                            Ok(Some(v)) if v == owned.seq => {}
                            Ok(Some(v)) => shared.violation(
                                &name,
                                format!("read {v} before the TTL deadline, expected the acknowledged {}", owned.seq),
                            ),
                            Ok(None) => shared.violation(
                                &name,
                                format!("acknowledged TTL write of {} missing before its deadline", owned.seq),
                            ),
                            Err(e) => shared.violation(&name, e),
                        }
                    }
                } else {
                    shared.stats.expirations_checked.fetch_add(1, Ordering::Relaxed);
                    if sent < owned.ack_ms + ttl_ms + TTL_MARGIN_MS {
                        shared.violation(&name, "internal: expiry checked too early");
                    }
                    match read_one(status, &body) {
                        Ok(None) => {}
                        Ok(Some(v)) => shared.violation(
                            &name,
                            format!("value {v} readable {} ms after its TTL deadline", sent - owned.ack_ms - ttl_ms),
                        ),
                        Err(e) => shared.violation(&name, e),
                    }
                    queue.push(std::cmp::Reverse((now_ms() + rng.below(ttl_ms as u64 / 4) as i64, t, TtlStep::Write)));
                }
            }
        }
    }
    state.into_iter().collect()
}

/// The value of a single-series read: `None` for 404, an error for anything unreadable.
fn read_one(status: StatusCode, body: &[u8]) -> Result<Option<u64>, String> {
    read_series(status, body, None)
}

/// Like [`read_one`]; for an external series (`label`), each item must carry that series' label.
fn read_series(status: StatusCode, body: &[u8], label: Option<u32>) -> Result<Option<u64>, String> {
    match status {
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::OK => {
            let items = parse_list(body)?;
            if let Some(label) = label {
                let wanted = label.to_string();
                for item in &items {
                    if item.metric_labels.as_ref().and_then(|l| l.get("series")) != Some(&wanted) {
                        return Err(format!("an item of another series: {:?}", item.metric_labels));
                    }
                }
            }
            match items.as_slice() {
                [] => Ok(None),
                [item] => item_value(item).map(Some),
                _ => Err(format!("{} items where one series was asked for", items.len())),
            }
        }
        other => Err(format!("answered {other}")),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Readers

/// What is wrong, if anything, with a read of a regular series that returned `value` (None: absent), given the
/// series' state before the read was sent and after its answer.
fn live_verdict(before: Live, after: Live, value: Option<u64>) -> Option<String> {
    match value {
        Some(v) if v < before.seq() => {
            Some(format!("read {v} after {} had been acknowledged (a lost write)", before.seq()))
        }
        // The writer may have one unacknowledged write in flight (seq + 1), never more.
        Some(v) if v > after.seq() + 1 => Some(format!("read {v}, which was never written")),
        None if before.present_throughout(after) => {
            Some(format!("missing although the write of {} was acknowledged and not deleted", before.seq()))
        }
        _ => None,
    }
}

fn check_live(shared: &Shared, id: u32, before: Live, after: Live, value: Option<u64>) {
    if let Some(what) = live_verdict(before, after, value) {
        shared.violation(shared.layout.name(id), what);
    }
}

/// Reads of regular series: a single object (70 %), every metric of one pod (10 %), an external series by
/// label selector (20 %).
async fn reader(shared: Arc<Shared>) {
    let layout = shared.layout;
    let limit = Arc::new(Semaphore::new(128));
    let mut rng = Rng::new(77);
    let mut ticks = interval(f64::from(shared.args.read_rate));
    while !shared.stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let roll = rng.below(10);
        let shared = shared.clone();
        let pick = rng.next();
        tokio::spawn(async move {
            let _permit = permit;
            if roll < 7 || layout.external == 0 {
                let id = (pick % u64::from(layout.custom_count())) as u32;
                single_read(&shared, id, &shared.stats.single_reads).await;
            } else if roll < 8 {
                let (ns, pod) = ((pick % u64::from(layout.namespaces)) as u32, (pick >> 16) as u32 % layout.pods);
                object_listing(&shared, ns, pod).await;
            } else {
                let id = layout.custom_count() + (pick % u64::from(layout.external)) as u32;
                single_read(&shared, id, &shared.stats.external_reads).await;
            }
        });
    }
    // The reads in flight end before the final check (and --self-test's injections) begin.
    let _ = limit.acquire_many(128).await;
}

async fn single_read(shared: &Shared, id: u32, counter: &AtomicU64) {
    let name = shared.layout.name(id);
    let before = shared.live(id);
    let answer = shared.reads.get(&shared.layout.read_path(id)).await;
    let after = shared.live(id);
    counter.fetch_add(1, Ordering::Relaxed);
    match answer {
        Err(error) => shared.transport_error("read", &name, &error),
        Ok((status, body)) => {
            if status == StatusCode::NOT_FOUND {
                shared.stats.absent_reads.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.answer("read", &name, status, status != StatusCode::OK);
            }
            let label = match shared.layout.series(id) {
                Series::External { label, .. } => Some(label),
                Series::Custom { .. } => None,
            };
            match read_series(status, &body, label) {
                Ok(value) => {
                    if value.is_none() && status == StatusCode::OK {
                        // An external read answers an empty list where a custom one answers 404.
                        shared.stats.absent_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    check_live(shared, id, before, after, value)
                }
                Err(e) if status.is_success() => shared.violation(&name, e),
                Err(_) => {}
            }
        }
    }
}

/// Checks a listing of several series: `expected` are the series it may hold (with their state before the read),
/// `found` what it held.
fn check_listing(shared: &Shared, what: &str, expected: &[(u32, Live)], found: &HashMap<u32, u64>) {
    let known: BTreeSet<u32> = expected.iter().map(|(id, _)| *id).collect();
    for id in found.keys() {
        if !known.contains(id) {
            shared.violation(shared.layout.name(*id), format!("{what} listed a series outside the listing"));
        }
    }
    for (id, before) in expected {
        let after = shared.live(*id);
        check_live(shared, *id, *before, after, found.get(id).copied());
    }
}

async fn object_listing(shared: &Shared, ns: u32, pod: u32) {
    let layout = shared.layout;
    let what = format!("soak-{ns}/pods/pod-{pod}/ (every metric)");
    let expected: Vec<(u32, Live)> =
        (0..layout.metrics).filter_map(|m| layout.custom_id(ns, pod, m)).map(|id| (id, shared.live(id))).collect();
    let answer = shared.reads.get(&format!("{CUSTOM}/namespaces/soak-{ns}/pods/pod-{pod}/")).await;
    shared.stats.object_listings.fetch_add(1, Ordering::Relaxed);
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(error) => return shared.transport_error("object listing", &what, &error),
    };
    shared.answer("object listing", &what, status, true);
    if status != StatusCode::OK {
        return;
    }
    let mut found = HashMap::new();
    match parse_list(&body) {
        Err(e) => return shared.violation(&what, e),
        Ok(items) => {
            for item in &items {
                let metric = item.metric.as_ref().and_then(|m| m.name.strip_prefix('m')?.parse().ok());
                match (metric.and_then(|m| layout.custom_id(ns, pod, m)), item_value(item)) {
                    (Some(id), Ok(v)) => {
                        found.insert(id, v);
                    }
                    (_, Err(e)) => shared.violation(&what, e),
                    (None, _) => shared.violation(&what, "an item of an unknown metric"),
                }
            }
        }
    }
    check_listing(shared, &what, &expected, &found);
}

/// Every pod of one namespace for one metric, or (one read in five) every TTL series.
async fn wildcard_reader(shared: Arc<Shared>) {
    let limit = Arc::new(Semaphore::new(16));
    let mut rng = Rng::new(99);
    let mut ticks = interval(f64::from(shared.args.wildcard_rate));
    while !shared.stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let shared = shared.clone();
        let pick = rng.next();
        tokio::spawn(async move {
            let _permit = permit;
            if pick.is_multiple_of(5) && shared.args.ttl_series > 0 {
                ttl_wildcard(&shared).await;
            } else {
                let layout = shared.layout;
                let ns = (pick >> 8) as u32 % layout.namespaces;
                let metric = (pick >> 24) as u32 % layout.metrics;
                custom_wildcard(&shared, ns, metric).await;
            }
        });
    }
    let _ = limit.acquire_many(16).await;
}

/// Reads `soak-{ns}/pods/*/m{metric}` while the load runs, checking each series against its state around the read.
async fn custom_wildcard(shared: &Shared, ns: u32, metric: u32) {
    let layout = shared.layout;
    let expected: Vec<(u32, Live)> =
        (0..layout.pods).filter_map(|pod| layout.custom_id(ns, pod, metric)).map(|id| (id, shared.live(id))).collect();
    shared.stats.wildcard_reads.fetch_add(1, Ordering::Relaxed);
    if let Some(found) = read_wildcard(shared, ns, metric).await {
        check_listing(shared, &format!("soak-{ns}/pods/*/m{metric}"), &expected, &found);
    }
}

/// The values listed by `soak-{ns}/pods/*/m{metric}`, by series; `None` when the read failed (reported).
async fn read_wildcard(shared: &Shared, ns: u32, metric: u32) -> Option<HashMap<u32, u64>> {
    let layout = shared.layout;
    let what = format!("soak-{ns}/pods/*/m{metric}");
    let answer = shared.reads.get(&format!("{CUSTOM}/namespaces/soak-{ns}/pods/*/m{metric}")).await;
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(error) => {
            shared.transport_error("wildcard read", &what, &error);
            return None;
        }
    };
    shared.answer("wildcard read", &what, status, true);
    if status != StatusCode::OK {
        return None;
    }
    let items = match parse_list(&body) {
        Ok(items) => items,
        Err(e) => {
            shared.violation(&what, e);
            return None;
        }
    };
    let mut found = HashMap::new();
    for item in &items {
        let pod = item.described_object.as_ref().and_then(|o| o.name.strip_prefix("pod-")?.parse().ok());
        match (pod.and_then(|p| layout.custom_id(ns, p, metric)), item_value(item)) {
            (Some(id), Ok(v)) => {
                if found.insert(id, v).is_some() {
                    shared.violation(layout.name(id), format!("{what} listed this series twice"));
                }
            }
            (_, Err(e)) => shared.violation(&what, e),
            (None, _) => shared.violation(&what, "an item of an unknown pod"),
        }
    }
    Some(found)
}

/// Reads `soak-ttl/pods/*/ttl`: no value may be listed after its deadline.
async fn ttl_wildcard(shared: &Shared) {
    let what = "soak-ttl/pods/*/ttl";
    let ttl_ms = shared.args.ttl.as_millis() as i64;
    let before: Vec<(u64, i64)> = shared.ttl_live.iter().map(|w| unpack_ttl(w.load(Ordering::SeqCst))).collect();
    let sent = shared.rel_ms();
    let answer = shared.reads.get(&format!("{CUSTOM}/namespaces/soak-ttl/pods/*/ttl")).await;
    shared.stats.wildcard_reads.fetch_add(1, Ordering::Relaxed);
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(error) => return shared.transport_error("wildcard read", what, &error),
    };
    shared.answer("wildcard read", what, status, true);
    if status != StatusCode::OK {
        return;
    }
    let items = match parse_list(&body) {
        Ok(items) => items,
        Err(e) => return shared.violation(what, e),
    };
    for item in &items {
        let t: Option<u32> = item.described_object.as_ref().and_then(|o| o.name.strip_prefix("t-")?.parse().ok());
        let (Some(t), Ok(v)) = (t.filter(|t| *t < shared.args.ttl_series), item_value(item)) else {
            shared.violation(what, "an unknown or unparseable item");
            continue;
        };
        let (seq, ack) = before[t as usize];
        // The worker writes a TTL series again only after checking that its previous value expired.
        if v < seq {
            shared.violation(Layout::ttl_name(t), format!("{what} listed {v}, expired before {seq} was written"));
        } else if v == seq && sent > ack + ttl_ms + TTL_MARGIN_MS {
            shared.violation(
                Layout::ttl_name(t),
                format!("{what} listed {v} {} ms after its TTL deadline", sent - ack - ttl_ms),
            );
        }
    }
}

async fn discovery_reader(shared: Arc<Shared>) {
    let mut ticks = interval(f64::from(shared.args.discovery_rate));
    let mut turn = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        turn += 1;
        let (path, expect) = if turn.is_multiple_of(2) { (CUSTOM, "pods/m0") } else { (EXTERNAL, "x0") };
        let answer = shared.reads.get(path).await;
        shared.stats.discovery_reads.fetch_add(1, Ordering::Relaxed);
        match answer {
            Err(error) => shared.transport_error("discovery", path, &error),
            Ok((status, body)) => {
                shared.answer("discovery", path, status, true);
                if status != StatusCode::OK {
                    continue;
                }
                match serde_json::from_slice::<ResourceList>(&body) {
                    Err(e) => shared.violation(path, format!("unparseable discovery: {e}")),
                    // m0 and x0 hold thousands of series, a handful of which are deleted at any time.
                    Ok(list) if shared.rel_ms() > 2_000 && !list.resources.iter().any(|r| r.name == expect) => {
                        shared.violation(path, format!("discovery does not list {expect}"))
                    }
                    Ok(_) => {}
                }
            }
        }
    }
}

async fn rss_sampler(shared: Arc<Shared>, pid: u32) {
    let path = format!("/proc/{pid}/status");
    let limit_kib = shared.args.rss_limit_mib * 1024;
    let mut reported = false;
    let started = Instant::now();
    let warm = (shared.args.duration / 10).max(Duration::from_secs(10));
    while !shared.stop.load(Ordering::Relaxed) {
        match rss_kib(&path) {
            Some(kib) => {
                shared.max_rss_kib.fetch_max(kib, Ordering::Relaxed);
                if started.elapsed() >= warm && shared.warm_rss_kib.load(Ordering::Relaxed) == 0 {
                    shared.warm_rss_kib.store(kib, Ordering::Relaxed);
                }
                if kib > limit_kib && !reported {
                    reported = true;
                    shared.violation("server", format!("RSS {} exceeds the budget of {limit_kib} KiB", kib));
                }
            }
            None => {
                shared.violation("server", format!("process {pid} is gone"));
                shared.stop.store(true, Ordering::Relaxed);
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is the 3rd field of the
    // line, utime and stime the 14th and 15th.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------------------------
// The final check

/// What a regular series must read at the end, from what its writer knows: `Some(v)` exactly v, `None` absent.
fn expected_final(owned: &Owned) -> Option<Option<u64>> {
    if owned.uncertain {
        return None;
    }
    Some(match owned.last {
        Last::Write(seq) => Some(seq),
        Last::Never | Last::Deleted => None,
    })
}

/// Compares a final read with the expectation; the violation's text, if any.
fn final_verdict(expected: Option<u64>, read: Option<u64>) -> Option<String> {
    match (expected, read) {
        (Some(e), Some(r)) if e == r => None,
        (Some(e), Some(r)) if r < e => Some(format!("reads {r}, but {e} was the last acknowledged write (lost)")),
        (Some(e), Some(r)) => Some(format!("reads {r}, never acknowledged (the last acknowledged write was {e})")),
        (Some(e), None) => Some(format!("missing: the acknowledged write of {e} was lost")),
        (None, Some(r)) => Some(format!("reads {r} after an acknowledged delete (or never written)")),
        (None, None) => None,
    }
}

struct FinalCounts {
    series_checked: u64,
    acked_writes: u64,
    uncertain: u64,
}

async fn final_check(shared: &Arc<Shared>, owned: &[Owned], ttl: &[(u32, TtlOwned)]) -> FinalCounts {
    let layout = shared.layout;
    let limit = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for series in owned.iter().cloned() {
        let Some(expected) = expected_final(&series) else { continue };
        let (shared, limit) = (shared.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let name = layout.name(series.id);
            match shared.reads.get(&layout.read_path(series.id)).await {
                Err(error) => shared.transport_error("final read", &name, &error),
                Ok((status, body)) => match read_one(status, &body) {
                    Ok(read) => {
                        if let Some(what) = final_verdict(expected, read) {
                            shared.violation(name, what);
                        }
                    }
                    Err(e) => shared.violation(name, format!("final read: {e}")),
                },
            }
        });
    }
    for (t, state) in ttl.iter().copied() {
        if state.uncertain {
            continue;
        }
        let (shared, limit) = (shared.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let name = Layout::ttl_name(t);
            match shared.reads.get(&Layout::ttl_read_path(t)).await {
                Err(error) => shared.transport_error("final read", &name, &error),
                Ok((status, body)) => match read_one(status, &body) {
                    Ok(None) => {}
                    Ok(Some(v)) => shared.violation(name, format!("reads {v} after every TTL deadline passed")),
                    Err(e) => shared.violation(name, format!("final read: {e}")),
                },
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    // Every listing holds exactly the series expected present, with their values.
    let expected: HashMap<u32, Option<Option<u64>>> = owned.iter().map(|s| (s.id, expected_final(s))).collect();
    for ns in 0..layout.namespaces {
        for metric in 0..layout.metrics {
            let Some(found) = read_wildcard(shared, ns, metric).await else { continue };
            for pod in 0..layout.pods {
                let Some(id) = layout.custom_id(ns, pod, metric) else { continue };
                let Some(Some(expected)) = expected.get(&id).copied() else { continue };
                if let Some(what) = final_verdict(expected, found.get(&id).copied()) {
                    shared.violation(layout.name(id), format!("in soak-{ns}/pods/*/m{metric}: {what}"));
                }
            }
        }
    }
    FinalCounts {
        series_checked: owned.iter().filter(|s| !s.uncertain).count() as u64
            + ttl.iter().filter(|(_, s)| !s.uncertain).count() as u64,
        acked_writes: owned.iter().map(|s| s.acked_writes).sum(),
        uncertain: owned.iter().filter(|s| s.uncertain).count() as u64
            + ttl.iter().filter(|(_, s)| s.uncertain).count() as u64,
    }
}

/// For --self-test: changes series behind the checker's back; returns the names of the series the final check
/// must report.
async fn inject(shared: &Shared, owned: &[Owned], ttl: &[(u32, TtlOwned)]) -> anyhow::Result<BTreeSet<String>> {
    let layout = shared.layout;
    let mut conn = H1::new(shared.args.write_addr);
    let mut injected = BTreeSet::new();
    let mut written = owned.iter().filter_map(|s| match s.last {
        Last::Write(seq) if !s.uncertain && seq >= 2 => Some((s.id, seq)),
        _ => None,
    });
    let mut send = async |method: Method, path: String, body: String| -> anyhow::Result<()> {
        let (status, _) = conn.send(method, &path, Bytes::from(body)).await?;
        if !status.is_success() {
            bail!("{path}: {status}");
        }
        Ok(())
    };
    // Lost writes: deleted behind the checker's back (custom, and external when there are any).
    for _ in 0..2 {
        let (id, _) = written.next().context("too few written series")?;
        send(Method::DELETE, layout.write_path(id), String::new()).await?;
        injected.insert(layout.name(id));
    }
    let external =
        owned.iter().find(|s| s.id >= layout.custom_count() && !s.uncertain && matches!(s.last, Last::Write(_)));
    if let Some(series) = external {
        send(Method::DELETE, layout.write_path(series.id), String::new()).await?;
        injected.insert(layout.name(series.id));
    }
    // An older value: a lost write overwritten by a stale one.
    for _ in 0..2 {
        let (id, seq) = written.next().context("too few written series")?;
        send(Method::POST, layout.write_path(id), (seq - 1).to_string()).await?;
        injected.insert(layout.name(id));
    }
    // A value never written.
    let (id, seq) = written.next().context("too few written series")?;
    send(Method::POST, layout.write_path(id), (seq + 100).to_string()).await?;
    injected.insert(layout.name(id));
    // TTL series rewritten without a TTL: readable after every deadline.
    for (t, _) in ttl.iter().filter(|(_, s)| !s.uncertain).take(2) {
        send(Method::POST, format!("/write-metrics/namespaces/soak-ttl/pods/t-{t}/ttl"), "7".into()).await?;
        injected.insert(Layout::ttl_name(*t));
    }
    Ok(injected)
}

// ---------------------------------------------------------------------------------------------------------------
// Report

fn fmt_int(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.write_connections == 0 || args.namespaces == 0 || args.pods == 0 || args.metrics == 0 {
        bail!("--write-connections, --namespaces, --pods and --metrics must be positive");
    }
    if args.ttl < Duration::from_millis(200) {
        bail!("--ttl must be at least 200ms");
    }
    let layout = Layout {
        namespaces: args.namespaces,
        pods: args.pods,
        metrics: args.metrics,
        external: args.external_series,
        ttl: args.ttl_series,
    };
    let absent = Live::new(0, true, 0).0;
    let shared = Arc::new(Shared {
        reads: ReadPool::new(args.read_addr, args.read_connections)?,
        live: (0..layout.regular_count()).map(|_| AtomicU64::new(absent)).collect(),
        ttl_live: (0..layout.ttl).map(|_| AtomicU64::new(0)).collect(),
        layout,
        stats: Stats::default(),
        violations: Mutex::new(Vec::new()),
        violation_count: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        t0_ms: now_ms(),
        max_rss_kib: AtomicU64::new(0),
        warm_rss_kib: AtomicU64::new(0),
        args: args.clone(),
    });
    // Fail early and clearly when the server is not there.
    shared.reads.get("/readyz").await.context("the server's TLS port does not answer")?;
    H1::new(args.write_addr)
        .send(Method::GET, "/healthz", Bytes::new())
        .await
        .context("the write port does not answer")?;

    let started = Instant::now();
    let cpu_at_start = (args.server_pid.and_then(cpu_ticks), cpu_ticks(std::process::id()));
    let writers: Vec<_> = (0..args.write_connections).map(|i| tokio::spawn(writer(shared.clone(), i))).collect();
    let ttl_workers_count = (args.ttl_series as usize).div_ceil(250).clamp(1, 8);
    let ttl_workers: Vec<_> =
        (0..ttl_workers_count).map(|i| tokio::spawn(ttl_worker(shared.clone(), i, ttl_workers_count))).collect();
    let mut background = vec![
        tokio::spawn(reader(shared.clone())),
        tokio::spawn(wildcard_reader(shared.clone())),
        tokio::spawn(discovery_reader(shared.clone())),
    ];
    if let Some(pid) = args.server_pid {
        background.push(tokio::spawn(rss_sampler(shared.clone(), pid)));
    }

    // Progress every 10 s, until the duration is over or the server is gone.
    let mut last = (Instant::now(), 0u64, 0u64);
    while started.elapsed() < args.duration && !shared.stop.load(Ordering::Relaxed) {
        let left = args.duration.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        let s = &shared.stats;
        let writes = s.writes.load(Ordering::Relaxed) + s.ttl_writes.load(Ordering::Relaxed);
        let reads = [&s.single_reads, &s.object_listings, &s.external_reads, &s.wildcard_reads, &s.ttl_reads]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>();
        let secs = last.0.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "soak: {:>4} s: {} writes/s, {} reads/s, RSS {:.1} MiB, {} violations",
            started.elapsed().as_secs(),
            fmt_int((writes - last.1) as f64 / secs),
            fmt_int((reads - last.2) as f64 / secs),
            args.server_pid.and_then(|p| rss_kib(&format!("/proc/{p}/status"))).unwrap_or(0) as f64 / 1024.0,
            shared.violation_count.load(Ordering::Relaxed),
        );
        last = (Instant::now(), writes, reads);
    }
    shared.stop.store(true, Ordering::Relaxed);
    // The rates are over the load alone: the TTL workers may still be sleeping towards their next step.
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_at_end = (args.server_pid.and_then(cpu_ticks), cpu_ticks(std::process::id()));
    let mut owned = Vec::new();
    for writer in writers {
        owned.extend(writer.await?);
    }
    let mut ttl = Vec::new();
    for worker in ttl_workers {
        ttl.extend(worker.await?);
    }
    for task in background {
        let _ = task.await;
    }

    // Every TTL deadline passes before the final check.
    let last_ack = ttl.iter().map(|(_, s)| s.ack_ms).max().unwrap_or(0);
    let wait = last_ack + args.ttl.as_millis() as i64 + TTL_MARGIN_MS - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let injected = if args.self_test {
        let during_load = shared.violation_count.load(Ordering::Relaxed);
        if during_load > 0 {
            bail!("self-test: {during_load} violations before anything was injected");
        }
        Some(inject(&shared, &owned, &ttl).await?)
    } else {
        None
    };
    let counts = final_check(&shared, &owned, &ttl).await;
    let mut end_rss_kib = 0;
    if let Some(pid) = args.server_pid {
        match rss_kib(&format!("/proc/{pid}/status")) {
            Some(kib) => {
                shared.max_rss_kib.fetch_max(kib, Ordering::Relaxed);
                end_rss_kib = kib;
            }
            None => shared.violation("server", format!("process {pid} is gone at the end")),
        }
    }

    let s = &shared.stats;
    let writes = s.writes.load(Ordering::Relaxed);
    let ttl_writes = s.ttl_writes.load(Ordering::Relaxed);
    let write_rate = (writes + ttl_writes) as f64 / elapsed;
    if !args.self_test && write_rate < f64::from(args.min_write_rate) {
        shared.violation(
            "load",
            format!("{} acknowledged writes/s, below --min-write-rate {}", fmt_int(write_rate), args.min_write_rate),
        );
    }
    let violations = shared.violations.lock().unwrap().clone();
    let violation_count = shared.violation_count.load(Ordering::Relaxed);
    let lost = violations.iter().filter(|v| v.what.contains("lost")).count();
    let reads_of = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let all_reads = reads_of(&s.single_reads)
        + reads_of(&s.object_listings)
        + reads_of(&s.external_reads)
        + reads_of(&s.wildcard_reads)
        + reads_of(&s.discovery_reads)
        + reads_of(&s.ttl_reads);
    let non_2xx = s.non_2xx.lock().unwrap().clone();
    let non_2xx_text = if non_2xx.is_empty() {
        "none".to_string()
    } else {
        non_2xx
            .iter()
            .map(|((op, code), n)| format!("{op} {code}: {}", fmt_int(*n as f64)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cpu_share = |start: Option<u64>, end: Option<u64>| match (start, end) {
        (Some(a), Some(b)) => {
            let secs = b.saturating_sub(a) as f64 / args.clock_ticks.max(1) as f64;
            format!("{secs:.0} s ({:.0} % of one core)", 100.0 * secs / elapsed)
        }
        _ => "not sampled".to_string(),
    };
    let rate = |n: u64| format!("{} ({}/s)", fmt_int(n as f64), fmt_int(n as f64 / elapsed));
    let max_rss = shared.max_rss_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    let rows = [
        ("duration", format!("{elapsed:.0} s")),
        ("acknowledged writes", rate(writes + ttl_writes)),
        ("  of which regular series / TTL series", format!("{} / {}", rate(writes), rate(ttl_writes))),
        ("reads (all kinds)", rate(all_reads)),
        (
            "  single object / per-object listing / external",
            format!(
                "{} / {} / {}",
                fmt_int(reads_of(&s.single_reads) as f64),
                fmt_int(reads_of(&s.object_listings) as f64),
                fmt_int(reads_of(&s.external_reads) as f64)
            ),
        ),
        (
            "  wildcard / discovery / TTL checks",
            format!(
                "{} / {} / {}",
                fmt_int(reads_of(&s.wildcard_reads) as f64),
                fmt_int(reads_of(&s.discovery_reads) as f64),
                fmt_int(reads_of(&s.ttl_reads) as f64)
            ),
        ),
        ("reads of absent series (404 or empty)", fmt_int(reads_of(&s.absent_reads) as f64)),
        ("acknowledged deletes", fmt_int(reads_of(&s.deletes) as f64)),
        ("TTL expirations checked (absent after the deadline)", fmt_int(reads_of(&s.expirations_checked) as f64)),
        ("TTL values checked present before the deadline", fmt_int(reads_of(&s.presence_checked) as f64)),
        ("5xx answers", fmt_int(reads_of(&s.server_errors) as f64)),
        ("non-2xx answers by operation and code", non_2xx_text),
        ("transport errors", fmt_int(reads_of(&s.transport_errors) as f64)),
        (
            "max RSS (sampled every second)",
            match args.server_pid {
                Some(_) => format!("{max_rss:.1} MiB (budget {} MiB)", args.rss_limit_mib),
                None => "not sampled (no --server-pid)".to_string(),
            },
        ),
        ("server CPU time while loading", cpu_share(cpu_at_start.0, cpu_at_end.0)),
        ("load generator CPU time while loading", cpu_share(cpu_at_start.1, cpu_at_end.1)),
        (
            "RSS after warm-up / at the end",
            match shared.warm_rss_kib.load(Ordering::Relaxed) {
                0 => "run too short".to_string(),
                warm => format!("{:.1} / {:.1} MiB", warm as f64 / 1024.0, end_rss_kib as f64 / 1024.0),
            },
        ),
        (
            "series checked at the end",
            format!("{} ({} uncertain, left out)", fmt_int(counts.series_checked as f64), counts.uncertain),
        ),
        (
            "acknowledged writes to regular series checked (read back or superseded)",
            fmt_int(counts.acked_writes as f64),
        ),
        ("lost writes", lost.to_string()),
        ("violations", violation_count.to_string()),
    ];
    let mut table = String::from("| soak | |\n| --- | ---: |\n");
    for (name, value) in rows {
        table.push_str(&format!("| {} | {value} |\n", name.replace("  ", "&nbsp;&nbsp;")));
    }
    println!("{table}");
    if let Some(path) = &args.summary_file {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    if !violations.is_empty() {
        println!("first violations ({violation_count} in all):");
        for v in violations.iter().take(SHOWN_VIOLATIONS) {
            println!("  {}: {}", v.series, v.what);
        }
    }

    if let Some(injected) = injected {
        let reported: BTreeSet<String> = violations.iter().map(|v| v.series.clone()).collect();
        let missed: Vec<_> = injected.difference(&reported).collect();
        let extra: Vec<_> = reported.difference(&injected).collect();
        if missed.is_empty() && extra.is_empty() {
            println!("soak self-test: PASS: the checker reported exactly the {} injected series", injected.len());
            return Ok(());
        }
        println!("soak self-test: FAIL: injected but not reported: {missed:?}; reported but not injected: {extra:?}");
        std::process::exit(1);
    }
    let verdict = if violation_count == 0 { "PASS" } else { "FAIL" };
    println!(
        "soak: {verdict} {elapsed:.0} s: {} writes/s, {} reads/s, {} deletes, {} expirations checked, {} 5xx, max RSS {max_rss:.1} MiB of {} MiB, {} acknowledged writes checked, {lost} lost, {violation_count} violations",
        fmt_int(write_rate),
        fmt_int(all_reads as f64 / elapsed),
        fmt_int(reads_of(&s.deletes) as f64),
        fmt_int(reads_of(&s.expirations_checked) as f64),
        reads_of(&s.server_errors),
        args.rss_limit_mib,
        fmt_int(counts.acked_writes as f64),
    );
    if violation_count > 0 {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_quantities_read_back_as_the_integers_written() {
        for (text, value) in [("999", 999), ("1k", 1000), ("1001", 1001), ("12M", 12_000_000), ("0", 0)] {
            assert_eq!(quantity_value(text), Some(value), "{text}");
        }
        for bad in ["", "1.5k", "1500m", "1Ki", "k", "-1"] {
            assert_eq!(quantity_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_final_verdict_accepts_only_the_last_acknowledged_state() {
        assert_eq!(final_verdict(Some(5), Some(5)), None);
        assert_eq!(final_verdict(None, None), None);
        assert!(final_verdict(Some(5), Some(4)).unwrap().contains("lost"));
        assert!(final_verdict(Some(5), None).unwrap().contains("lost"));
        assert!(final_verdict(Some(5), Some(6)).unwrap().contains("never acknowledged"));
        assert!(final_verdict(None, Some(3)).unwrap().contains("after an acknowledged delete"));
    }

    #[test]
    fn an_uncertain_series_has_no_exact_expectation() {
        let mut owned = Owned { id: 0, sent: 3, last: Last::Write(2), uncertain: false, acked_writes: 2 };
        assert_eq!(expected_final(&owned), Some(Some(2)));
        owned.last = Last::Deleted;
        assert_eq!(expected_final(&owned), Some(None));
        owned.uncertain = true;
        assert_eq!(expected_final(&owned), None);
    }

    #[test]
    fn live_state_tells_when_a_series_was_present_throughout_a_read() {
        let written = Live::new(2, false, 40);
        assert_eq!((written.deletes(), written.maybe_absent(), written.seq()), (2, false, 40));
        assert!(written.present_throughout(Live::new(2, false, 41)));
        assert!(!written.present_throughout(Live::new(3, false, 42)), "deleted and written again in between");
        assert!(!written.present_throughout(Live::new(3, true, 0)), "a delete in flight");
        assert!(!Live::new(0, true, 0).present_throughout(Live::new(0, true, 0)), "never written");
    }

    #[test]
    fn reads_while_loading_may_trail_no_acknowledged_write() {
        let at = |seq| Live::new(0, false, seq);
        assert_eq!(live_verdict(at(7), at(7), Some(7)), None);
        assert_eq!(live_verdict(at(7), at(7), Some(8)), None, "the write in flight may land before its answer");
        assert!(live_verdict(at(7), at(8), Some(6)).unwrap().contains("lost"));
        assert!(live_verdict(at(7), at(7), Some(9)).unwrap().contains("never written"));
        assert!(live_verdict(at(7), at(8), None).unwrap().contains("missing"));
        let deleting = Live::new(1, true, 7);
        assert_eq!(live_verdict(at(7), deleting, None), None, "a delete started during the read");
        assert_eq!(live_verdict(deleting, deleting, Some(7)), None, "the delete has not landed yet");
        assert!(live_verdict(deleting, deleting, Some(5)).unwrap().contains("lost"));
    }

    #[test]
    fn cpu_time_is_read_from_proc() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).expect("own /proc/PID/stat");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_ticks(pid).unwrap() >= before);
        assert!(rss_kib(&format!("/proc/{pid}/status")).unwrap() > 0);
    }

    #[test]
    fn series_names_and_ids_round_trip() {
        let layout = Layout { namespaces: 3, pods: 5, metrics: 2, external: 4, ttl: 0 };
        let mut seen = BTreeSet::new();
        for id in 0..layout.regular_count() {
            assert!(seen.insert(layout.write_path(id)), "{id} has a path of its own");
            match layout.series(id) {
                Series::Custom { ns, pod, metric } => assert_eq!(layout.custom_id(ns, pod, metric), Some(id)),
                Series::External { label, .. } => assert_eq!(layout.external_id(label), Some(id)),
            }
        }
        assert_eq!(layout.custom_id(0, 5, 0), None);
    }
}
