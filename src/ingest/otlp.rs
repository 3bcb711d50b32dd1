//! The OTLP/HTTP metrics receiver: `POST /v1/metrics` with an `ExportMetricsServiceRequest` in binary protobuf
//! (`application/x-protobuf`) or OTLP JSON (`application/json`), gzip-compressed or not (docs/wire-contract.md §4.7).
//! Every OpenTelemetry SDK's OTLP/HTTP exporter and the OTel Collector's `otlphttp` exporter work by pointing their
//! metrics endpoint at the adapter.
//!
//! The steps: the body is read as a push body is (`Ingest::read_compressed_body`: `--max-batch-body-bytes` as
//! sent and once decompressed) and decoded into [`wire`]'s prost messages, whose strings are slices of the body (OTLP
//! JSON through the `opentelemetry-proto` crate's serde types); its data points are counted (`--max-batch-items`);
//! each resource is mapped onto a Kubernetes object from its `k8s.*` attributes (or onto the external metrics of its
//! namespace), each data point onto a value of that object with its attributes as labels; the write gate admits each
//! distinct (namespace, resource, metric) once, and one refusal refuses the whole export (403); the points that map
//! are stored with the batch machinery; the points that cannot be stored are reported in the response's
//! `partial_success`, as the OTLP specification asks, while the others are kept.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest as JsonExport, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use prost::Message;

use super::batch::{Ready, SeriesKey, authorize_series};
use super::push::finite_quantity;
use super::{Ingest, WriteGate, validate_metric_name, validate_namespace, validate_object_name};
use crate::cluster::MapperError;
use crate::quantity::Quantity;
use crate::response::{self, HttpResponse, RequestError};
use crate::selector::{validate_label_key, validate_label_value_for_key};
use crate::store::{Label, SampleWrite, SeriesKind, SeriesLabels, StoreError};

pub mod wire;

use wire::any_value::Value as AttributeValue;
use wire::metric::Data;
use wire::number_data_point::Value as NumberValue;
use wire::{ExportMetricsServiceRequest, KeyValue, NumberDataPoint};

/// The OTLP/HTTP metrics path, the specification's default.
pub const OTLP_METRICS_PATH: &str = "/v1/metrics";

/// Whether `path` is the OTLP metrics path.
pub fn is_otlp_path(path: &str) -> bool {
    path == OTLP_METRICS_PATH
}

/// The resource attribute that names the namespace.
pub const NAMESPACE_ATTRIBUTE: &str = "k8s.namespace.name";

/// The resource attributes that name an object, most specific first (a pod's resource usually carries its
/// ReplicaSet, Deployment and node too: the pod wins), with the resource each names. The node comes last: every
/// resource of a pod may name one.
pub const OBJECT_ATTRIBUTES: [(&str, &str); 8] = [
    ("k8s.pod.name", "pods"),
    ("k8s.replicaset.name", "replicasets.apps"),
    ("k8s.deployment.name", "deployments.apps"),
    ("k8s.statefulset.name", "statefulsets.apps"),
    ("k8s.daemonset.name", "daemonsets.apps"),
    ("k8s.job.name", "jobs.batch"),
    ("k8s.cronjob.name", "cronjobs.batch"),
    ("k8s.node.name", "nodes"),
];

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the point carries no value.
const NO_RECORDED_VALUE: u32 = 1;

/// An export's encoding, from its `Content-Type`; the response is in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP JSON: camelCase fields, 64-bit integers as strings, enums as integers).
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names (parameters ignored); anything else is a 415.
    pub fn from_content_type(content_type: Option<&HeaderValue>) -> Result<Encoding, RequestError> {
        let text = content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
        let media = text.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Ok(Encoding::Json)
        } else {
            Err(RequestError::UnsupportedOtlpContentType(if text.is_empty() { "(none)".into() } else { text }))
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decodes an export body into [`wire`]'s messages, whose strings are slices of `body`; a body that does not decode
/// is a 400. OTLP JSON is read with the `opentelemetry-proto` crate's serde types and brought over through their
/// protobuf encoding, so that one mapping reads both encodings.
pub fn decode(body: Bytes, encoding: Encoding) -> Result<ExportMetricsServiceRequest, RequestError> {
    let protobuf = match encoding {
        Encoding::Protobuf => body,
        Encoding::Json => {
            let export: JsonExport = serde_json::from_slice(&body).map_err(|e| {
                RequestError::BadOtlpBody(format!("the body is not an OTLP JSON ExportMetricsServiceRequest: {e}"))
            })?;
            Bytes::from(export.encode_to_vec())
        }
    };
    ExportMetricsServiceRequest::decode(protobuf).map_err(|e| {
        RequestError::BadOtlpBody(format!("the body is not a binary protobuf ExportMetricsServiceRequest: {e}"))
    })
}

/// Where the points of one resource go (docs/wire-contract.md §4.7), borrowing the export's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceTarget<'a> {
    /// A value on the object that `OBJECT_ATTRIBUTES[attribute]` names.
    Object {
        /// The namespace (`None` for a node).
        namespace: Option<&'a str>,
        /// Index into [`OBJECT_ATTRIBUTES`].
        attribute: usize,
        /// The object's name.
        name: &'a str,
    },
    /// An external series in the namespace.
    External {
        /// The namespace.
        namespace: &'a str,
    },
}

