//! Push bodies and paths (ingest::exposition, ingest::push, docs/wire-contract.md §4.5): never panic; a body or path
//! refused whole is a 4xx; at most MAX_SAMPLES samples are kept; every kept sample has a valid metric name and unique
//! label names; a mapped sample has a finite value stored as a quantity that reads back the same, and labels the
//! store accepts; a grouping key holds a non-empty job and unique names.
#![no_main]

use std::cmp::Ordering;

use custom_metrics_apiserver::ingest::exposition::{ParseError, parse_protobuf, parse_text};
use custom_metrics_apiserver::ingest::parse_body;
use custom_metrics_apiserver::ingest::push::{ObjectLabels, map_sample, parse_grouping_key};
use custom_metrics_apiserver::selector::{validate_label_key, validate_label_value_for_key};
use libfuzzer_sys::fuzz_target;

const MAX_SAMPLES: usize = 16;

fuzz_target!(|data: &[u8]| {
    // The first line, as the path after /metrics/job/.
    let first_line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let path = format!("/metrics/job/{}", String::from_utf8_lossy(first_line));
    let key = match parse_grouping_key(&path) {
        Ok(key) => {
            let names: Vec<&str> = key.labels().iter().map(|(k, _)| k.as_str()).collect();
            assert!(names.contains(&"job"), "{path:?}");
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{path:?}: {names:?}");
            assert!(key.labels().iter().any(|(k, v)| k == "job" && !v.is_empty()), "{path:?}");
            key
        }
        Err(error) => {
            assert!(error.into_response(false).status().is_client_error(), "{path:?}");
            parse_grouping_key("/metrics/job/fuzz/namespace/shop").unwrap()
        }
    };
    let objects = ObjectLabels::default();
    for parsed in [parse_text(data, MAX_SAMPLES), parse_protobuf(data, MAX_SAMPLES)] {
        let samples = match parsed {
            Ok(samples) => samples,
            Err(ParseError::Syntax(message)) => {
                assert!(!message.is_empty());
                continue;
            }
            Err(ParseError::TooManySamples { limit }) => {
                assert_eq!(limit, MAX_SAMPLES);
                continue;
            }
        };
        assert!(samples.len() <= MAX_SAMPLES);
        for sample in &samples {
            assert!(!sample.name.is_empty() && !sample.name.starts_with(|c: char| c.is_ascii_digit()), "{data:?}");
            let mut names: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(names.len(), before, "{data:?}: duplicate label names");
            let _ = sample.describe();
            if let Ok(mapped) = map_sample(sample, &key, &objects) {
                assert!(sample.value.is_finite(), "{data:?}");
                assert!(mapped.namespace.is_some() || mapped.object.is_some(), "{data:?}");
                for (name, value) in &mapped.labels {
                    assert!(validate_label_key(name).is_ok(), "{data:?}: {name:?}");
                    assert!(validate_label_value_for_key(name, value).is_ok(), "{data:?}: {value:?}");
                }
                let canonical = mapped.value.to_string();
                let again = parse_body(format!("\"{canonical}\"").as_bytes()).unwrap();
                assert_eq!(again.cmp_value(&mapped.value), Ordering::Equal, "{data:?}");
            }
        }
    }
});
