//! The read handler as a whole (api::Api::handle over a seeded in-memory store, standalone resources and labels):
//! whatever the method, path, query and Accept header, the answer is a 2xx/304 or a 4xx `Status` with that code,
//! never a 5xx or a panic, and nothing stored changes.
//!
//! Input: `METHOD TARGET\n[ACCEPT]`.
#![no_main]

use std::sync::{Arc, OnceLock};

use custom_metrics_apiserver::api::{Api, ReadLimits};
use custom_metrics_apiserver::cluster::{BuiltinMapper, StandaloneLabelIndex};
use custom_metrics_apiserver::quantity::{Format, Quantity};
use custom_metrics_apiserver::selector::parse_labels_map;
use custom_metrics_apiserver::store::{CustomSeriesId, MemoryStore, MetricStore, SampleWrite, SeriesLabels};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: Arc<MemoryStore>,
    api: Api,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let store = Arc::new(MemoryStore::new(Default::default()));
        let labels = SeriesLabels::from_map(parse_labels_map("queue=orders").expect("labels"));
        let write = |value: i64| SampleWrite {
            value: Quantity::from_i64(value, Format::DecimalSI),
            labels: labels.clone(),
            ttl: None,
            kind: Default::default(),
        };
        runtime.block_on(async {
            let pod = CustomSeriesId { resource: "pods", namespace: "default", name: "web-1", metric: "q" };
            store.put_custom(pod, write(11)).await.expect("seed");
            let node = CustomSeriesId { resource: "nodes", namespace: "", name: "n1", metric: "temp" };
            store.put_custom(node, write(12)).await.expect("seed");
            store.put_external("default", "ext", write(13)).await.expect("seed");
        });
        let api = Api::new(
            store.clone(),
            Arc::new(BuiltinMapper::default()),
            Arc::new(StandaloneLabelIndex),
            1000,
            ReadLimits::default(),
        );
        Fixture { runtime, store, api }
    })
}

fuzz_target!(|data: &[u8]| {
    let (head, accept) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let Some((method, target)) = head.split_once(' ') else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(target);
    if let Some(accept) = accept {
        builder = builder.header(http::header::ACCEPT, accept);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let fixture = fixture();
    fixture.runtime.block_on(async {
        let response = fixture.api.handle(&request).await;
        let code = response.status();
        let body = response.into_body().collect().await.expect("a full body").to_bytes();
        let text = String::from_utf8_lossy(&body);
        let what = format!("{} {}", request.method(), request.uri());
        assert!(
            code.is_success() || code == http::StatusCode::NOT_MODIFIED || code.is_client_error(),
            "{what}: {code} {text}"
        );
        if code.is_client_error() {
            let status: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{what}: {code} without a Status ({e}): {text}"));
            assert_eq!(status["kind"], "Status", "{what}: {text}");
            assert_eq!(status["code"], code.as_u16(), "{what}: {text}");
        } else if code.is_success() {
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "{what}: {code} but not JSON: {text}");
        }
        assert_eq!(fixture.store.series_count(), 3, "{what} changed the store");
    });
});
