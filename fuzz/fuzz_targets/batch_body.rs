//! Batch bodies (ingest::parse_batch, docs/wire-contract.md §4.4): never panic; a body refused whole is a 4xx; an
//! item refused names itself by index (`items[i]` or `items[i].field`) with a 4xx; an accepted item has a non-empty namespace
//! where it has one, valid labels, a TTL of at least 1ms, and a value that reads back the
//! same as a single write's body.
#![no_main]

use std::cmp::Ordering;

use custom_metrics_apiserver::ingest::{WriteTarget, parse_batch, parse_body};
use custom_metrics_apiserver::selector::{validate_label_key, validate_label_value_for_key};
use libfuzzer_sys::fuzz_target;

const MAX_ITEMS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let items = match parse_batch(data, MAX_ITEMS) {
        Ok(items) => items,
        Err(error) => {
            let code = error.into_response(false).status();
            assert!(code.is_client_error(), "{data:?}: {code}");
            return;
        }
    };
    assert!(items.len() <= MAX_ITEMS);
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(item) => {
                if let WriteTarget::Custom { namespace: Some(namespace), .. }
                | WriteTarget::External { namespace, .. } = &item.target
                {
                    assert!(!namespace.is_empty(), "{data:?}: empty namespace accepted");
                }
                for (key, value) in item.labels.iter() {
                    assert!(validate_label_key(key).is_ok(), "{data:?}: key {key:?}");
                    assert!(validate_label_value_for_key(key, value).is_ok(), "{data:?}: value {value:?}");
                }
                if let Some(ttl) = item.ttl {
                    assert!(ttl.as_millis() >= 1, "{data:?}: ttl {ttl:?}");
                }
                let canonical = item.value.to_string();
                let again = parse_body(format!("\"{canonical}\"").as_bytes()).unwrap();
                assert_eq!(again.cmp_value(&item.value), Ordering::Equal, "{data:?}");
            }
            Err(causes) => {
                assert!(!causes.is_empty(), "{data:?}: item {index} refused without a cause");
                let prefix = format!("items[{index}]");
                for cause in causes {
                    assert!(
                        cause.field == prefix || cause.field.starts_with(&format!("{prefix}.")),
                        "{data:?}: {}",
                        cause.field
                    );
                    let code = cause.error.into_response(false).status();
                    assert!(code.is_client_error(), "{data:?}: {code}");
                }
            }
        }
    }
});
