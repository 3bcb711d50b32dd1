//! Static OpenAPI v2 and v3 documents describing the served groups (docs/wire-contract.md §6.4).
//!
//! `/openapi/v2` serves one Swagger 2.0 document with every metric read route of both groups and all
//! three group-versions (docs/wire-contract.md §1.3, §1.4, §10 item 10). `/openapi/v3` serves an index that
//! points at one OpenAPI 3.0 document per group-version; each URL carries `?hash=<HASH>`, the
//! upper-case hex SHA-512 of the compact serialization of that document (as kube-openapi does), so
//! clients can cache it. [`etag`] gives the matching `ETag` header value for `If-None-Match`.
//!
//! Schemas are named as Kubernetes names them (`io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList`,
//! `io.k8s.apimachinery.pkg.apis.meta.v1.Status`, …) and describe the wire shapes of docs/wire-contract.md §2.1
//! and §3.1. The documents are pure functions of the code: the server builds them once and caches them.

use serde_json::{Map, Value, json};
use std::fmt::Write as _;

/// `info.title` of every document.
pub const INFO_TITLE: &str = "custom-metrics-apiserver";

/// `info.version` of every document (the Go adapter uses the same placeholder).
const INFO_VERSION: &str = "1.0.0";

/// The group-versions served, in the order used by the `/openapi/v3` index.
pub const GROUP_VERSIONS: &[(&str, &str)] = &[
    ("custom.metrics.k8s.io", "v1beta1"),
    ("custom.metrics.k8s.io", "v1beta2"),
    ("external.metrics.k8s.io", "v1beta1"),
];

/// Swagger 2.0 document of every served metrics route (both groups, all three group-versions).
#[must_use]
pub fn v2_document() -> Value {
    let flavor = Flavor::Swagger2;
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for api in Api::ALL {
        paths.extend(api.paths(flavor));
        definitions.extend(api.schemas(flavor));
    }
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": { "BearerToken": bearer_token_scheme() },
        "security": [{ "BearerToken": [] }],
    })
}

/// OpenAPI 3.0 document for one group-version, `None` for a group-version that is not served.
/// Paths are relative to the server root, e.g.
/// `/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/{resource}/{name}/{metric}`.
#[must_use]
pub fn v3_document(group: &str, version: &str) -> Option<Value> {
    let api = Api::from_group_version(group, version)?;
    let flavor = Flavor::OpenApi3;
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": api.paths(flavor),
        "components": {
            "schemas": api.schemas(flavor),
            "securitySchemes": { "BearerToken": bearer_token_scheme() },
        },
        "security": [{ "BearerToken": [] }],
    }))
}

