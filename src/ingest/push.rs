//! Pushgateway-compatible pushes: `PUT`, `POST` and `DELETE` on `/metrics/job/{job}{/{label}/{value}}`
//! (docs/wire-contract.md §4.5). A Prometheus client's push (Go's `push` package, Python's `push_to_gateway`) works
//! by pointing its gateway URL at the adapter.
//!
//! The steps: the path becomes the grouping key (`@base64` values decoded as Pushgateway decodes them); the body is
//! read (`--max-batch-body-bytes`, after gzip decompression too) and parsed ([`super::exposition`]); every sample is
//! mapped onto a series (custom on the object its object label names, or external in its namespace) and checked as
//! a batch item is; then, under the group's lock, the series the push replaces are found in [`PushGroups`], the
//! gate admits each distinct `create` (and `delete` for the replaced series) once, the samples are stored all or
//! none with the batch machinery ([`super::batch`]), the replaced series are deleted and the group remembered.

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::{Method, StatusCode, header};

use super::batch::{Ready, SeriesKey, authorize_series};
use super::exposition::{self, Kind, ParseError, PushedSample};
use super::{FastMap, FastSet, Ingest, WriteGate, validate_metric_name, validate_namespace, validate_object_name};
use crate::clock::{Clock, SystemClock};
use crate::cluster::MapperError;
use crate::path::decode_segments;
use crate::quantity::Quantity;
use crate::response::{self, BatchCause, HttpResponse, RequestError};
use crate::selector::{validate_label_key, validate_label_value_for_key};
use crate::store::{CustomSeriesId, SampleWrite, SeriesKind, SeriesLabels};

/// What every push path starts with: the route table's prefix check. `/metrics` alone is the scrape endpoint.
pub const PUSH_PREFIX: &str = "/metrics/job";

/// Whether `path` is a push path: `/metrics/job/...` or `/metrics/job@base64/...`.
pub fn is_push_path(path: &str) -> bool {
    path.starts_with("/metrics/job/") || path.starts_with("/metrics/job@base64/")
}

/// The default of `--object-labels`: kube-state-metrics' label names of the objects an HPA scales on or reads.
pub const DEFAULT_OBJECT_LABELS: &str = "pod,service,deployment,statefulset,daemonset,replicaset,job_name=job,cronjob,ingress,horizontalpodautoscaler,persistentvolumeclaim,node";

/// The default of `--max-push-series`.
pub const DEFAULT_MAX_PUSH_SERIES: usize = 100_000;

/// One object label: a sample label whose value names an object of `resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLabel {
    /// The label name, e.g. `pod`, `job_name`.
    pub label: String,
    /// The resource as written (resolved by the `ResourceMapper` when used), e.g. `pod`, `job`.
    pub resource: String,
}

/// `--object-labels`: `label` or `label=resource`, comma-separated, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLabels(Vec<ObjectLabel>);

impl ObjectLabels {
    /// The labels in the order they are tried.
    pub fn labels(&self) -> &[ObjectLabel] {
        &self.0
    }

