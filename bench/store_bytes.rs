//! Resident memory per stored series, against what the store accounts for it (bench/README.md, "Store bytes").
//!
//! Each shape runs in a fresh child process: RSS before, 100,000 series written straight into a `MemoryStore`
//! (no HTTP), RSS after. Prints a Markdown table: measured B/series, accounted B/series (`bytes_used() / N`) and
//! their ratio; accounted must stay at or above measured for the budget to bound memory.
//!
//! `cargo run --release --example store-bytes [N]`

use std::collections::BTreeMap;

use std::sync::Arc;

use custom_metrics_apiserver::clock::ManualClock;
use custom_metrics_apiserver::quantity::Quantity;
use custom_metrics_apiserver::store::{
    CustomSeriesId, Limits, MemoryStore, MetricStore, SampleWrite, SeriesKind, SeriesLabels,
};

const SHAPES: [(&str, &str); 12] = [
    ("custom-plain", "custom, no labels, 1 group (N pods, one metric, one namespace)"),
    ("custom-groups", "custom, no labels, 1 series per group (N namespaces)"),
    ("custom-4-metrics", "custom, no labels, 4 metrics per pod (N/4 pods)"),
    ("custom-16-labels", "custom, 16 labels of 63 + 63 bytes (2 KB)"),
    ("external-plain", "external, 1 label (`id=N`), 1 group"),
    ("external-16-labels", "external, 16 labels of 63 + 63 bytes (2 KB)"),
    ("custom-plain-ttl", "custom, no labels, 1 group, each with a ttl"),
    ("custom-groups-ttl", "custom, no labels, 1 series per group, each with a ttl"),
    ("external-plain-ttl", "external, 1 label (`id=N`), 1 group, each with a ttl"),
    ("custom-plain-sparkline", "custom, no labels, 1 group, a gauge written 8 times (its sparkline full)"),
    ("custom-plain-counter-15s", "custom, no labels, 1 group, a counter written every 15 s for 2 min (9 samples)"),
    ("custom-plain-counter-full", "custom, no labels, 1 group, a counter written every 1 s, 64 times (64 samples)"),
];

/// How a shape writes each series: rounds, milliseconds between rounds, kind (docs/architecture.md §9, "History").
fn rounds(shape: &str) -> (usize, i64, SeriesKind) {
    match shape {
        "custom-plain-sparkline" => (8, 1_000, SeriesKind::Gauge),
        "custom-plain-counter-15s" => (9, 15_000, SeriesKind::Counter),
        "custom-plain-counter-full" => (64, 1_000, SeriesKind::Counter),
        _ => (1, 0, SeriesKind::Gauge),
    }
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn labels(i: usize, count: usize) -> SeriesLabels {
    let map: BTreeMap<String, String> =
        (0..count).map(|k| (format!("k{k:02}{i:0>60}"), format!("{:0>63}", i * 16 + k))).collect();
    SeriesLabels::from_map(map)
}

async fn fill(shape: &str, n: usize) -> (usize, usize) {
    let limits = Limits { max_series: usize::MAX, max_store_bytes: usize::MAX, ..Limits::default() };
    let clock = ManualClock::new(1_700_000_000_000);
    let store = MemoryStore::with_clock(limits, Arc::new(clock.clone()));
    let (rounds, step, kind) = rounds(shape);
    let value = Quantity::parse("42").unwrap_or_default();
    // Distinct deadlines (a ttl growing by 1 ms per series), as writes spread over time give them.
    let ttl = shape.ends_with("-ttl");
    let write_at = |labels: SeriesLabels, i: usize| SampleWrite {
        value,
        labels,
        ttl: ttl.then(|| std::time::Duration::from_millis(3_600_000 + i as u64)),
        kind,
    };
    let before = rss_bytes();
    for i in (0..rounds).flat_map(|round| {
        if round > 0 {
            clock.advance(step);
        }
        0..n
    }) {
        let name = format!("pod-{i}");
        let namespace = format!("ns-{i}");
        let id = CustomSeriesId { resource: "pods", namespace: "default", name: &name, metric: "m" };
        let write = |labels: SeriesLabels| write_at(labels, i);
        let plain = if rounds > 1 { "custom-plain" } else { shape.trim_end_matches("-ttl") };
        let result = match plain {
            "custom-plain" => store.put_custom(id, write(SeriesLabels::empty())).await,
            "custom-groups" => {
                store.put_custom(CustomSeriesId { namespace: &namespace, ..id }, write(SeriesLabels::empty())).await
            }
            "custom-4-metrics" => {
                let name = format!("pod-{}", i / 4);
                let metric = format!("m{}", i % 4);
                store
                    .put_custom(CustomSeriesId { name: &name, metric: &metric, ..id }, write(SeriesLabels::empty()))
                    .await
            }
            "custom-16-labels" => store.put_custom(id, write(labels(i, 16))).await,
            "external-plain" => {
                let one = SeriesLabels::from_map(BTreeMap::from([("id".to_string(), i.to_string())]));
                store.put_external("default", "e", write(one)).await
            }
            _ => store.put_external("default", "e", write(labels(i, 16))).await,
        };
        if let Err(error) = result {
            eprintln!("{shape}: write {i} refused: {error}");
            std::process::exit(1);
        }
    }
    let measured = rss_bytes().saturating_sub(before);
    (measured / n, store.bytes_used() / n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if let Some(shape) = first.as_deref().and_then(|a| a.strip_prefix("--shape=")) {
        let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
        let runtime = tokio::runtime::Builder::new_current_thread().build();
        let Ok(runtime) = runtime else { std::process::exit(1) };
        let (measured, accounted) = runtime.block_on(fill(shape, n));
        println!("{measured} {accounted}");
        return;
    }
    let n: usize = first.and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let Ok(exe) = std::env::current_exe() else { std::process::exit(1) };
    println!("| shape ({n} series) | measured B/series | accounted B/series | accounted / measured |");
    println!("| --- | ---: | ---: | ---: |");
    for (shape, description) in SHAPES {
        let output = std::process::Command::new(&exe).arg(format!("--shape={shape}")).arg(n.to_string()).output();
        let Ok(output) = output else { std::process::exit(1) };
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(0.0));
        let (measured, accounted) = (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0));
        println!("| {description} | {measured:.0} | {accounted:.0} | {:.2} |", accounted / measured.max(1.0));
    }
}
