//! Resource-name resolution: the pure name-matching rules and the built-in table used in standalone mode.
//!
//! Matching follows kube-apiserver's REST mapper: the name is split at its first dot into resource and group;
//! the resource part matches a plural, singular or kind, case-insensitively; the group matches exactly, or as a
//! prefix of the full group (`storage` for `storage.k8s.io`); with several matches, the earlier group in discovery
//! order wins (the core group first). Short names (`po`, `deploy`) are not accepted, as in Kubernetes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{MapperError, ResourceInfo, ResourceMapper};

/// An index from resource names to resources, in discovery order.
#[derive(Debug, Default, Clone)]
pub struct ResourceTable {
    /// Lower-cased plural, singular and kind -> resources with that name, in discovery order.
    by_name: HashMap<String, Vec<Arc<ResourceInfo>>>,
}

impl ResourceTable {
    /// Builds the index from resources listed in discovery order.
    pub fn new(resources: impl IntoIterator<Item = ResourceInfo>) -> Self {
        let mut by_name: HashMap<String, Vec<Arc<ResourceInfo>>> = HashMap::new();
        for info in resources {
            let info = Arc::new(info);
            let mut names = vec![info.plural.to_lowercase(), info.singular.to_lowercase(), info.kind.to_lowercase()];
            names.sort();
            names.dedup();
            for name in names {
                by_name.entry(name).or_default().push(Arc::clone(&info));
            }
        }
        ResourceTable { by_name }
    }

    /// Resolves a name as described in the module documentation.
    pub fn resolve(&self, name: &str) -> Result<Arc<ResourceInfo>, MapperError> {
        let unknown = || MapperError::UnknownResource(name.to_string());
        let (resource, group) = match name.split_once('.') {
            Some((resource, group)) => (resource, Some(lowercase(group))),
            None => (name, None),
        };
        let candidates = self.by_name.get(lowercase(resource).as_ref()).ok_or_else(unknown)?;
        let found = match group.as_deref() {
            None => candidates.first(),
            Some(group) => candidates.iter().find(|r| r.group == group).or_else(|| {
                candidates.iter().find(|r| r.group.strip_prefix(group).is_some_and(|rest| rest.starts_with('.')))
            }),
        };
        found.cloned().ok_or_else(unknown)
    }
}

/// `text` in lower case, without a copy when it already is (as resource names nearly always are).
fn lowercase(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_uppercase) { Cow::Owned(text.to_lowercase()) } else { Cow::Borrowed(text) }
}

/// The built-in Kubernetes resources, for standalone mode.
#[derive(Debug, Clone)]
pub struct BuiltinMapper {
    table: ResourceTable,
}

impl Default for BuiltinMapper {
    fn default() -> Self {
        BuiltinMapper { table: ResourceTable::new(builtin_resources()) }
    }
}

#[async_trait]
impl ResourceMapper for BuiltinMapper {
    async fn resolve(&self, name: &str) -> Result<Arc<ResourceInfo>, MapperError> {
        self.table.resolve(name)
    }
}