impl ResourceTarget<'_> {
    fn describe(&self) -> String {
        match self {
            ResourceTarget::Object { namespace: Some(namespace), attribute, name } => {
                format!("{} {namespace}/{name}", OBJECT_ATTRIBUTES[*attribute].1)
            }
            ResourceTarget::Object { namespace: None, attribute, name } => {
                format!("{} {name}", OBJECT_ATTRIBUTES[*attribute].1)
            }
            ResourceTarget::External { namespace } => format!("external in {namespace}"),
        }
    }
}

/// Maps a resource's attributes: `k8s.namespace.name` with the first namespaced object attribute present → that
/// object; else `k8s.node.name` → that node; else the namespace alone → its external metrics. The error says why
/// the resource's points cannot be stored.
pub fn resource_target(attributes: &[KeyValue]) -> Result<ResourceTarget<'_>, String> {
    target_of(attributes, None)
}

/// [`resource_target`], `validated` a namespace already validated (the one the export's resources repeat).
fn target_of<'a>(attributes: &'a [KeyValue], validated: Option<&str>) -> Result<ResourceTarget<'a>, String> {
    // One pass over the attributes, comparing only the `k8s.` ones: a resource carries a few dozen attributes and an
    // export a thousand resources, so comparing each with every name we look for showed in profiles.
    let mut found: [Option<&KeyValue>; OBJECT_ATTRIBUTES.len() + 1] = [None; OBJECT_ATTRIBUTES.len() + 1];
    for kv in attributes {
        if !kv.key.starts_with(b"k8s.") {
            continue;
        }
        if kv.key == NAMESPACE_ATTRIBUTE.as_bytes() {
            found[OBJECT_ATTRIBUTES.len()].get_or_insert(kv);
        } else if let Some(index) = OBJECT_ATTRIBUTES.iter().position(|(key, _)| kv.key == key.as_bytes()) {
            found[index].get_or_insert(kv);
        }
    }
    let get = |index: usize| -> Result<Option<&str>, String> {
        let Some(kv) = found[index] else { return Ok(None) };
        let key = OBJECT_ATTRIBUTES.get(index).map_or(NAMESPACE_ATTRIBUTE, |(key, _)| key);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            None => Ok(None),
            Some(AttributeValue::StringValue(text)) if text.is_empty() => Ok(None),
            Some(AttributeValue::StringValue(text)) => {
                wire::text(text).map(Some).map_err(|_| format!("the resource attribute {key} is not UTF-8"))
            }
            Some(_) => Err(format!("the resource attribute {key} must be a string")),
        }
    };
    let namespace = get(OBJECT_ATTRIBUTES.len())?;
    if let Some(namespace) = namespace.filter(|namespace| validated != Some(*namespace)) {
        validate_namespace(namespace)
            .map_err(|e| format!("the resource attribute {NAMESPACE_ATTRIBUTE}={namespace:?} cannot be used: {e}"))?;
    }
    let mut object = None;
    for attribute in 0..OBJECT_ATTRIBUTES.len() {
        if let Some(name) = get(attribute)? {
            object = Some((attribute, name));
            break;
        }
    }
    match (object, namespace) {
        (Some((attribute, name)), namespace) => {
            let (key, resource) = OBJECT_ATTRIBUTES[attribute];
            validate_object_name(name)
                .map_err(|e| format!("the resource attribute {key}={name:?} cannot be used: {e}"))?;
            if resource == "nodes" {
                // A node has no namespace; a namespace next to it names nothing more.
                return Ok(ResourceTarget::Object { namespace: None, attribute, name });
            }
            match namespace {
                Some(namespace) => Ok(ResourceTarget::Object { namespace: Some(namespace), attribute, name }),
                None => Err(format!(
                    "the resource names {resource} {name:?} ({key}) but no namespace: add the resource attribute {NAMESPACE_ATTRIBUTE}"
                )),
            }
        }
        (None, Some(namespace)) => Ok(ResourceTarget::External { namespace }),
        (None, None) => Err(format!(
            "the resource maps to nothing: it has neither {NAMESPACE_ATTRIBUTE} (with or without an object attribute such as k8s.pod.name: a value on that object, or an external metric of the namespace) nor k8s.node.name; set them with OTEL_RESOURCE_ATTRIBUTES or the Collector's k8sattributes processor"
        )),
    }
}