/// The `/openapi/v3` index: one `serverRelativeURL` per served group-version, each carrying the
/// content hash of the document it points at.
#[must_use]
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for api in Api::ALL {
        let (group, version) = (api.group(), api.version());
        let hash = v3_document(group, version).map(|doc| content_hash(&doc)).unwrap_or_default();
        paths.insert(
            format!("apis/{group}/{version}"),
            json!({ "serverRelativeURL": format!("/openapi/v3/apis/{group}/{version}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}

/// A stable `ETag` value for a document: the quoted upper-case hex SHA-512 of its compact serialization.
#[must_use]
pub fn etag(doc: &Value) -> String {
    format!("\"{}\"", content_hash(doc))
}

/// Upper-case hex SHA-512 of the compact serialization (`Value`'s `Display`) of `doc`.
fn content_hash(doc: &Value) -> String {
    ring::digest::digest(&ring::digest::SHA512, doc.to_string().as_bytes()).as_ref().iter().fold(
        String::with_capacity(128),
        |mut hex, byte| {
            let _ = write!(hex, "{byte:02X}");
            hex
        },
    )
}

fn info() -> Value {
    json!({ "title": INFO_TITLE, "version": INFO_VERSION })
}

fn bearer_token_scheme() -> Value {
    json!({
        "type": "apiKey",
        "name": "authorization",
        "in": "header",
        "description": "Bearer Token authentication",
    })
}

// ---------------------------------------------------------------------------------------------
// Document flavours
// ---------------------------------------------------------------------------------------------

/// The two document formats; they differ in where schemas live and how parameters, responses,
/// nullability and annotated references are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    Swagger2,
    OpenApi3,
}

impl Flavor {
    fn schema_ref(self, name: &str) -> Value {
        let prefix = match self {
            Flavor::Swagger2 => "#/definitions/",
            Flavor::OpenApi3 => "#/components/schemas/",
        };
        json!({ "$ref": format!("{prefix}{name}") })
    }

    /// A property that refers to another schema and carries its own description (and nullability).
    /// Swagger 2.0 puts the description beside `$ref` (as Kubernetes does); OpenAPI 3.0 ignores
    /// siblings of `$ref`, so there the reference is wrapped in a single-element `allOf`.
    fn ref_property(self, name: &str, description: &str, nullable: bool) -> Value {
        let mut property = match self {
            Flavor::Swagger2 => self.schema_ref(name),
            Flavor::OpenApi3 => json!({ "allOf": [self.schema_ref(name)] }),
        };
        with_description(&mut property, description);
        if nullable {
            self.mark_nullable(&mut property);
        }
        property
    }

    fn mark_nullable(self, schema: &mut Value) {
        let key = match self {
            Flavor::Swagger2 => "x-nullable",
            Flavor::OpenApi3 => "nullable",
        };
        if let Some(object) = schema.as_object_mut() {
            object.insert(key.to_owned(), Value::Bool(true));
        }
    }

    /// A `string` query or path parameter.
    fn parameter(self, param: Param) -> Value {
        let (location, required) = if param.in_path() { ("path", true) } else { ("query", false) };
        let mut parameter = json!({
            "name": param.name(),
            "in": location,
            "description": param.description(),
            "required": required,
        });
        let string = json!({ "type": "string" });
        match (self, parameter.as_object_mut()) {
            (Flavor::Swagger2, Some(object)) => {
                object.extend(as_map(string));
                object.insert("uniqueItems".to_owned(), Value::Bool(true));
            }
            (Flavor::OpenApi3, Some(object)) => {
                object.insert("schema".to_owned(), string);
            }
            (_, None) => {}
        }
        parameter
    }

    /// A JSON response whose body is described by the schema `schema_name`.
    fn response(self, description: &str, schema_name: &str) -> Value {
        let schema = self.schema_ref(schema_name);
        match self {
            Flavor::Swagger2 => json!({ "description": description, "schema": schema }),
            Flavor::OpenApi3 => json!({
                "description": description,
                "content": { JSON_MEDIA_TYPE: { "schema": schema } },
            }),
        }
    }
}

const JSON_MEDIA_TYPE: &str = "application/json";

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn with_description(schema: &mut Value, description: &str) {
    if let Some(object) = schema.as_object_mut() {
        object.insert("description".to_owned(), Value::String(description.to_owned()));
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// The request parameters of the metric read routes (docs/wire-contract.md §1.3–§1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Namespace,
    Resource,
    Name,
    Metric,
    LabelSelector,
    MetricLabelSelector,
    Pretty,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Namespace => "namespace",
            Param::Resource => "resource",
            Param::Name => "name",
            Param::Metric => "metric",
            Param::LabelSelector => "labelSelector",
            Param::MetricLabelSelector => "metricLabelSelector",
            Param::Pretty => "pretty",
        }
    }

    fn in_path(self) -> bool {
        matches!(self, Param::Namespace | Param::Resource | Param::Name | Param::Metric)
    }

    fn description(self) -> &'static str {
        match self {
            Param::Namespace => "object name and auth scope, such as for teams and projects",
            Param::Resource => {
                "the resource of the described object(s), optionally group-qualified: `pods`, `deployments.apps`"
            }
            Param::Name => "name of the described object",
            Param::Metric => "name of the metric",
            Param::LabelSelector => {
                "A selector to restrict the list of returned objects (custom metrics, wildcard routes) or metric series (external metrics) by their labels. Defaults to everything."
            }
            Param::MetricLabelSelector => {
                "A selector to restrict the list of returned metrics by their labels. Defaults to everything."
            }
            Param::Pretty => "If 'true', then the output is pretty printed.",
        }
    }
}

/// One served read route of a group-version: its path below `/apis/<group>/<version>`.
struct Route {
    suffix: &'static str,
    /// `read` (one object) or `list` (several objects or several metrics).
    action: &'static str,
    /// Operation id tail, unique within a group-version.
    operation: &'static str,
    description: &'static str,
    path_params: &'static [Param],
}

const CUSTOM_ROUTES: &[Route] = &[
    Route {
        suffix: "/namespaces/{namespace}/{resource}/{name}/{metric}",
        action: "read",
        operation: "NamespacedObjectMetric",
        description: "read the value of a metric for one namespaced object",
        path_params: &[Param::Namespace, Param::Resource, Param::Name, Param::Metric],
    },
    Route {
        suffix: "/namespaces/{namespace}/{resource}/*/{metric}",
        action: "list",
        operation: "NamespacedObjectsMetric",
        description: "list the values of a metric for every object of a resource in a namespace that matches labelSelector",
        path_params: &[Param::Namespace, Param::Resource, Param::Metric],
    },
    Route {
        suffix: "/namespaces/{namespace}/{resource}/{name}/",
        action: "list",
        operation: "NamespacedObjectMetrics",
        description: "list the values of every metric stored for one namespaced object",
        path_params: &[Param::Namespace, Param::Resource, Param::Name],
    },
    Route {
        suffix: "/namespaces/{namespace}/metrics/{metric}",
        action: "read",
        operation: "NamespaceMetric",
        description: "read the value of a metric for the Namespace object {namespace} itself",
        path_params: &[Param::Namespace, Param::Metric],
    },
    Route {
        suffix: "/{resource}/{name}/{metric}",
        action: "read",
        operation: "ClusterObjectMetric",
        description: "read the value of a metric for one cluster-scoped object",
        path_params: &[Param::Resource, Param::Name, Param::Metric],
    },
    Route {
        suffix: "/{resource}/*/{metric}",
        action: "list",
        operation: "ClusterObjectsMetric",
        description: "list the values of a metric for every cluster-scoped object of a resource that matches labelSelector",
        path_params: &[Param::Resource, Param::Metric],
    },
];

const CUSTOM_QUERY_PARAMS: &[Param] = &[Param::LabelSelector, Param::MetricLabelSelector, Param::Pretty];

const EXTERNAL_ROUTES: &[Route] = &[Route {
    suffix: "/namespaces/{namespace}/{metric}",
    action: "list",
    operation: "NamespacedExternalMetric",
    description: "list the series of an external metric in a namespace that match labelSelector",
    path_params: &[Param::Namespace, Param::Metric],
}];

const EXTERNAL_QUERY_PARAMS: &[Param] = &[Param::LabelSelector, Param::Pretty];

/// Error answers every route may give, all as a `Status` body (docs/wire-contract.md §3).
const ERROR_RESPONSES: &[(&str, &str)] = &[
    ("400", "BadRequest: malformed path or selector"),
    ("401", "Unauthorized"),
    ("403", "Forbidden"),
    ("404", "NotFound: unknown resource, object or metric"),
    ("500", "InternalError"),
];

// ---------------------------------------------------------------------------------------------
// Group-versions
// ---------------------------------------------------------------------------------------------

/// A served group-version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    CustomV1beta1,
    CustomV1beta2,
    ExternalV1beta1,
}

impl Api {
    const ALL: [Api; 3] = [Api::CustomV1beta1, Api::CustomV1beta2, Api::ExternalV1beta1];

    fn from_group_version(group: &str, version: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.group() == group && api.version() == version)
    }

    fn group(self) -> &'static str {
        match self {
            Api::CustomV1beta1 | Api::CustomV1beta2 => "custom.metrics.k8s.io",
            Api::ExternalV1beta1 => "external.metrics.k8s.io",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Api::CustomV1beta1 | Api::ExternalV1beta1 => "v1beta1",
            Api::CustomV1beta2 => "v1beta2",
        }
    }

    fn is_custom(self) -> bool {
        self != Api::ExternalV1beta1
    }

    /// Go package name in `k8s.io/metrics/pkg/apis/`.
    fn package(self) -> &'static str {
        if self.is_custom() { "custom_metrics" } else { "external_metrics" }
    }

    /// Fully qualified schema name of a kind of this group-version, as Kubernetes names it.
    fn type_name(self, kind: &str) -> String {
        format!("io.k8s.metrics.pkg.apis.{}.{}.{kind}", self.package(), self.version())
    }

    fn list_kind(self) -> &'static str {
        if self.is_custom() { "MetricValueList" } else { "ExternalMetricValueList" }
    }

    fn item_kind(self) -> &'static str {
        if self.is_custom() { "MetricValue" } else { "ExternalMetricValue" }
    }

    fn routes(self) -> &'static [Route] {
        if self.is_custom() { CUSTOM_ROUTES } else { EXTERNAL_ROUTES }
    }

    fn query_params(self) -> &'static [Param] {
        if self.is_custom() { CUSTOM_QUERY_PARAMS } else { EXTERNAL_QUERY_PARAMS }
    }

    /// `customMetrics` / `externalMetrics`: the group's first two labels in camel case.
    fn group_camel(self) -> &'static str {
        if self.is_custom() { "customMetrics" } else { "externalMetrics" }
    }

    /// `CustomMetricsV1beta2`: the middle of this group-version's operation ids.
    fn operation_infix(self) -> String {
        format!("{}{}", capitalize(self.group_camel()), capitalize(self.version()))
    }

    /// Kubernetes-style tag, e.g. `customMetrics_v1beta2`.
    fn tag(self) -> String {
        format!("{}_{}", self.group_camel(), self.version())
    }

    fn group_version_kind(self) -> Value {
        json!({ "group": self.group(), "version": self.version(), "kind": self.list_kind() })
    }

    /// The path items of every route of this group-version, keyed by absolute path template.
    fn paths(self, flavor: Flavor) -> Map<String, Value> {
        self.routes()
            .iter()
            .map(|route| {
                let path = format!("/apis/{}/{}{}", self.group(), self.version(), route.suffix);
                (path, self.path_item(flavor, route))
            })
            .collect()
    }

    /// A path item with a single GET operation answering this group-version's list kind.
    fn path_item(self, flavor: Flavor, route: &Route) -> Value {
        let mut responses = Map::new();
        responses.insert("200".to_owned(), flavor.response("OK", &self.type_name(self.list_kind())));
        for (code, description) in ERROR_RESPONSES {
            responses.insert((*code).to_owned(), flavor.response(description, STATUS));
        }
        let mut get = json!({
            "description": route.description,
            "operationId": format!("{}{}{}", route.action, self.operation_infix(), route.operation),
            "tags": [self.tag()],
            "responses": responses,
            "x-kubernetes-action": if route.action == "read" { "get" } else { "list" },
            "x-kubernetes-group-version-kind": self.group_version_kind(),
        });
        if flavor == Flavor::Swagger2
            && let Some(object) = get.as_object_mut()
        {
            object.insert("produces".to_owned(), json!([JSON_MEDIA_TYPE]));
            object.insert("schemes".to_owned(), json!(["https"]));
        }
        let parameters: Vec<Value> =
            route.path_params.iter().chain(self.query_params()).map(|param| flavor.parameter(*param)).collect();
        json!({ "get": get, "parameters": parameters })
    }

    /// Every schema this group-version's document needs, keyed by schema name.
    fn schemas(self, flavor: Flavor) -> Map<String, Value> {
        let mut schemas = common_schemas(flavor);
        if self.is_custom() {
            schemas.extend(object_reference_schemas(flavor));
        }
        let list = list_schema(flavor, self);
        schemas.insert(self.type_name(self.list_kind()), list);
        let item_description = self.item_description();
        let (item, extra) = match self {
            Api::CustomV1beta1 => (metric_value_v1beta1(flavor, item_description), None),
            Api::CustomV1beta2 => (
                metric_value_v1beta2(flavor, item_description, &self.type_name(METRIC_IDENTIFIER)),
                Some((self.type_name(METRIC_IDENTIFIER), metric_identifier(flavor))),
            ),
            Api::ExternalV1beta1 => (external_metric_value(flavor, item_description), None),
        };
        schemas.insert(self.type_name(self.item_kind()), item);
        schemas.extend(extra);
        schemas
    }

    fn item_description(self) -> &'static str {
        if self.is_custom() {
            "MetricValue is the metric value for some object"
        } else {
            "ExternalMetricValue is a metric value for external metric. A single metric value is identified by metric name and a set of string labels. For one metric there can be multiple values with different sets of labels."
        }
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

