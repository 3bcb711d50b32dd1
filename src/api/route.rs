//! Request paths of the secure port as typed routes (docs/wire-contract.md §1.2-1.4, §10 item 10). Pure: no IO.
//!
//! Segments are matched after percent-decoding, so `%2A` is the wildcard `*` that kube-apiserver's aggregator
//! sends. The shapes follow Kubernetes' request-info parsing, which also decides the 400 "invalid request path".

pub use super::group_versions::CustomVersion;
use super::group_versions::{self, Serves};
use crate::path::{self, decode_segments};

/// What a custom-metrics read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomTarget {
    /// One object's metric (R1, R3, R5).
    Object {
        /// The namespace in the path; `None` for cluster-scoped paths.
        namespace: Option<String>,
        /// The resource as written in the path.
        resource: String,
        /// Object name.
        name: String,
        /// Metric name.
        metric: String,
    },
    /// A metric of every matching object (R2, R4).
    AllObjects {
        /// The namespace in the path; `None` for cluster-scoped paths.
        namespace: Option<String>,
        /// The resource as written in the path.
        resource: String,
        /// Metric name.
        metric: String,
    },
    /// Every metric of one object (a path ending in `/` after the object name).
    ObjectMetrics {
        /// The namespace in the path; `None` for cluster-scoped paths.
        namespace: Option<String>,
        /// The resource as written in the path.
        resource: String,
        /// Object name.
        name: String,
    },
}

/// A route of the Kubernetes API surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRoute {
    /// `/apis`.
    GroupList,
    /// `/apis/<group>`.
    Group(&'static str),
    /// `/apis/custom.metrics.k8s.io/<version>`.
    CustomResources(CustomVersion),
    /// `/apis/external.metrics.k8s.io/v1beta1`.
    ExternalResources,
    /// A custom-metrics read.
    Custom(CustomVersion, CustomTarget),
    /// `/apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>`.
    External {
        /// Namespace.
        namespace: String,
        /// Metric name.
        metric: String,
    },
}

/// Why a path under `/apis` is no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// 404.
    NotFound,
    /// 400 "invalid request path".
    InvalidPath,
}

impl From<path::BadSegment> for RouteError {
    /// A segment that does not decode names nothing.
    fn from(_: path::BadSegment) -> Self {
        RouteError::NotFound
    }
}

/// The wildcard object name.
pub const ALL_OBJECTS: &str = "*";

/// Parses a request path. `Ok(None)` when the path is not under `/apis`.
pub fn parse(path: &str) -> Result<Option<ApiRoute>, RouteError> {
    let Some(rest) = path.strip_prefix("/apis") else {
        return Ok(None);
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Ok(None);
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Some(ApiRoute::GroupList));
    }
    let segments = decode_segments(rest)?;
    let segs: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
    let [group, rest @ ..] = segs.as_slice() else {
        return Err(RouteError::NotFound);
    };
    let Some(group) = group_versions::group(group) else {
        return Err(RouteError::NotFound);
    };
    let [version, tail @ ..] = rest else {
        return Ok(Some(ApiRoute::Group(group)));
    };
    if version.is_empty() && tail.is_empty() {
        return Ok(Some(ApiRoute::Group(group)));
    }
    let Some(served) = group_versions::find(group, version) else {
        return Err(RouteError::NotFound);
    };
    match (served.serves, tail) {
        (Serves::Custom(version), [] | [""]) => Ok(Some(ApiRoute::CustomResources(version))),
        (Serves::Custom(version), _) => parse_custom(tail).map(|target| Some(ApiRoute::Custom(version, target))),
        (Serves::External, [] | [""]) => Ok(Some(ApiRoute::ExternalResources)),
        (Serves::External, ["namespaces", namespace, metric]) if nonempty(&[namespace, metric]) => {
            Ok(Some(ApiRoute::External { namespace: namespace.to_string(), metric: metric.to_string() }))
        }
        (Serves::External, _) => Err(RouteError::NotFound),
    }
}

fn nonempty(parts: &[&&str]) -> bool {
    parts.iter().all(|p| !p.is_empty())
}