/// One value to store, mapped from a data point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpValue<'a> {
    /// The data point it comes from, in request order: what `rejected_data_points` counts.
    pub point: usize,
    /// Its resource: index into [`Mapped::targets`].
    pub resource: usize,
    /// The metric name (a histogram's and a summary's `{name}_count` and `{name}_sum`), borrowed from the export when
    /// it is the metric's own.
    pub metric: Cow<'a, str>,
    /// The data point's attributes; shared by the values of one point.
    pub labels: SeriesLabels,
    /// The value.
    pub value: Quantity,
    /// Whether the series is a counter (its rate is served, docs/wire-contract.md §4.6): a monotonic cumulative sum, the count and sum of a
    /// cumulative histogram or exponential histogram, and of a summary (cumulative by definition). Deltas and gauges
    /// are not.
    pub counter: bool,
}

/// A data point that cannot be stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedPoint {
    /// The data point, in request order.
    pub point: usize,
    /// `metric{attributes} (resource)`, as exported.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// An export mapped onto values, borrowing the export's strings.
#[derive(Debug, Default)]
pub struct Mapped<'a> {
    /// Each resource's target, in request order (only those of resources with data points are used).
    pub targets: Vec<Result<ResourceTarget<'a>, String>>,
    /// The values to store.
    pub values: Vec<OtlpValue<'a>>,
    /// The data points that cannot be stored.
    pub rejected: Vec<RejectedPoint>,
    /// Data points in the export.
    pub total: usize,
}

