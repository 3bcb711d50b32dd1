//! Request attributes for authorization, computed as kube-apiserver's `RequestInfo` does
//! (kubernetes/apiserver `pkg/endpoints/request/requestinfo.go`, docs/wire-contract.md §6.3), and the attributes of
//! writes (docs/wire-contract.md §10 item 12).
//!
//! `/api/<v>/…` and `/apis/<g>/<v>/…` with at least one segment after the version are resource requests;
//! everything else (`/apis`, `/apis/<g>`, `/apis/<g>/<v>`, `/healthz`, …) is a non-resource request whose verb is
//! the lower-cased method.

use super::UserInfo;
use crate::api::group_versions::{CUSTOM_WRITES, EXTERNAL_WRITES};

/// What a request does to what, and who asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, … for resources; the lower-cased method for non-resource paths.
    pub verb: String,
    /// What is asked for.
    pub target: Target,
}

/// The object of a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A resource request.
    Resource {
        /// Namespace; empty at the cluster scope.
        namespace: String,
        /// API group; empty for the core group.
        group: String,
        /// API version.
        version: String,
        /// Resource (the first path segment after the version and namespace).
        resource: String,
        /// Subresource (the segment after the name).
        subresource: String,
        /// Object name; empty for collections. `*` is a name.
        name: String,
    },
    /// A non-resource request.
    NonResource {
        /// The (percent-decoded) path.
        path: String,
    },
}

const API_PREFIXES: &[&str] = &["api", "apis"];
const GROUPLESS_API_PREFIX: &str = "api";
const SPECIAL_VERBS: &[&str] = &["proxy", "watch"];
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// The attributes of a request, as kube-apiserver computes them. `path` is the request path as sent (it is
/// percent-decoded here, as Go's `URL.Path`); `query` the raw query string.
///
/// `watch` and `fieldSelector=metadata.name=…` are read from the query like Kubernetes does; unlike Kubernetes,
/// other list options are not validated, and a malformed `…/watch` or `…/proxy` path gives a resource request with
/// an empty resource instead of an error.
pub fn request_attributes(method: &http::Method, path: &str, query: Option<&str>, user: UserInfo) -> Attributes {
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned();
    let method_verb = method.as_str().to_lowercase();
    let non_resource = |path: String| Attributes {
        user: user.clone(),
        verb: method_verb.clone(),
        target: Target::NonResource { path },
    };

    let trimmed = path.trim_matches('/');
    let segments: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
    if segments.len() < 3 || !API_PREFIXES.contains(&segments[0]) {
        return non_resource(path);
    }
    let mut rest = &segments[1..];
    let mut group = "";
    if segments[0] != GROUPLESS_API_PREFIX {
        if rest.len() < 3 {
            return non_resource(path);
        }
        group = rest[0];
        rest = &rest[1..];
    }
    let version = rest[0];
    rest = &rest[1..];

    let mut verb = if SPECIAL_VERBS.contains(&rest[0]) {
        let verb = rest[0];
        rest = &rest[1..];
        verb.to_string()
    } else {
        match *method {
            http::Method::POST => "create",
            http::Method::GET | http::Method::HEAD => "get",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "",
        }
        .to_string()
    };

    let mut namespace = "";
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = rest[1];
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }

    let resource = rest.first().copied().unwrap_or("");
    let mut name = rest.get(1).copied().unwrap_or("").to_string();
    let subresource = if verb != "proxy" { rest.get(2).copied().unwrap_or("") } else { "" };

    if name.is_empty() && verb == "get" {
        let options = ListOptions::from_query(query);
        verb = if options.watch { "watch" } else { "list" }.to_string();
        if let Some(selected) = options.name {
            name = selected;
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection".to_string();
    }

    Attributes {
        user,
        verb,
        target: Target::Resource {
            namespace: namespace.to_string(),
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            name,
        },
    }
}

/// The list options that change a request's attributes.
struct ListOptions {
    watch: bool,
    /// The name required by `fieldSelector=metadata.name=…`.
    name: Option<String>,
}

impl ListOptions {
    fn from_query(query: Option<&str>) -> Self {
        let mut watch = None;
        let mut field_selector = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "watch" if watch.is_none() => watch = Some(value.into_owned()),
                "fieldSelector" if field_selector.is_none() => field_selector = Some(value.into_owned()),
                _ => {}
            }
        }
        // Kubernetes: only absence, "0" and "false" (any case) are false.
        let watch = watch.is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
        let name = field_selector.as_deref().and_then(exact_name).filter(|n| is_path_segment_name(n));
        ListOptions { watch, name }
    }
}

/// The value of a `metadata.name=` or `metadata.name==` term of a field selector. Selectors with escapes are not
/// interpreted (no name).
fn exact_name(selector: &str) -> Option<String> {
    if selector.contains('\\') {
        return None;
    }
    selector.split(',').find_map(|term| {
        if term.contains("!=") {
            return None;
        }
        let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        (field == "metadata.name").then(|| value.to_string())
    })
}

