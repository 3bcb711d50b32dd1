//! Batch writes: `POST /write-metrics` with `{"items": [...]}`, every item a custom or an external value, all
//! stored or none (docs/wire-contract.md §4.4, §10 item 21).
//!
//! The steps, each over the whole batch before the next: the body is read (`--max-batch-body-bytes`) and split
//! into items (`--max-batch-items`); every item is validated as the single write of the same value would be
//! (names, value, labels, ttl, resource resolved through the `ResourceMapper`, scope); the write gate admits each
//! distinct (namespace, resource, metric) once; the previous values of the batch's series are read; the store
//! applies the batch in one `put_many`; if the store refused any write, the applied ones are undone. A refused
//! batch is one `Status` whose `details.causes` name every refused item by index.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use http::Method;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{
    FastMap, Ingest, ResolvedCustom, Series, WriteGate, WriteTarget, parse_body, parse_kind, parse_ttl,
    validate_metric_name, validate_namespace, validate_object_name,
};
use crate::auth;
use crate::clock::{Clock, SystemClock};
use crate::cluster::MapperError;
use crate::quantity::Quantity;
use crate::response::{self, BatchCause, HttpResponse, RequestError};
use crate::selector::{parse_labels_map, validate_label_key, validate_label_value_for_key};
use crate::store::{CustomSeriesId, Put, Sample, SampleWrite, SeriesKind, SeriesLabels};

/// The path of batch writes: the custom write prefix without anything after it.
pub const BATCH_PATH: &str = "/write-metrics";

/// The bounds of one batch (`--max-batch-items`, `--max-batch-body-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Items one batch may hold.
    pub max_items: usize,
    /// Bytes one batch body may have.
    pub max_body_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_items: 10_000, max_body_bytes: 4 << 20 }
    }
}

/// Authorization checks of one batch in flight at once: the distinct checks are few and cached, but a batch of many
/// metrics must not wait for each review in turn, nor send kube-apiserver all of them at once.
const CONCURRENT_CHECKS: usize = 8;

/// One item of a batch, parsed and validated on its own (its resource not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem<'a> {
    /// What it names: a custom value (`resource` given) or an external one.
    pub target: WriteTarget<'a>,
    /// The value.
    pub value: Quantity,
    /// Custom: attributes of the value; external: part of the series' identity.
    pub labels: SeriesLabels,
    /// The item's `ttl`, if any.
    pub ttl: Option<Duration>,
    /// The item's `kind` (`gauge` unless given).
    pub kind: SeriesKind,
}

/// Each item of a batch, or the causes that refuse it.
pub type ParsedBatch<'a> = Vec<Result<BatchItem<'a>, Vec<BatchCause>>>;

/// Splits a batch body into its items and validates each on its own (docs/wire-contract.md §4.4). Pure: resources
/// are resolved, writes authorized and stored later. A body that is not a batch is refused whole (400), as is one
/// of more than `max_items` items (413).
pub fn parse_batch(body: &[u8], max_items: usize) -> Result<ParsedBatch<'_>, RequestError> {
    let text = std::str::from_utf8(body).map_err(|_| RequestError::BadBatch("the body is not UTF-8 text".into()))?;
    let too_many = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = de::Deserializer::deserialize_map(&mut deserializer, BodyVisitor { max_items, too_many: &too_many })
        .and_then(|items| deserializer.end().map(|()| items));
    let raw_items = match parsed {
        Ok(items) => items,
        Err(_) if too_many.get() => return Err(RequestError::TooManyBatchItems { limit: max_items }),
        Err(error) => return Err(RequestError::BadBatch(error.to_string())),
    };
    Ok(raw_items.into_iter().enumerate().map(|(index, raw)| parse_item(index, raw)).collect())
}

/// The top level: an object with `items` and nothing else.
struct BodyVisitor<'c> {
    max_items: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {\"items\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key != "items" {
                return Err(de::Error::unknown_field(&key, &["items"]));
            }
            if items.is_some() {
                return Err(de::Error::duplicate_field("items"));
            }
            items = Some(map.next_value_seed(ItemsSeed { max_items: self.max_items, too_many: self.too_many })?);
        }
        items.ok_or_else(|| de::Error::missing_field("items"))
    }
}