const OBJECT_REFERENCE: &str = "io.k8s.api.core.v1.ObjectReference";
const LABEL_SELECTOR: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";
const LABEL_SELECTOR_REQUIREMENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const STATUS_DETAILS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails";
const STATUS_CAUSE: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.StatusCause";
const METRIC_IDENTIFIER: &str = "MetricIdentifier";

const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.";
const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.";
const TIMESTAMP_DESCRIPTION: &str = "indicates the time at which the metrics were produced; null for the zero time";
const WINDOW_DESCRIPTION: &str = "indicates the window ([Timestamp-Window, Timestamp]) in seconds from which these metrics were calculated, when returning rate metrics calculated from cumulative metrics (omitted for instantaneous metrics)";
const VALUE_DESCRIPTION: &str = "the value of the metric";
const SELECTOR_DESCRIPTION: &str = "selector represents the label selector that could be used to select this metric, and will generally just be the selector passed in to the query used to fetch this metric; null when no metric selector was given";
const METRIC_NAME_DESCRIPTION: &str = "the name of the metric";
const DESCRIBED_OBJECT_DESCRIPTION: &str = "a reference to the described object";

/// An `object` schema with its properties (listed in wire order; the emitted key order follows
/// `serde_json`'s map) and its required property names.
fn object_schema(description: &str, properties: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: Map<String, Value> =
        properties.into_iter().map(|(name, schema)| (name.to_owned(), schema)).collect();
    let mut schema = json!({ "description": description, "type": "object", "properties": properties });
    if !required.is_empty()
        && let Some(object) = schema.as_object_mut()
    {
        object.insert("required".to_owned(), json!(required));
    }
    schema
}