fn parse_custom(tail: &[&str]) -> Result<CustomTarget, RouteError> {
    let s = |v: &str| v.to_string();
    let target = match tail {
        // R5: the Namespace object's own metric.
        ["namespaces", ns, "metrics", metric] if nonempty(&[ns, metric]) => {
            CustomTarget::Object { namespace: None, resource: s("namespaces"), name: s(ns), metric: s(metric) }
        }
        // Every metric of a Namespace object.
        ["namespaces", ns, ""] if !ns.is_empty() => {
            CustomTarget::ObjectMetrics { namespace: None, resource: s("namespaces"), name: s(ns) }
        }
        // A namespaced path with too few parts: Kubernetes' request-info rejects it.
        ["namespaces", _, _] => return Err(RouteError::InvalidPath),
        ["namespaces", ns, resource, name, metric] if nonempty(&[ns, resource, name]) => {
            let namespace = Some(s(ns));
            if metric.is_empty() {
                CustomTarget::ObjectMetrics { namespace, resource: s(resource), name: s(name) }
            } else if *name == ALL_OBJECTS {
                CustomTarget::AllObjects { namespace, resource: s(resource), metric: s(metric) }
            } else {
                CustomTarget::Object { namespace, resource: s(resource), name: s(name), metric: s(metric) }
            }
        }
        [resource, name, metric] if nonempty(&[resource, name]) && *resource != "namespaces" => {
            if metric.is_empty() {
                CustomTarget::ObjectMetrics { namespace: None, resource: s(resource), name: s(name) }
            } else if *name == ALL_OBJECTS {
                CustomTarget::AllObjects { namespace: None, resource: s(resource), metric: s(metric) }
            } else {
                CustomTarget::Object { namespace: None, resource: s(resource), name: s(name), metric: s(metric) }
            }
        }
        _ => return Err(RouteError::NotFound),
    };
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::group_versions::{CUSTOM_GROUP, EXTERNAL_GROUP};

    const P: &str = "/apis/custom.metrics.k8s.io/v1beta2";

    fn custom(path: &str) -> Result<Option<ApiRoute>, RouteError> {
        parse(&format!("{P}{path}"))
    }

    fn obj(ns: Option<&str>, resource: &str, name: &str, metric: &str) -> Result<Option<ApiRoute>, RouteError> {
        Ok(Some(ApiRoute::Custom(
            CustomVersion::V1Beta2,
            CustomTarget::Object {
                namespace: ns.map(String::from),
                resource: resource.into(),
                name: name.into(),
                metric: metric.into(),
            },
        )))
    }

    fn all(ns: Option<&str>, resource: &str, metric: &str) -> Result<Option<ApiRoute>, RouteError> {
        Ok(Some(ApiRoute::Custom(
            CustomVersion::V1Beta2,
            CustomTarget::AllObjects {
                namespace: ns.map(String::from),
                resource: resource.into(),
                metric: metric.into(),
            },
        )))
    }

    #[test]
    fn discovery_paths_with_and_without_trailing_slash() {
        assert_eq!(parse("/apis"), Ok(Some(ApiRoute::GroupList)));
        assert_eq!(parse("/apis/"), Ok(Some(ApiRoute::GroupList)));
        assert_eq!(parse("/apis/custom.metrics.k8s.io"), Ok(Some(ApiRoute::Group(CUSTOM_GROUP))));
        assert_eq!(parse("/apis/external.metrics.k8s.io/"), Ok(Some(ApiRoute::Group(EXTERNAL_GROUP))));
        assert_eq!(parse(P), Ok(Some(ApiRoute::CustomResources(CustomVersion::V1Beta2))));
        assert_eq!(
            parse("/apis/custom.metrics.k8s.io/v1beta1/"),
            Ok(Some(ApiRoute::CustomResources(CustomVersion::V1Beta1)))
        );
        assert_eq!(parse("/apis/external.metrics.k8s.io/v1beta1"), Ok(Some(ApiRoute::ExternalResources)));
    }

    #[test]
    fn paths_outside_apis_are_not_api_routes() {
        assert_eq!(parse("/api"), Ok(None));
        assert_eq!(parse("/apisx"), Ok(None));
        assert_eq!(parse("/healthz"), Ok(None));
    }

    #[test]
    fn object_routes_r1_r3_r5() {
        assert_eq!(custom("/namespaces/default/pods/web-1/q"), obj(Some("default"), "pods", "web-1", "q"));
        assert_eq!(custom("/nodes/node-1/temp"), obj(None, "nodes", "node-1", "temp"));
        assert_eq!(custom("/namespaces/default/metrics/work"), obj(None, "namespaces", "default", "work"));
        assert_eq!(
            custom("/namespaces/default/deployments.apps/web/q"),
            obj(Some("default"), "deployments.apps", "web", "q")
        );
    }

    #[test]
    fn wildcard_routes_accept_star_and_its_percent_encoding() {
        assert_eq!(custom("/namespaces/default/pods/*/q"), all(Some("default"), "pods", "q"));
        assert_eq!(custom("/namespaces/default/pods/%2A/q"), all(Some("default"), "pods", "q"));
        assert_eq!(custom("/nodes/%2a/temp"), all(None, "nodes", "temp"));
    }

    #[test]
    fn trailing_slash_after_an_object_lists_its_metrics() {
        assert_eq!(
            custom("/namespaces/default/pods/my-pod/"),
            Ok(Some(ApiRoute::Custom(
                CustomVersion::V1Beta2,
                CustomTarget::ObjectMetrics {
                    namespace: Some("default".into()),
                    resource: "pods".into(),
                    name: "my-pod".into()
                }
            )))
        );
        assert_eq!(
            custom("/namespaces/default/"),
            Ok(Some(ApiRoute::Custom(
                CustomVersion::V1Beta2,
                CustomTarget::ObjectMetrics { namespace: None, resource: "namespaces".into(), name: "default".into() }
            )))
        );
    }

    #[test]
    fn malformed_paths_are_404_or_400_as_in_kubernetes() {
        // apiserver_test.go's table.
        assert_eq!(custom("/nodes/foo"), Err(RouteError::NotFound));
        assert_eq!(custom("/namespaces/ns/pods/bar"), Err(RouteError::NotFound));
        assert_eq!(custom("/blah"), Err(RouteError::NotFound));
        assert_eq!(custom("/namespaces/default/foo"), Err(RouteError::InvalidPath));
        assert_eq!(parse("/apis/custom.metrics.k8s.io/v1"), Err(RouteError::NotFound));
        assert_eq!(parse("/apis/other.k8s.io"), Err(RouteError::NotFound));
        assert_eq!(custom("/namespaces/default/pods/a/b/c"), Err(RouteError::NotFound));
        assert_eq!(custom("/namespaces/default/pods//q"), Err(RouteError::NotFound));
        // External: only namespaces/{ns}/{metric}.
        assert_eq!(parse("/apis/external.metrics.k8s.io/v1beta1/m"), Err(RouteError::NotFound));
        assert_eq!(parse("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns"), Err(RouteError::NotFound));
        assert_eq!(parse("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/a/b"), Err(RouteError::NotFound));
        assert_eq!(
            parse("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m"),
            Ok(Some(ApiRoute::External { namespace: "ns".into(), metric: "m".into() }))
        );
    }
}
