//! The admin listener's endpoint (docs/architecture.md §14): the status page, server-rendered HTML with inline CSS
//! and SVG and no script, and its JSON twin (`Accept: application/json`, docs/wire-contract.md §12). One view
//! lists every live series, grouped by namespace, resource and metric, filtered by namespace and metric name,
//! sorted and paginated by query parameters, beside the adapter's state and its write rates.
//!
//! - [`flags`]: `--admin-address`, `--admin-allow-non-loopback`, `--admin-max-page-size`.
//! - [`state`]: the state's sections and their sources.
//! - [`rates`]: per-minute snapshots of the write counts.
//! - [`sparkline`]: recent values as inline SVG.
//! - [`html`]: the page.

pub mod flags;
pub mod html;
pub mod rates;
pub mod sparkline;
pub mod state;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use serde::Serialize;
use tokio_util::task::AbortOnDropHandle;

pub use flags::{AdminConfigError, AdminFlags, AdminOptions};
pub use state::{Level, StateEntry, StateSection, StateSource};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::response::{self, HttpResponse, Status};
use crate::store::{MetricStore, Sample, SeriesFilter, SeriesPosition, StoreError, StoredSeries};

/// The page's path; every other path of the admin listener is a 404.
pub const PATH: &str = "/";
/// Rows a view shows when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Series read from the store per call while a view walks them.
const WALK_CHUNK: usize = 1000;
/// The page's Content-Security-Policy: nothing is loaded from anywhere, no script runs; inline styles only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Whether `path` is the page.
pub fn is_admin_path(path: &str) -> bool {
    path == PATH
}

/// Why a view cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A query parameter the page does not know.
    #[error("unknown query parameter {0:?}: the page takes namespace, metric, sort, page, limit and pretty")]
    UnknownParameter(String),
    /// A query parameter with a value it cannot take.
    #[error("{name}={value:?} is not valid: {expected}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What it takes.
        expected: String,
    },
    /// Only reads.
    #[error("the status page answers GET and HEAD only")]
    MethodNotAllowed,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    fn code(&self) -> StatusCode {
        match self {
            AdminError::UnknownParameter(_) | AdminError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            AdminError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            AdminError::UnknownParameter(_) | AdminError::BadParameter { .. } => "BadRequest",
            AdminError::MethodNotAllowed => "MethodNotAllowed",
            AdminError::Store(StoreError::Unavailable(_)) => "ServiceUnavailable",
            AdminError::Store(_) => "InternalError",
        }
    }

    /// A `Status` for the JSON twin, a page saying what was wrong for a browser.
    fn into_response(self, json: bool, pretty: bool) -> HttpResponse {
        let (code, message) = (self.code(), self.to_string());
        let mut response = if json {
            response::json_response(code, &Status::failure(code, Some(self.reason()), &message, None), pretty)
        } else {
            html_response(code, html::error_page(code, &message))
        };
        if code == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// What a view sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Namespace, resource, metric, then object name or labels: the groups in order.
    Name,
    /// The value.
    Value,
    /// The age (youngest first).
    Age,
    /// The time to expiry (soonest first; never last).
    Expiry,
}

impl SortKey {
    const ALL: [(SortKey, &'static str); 4] =
        [(SortKey::Name, "name"), (SortKey::Value, "value"), (SortKey::Age, "age"), (SortKey::Expiry, "expiry")];

    /// Its name in the `sort` parameter.
    pub fn name(self) -> &'static str {
        SortKey::ALL.iter().find(|(key, _)| *key == self).map_or("name", |(_, name)| name)
    }
}

/// One view: its filters, order and page, all from query parameters; its link is [`View::link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// `namespace`: only this namespace.
    pub namespace: Option<String>,
    /// `metric`: only metrics whose name contains this.
    pub metric: Option<String>,
    /// `sort`: `name`, `value`, `age` or `expiry`, `-` first for the reverse order.
    pub sort: SortKey,
    /// Whether the order is reversed.
    pub descending: bool,
    /// `page`, from 1.
    pub page: usize,
    /// `limit`: rows per page, 1 to `--admin-max-page-size`.
    pub limit: usize,
    /// `pretty`: indent the JSON twin.
    pub pretty: Option<bool>,
}