fn typed(kind: &str, format: Option<&str>, description: &str) -> Value {
    let mut schema = json!({ "type": kind, "description": description });
    if let (Some(format), Some(object)) = (format, schema.as_object_mut()) {
        object.insert("format".to_owned(), Value::String(format.to_owned()));
    }
    schema
}

fn string(description: &str) -> Value {
    typed("string", None, description)
}

fn int64(description: &str) -> Value {
    typed("integer", Some("int64"), description)
}

fn array_of(items: Value, description: &str) -> Value {
    let mut schema = as_map(json!({ "type": "array", "description": description }));
    schema.insert("items".to_owned(), items);
    Value::Object(schema)
}

fn string_map(description: &str) -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" }, "description": description })
}

fn type_meta_properties() -> Vec<(&'static str, Value)> {
    vec![("kind", string(KIND_DESCRIPTION)), ("apiVersion", string(API_VERSION_DESCRIPTION))]
}

/// The properties every metric value shares after its identifying fields: timestamp, window, value.
fn timestamp_property(flavor: Flavor) -> (&'static str, Value) {
    ("timestamp", flavor.ref_property(TIME, TIMESTAMP_DESCRIPTION, true))
}

fn value_property(flavor: Flavor) -> (&'static str, Value) {
    ("value", flavor.ref_property(QUANTITY, VALUE_DESCRIPTION, false))
}

fn selector_property(flavor: Flavor) -> (&'static str, Value) {
    ("selector", flavor.ref_property(LABEL_SELECTOR, SELECTOR_DESCRIPTION, true))
}

fn described_object_property(flavor: Flavor) -> (&'static str, Value) {
    ("describedObject", flavor.ref_property(OBJECT_REFERENCE, DESCRIBED_OBJECT_DESCRIPTION, false))
}

/// `MetricValueList` / `ExternalMetricValueList` of a group-version.
fn list_schema(flavor: Flavor, api: Api) -> Value {
    let mut properties = type_meta_properties();
    properties.push(("metadata", flavor.ref_property(LIST_META, "Standard list metadata; in practice `{}`.", false)));
    properties.push((
        "items",
        array_of(
            flavor.schema_ref(&api.type_name(api.item_kind())),
            "the value of the metric across the described objects",
        ),
    ));
    let description = format!(
        "{} is a list of values for a given metric for some set of {}",
        api.list_kind(),
        if api.is_custom() { "objects" } else { "labels" }
    );
    let mut schema = object_schema(&description, properties, &["items"]);
    if let Some(object) = schema.as_object_mut() {
        object.insert("x-kubernetes-group-version-kind".to_owned(), json!([api.group_version_kind()]));
    }
    schema
}