/// The `items` array, cut off at `max_items`: the items are not all kept before they are counted.
struct ItemsSeed<'c> {
    max_items: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max_items {
                self.too_many.set(true);
                return Err(de::Error::custom("too many items"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// An item's fields, each kept as raw JSON so that a wrong one is named by its own field path.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem<'a> {
    #[serde(borrow, default)]
    namespace: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metric: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    labels: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ttl: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
}

/// Collects the causes of one item.
struct ItemCauses {
    index: usize,
    causes: Vec<BatchCause>,
}

impl ItemCauses {
    fn push(&mut self, field: &str, error: RequestError) {
        let field =
            if field.is_empty() { format!("items[{}]", self.index) } else { format!("items[{}].{field}", self.index) };
        self.causes.push(BatchCause { field, error });
    }

    /// `Some` when the field is present and valid; a cause otherwise (`Required value` when required and absent).
    fn take<'a, T>(
        &mut self,
        field: &'static str,
        raw: Option<&'a RawValue>,
        required: bool,
        parse: impl FnOnce(&'a RawValue) -> Result<T, RequestError>,
    ) -> Option<T> {
        match raw {
            None if required => {
                self.push(field, RequestError::BatchFieldRequired(field));
                None
            }
            None => None,
            Some(raw) => match parse(raw) {
                Ok(value) => Some(value),
                Err(error) => {
                    self.push(field, error);
                    None
                }
            },
        }
    }
}

fn parse_item(index: usize, raw: &RawValue) -> Result<BatchItem<'_>, Vec<BatchCause>> {
    let mut causes = ItemCauses { index, causes: Vec::new() };
    let item: RawItem<'_> = match serde_json::from_str(raw.get()) {
        Ok(item) => item,
        Err(error) => {
            causes.push("", RequestError::BadBatchItem(format!("not an item: {error}")));
            return Err(causes.causes);
        }
    };
    // The presence of `resource` makes a custom item; without it, an external one (which has no `name`).
    let custom = item.resource.is_some();
    let namespace = causes.take("namespace", item.namespace, !custom, |raw| {
        let namespace = string_field(raw)?;
        validate_namespace(&namespace)?;
        Ok(namespace)
    });
    let resource = causes.take("resource", item.resource, false, string_field);
    let name = if custom {
        causes.take("name", item.name, true, |raw| {
            let name = string_field(raw)?;
            validate_object_name(&name)?;
            Ok(name)
        })
    } else {
        if item.name.is_some() {
            causes.push(
                "name",
                RequestError::BadBatchItem(
                    "an external item has no name: give resource too for a value on an object".into(),
                ),
            );
        }
        None
    };
    let metric = causes.take("metric", item.metric, true, |raw| {
        let metric = string_field(raw)?;
        validate_metric_name(&metric)?;
        Ok(metric)
    });
    let value = causes.take("value", item.value, true, |raw| parse_body(raw.get().as_bytes()));
    let labels = causes.take("labels", item.labels, false, labels_field).unwrap_or_default();
    let ttl = causes.take("ttl", item.ttl, false, ttl_field);
    let kind = causes.take("kind", item.kind, false, kind_field).unwrap_or_default();
    if !causes.causes.is_empty() {
        return Err(causes.causes);
    }
    // Every field a kind needs is present here: a missing one is a cause above.
    let target = match (resource, name, namespace, metric) {
        (Some(resource), Some(name), namespace, Some(metric)) => {
            WriteTarget::Custom { namespace, resource, name, metric }
        }
        (None, None, Some(namespace), Some(metric)) => WriteTarget::External { namespace, metric },
        _ => return Err(incomplete(causes)),
    };
    match value {
        Some(value) => Ok(BatchItem { target, value, labels, ttl, kind }),
        None => Err(incomplete(causes)),
    }
}

/// The causes of an item that is not complete; never empty.
fn incomplete(mut causes: ItemCauses) -> Vec<BatchCause> {
    if causes.causes.is_empty() {
        causes.push("", RequestError::BadBatchItem("incomplete item".into()));
    }
    causes.causes
}

/// A JSON string, borrowed from the body unless it has escapes.
fn string_field(raw: &RawValue) -> Result<Cow<'_, str>, RequestError> {
    let text = raw.get();
    if let Ok(borrowed) = serde_json::from_str::<&str>(text) {
        return Ok(Cow::Borrowed(borrowed));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|_| RequestError::BadBatchItem(format!("must be a JSON string, not {}", super::shorten(text))))
}