impl Default for View {
    fn default() -> Self {
        View {
            namespace: None,
            metric: None,
            sort: SortKey::Name,
            descending: false,
            page: 1,
            limit: DEFAULT_LIMIT,
            pretty: None,
        }
    }
}

impl View {
    /// The view a query string asks for. Empty values are absent ones (what an empty form field sends).
    pub fn parse(query: Option<&str>, max_page_size: usize) -> Result<View, AdminError> {
        let mut view = View { limit: DEFAULT_LIMIT.min(max_page_size), ..View::default() };
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.trim();
            let number = |name: &'static str, max: usize| {
                value.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| AdminError::BadParameter {
                    name,
                    value: value.to_string(),
                    expected: format!("a whole number from 1 to {max}"),
                })
            };
            match &*name {
                _ if value.is_empty() => {}
                "namespace" => view.namespace = Some(value.to_string()),
                "metric" => view.metric = Some(value.to_string()),
                "sort" => {
                    let (descending, key) = match value.strip_prefix('-') {
                        Some(key) => (true, key),
                        None => (false, value),
                    };
                    view.sort = SortKey::ALL.iter().find(|(_, n)| *n == key).map(|(k, _)| *k).ok_or_else(|| {
                        AdminError::BadParameter {
                            name: "sort",
                            value: value.to_string(),
                            expected: "name, value, age or expiry, with - first for the reverse order".into(),
                        }
                    })?;
                    view.descending = descending;
                }
                "page" => view.page = number("page", usize::MAX)?,
                "limit" => {
                    view.limit = number("limit", max_page_size).map_err(|error| match error {
                        AdminError::BadParameter { name, value, expected } => AdminError::BadParameter {
                            name,
                            value,
                            expected: format!("{expected} (--admin-max-page-size)"),
                        },
                        other => other,
                    })?
                }
                "pretty" => view.pretty = Some(value == "true" || value == "1"),
                other => return Err(AdminError::UnknownParameter(other.to_string())),
            }
        }
        Ok(view)
    }

    /// The `sort` parameter's value.
    pub fn sort_parameter(&self) -> String {
        format!("{}{}", if self.descending { "-" } else { "" }, self.sort.name())
    }

    /// This view's stable link: the page's path with every parameter that differs from the default, in a fixed
    /// order.
    pub fn link(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(namespace) = &self.namespace {
            query.append_pair("namespace", namespace);
        }
        if let Some(metric) = &self.metric {
            query.append_pair("metric", metric);
        }
        if self.sort != SortKey::Name || self.descending {
            query.append_pair("sort", &self.sort_parameter());
        }
        if self.page != 1 {
            query.append_pair("page", &self.page.to_string());
        }
        if self.limit != DEFAULT_LIMIT {
            query.append_pair("limit", &self.limit.to_string());
        }
        let query = query.finish();
        if query.is_empty() { PATH.to_string() } else { format!("{PATH}?{query}") }
    }

    /// The same view on page `page`.
    pub fn on_page(&self, page: usize) -> View {
        View { page, ..self.clone() }
    }

    /// The same view sorted by `key`: reversed when it is already sorted by `key` the other way round.
    pub fn sorted_by(&self, key: SortKey) -> View {
        let descending = self.sort == key && !self.descending;
        View { sort: key, descending, page: 1, ..self.clone() }
    }

    fn compare(&self, a: &StoredSeries, b: &StoredSeries) -> Ordering {
        let primary = match self.sort {
            SortKey::Name => Ordering::Equal,
            SortKey::Value => a.sample.value.cmp_value(&b.sample.value),
            SortKey::Age => b.sample.timestamp_millis.cmp(&a.sample.timestamp_millis),
            SortKey::Expiry => a.sample.expires_at_millis.cmp(&b.sample.expires_at_millis),
        };
        let primary = if self.descending { primary.reverse() } else { primary };
        // Ties, and the name order itself, by position.
        let tie = a.position.cmp(&b.position);
        primary.then(if self.sort == SortKey::Name && self.descending { tie.reverse() } else { tie })
    }
}