/// The values one data point stores: (metric name suffix, value, counter), a second one for a histogram's or
/// summary's `_sum`.
struct PointValues {
    first: (&'static str, Quantity, bool),
    second: Option<(&'static str, Quantity, bool)>,
}

impl PointValues {
    fn one(value: Quantity, counter: bool) -> PointValues {
        PointValues { first: ("", value, counter), second: None }
    }

    fn len(&self) -> usize {
        1 + usize::from(self.second.is_some())
    }

    fn into_iter(self) -> impl Iterator<Item = (&'static str, Quantity, bool)> {
        std::iter::once(self.first).chain(self.second)
    }
}

/// Strings an export repeats (every resource of a deployment's pods names the same namespace, every resource the same
/// metric names) made one: later comparisons of equal keys (the write gate's, the store's) then read one place in
/// memory instead of a thousand, and a namespace or metric name is read and validated once.
#[derive(Default)]
struct Repeated<'a> {
    namespace: Option<&'a str>,
    /// The last metric name read, and whether it was validated as a metric name of its own.
    metric: Option<(&'a str, bool)>,
}

impl<'a> Repeated<'a> {
    fn target(&mut self, target: ResourceTarget<'a>) -> ResourceTarget<'a> {
        let mut same = |namespace: &'a str| match self.namespace {
            Some(last) if last == namespace => last,
            _ => *self.namespace.insert(namespace),
        };
        match target {
            ResourceTarget::Object { namespace, attribute, name } => {
                ResourceTarget::Object { namespace: namespace.map(&mut same), attribute, name }
            }
            ResourceTarget::External { namespace } => ResourceTarget::External { namespace: same(namespace) },
        }
    }

    /// The metric's name as text; validated as a metric name when `stored` (a histogram's is stored only with a
    /// suffix, which is validated with it).
    fn metric(&mut self, name: &'a Bytes, stored: bool) -> Result<&'a str, String> {
        let (text, validated) = match self.metric {
            Some((last, validated)) if last.as_bytes() == name.as_ref() => (last, validated),
            _ => (wire::text(name).map_err(|_| "the metric name is not UTF-8".to_string())?, false),
        };
        if stored && !validated {
            validate_metric_name(text).map_err(|e| format!("the metric name {text:?} cannot be stored: {e}"))?;
        }
        self.metric = Some((text, validated || stored));
        Ok(text)
    }
}

/// Maps an export (docs/wire-contract.md §4.7). Pure. More than `max_points` data points refuse the export (413).
pub fn map_export(request: &ExportMetricsServiceRequest, max_points: usize) -> Result<Mapped<'_>, RequestError> {
    let total: usize = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum();
    if total > max_points {
        return Err(RequestError::TooManyOtlpPoints { limit: max_points });
    }
    let mut mapped = Mapped { total, values: Vec::with_capacity(total), ..Mapped::default() };
    let mut repeated = Repeated::default();
    let mut point = 0;
    for (resource, resource_metrics) in request.resource_metrics.iter().enumerate() {
        let attributes = resource_metrics.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let target = target_of(attributes, repeated.namespace).map(|target| repeated.target(target));
        for metric in resource_metrics.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let mut map = |attributes: &[KeyValue], flags: u32, values: Result<PointValues, String>| {
                let index = point;
                point += 1;
                let reason = match map_point(&mut repeated, &metric.name, attributes, flags, values, &target) {
                    Ok((labels, names, values)) => {
                        for (metric, (_, value, counter)) in names.into_iter().zip(values.into_iter()) {
                            mapped.values.push(OtlpValue {
                                point: index,
                                resource,
                                metric,
                                labels: labels.clone(),
                                value,
                                counter,
                            });
                        }
                        return;
                    }
                    Err(reason) => reason,
                };
                let what = describe(&metric.name, attributes, target.as_ref().ok());
                mapped.rejected.push(RejectedPoint { point: index, what, reason });
            };
            match &metric.data {
                Some(Data::Gauge(gauge)) => {
                    for p in &gauge.data_points {
                        map(&p.attributes, p.flags, number(p).map(|v| PointValues::one(v, false)));
                    }
                }
                Some(Data::Sum(sum)) => {
                    let counter =
                        sum.is_monotonic && sum.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                    for p in &sum.data_points {
                        map(&p.attributes, p.flags, number(p).map(|v| PointValues::one(v, counter)));
                    }
                }
                Some(Data::Histogram(histogram)) => {
                    let cumulative = histogram.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                    for p in &histogram.data_points {
                        map(&p.attributes, p.flags, count_and_sum(p.count, p.sum, cumulative));
                    }
                }
                Some(Data::ExponentialHistogram(histogram)) => {
                    let cumulative = histogram.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                    for p in &histogram.data_points {
                        map(&p.attributes, p.flags, count_and_sum(p.count, p.sum, cumulative));
                    }
                }
                Some(Data::Summary(summary)) => {
                    for p in &summary.data_points {
                        map(&p.attributes, p.flags, count_and_sum(p.count, Some(p.sum), true));
                    }
                }
                None => {}
            }
        }
        mapped.targets.push(target);
    }
    Ok(mapped)
}

/// One data point's labels, metric names and values, or why it cannot be stored.
fn map_point<'a>(
    repeated: &mut Repeated<'a>,
    metric: &'a Bytes,
    attributes: &[KeyValue],
    flags: u32,
    values: Result<PointValues, String>,
    target: &Result<ResourceTarget<'a>, String>,
) -> Result<(SeriesLabels, [Cow<'a, str>; 2], PointValues), String> {
    if let Err(reason) = target {
        return Err(reason.clone());
    }
    if flags & NO_RECORDED_VALUE != 0 {
        return Err("the data point has no recorded value (flag FLAG_NO_RECORDED_VALUE)".into());
    }
    let labels = labels(attributes)?;
    let values = values?;
    // A write path never has an empty metric segment; an export can (fuzz/fuzz_targets/otlp_body.rs).
    if metric.is_empty() {
        return Err("the metric has no name".into());
    }
    let mut names = [Cow::Borrowed(""), Cow::Borrowed("")];
    for (slot, (suffix, _, _)) in names.iter_mut().zip(std::iter::once(&values.first).chain(&values.second)) {
        *slot = if suffix.is_empty() {
            Cow::Borrowed(repeated.metric(metric, true)?)
        } else {
            let name = format!("{}{suffix}", repeated.metric(metric, false)?);
            validate_metric_name(&name).map_err(|e| format!("the metric name {name:?} cannot be stored: {e}"))?;
            Cow::Owned(name)
        };
    }
    debug_assert!(values.len() <= names.len());
    Ok((labels, names, values))
}

/// A number data point's value.
fn number(point: &NumberDataPoint) -> Result<Quantity, String> {
    match point.value {
        Some(NumberValue::AsDouble(value)) => finite_quantity(value),
        Some(NumberValue::AsInt(value)) => Quantity::parse(&value.to_string()).map_err(|e| e.to_string()),
        None => Err(
            "the data point has no value (neither asDouble nor asInt; in OTLP JSON a non-finite asDouble such as \"NaN\" is not read as a number: a metric value must be finite)"
                .into(),
        ),
    }
}

/// A histogram's or summary's `_count` and `_sum` (when it has one).
fn count_and_sum(count: u64, sum: Option<f64>, counter: bool) -> Result<PointValues, String> {
    let count = Quantity::parse(&count.to_string()).map_err(|e| e.to_string())?;
    let sum = match sum {
        Some(sum) => Some(("_sum", finite_quantity(sum).map_err(|e| format!("its sum: {e}"))?, counter)),
        None => None,
    };
    Ok(PointValues { first: ("_count", count, counter), second: sum })
}

/// A data point's attributes as metric labels: string, boolean, integer and double values as their text; empty
/// values dropped (no label, as in Prometheus); keys and values validated as the write API's labels.
fn labels(attributes: &[KeyValue]) -> Result<SeriesLabels, String> {
    if attributes.is_empty() {
        return Ok(SeriesLabels::empty());
    }
    let mut labels: Vec<Label> = Vec::with_capacity(attributes.len());
    for KeyValue { key, value } in attributes {
        let key = wire::text(key).map_err(|_| "an attribute's key is not UTF-8".to_string())?;
        let text: Box<str> = match value.as_ref().and_then(|v| v.value.as_ref()) {
            None => "".into(),
            Some(AttributeValue::StringValue(text)) => {
                wire::text(text).map_err(|_| format!("the attribute {key} is not UTF-8"))?.into()
            }
            Some(AttributeValue::BoolValue(value)) => value.to_string().into(),
            Some(AttributeValue::IntValue(value)) => value.to_string().into(),
            Some(AttributeValue::DoubleValue(value)) => value.to_string().into(),
            Some(_) => {
                return Err(format!(
                    "the attribute {key} is an array, a map or bytes: metric labels are strings, numbers or booleans"
                ));
            }
        };
        validate_label_key(key).and_then(|()| validate_label_value_for_key(key, &text)).map_err(|e| {
            format!("the attribute {key}={text:?} cannot be a label: metric labels must be Kubernetes labels, which the read API selects on: {e}")
        })?;
        labels.push((key.into(), text));
    }
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = labels.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("the attribute {} is given twice", pair[0].0));
    }
    labels.retain(|(_, value)| !value.is_empty());
    Ok(SeriesLabels::from_sorted(labels))
}

