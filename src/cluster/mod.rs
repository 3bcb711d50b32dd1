//! What the rest of the crate needs from a cluster, as small traits, with their standalone implementations.
//!
//! - [`ResourceMapper`]: turns the resource named in a URL (`pods`, `pod`, `Pod`, `deployments.apps`) into the
//!   resource's identity (group, version, plural, kind, scope).
//! - [`LabelIndex`]: answers which objects of a resource match a label selector.
//!
//! Standalone mode (no cluster) uses the built-in table of [`mapper::BuiltinMapper`] and
//! [`StandaloneLabelIndex`], which knows no object labels.

pub mod auth_config;
pub mod certificates;
pub mod client;
pub mod discovery;
#[cfg(any(test, feature = "test-support"))]
pub mod fake_apiserver;
pub mod flags;
pub mod label_index;
pub mod mapper;
pub mod reviews;

use std::sync::Arc;

use async_trait::async_trait;

use crate::selector::Selector;

pub use mapper::BuiltinMapper;

/// The identity of a Kubernetes resource type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Preferred version of the group, e.g. `v1`.
    pub version: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Singular resource name, e.g. `deployment`.
    pub singular: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Whether objects of this resource live in a namespace.
    pub namespaced: bool,
}

impl ResourceInfo {
    /// `GroupResource.String()` of Kubernetes: `pods` for the core group, `deployments.apps` otherwise. This is the
    /// resource's name in the store, in discovery and in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// `describedObject.apiVersion` as the Go reference writes it: `group/version`, hence `/v1` for the core group.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// Why a resource could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapperError {
    /// No resource of that name is known.
    #[error("the server doesn't have a resource type \"{0}\"")]
    UnknownResource(String),
}

/// Resolves resource names as a URL or a write names them.
#[async_trait]
pub trait ResourceMapper: Send + Sync + 'static {
    /// Resolves `name` (plural, singular or kind, in any case, optionally `.group`-qualified, where the group may
    /// be given as a prefix of the full group name, e.g. `storageclasses.storage`).
    async fn resolve(&self, name: &str) -> Result<Arc<ResourceInfo>, MapperError>;
}

/// Why a label query could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelIndexError {
    /// Without a cluster, object labels are unknown.
    #[error(
        "label selectors on objects need cluster mode: this adapter runs with --standalone and does not know the labels of {resource}; omit labelSelector to get every stored object"
    )]
    NeedsCluster {
        /// The group-qualified resource asked for.
        resource: String,
    },
    /// The watch of the resource could not list it from kube-apiserver (for example 403 Forbidden: the adapter's
    /// RBAC does not grant list and watch on it).
    #[error("the labels of {resource} are unknown: listing {resource} from kube-apiserver failed: {cause}")]
    WatchFailed {
        /// The group-qualified resource asked for.
        resource: String,
        /// The watch's last error.
        cause: String,
    },
    /// The watch of the resource had not completed its initial list within the allowed time.
    #[error(
        "the labels of {resource} are not known yet: its initial list from kube-apiserver took longer than {timeout_ms} ms"
    )]
    SyncTimeout {
        /// The group-qualified resource asked for.
        resource: String,
        /// How long the request waited, in milliseconds.
        timeout_ms: u64,
    },
}

/// Which objects match a label selector.
#[async_trait]
pub trait LabelIndex: Send + Sync + 'static {
    /// Names of the objects of `resource` in `namespace` (empty for cluster-scoped) whose labels match
    /// `selector`, or `None` when every stored object is to be returned (an empty selector in standalone mode).
    async fn matching_objects(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        selector: &Selector,
    ) -> Result<Option<Vec<String>>, LabelIndexError>;
}

/// The label index of standalone mode: it knows no labels, so only the empty selector can be answered.
#[derive(Debug, Default, Clone, Copy)]
pub struct StandaloneLabelIndex;

#[async_trait]
impl LabelIndex for StandaloneLabelIndex {
    async fn matching_objects(
        &self,
        resource: &ResourceInfo,
        _namespace: &str,
        selector: &Selector,
    ) -> Result<Option<Vec<String>>, LabelIndexError> {
        if selector.is_empty() {
            return Ok(None);
        }
        Err(LabelIndexError::NeedsCluster { resource: resource.group_resource() })
    }
}