/// The page's data: what the HTML shows and the JSON twin is.
#[derive(Debug, Clone, Serialize)]
pub struct StatusPage {
    /// `--version`'s string.
    pub version: &'static str,
    /// When the page was made (RFC 3339, UTC).
    pub generated_at: String,
    /// The adapter's state, one section per source.
    pub state: Vec<StateSection>,
    /// Writes per interval, the minute under way first, then the last minutes, newest first.
    pub writes: Vec<rates::Interval>,
    /// The series of this view.
    pub series: SeriesView,
}

/// One view of the series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesView {
    /// The `namespace` filter.
    pub namespace: Option<String>,
    /// The `metric` filter.
    pub metric: Option<String>,
    /// The `sort` parameter.
    pub sort: String,
    /// The page, from 1.
    pub page: usize,
    /// Rows per page.
    pub limit: usize,
    /// Series that pass the filters.
    pub total: usize,
    /// Pages they fill (at least 1).
    pub pages: usize,
    /// Links to this view and its neighbours.
    pub links: Links,
    /// This page's rows.
    pub rows: Vec<SeriesRow>,
}

/// Stable links (path and query).
#[derive(Debug, Clone, Serialize)]
pub struct Links {
    /// This view.
    #[serde(rename = "self")]
    pub this: String,
    /// Its first page.
    pub first: String,
    /// The page before, if any.
    pub prev: Option<String>,
    /// The page after, if any.
    pub next: Option<String>,
}

/// One series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    /// The namespace (empty: cluster-scoped object).
    pub namespace: String,
    /// The group-qualified resource of a custom series; `null` for an external series.
    pub resource: Option<String>,
    /// The metric name.
    pub metric: String,
    /// The object name of a custom series; `null` for an external series.
    pub object: Option<String>,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// The value, canonical (docs/wire-contract.md §7).
    pub value: String,
    /// When it was written (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    /// Seconds since it was written.
    pub age_seconds: f64,
    /// Seconds until it expires; `null` for never.
    pub expires_in_seconds: Option<f64>,
    /// Recent (timestamp in milliseconds, value) points, oldest first: the sparkline.
    pub points: Vec<(i64, f64)>,
}

/// The admin listener's endpoint.
pub struct Admin {
    store: Arc<dyn MetricStore>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    max_page_size: usize,
    sources: Vec<Arc<dyn StateSource>>,
    rates: Arc<rates::Ring>,
    /// Snapshots the write counts every minute; stops with the endpoint.
    _snapshots: AbortOnDropHandle<()>,
}