/// `name{key="value",...} (target)`, for messages (what is not UTF-8 shown with U+FFFD).
fn describe(name: &Bytes, attributes: &[KeyValue], target: Option<&ResourceTarget>) -> String {
    let attributes: Vec<String> = attributes
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(&kv.key);
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AttributeValue::StringValue(text)) => format!("{key}={:?}", String::from_utf8_lossy(text)),
                Some(AttributeValue::IntValue(value)) => format!("{key}={value}"),
                Some(AttributeValue::BoolValue(value)) => format!("{key}={value}"),
                Some(AttributeValue::DoubleValue(value)) => format!("{key}={value}"),
                _ => format!("{key}=…"),
            }
        })
        .collect();
    let attributes = if attributes.is_empty() { String::new() } else { format!("{{{}}}", attributes.join(",")) };
    let name = String::from_utf8_lossy(name);
    match target {
        Some(target) => format!("{name}{attributes} ({})", target.describe()),
        None => format!("{name}{attributes}"),
    }
}

/// An object attribute's resource as the mapper resolved it: its group-resource and whether it is namespaced.
type Resolved = Result<(Arc<str>, bool), MapperError>;

/// The store refusing other writes of the export this many times in a row refuses the rest (a concurrent writer
/// filling the store between two attempts).
const STORE_ATTEMPTS: usize = 3;

/// At most this many rejected points are named in `error_message`.
const NAMED_REJECTIONS: usize = 10;