/// `labels`: an object of string values (`{"queue": "orders"}`), or the single write's `k=v,k2=v2` text; keys and
/// values are validated as the single write validates them, with the same messages.
fn labels_field(raw: &RawValue) -> Result<SeriesLabels, RequestError> {
    let bad = |e: crate::selector::SelectorError| RequestError::BadBatchItem(e.to_string());
    let text = raw.get();
    let map = if text.starts_with('"') {
        parse_labels_map(&string_field(raw)?).map_err(bad)?
    } else {
        let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(|_| {
            RequestError::BadBatchItem(
                "must be an object of string values such as {\"queue\": \"orders\"}, or a string such as \"queue=orders\""
                    .into(),
            )
        })?;
        for (key, value) in &map {
            validate_label_key(key).map_err(bad)?;
            validate_label_value_for_key(key, value).map_err(bad)?;
        }
        map
    };
    Ok(SeriesLabels::from_map(map))
}

/// `kind`: `"gauge"` or `"counter"`, as the single write's `kind` parameter.
fn kind_field(raw: &RawValue) -> Result<SeriesKind, RequestError> {
    let text = string_field(raw)?;
    parse_kind(&text).map_err(RequestError::BadBatchItem)
}

/// `ttl`: a duration string (`"30s"`, `"1h30m"`) or a number of seconds, as the single write's `ttl`.
fn ttl_field(raw: &RawValue) -> Result<Duration, RequestError> {
    let text = raw.get();
    let ttl = if text.starts_with('"') {
        parse_ttl(&string_field(raw)?)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        parse_ttl(text)
    } else {
        Err("must be a duration such as \"30s\" or a number of seconds".to_string())
    };
    ttl.map_err(RequestError::BadBatchItem)
}

/// A batch item (or a pushed sample, [`super::push`]) resolved to its series: what is authorized and stored.
pub(super) struct Ready<'a> {
    pub(super) index: usize,
    pub(super) series: SeriesKey<'a>,
    pub(super) write: SampleWrite,
}

/// The identity of a series in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum SeriesKey<'a> {
    Custom { resource: Arc<str>, namespace: &'a str, name: &'a str, metric: &'a str },
    External { namespace: &'a str, metric: &'a str, labels: SeriesLabels },
}

impl SeriesKey<'_> {
    pub(super) fn put(&self, write: SampleWrite) -> Put<'_> {
        match self {
            SeriesKey::Custom { resource, namespace, name, metric } => {
                Put::Custom(CustomSeriesId { resource: resource.as_ref(), namespace, name, metric }, write)
            }
            SeriesKey::External { namespace, metric, .. } => Put::External { namespace, metric, write },
        }
    }

    /// What the write gate decides on: a custom write without its object name (docs/wire-contract.md §6.3), except
    /// on Namespace objects, whose name is the namespace of the check.
    fn check(&self) -> CheckKey<'_> {
        match self {
            SeriesKey::Custom { resource, namespace, name, metric } => CheckKey::Custom {
                resource: resource.as_ref(),
                namespace,
                name: if resource.as_ref() == "namespaces" { name } else { "" },
                metric,
            },
            SeriesKey::External { namespace, metric, .. } => CheckKey::External { namespace, metric },
        }
    }
}

/// One authorization check of a batch.
#[derive(Debug, Clone, Copy, Eq, Hash)]
enum CheckKey<'a> {
    Custom { resource: &'a str, namespace: &'a str, name: &'a str, metric: &'a str },
    External { namespace: &'a str, metric: &'a str },
}

/// Compared once an item: the strings of consecutive items are usually the same strings (an export's are made one,
/// a batch's resource is shared), which are equal without reading them; `memcmp` calls here were 8 % of an OTLP
/// export's cycles.
impl PartialEq for CheckKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        fn same(a: &str, b: &str) -> bool {
            std::ptr::eq(a, b) || a == b
        }
        match (self, other) {
            (
                CheckKey::Custom { resource, namespace, name, metric },
                CheckKey::Custom { resource: r, namespace: n, name: o, metric: m },
            ) => same(metric, m) && same(name, o) && same(namespace, n) && same(resource, r),
            (CheckKey::External { namespace, metric }, CheckKey::External { namespace: n, metric: m }) => {
                same(metric, m) && same(namespace, n)
            }
            _ => false,
        }
    }
}

impl CheckKey<'_> {
    fn series(&self) -> Series<'_> {
        match *self {
            CheckKey::Custom { resource, namespace, name, metric } => {
                Series::Custom(ResolvedCustom { resource: resource.to_string(), namespace, name, metric })
            }
            CheckKey::External { namespace, metric } => Series::External { namespace, metric },
        }
    }
}

