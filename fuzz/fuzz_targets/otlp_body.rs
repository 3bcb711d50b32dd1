//! OTLP export bodies (ingest::otlp, docs/wire-contract.md §4.7), decoded as binary protobuf and as OTLP JSON and
//! mapped: never panic; a body refused whole is a 4xx; more than MAX_POINTS data points are refused (413); every data
//! point is either mapped onto values or rejected with a reason, never both; every value has a metric name and labels
//! the write API accepts, a quantity that reads back the same, and a resource whose target is valid.
#![no_main]

use std::cmp::Ordering;
use std::collections::HashSet;

use custom_metrics_apiserver::ingest::otlp::{Encoding, ResourceTarget, decode, map_export};
use custom_metrics_apiserver::ingest::parse_body;
use custom_metrics_apiserver::response::RequestError;
use custom_metrics_apiserver::selector::{validate_label_key, validate_label_value_for_key};
use libfuzzer_sys::fuzz_target;

const MAX_POINTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let export = match decode(bytes::Bytes::copy_from_slice(data), encoding) {
            Ok(export) => export,
            Err(error) => {
                assert!(matches!(error, RequestError::BadOtlpBody(_)), "{error}");
                assert!(error.into_response(false).status().is_client_error());
                continue;
            }
        };
        let mapped = match map_export(&export, MAX_POINTS) {
            Ok(mapped) => mapped,
            Err(error) => {
                assert!(matches!(error, RequestError::TooManyOtlpPoints { limit: MAX_POINTS }), "{error}");
                continue;
            }
        };
        assert!(mapped.total <= MAX_POINTS);
        let rejected: HashSet<usize> = mapped.rejected.iter().map(|r| r.point).collect();
        assert_eq!(rejected.len(), mapped.rejected.len(), "a point rejected twice: {:?}", mapped.rejected);
        for r in &mapped.rejected {
            assert!(r.point < mapped.total && !r.reason.is_empty(), "{r:?}");
        }
        for value in &mapped.values {
            assert!(value.point < mapped.total, "{value:?}");
            assert!(!rejected.contains(&value.point), "point {} both stored and rejected", value.point);
            assert!(!value.metric.is_empty() && value.metric.len() <= 253, "{value:?}");
            assert!(value.metric.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%'), "{value:?}");
            for (name, label) in value.labels.iter() {
                assert!(!label.is_empty(), "{value:?}");
                assert!(validate_label_key(name).is_ok(), "{value:?}");
                assert!(validate_label_value_for_key(name, label).is_ok(), "{value:?}");
            }
            match &mapped.targets[value.resource] {
                Ok(ResourceTarget::Object { name, .. }) => assert!(!name.is_empty()),
                Ok(ResourceTarget::External { namespace }) => assert!(!namespace.is_empty()),
                Err(reason) => panic!("a value of a resource that maps to nothing: {reason}"),
            }
            let canonical = value.value.to_string();
            let again = parse_body(format!("\"{canonical}\"").as_bytes()).unwrap();
            assert_eq!(again.cmp_value(&value.value), Ordering::Equal, "{value:?}");
        }
    }
});
