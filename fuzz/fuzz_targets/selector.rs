//! Label selector parsing (`labelSelector`, `metricLabelSelector`) and the write route's `labels` map: never
//! panic; a parsed selector's text parses back to the same selector and prints identically; the
//! metav1.LabelSelector conversion round-trips; a labels map's own text parses back to the same map and a
//! selector made of it matches it.
#![no_main]

use std::collections::BTreeMap;

use custom_metrics_apiserver::api::ReadQuery;
use custom_metrics_apiserver::selector::{
    Selector, parse_labels_map, validate_label_key, validate_label_value_for_key,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same bytes serve as selector, as labels map and, split at the first `\n`, as selector + labels.
    let (selector_text, labels_text) = text.split_once('\n').unwrap_or((text, text));
    let labels = check_labels_map(labels_text);
    check_selector(text, None);
    check_selector(selector_text, labels.as_ref());

    // The read query decodes then parses the same way (form encoding: `+` is a space).
    let query = ReadQuery::parse(Some(text));
    let _ = query.label_selector();
    let _ = query.metric_label_selector();
});

fn check_selector(text: &str, labels: Option<&BTreeMap<String, String>>) {
    let Ok(selector) = Selector::parse(text) else {
        return;
    };
    let printed = selector.to_string();
    let again =
        Selector::parse(&printed).unwrap_or_else(|e| panic!("{printed:?}, printed from {text:?}, does not parse: {e}"));
    assert_eq!(again, selector, "{text:?} -> {printed:?} is another selector");
    assert_eq!(again.to_string(), printed, "printing {text:?} is not idempotent");
    for r in selector.requirements() {
        assert!(validate_label_key(r.key()).is_ok(), "{text:?}: invalid key {:?} accepted", r.key());
    }

    if let Ok(Some(label_selector)) = selector.to_label_selector() {
        let back = Selector::from_label_selector(&label_selector)
            .unwrap_or_else(|e| panic!("{text:?}: its LabelSelector is refused: {e}"));
        assert_eq!(
            back.to_label_selector().ok().flatten().as_ref(),
            Some(&label_selector),
            "{text:?}: LabelSelector does not round-trip"
        );
        let json = serde_json::to_string(&label_selector).expect("a LabelSelector serializes");
        let decoded = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not decode: {e}"));
        assert_eq!(label_selector, decoded, "{json}");
    }

    if let Some(labels) = labels {
        // Matching is total, and the parsed and re-parsed selectors agree.
        assert_eq!(selector.matches(labels), again.matches(labels), "{text:?} on {labels:?}");
    }
}

fn check_labels_map(text: &str) -> Option<BTreeMap<String, String>> {
    let map = parse_labels_map(text).ok()?;
    for (k, v) in &map {
        assert!(validate_label_key(k).is_ok(), "{text:?}: invalid key {k:?} accepted");
        assert!(validate_label_value_for_key(k, v).is_ok(), "{text:?}: invalid value {v:?} accepted");
    }
    let printed = map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let again = parse_labels_map(&printed).unwrap_or_else(|e| panic!("{printed:?} from {text:?}: {e}"));
    assert_eq!(again, map, "{text:?} -> {printed:?}");
    if !map.is_empty() {
        let selector = Selector::parse(&printed)
            .unwrap_or_else(|e| panic!("labels {printed:?} from {text:?} are no selector: {e}"));
        assert!(selector.matches(&map), "selector {printed:?} does not match its own labels");
    }
    Some(map)
}