/// custom.metrics.k8s.io/v1beta1 `MetricValue` (docs/wire-contract.md §2.1).
fn metric_value_v1beta1(flavor: Flavor, description: &str) -> Value {
    object_schema(
        description,
        vec![
            described_object_property(flavor),
            ("metricName", string(METRIC_NAME_DESCRIPTION)),
            timestamp_property(flavor),
            ("window", int64(WINDOW_DESCRIPTION)),
            value_property(flavor),
            selector_property(flavor),
        ],
        &["describedObject", "metricName", "timestamp", "value"],
    )
}

/// custom.metrics.k8s.io/v1beta2 `MetricValue` (docs/wire-contract.md §2.1).
fn metric_value_v1beta2(flavor: Flavor, description: &str, identifier: &str) -> Value {
    object_schema(
        description,
        vec![
            described_object_property(flavor),
            ("metric", flavor.ref_property(identifier, "the name and selector of the metric", false)),
            timestamp_property(flavor),
            ("windowSeconds", int64(WINDOW_DESCRIPTION)),
            value_property(flavor),
        ],
        &["describedObject", "metric", "timestamp", "value"],
    )
}

/// custom.metrics.k8s.io/v1beta2 `MetricIdentifier`.
fn metric_identifier(flavor: Flavor) -> Value {
    object_schema(
        "MetricIdentifier identifies a metric by name and, optionally, selector",
        vec![("name", string("name is the name of the given metric")), selector_property(flavor)],
        &["name"],
    )
}

/// external.metrics.k8s.io/v1beta1 `ExternalMetricValue` (docs/wire-contract.md §2.1).
fn external_metric_value(flavor: Flavor, description: &str) -> Value {
    let mut labels = string_map("a set of labels which identify a single time series for the metric");
    flavor.mark_nullable(&mut labels);
    object_schema(
        description,
        vec![
            ("metricName", string(METRIC_NAME_DESCRIPTION)),
            ("metricLabels", labels),
            timestamp_property(flavor),
            ("window", int64(WINDOW_DESCRIPTION)),
            value_property(flavor),
        ],
        &["metricName", "metricLabels", "timestamp", "value"],
    )
}

/// Schemas used by every group-version: list metadata, time, quantity and the error `Status`.
fn common_schemas(flavor: Flavor) -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert(LIST_META.to_owned(), list_meta());
    schemas.insert(
        TIME.to_owned(),
        typed("string", Some("date-time"), "Time in RFC 3339 form, UTC, whole seconds, e.g. `2026-07-01T10:00:00Z`."),
    );
    schemas.insert(
        QUANTITY.to_owned(),
        string("Quantity is a fixed-point representation of a number in canonical form, e.g. `42`, `1500m`, `2Ki`, `1e21`."),
    );
    schemas.insert(STATUS.to_owned(), status(flavor));
    schemas.insert(STATUS_DETAILS.to_owned(), status_details(flavor));
    schemas.insert(STATUS_CAUSE.to_owned(), status_cause());
    schemas
}

/// Schemas used by the custom-metrics group-versions only: object references and label selectors.
fn object_reference_schemas(flavor: Flavor) -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert(OBJECT_REFERENCE.to_owned(), object_reference());
    schemas.insert(LABEL_SELECTOR.to_owned(), label_selector(flavor));
    schemas.insert(LABEL_SELECTOR_REQUIREMENT.to_owned(), label_selector_requirement());
    schemas
}

fn list_meta() -> Value {
    object_schema(
        "ListMeta describes metadata that synthetic resources must have, including lists.",
        vec![
            ("selfLink", string("Deprecated, not set.")),
            ("resourceVersion", string("String that identifies the server's internal version of this object.")),
            ("continue", string("continue may be set if the user set a limit on the number of items returned.")),
            (
                "remainingItemCount",
                int64("The number of subsequent items in the list which are not included in this list response."),
            ),
        ],
        &[],
    )
}

fn object_reference() -> Value {
    object_schema(
        "ObjectReference contains enough information to let you inspect or modify the referred object. `apiVersion` is `<group>/<version>`, which for core kinds reads `/v1`.",
        vec![
            ("kind", string("Kind of the referent.")),
            ("namespace", string("Namespace of the referent; omitted for cluster-scoped objects.")),
            ("name", string("Name of the referent.")),
            ("uid", string("UID of the referent.")),
            ("apiVersion", string("API version of the referent.")),
            ("resourceVersion", string("Specific resourceVersion to which this reference is made, if any.")),
            (
                "fieldPath",
                string(
                    "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
                ),
            ),
        ],
        &[],
    )
}

fn label_selector(flavor: Flavor) -> Value {
    object_schema(
        "A label selector is a label query over a set of resources. The result of matchLabels and matchExpressions are ANDed. An empty label selector matches all objects.",
        vec![
            (
                "matchLabels",
                string_map(
                    "matchLabels is a map of {key,value} pairs; each is equivalent to an element of matchExpressions whose key field is \"key\", the operator is \"In\", and the values array contains only \"value\".",
                ),
            ),
            (
                "matchExpressions",
                array_of(
                    flavor.schema_ref(LABEL_SELECTOR_REQUIREMENT),
                    "matchExpressions is a list of label selector requirements. The requirements are ANDed.",
                ),
            ),
        ],
        &[],
    )
}

