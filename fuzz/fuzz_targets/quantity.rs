//! Quantity parsing: never panics, and every accepted text has a canonical form that parses back to the same
//! value and, in the same format, prints identically (canonicalization is idempotent); the sign is symmetric; serde
//! agrees.
#![no_main]

use std::cmp::Ordering;

use custom_metrics_apiserver::quantity::{MAX_DIGITS, MAX_EXPONENT, Quantity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(q) = Quantity::parse(text) else {
        return;
    };
    check_invariants(&q, text);

    let canonical = q.to_string();
    let again = Quantity::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical {canonical:?} of {text:?} does not parse: {e}"));
    assert_eq!(again.cmp_value(&q), Ordering::Equal, "{text:?} -> {canonical:?} changed the value");
    // Printing is idempotent once the format is the one the canonical text parses as: a BinarySI value that is
    // not a multiple of 1024 prints as a plain number (as Go does), which parses back as DecimalSI.
    if again.format() == q.format() {
        assert_eq!(again.to_string(), canonical, "canonicalization of {text:?} is not idempotent");
    }
    let third = Quantity::parse(&again.to_string()).unwrap_or_else(|e| panic!("{again} does not parse: {e}"));
    assert_eq!((third, third.to_string()), (again, again.to_string()), "{text:?} has no canonical fixed point");

    // The derived accessors never panic and agree on the sign.
    let (milli, value) = (q.milli_value(), q.value());
    assert_eq!(milli.signum(), q.mantissa().signum() as i64, "{text:?}: milli_value {milli} has the wrong sign");
    assert_eq!(value.signum(), q.mantissa().signum() as i64, "{text:?}: value {value} has the wrong sign");

    // An explicit sign on an unsigned text negates the value and keeps its format.
    if text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        let negative = Quantity::parse(&format!("-{text}"))
            .unwrap_or_else(|e| panic!("-{text:?} does not parse though {text:?} does: {e}"));
        assert_eq!(negative.mantissa(), -q.mantissa(), "-{text:?}");
        assert_eq!(negative.exponent(), q.exponent(), "-{text:?}");
        assert_eq!(negative.format(), q.format(), "-{text:?}");
        let positive = Quantity::parse(&format!("+{text}")).unwrap_or_else(|e| panic!("+{text:?}: {e}"));
        assert_eq!(positive, q, "+{text:?}");
    }

    // JSON: the canonical string, and back.
    let json = serde_json::to_string(&q).expect("a quantity serializes");
    assert_eq!(json, format!("\"{canonical}\""));
    let decoded: Quantity = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not decode: {e}"));
    assert_eq!(decoded.cmp_value(&q), Ordering::Equal, "{json}");
});

/// The representation documented in src/quantity.rs.
fn check_invariants(q: &Quantity, text: &str) {
    let (m, e) = (q.mantissa(), q.exponent());
    if m == 0 {
        assert_eq!(e, 0, "{text:?}: zero with exponent {e}");
        assert!(q.is_zero());
        return;
    }
    assert!(m % 10 != 0, "{text:?}: mantissa {m} is not normalized");
    assert!(m.unsigned_abs().to_string().len() <= MAX_DIGITS, "{text:?}: mantissa {m} too long");
    assert!((-9..=MAX_EXPONENT).contains(&e), "{text:?}: exponent {e} out of range");
}