impl Ingest {
    /// Answers an OTLP export (docs/wire-contract.md §4.7). Takes `body` only when it reads it. Errors before the
    /// encoding is known (method, query, `Content-Type`) are Kubernetes `Status` objects; after, `google.rpc.Status`
    /// in the request's encoding.
    pub(super) async fn apply_otlp<B>(
        &self,
        request: &http::request::Parts,
        body: &mut Option<B>,
        gate: &dyn WriteGate,
    ) -> Result<HttpResponse, RequestError>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.method != Method::POST {
            return Err(RequestError::MethodNotAllowed { allow: "POST" });
        }
        super::refuse_parameters(request, "an OTLP export takes none")?;
        let encoding = Encoding::from_content_type(request.headers.get(header::CONTENT_TYPE))?;
        Ok(match self.export(request, body, gate, encoding).await {
            Ok(response) => response,
            Err(error) => rpc_status_response(error, encoding),
        })
    }

    async fn export<B>(
        &self,
        request: &http::request::Parts,
        body: &mut Option<B>,
        gate: &dyn WriteGate,
        encoding: Encoding,
    ) -> Result<HttpResponse, RequestError>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let bytes = Bytes::from(self.read_compressed_body(&request.headers, body.take()).await?);
        // The export's strings are slices of the body, and the mapped values borrow them: all are dropped together.
        let export = decode(bytes, encoding)?;
        let mut mapped = map_export(&export, self.batch.max_items)?;
        self.store_values(&mut mapped, gate).await?;
        Ok(export_response(&mapped, encoding))
    }

    /// Resolves, authorizes and stores the mapped values; the points that cannot be stored are added to
    /// `mapped.rejected`. A denied authorization check refuses the whole export; so does a store that is unavailable
    /// (nothing stored: the client retries the whole export).
    async fn store_values(&self, mapped: &mut Mapped<'_>, gate: &dyn WriteGate) -> Result<(), RequestError> {
        // Each object resource resolved once; by its index in OBJECT_ATTRIBUTES.
        let mut resources: [Option<Resolved>; OBJECT_ATTRIBUTES.len()] = Default::default();
        for target in mapped.targets.iter().flatten() {
            if let ResourceTarget::Object { attribute, .. } = target
                && resources[*attribute].is_none()
            {
                let resolved = self
                    .mapper
                    .resolve(OBJECT_ATTRIBUTES[*attribute].1)
                    .await
                    .map(|info| (Arc::<str>::from(info.group_resource()), info.namespaced));
                resources[*attribute] = Some(resolved);
            }
        }
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut ready: Vec<Ready<'_>> = Vec::with_capacity(mapped.values.len());
        // foldhash, as the batch's tables (one request's keys): SipHash over every series key showed in profiles.
        let mut first_of: HashMap<SeriesKey<'_>, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(mapped.values.len(), Default::default());
        for (index, value) in mapped.values.iter().enumerate() {
            let Some(Ok(target)) = mapped.targets.get(value.resource) else { continue };
            let labels = &value.labels;
            let series = match target {
                ResourceTarget::Object { namespace, attribute, name } => {
                    let (key, resource) = OBJECT_ATTRIBUTES[*attribute];
                    let namespace = match (resources[*attribute].as_ref(), namespace) {
                        (Some(Ok((resolved, true))), Some(namespace)) => (resolved, *namespace),
                        (Some(Ok((resolved, false))), None) => (resolved, ""),
                        (Some(Ok((resolved, namespaced))), _) => {
                            rejected.push((
                                index,
                                format!(
                                    "{key} names {resolved}, which is {}",
                                    if *namespaced { "namespaced" } else { "cluster-scoped" }
                                ),
                            ));
                            continue;
                        }
                        (Some(Err(error)), _) => {
                            rejected
                                .push((index, format!("{key} names {resource}, which cannot be resolved: {error}")));
                            continue;
                        }
                        (None, _) => continue,
                    };
                    SeriesKey::Custom {
                        resource: Arc::clone(namespace.0),
                        namespace: namespace.1,
                        name,
                        metric: &value.metric,
                    }
                }
                ResourceTarget::External { namespace } => {
                    SeriesKey::External { namespace, metric: &value.metric, labels: labels.clone() }
                }
            };
            if let Some(&first) = first_of.get(&series) {
                let first = &mapped.values[first];
                let reason = match &series {
                    SeriesKey::Custom { .. } => format!(
                        "it is stored as the same value as an earlier data point of {} with labels {:?}: an object holds one value per metric, so points of one object that differ only in attributes collide",
                        first.metric,
                        first.labels.to_map()
                    ),
                    SeriesKey::External { .. } => {
                        format!("duplicate series: an earlier data point of {} has the same attributes", first.metric)
                    }
                };
                rejected.push((index, reason));
                continue;
            }
            first_of.insert(series.clone(), index);
            // A counter's rate is served (docs/wire-contract.md §4.6).
            let kind = if value.counter { SeriesKind::Counter } else { SeriesKind::Gauge };
            let write = SampleWrite { value: value.value, labels: labels.clone(), ttl: self.default_ttl, kind };
            ready.push(Ready { index, series, write });
        }
        // One denied check refuses the export: the caller may not write what it sent (docs/wire-contract.md §4.7).
        let denied = authorize_series(ready.iter().map(|item| (item.index, &item.series)), false, gate).await?;
        if let Some((_, cause)) = denied.into_iter().next() {
            return Err(cause.error);
        }
        // A point some of whose values cannot be stored stores none of them.
        let mut refused_points: HashSet<usize> =
            rejected.iter().map(|(index, _)| mapped.values[*index].point).collect();
        ready.retain(|item| !refused_points.contains(&mapped.values[item.index].point));
        for attempt in 1..=STORE_ATTEMPTS {
            if ready.is_empty() {
                break;
            }
            let causes = self.store_all_or_none(&ready).await?;
            if causes.is_empty() {
                break;
            }
            if let Some(position) = causes
                .iter()
                .position(|(_, cause)| matches!(cause.error, RequestError::Store(StoreError::Unavailable(_))))
            {
                return Err(causes
                    .into_iter()
                    .nth(position)
                    .map(|(_, cause)| cause.error)
                    .unwrap_or(RequestError::Store(StoreError::Unavailable("the store refused the export".into()))));
            }
            for (index, cause) in causes {
                refused_points.insert(mapped.values[index].point);
                rejected.push((index, cause.error.to_string()));
            }
            if attempt == STORE_ATTEMPTS {
                for item in &ready {
                    if refused_points.insert(mapped.values[item.index].point) {
                        rejected.push((
                            item.index,
                            "the store refused other writes of this export several times in a row: send it again"
                                .into(),
                        ));
                    }
                }
                break;
            }
            ready.retain(|item| !refused_points.contains(&mapped.values[item.index].point));
        }
        drop(ready);
        drop(first_of);
        for (index, reason) in rejected {
            let value = &mapped.values[index];
            let what = match mapped.targets.get(value.resource) {
                Some(Ok(target)) => format!("{}{:?} ({})", value.metric, value.labels.to_map(), target.describe()),
                _ => value.metric.to_string(),
            };
            mapped.rejected.push(RejectedPoint { point: value.point, what, reason });
        }
        Ok(())
    }
}