fn label_selector_requirement() -> Value {
    let mut operator = string("operator represents a key's relationship to a set of values.");
    if let Some(object) = operator.as_object_mut() {
        object.insert("enum".to_owned(), json!(["In", "NotIn", "Exists", "DoesNotExist"]));
    }
    object_schema(
        "A label selector requirement is a selector that contains values, a key, and an operator that relates the key and values.",
        vec![
            ("key", string("key is the label key that the selector applies to.")),
            ("operator", operator),
            (
                "values",
                array_of(
                    json!({ "type": "string" }),
                    "values is an array of string values. If the operator is In or NotIn, the values array must be non-empty. If the operator is Exists or DoesNotExist, the values array must be empty.",
                ),
            ),
        ],
        &["key", "operator"],
    )
}

fn status(flavor: Flavor) -> Value {
    let mut properties = type_meta_properties();
    properties.extend([
        (
            "metadata",
            flavor.ref_property(LIST_META, "Standard list metadata; in practice `{}`.", false),
        ),
        ("status", string("Status of the operation. One of: \"Success\" or \"Failure\".")),
        ("message", string("A human-readable description of the status of this operation.")),
        ("reason", string("A machine-readable description of why this operation is in the \"Failure\" status, e.g. `NotFound`, `BadRequest`; absent when unknown.")),
        (
            "details",
            flavor.ref_property(STATUS_DETAILS, "Extended data associated with the reason.", false),
        ),
        ("code", typed("integer", Some("int32"), "Suggested HTTP return code for this status, 0 if not set.")),
    ]);
    let mut schema =
        object_schema("Status is a return value for calls that don't return other objects.", properties, &[]);
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "x-kubernetes-group-version-kind".to_owned(),
            json!([{ "group": "", "version": "v1", "kind": "Status" }]),
        );
    }
    schema
}

fn status_details(flavor: Flavor) -> Value {
    object_schema(
        "StatusDetails is a set of additional properties that MAY be set by the server to provide additional information about a response.",
        vec![
            ("name", string("The name attribute of the resource associated with the status StatusReason.")),
            ("group", string("The group attribute of the resource associated with the status StatusReason.")),
            ("kind", string("The kind attribute of the resource associated with the status StatusReason.")),
            ("uid", string("UID of the resource.")),
            (
                "causes",
                array_of(
                    flavor.schema_ref(STATUS_CAUSE),
                    "The Causes array includes more details associated with the StatusReason failure.",
                ),
            ),
            (
                "retryAfterSeconds",
                typed(
                    "integer",
                    Some("int32"),
                    "If specified, the time in seconds before the operation should be retried.",
                ),
            ),
        ],
        &[],
    )
}

