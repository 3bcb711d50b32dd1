//! The OpenAPI documents of `/openapi/v2` and `/openapi/v3` (docs/wire-contract.md §6.4, docs/architecture.md §7).
//!
//! One source: an OpenAPI 3.0 document per served group-version, checked in as JSON under `src/api/openapi/v3/`
//! and named by [`GroupVersion::openapi_v3`]. `/openapi/v3` serves an index that points at each of them; each URL
//! carries `?hash=<HASH>`, the upper-case hex SHA-512 of the compact serialization of that document (as
//! kube-openapi does), so clients can cache it. The Swagger 2.0 document of `/openapi/v2` is derived from the same
//! documents ([`v2_from_v3`]). [`etag`] gives the matching `ETag` header value for `If-None-Match`.
//!
//! Schemas are named as Kubernetes names them (`io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList`,
//! `io.k8s.apimachinery.pkg.apis.meta.v1.Status`, …) and describe the wire shapes of docs/wire-contract.md §2.1
//! and §3.1. The tests check that every documented path is routed and every route is documented, that the
//! documents agree with [`super::group_versions::SERVED`], and that openapi-spec-validator accepts them.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::group_versions::{GroupVersion, SERVED};

/// The documents as served, parsed once.
#[derive(Debug)]
pub struct Documents {
    /// `/openapi/v2`.
    pub v2: Value,
    /// `/openapi/v3`.
    pub v3_index: Value,
    /// `/openapi/v3/apis/<group>/<version>`, in the order of [`SERVED`].
    pub v3: Vec<(&'static GroupVersion, Value)>,
}

/// Parses the checked-in documents and derives the others. Fails only when a checked-in document is not JSON,
/// which the tests rule out.
pub fn documents() -> Result<Documents, serde_json::Error> {
    let v3 = SERVED
        .iter()
        .map(|served| Ok((*served, serde_json::from_str::<Value>(served.openapi_v3)?)))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    let v2 = v2_from_v3(v3.iter().map(|(_, doc)| doc));
    let v3_index = v3_index(&v3);
    Ok(Documents { v2, v3_index, v3 })
}

/// The path of a group-version's OpenAPI 3.0 document.
pub fn v3_path(served: &GroupVersion) -> String {
    format!("/openapi/v3/apis/{}/{}", served.group, served.version)
}

/// The `/openapi/v3` index: one `serverRelativeURL` per served group-version, each carrying the content hash of
/// the document it points at.
fn v3_index(v3: &[(&'static GroupVersion, Value)]) -> Value {
    let paths: Map<String, Value> = v3
        .iter()
        .map(|(served, doc)| {
            let url = format!("{}?hash={}", v3_path(served), content_hash(doc));
            (format!("apis/{}/{}", served.group, served.version), json!({ "serverRelativeURL": url }))
        })
        .collect();
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

// ---------------------------------------------------------------------------------------------
// Swagger 2.0 from OpenAPI 3.0
// ---------------------------------------------------------------------------------------------

const V3_REFS: &str = "#/components/schemas/";
const V2_REFS: &str = "#/definitions/";

/// One Swagger 2.0 document holding every path and schema of `docs`, as kube-openapi builds `/openapi/v2` from
/// the same definitions as `/openapi/v3`. Converts only what the checked-in documents use: `$ref` prefixes,
/// `nullable` (`x-nullable`), a reference with its own description (a one-element `allOf` in 3.0, `$ref` with
/// siblings in 2.0), parameters' `schema`, responses' `content`; operations gain `produces` and `schemes`.
pub fn v2_from_v3<'a>(docs: impl IntoIterator<Item = &'a Value>) -> Value {
    let (mut info, mut security) = (Value::Null, Value::Null);
    let (mut paths, mut definitions, mut security_definitions) = (Map::new(), Map::new(), Map::new());
    for doc in docs {
        info.clone_from(&doc["info"]);
        security.clone_from(&doc["security"]);
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            paths.insert(path.clone(), path_item_v2(item));
        }
        for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
            definitions.insert(name.clone(), schema_v2(schema));
        }
        if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
            security_definitions.extend(schemes.clone());
        }
    }
    json!({
        "swagger": "2.0",
        "info": info,
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": security_definitions,
        "security": security,
    })
}

fn path_item_v2(item: &Value) -> Value {
    let Some(item) = item.as_object() else { return item.clone() };
    let converted = item.iter().map(|(key, value)| {
        let value = if key == "parameters" {
            Value::Array(value.as_array().into_iter().flatten().map(parameter_v2).collect())
        } else {
            operation_v2(value)
        };
        (key.clone(), value)
    });
    Value::Object(converted.collect())
}

