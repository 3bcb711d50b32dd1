//! The Kubernetes API surface of the secure port: discovery, custom and external metric reads, OpenAPI and
//! `/version`. Every error goes through [`crate::response::RequestError`], which renders the `Status`.
//!
//! Uses the store, the quantity and selector cores and the cluster traits; never a kube client, never ingest.

pub mod custom;
pub mod discovery;
pub mod external;
pub mod flags;
pub mod group_versions;
pub mod list;
pub mod openapi;
pub mod rates;
pub mod route;
pub mod types;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};

use crate::cluster::{LabelIndex, ResourceMapper};
use crate::response::{self, HttpResponse, RequestError};
use crate::selector::Selector;
use crate::store::MetricStore;
use route::{ApiRoute, RouteError};

/// The query parameters the metric reads understand (docs/wire-contract.md §1.5); others are ignored, as in Kubernetes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadQuery {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `metricLabelSelector`.
    pub metric_label_selector: Option<String>,
    /// `pretty`.
    pub pretty: Option<String>,
}

/// Bounds on what one read may ask for and return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Items of one list response (`--max-list-items`).
    pub max_list_items: usize,
    /// Bytes of one response body (`--max-response-bytes`).
    pub max_response_bytes: usize,
    /// Bytes of a `labelSelector` or `metricLabelSelector` value, decoded (`--max-selector-bytes`).
    pub max_selector_bytes: usize,
}

impl Default for ReadLimits {
    /// 10,000 items is ten times the wildcard read of the benchmark (1,000 pods); 32 MiB holds that many items
    /// with 253-character names and a selector of a few hundred bytes, even indented; 4 KiB is many times a
    /// workload's selector of a few labels, and bounds a selector to about 2,000 terms (each at least one byte and
    /// a comma).
    fn default() -> Self {
        ReadLimits { max_list_items: 10_000, max_response_bytes: 32 << 20, max_selector_bytes: 4096 }
    }
}

impl ReadQuery {
    /// Parses a form-encoded query string (`+` is a space, `%XX` decoded).
    pub fn parse(query: Option<&str>) -> Self {
        let mut parsed = ReadQuery::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "labelSelector" => parsed.label_selector = Some(value.into_owned()),
                "metricLabelSelector" => parsed.metric_label_selector = Some(value.into_owned()),
                "pretty" => parsed.pretty = Some(value.into_owned()),
                _ => {}
            }
        }
        parsed
    }

    /// 400 when a selector is longer than `max_bytes`: nothing is parsed or read for it, and no response repeats it.
    pub fn check_selector_sizes(&self, max_bytes: usize) -> Result<(), RequestError> {
        for (parameter, value) in
            [("labelSelector", &self.label_selector), ("metricLabelSelector", &self.metric_label_selector)]
        {
            if let Some(value) = value
                && value.len() > max_bytes
            {
                return Err(RequestError::SelectorTooLong { parameter, len: value.len(), limit: max_bytes });
            }
        }
        Ok(())
    }

    /// The parsed `labelSelector` (400 when bad).
    pub fn label_selector(&self) -> Result<Selector, RequestError> {
        Selector::parse(self.label_selector.as_deref().unwrap_or("")).map_err(RequestError::BadLabelSelector)
    }

    /// The parsed `metricLabelSelector` (400 when bad).
    pub fn metric_label_selector(&self) -> Result<Selector, RequestError> {
        Selector::parse(self.metric_label_selector.as_deref().unwrap_or(""))
            .map_err(RequestError::BadMetricLabelSelector)
    }
}

/// Precomputed OpenAPI documents with their ETags.
struct OpenApiDocs {
    v2: (Bytes, String),
    v3_index: Bytes,
    v3: Vec<(String, Bytes, String)>,
}

impl OpenApiDocs {
    /// The served documents; `Err` (answered with a 500) only when a checked-in document is not JSON, which the
    /// tests of [`openapi`] rule out.
    fn build() -> Result<Self, String> {
        let documents = openapi::documents().map_err(|error| error.to_string())?;
        let doc = |value: &serde_json::Value| (Bytes::from(value.to_string()), openapi::etag(value));
        let v3 = documents
            .v3
            .iter()
            .map(|(served, value)| {
                let (bytes, etag) = doc(value);
                (openapi::v3_path(served), bytes, etag)
            })
            .collect();
        Ok(OpenApiDocs { v2: doc(&documents.v2), v3_index: Bytes::from(documents.v3_index.to_string()), v3 })
    }
}