/// The batch's refusal: every cause, in item order.
pub(super) fn refused(total: usize, mut causes: Vec<(usize, BatchCause)>) -> RequestError {
    // Stable: the causes of one item stay in field order.
    causes.sort_by_key(|(index, _)| *index);
    let mut refused = causes.iter().map(|(index, _)| *index).collect::<Vec<_>>();
    refused.dedup();
    RequestError::BatchRefused {
        total,
        refused: refused.len(),
        causes: causes.into_iter().map(|(_, cause)| cause).collect(),
    }
}

fn item_cause(index: usize, error: RequestError) -> (usize, BatchCause) {
    (index, BatchCause { field: format!("items[{index}]"), error })
}

impl Ingest {
    /// Answers `POST /write-metrics` (docs/wire-contract.md §4.4). Takes `body` only when it reads it.
    pub(super) async fn apply_batch<B>(
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
        super::refuse_parameters(request, "a batch takes no parameters: give labels and ttl in each item")?;
        let limit = self.batch.max_body_bytes;
        let bytes = match body.take() {
            Some(body) => self.read_bytes(&request.headers, body, limit).await.map_err(|error| match error {
                RequestError::BodyTooLarge { limit } => RequestError::BatchBodyTooLarge { limit },
                other => other,
            })?,
            None => Vec::new(),
        };
        let parsed = parse_batch(&bytes, self.batch.max_items)?;
        let total = parsed.len();
        let mut causes = Vec::new();
        let mut items = Vec::with_capacity(total);
        for (index, item) in parsed.into_iter().enumerate() {
            match item {
                Ok(item) => items.push((index, item)),
                Err(item_causes) => causes.extend(item_causes.into_iter().map(|cause| (index, cause))),
            }
        }
        let ready = self.resolve_items(&items, &mut causes).await;
        causes.extend(self.authorize(&ready, gate).await?);
        if !causes.is_empty() {
            return Err(refused(total, causes));
        }
        if !ready.is_empty() {
            self.store_all(total, ready).await?;
        }
        Ok(response::empty_response())
    }

    /// The series of each item: custom resources resolved through the mapper (each distinct one once) and their
    /// scope checked against the item's namespace; a cause for each item that cannot be resolved.
    async fn resolve_items<'a>(
        &self,
        items: &'a [(usize, BatchItem<'_>)],
        causes: &mut Vec<(usize, BatchCause)>,
    ) -> Vec<Ready<'a>> {
        let mut resources: FastMap<&str, Result<(Arc<str>, bool), MapperError>> = FastMap::default();
        let mut ready = Vec::with_capacity(items.len());
        for (index, item) in items {
            let index = *index;
            let series = match &item.target {
                WriteTarget::Custom { namespace, resource, name, metric } => {
                    let resource: &str = resource;
                    let resolved = match resources.get(resource) {
                        Some(resolved) => resolved.clone(),
                        None => {
                            let resolved = self
                                .mapper
                                .resolve(resource)
                                .await
                                .map(|info| (Arc::<str>::from(info.group_resource()), info.namespaced));
                            resources.insert(resource, resolved.clone());
                            resolved
                        }
                    };
                    let mut refuse = |field: &str, error: RequestError| {
                        causes.push((index, BatchCause { field: format!("items[{index}].{field}"), error }));
                    };
                    let (group_resource, namespaced) = match resolved {
                        Ok(resolved) => resolved,
                        Err(error) => {
                            refuse("resource", RequestError::UnknownResource(error));
                            continue;
                        }
                    };
                    let namespace = match (namespaced, namespace.as_deref()) {
                        (true, Some(namespace)) => namespace,
                        (false, None) => "",
                        (true, None) => {
                            let message = format!("{group_resource} is namespaced: give the item a namespace");
                            refuse("namespace", RequestError::WrongScope(message));
                            continue;
                        }
                        (false, Some(_)) => {
                            let message = format!("{group_resource} is cluster-scoped: give the item no namespace");
                            refuse("namespace", RequestError::WrongScope(message));
                            continue;
                        }
                    };
                    SeriesKey::Custom {
                        resource: group_resource,
                        namespace,
                        name: name.as_ref(),
                        metric: metric.as_ref(),
                    }
                }
                WriteTarget::External { namespace, metric } => SeriesKey::External {
                    namespace: namespace.as_ref(),
                    metric: metric.as_ref(),
                    labels: item.labels.clone(),
                },
            };
            let write = SampleWrite {
                value: item.value,
                labels: item.labels.clone(),
                ttl: item.ttl.or(self.default_ttl),
                kind: item.kind,
            };
            ready.push(Ready { index, series, write });
        }
        ready
    }

    /// Asks the gate once per distinct check, a few at a time. A denied check refuses each of its items; any other
    /// failure of the gate (a review that could not be made, a rate limit) is the batch's answer.
    async fn authorize(
        &self,
        ready: &[Ready<'_>],
        gate: &dyn WriteGate,
    ) -> Result<Vec<(usize, BatchCause)>, RequestError> {
        authorize_series(ready.iter().map(|item| (item.index, &item.series)), false, gate).await
    }

    /// Stores the batch in one `put_many`; if the store refused any write, puts the batch's series back as they
    /// were before it and refuses the batch with the store's errors.
    async fn store_all(&self, total: usize, ready: Vec<Ready<'_>>) -> Result<(), RequestError> {
        let causes = self.store_all_or_none(&ready).await?;
        if causes.is_empty() { Ok(()) } else { Err(refused(total, causes)) }
    }
}