/// The answer to a stored export: `partial_success` set when some data points were rejected.
fn export_response(mapped: &Mapped, encoding: Encoding) -> HttpResponse {
    let mut rejected = mapped.rejected.clone();
    rejected.sort_by_key(|r| r.point);
    rejected.dedup_by_key(|r| r.point);
    let partial = (!rejected.is_empty()).then(|| {
        let named: Vec<String> =
            rejected.iter().take(NAMED_REJECTIONS).map(|r| format!("{}: {}", r.what, r.reason)).collect();
        let more = rejected.len().saturating_sub(NAMED_REJECTIONS);
        ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected.len()).unwrap_or(i64::MAX),
            error_message: format!(
                "{} of {} data points were not stored (the others were): {}{}",
                rejected.len(),
                mapped.total,
                named.join("; "),
                if more > 0 { format!("; and {more} more") } else { String::new() }
            ),
        }
    });
    let body = match encoding {
        Encoding::Protobuf => ExportMetricsServiceResponse { partial_success: partial }.encode_to_vec(),
        // OTLP JSON: int64 as a decimal string; a full success is an empty object.
        Encoding::Json => {
            let json = match partial {
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedDataPoints": p.rejected_data_points.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => serde_json::json!({}),
            };
            json.to_string().into_bytes()
        }
    };
    response::with_body(StatusCode::OK, encoding.content_type(), body.into())
}

/// `google.rpc.Status`, the body of every OTLP failure (prost's derive of the message in google/rpc/status.proto;
/// `details` is not sent).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC code, which OTLP/HTTP clients do not act on.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The gRPC code closest to an HTTP code (the mapping of gRPC's HTTP/JSON transcoding).
fn grpc_code(code: StatusCode) -> i32 {
    match code.as_u16() {
        400 | 405 | 415 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        408 | 504 => 4,
        413 | 429 => 8,
        501 => 12,
        503 | 502 => 14,
        _ => 13,
    }
}

