//! Serde structs for the wire payloads (docs/wire-contract.md §2 and §1.2). Field order is the wire order. No IO.

// The fields are the wire fields, documented by docs/wire-contract.md §2 and by Kubernetes' API reference.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::quantity::Quantity;
use crate::response::EmptyObject;

/// `ObjectReference` as `describedObject`: every key omitted when empty.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReference<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    #[serde(rename = "apiVersion", skip_serializing_if = "str::is_empty")]
    pub api_version: &'a str,
}

/// A list of some item type with Kubernetes' list envelope, serialized in one go (list responses are written an
/// item at a time by [`super::list`], to the same bytes).
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub kind: &'static str,
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub metadata: EmptyObject,
    pub items: Vec<T>,
}

impl<T: Serialize> List<T> {
    /// A list of `kind` in `api_version`.
    pub fn new(kind: &'static str, api_version: &'static str, items: Vec<T>) -> Self {
        List { kind, api_version, metadata: EmptyObject {}, items }
    }
}

/// custom.metrics.k8s.io/v1beta1 `MetricValue`.
#[derive(Debug, Serialize)]
pub struct MetricValueV1Beta1<'a> {
    #[serde(rename = "describedObject")]
    pub described_object: ObjectReference<'a>,
    #[serde(rename = "metricName")]
    pub metric_name: &'a str,
    pub timestamp: Timestamp,
    /// The span a rate was computed over (docs/wire-contract.md §4.6); absent for stored values.
    #[serde(rename = "window", skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: Quantity,
    /// Always present: `null` without a metric selector. The `LabelSelector`, serialized once for all items.
    pub selector: Option<&'a RawValue>,
}

/// custom.metrics.k8s.io/v1beta2 `MetricIdentifier`.
#[derive(Debug, Serialize)]
pub struct MetricIdentifier<'a> {
    pub name: &'a str,
    /// Always present: `null` without a metric selector. The `LabelSelector`, serialized once for all items.
    pub selector: Option<&'a RawValue>,
}

/// custom.metrics.k8s.io/v1beta2 `MetricValue`.
#[derive(Debug, Serialize)]
pub struct MetricValueV1Beta2<'a> {
    #[serde(rename = "describedObject")]
    pub described_object: ObjectReference<'a>,
    pub metric: MetricIdentifier<'a>,
    pub timestamp: Timestamp,
    /// The span a rate was computed over (docs/wire-contract.md §4.6); absent for stored values.
    #[serde(rename = "windowSeconds", skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// external.metrics.k8s.io/v1beta1 `ExternalMetricValue`.
#[derive(Debug, Serialize)]
pub struct ExternalMetricValue<'a> {
    #[serde(rename = "metricName")]
    pub metric_name: &'a str,
    /// Always present: `{}` without labels.
    #[serde(rename = "metricLabels")]
    pub metric_labels: BTreeMap<&'a str, &'a str>,
    pub timestamp: Timestamp,
    /// The span a rate was computed over (docs/wire-contract.md §4.6); absent for stored values.
    #[serde(rename = "window", skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// `GroupVersionForDiscovery`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GroupVersionForDiscovery {
    #[serde(rename = "groupVersion")]
    pub group_version: &'static str,
    pub version: &'static str,
}

/// `APIGroup`; `kind` and `apiVersion` only when it is the top-level object.
#[derive(Debug, Serialize)]
pub struct ApiGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    pub api_version: Option<&'static str>,
    pub name: &'static str,
    pub versions: Vec<GroupVersionForDiscovery>,
    /// Always present for a served group; `None` would serialize as `null`.
    #[serde(rename = "preferredVersion")]
    pub preferred_version: Option<GroupVersionForDiscovery>,
}

/// `APIGroupList`.
#[derive(Debug, Serialize)]
pub struct ApiGroupList {
    pub kind: &'static str,
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub groups: Vec<ApiGroup>,
}

/// `APIResource` as the metrics APIs list them.
#[derive(Debug, Serialize)]
pub struct ApiResource {
    pub name: String,
    #[serde(rename = "singularName")]
    pub singular_name: &'static str,
    pub namespaced: bool,
    pub kind: &'static str,
    pub verbs: [&'static str; 1],
}

/// `APIResourceList`.
#[derive(Debug, Serialize)]
pub struct ApiResourceList {
    pub kind: &'static str,
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    #[serde(rename = "groupVersion")]
    pub group_version: &'static str,
    pub resources: Vec<ApiResource>,
}

/// A write time on the wire: RFC 3339 in UTC with whole seconds (`2026-07-01T10:00:00Z`), as Kubernetes'
/// `metav1.Time` marshals. Serialized straight into the response buffer, without an intermediate string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = u64::try_from(self.0.div_euclid(1000)).unwrap_or(0);
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fmt::Display::fmt(&humantime::format_rfc3339_seconds(time), f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_whole_seconds() {
        assert_eq!(Timestamp(1_782_900_000_999).to_string(), "2026-07-01T10:00:00Z");
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(serde_json::to_string(&Timestamp(0)).unwrap(), "\"1970-01-01T00:00:00Z\"");
    }
}