fn status_cause() -> Value {
    object_schema(
        "StatusCause provides more information about an api.Status failure, including cases when multiple errors are encountered.",
        vec![
            ("reason", string("A machine-readable description of the cause of the error.")),
            ("message", string("A human-readable description of the cause of the error.")),
            (
                "field",
                string("The field of the resource that has caused this error, as named by its JSON serialization."),
            ),
        ],
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::process::Command;

    const VALIDATOR_SCRIPT: &str = r#"
import json, sys
try:
    from openapi_spec_validator import validate
except ImportError as error:
    print("openapi-spec-validator is missing (pip install openapi-spec-validator): %s" % error)
    sys.exit(3)
with open(sys.argv[1]) as handle:
    spec = json.load(handle)
try:
    validate(spec)
except Exception as error:
    print("INVALID: %s: %s" % (type(error).__name__, error))
    sys.exit(1)
print("VALID")
"#;

    /// Runs openapi-spec-validator on `doc`; Ok(()) when valid, Err(validator output) when rejected.
    /// Panics when python3 or the validator package is unavailable.
    fn run_validator(label: &str, doc: &Value) -> Result<(), String> {
        let path: PathBuf =
            std::env::temp_dir().join(format!("openapi-test-{}-{}.json", std::process::id(), label.replace('/', "_")));
        std::fs::write(&path, doc.to_string()).expect("write temp spec");
        let output = Command::new("python3").arg("-c").arg(VALIDATOR_SCRIPT).arg(&path).output();
        let _ = std::fs::remove_file(&path);
        let output = output.unwrap_or_else(|error| {
            panic!(
                "cannot run python3 to validate {label}: {error}; install python3 and `pip install openapi-spec-validator`"
            )
        });
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        match output.status.code() {
            Some(0) => Ok(()),
            Some(1) => Err(text),
            _ => panic!(
                "openapi-spec-validator unavailable while validating {label} (pip install openapi-spec-validator): {text}"
            ),
        }
    }

    fn assert_valid(label: &str, doc: &Value) {
        if let Err(text) = run_validator(label, doc) {
            panic!("openapi-spec-validator rejected {label}: {text}");
        }
    }

    fn v3(group: &str, version: &str) -> Value {
        v3_document(group, version).expect("served group-version")
    }

    fn all_v3() -> Vec<((&'static str, &'static str), Value)> {
        GROUP_VERSIONS.iter().map(|&(group, version)| ((group, version), v3(group, version))).collect()
    }

    fn path_keys(doc: &Value) -> BTreeSet<String> {
        doc["paths"].as_object().expect("paths object").keys().cloned().collect()
    }

    fn collect_refs(value: &Value, refs: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "$ref" {
                        refs.insert(child.as_str().expect("string $ref").to_owned());
                    } else {
                        collect_refs(child, refs);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
            _ => {}
        }
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut operations = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                if method != "parameters" {
                    operations.push((path.clone(), method.clone(), operation.clone()));
                }
            }
        }
        operations
    }

    /// The routes of docs/wire-contract.md §1.3 (R1–R5 incl. wildcards), §10 item 10 and §1.4, per group-version.
    fn expected_paths(group: &str, version: &str) -> Vec<String> {
        let suffixes: &[&str] = if group == "custom.metrics.k8s.io" {
            &[
                "/namespaces/{namespace}/{resource}/{name}/{metric}",
                "/namespaces/{namespace}/{resource}/*/{metric}",
                "/{resource}/{name}/{metric}",
                "/{resource}/*/{metric}",
                "/namespaces/{namespace}/metrics/{metric}",
                "/namespaces/{namespace}/{resource}/{name}/",
            ]
        } else {
            &["/namespaces/{namespace}/{metric}"]
        };
        suffixes.iter().map(|suffix| format!("/apis/{group}/{version}{suffix}")).collect()
    }

    #[test]
    fn v2_document_passes_openapi_spec_validator() {
        let doc = v2_document();
        assert_eq!(doc["swagger"], "2.0");
        assert_eq!(doc["info"]["title"], INFO_TITLE);
        assert_valid("v2", &doc);
    }

    #[test]
    fn every_v3_document_passes_openapi_spec_validator() {
        for ((group, version), doc) in all_v3() {
            assert_eq!(doc["openapi"], "3.0.0");
            assert_eq!(doc["info"]["title"], INFO_TITLE);
            assert_valid(&format!("v3-{group}-{version}"), &doc);
        }
    }

    #[test]
    fn validator_rejects_broken_documents() {
        let mut v2 = v2_document();
        let path = "/apis/custom.metrics.k8s.io/v1beta2/{resource}/{name}/{metric}";
        v2["paths"][path]["parameters"] = json!([]);
        assert!(run_validator("broken-v2", &v2).is_err(), "undeclared path parameters must be rejected");
        let mut v3 = v3("external.metrics.k8s.io", "v1beta1");
        v3["paths"]["/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"]["get"]
            .as_object_mut()
            .expect("operation")
            .remove("responses");
        assert!(run_validator("broken-v3", &v3).is_err(), "an operation without responses must be rejected");
    }

    #[test]
    fn group_versions_match_served_apis() {
        let served: Vec<(&str, &str)> = Api::ALL.iter().map(|api| (api.group(), api.version())).collect();
        assert_eq!(served, GROUP_VERSIONS);
        assert!(v3_document("custom.metrics.k8s.io", "v1").is_none());
        assert!(v3_document("external.metrics.k8s.io", "v1beta2").is_none());
        assert!(v3_document("metrics.k8s.io", "v1beta1").is_none());
    }

    #[test]
    fn every_route_is_in_v2_and_in_its_own_v3_document_only() {
        let v2_paths = path_keys(&v2_document());
        let mut all_expected = BTreeSet::new();
        for ((group, version), doc) in all_v3() {
            let expected: BTreeSet<String> = expected_paths(group, version).into_iter().collect();
            assert_eq!(path_keys(&doc), expected, "v3 paths of {group}/{version}");
            for path in &expected {
                assert!(v2_paths.contains(path), "v2 lacks {path}");
            }
            all_expected.extend(expected);
        }
        assert_eq!(v2_paths, all_expected);
    }

    #[test]
    fn operations_are_get_only_with_unique_ids_and_declared_parameters() {
        let mut docs = vec![v2_document()];
        docs.extend(all_v3().into_iter().map(|(_, doc)| doc));
        for doc in &docs {
            let mut ids = BTreeSet::new();
            for (path, method, operation) in operations(doc) {
                assert_eq!(method, "get", "{path}");
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
                assert!(operation["responses"]["200"].is_object(), "{path}");
                let names: BTreeSet<&str> = doc["paths"][&path]["parameters"]
                    .as_array()
                    .expect("parameters")
                    .iter()
                    .map(|param| param["name"].as_str().expect("name"))
                    .collect();
                for name in ["labelSelector", "pretty"] {
                    assert!(names.contains(name), "{path} lacks {name}");
                }
                let custom = path.starts_with("/apis/custom.metrics.k8s.io/");
                assert_eq!(names.contains("metricLabelSelector"), custom, "{path}");
                for segment in path.split('/').filter(|s| s.starts_with('{')) {
                    assert!(names.contains(segment.trim_matches(['{', '}'])), "{path}");
                }
            }
        }
    }

    #[test]
    fn every_ref_resolves_and_every_schema_is_used() {
        let check = |doc: &Value, prefix: &str, schemas: &Value| {
            let mut refs = BTreeSet::new();
            collect_refs(doc, &mut refs);
            let names: BTreeSet<String> =
                schemas.as_object().expect("schemas").keys().map(|name| format!("{prefix}{name}")).collect();
            assert_eq!(refs, names);
        };
        let v2 = v2_document();
        check(&v2, "#/definitions/", &v2["definitions"]);
        for (_, doc) in all_v3() {
            check(&doc, "#/components/schemas/", &doc["components"]["schemas"]);
        }
    }

    #[test]
    fn v2_has_the_kubernetes_named_definitions() {
        let doc = v2_document();
        for name in [
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta1.MetricValueList",
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta1.MetricValue",
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList",
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValue",
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricIdentifier",
            "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList",
            "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValue",
            OBJECT_REFERENCE,
            LABEL_SELECTOR,
            STATUS,
        ] {
            assert!(doc["definitions"][name].is_object(), "missing {name}");
        }
        let gvk = &doc["definitions"]["io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList"]["x-kubernetes-group-version-kind"];
        assert_eq!(
            gvk,
            &json!([{ "group": "custom.metrics.k8s.io", "version": "v1beta2", "kind": "MetricValueList" }])
        );
    }

    fn property_names(schema: &Value) -> Vec<String> {
        let mut names: Vec<String> = schema["properties"].as_object().expect("properties").keys().cloned().collect();
        names.sort();
        names
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn v1beta2_metric_value_schema() {
        let doc = v3("custom.metrics.k8s.io", "v1beta2");
        let schemas = &doc["components"]["schemas"];
        let value = &schemas["io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValue"];
        assert_eq!(
            property_names(value),
            sorted(&["describedObject", "metric", "timestamp", "windowSeconds", "value"])
        );
        assert_eq!(value["required"], json!(["describedObject", "metric", "timestamp", "value"]));
        assert_eq!(value["properties"]["windowSeconds"]["format"], "int64");
        let identifier = &schemas["io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricIdentifier"];
        assert_eq!(property_names(identifier), sorted(&["name", "selector"]));
        assert_eq!(identifier["properties"]["selector"]["nullable"], true);
        assert!(schemas.get("io.k8s.metrics.pkg.apis.custom_metrics.v1beta1.MetricValue").is_none());
        let list = &schemas["io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValue"
        );
    }

    #[test]
    fn v1beta1_metric_value_schema() {
        let doc = v2_document();
        let value = &doc["definitions"]["io.k8s.metrics.pkg.apis.custom_metrics.v1beta1.MetricValue"];
        assert_eq!(
            property_names(value),
            sorted(&["describedObject", "metricName", "timestamp", "window", "value", "selector"])
        );
        assert_eq!(value["required"], json!(["describedObject", "metricName", "timestamp", "value"]));
        assert_eq!(value["properties"]["selector"]["x-nullable"], true);
        assert_eq!(
            value["properties"]["selector"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
        );
    }

    #[test]
    fn external_and_shared_schemas() {
        let doc = v3("external.metrics.k8s.io", "v1beta1");
        let schemas = &doc["components"]["schemas"];
        let value = &schemas["io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValue"];
        assert_eq!(property_names(value), sorted(&["metricName", "metricLabels", "timestamp", "window", "value"]));
        assert!(schemas.get(OBJECT_REFERENCE).is_none());
        assert_eq!(
            property_names(&schemas[STATUS]),
            sorted(&["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"])
        );
        let custom = v2_document();
        assert_eq!(
            property_names(&custom["definitions"][OBJECT_REFERENCE]),
            sorted(&["kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"])
        );
        assert_eq!(
            property_names(&custom["definitions"][LABEL_SELECTOR]),
            sorted(&["matchLabels", "matchExpressions"])
        );
    }

    #[test]
    fn index_urls_carry_the_hash_of_each_document() {
        let index = v3_index();
        let paths = index["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), GROUP_VERSIONS.len());
        for ((group, version), doc) in all_v3() {
            let hash = content_hash(&doc);
            assert_eq!(hash.len(), 128);
            assert!(hash.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
            assert_eq!(
                paths[&format!("apis/{group}/{version}")]["serverRelativeURL"],
                format!("/openapi/v3/apis/{group}/{version}?hash={hash}")
            );
            assert_eq!(etag(&doc), format!("\"{hash}\""));
        }
        assert_eq!(index, v3_index());
    }

    #[test]
    fn etag_is_stable_and_follows_content() {
        let first = etag(&v2_document());
        assert_eq!(first, etag(&v2_document()));
        assert!(first.starts_with('"') && first.ends_with('"') && first.len() == 130);
        let mut changed = v2_document();
        changed["info"]["version"] = json!("1.0.1");
        assert_ne!(first, etag(&changed));
        let hashes: BTreeSet<String> = all_v3().iter().map(|(_, doc)| etag(doc)).collect();
        assert_eq!(hashes.len(), GROUP_VERSIONS.len());
        // Known-answer check of the hash itself: SHA-512 of `{}`.
        assert_eq!(
            etag(&json!({})),
            "\"27C74670ADB75075FAD058D5CEAF7B20C4E7786C83BAE8A32F626F9782AF34C9A33C2046EF60FD2A7878D378E29FEC851806BBD9A67878F3A9F1CDA4830763FD\""
        );
    }
}