    fn names(&self) -> String {
        self.0.iter().map(|o| o.label.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl Default for ObjectLabels {
    fn default() -> Self {
        // The default is a constant that the tests parse.
        DEFAULT_OBJECT_LABELS.parse().unwrap_or(ObjectLabels(Vec::new()))
    }
}

impl std::str::FromStr for ObjectLabels {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut labels: Vec<ObjectLabel> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (label, resource) = match entry.split_once('=') {
                Some((label, resource)) => (label.trim(), resource.trim()),
                None => (entry, entry),
            };
            let valid_label = label.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid_label {
                return Err(format!("{label:?} is not a Prometheus label name"));
            }
            if label == "namespace" || label == "job" {
                return Err(format!(
                    "{label:?} cannot be an object label: namespace gives the namespace and job is the push's job (kube-state-metrics names jobs job_name)"
                ));
            }
            if resource.is_empty() || resource.contains(['/', ' ']) {
                return Err(format!("{entry:?}: the resource after '=' must be a resource name such as pods"));
            }
            if labels.iter().any(|o| o.label == label) {
                return Err(format!("{label:?} is given twice"));
            }
            labels.push(ObjectLabel { label: label.to_string(), resource: resource.to_string() });
        }
        Ok(ObjectLabels(labels))
    }
}

/// A push's grouping key: `job` and the path's labels, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupingKey(Vec<(String, String)>);

impl GroupingKey {
    /// The labels, sorted by name; `job` among them.
    pub fn labels(&self) -> &[(String, String)] {
        &self.0
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses `/metrics/job/{job}{/{label}/{value}}`, `@base64` after `job` or a label name meaning that the value is
/// base64url-encoded (padding optional; `=` alone is the empty value), as Pushgateway reads it.
pub fn parse_grouping_key(path: &str) -> Result<GroupingKey, RequestError> {
    let bad = |message: String| RequestError::BadGroupingKey(message);
    let rest = path.strip_prefix("/metrics/").ok_or_else(|| bad("a push path starts with /metrics/job/".into()))?;
    let mut segments = decode_segments(rest).map_err(|e| bad(e.to_string()))?;
    // A trailing slash adds nothing, as in Pushgateway.
    if segments.len() > 2 && segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    if segments.len() % 2 != 0 {
        return Err(bad(format!(
            "odd number of components after /metrics/: the path is /metrics/job/<job> followed by <label>/<value> pairs, got {}",
            segments.len()
        )));
    }
    let mut labels: Vec<(String, String)> = Vec::with_capacity(segments.len() / 2);
    for pair in segments.chunks(2) {
        let (name, raw) = (pair[0].as_ref(), pair[1].as_ref());
        let (name, encoded) = match name.strip_suffix("@base64") {
            Some(name) => (name, true),
            None => (name, false),
        };
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.starts_with("__");
        if !valid {
            return Err(bad(format!("improper label name {name:?}")));
        }
        let value = if encoded {
            decode_base64(raw).map_err(|e| bad(format!("invalid base64 encoding for label {name}={raw:?}: {e}")))?
        } else if raw.is_empty() {
            return Err(bad(format!(
                "empty value for label {name}: an empty value is written {name}@base64/= (a path cannot carry an empty segment)"
            )));
        } else {
            raw.to_string()
        };
        if labels.iter().any(|(k, _)| k == name) {
            return Err(bad(format!("label {name} is given twice")));
        }
        labels.push((name.to_string(), value));
    }
    if labels.first().is_none_or(|(name, _)| name != "job") {
        return Err(bad("a push path starts with /metrics/job/".into()));
    }
    if labels[0].1.is_empty() {
        return Err(bad("job name is required".into()));
    }
    labels.sort();
    Ok(GroupingKey(labels))
}

/// Base64 with the URL and filename safe alphabet, trailing `=` ignored, as Pushgateway decodes it.
fn decode_base64(text: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "the decoded value is not UTF-8".to_string())
}

/// A sample mapped onto what it will be stored as, borrowing the sample and the grouping key; the object's resource
/// not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedSample<'a> {
    /// The family the sample belongs to (what a POST replaces).
    pub family: &'a Arc<str>,
    /// The namespace label, if any.
    pub namespace: Option<&'a str>,
    /// The object: index into the object labels and the object's name.
    pub object: Option<(usize, &'a str)>,
    /// The metric name.
    pub metric: &'a str,
    /// Labels, sorted by name: the sample's and the grouping key's, without `namespace` and the object label (which
    /// `namespace` goes back into for a cluster-scoped object).
    pub labels: Vec<(&'a str, &'a str)>,
    /// The value.
    pub value: Quantity,
    /// A counter family's samples and a summary's or histogram's `_count` and `_sum` are counters (their rate is
    /// served, docs/wire-contract.md §4.6); gauge and untyped samples are gauges.
    pub kind: SeriesKind,
}

/// Maps one sample (docs/wire-contract.md §4.5): its labels and the grouping key's together, empty values dropped;
/// a `namespace` and the first object label present make a custom value on that object, a `namespace` alone an
/// external series. The error says why the sample cannot be stored.
pub fn map_sample<'a>(
    sample: &'a PushedSample,
    key: &'a GroupingKey,
    objects: &ObjectLabels,
) -> Result<MappedSample<'a>, String> {
    if sample.timestamp_ms.is_some() {
        return Err("a pushed sample may not carry a timestamp (Pushgateway refuses them too): the adapter stamps each value when it stores it".into());
    }
    let value = finite_quantity(sample.value)?;
    let mut labels: Vec<(&'a str, &'a str)> = Vec::with_capacity(sample.labels.len() + key.labels().len());
    for (name, value) in &sample.labels {
        match key.get(name) {
            Some(grouped) if grouped != value => {
                return Err(format!(
                    "label {name} is {value:?} in the sample but {grouped:?} in the grouping key (the push path): a sample may repeat a grouping label only with the same value"
                ));
            }
            // The grouping key's copy is added below.
            Some(_) => {}
            None => labels.push((name, value)),
        }
    }
    labels.extend(key.labels().iter().map(|(name, value)| (name.as_str(), value.as_str())));
    // An empty label value is no label, as in Prometheus.
    labels.retain(|(_, value)| !value.is_empty());
    let mut take = |name: &str| labels.iter().position(|(k, _)| *k == name).map(|at| labels.swap_remove(at).1);
    let namespace = take("namespace");
    let object = objects.labels().iter().enumerate().find_map(|(index, o)| take(&o.label).map(|name| (index, name)));
    labels.sort_unstable_by_key(|(name, _)| *name);
    if namespace.is_none() && object.is_none() {
        return Err(format!(
            "the sample maps to nothing: without a namespace label it is neither a value on an object (namespace and one of the object labels {}) nor an external metric (namespace); add a namespace label to the sample or to the grouping key (/metrics/job/<job>/namespace/<namespace>)",
            objects.names()
        ));
    }
    let invalid = |what: &str, value: &str, e: RequestError| format!("the {what} {value:?} cannot be stored: {e}");
    if let Some(namespace) = namespace {
        validate_namespace(namespace).map_err(|e| invalid("namespace label", namespace, e))?;
    }
    if let Some((index, name)) = object {
        validate_object_name(name)
            .map_err(|e| invalid(&format!("{} label", objects.labels()[index].label), name, e))?;
    }
    validate_metric_name(&sample.name).map_err(|e| invalid("metric name", &sample.name, e))?;
    for (name, value) in &labels {
        validate_label_key(name)
            .and_then(|()| validate_label_value_for_key(name, value))
            .map_err(|e| format!("label {name}={value:?} cannot be stored: metric labels must be Kubernetes labels, which the read API selects on: {e}"))?;
    }
    // A histogram's or summary's `_count` and `_sum` only grow, as a counter does (OTLP's cumulative ones too, §4.7).
    let kind = match sample.kind {
        Kind::Counter | Kind::Summary | Kind::Histogram => SeriesKind::Counter,
        Kind::Gauge | Kind::Untyped => SeriesKind::Gauge,
    };
    Ok(MappedSample { family: &sample.family, namespace, object, metric: &sample.name, labels, value, kind })
}

/// A pushed float as a quantity, NaN and ±Inf refused with the reason (pushes and OTLP exports, §4.5, §4.7).
pub(super) fn finite_quantity(value: f64) -> Result<Quantity, String> {
    if !value.is_finite() {
        return Err(format!(
            "the value is {}: a metric value must be a finite number (Kubernetes quantities have no NaN or infinity)",
            if value.is_nan() { "NaN".to_string() } else { format!("{}Inf", if value > 0.0 { "+" } else { "-" }) }
        ));
    }
    to_quantity(value)
}

/// A finite float as an exact quantity: its shortest decimal form, which reads back as the same float.
fn to_quantity(value: f64) -> Result<Quantity, String> {
    use std::io::Write;
    // Whole numbers (most counters and gauges) exactly, without formatting and parsing them: every integer below
    // 2^53 is a float exactly, and its shortest decimal is its digits.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        return Ok(Quantity::from_i64(value as i64, crate::quantity::Format::DecimalSI));
    }
    // The shortest decimal of any f64 (no exponent: up to 309 integer digits, or 324 fraction digits) fits.
    let mut buffer = [0u8; 400];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let text = match write!(cursor, "{value}") {
        Ok(()) => {
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            std::str::from_utf8(&buffer[..len]).map(Cow::Borrowed).unwrap_or_else(|_| Cow::Owned(format!("{value}")))
        }
        Err(_) => Cow::Owned(format!("{value}")),
    };
    Quantity::parse(&text).map_err(|e| format!("the value {value} cannot be stored as a quantity: {e}"))
}

/// The labels of a push's series, built once per distinct label set: the samples of one group mostly carry the same
/// labels (the grouping key's), so consecutive equal sets share one [`SeriesLabels`].
#[derive(Default)]
struct SharedLabels {
    last: SeriesLabels,
}

