//! The write handler as a whole (ingest::Ingest::handle on an in-memory store): whatever the method, target, query,
//! Content-Encoding and body, the answer is 200 or a 4xx `Status` with that code, never a 5xx or a panic; a refused
//! request changes nothing stored; an accepted write's path, query and body each parse on their own.
//!
//! Input: `METHOD TARGET\n[Content-Encoding: VALUE\n]BODY`.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use custom_metrics_apiserver::cluster::BuiltinMapper;
use custom_metrics_apiserver::ingest::{Ingest, OpenGate, parse_body, parse_path, parse_query};
use custom_metrics_apiserver::quantity::{Format, Quantity};
use custom_metrics_apiserver::selector::parse_labels_map;
use custom_metrics_apiserver::store::{CustomSeriesId, Limits, MemoryStore, MetricStore, SampleWrite, SeriesLabels};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;

const SEEDED: CustomSeriesId<'static> =
    CustomSeriesId { resource: "pods", namespace: "default", name: "web-1", metric: "q" };

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fuzz_target!(|data: &[u8]| {
    let (head, rest) = split_line(data);
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let Some((method, target)) = head.split_once(' ') else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(target);
    let body = match rest.strip_prefix(b"Content-Encoding: ") {
        Some(after) => {
            let (value, body) = split_line(after);
            builder = builder.header(http::header::CONTENT_ENCODING, value);
            body
        }
        None => rest,
    };
    let Ok(request) = builder.body(Full::new(Bytes::copy_from_slice(body))) else {
        return;
    };
    let uri = request.uri().clone();
    let method = request.method().clone();
    runtime().block_on(check(request, uri, method, body));
});

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

async fn check(request: http::Request<Full<Bytes>>, uri: http::Uri, method: http::Method, body: &[u8]) {
    let store = Arc::new(MemoryStore::new(Limits { max_series: 3, ..Limits::default() }));
    let seeded_labels = SeriesLabels::from_map(parse_labels_map("foo=bar").expect("labels"));
    let write = |value: i64, labels: &SeriesLabels| SampleWrite {
        value: Quantity::from_i64(value, Format::DecimalSI),
        labels: labels.clone(),
        ttl: None,
        kind: Default::default(),
    };
    store.put_custom(SEEDED, write(11, &SeriesLabels::empty())).await.expect("seed");
    store.put_external("default", "ext", write(13, &seeded_labels)).await.expect("seed");
    let before =
        (store.get_custom(SEEDED).await.expect("get"), store.list_external("default", "ext").await.expect("list"));

    let ingest = Ingest::new(store.clone(), Arc::new(BuiltinMapper::default()), None, 4096);
    let response = ingest.handle(request, &OpenGate).await;
    let code = response.status();
    let answer = response.into_body().collect().await.expect("a full body").to_bytes();
    let text = String::from_utf8_lossy(&answer);
    assert!(code == http::StatusCode::OK || code.is_client_error(), "{method} {uri}: {code} {text}");

    if code == http::StatusCode::OK {
        assert!(parse_path(uri.path()).is_ok(), "{method} {uri} accepted, its path refused");
        assert!(parse_query(uri.query()).is_ok(), "{method} {uri} accepted, its query refused");
        if method == http::Method::POST {
            assert!(parse_body(body).is_ok(), "{method} {uri} accepted with a body that does not parse: {body:?}");
            assert!(store.series_count() <= 3);
        } else {
            assert_eq!(method, http::Method::DELETE, "{method} {uri} accepted");
            assert_eq!(store.series_count(), 1, "{method} {uri}: a DELETE removed something else than one series");
        }
        return;
    }
    let status: serde_json::Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|e| panic!("{method} {uri}: {code} without a Status ({e}): {text}"));
    assert_eq!(status["kind"], "Status", "{method} {uri}: {text}");
    assert_eq!(status["code"], code.as_u16(), "{method} {uri}: {text}");
    assert_eq!(store.series_count(), 2, "{method} {uri} refused with {code} but the store changed");
    let after =
        (store.get_custom(SEEDED).await.expect("get"), store.list_external("default", "ext").await.expect("list"));
    assert_eq!(after, before, "{method} {uri} refused with {code} but a stored value changed");
}