/// Kubernetes' built-in resources that metrics are attached to, in discovery order (core group first).
/// Columns: group, version, plural, singular, kind, namespaced.
const BUILTIN: &[(&str, &str, &str, &str, &str, bool)] = &[
    ("", "v1", "pods", "pod", "Pod", true),
    ("", "v1", "services", "service", "Service", true),
    ("", "v1", "nodes", "node", "Node", false),
    ("", "v1", "namespaces", "namespace", "Namespace", false),
    ("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true),
    ("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false),
    ("", "v1", "configmaps", "configmap", "ConfigMap", true),
    ("", "v1", "secrets", "secret", "Secret", true),
    ("", "v1", "endpoints", "endpoints", "Endpoints", true),
    ("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true),
    ("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", true),
    ("", "v1", "events", "event", "Event", true),
    ("", "v1", "limitranges", "limitrange", "LimitRange", true),
    ("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", true),
    ("", "v1", "podtemplates", "podtemplate", "PodTemplate", true),
    ("apps", "v1", "deployments", "deployment", "Deployment", true),
    ("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true),
    ("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true),
    ("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true),
    ("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true),
    ("batch", "v1", "jobs", "job", "Job", true),
    ("batch", "v1", "cronjobs", "cronjob", "CronJob", true),
    ("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true),
    ("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", true),
    ("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", true),
    ("networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", false),
    ("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true),
    ("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", false),
    ("storage.k8s.io", "v1", "volumeattachments", "volumeattachment", "VolumeAttachment", false),
    ("storage.k8s.io", "v1", "csidrivers", "csidriver", "CSIDriver", false),
    ("storage.k8s.io", "v1", "csinodes", "csinode", "CSINode", false),
    ("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true),
    ("coordination.k8s.io", "v1", "leases", "lease", "Lease", true),
    ("events.k8s.io", "v1", "events", "event", "Event", true),
    ("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", false),
    ("node.k8s.io", "v1", "runtimeclasses", "runtimeclass", "RuntimeClass", false),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
    ),
    ("apiregistration.k8s.io", "v1", "apiservices", "apiservice", "APIService", false),
    (
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "certificatesigningrequest",
        "CertificateSigningRequest",
        false,
    ),
];

fn builtin_resources() -> impl Iterator<Item = ResourceInfo> {
    BUILTIN.iter().map(|&(group, version, plural, singular, kind, namespaced)| ResourceInfo {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        singular: singular.to_string(),
        kind: kind.to_string(),
        namespaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(name: &str) -> Result<(String, String, bool), MapperError> {
        let table = ResourceTable::new(builtin_resources());
        table.resolve(name).map(|r| (r.group_resource(), r.kind.clone(), r.namespaced))
    }

    #[test]
    fn plural_singular_and_kind_in_any_case_resolve_to_the_same_resource() {
        // `pods.` names the core group explicitly, as Go's ParseGroupResource reads it.
        for name in ["pods", "pod", "Pod", "PODS", "pods."] {
            assert_eq!(resolve(name), Ok(("pods".into(), "Pod".into(), true)), "{name}");
        }
    }

    #[test]
    fn group_qualified_names_and_group_prefixes_resolve() {
        assert_eq!(resolve("deployments.apps").map(|r| r.0), Ok("deployments.apps".into()));
        assert_eq!(resolve("deployment.apps").map(|r| r.0), Ok("deployments.apps".into()));
        assert_eq!(resolve("deployments").map(|r| r.0), Ok("deployments.apps".into()));
        assert_eq!(resolve("storageclasses.storage").map(|r| r.0), Ok("storageclasses.storage.k8s.io".into()));
        assert_eq!(resolve("ingresses.networking.k8s.io").map(|r| r.0), Ok("ingresses.networking.k8s.io".into()));
        // A prefix must end at a dot of the full group name.
        assert!(resolve("storageclasses.stor").is_err());
    }

    #[test]
    fn the_core_group_wins_over_later_groups() {
        assert_eq!(resolve("events").map(|r| r.0), Ok("events".into()));
        assert_eq!(resolve("events.events.k8s.io").map(|r| r.0), Ok("events.events.k8s.io".into()));
    }

    #[test]
    fn scope_and_api_version_follow_the_resource() {
        let table = ResourceTable::new(builtin_resources());
        let nodes = table.resolve("nodes").unwrap();
        assert!(!nodes.namespaced);
        assert_eq!(nodes.api_version(), "/v1");
        assert_eq!(table.resolve("namespace").unwrap().kind, "Namespace");
        assert_eq!(table.resolve("deploy.apps").map(|_| ()), Err(MapperError::UnknownResource("deploy.apps".into())));
    }

    #[test]
    fn short_names_and_unknown_resources_are_rejected() {
        for name in ["po", "deploy", "foos", "widgets.example.com", ""] {
            assert_eq!(resolve(name), Err(MapperError::UnknownResource(name.into())), "{name}");
        }
    }
}
