//! Write-body and write-query parsing (ingest::parse_body, ingest::parse_query): never panic; every refusal is a
//! 4xx; an accepted body means the quantity its canonical text means, however it is written (raw, JSON string,
//! JSON number, padded with white space); an accepted query has a positive TTL and valid labels, and its
//! canonical re-encoding parses to the same query.
#![no_main]

use std::cmp::Ordering;

use custom_metrics_apiserver::ingest::{parse_body, parse_query};
use custom_metrics_apiserver::quantity::Quantity;
use custom_metrics_apiserver::selector::{validate_label_key, validate_label_value_for_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_body(data);
    if let Ok(text) = std::str::from_utf8(data) {
        check_query(text);
    }
});

fn check_body(data: &[u8]) {
    let q = match parse_body(data) {
        Ok(q) => q,
        Err(e) => {
            let code = e.into_response(false).status();
            assert!(code.is_client_error(), "{data:?}: {code}");
            return;
        }
    };
    let canonical = q.to_string();
    for body in [canonical.clone(), format!("\"{canonical}\""), format!(" \t\"  {canonical} \"\r\n ")] {
        let again = parse_body(body.as_bytes()).unwrap_or_else(|e| panic!("{body:?} (from {data:?}): {e}"));
        assert_eq!(again.cmp_value(&q), Ordering::Equal, "{data:?} -> {body:?}");
        // Same text unless the format changed (a BinarySI value printed as a plain number is DecimalSI).
        if again.format() == q.format() {
            assert_eq!(again.to_string(), canonical, "{data:?} -> {body:?}");
        }
    }
    // A raw quantity body means exactly what the quantity parser says.
    if let Ok(text) = std::str::from_utf8(data)
        && !text.trim().starts_with('"')
    {
        let direct = Quantity::parse(text.trim()).unwrap_or_else(|e| panic!("{text:?} accepted as body only: {e}"));
        assert_eq!(direct, q, "{text:?}");
    }
}

fn check_query(text: &str) {
    let query = match parse_query(Some(text)) {
        Ok(query) => query,
        Err(e) => {
            let code = e.into_response(false).status();
            assert!(code.is_client_error(), "{text:?}: {code}");
            return;
        }
    };
    let labels = query.labels.to_map();
    for (k, v) in &labels {
        assert!(validate_label_key(k).is_ok(), "{text:?}: invalid key {k:?} accepted");
        assert!(validate_label_value_for_key(k, v).is_ok(), "{text:?}: invalid value {v:?} accepted");
    }
    let mut rebuilt = String::new();
    if let Some(ttl) = query.ttl {
        assert!(!ttl.is_zero(), "{text:?}: zero TTL accepted");
        match ttl.subsec_nanos() {
            0 => rebuilt.push_str(&format!("ttl={}&", ttl.as_secs())),
            nanos => rebuilt.push_str(&format!("ttl={}s{nanos}ns&", ttl.as_secs())),
        }
    }
    let printed = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let encoded: String = form_encode(&printed);
    rebuilt.push_str(&format!("labels={encoded}"));
    let again = parse_query(Some(&rebuilt)).unwrap_or_else(|e| panic!("{rebuilt:?} (from {text:?}): {e}"));
    assert_eq!(again.labels.to_map(), labels, "{text:?} -> {rebuilt:?}");
    assert_eq!(again.ttl, query.ttl, "{text:?} -> {rebuilt:?}");
}

fn form_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