impl Admin {
    /// The page over `store`, with the write counts of `metrics`, and no state sections yet. Must be called
    /// within a tokio runtime: it starts the task that snapshots the write counts every minute.
    pub fn new(
        store: Arc<dyn MetricStore>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        max_page_size: usize,
    ) -> Self {
        let rates = Arc::new(rates::Ring::default());
        // The first snapshot now, so that the minute under way counts every write from the start.
        rates.record(clock.now_millis(), metrics.write_counts());
        let task = tokio::spawn({
            let (rates, metrics, clock) = (Arc::clone(&rates), Arc::clone(&metrics), Arc::clone(&clock));
            async move {
                let minute = Duration::from_secs(60);
                let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + minute, minute);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    rates.record(clock.now_millis(), metrics.write_counts());
                }
            }
        });
        Admin {
            store,
            metrics,
            clock,
            max_page_size,
            sources: Vec::new(),
            rates,
            _snapshots: AbortOnDropHandle::new(task),
        }
    }

    /// Adds a section to the state, after those added before.
    #[must_use]
    pub fn with_state(mut self, source: Arc<dyn StateSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Answers a request of the page.
    pub async fn handle<B>(&self, request: &Request<B>) -> HttpResponse {
        let json = wants_json(request.headers());
        let view = View::parse(request.uri().query(), self.max_page_size);
        let pretty = |view: Option<&View>| {
            response::wants_pretty(
                view.and_then(|v| v.pretty).map(|p| if p { "true" } else { "false" }),
                request.headers(),
            )
        };
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return AdminError::MethodNotAllowed.into_response(json, pretty(view.as_ref().ok()));
        }
        let view = match view {
            Ok(view) => view,
            Err(error) => return error.into_response(json, pretty(None)),
        };
        match self.page(&view).await {
            Ok(page) if json => response::json_response(StatusCode::OK, &page, pretty(Some(&view))),
            Ok(page) => html_response(StatusCode::OK, html::page(&page, &view)),
            Err(error) => error.into_response(json, pretty(Some(&view))),
        }
    }

    /// The data of one view.
    pub async fn page(&self, view: &View) -> Result<StatusPage, AdminError> {
        let series = self.series(view).await?;
        let mut state = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            state.push(StateSection { title: source.title(), entries: source.entries().await });
        }
        let now = self.clock.now_millis();
        Ok(StatusPage {
            version: crate::config::VERSION,
            generated_at: rfc3339(now),
            state,
            writes: self.rates.intervals(now, &self.metrics.write_counts()),
            series,
        })
    }

    /// Walks every series the filters admit, a chunk at a time, keeping only what the page needs: the rows of the
    /// page in name order, else the first `page × limit` in the view's order (docs/architecture.md §14).
    async fn series(&self, view: &View) -> Result<SeriesView, AdminError> {
        let filter = SeriesFilter { namespace: view.namespace.clone(), metric_contains: view.metric.clone() };
        let skip = (view.page - 1).saturating_mul(view.limit);
        let keep = view.page.saturating_mul(view.limit);
        let mut total = 0usize;
        let mut kept: Vec<StoredSeries> = Vec::new();
        let mut after: Option<SeriesPosition> = None;
        let in_name_order = view.sort == SortKey::Name && !view.descending;
        loop {
            let chunk = self.store.series_page(&filter, after.as_ref(), WALK_CHUNK).await?;
            let done = chunk.len() < WALK_CHUNK;
            after = chunk.last().map(|last| last.position.clone());
            for series in chunk {
                if !in_name_order || (skip..keep).contains(&total) {
                    kept.push(series);
                }
                total += 1;
            }
            if !in_name_order && kept.len() > keep.saturating_mul(2).max(WALK_CHUNK) {
                kept.sort_by(|a, b| view.compare(a, b));
                kept.truncate(keep);
            }
            if done {
                break;
            }
            // A long walk lets the listener's other requests run between chunks.
            tokio::task::yield_now().await;
        }
        let rows: Vec<StoredSeries> = if in_name_order {
            kept
        } else {
            kept.sort_by(|a, b| view.compare(a, b));
            kept.into_iter().skip(skip).take(view.limit).collect()
        };
        let now = self.clock.now_millis();
        let mut points = self.points(&rows).await;
        let out: Vec<SeriesRow> = rows
            .into_iter()
            .zip(points.iter_mut())
            .map(|(series, points)| row(series, std::mem::take(points), now))
            .collect();
        let pages = total.div_ceil(view.limit).max(1);
        Ok(SeriesView {
            namespace: view.namespace.clone(),
            metric: view.metric.clone(),
            sort: view.sort_parameter(),
            page: view.page,
            limit: view.limit,
            total,
            pages,
            links: Links {
                this: view.link(),
                first: view.on_page(1).link(),
                prev: (view.page > 1).then(|| view.on_page((view.page - 1).min(pages)).link()),
                next: (view.page < pages).then(|| view.on_page(view.page + 1).link()),
            },
            rows: out,
        })
    }

    /// The sparkline's points of each row, oldest first: the store's recent values of the series (its history,
    /// docs/architecture.md §9), asked once per metric on the page; a series the store no longer has (expired or
    /// deleted since the walk) is drawn from the sample the walk saw.
    async fn points(&self, rows: &[StoredSeries]) -> Vec<Vec<(i64, f64)>> {
        let mut points: Vec<Vec<(i64, f64)>> =
            rows.iter().map(|series| vec![(series.sample.timestamp_millis, as_f64(&series.sample))]).collect();
        // Rows of one metric (one resource and namespace, or one external metric in a namespace) are asked together.
        let mut groups: BTreeMap<(&str, Option<&str>, &str), Vec<usize>> = BTreeMap::new();
        for (at, series) in rows.iter().enumerate() {
            let p = &series.position;
            groups.entry((p.namespace.as_str(), p.resource.as_deref(), p.metric.as_str())).or_default().push(at);
        }
        for ((namespace, resource, metric), at) in groups {
            let recent = match resource {
                Some(resource) => {
                    let names: Vec<String> = at.iter().map(|&i| rows[i].position.name.clone()).collect();
                    self.store.recent_custom(resource, namespace, metric, Some(&names)).await.map(|found| {
                        let found: BTreeMap<String, Vec<(i64, f64)>> =
                            found.into_iter().map(|(name, _, recent)| (name, recent.samples)).collect();
                        at.iter().map(|&i| found.get(&rows[i].position.name).cloned()).collect::<Vec<_>>()
                    })
                }
                None => self.store.recent_external(namespace, metric).await.map(|found| {
                    let found: BTreeMap<_, _> =
                        found.into_iter().map(|(labels, recent)| (labels, recent.samples)).collect();
                    at.iter().map(|&i| found.get(&rows[i].position.labels).cloned()).collect::<Vec<_>>()
                }),
            };
            // A failing store read leaves the rows their latest sample: the page still shows what the walk found.
            if let Ok(recent) = recent {
                for (&i, samples) in at.iter().zip(recent) {
                    if let Some(samples) = samples.filter(|samples| !samples.is_empty()) {
                        points[i] = samples;
                    }
                }
            }
        }
        points
    }
}