fn operation_v2(operation: &Value) -> Value {
    let Some(operation) = operation.as_object() else { return operation.clone() };
    let mut converted = operation.clone();
    if let Some(responses) = operation.get("responses").and_then(Value::as_object) {
        let responses = responses.iter().map(|(code, response)| (code.clone(), response_v2(response)));
        converted.insert("responses".to_owned(), Value::Object(responses.collect()));
    }
    converted.insert("produces".to_owned(), json!(["application/json"]));
    converted.insert("schemes".to_owned(), json!(["https"]));
    Value::Object(converted)
}

/// `schema: {type}` moves into the parameter; Kubernetes' v2 parameters carry `uniqueItems`.
fn parameter_v2(parameter: &Value) -> Value {
    let Some(parameter) = parameter.as_object() else { return parameter.clone() };
    let mut converted = parameter.clone();
    if let Some(Value::Object(schema)) = converted.remove("schema") {
        converted.extend(schema);
        converted.insert("uniqueItems".to_owned(), Value::Bool(true));
    }
    Value::Object(converted)
}

/// `content: {<media type>: {schema}}` becomes `schema`.
fn response_v2(response: &Value) -> Value {
    let Some(response) = response.as_object() else { return response.clone() };
    let mut converted = response.clone();
    if let Some(content) = converted.remove("content")
        && let Some(schema) = content.as_object().and_then(|media| media.values().next()).map(|media| &media["schema"])
    {
        converted.insert("schema".to_owned(), schema_v2(schema));
    }
    Value::Object(converted)
}