impl SharedLabels {
    /// `labels` (sorted by name) with `namespace` added when given.
    fn get(&mut self, labels: &[(&str, &str)], namespace: Option<&str>) -> SeriesLabels {
        let at = namespace.map(|_| labels.partition_point(|(name, _)| *name < "namespace"));
        let wanted = || {
            let (before, after) = labels.split_at(at.unwrap_or(labels.len()));
            before
                .iter()
                .copied()
                .chain(namespace.map(|namespace| ("namespace", namespace)))
                .chain(after.iter().copied())
        };
        let same = self.last.len() == labels.len() + usize::from(namespace.is_some())
            && self.last.iter().zip(wanted()).all(|((k, v), (name, value))| k.as_ref() == name && v.as_ref() == value);
        if !same {
            self.last = SeriesLabels::from_sorted(wanted().map(|(name, value)| (name.into(), value.into())).collect());
        }
        self.last.clone()
    }
}

/// A series remembered by [`PushGroups`]: an owned [`SeriesKey`], its names packed into one string (separated by
/// NUL, which no validated name contains) so that remembering a series is one allocation and comparing two is one
/// comparison: a push of 1,000 samples makes thousands of these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OwnedSeries {
    /// `resource NUL namespace NUL name NUL metric`.
    Custom(Box<str>),
    /// `namespace NUL metric`, and the labels.
    External(Box<str>, SeriesLabels),
}

/// Separates the names packed into an [`OwnedSeries`].
const SEPARATOR: char = '\0';

impl OwnedSeries {
    fn from_key(key: &SeriesKey<'_>) -> Self {
        let pack = |parts: &[&str]| {
            let mut packed = String::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
            for (at, part) in parts.iter().enumerate() {
                if at > 0 {
                    packed.push(SEPARATOR);
                }
                packed.push_str(part);
            }
            packed.into_boxed_str()
        };
        match key {
            SeriesKey::Custom { resource, namespace, name, metric } => {
                OwnedSeries::Custom(pack(&[resource, namespace, name, metric]))
            }
            SeriesKey::External { namespace, metric, labels } => {
                OwnedSeries::External(pack(&[namespace, metric]), labels.clone())
            }
        }
    }

    fn key(&self) -> SeriesKey<'_> {
        match self {
            OwnedSeries::Custom(packed) => {
                let mut parts = packed.splitn(4, SEPARATOR);
                let mut next = || parts.next().unwrap_or_default();
                let (resource, namespace, name, metric) = (next(), next(), next(), next());
                SeriesKey::Custom { resource: resource.into(), namespace, name, metric }
            }
            OwnedSeries::External(packed, labels) => {
                let (namespace, metric) = packed.split_once(SEPARATOR).unwrap_or((packed, ""));
                SeriesKey::External { namespace, metric, labels: labels.clone() }
            }
        }
    }

    fn describe(&self) -> String {
        match self.key() {
            SeriesKey::Custom { resource, namespace: "", name, metric } => {
                format!("{metric} of {resource} {name}")
            }
            SeriesKey::Custom { resource, namespace, name, metric } => {
                format!("{metric} of {resource} {namespace}/{name}")
            }
            SeriesKey::External { namespace, metric, labels } => {
                format!(
                    "external {}",
                    exposition::describe(metric, labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
                ) + &format!(" in {namespace}")
            }
        }
    }
}

/// What a group remembers of one of its series.
#[derive(Debug, Clone)]
struct Member {
    /// The family the series was pushed in (what a POST replaces), shared with the push's other samples of it.
    family: Arc<str>,
    /// When the store drops it (ms of the system clock; `i64::MAX` for never): then it is no longer remembered.
    deadline: i64,
}

#[derive(Default)]
struct GroupState {
    groups: FastMap<Arc<GroupingKey>, FastMap<OwnedSeries, Member>>,
    /// The group that last pushed each series: only it may replace or delete it.
    owners: FastMap<OwnedSeries, Arc<GroupingKey>>,
}

/// Locks serializing the pushes of one group (a group hashes to one of them): a PUT reads the group's series,
/// stores, deletes and remembers as one step.
const GROUP_LOCKS: usize = 64;

/// Which series belong to which push group (docs/architecture.md §12), bounded by `--max-push-series`. Kept in
/// memory by each replica: with several replicas (the Redis store), a group's pushes must reach one replica for a
/// PUT to remove what the previous PUT stored, and after a restart the first PUT of a group replaces nothing (its
/// old series expire with their TTL).
pub struct PushGroups {
    state: Mutex<GroupState>,
    locks: Box<[tokio::sync::Mutex<()>]>,
    max_series: usize,
}