/// The API handler of the secure port.
pub struct Api {
    store: Arc<dyn MetricStore>,
    mapper: Arc<dyn ResourceMapper>,
    labels: Arc<dyn LabelIndex>,
    discovery_limit: usize,
    limits: ReadLimits,
    openapi: Result<OpenApiDocs, String>,
    freshness: Option<crate::metrics::Freshness>,
    forwarder: Option<Arc<crate::forward::Forwarder>>,
}

impl Api {
    /// An API over `store`, resolving resources with `mapper` and object labels with `labels`. Discovery lists at
    /// most `discovery_limit` metrics per group-version; metric reads are bounded by `limits`.
    pub fn new(
        store: Arc<dyn MetricStore>,
        mapper: Arc<dyn ResourceMapper>,
        labels: Arc<dyn LabelIndex>,
        discovery_limit: usize,
        limits: ReadLimits,
    ) -> Self {
        Api {
            store,
            mapper,
            labels,
            discovery_limit,
            limits,
            openapi: OpenApiDocs::build(),
            freshness: None,
            forwarder: None,
        }
    }

    /// The same API, observing the age of the values its metric reads return in `freshness`.
    #[must_use]
    pub fn with_freshness(mut self, freshness: crate::metrics::Freshness) -> Self {
        self.freshness = Some(freshness);
        self
    }

