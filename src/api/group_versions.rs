//! The served group-versions, listed once (docs/architecture.md §7): routes, discovery, the OpenAPI documents,
//! the wire payloads' `apiVersion` and the authorization attributes of writes all read [`SERVED`]. Pure: no IO.

/// `custom.metrics.k8s.io`.
pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
/// `external.metrics.k8s.io`.
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";

/// The served groups, in the order of `GET /apis`.
pub const GROUPS: &[&str] = &[CUSTOM_GROUP, EXTERNAL_GROUP];

/// The custom-metrics versions, which differ in the shape of a `MetricValue` (docs/wire-contract.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomVersion {
    /// `v1beta1`: `metricName` and a top-level `selector`.
    V1Beta1,
    /// `v1beta2`: `metric: {name, selector}`.
    V1Beta2,
}

impl CustomVersion {
    /// The version string.
    pub fn as_str(self) -> &'static str {
        self.group_version().version
    }

    /// Its entry in [`SERVED`].
    pub fn group_version(self) -> &'static GroupVersion {
        match self {
            CustomVersion::V1Beta1 => &CUSTOM_V1BETA1,
            CustomVersion::V1Beta2 => &CUSTOM_V1BETA2,
        }
    }
}

/// Which API a group-version serves: what its routes read and what its lists hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Metrics of Kubernetes objects (`MetricValueList`), in one of the custom-metrics shapes.
    Custom(CustomVersion),
    /// Metrics of no object (`ExternalMetricValueList`).
    External,
}

/// One served group-version.
#[derive(PartialEq, Eq)]
pub struct GroupVersion {
    /// The API group.
    pub group: &'static str,
    /// The version.
    pub version: &'static str,
    /// `<group>/<version>`: the `apiVersion` of its payloads and the `groupVersion` of its discovery documents.
    pub api_version: &'static str,
    /// What it serves.
    pub serves: Serves,
    /// The `kind` of its list responses.
    pub list_kind: &'static str,
    /// Its OpenAPI 3.0 document as served at `/openapi/v3/apis/<group>/<version>` (docs/wire-contract.md §6.4).
    pub openapi_v3: &'static str,
}

impl std::fmt::Debug for GroupVersion {
    /// `<group>/<version>`: the embedded OpenAPI document is too long to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.api_version)
    }
}

/// custom.metrics.k8s.io/v1beta2, the preferred custom-metrics version.
pub const CUSTOM_V1BETA2: GroupVersion = GroupVersion {
    group: CUSTOM_GROUP,
    version: "v1beta2",
    api_version: "custom.metrics.k8s.io/v1beta2",
    serves: Serves::Custom(CustomVersion::V1Beta2),
    list_kind: "MetricValueList",
    openapi_v3: include_str!("openapi/v3/custom.metrics.k8s.io-v1beta2.json"),
};

/// custom.metrics.k8s.io/v1beta1.
pub const CUSTOM_V1BETA1: GroupVersion = GroupVersion {
    group: CUSTOM_GROUP,
    version: "v1beta1",
    api_version: "custom.metrics.k8s.io/v1beta1",
    serves: Serves::Custom(CustomVersion::V1Beta1),
    list_kind: "MetricValueList",
    openapi_v3: include_str!("openapi/v3/custom.metrics.k8s.io-v1beta1.json"),
};

/// external.metrics.k8s.io/v1beta1, the only external-metrics version.
pub const EXTERNAL_V1BETA1: GroupVersion = GroupVersion {
    group: EXTERNAL_GROUP,
    version: "v1beta1",
    api_version: "external.metrics.k8s.io/v1beta1",
    serves: Serves::External,
    list_kind: "ExternalMetricValueList",
    openapi_v3: include_str!("openapi/v3/external.metrics.k8s.io-v1beta1.json"),
};

/// Every served group-version. Within a group, in order of preference: the first is the group's preferred
/// version, and discovery lists them in this order (as Kubernetes lists versions by priority).
pub const SERVED: &[&GroupVersion] = &[&CUSTOM_V1BETA2, &CUSTOM_V1BETA1, &EXTERNAL_V1BETA1];

/// The group-version named in the authorization attributes of a custom-metric write (docs/wire-contract.md §10
/// item 12): the preferred custom-metrics version.
pub const CUSTOM_WRITES: &GroupVersion = &CUSTOM_V1BETA2;
/// The group-version named in the authorization attributes of an external-metric write.
pub const EXTERNAL_WRITES: &GroupVersion = &EXTERNAL_V1BETA1;

/// The served group-version `group`/`version`, if any.
pub fn find(group: &str, version: &str) -> Option<&'static GroupVersion> {
    SERVED.iter().copied().find(|gv| gv.group == group && gv.version == version)
}

/// The served group named `name`, as a `'static` string.
pub fn group(name: &str) -> Option<&'static str> {
    GROUPS.iter().copied().find(|group| *group == name)
}

/// The served versions of `group`, preferred first.
pub fn versions_of(group: &str) -> impl Iterator<Item = &'static GroupVersion> + '_ {
    SERVED.iter().copied().filter(move |gv| gv.group == group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_is_group_slash_version() {
        for gv in SERVED {
            assert_eq!(gv.api_version, format!("{}/{}", gv.group, gv.version));
        }
    }

    #[test]
    fn every_group_is_served_and_every_group_version_is_in_a_group() {
        for group in GROUPS {
            assert!(versions_of(group).next().is_some(), "{group} has no version");
        }
        for gv in SERVED {
            assert!(GROUPS.contains(&gv.group), "{}", gv.api_version);
            assert_eq!(find(gv.group, gv.version), Some(*gv));
        }
        assert_eq!(find(CUSTOM_GROUP, "v1"), None);
        assert_eq!(find("metrics.k8s.io", "v1beta1"), None);
        assert_eq!(group("custom.metrics.k8s.io"), Some(CUSTOM_GROUP));
        assert_eq!(group("metrics.k8s.io"), None);
    }

    #[test]
    fn the_served_versions_are_the_documented_ones_preferred_first() {
        let listed: Vec<&str> = SERVED.iter().map(|gv| gv.api_version).collect();
        assert_eq!(
            listed,
            ["custom.metrics.k8s.io/v1beta2", "custom.metrics.k8s.io/v1beta1", "external.metrics.k8s.io/v1beta1"]
        );
        assert_eq!(versions_of(CUSTOM_GROUP).next(), Some(CUSTOM_WRITES));
        assert_eq!(versions_of(EXTERNAL_GROUP).next(), Some(EXTERNAL_WRITES));
    }

    #[test]
    fn custom_versions_name_their_own_entry() {
        for version in [CustomVersion::V1Beta1, CustomVersion::V1Beta2] {
            let gv = version.group_version();
            assert_eq!(gv.serves, Serves::Custom(version));
            assert_eq!((gv.group, gv.version), (CUSTOM_GROUP, version.as_str()));
        }
        for gv in SERVED {
            let kind = match gv.serves {
                Serves::Custom(version) => {
                    assert_eq!(version.group_version(), *gv);
                    "MetricValueList"
                }
                Serves::External => "ExternalMetricValueList",
            };
            assert_eq!(gv.list_kind, kind, "{}", gv.api_version);
        }
    }
}