/// Kubernetes' `IsPathSegmentName`: not `.` or `..`, no `/` or `%`.
fn is_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// The attributes of a custom-metric write: verb `create` on the read's resource in `custom.metrics.k8s.io`
/// (`v1beta2`): resource = the normalised group-qualified resource (`pods`, `deployments.apps`), subresource =
/// metric, name = object name, namespace (empty for cluster-scoped objects). A metric on a Namespace object
/// (`resource` = `namespaces`) takes the attributes of its read `namespaces/{name}/metrics/{metric}`: namespace =
/// the namespace's name, resource `metrics`, name = metric.
pub fn custom_write_attributes(
    user: UserInfo,
    resource: &str,
    namespace: &str,
    name: &str,
    metric: &str,
) -> Attributes {
    let target = if resource == "namespaces" {
        Target::Resource {
            namespace: name.to_string(),
            group: CUSTOM_WRITES.group.to_string(),
            version: CUSTOM_WRITES.version.to_string(),
            resource: "metrics".to_string(),
            subresource: String::new(),
            name: metric.to_string(),
        }
    } else {
        Target::Resource {
            namespace: namespace.to_string(),
            group: CUSTOM_WRITES.group.to_string(),
            version: CUSTOM_WRITES.version.to_string(),
            resource: resource.to_string(),
            subresource: metric.to_string(),
            name: name.to_string(),
        }
    };
    Attributes { user, verb: "create".to_string(), target }
}

