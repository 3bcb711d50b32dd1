//! Path decoding: the write routes (ingest::parse_path) and the read routes (api::route::parse) never panic, and
//! what they decode is what the path says: the segments of a matched route, percent-encoded again (every byte
//! but letters and digits), give the same route; a path without `%` decodes to its own segments.
#![no_main]

use custom_metrics_apiserver::api::route::{self, ApiRoute, CustomTarget};
use custom_metrics_apiserver::ingest::{WriteTarget, parse_path};
use custom_metrics_apiserver::path::decode_segments;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(segments) = decode_segments(text) {
        assert_eq!(segments.len(), text.bytes().filter(|&b| b == b'/').count() + 1, "{text:?}");
        if !text.contains('%') {
            assert_eq!(segments.join("/"), text, "{text:?} without escapes decoded to something else");
        }
    }
    // The fuzzer's text is tried as it is and under both route prefixes.
    for path in [text.to_string(), format!("/write-metrics/{text}"), format!("/write-external-metrics/{text}")] {
        check_write(&path);
    }
    for path in [
        text.to_string(),
        format!("/apis/{text}"),
        format!("/apis/custom.metrics.k8s.io/v1beta2/{text}"),
        format!("/apis/external.metrics.k8s.io/v1beta1/{text}"),
    ] {
        check_read(&path);
    }
});

fn enc(segment: &str) -> String {
    utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string()
}

fn check_write(path: &str) {
    match parse_path(path) {
        Ok(target) => {
            let rebuilt = match &target {
                WriteTarget::Custom { namespace: Some(ns), resource, name, metric } => {
                    format!("/write-metrics/namespaces/{}/{}/{}/{}", enc(ns), enc(resource), enc(name), enc(metric))
                }
                WriteTarget::Custom { namespace: None, resource, name, metric } => {
                    format!("/write-metrics/{}/{}/metrics/{}", enc(resource), enc(name), enc(metric))
                }
                WriteTarget::External { namespace, metric } => {
                    format!("/write-external-metrics/namespaces/{}/{}", enc(namespace), enc(metric))
                }
            };
            let again = parse_path(&rebuilt).unwrap_or_else(|e| panic!("{rebuilt:?} (from {path:?}): {e}"));
            assert_eq!(again, target, "{path:?} -> {rebuilt:?}");
            let segments_nonempty = match &target {
                WriteTarget::Custom { namespace, resource, name, metric } => {
                    namespace.as_ref().is_none_or(|n| !n.is_empty())
                        && !resource.is_empty()
                        && !name.is_empty()
                        && !metric.is_empty()
                }
                WriteTarget::External { namespace, metric } => !namespace.is_empty() && !metric.is_empty(),
            };
            assert!(segments_nonempty, "{path:?} matched with an empty segment: {target:?}");
        }
        Err(e) => {
            let code = e.into_response(false).status();
            assert!(code.is_client_error(), "{path:?}: {code}");
        }
    }
}

fn check_read(path: &str) {
    let Ok(Some(route)) = route::parse(path) else {
        return;
    };
    let custom = |version: &route::CustomVersion, tail: String| {
        format!("/apis/custom.metrics.k8s.io/{}/{tail}", version.as_str())
    };
    let rebuilt = match &route {
        ApiRoute::GroupList => "/apis".to_string(),
        ApiRoute::Group(group) => format!("/apis/{group}"),
        ApiRoute::CustomResources(version) => custom(version, String::new()),
        ApiRoute::ExternalResources => "/apis/external.metrics.k8s.io/v1beta1".to_string(),
        ApiRoute::External { namespace, metric } => {
            format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{}", enc(namespace), enc(metric))
        }
        ApiRoute::Custom(version, target) => custom(version, custom_tail(target)),
    };
    let again = route::parse(&rebuilt).unwrap_or_else(|e| panic!("{rebuilt:?} (from {path:?}): {e:?}"));
    assert_eq!(again, Some(route), "{path:?} -> {rebuilt:?}");
}

fn custom_tail(target: &CustomTarget) -> String {
    let ns_prefix = |ns: &Option<String>| ns.as_ref().map(|n| format!("namespaces/{}/", enc(n))).unwrap_or_default();
    match target {
        CustomTarget::Object { namespace: None, resource, name, metric } if resource == "namespaces" => {
            format!("namespaces/{}/metrics/{}", enc(name), enc(metric))
        }
        CustomTarget::Object { namespace, resource, name, metric } => {
            format!("{}{}/{}/{}", ns_prefix(namespace), enc(resource), enc(name), enc(metric))
        }
        CustomTarget::AllObjects { namespace, resource, metric } => {
            format!("{}{}/*/{}", ns_prefix(namespace), enc(resource), enc(metric))
        }
        CustomTarget::ObjectMetrics { namespace: None, resource, name } if resource == "namespaces" => {
            format!("namespaces/{}/", enc(name))
        }
        CustomTarget::ObjectMetrics { namespace, resource, name } => {
            format!("{}{}/{}/", ns_prefix(namespace), enc(resource), enc(name))
        }
    }
}