/// A failure as OTLP/HTTP answers it: the error's HTTP code (and headers, such as `Retry-After`), a
/// `google.rpc.Status` body in the request's encoding.
fn rpc_status_response(error: RequestError, encoding: Encoding) -> HttpResponse {
    let status = RpcStatus { code: grpc_code(error.status_code()), message: error.to_string() };
    let mut response = error.into_response(false);
    let body = match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": status.code, "message": status.message}).to_string().into_bytes(),
    };
    *response.body_mut() = response::Body::from(bytes::Bytes::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use wire::AnyValue;

    /// A string as a decoded export holds it: bytes of its own.
    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn typed(key: &str, value: AttributeValue) -> KeyValue {
        KeyValue { key: bytes(key), value: Some(AnyValue { value: Some(value) }) }
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        typed(key, AttributeValue::StringValue(bytes(value)))
    }

    #[test]
    fn each_kubernetes_attribute_names_its_object_the_most_specific_first() {
        for (attribute, (key, _)) in OBJECT_ATTRIBUTES.iter().enumerate().take(7) {
            assert_eq!(
                resource_target(&[kv(NAMESPACE_ATTRIBUTE, "shop"), kv(key, "x-1")]),
                Ok(ResourceTarget::Object { namespace: Some("shop"), attribute, name: "x-1" }),
                "{key}"
            );
        }
        // A pod's resource names its controllers and node too: the pod wins.
        let pod = [
            kv("k8s.node.name", "n1"),
            kv("k8s.deployment.name", "web"),
            kv("k8s.replicaset.name", "web-5d"),
            kv("k8s.pod.name", "web-5d-x"),
            kv(NAMESPACE_ATTRIBUTE, "shop"),
        ];
        assert_eq!(
            resource_target(&pod),
            Ok(ResourceTarget::Object { namespace: Some("shop"), attribute: 0, name: "web-5d-x" })
        );
        // A node needs no namespace, and takes none.
        for attributes in [&[kv("k8s.node.name", "n1")][..], &[kv("k8s.node.name", "n1"), kv(NAMESPACE_ATTRIBUTE, "s")]]
        {
            assert_eq!(
                resource_target(attributes),
                Ok(ResourceTarget::Object { namespace: None, attribute: 7, name: "n1" })
            );
        }
        assert_eq!(
            resource_target(&[kv(NAMESPACE_ATTRIBUTE, "shop"), kv("service.name", "web")]),
            Ok(ResourceTarget::External { namespace: "shop" })
        );
        // An empty value is no attribute.
        assert_eq!(
            resource_target(&[kv(NAMESPACE_ATTRIBUTE, "shop"), kv("k8s.pod.name", "")]),
            Ok(ResourceTarget::External { namespace: "shop" })
        );
    }

    #[test]
    fn resources_that_map_to_nothing_say_why() {
        let int = typed(NAMESPACE_ATTRIBUTE, AttributeValue::IntValue(3));
        let not_utf8 = typed(NAMESPACE_ATTRIBUTE, AttributeValue::StringValue(Bytes::from_static(b"sh\xffop")));
        for (attributes, expected) in [
            (vec![kv("service.name", "web")], "maps to nothing"),
            (vec![], "maps to nothing"),
            (vec![kv("k8s.pod.name", "web-1")], "no namespace"),
            (vec![kv(NAMESPACE_ATTRIBUTE, "Shop")], "k8s.namespace.name=\"Shop\" cannot be used"),
            (vec![kv(NAMESPACE_ATTRIBUTE, "shop"), kv("k8s.pod.name", "Web_1")], "k8s.pod.name=\"Web_1\""),
            (vec![int], "must be a string"),
            (vec![not_utf8], "k8s.namespace.name is not UTF-8"),
        ] {
            let reason = resource_target(&attributes).unwrap_err();
            assert!(reason.contains(expected), "{attributes:?}: {reason}");
        }
    }

    #[test]
    fn content_types() {
        let header = |text: &str| HeaderValue::from_str(text).unwrap();
        assert_eq!(Encoding::from_content_type(Some(&header("application/x-protobuf"))).unwrap(), Encoding::Protobuf);
        assert_eq!(
            Encoding::from_content_type(Some(&header("Application/JSON; charset=utf-8"))).unwrap(),
            Encoding::Json
        );
        for bad in [Some(header("text/plain")), Some(header("application/protobuf")), None] {
            assert!(matches!(
                Encoding::from_content_type(bad.as_ref()),
                Err(RequestError::UnsupportedOtlpContentType(_))
            ));
        }
    }

    #[test]
    fn repeated_namespaces_and_metric_names_are_one_string() {
        use wire::{Gauge, Metric, Resource, ResourceMetrics, ScopeMetrics};
        // Every resource decodes into strings of its own; the mapped values of equal ones share the first's.
        let resource = |pod: &str| ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv(NAMESPACE_ATTRIBUTE, "shop"), kv("k8s.pod.name", pod)] }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: bytes("queue_depth"),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(NumberValue::AsInt(3)),
                            ..NumberDataPoint::default()
                        }],
                    })),
                }],
            }],
        };
        let export = ExportMetricsServiceRequest { resource_metrics: vec![resource("a"), resource("b")] };
        let mapped = map_export(&export, 10).unwrap();
        let namespaces: Vec<&str> = mapped
            .targets
            .iter()
            .map(|target| match target {
                Ok(ResourceTarget::Object { namespace: Some(namespace), .. }) => *namespace,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(namespaces, ["shop", "shop"]);
        assert!(std::ptr::eq(namespaces[0], namespaces[1]));
        let [first, second] = &mapped.values[..] else { panic!("{:?}", mapped.values) };
        assert!(matches!((&first.metric, &second.metric), (Cow::Borrowed(_), Cow::Borrowed(_))));
        assert!(std::ptr::eq(first.metric.as_ref(), second.metric.as_ref()));
        assert!(!std::ptr::eq(
            first.metric.as_ptr(),
            export.resource_metrics[1].scope_metrics[0].metrics[0].name.as_ptr()
        ));
    }

    #[test]
    fn attributes_become_labels() {
        let labels = labels(&[
            kv("http.request.method", "GET"),
            typed("ok", AttributeValue::BoolValue(true)),
            typed("code", AttributeValue::IntValue(200)),
            typed("ratio", AttributeValue::DoubleValue(0.5)),
            kv("empty", ""),
        ])
        .unwrap();
        assert_eq!(
            labels.to_map(),
            BTreeMap::from([
                ("code".into(), "200".into()),
                ("http.request.method".into(), "GET".into()),
                ("ok".into(), "true".into()),
                ("ratio".into(), "0.5".into()),
            ])
        );
        for (attributes, expected) in [
            (vec![kv("path", "/api")], "path=\"/api\" cannot be a label"),
            (vec![kv("a", "1"), kv("a", "2")], "given twice"),
            (vec![typed("b", AttributeValue::BytesValue(bytes("1")))], "array, a map or bytes"),
            (vec![typed("b", AttributeValue::ArrayValue(Bytes::new()))], "array, a map or bytes"),
            (
                vec![typed("b", AttributeValue::StringValue(Bytes::from_static(b"\xc3")))],
                "the attribute b is not UTF-8",
            ),
            (vec![KeyValue { key: Bytes::from_static(b"\xc3"), value: None }], "key is not UTF-8"),
        ] {
            assert!(super::labels(&attributes).unwrap_err().contains(expected), "{attributes:?}");
        }
    }
}