    /// The same API, forwarding reads of metrics it does not hold to `forwarder`'s neighbours and listing their
    /// discovery entries after its own (docs/architecture.md §13).
    #[must_use]
    pub fn with_forwarder(mut self, forwarder: Arc<crate::forward::Forwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    /// Answers one request; every failure becomes a `Status`.
    pub async fn handle<B>(&self, request: &Request<B>) -> HttpResponse {
        let query = ReadQuery::parse(request.uri().query());
        let pretty = response::wants_pretty(query.pretty.as_deref(), request.headers());
        match self.route(request, &query, pretty).await {
            Ok(response) => response,
            Err(error) => error.into_response(pretty),
        }
    }

    async fn route<B>(
        &self,
        request: &Request<B>,
        query: &ReadQuery,
        pretty: bool,
    ) -> Result<HttpResponse, RequestError> {
        let path = request.uri().path();
        let route = match route::parse(path) {
            Ok(Some(route)) => route,
            Ok(None) => return self.non_api(request, path, pretty),
            Err(RouteError::NotFound) => return Err(RequestError::RouteNotFound),
            Err(RouteError::InvalidPath) => return Err(RequestError::InvalidPath),
        };
        if request.method() != Method::GET {
            return Err(RequestError::MethodNotAllowed { allow: "GET" });
        }
        response::accepts_json(request.headers())?;
        match route {
            ApiRoute::GroupList => Ok(json_ok(&discovery::group_list(), pretty)),
            ApiRoute::Group(group) => Ok(json_ok(&discovery::group(group), pretty)),
            ApiRoute::CustomResources(version) => {
                let ours = discovery::custom_resources(self.store.as_ref(), version, self.discovery_limit).await?;
                let api_version = version.group_version().api_version;
                let neighbour = self.custom_neighbour();
                Ok(self.with_neighbours(neighbour, ours, api_version, discovery::CUSTOM_PLACEHOLDER, pretty))
            }
            ApiRoute::ExternalResources => {
                let ours = discovery::external_resources(self.store.as_ref(), self.discovery_limit).await?;
                let api_version = group_versions::EXTERNAL_V1BETA1.api_version;
                let neighbour = self.external_neighbour();
                Ok(self.with_neighbours(neighbour, ours, api_version, discovery::EXTERNAL_PLACEHOLDER, pretty))
            }
            ApiRoute::Custom(version, target) => {
                query.check_selector_sizes(self.limits.max_selector_bytes)?;
                let (store, mapper, labels) = (self.store.as_ref(), self.mapper.as_ref(), self.labels.as_ref());
                // A metric we do not hold is the neighbour's, decided before our read, which could only find
                // nothing (docs/architecture.md §13).
                if let Some(neighbour) = self.custom_neighbour()
                    && !crate::forward::holds_custom(store, mapper, &target).await?
                {
                    return Ok(neighbour.forward(request).await?);
                }
                let items = custom::read(store, mapper, labels, &target, query, self.limits.max_list_items).await?;
                if let Some(freshness) = &self.freshness {
                    freshness.observe(items.timestamps());
                }
                custom::render(version, items, pretty, &self.limits)
            }
            ApiRoute::External { namespace, metric } => {
                query.check_selector_sizes(self.limits.max_selector_bytes)?;
                let selector = query.label_selector()?;
                let samples =
                    external::read(self.store.as_ref(), &namespace, &metric, &selector, self.limits.max_list_items)
                        .await?;
                if samples.is_empty()
                    && let Some(neighbour) = self.external_neighbour()
                    && !crate::forward::holds_external(self.store.as_ref(), &namespace, &metric).await?
                {
                    return Ok(neighbour.forward(request).await?);
                }
                if let Some(freshness) = &self.freshness {
                    freshness.observe(external::timestamps(&samples));
                }
                external::render(&metric, samples, pretty, self.limits.max_response_bytes)
            }
        }
    }

    fn custom_neighbour(&self) -> Option<&Arc<crate::forward::Neighbour>> {
        self.forwarder.as_ref().and_then(|forwarder| forwarder.custom())
    }

    fn external_neighbour(&self) -> Option<&Arc<crate::forward::Neighbour>> {
        self.forwarder.as_ref().and_then(|forwarder| forwarder.external())
    }

    /// Our discovery document, with `neighbour`'s entries after ours when there is one (docs/architecture.md §13).
    fn with_neighbours(
        &self,
        neighbour: Option<&Arc<crate::forward::Neighbour>>,
        ours: types::ApiResourceList,
        api_version: &'static str,
        placeholder: &str,
        pretty: bool,
    ) -> HttpResponse {
        let Some(neighbour) = neighbour else {
            return json_ok(&ours, pretty);
        };
        let theirs = neighbour.resources(api_version);
        json_ok(&crate::forward::union(&ours, &theirs, placeholder, self.discovery_limit), pretty)
    }

    /// `/version` and `/openapi/*`.
    fn non_api<B>(&self, request: &Request<B>, path: &str, pretty: bool) -> Result<HttpResponse, RequestError> {
        if request.method() != Method::GET {
            return Err(RequestError::RouteNotFound);
        }
        if matches!(path, "/version" | "/version/") {
            return Ok(response::json_response(StatusCode::OK, &version_info(), pretty));
        }
        let docs = match &self.openapi {
            Ok(docs) => docs,
            Err(error) if path.starts_with("/openapi/") => return Ok(response::serialization_failed(error)),
            Err(_) => return Err(RequestError::RouteNotFound),
        };
        match path {
            "/openapi/v2" => Ok(cached_document(request.headers(), &docs.v2.0, &docs.v2.1)),
            "/openapi/v3" => Ok(response::with_body(StatusCode::OK, "application/json", docs.v3_index.clone())),
            _ => match docs.v3.iter().find(|(p, _, _)| p == path) {
                Some((_, bytes, etag)) => Ok(cached_document(request.headers(), bytes, etag)),
                None => Err(RequestError::RouteNotFound),
            },
        }
    }
}

/// A document with an ETag: 304 when the client already has it.
fn cached_document(headers: &HeaderMap, bytes: &Bytes, etag: &str) -> HttpResponse {
    let matches = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    let mut response = if matches {
        response::with_body(StatusCode::NOT_MODIFIED, "application/json", Bytes::new())
    } else {
        response::with_body(StatusCode::OK, "application/json", bytes.clone())
    };
    if let Ok(value) = header::HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The `/version` document (Kubernetes' `version.Info` field names).
#[derive(Debug, serde::Serialize)]
struct VersionInfo {
    major: &'static str,
    minor: &'static str,
    #[serde(rename = "gitVersion")]
    git_version: &'static str,
    #[serde(rename = "gitCommit")]
    git_commit: &'static str,
    #[serde(rename = "gitTreeState")]
    git_tree_state: &'static str,
    #[serde(rename = "buildDate")]
    build_date: &'static str,
    #[serde(rename = "goVersion")]
    go_version: &'static str,
    compiler: &'static str,
    platform: String,
}

fn version_info() -> VersionInfo {
    VersionInfo {
        major: env!("CARGO_PKG_VERSION_MAJOR"),
        minor: env!("CARGO_PKG_VERSION_MINOR"),
        git_version: concat!("v", env!("CARGO_PKG_VERSION")),
        git_commit: option_env!("CUSTOM_METRICS_GIT_COMMIT").unwrap_or("unknown"),
        git_tree_state: option_env!("CUSTOM_METRICS_GIT_TREE_STATE").unwrap_or("unknown"),
        build_date: option_env!("CUSTOM_METRICS_BUILD_DATE").unwrap_or("unknown"),
        // Kubernetes clients expect the key; this program is not written in Go.
        go_version: "",
        compiler: "rustc",
        platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

fn json_ok<T: serde::Serialize>(body: &T, pretty: bool) -> HttpResponse {
    response::json_response(StatusCode::OK, body, pretty)
}