/// Asks `gate` once per distinct check of `series` (`delete` for removals), a few at a time. A denied check refuses
/// each of its items (by index); any other failure of the gate (a review that could not be made, a rate limit) is
/// the request's answer. Shared by batches and pushes ([`super::push`]).
pub(super) async fn authorize_series<'s, 'k: 's>(
    series: impl Iterator<Item = (usize, &'s SeriesKey<'k>)>,
    delete: bool,
    gate: &dyn WriteGate,
) -> Result<Vec<(usize, BatchCause)>, RequestError> {
    let mut checks: Vec<(CheckKey<'_>, Vec<usize>)> = Vec::new();
    let mut positions = FastMap::default();
    // Items of one check usually come together (one metric of many objects): the previous item's check is compared
    // before the map is asked.
    let mut last: Option<(CheckKey<'_>, usize)> = None;
    for (index, series) in series {
        let key = series.check();
        let position = match last {
            Some((last_key, position)) if last_key == key => position,
            _ => *positions.entry(key).or_insert_with(|| {
                checks.push((key, Vec::new()));
                checks.len() - 1
            }),
        };
        last = Some((key, position));
        checks[position].1.push(index);
    }
    let mut answers = Vec::with_capacity(checks.len());
    for chunk in checks.chunks(CONCURRENT_CHECKS) {
        let series: Vec<Series<'_>> = chunk.iter().map(|(key, _)| key.series()).collect();
        answers.extend(join_all(series.iter().map(|series| gate.admit(series, delete))).await);
    }
    let mut causes = Vec::new();
    for ((_, indexes), answer) in checks.iter().zip(answers) {
        match answer {
            Ok(()) => {}
            Err(RequestError::Auth(auth::Error::Forbidden { message, name, group, kind })) => {
                for &index in indexes {
                    let forbidden = auth::Error::Forbidden {
                        message: message.clone(),
                        name: name.clone(),
                        group: group.clone(),
                        kind: kind.clone(),
                    };
                    causes.push(item_cause(index, RequestError::Auth(forbidden)));
                }
            }
            Err(other) => return Err(other),
        }
    }
    Ok(causes)
}

impl Ingest {
    /// Stores `ready` in one `put_many`; if the store refused any write, puts the series back as they were before
    /// (the store gives the sample each write replaced) and answers the store's errors, by item (empty when
    /// everything was stored).
    pub(super) async fn store_all_or_none(
        &self,
        ready: &[Ready<'_>],
    ) -> Result<Vec<(usize, BatchCause)>, RequestError> {
        let puts = ready.iter().map(|item| item.series.put(item.write.clone())).collect();
        let results = self.store.put_many(puts).await;
        if results.iter().all(Result::is_ok) {
            return Ok(Vec::new());
        }
        let mut causes = Vec::new();
        // Per series written, the live sample before the first write to it.
        let mut previous: HashMap<&SeriesKey<'_>, Option<Sample>> = HashMap::new();
        for (item, result) in ready.iter().zip(results) {
            match result {
                Ok(replaced) => {
                    previous.entry(&item.series).or_insert(replaced);
                }
                Err(error) => causes.push(item_cause(item.index, RequestError::Store(error))),
            }
        }
        self.undo(previous).await;
        Ok(causes)
    }

    /// Puts the series written back as `previous` says: deleted where the write created them, rewritten with their
    /// value, labels and remaining lifetime where it replaced one. A write made to one of them by someone else
    /// between the writes and the undo is lost; a failure to undo is logged.
    async fn undo(&self, previous: HashMap<&SeriesKey<'_>, Option<Sample>>) {
        let now = SystemClock.now_millis();
        let mut restores = Vec::new();
        for (series, before) in previous {
            let ttl = before.as_ref().map(|sample| match sample.expires_at_millis {
                i64::MAX => Ok(None),
                deadline if deadline > now => Ok(Some(Duration::from_millis((deadline - now).unsigned_abs()))),
                _ => Err(()),
            });
            match (before, ttl) {
                (Some(sample), Some(Ok(ttl))) => restores.push(series.put(SampleWrite {
                    value: sample.value,
                    labels: sample.labels,
                    ttl,
                    kind: sample.kind,
                })),
                // Created by the batch, or expired since: removed.
                _ => {
                    let deleted = match series {
                        SeriesKey::Custom { resource, namespace, name, metric } => {
                            self.store.delete_custom(CustomSeriesId { resource, namespace, name, metric }).await
                        }
                        SeriesKey::External { namespace, metric, labels } => {
                            self.store.delete_external(namespace, metric, labels).await
                        }
                    };
                    if let Err(error) = deleted {
                        tracing::error!(%error, ?series, "undoing a refused batch: a series it wrote could not be removed");
                    }
                }
            }
        }
        for result in self.store.put_many(restores).await {
            if let Err(error) = result {
                tracing::error!(%error, "undoing a refused batch: a value it replaced could not be put back");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(causes: &[BatchCause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn custom_and_external_items_are_told_apart_by_resource() {
        let body = br#"{"items": [
            {"namespace": "default", "resource": "pods", "name": "web-1", "metric": "q", "value": "42",
             "labels": {"path": "a"}, "ttl": "30s"},
            {"resource": "nodes", "name": "n1", "metric": "temp", "value": 1.5},
            {"namespace": "default", "metric": "queue", "labels": "queue=orders", "value": 7, "ttl": 90}
        ]}"#;
        let items: Vec<BatchItem<'_>> = parse_batch(body, 10).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(
            items[0].target,
            WriteTarget::Custom {
                namespace: Some("default".into()),
                resource: "pods".into(),
                name: "web-1".into(),
                metric: "q".into()
            }
        );
        assert_eq!(items[0].value.to_string(), "42");
        assert_eq!(items[0].labels.to_map().get("path").map(String::as_str), Some("a"));
        assert_eq!(items[0].ttl, Some(Duration::from_secs(30)));
        assert!(matches!(&items[1].target, WriteTarget::Custom { namespace: None, .. }));
        assert_eq!(items[1].value.to_string(), "1500m");
        assert_eq!(items[1].ttl, None);
        assert_eq!(items[2].target, WriteTarget::External { namespace: "default".into(), metric: "queue".into() });
        assert_eq!(items[2].labels.to_map().get("queue").map(String::as_str), Some("orders"));
        assert_eq!(items[2].ttl, Some(Duration::from_secs(90)));
        // Escaped strings decode; null is absent.
        let body = br#"{"items": [{"namespace": "d\u0065fault", "metric": "m", "value": "4\u0032", "ttl": null}]}"#;
        let item = parse_batch(body, 10).unwrap().remove(0).unwrap();
        assert_eq!(item.target, WriteTarget::External { namespace: "default".into(), metric: "m".into() });
        assert_eq!(item.value.to_string(), "42");
        assert_eq!(parse_batch(br#"{"items": []}"#, 10).unwrap().len(), 0);
    }

    #[test]
    fn a_body_that_is_not_a_batch_is_refused_whole() {
        for body in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"items\": {}}",
            b"{\"items\": [], \"extra\": 1}",
            b"{\"items\": [], \"items\": []}",
            b"{\"items\": []} trailing",
            b"{\"items\": [",
            b"\xff",
            b"\"42\"",
        ] {
            assert!(
                matches!(parse_batch(body, 10), Err(RequestError::BadBatch(_))),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn more_items_than_the_limit_are_refused_before_all_are_kept() {
        let batch = |n: usize| {
            let item = r#"{"namespace": "d", "metric": "m", "value": 1}"#;
            format!("{{\"items\": [{}]}}", vec![item; n].join(","))
        };
        assert_eq!(parse_batch(batch(3).as_bytes(), 3).unwrap().len(), 3);
        assert!(matches!(parse_batch(batch(4).as_bytes(), 3), Err(RequestError::TooManyBatchItems { limit: 3 })));
        // Counted before a later item is even parsed: an invalid item past the limit does not change the answer.
        let body = format!("{}, nonsense]}}", batch(4).trim_end_matches("]}"));
        assert!(matches!(parse_batch(body.as_bytes(), 3), Err(RequestError::TooManyBatchItems { .. })));
    }

    #[test]
    fn each_bad_field_is_named_by_index_with_the_single_writes_error() {
        let body = br#"{"items": [
            {"namespace": "default", "metric": "ok", "value": 1},
            {"namespace": "Default", "metric": "m", "value": 1},
            {"namespace": "default", "metric": "m", "value": "abc"},
            {"namespace": "default", "resource": "pods", "metric": "m", "value": 1},
            {"namespace": "default", "metric": "a b", "value": 1, "labels": {"-a": "b"}, "ttl": "0"},
            {"namespace": "default", "name": "x", "metric": "m", "value": 1},
            {"metric": "m"},
            {"namespace": 5, "metric": "m", "value": 1, "colour": "red"},
            "not an object",
            {"namespace": "default", "metric": "m", "value": null, "labels": {"a": "b!"}, "ttl": true},
            {"namespace": "default", "resource": "pods", "name": "Web", "metric": "m", "value": 1}
        ]}"#;
        let parsed = parse_batch(body, 100).unwrap();
        assert!(parsed[0].is_ok());
        let causes: Vec<Vec<BatchCause>> = parsed.into_iter().skip(1).map(Result::unwrap_err).collect();
        assert_eq!(fields(&causes[0]), ["items[1].namespace"]);
        assert!(matches!(causes[0][0].error, RequestError::InvalidName { what: "namespace", .. }));
        assert_eq!(fields(&causes[1]), ["items[2].value"]);
        assert!(matches!(causes[1][0].error, RequestError::BadValue { .. }));
        assert_eq!(fields(&causes[2]), ["items[3].name"]);
        assert!(matches!(causes[2][0].error, RequestError::BatchFieldRequired("name")));
        assert_eq!(fields(&causes[3]), ["items[4].metric", "items[4].labels", "items[4].ttl"]);
        assert!(causes[3][1].error.to_string().starts_with(r#"<nil>: Invalid value: "-a": name part must"#));
        assert!(causes[3][2].error.to_string().contains("at least 1ms"), "{}", causes[3][2].error);
        assert_eq!(fields(&causes[4]), ["items[5].name"]);
        assert_eq!(fields(&causes[5]), ["items[6].namespace", "items[6].value"]);
        // An unknown field refuses the whole item: it may be a typo of a field that mattered.
        assert_eq!(fields(&causes[6]), ["items[7]"]);
        assert!(causes[6][0].error.to_string().contains("unknown field `colour`"), "{}", causes[6][0].error);
        assert_eq!(fields(&causes[7]), ["items[8]"]);
        assert_eq!(fields(&causes[8]), ["items[9].value", "items[9].labels", "items[9].ttl"]);
        assert!(causes[8][1].error.to_string().starts_with(r#"[a]: Invalid value: "b!""#), "{}", causes[8][1].error);
        assert_eq!(fields(&causes[9]), ["items[10].name"]);
        assert!(matches!(causes[9][0].error, RequestError::InvalidName { what: "object name", .. }));
    }

    #[test]
    fn a_wrongly_typed_field_says_what_it_must_be() {
        let body = br#"{"items": [{"namespace": 5, "metric": ["m"], "value": 1, "labels": 3, "ttl": {}}]}"#;
        let causes = parse_batch(body, 10).unwrap().remove(0).unwrap_err();
        let messages: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.error)).collect();
        assert_eq!(
            messages,
            [
                "items[0].namespace: must be a JSON string, not 5",
                r#"items[0].metric: must be a JSON string, not ["m"]"#,
                r#"items[0].labels: must be an object of string values such as {"queue": "orders"}, or a string such as "queue=orders""#,
                r#"items[0].ttl: must be a duration such as "30s" or a number of seconds"#,
            ]
        );
    }
}