/// A sample's value as a float, for drawing only.
fn as_f64(sample: &Sample) -> f64 {
    let value = &sample.value;
    #[allow(clippy::cast_precision_loss)]
    let mantissa = value.mantissa() as f64;
    mantissa * 10f64.powi(value.exponent())
}

fn row(series: StoredSeries, points: Vec<(i64, f64)>, now: i64) -> SeriesRow {
    let StoredSeries { position, sample } = series;
    let external = position.resource.is_none();
    SeriesRow {
        namespace: position.namespace,
        resource: position.resource,
        metric: position.metric,
        object: (!external).then_some(position.name),
        labels: sample.labels.to_map(),
        value: sample.value.to_string(),
        timestamp: rfc3339(sample.timestamp_millis),
        age_seconds: seconds(now.saturating_sub(sample.timestamp_millis)),
        expires_in_seconds: (sample.expires_at_millis != i64::MAX)
            .then(|| seconds(sample.expires_at_millis.saturating_sub(now))),
        points,
    }
}

#[allow(clippy::cast_precision_loss)]
fn seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC, to the millisecond.
fn rfc3339(millis: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// The JSON twin is for clients that ask for JSON and not for HTML (a browser asks for HTML first).
fn wants_json(headers: &http::HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media: Vec<String> =
        accept.split(',').map(|item| item.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).collect();
    media.iter().any(|m| m == "application/json") && !media.iter().any(|m| m == "text/html")
}

fn html_response(code: StatusCode, body: String) -> HttpResponse {
    let mut response = response::with_body(code, "text/html; charset=utf-8", Bytes::from(body));
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_parse_from_query_parameters_and_link_back_to_themselves() {
        assert_eq!(View::parse(None, 1000).unwrap(), View::default());
        assert_eq!(View::default().link(), "/");
        let view = View::parse(Some("namespace=shop&metric=q%20s&sort=-value&page=3&limit=20&pretty=1"), 1000).unwrap();
        assert_eq!(view.namespace.as_deref(), Some("shop"));
        assert_eq!(view.metric.as_deref(), Some("q s"));
        assert_eq!((view.sort, view.descending, view.page, view.limit), (SortKey::Value, true, 3, 20));
        assert_eq!(view.link(), "/?namespace=shop&metric=q+s&sort=-value&page=3&limit=20");
        assert_eq!(View::parse(Some(&view.link()[2..]), 1000).unwrap(), View { pretty: None, ..view.clone() });
        // Empty form fields are absent.
        assert_eq!(View::parse(Some("namespace=&metric=&sort=&limit="), 1000).unwrap(), View::default());
        assert_eq!(view.sorted_by(SortKey::Value).sort_parameter(), "value");
        assert_eq!(view.sorted_by(SortKey::Age).sort_parameter(), "age");
        assert_eq!(View::default().sorted_by(SortKey::Name).sort_parameter(), "-name");
        // The default limit never exceeds the largest allowed.
        assert_eq!(View::parse(None, 10).unwrap().limit, 10);
    }

    #[test]
    fn bad_parameters_are_refused_saying_what_is_allowed() {
        let message = |query: &str| View::parse(Some(query), 500).unwrap_err().to_string();
        assert!(message("limit=501").contains("from 1 to 500 (--admin-max-page-size)"), "{}", message("limit=501"));
        assert!(message("limit=0").contains("limit=\"0\""));
        assert!(message("page=-1").contains("page"));
        assert!(message("sort=size").contains("name, value, age or expiry"));
        assert!(message("namepsace=a").contains("unknown query parameter \"namepsace\""));
    }

    #[test]
    fn json_is_for_clients_that_ask_for_it_and_not_for_html() {
        let accept = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_json(&headers)
        };
        assert!(accept("application/json"));
        assert!(accept("application/json;q=0.9, */*;q=0.1"));
        assert!(!accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));
        assert!(!accept("*/*"));
        assert!(!wants_json(&http::HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_hostile_label_value_is_shown_escaped_and_never_as_markup() {
        // The write API refuses such values (labels are Kubernetes labels), but the store does not check their
        // characters, and a Redis store applies whatever its stream holds: the page must not trust them.
        let store = Arc::new(crate::store::MemoryStore::new(crate::store::Limits::default()));
        let hostile = r#"</td><script>alert("x")</script><img src=x onerror='y'>&"#;
        let labels = crate::store::SeriesLabels::from_map(BTreeMap::from([("evil".to_string(), hostile.to_string())]));
        let write = crate::store::SampleWrite {
            value: crate::quantity::Quantity::parse("7").unwrap(),
            labels,
            ttl: None,
            kind: crate::store::SeriesKind::Gauge,
        };
        store.put_external("shop", "queue", write).await.unwrap();
        let metrics = Arc::new(Metrics::new(store.clone()));
        let admin = Admin::new(store, metrics, Arc::new(crate::clock::SystemClock), 100);
        let answer = admin.handle(&Request::get("/").body(()).unwrap()).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let csp = answer.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let body = http_body_util::BodyExt::collect(answer.into_body()).await.unwrap().to_bytes();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            html.contains("evil=&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=&#39;y&#39;&gt;&amp;"),
            "{html}"
        );
        assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("</td><script"), "{html}");
        // The JSON twin carries the value as it is stored.
        let request = Request::get("/").header(header::ACCEPT, "application/json").body(()).unwrap();
        let body = http_body_util::BodyExt::collect(admin.handle(&request).await.into_body()).await.unwrap().to_bytes();
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["series"]["rows"][0]["labels"]["evil"], hostile);
    }

    #[tokio::test(start_paused = true)]
    async fn the_write_counts_are_snapshotted_every_minute_and_the_task_stops_with_the_page() {
        let store = Arc::new(crate::store::MemoryStore::new(crate::store::Limits::default()));
        let metrics = Arc::new(Metrics::new(store.clone()));
        let clock = Arc::new(crate::clock::ManualClock::new(0));
        let admin = Admin::new(store, metrics, clock.clone(), 100);
        let intervals =
            |page: StatusPage| page.writes.iter().map(|w| (w.start_millis, w.end_millis)).collect::<Vec<_>>();
        assert_eq!(intervals(admin.page(&View::default()).await.unwrap()), [(0, 0)], "the minute under way only");
        for _ in 0..3 {
            clock.advance(60_000);
            // Just past the tick, so that the task has taken its snapshot before the clock moves on.
            tokio::time::sleep(Duration::from_millis(60_001)).await;
        }
        clock.advance(1_000);
        assert_eq!(
            intervals(admin.page(&View::default()).await.unwrap()),
            [(180_000, 181_000), (120_000, 180_000), (60_000, 120_000), (0, 60_000)]
        );
        let rates = Arc::clone(&admin.rates);
        drop(admin);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(rates.intervals(0, &Vec::new()).len(), 4, "no snapshot after the page is gone");
    }
}