impl PushGroups {
    /// Groups remembering at most `max_series` series together.
    pub fn new(max_series: usize) -> Self {
        PushGroups {
            state: Mutex::new(GroupState::default()),
            locks: (0..GROUP_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            max_series,
        }
    }

    /// Series remembered, all groups together.
    pub fn series_count(&self) -> usize {
        self.lock().owners.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        // A panic while holding the lock leaves consistent maps (every update is a few inserts and removes).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn group_lock(&self, key: &GroupingKey) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        &self.locks[(hasher.finish() % GROUP_LOCKS as u64) as usize]
    }

    /// The group's series that `families` covers (every one when `None`), still alive at `now`, but for those in
    /// `pushed` (only these are copied).
    fn members(
        &self,
        key: &GroupingKey,
        families: Option<&FastSet<&str>>,
        now: i64,
        pushed: &[OwnedSeries],
    ) -> Vec<OwnedSeries> {
        let state = self.lock();
        let Some(group) = state.groups.get(key) else { return Vec::new() };
        // The common case, a push of the same series as before, replaces nothing: told by counting, without a set.
        if pushed.len() >= group.len()
            && pushed.iter().filter(|series| group.contains_key(*series)).count() == group.len()
        {
            return Vec::new();
        }
        let except: FastSet<&OwnedSeries> = pushed.iter().collect();
        group
            .iter()
            .filter(|(series, member)| member.deadline > now && !except.contains(series))
            .filter(|(_, member)| families.is_none_or(|families| families.contains(member.family.as_ref())))
            .map(|(series, _)| series.clone())
            .collect()
    }

    /// Whether `added` series can be remembered once `removed` are forgotten; forgets expired series first when
    /// that is needed to make room.
    fn has_room(&self, added: &[OwnedSeries], removed: usize, now: i64) -> bool {
        let mut state = self.lock();
        let fits = |state: &GroupState| {
            let new = added.iter().filter(|series| !state.owners.contains_key(*series)).count();
            state.owners.len().saturating_sub(removed) + new <= self.max_series
        };
        if fits(&state) {
            return true;
        }
        let expired: Vec<OwnedSeries> = state
            .groups
            .values()
            .flat_map(|group| group.iter().filter(|(_, m)| m.deadline <= now).map(|(series, _)| series.clone()))
            .collect();
        for series in expired {
            forget(&mut state, &series);
        }
        fits(&state)
    }

    /// Records the outcome of a push: `removed` forgotten, `added` now the group's (taken from any other group).
    fn commit(&self, key: &GroupingKey, removed: &[OwnedSeries], added: Vec<(OwnedSeries, Member)>) {
        let mut state = self.lock();
        for series in removed {
            if state.owners.get(series).is_some_and(|owner| owner.as_ref() == key) {
                forget(&mut state, series);
            }
        }
        // The common case, a group pushing its own series again: updated in place, nothing allocated and no owner
        // looked up (a series is in a group's map exactly when the owners name that group).
        let added = match state.groups.get_mut(key) {
            Some(group) => {
                let mut others = Vec::new();
                for (series, member) in added {
                    match group.get_mut(&series) {
                        Some(existing) => *existing = member,
                        None => others.push((series, member)),
                    }
                }
                others
            }
            None => added,
        };
        if added.is_empty() {
            return;
        }
        let owner = match state.groups.get_key_value(key) {
            Some((existing, _)) => Arc::clone(existing),
            None => Arc::new(key.clone()),
        };
        for (series, member) in added {
            if let Some(previous) = state.owners.insert(series.clone(), Arc::clone(&owner))
                && previous != owner
                && let Some(group) = state.groups.get_mut(&previous)
            {
                group.remove(&series);
                if group.is_empty() {
                    state.groups.remove(&previous);
                }
            }
            state.groups.entry(Arc::clone(&owner)).or_default().insert(series, member);
        }
    }
}

/// Removes `series` from its owner's group and from the owners.
fn forget(state: &mut GroupState, series: &OwnedSeries) {
    if let Some(owner) = state.owners.remove(series)
        && let Some(group) = state.groups.get_mut(&owner)
    {
        group.remove(series);
        if group.is_empty() {
            state.groups.remove(&owner);
        }
    }
}

/// How pushes are mapped and remembered, shared by every listener's write endpoint.
pub struct PushOptions {
    /// `--object-labels`.
    pub object_labels: ObjectLabels,
    /// The groups, bounded by `--max-push-series`.
    pub groups: PushGroups,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { object_labels: ObjectLabels::default(), groups: PushGroups::new(DEFAULT_MAX_PUSH_SERIES) }
    }
}

/// Only `identity` and `gzip` are accepted; `true` for gzip.
fn gzip_encoded(headers: &http::HeaderMap) -> Result<bool, RequestError> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| {
            RequestError::UnsupportedPushEncoding(String::from_utf8_lossy(value.as_bytes()).into_owned())
        })?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("gzip") && !gzip {
                gzip = true;
            } else if !coding.eq_ignore_ascii_case("identity") {
                return Err(RequestError::UnsupportedPushEncoding(coding.to_string()));
            }
        }
    }
    Ok(gzip)
}

/// Decompresses a gzip body, refusing it as soon as it grows beyond `limit` bytes: a small body that inflates to
/// gigabytes costs `limit` bytes and no more.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, RequestError> {
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| RequestError::BadPushBody(format!("the gzip-encoded body does not decompress: {e}")))?;
    if plain.len() > limit {
        return Err(RequestError::DecompressedBodyTooLarge { limit });
    }
    Ok(plain)
}