/// The attributes of an external-metric write: verb `create`, group `external.metrics.k8s.io` (`v1beta1`),
/// resource = metric, namespace, no name.
pub fn external_write_attributes(user: UserInfo, namespace: &str, metric: &str) -> Attributes {
    Attributes {
        user,
        verb: "create".to_string(),
        target: Target::Resource {
            namespace: namespace.to_string(),
            group: EXTERNAL_WRITES.group.to_string(),
            version: EXTERNAL_WRITES.version.to_string(),
            resource: metric.to_string(),
            subresource: String::new(),
            name: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn alice() -> UserInfo {
        UserInfo { name: "alice".into(), ..UserInfo::default() }
    }

    /// (verb, namespace, group, version, resource, subresource, name)
    type Expected<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

    fn resource(e: Expected<'_>) -> (String, Target) {
        (
            e.0.to_string(),
            Target::Resource {
                namespace: e.1.into(),
                group: e.2.into(),
                version: e.3.into(),
                resource: e.4.into(),
                subresource: e.5.into(),
                name: e.6.into(),
            },
        )
    }

    #[test]
    fn resource_requests_follow_kubernetes_request_info() {
        const CM: &str = "custom.metrics.k8s.io";
        const EM: &str = "external.metrics.k8s.io";
        let cases: &[(Method, &str, Option<&str>, Expected<'_>)] = &[
            // The examples of docs/wire-contract.md §3.2.
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/q",
                None,
                ("get", "default", CM, "v1beta2", "pods", "q", "*"),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/q",
                None,
                ("get", "default", CM, "v1beta2", "pods", "q", "web-1"),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/q",
                None,
                ("get", "", CM, "v1beta1", "nodes", "q", "n1"),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/metrics/q",
                None,
                ("get", "default", CM, "v1beta2", "metrics", "", "q"),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/web/q",
                Some("labelSelector=a%3Db"),
                ("get", "default", CM, "v1beta2", "deployments.apps", "q", "web"),
            ),
            (
                Method::GET,
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth",
                Some("labelSelector=q%3Dorders"),
                ("list", "default", EM, "v1beta1", "queue_depth", "", ""),
            ),
            // Namespaces: the namespace itself, its subresources, collections.
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default",
                None,
                ("get", "default", CM, "v1beta2", "namespaces", "", "default"),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/status",
                None,
                ("get", "default", CM, "v1beta2", "namespaces", "status", "default"),
            ),
            (
                Method::PUT,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/finalize",
                None,
                ("update", "default", CM, "v1beta2", "namespaces", "finalize", "default"),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces",
                None,
                ("list", "", CM, "v1beta2", "namespaces", "", ""),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods",
                None,
                ("list", "default", CM, "v1beta2", "pods", "", ""),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/pods",
                None,
                ("list", "", CM, "v1beta2", "pods", "", ""),
            ),
            // Trailing slash, extra segments and the core group.
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/",
                None,
                ("get", "default", CM, "v1beta2", "pods", "", "web-1"),
            ),
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/p/q/extra",
                None,
                ("get", "ns", CM, "v1beta2", "pods", "q", "p"),
            ),
            (Method::GET, "/api/v1/namespaces/default/pods/p", None, ("get", "default", "", "v1", "pods", "", "p")),
            (Method::GET, "/api/v1/nodes", None, ("list", "", "", "v1", "nodes", "", "")),
            // Verbs by method and query.
            (Method::HEAD, "/apis/g/v1/things/a", None, ("get", "", "g", "v1", "things", "", "a")),
            (Method::POST, "/apis/g/v1/namespaces/ns/things", None, ("create", "ns", "g", "v1", "things", "", "")),
            (Method::PATCH, "/apis/g/v1/namespaces/ns/things/a", None, ("patch", "ns", "g", "v1", "things", "", "a")),
            (Method::DELETE, "/apis/g/v1/namespaces/ns/things/a", None, ("delete", "ns", "g", "v1", "things", "", "a")),
            (
                Method::DELETE,
                "/apis/g/v1/namespaces/ns/things",
                None,
                ("deletecollection", "ns", "g", "v1", "things", "", ""),
            ),
            (Method::OPTIONS, "/apis/g/v1/things/a", None, ("", "", "g", "v1", "things", "", "a")),
            (Method::GET, "/apis/g/v1/things", Some("watch=true"), ("watch", "", "g", "v1", "things", "", "")),
            (Method::GET, "/apis/g/v1/things", Some("watch="), ("watch", "", "g", "v1", "things", "", "")),
            (Method::GET, "/apis/g/v1/things", Some("watch=FALSE"), ("list", "", "g", "v1", "things", "", "")),
            (Method::GET, "/apis/g/v1/things", Some("watch=0&watch=1"), ("list", "", "g", "v1", "things", "", "")),
            (Method::GET, "/apis/g/v1/things/a", Some("watch=true"), ("get", "", "g", "v1", "things", "", "a")),
            (
                Method::GET,
                "/apis/g/v1/namespaces/ns/things",
                Some("fieldSelector=metadata.name%3Dx"),
                ("list", "ns", "g", "v1", "things", "", "x"),
            ),
            (
                Method::GET,
                "/apis/g/v1/things",
                Some("fieldSelector=a%3Db,metadata.name%3D%3Dy"),
                ("list", "", "g", "v1", "things", "", "y"),
            ),
            (
                Method::GET,
                "/apis/g/v1/things",
                Some("fieldSelector=metadata.name!%3Dx"),
                ("list", "", "g", "v1", "things", "", ""),
            ),
            (
                Method::GET,
                "/apis/g/v1/things",
                Some("fieldSelector=metadata.name%3Da%2Fb"),
                ("list", "", "g", "v1", "things", "", ""),
            ),
            // Verbs in the path.
            (Method::GET, "/apis/g/v1/watch/namespaces/ns/things", None, ("watch", "ns", "g", "v1", "things", "", "")),
            (
                Method::GET,
                "/apis/g/v1/proxy/namespaces/ns/things/a/sub",
                None,
                ("proxy", "ns", "g", "v1", "things", "", "a"),
            ),
            // Percent-encoded path segments are decoded.
            (
                Method::GET,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/q",
                None,
                ("get", "default", CM, "v1beta2", "pods", "q", "*"),
            ),
        ];
        for (method, path, query, expected) in cases {
            let attributes = request_attributes(method, path, *query, alice());
            assert_eq!((attributes.verb, attributes.target), resource(*expected), "{method} {path} {query:?}");
            assert_eq!(attributes.user, alice());
        }
    }

    #[test]
    fn other_paths_are_non_resource_with_the_lower_cased_method() {
        let cases = [
            (Method::GET, "/apis", "get"),
            (Method::GET, "/apis/custom.metrics.k8s.io", "get"),
            (Method::GET, "/apis/custom.metrics.k8s.io/v1beta2", "get"),
            (Method::GET, "/apis/custom.metrics.k8s.io/v1beta2/", "get"),
            (Method::GET, "/api", "get"),
            (Method::GET, "/api/v1", "get"),
            (Method::GET, "/healthz", "get"),
            (Method::GET, "/healthz/ping", "get"),
            (Method::GET, "/openapi/v3/apis/custom.metrics.k8s.io/v1beta2", "get"),
            (Method::GET, "/", "get"),
            (Method::POST, "/metrics", "post"),
            (Method::PUT, "/write-metrics/namespaces/default/pods/p/q", "put"),
        ];
        for (method, path, verb) in cases {
            let attributes = request_attributes(&method, path, None, alice());
            assert_eq!(attributes.verb, verb, "{path}");
            assert_eq!(attributes.target, Target::NonResource { path: path.to_string() }, "{path}");
        }
    }

    #[test]
    fn write_attributes_match_the_reads() {
        let custom = custom_write_attributes(alice(), "deployments.apps", "default", "web", "q");
        let read = request_attributes(
            &Method::POST,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/web/q",
            None,
            alice(),
        );
        assert_eq!(custom, read);

        let node = custom_write_attributes(alice(), "nodes", "", "n1", "q");
        assert_eq!(
            node,
            request_attributes(&Method::POST, "/apis/custom.metrics.k8s.io/v1beta2/nodes/n1/q", None, alice())
        );

        let namespace = custom_write_attributes(alice(), "namespaces", "", "team-a", "q");
        let read = request_attributes(
            &Method::POST,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/metrics/q",
            None,
            alice(),
        );
        assert_eq!(namespace, read);

        let external = external_write_attributes(alice(), "default", "queue_depth");
        let read = request_attributes(
            &Method::POST,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth",
            None,
            alice(),
        );
        assert_eq!(external, read);
    }
}