fn schema_v2(schema: &Value) -> Value {
    let Some(schema) = schema.as_object() else { return schema.clone() };
    let mut converted = Map::new();
    for (key, value) in schema {
        match (key.as_str(), value) {
            ("$ref", Value::String(target)) => {
                let name = target.strip_prefix(V3_REFS).unwrap_or(target);
                converted.insert(key.clone(), Value::String(format!("{V2_REFS}{name}")));
            }
            ("nullable", _) => {
                converted.insert("x-nullable".to_owned(), value.clone());
            }
            // Swagger 2.0 keeps a reference's siblings, so the wrapper that OpenAPI 3.0 needs goes.
            ("allOf", Value::Array(parts)) if parts.len() == 1 && parts[0].get("$ref").is_some() => {
                converted.extend(
                    schema_v2(&parts[0]).as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            ("properties", Value::Object(properties)) => {
                let properties = properties.iter().map(|(name, property)| (name.clone(), schema_v2(property)));
                converted.insert(key.clone(), Value::Object(properties.collect()));
            }
            ("items" | "additionalProperties", _) => {
                converted.insert(key.clone(), schema_v2(value));
            }
            ("allOf", Value::Array(parts)) => {
                converted.insert(key.clone(), Value::Array(parts.iter().map(schema_v2).collect()));
            }
            _ => {
                converted.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(converted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::group_versions::{self, EXTERNAL_V1BETA1};
    use crate::api::route::{self, ApiRoute, CustomTarget};
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

    const INFO_TITLE: &str = "custom-metrics-apiserver";
    const OBJECT_REFERENCE: &str = "io.k8s.api.core.v1.ObjectReference";
    const LABEL_SELECTOR: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";
    const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";

    fn v2_document() -> Value {
        documents().expect("the checked-in documents are JSON").v2
    }

    fn v3_index() -> Value {
        documents().expect("the checked-in documents are JSON").v3_index
    }

    /// The document of a served group-version, as served.
    fn v3_document(group: &str, version: &str) -> Option<Value> {
        let served = group_versions::find(group, version)?;
        let documents = documents().expect("the checked-in documents are JSON");
        documents.v3.into_iter().find(|(listed, _)| *listed == served).map(|(_, doc)| doc)
    }

    fn v3(group: &str, version: &str) -> Value {
        v3_document(group, version).expect("served group-version")
    }

    fn all_v3() -> Vec<((&'static str, &'static str), Value)> {
        SERVED.iter().map(|served| ((served.group, served.version), v3(served.group, served.version))).collect()
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
                "/{resource}/{name}/",
                "/namespaces/{namespace}/",
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
        let documents = documents().expect("the checked-in documents are JSON");
        let listed: Vec<&GroupVersion> = documents.v3.iter().map(|(served, _)| *served).collect();
        assert_eq!(listed, SERVED);
        for (served, doc) in &documents.v3 {
            let prefix = format!("/apis/{}/{}/", served.group, served.version);
            for path in path_keys(doc) {
                assert!(path.starts_with(&prefix), "{path} in the document of {served:?}");
            }
            for (path, _, operation) in operations(doc) {
                let gvk = json!({ "group": served.group, "version": served.version, "kind": served.list_kind });
                assert_eq!(operation["x-kubernetes-group-version-kind"], gvk, "{path}");
            }
            let package = match served.serves {
                group_versions::Serves::Custom(_) => "custom_metrics",
                group_versions::Serves::External => "external_metrics",
            };
            let list = format!("io.k8s.metrics.pkg.apis.{package}.{}.{}", served.version, served.list_kind);
            let gvk = &doc["components"]["schemas"][&list]["x-kubernetes-group-version-kind"];
            assert_eq!(gvk, &json!([{ "group": served.group, "version": served.version, "kind": served.list_kind }]));
        }
        assert!(v3_document("custom.metrics.k8s.io", "v1").is_none());
        assert!(v3_document("external.metrics.k8s.io", "v1beta2").is_none());
        assert!(v3_document("metrics.k8s.io", "v1beta1").is_none());
    }

    /// The OpenAPI path template of a metric read route, `None` for discovery. The match is exhaustive: a new
    /// route shape must name its template here, and the tests below then require it to be documented.
    fn template(route: &ApiRoute) -> Option<String> {
        let (served, suffix) = match route {
            ApiRoute::GroupList | ApiRoute::Group(_) | ApiRoute::CustomResources(_) | ApiRoute::ExternalResources => {
                return None;
            }
            ApiRoute::Custom(version, target) => {
                let suffix = match target {
                    CustomTarget::Object { namespace: Some(_), .. } => {
                        "/namespaces/{namespace}/{resource}/{name}/{metric}"
                    }
                    CustomTarget::Object { namespace: None, resource, .. } if resource == "namespaces" => {
                        "/namespaces/{namespace}/metrics/{metric}"
                    }
                    CustomTarget::Object { namespace: None, .. } => "/{resource}/{name}/{metric}",
                    CustomTarget::AllObjects { namespace: Some(_), .. } => {
                        "/namespaces/{namespace}/{resource}/*/{metric}"
                    }
                    CustomTarget::AllObjects { namespace: None, .. } => "/{resource}/*/{metric}",
                    CustomTarget::ObjectMetrics { namespace: Some(_), .. } => {
                        "/namespaces/{namespace}/{resource}/{name}/"
                    }
                    CustomTarget::ObjectMetrics { namespace: None, resource, .. } if resource == "namespaces" => {
                        "/namespaces/{namespace}/"
                    }
                    CustomTarget::ObjectMetrics { namespace: None, .. } => "/{resource}/{name}/",
                };
                (version.group_version(), suffix)
            }
            ApiRoute::External { .. } => (&EXTERNAL_V1BETA1, "/namespaces/{namespace}/{metric}"),
        };
        Some(format!("/apis/{}/{}{suffix}", served.group, served.version))
    }

    #[test]
    fn every_documented_path_is_routed_to_the_route_it_documents() {
        for ((group, version), doc) in all_v3() {
            for (path, _, operation) in operations(&doc) {
                let concrete = path
                    .replace("{namespace}", "ns-1")
                    .replace("{resource}", "pods")
                    .replace("{name}", "obj-1")
                    .replace("{metric}", "m-1");
                let route = route::parse(&concrete).unwrap_or_else(|error| panic!("{concrete}: {error:?}"));
                let route = route.unwrap_or_else(|| panic!("{concrete} is not an API route"));
                assert_eq!(template(&route), Some(path.clone()), "{group}/{version}: {concrete} is {route:?}");
                let reads_one = matches!(route, ApiRoute::Custom(_, CustomTarget::Object { .. }));
                let action = if reads_one { "get" } else { "list" };
                assert_eq!(operation["x-kubernetes-action"], action, "{path}");
            }
        }
    }

    #[test]
    fn every_route_is_documented() {
        // One path of every shape that route::parse accepts below a served group-version (its tests' catalogue).
        const CUSTOM: &[&str] = &[
            "/namespaces/default/pods/web-1/q",
            "/namespaces/default/deployments.apps/web/q",
            "/namespaces/default/pods/*/q",
            "/namespaces/default/pods/%2A/q",
            "/namespaces/default/metrics/q",
            "/namespaces/default/pods/web-1/",
            "/namespaces/default/",
            "/nodes/node-1/temp",
            "/nodes/%2a/temp",
            "/nodes/node-1/",
        ];
        let v2_paths = path_keys(&v2_document());
        let mut routed = BTreeSet::new();
        for served in SERVED {
            let doc = v3(served.group, served.version);
            let samples: &[&str] = match served.serves {
                group_versions::Serves::Custom(_) => CUSTOM,
                group_versions::Serves::External => &["/namespaces/default/queue_depth"],
            };
            for sample in samples {
                let path = format!("/apis/{}/{}{sample}", served.group, served.version);
                let route = route::parse(&path).expect("routed").expect("an API route");
                let template = template(&route).expect("a metric read");
                assert!(doc["paths"].get(&template).is_some(), "{path} ({template}) is not documented");
                assert!(v2_paths.contains(&template), "{template} is not in /openapi/v2");
                routed.insert(template);
            }
        }
        assert_eq!(routed, v2_paths, "documented paths that no sample reaches");
    }

    #[test]
    fn documents_agree_on_shared_schemas_info_and_security() {
        let documents = all_v3();
        let ((_, first), rest) = documents.split_first().expect("served group-versions");
        let mut schemas: Map<String, Value> = Map::new();
        for ((group, version), doc) in &documents {
            assert_eq!(doc["info"], first["info"], "{group}/{version}");
            assert_eq!(doc["security"], first["security"], "{group}/{version}");
            assert_eq!(doc["components"]["securitySchemes"], first["components"]["securitySchemes"]);
            for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
                let known = schemas.entry(name.clone()).or_insert_with(|| schema.clone());
                assert_eq!(known, schema, "{name} differs in {group}/{version}");
            }
        }
        assert!(!rest.is_empty());
    }

    #[test]
    fn v2_is_the_v3_documents_in_swagger_form() {
        let v2 = v2_document();
        assert_eq!(v2["securityDefinitions"]["BearerToken"]["type"], "apiKey");
        assert_eq!(v2["security"], json!([{ "BearerToken": [] }]));
        let mut definitions = BTreeSet::new();
        for (_, doc) in all_v3() {
            for (path, method, operation) in operations(&doc) {
                let swagger = &v2["paths"][&path][&method];
                for key in ["operationId", "x-kubernetes-action", "x-kubernetes-group-version-kind", "tags"] {
                    assert_eq!(swagger[key], operation[key], "{path} {key}");
                }
                assert_eq!(swagger["produces"], json!(["application/json"]), "{path}");
                assert_eq!(swagger["schemes"], json!(["https"]), "{path}");
                let list = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .expect("200 schema");
                assert_eq!(
                    swagger["responses"]["200"]["schema"]["$ref"],
                    list.replace("#/components/schemas/", "#/definitions/"),
                    "{path}"
                );
                for parameter in v2["paths"][&path]["parameters"].as_array().expect("parameters") {
                    assert_eq!(parameter["type"], "string", "{path}");
                    assert!(parameter.get("schema").is_none(), "{path}");
                }
            }
            definitions.extend(doc["components"]["schemas"].as_object().expect("schemas").keys().cloned());
        }
        let names: BTreeSet<String> = v2["definitions"].as_object().expect("definitions").keys().cloned().collect();
        assert_eq!(names, definitions);
    }

    #[test]
    fn swagger_references_keep_their_description_and_nullability() {
        let v3 = json!({
            "allOf": [{ "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time" }],
            "description": "when",
            "nullable": true,
        });
        assert_eq!(
            schema_v2(&v3),
            json!({
                "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time",
                "description": "when",
                "x-nullable": true,
            })
        );
        let labels = json!({ "type": "object", "additionalProperties": { "type": "string" }, "nullable": true });
        assert_eq!(schema_v2(&labels)["x-nullable"], true);
        assert!(schema_v2(&labels).get("nullable").is_none());
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
        assert_eq!(paths.len(), SERVED.len());
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
        assert_eq!(hashes.len(), SERVED.len());
        // Known-answer check of the hash itself: SHA-512 of `{}`.
        assert_eq!(
            etag(&json!({})),
            "\"27C74670ADB75075FAD058D5CEAF7B20C4E7786C83BAE8A32F626F9782AF34C9A33C2046EF60FD2A7878D378E29FEC851806BBD9A67878F3A9F1CDA4830763FD\""
        );
    }
}