impl Ingest {
    /// Answers a push (docs/wire-contract.md §4.5). Takes `body` only when it reads it.
    pub(super) async fn apply_push<B>(
        &self,
        request: &http::request::Parts,
        body: &mut Option<B>,
        gate: &dyn WriteGate,
    ) -> Result<HttpResponse, RequestError>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let replace_all = match request.method {
            Method::PUT => true,
            Method::POST => false,
            Method::DELETE => false,
            _ => return Err(RequestError::MethodNotAllowed { allow: "PUT, POST, DELETE" }),
        };
        let key = parse_grouping_key(request.uri.path())?;
        super::refuse_parameters(request, "a push takes none")?;
        if request.method == Method::DELETE {
            return self.delete_group(&key, gate).await;
        }
        let bytes = self.read_compressed_body(&request.headers, body.take()).await?;
        let content_type = request.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let parsed = if exposition::is_protobuf(content_type) {
            exposition::parse_protobuf(&bytes, self.batch.max_items)
        } else {
            exposition::parse_text(&bytes, self.batch.max_items)
        };
        let samples = parsed.map_err(|error| match error {
            ParseError::Syntax(message) => RequestError::BadPushBody(message),
            ParseError::TooManySamples { limit } => RequestError::TooManyPushSamples { limit },
        })?;
        self.store_push(&key, &samples, replace_all, gate).await?;
        Ok(response::empty_response())
    }

    /// A push (or OTLP export, [`super::otlp`]) body: `identity` or `gzip` only, at most `--max-batch-body-bytes` as
    /// sent and once decompressed, within `--request-body-timeout`.
    pub(super) async fn read_compressed_body<B>(
        &self,
        headers: &http::HeaderMap,
        body: Option<B>,
    ) -> Result<Vec<u8>, RequestError>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.batch.max_body_bytes;
        let gzip = gzip_encoded(headers)?;
        let raw = match body {
            Some(body) => self.read_limited(headers, body, limit).await.map_err(|error| match error {
                RequestError::BodyTooLarge { limit } => RequestError::BatchBodyTooLarge { limit },
                other => other,
            })?,
            None => Vec::new(),
        };
        if gzip && !raw.is_empty() { gunzip(&raw, limit) } else { Ok(raw) }
    }

    /// Maps, authorizes and stores the samples of a PUT (`replace_all`) or POST, and deletes the group's series
    /// that they replace.
    async fn store_push(
        &self,
        key: &GroupingKey,
        samples: &[PushedSample],
        replace_all: bool,
        gate: &dyn WriteGate,
    ) -> Result<(), RequestError> {
        let options = &self.push;
        let total = samples.len();
        // Samples are named only in refusals: `name{labels}` costs an allocation per sample.
        let names = |replaced: &[OwnedSeries]| -> Vec<String> {
            samples
                .iter()
                .map(PushedSample::describe)
                .chain(replaced.iter().map(|series| format!("the group's {}", series.describe())))
                .collect()
        };
        let mut causes: Vec<(usize, BatchCause)> = Vec::new();
        let cause = |index: usize, error: RequestError| (index, BatchCause { field: String::new(), error });
        let mut mapped = Vec::with_capacity(total);
        for (index, sample) in samples.iter().enumerate() {
            match map_sample(sample, key, &options.object_labels) {
                Ok(sample) => mapped.push((index, sample)),
                Err(reason) => causes.push(cause(index, RequestError::PushSampleRefused(reason))),
            }
        }
        // Each object label's resource resolved once.
        let mut resources: FastMap<usize, Result<(Arc<str>, bool), MapperError>> = FastMap::default();
        for (_, sample) in &mapped {
            if let Some((label, _)) = &sample.object
                && !resources.contains_key(label)
            {
                let resource = &options.object_labels.labels()[*label].resource;
                let resolved = self
                    .mapper
                    .resolve(resource)
                    .await
                    .map(|info| (Arc::<str>::from(info.group_resource()), info.namespaced));
                resources.insert(*label, resolved);
            }
        }
        let mut ready: Vec<Ready<'_>> = Vec::with_capacity(mapped.len());
        let mut first_of: FastMap<SeriesKey<'_>, usize> =
            FastMap::with_capacity_and_hasher(mapped.len(), Default::default());
        let mut labels = SharedLabels::default();
        for (index, sample) in &mapped {
            // A cluster-scoped object has no namespace: the label stays an attribute of the value.
            let cluster_scoped_namespace = match (&sample.object, sample.namespace) {
                (Some((label, _)), Some(namespace)) if matches!(resources.get(label), Some(Ok((_, false)))) => {
                    Some(namespace)
                }
                _ => None,
            };
            let labels = labels.get(&sample.labels, cluster_scoped_namespace);
            let series = match &sample.object {
                Some((label, name)) => {
                    let object_label = &options.object_labels.labels()[*label];
                    let (resource, namespaced) = match resources.get(label) {
                        Some(Ok(resolved)) => resolved.clone(),
                        Some(Err(error)) => {
                            let reason = format!(
                                "its object label {} names {}, which cannot be resolved: {error}",
                                object_label.label, object_label.resource
                            );
                            causes.push(cause(*index, RequestError::PushSampleRefused(reason)));
                            continue;
                        }
                        None => continue,
                    };
                    let namespace = match (namespaced, sample.namespace) {
                        (true, Some(namespace)) => namespace,
                        (false, _) => "",
                        (true, None) => {
                            let reason = format!(
                                "{}={name:?} names an object of {resource}, which is namespaced: add a namespace label to the sample or to the grouping key",
                                object_label.label
                            );
                            causes.push(cause(*index, RequestError::PushSampleRefused(reason)));
                            continue;
                        }
                    };
                    SeriesKey::Custom { resource, namespace, name, metric: sample.metric }
                }
                None => SeriesKey::External {
                    namespace: sample.namespace.unwrap_or_default(),
                    metric: sample.metric,
                    labels: labels.clone(),
                },
            };
            if let Some(&first) = first_of.get(&series) {
                let first = samples[first].describe();
                let reason = match &series {
                    SeriesKey::Custom { .. } => format!(
                        "it is stored as the same value as {first}: an object holds one value per metric, so samples of one object that differ only in other labels collide"
                    ),
                    SeriesKey::External { .. } => format!("duplicate series: {first} is the same series"),
                };
                causes.push(cause(*index, RequestError::PushSampleRefused(reason)));
                continue;
            }
            first_of.insert(series.clone(), *index);
            let write =
                SampleWrite { value: sample.value, labels: labels.clone(), ttl: self.default_ttl, kind: sample.kind };
            ready.push(Ready { index: *index, series, write });
        }
        if !causes.is_empty() {
            return Err(push_refused(total, &names(&[]), causes));
        }

        let _group = options.groups.group_lock(key).lock().await;
        let now = SystemClock.now_millis();
        let families: FastSet<&str> = samples.iter().map(|s| s.family.as_ref()).collect();
        let pushed: Vec<OwnedSeries> = ready.iter().map(|item| OwnedSeries::from_key(&item.series)).collect();
        let replaced = options.groups.members(key, if replace_all { None } else { Some(&families) }, now, &pushed);
        let replaced_keys: Vec<(usize, SeriesKey<'_>)> =
            replaced.iter().enumerate().map(|(i, series)| (total + i, series.key())).collect();
        causes.extend(authorize_series(ready.iter().map(|item| (item.index, &item.series)), false, gate).await?);
        causes.extend(authorize_series(replaced_keys.iter().map(|(i, key)| (*i, key)), true, gate).await?);
        if !causes.is_empty() {
            return Err(push_refused(total, &names(&replaced), causes));
        }
        if !options.groups.has_room(&pushed, replaced.len(), now) {
            return Err(RequestError::PushGroupsFull { limit: options.groups.max_series });
        }
        if !ready.is_empty() {
            let causes = self.store_all_or_none(&ready).await?;
            if !causes.is_empty() {
                return Err(push_refused(total, &names(&replaced), causes));
            }
        }
        let deleted = self.delete_series(&replaced).await;
        let deadline = match self.default_ttl {
            Some(ttl) => now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            None => i64::MAX,
        };
        let added = ready
            .iter()
            .zip(pushed)
            .map(|(item, series)| (series, Member { family: Arc::clone(&samples[item.index].family), deadline }))
            .collect();
        // The samples are stored whatever the deletes did: they are the group's. Replaced series that could not be
        // deleted stay the group's too, so that the next PUT deletes them.
        let forgotten: &[OwnedSeries] = if deleted.is_ok() { &replaced } else { &[] };
        options.groups.commit(key, forgotten, added);
        deleted
    }

    /// `DELETE`: the group's series removed from the store and forgotten; 202, as Pushgateway answers, also when
    /// the group is unknown.
    async fn delete_group(&self, key: &GroupingKey, gate: &dyn WriteGate) -> Result<HttpResponse, RequestError> {
        let groups = &self.push.groups;
        let _group = groups.group_lock(key).lock().await;
        // Expired members too: deleting what the store already dropped is harmless.
        let members = groups.members(key, None, i64::MIN, &[]);
        let keys: Vec<(usize, SeriesKey<'_>)> = members.iter().enumerate().map(|(i, s)| (i, s.key())).collect();
        let causes = authorize_series(keys.iter().map(|(i, key)| (*i, key)), true, gate).await?;
        if !causes.is_empty() {
            let names: Vec<String> =
                members.iter().map(|series| format!("the group's {}", series.describe())).collect();
            return Err(push_refused(0, &names, causes));
        }
        self.delete_series(&members).await?;
        groups.commit(key, &members, Vec::new());
        let mut response = response::empty_response();
        *response.status_mut() = StatusCode::ACCEPTED;
        Ok(response)
    }

    /// Deletes `series` from the store; those already gone are no error.
    async fn delete_series(&self, series: &[OwnedSeries]) -> Result<(), RequestError> {
        for series in series {
            match series.key() {
                SeriesKey::Custom { resource, namespace, name, metric } => {
                    let resource = resource.as_ref();
                    self.store.delete_custom(CustomSeriesId { resource, namespace, name, metric }).await?;
                }
                SeriesKey::External { namespace, metric, labels } => {
                    self.store.delete_external(namespace, metric, &labels).await?;
                }
            }
        }
        Ok(())
    }
}

/// The push's refusal: every cause, in sample order, named by its sample (`name{labels}` as pushed).
fn push_refused(total: usize, names: &[String], mut causes: Vec<(usize, BatchCause)>) -> RequestError {
    causes.sort_by_key(|(index, _)| *index);
    let mut refused: Vec<usize> = causes.iter().map(|(index, _)| *index).collect();
    refused.dedup();
    RequestError::PushRefused {
        total,
        refused: refused.len(),
        causes: causes
            .into_iter()
            .map(|(index, mut cause)| {
                cause.field = names.get(index).cloned().unwrap_or_default();
                cause
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::exposition::parse_text;

    fn key(path: &str) -> GroupingKey {
        parse_grouping_key(path).unwrap()
    }

    fn pairs(key: &GroupingKey) -> Vec<(&str, &str)> {
        key.labels().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn grouping_keys_as_pushgateway_reads_them() {
        assert_eq!(pairs(&key("/metrics/job/backup")), [("job", "backup")]);
        assert_eq!(pairs(&key("/metrics/job/backup/")), [("job", "backup")]);
        assert_eq!(
            pairs(&key("/metrics/job/backup/namespace/default/instance/a")),
            [("instance", "a"), ("job", "backup"), ("namespace", "default")]
        );
        // base64url, padding optional: "/var/tmp", "Προμηθεύς", and `=` alone for the empty value.
        assert_eq!(pairs(&key("/metrics/job/d/path@base64/L3Zhci90bXA")), [("job", "d"), ("path", "/var/tmp")]);
        assert_eq!(pairs(&key("/metrics/job/d/path@base64/L3Zhci90bXA=")), [("job", "d"), ("path", "/var/tmp")]);
        assert_eq!(
            pairs(&key("/metrics/job/titan/name@base64/zqDPgc6_zrzOt864zrXPjc-C")),
            [("job", "titan"), ("name", "Προμηθεύς")]
        );
        assert_eq!(
            pairs(&key("/metrics/job/titan/name/%CE%A0%CF%81%CE%BF%CE%BC%CE%B7%CE%B8%CE%B5%CF%8D%CF%82")),
            [("job", "titan"), ("name", "Προμηθεύς")]
        );
        assert_eq!(
            pairs(&key("/metrics/job/example/first@base64/=/second/foobar")),
            [("first", ""), ("job", "example"), ("second", "foobar")]
        );
        assert_eq!(pairs(&key("/metrics/job@base64/L3Zhci90bXA")), [("job", "/var/tmp")]);
    }

    #[test]
    fn bad_grouping_keys_say_what_is_wrong() {
        for (path, expected) in [
            ("/metrics/job/a/b", "odd number of components"),
            ("/metrics/job/a/b/c/d", "odd number of components"),
            ("/metrics/job/a/first//second/x", "first@base64/="),
            ("/metrics/job@base64/=", "job name is required"),
            ("/metrics/job/a/__x/1", "improper label name"),
            ("/metrics/job/a/a-b/1", "improper label name"),
            ("/metrics/job/a/x@base64/!!", "invalid base64"),
            ("/metrics/job/a/x/1/x/2", "given twice"),
            ("/metrics/job/a/job/b", "given twice"),
            ("/metrics/job/a/x@base64/_w", "not UTF-8"),
        ] {
            let error = parse_grouping_key(path).unwrap_err();
            assert!(matches!(error, RequestError::BadGroupingKey(_)), "{path}");
            assert!(error.to_string().contains(expected), "{path}: {error}");
        }
    }

    #[test]
    fn push_paths_are_told_from_the_scrape_endpoint() {
        for path in ["/metrics/job/a", "/metrics/job@base64/YQ"] {
            assert!(is_push_path(path), "{path}");
        }
        for path in ["/metrics", "/metrics/", "/metrics/job", "/metrics/jobs/a", "/metricsjob/a"] {
            assert!(!is_push_path(path), "{path}");
        }
        assert!(crate::metrics::is_metrics_path("/metrics"));
        assert!(!crate::metrics::is_metrics_path("/metrics/job/a"));
    }

    #[test]
    fn object_labels_flag() {
        let labels = ObjectLabels::default();
        let names: Vec<(&str, &str)> =
            labels.labels().iter().map(|o| (o.label.as_str(), o.resource.as_str())).collect();
        assert_eq!(names[0], ("pod", "pod"));
        assert!(names.contains(&("job_name", "job")));
        assert_eq!(DEFAULT_OBJECT_LABELS.parse::<ObjectLabels>().unwrap(), labels);
        let custom: ObjectLabels = " app = deployments.apps , pod ".parse().unwrap();
        assert_eq!(custom.labels()[0], ObjectLabel { label: "app".into(), resource: "deployments.apps".into() });
        for bad in ["namespace", "job", "a-b", "pod,pod", "x=", "1x"] {
            assert!(bad.parse::<ObjectLabels>().is_err(), "{bad}");
        }
    }

    fn sample(text: &str) -> PushedSample {
        parse_text(text.as_bytes(), 10).unwrap().remove(0)
    }

    /// The sample and the grouping key live as long as the test, which the mapping borrows.
    fn map(text: &str, path: &str) -> Result<MappedSample<'static>, String> {
        map_sample(Box::leak(Box::new(sample(text))), Box::leak(Box::new(key(path))), &ObjectLabels::default())
    }

    #[test]
    fn a_namespace_and_an_object_label_make_a_custom_value_a_namespace_alone_an_external_one() {
        let custom = map("rps{namespace=\"shop\",pod=\"web-1\",code=\"200\"} 12.5", "/metrics/job/web").unwrap();
        assert_eq!(custom.namespace, Some("shop"));
        assert_eq!(custom.object, Some((0, "web-1")));
        assert_eq!(custom.metric, "rps");
        assert_eq!(custom.value.to_string(), "12500m");
        // Grouping-key labels are sample labels.
        assert_eq!(custom.labels, [("code", "200"), ("job", "web")]);
        // From the grouping key, and the first object label of the flag's order wins.
        let from_key = map("q 3", "/metrics/job/w/namespace/shop/deployment/web/pod/web-1").unwrap();
        assert_eq!(from_key.object, Some((0, "web-1")));
        assert_eq!(from_key.labels, [("deployment", "web"), ("job", "w")]);
        let external = map("queue_depth{queue=\"orders\"} 7", "/metrics/job/w/namespace/shop").unwrap();
        assert_eq!(external.object, None);
        assert_eq!(external.labels, [("job", "w"), ("queue", "orders")]);
        // Empty values are no labels.
        let empty = map("m{pod=\"\",namespace=\"shop\"} 1", "/metrics/job/w/x@base64/=").unwrap();
        assert_eq!(empty.object, None);
        assert_eq!(empty.labels, [("job", "w")]);
        // A node needs no namespace.
        let node = map("temp{node=\"n1\"} 300", "/metrics/job/w").unwrap();
        assert_eq!(
            node.object.map(|(i, n)| (ObjectLabels::default().labels()[i].label.clone(), n)),
            Some(("node".to_string(), "n1"))
        );
    }

    #[test]
    fn a_remembered_series_gives_back_the_key_it_was_made_of() {
        let labels = SeriesLabels::from_sorted(vec![("job".into(), "w".into())]);
        for key in [
            SeriesKey::Custom { resource: "pods".into(), namespace: "shop", name: "web-1", metric: "rps" },
            SeriesKey::Custom { resource: "nodes".into(), namespace: "", name: "n1", metric: "temp" },
            SeriesKey::External { namespace: "shop", metric: "queue_depth", labels: labels.clone() },
            SeriesKey::External { namespace: "shop", metric: "queue_depth", labels: SeriesLabels::empty() },
        ] {
            let owned = OwnedSeries::from_key(&key);
            assert_eq!(owned.key(), key);
            assert_eq!(OwnedSeries::from_key(&owned.key()), owned);
        }
        // Names are packed, not concatenated: moving a character between two names makes another series.
        let a = SeriesKey::Custom { resource: "pods".into(), namespace: "ab", name: "c", metric: "m" };
        let b = SeriesKey::Custom { resource: "pods".into(), namespace: "a", name: "bc", metric: "m" };
        assert_ne!(OwnedSeries::from_key(&a), OwnedSeries::from_key(&b));
        let node = SeriesKey::Custom { resource: "nodes".into(), namespace: "", name: "n1", metric: "temp" };
        assert_eq!(OwnedSeries::from_key(&node).describe(), "temp of nodes n1");
    }

    #[test]
    fn samples_that_cannot_be_stored_say_why() {
        for (text, path, expected) in [
            ("m 1", "/metrics/job/w", "maps to nothing"),
            ("m{instance=\"a\"} 1", "/metrics/job/w", "add a namespace label"),
            ("m{namespace=\"s\"} NaN", "/metrics/job/w", "the value is NaN"),
            ("m{namespace=\"s\"} +Inf", "/metrics/job/w", "the value is +Inf"),
            ("m{namespace=\"s\"} -Inf", "/metrics/job/w", "the value is -Inf"),
            ("m{namespace=\"s\"} 1 1700000000000", "/metrics/job/w", "timestamp"),
            ("m{namespace=\"Shop\"} 1", "/metrics/job/w", "namespace label \"Shop\""),
            ("m{namespace=\"s\",pod=\"Web_1\"} 1", "/metrics/job/w", "pod label \"Web_1\""),
            ("m{namespace=\"s\",path=\"/api\"} 1", "/metrics/job/w", "label path=\"/api\" cannot be stored"),
            ("m{namespace=\"s\",job=\"x\"} 1", "/metrics/job/w", "in the grouping key"),
            ("m{namespace=\"s\"} 1e2000", "/metrics/job/w", "the value is +Inf"),
        ] {
            let reason = map(text, path).unwrap_err();
            assert!(reason.contains(expected), "{text}: {reason}");
        }
        // Repeating a grouping label with its value is allowed.
        assert!(map("m{namespace=\"s\",job=\"w\"} 1", "/metrics/job/w").is_ok());
    }

    #[test]
    fn values_are_stored_exactly_as_their_shortest_decimal() {
        for (value, expected) in [
            (0.1, "100m"),
            (42.0, "42"),
            (-7.25, "-7250m"),
            (1e-12, "1n"),
            (1.5e10, "15G"),
            (0.0, "0"),
            (-0.0, "0"),
            (1e15, "1P"),
            (9_007_199_254_740_991.0, "9007199254740991"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (-123_456_789.0, "-123456789"),
            (1e300, "1e300"),
        ] {
            assert_eq!(to_quantity(value).unwrap().to_string(), expected, "{value}");
            // The same quantity as the shortest decimal, parsed.
            let parsed = Quantity::parse(&format!("{value}")).unwrap();
            assert_eq!(to_quantity(value).unwrap().cmp_value(&parsed), std::cmp::Ordering::Equal, "{value}");
        }
        assert!(to_quantity(f64::MAX).is_ok());
        let counter = sample("# TYPE c counter\nc{namespace=\"s\"} 3");
        assert_eq!(counter.kind, Kind::Counter);
    }

    #[test]
    fn counters_and_the_counts_and_sums_of_summaries_and_histograms_are_stored_as_counters() {
        for (text, kind) in [
            ("# TYPE c counter\nc{namespace=\"s\"} 3", SeriesKind::Counter),
            ("# TYPE s summary\ns_count{namespace=\"s\"} 3", SeriesKind::Counter),
            ("# TYPE s summary\ns_sum{namespace=\"s\"} 1.5", SeriesKind::Counter),
            ("# TYPE h histogram\nh_count{namespace=\"s\"} 3", SeriesKind::Counter),
            ("# TYPE g gauge\ng{namespace=\"s\"} 3", SeriesKind::Gauge),
            ("u{namespace=\"s\"} 3", SeriesKind::Gauge),
        ] {
            assert_eq!(map(text, "/metrics/job/w").unwrap().kind, kind, "{text}");
        }
    }

    #[test]
    fn a_gzip_bomb_costs_the_limit_and_no_more() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b'#'; 10 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        assert!(
            matches!(gunzip(&bomb, 1 << 20), Err(RequestError::DecompressedBodyTooLarge { limit }) if limit == 1 << 20)
        );
        assert_eq!(gunzip(&bomb, 10 << 20).unwrap().len(), 10 << 20);
        assert!(matches!(gunzip(b"not gzip", 100), Err(RequestError::BadPushBody(_))));
    }

    #[test]
    fn content_encodings() {
        let headers = |values: &[&str]| {
            let mut map = http::HeaderMap::new();
            for value in values {
                map.append(header::CONTENT_ENCODING, http::HeaderValue::from_str(value).unwrap());
            }
            map
        };
        assert!(!gzip_encoded(&headers(&[])).unwrap());
        assert!(!gzip_encoded(&headers(&["identity"])).unwrap());
        assert!(gzip_encoded(&headers(&["gzip"])).unwrap());
        assert!(gzip_encoded(&headers(&["GZIP"])).unwrap());
        for bad in [&["br"][..], &["gzip, gzip"], &["gzip", "deflate"]] {
            assert!(matches!(gzip_encoded(&headers(bad)), Err(RequestError::UnsupportedPushEncoding(_))), "{bad:?}");
        }
    }
    /// The memory store, whose deletes fail while `fail` is set (a networked store that went away).
    struct FailingDeletes {
        inner: crate::store::MemoryStore,
        fail: std::sync::atomic::AtomicBool,
    }

    impl FailingDeletes {
        fn check(&self) -> Result<(), crate::store::StoreError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::store::StoreError::Unavailable("deletes fail".into()));
            }
            Ok(())
        }
    }

    use crate::store::{CustomMetricDescriptor, MetricStore, Recent, Sample, StoreError};

    #[async_trait::async_trait]
    impl MetricStore for FailingDeletes {
        async fn put_custom(&self, id: CustomSeriesId<'_>, write: SampleWrite) -> Result<(), StoreError> {
            self.inner.put_custom(id, write).await
        }
        async fn delete_custom(&self, id: CustomSeriesId<'_>) -> Result<bool, StoreError> {
            self.check()?;
            self.inner.delete_custom(id).await
        }
        async fn get_custom(&self, id: CustomSeriesId<'_>) -> Result<Option<Sample>, StoreError> {
            self.inner.get_custom(id).await
        }
        async fn list_custom_objects(&self, r: &str, n: &str, m: &str) -> Result<Vec<(String, Sample)>, StoreError> {
            self.inner.list_custom_objects(r, n, m).await
        }
        async fn get_custom_objects(
            &self,
            r: &str,
            n: &str,
            m: &str,
            names: &[String],
        ) -> Result<Vec<(String, Sample)>, StoreError> {
            self.inner.get_custom_objects(r, n, m, names).await
        }
        async fn list_object_metrics(&self, r: &str, n: &str, o: &str) -> Result<Vec<(String, Sample)>, StoreError> {
            self.inner.list_object_metrics(r, n, o).await
        }
        async fn list_custom_metrics(&self) -> Result<Vec<CustomMetricDescriptor>, StoreError> {
            self.inner.list_custom_metrics().await
        }
        async fn custom_objects(&self, resource: &str) -> Result<Vec<(String, String)>, StoreError> {
            self.inner.custom_objects(resource).await
        }
        async fn delete_object(&self, r: &str, n: &str, o: &str) -> Result<usize, StoreError> {
            self.check()?;
            self.inner.delete_object(r, n, o).await
        }
        async fn put_external(&self, namespace: &str, metric: &str, write: SampleWrite) -> Result<(), StoreError> {
            self.inner.put_external(namespace, metric, write).await
        }
        async fn delete_external(&self, n: &str, m: &str, labels: &SeriesLabels) -> Result<bool, StoreError> {
            self.check()?;
            self.inner.delete_external(n, m, labels).await
        }
        async fn list_external(&self, namespace: &str, metric: &str) -> Result<Vec<Sample>, StoreError> {
            self.inner.list_external(namespace, metric).await
        }
        async fn list_external_metrics(&self) -> Result<Vec<String>, StoreError> {
            self.inner.list_external_metrics().await
        }
        async fn series_page(
            &self,
            filter: &crate::store::SeriesFilter,
            after: Option<&crate::store::SeriesPosition>,
            limit: usize,
        ) -> Result<Vec<crate::store::StoredSeries>, StoreError> {
            self.inner.series_page(filter, after, limit).await
        }

        async fn list_external_counters(&self) -> Result<Vec<String>, StoreError> {
            self.inner.list_external_counters().await
        }

        async fn recent_custom(
            &self,
            r: &str,
            n: &str,
            m: &str,
            names: Option<&[String]>,
        ) -> Result<Vec<(String, SeriesLabels, Recent)>, StoreError> {
            self.inner.recent_custom(r, n, m, names).await
        }

        async fn recent_external(&self, n: &str, m: &str) -> Result<Vec<(SeriesLabels, Recent)>, StoreError> {
            self.inner.recent_external(n, m).await
        }
        async fn health(&self) -> Result<(), StoreError> {
            self.inner.health().await
        }
        fn series_count(&self) -> usize {
            self.inner.series_count()
        }
        fn bytes_used(&self) -> usize {
            self.inner.bytes_used()
        }
    }

    #[tokio::test]
    async fn what_a_push_stored_stays_the_groups_when_deleting_what_it_replaced_failed() {
        let store = Arc::new(FailingDeletes {
            inner: crate::store::MemoryStore::new(crate::store::Limits::default()),
            fail: std::sync::atomic::AtomicBool::new(false),
        });
        let ingest = Ingest::new(store.clone(), Arc::new(crate::cluster::BuiltinMapper::default()), None, 4096);
        let put = |body: &'static str| {
            http::Request::put("/metrics/job/j/namespace/shop")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())))
                .unwrap()
        };
        let exists = |metric: &str| {
            let labels =
                SeriesLabels::from_map(std::collections::BTreeMap::from([("job".to_string(), "j".to_string())]));
            let store = store.clone();
            let metric = metric.to_string();
            async move { store.inner.list_external("shop", &metric).await.unwrap().iter().any(|s| s.labels == labels) }
        };
        assert_eq!(ingest.handle(put("a 1\n"), &super::super::OpenGate).await.status(), StatusCode::OK);
        store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        // b is stored, a cannot be deleted: the answer says so, and both stay the group's.
        let answer = ingest.handle(put("b 1\n"), &super::super::OpenGate).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(exists("a").await && exists("b").await);
        store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(ingest.handle(put("c 1\n"), &super::super::OpenGate).await.status(), StatusCode::OK);
        assert!(!exists("a").await, "a replaced series whose delete failed was forgotten");
        assert!(!exists("b").await, "a series stored by a push whose deletes failed was not remembered");
        assert!(exists("c").await);
    }
}
