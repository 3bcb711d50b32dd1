//! The authentication configuration: CA bundles for client certificates and for the front proxy (kube-apiserver's
//! aggregator), the front proxy's allowed names and header names. It comes from flags and from ConfigMap
//! `kube-system/extension-apiserver-authentication` (docs/wire-contract.md §6.2); flags win.
//!
//! Each built configuration gets a fresh generation number, so that per-connection verification results
//! ([`super::ClientCertChain`]) are recomputed when the configuration changes (a rotated CA).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor};

pub use super::flags::AuthenticationFlags;

/// ConfigMap key of the client CA bundle.
pub const CM_CLIENT_CA: &str = "client-ca-file";
/// ConfigMap key of the front-proxy CA bundle.
pub const CM_REQUESTHEADER_CA: &str = "requestheader-client-ca-file";
/// ConfigMap key of the allowed front-proxy certificate common names (JSON array).
pub const CM_ALLOWED_NAMES: &str = "requestheader-allowed-names";
/// ConfigMap key of the user-name headers (JSON array).
pub const CM_USERNAME_HEADERS: &str = "requestheader-username-headers";
/// ConfigMap key of the group headers (JSON array).
pub const CM_GROUP_HEADERS: &str = "requestheader-group-headers";
/// ConfigMap key of the extra-attribute header prefixes (JSON array).
pub const CM_EXTRA_PREFIXES: &str = "requestheader-extra-headers-prefix";
/// ConfigMap key of the uid headers (JSON array).
pub const CM_UID_HEADERS: &str = "requestheader-uid-headers";

const DEFAULT_USERNAME_HEADERS: &[&str] = &["x-remote-user"];
const DEFAULT_GROUP_HEADERS: &[&str] = &["x-remote-group"];
const DEFAULT_EXTRA_PREFIXES: &[&str] = &["x-remote-extra-"];

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Why an authentication configuration could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A CA file named by a flag cannot be read.
    #[error("cannot read {flag} {path}: {source}")]
    ReadFile {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A CA bundle is not PEM or holds no usable certificate.
    #[error("invalid CA bundle in {origin}: {reason}")]
    BadCaBundle {
        /// Where the bundle came from (flag and file, or ConfigMap key).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A ConfigMap list value is not a JSON array of strings.
    #[error("ConfigMap kube-system/extension-apiserver-authentication key {key}: {reason}")]
    BadConfigMapValue {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A header name is empty or not a valid HTTP header name.
    #[error("invalid header name {value:?} in {setting}")]
    BadHeaderName {
        /// The flag or ConfigMap key.
        setting: &'static str,
        /// The value.
        value: String,
    },
    /// The ConfigMap could not be read (and `--authentication-tolerate-lookup-failure` is not set).
    #[error(
        "cannot read ConfigMap kube-system/extension-apiserver-authentication: {source}; the adapter's service account needs Role extension-apiserver-authentication-reader in kube-system, or pass --authentication-tolerate-lookup-failure or --authentication-skip-lookup"
    )]
    Lookup {
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A set of trusted CA certificates.
#[derive(Clone)]
pub struct CaBundle {
    anchors: Vec<TrustAnchor<'static>>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle").field("certificates", &self.anchors.len()).finish()
    }
}

impl CaBundle {
    /// Parses a PEM bundle; `origin` names it in errors. At least one certificate is required, as in Kubernetes.
    pub fn from_pem(pem: &[u8], origin: &str) -> Result<Self, AuthConfigError> {
        let bad = |reason: String| AuthConfigError::BadCaBundle { origin: origin.to_string(), reason };
        let mut anchors = Vec::new();
        for der in CertificateDer::pem_slice_iter(pem) {
            let der = der.map_err(|e| bad(e.to_string()))?;
            let anchor = webpki::anchor_from_trusted_cert(&der).map_err(|e| bad(e.to_string()))?;
            anchors.push(anchor.to_owned());
        }
        if anchors.is_empty() {
            return Err(bad("no PEM certificate found".to_string()));
        }
        Ok(CaBundle { anchors })
    }

    fn from_file(flag: &'static str, path: &Path) -> Result<Self, AuthConfigError> {
        let pem = std::fs::read(path).map_err(|source| AuthConfigError::ReadFile {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&pem, &format!("{flag} {}", path.display()))
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }
}

/// How the front proxy (kube-apiserver's aggregator) is recognised and how its headers are read.
#[derive(Debug, Clone)]
pub struct RequestHeaderConfig {
    /// CA bundle the front proxy's client certificate must chain to.
    pub ca: CaBundle,
    /// Allowed common names of that certificate; empty = any.
    pub allowed_names: Vec<String>,
    /// Headers holding the user name; the first non-empty one wins.
    pub username_headers: Vec<HeaderName>,
    /// Headers holding the uid; the first non-empty one wins.
    pub uid_headers: Vec<HeaderName>,
    /// Headers holding the groups; every value of every one is a group.
    pub group_headers: Vec<HeaderName>,
    /// Lower-cased header-name prefixes of extra attributes.
    pub extra_headers_prefixes: Vec<String>,
}

/// The authentication configuration in force.
#[derive(Debug, Clone)]
pub struct AuthenticationConfig {
    /// CA bundle for x509 client-certificate authentication (user = CN, groups = O).
    pub client_ca: Option<CaBundle>,
    /// Front-proxy authentication.
    pub request_header: Option<RequestHeaderConfig>,
    generation: u64,
}

impl Default for AuthenticationConfig {
    fn default() -> Self {
        AuthenticationConfig::new(None, None)
    }
}

impl AuthenticationConfig {
    /// A configuration with a fresh generation number.
    pub fn new(client_ca: Option<CaBundle>, request_header: Option<RequestHeaderConfig>) -> Self {
        AuthenticationConfig { client_ca, request_header, generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed) }
    }

    /// A number that differs between any two built configurations.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Builds the configuration from the flags and the ConfigMap's data (if it was read). Flags win: a CA file
    /// given by flag replaces the ConfigMap's bundle. The front-proxy settings (allowed names, header names) are
    /// taken from the flags when given, else from the ConfigMap when the front-proxy CA also came from it, else
    /// the defaults (`x-remote-user`, `x-remote-group`, `x-remote-extra-`, no uid header, any name).
    pub fn from_flags_and_configmap(
        flags: &AuthenticationFlags,
        configmap_data: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, AuthConfigError> {
        let cm_value = |key: &str| configmap_data.and_then(|d| d.get(key)).filter(|v| !v.trim().is_empty());

        let client_ca = match (&flags.client_ca_file, cm_value(CM_CLIENT_CA)) {
            (Some(path), _) => Some(CaBundle::from_file("--client-ca-file", path)?),
            (None, Some(pem)) => Some(CaBundle::from_pem(pem.as_bytes(), &format!("ConfigMap key {CM_CLIENT_CA}"))?),
            (None, None) => None,
        };

        let (ca, from_configmap) = match (&flags.requestheader_client_ca_file, cm_value(CM_REQUESTHEADER_CA)) {
            (Some(path), _) => (Some(CaBundle::from_file("--requestheader-client-ca-file", path)?), false),
            (None, Some(pem)) => {
                (Some(CaBundle::from_pem(pem.as_bytes(), &format!("ConfigMap key {CM_REQUESTHEADER_CA}"))?), true)
            }
            (None, None) => (None, false),
        };
        let request_header = match ca {
            None => None,
            Some(ca) => {
                // The ConfigMap's lists count only with the ConfigMap's CA; a CA from a flag takes flags or defaults.
                let setting = |flag: &[String], key: &'static str, default: &[&str]| -> Result<_, AuthConfigError> {
                    if !flag.is_empty() {
                        return Ok(flag.to_vec());
                    }
                    if from_configmap && let Some(list) = configmap_list(configmap_data, key)? {
                        return Ok(list);
                    }
                    Ok(default.iter().map(|s| s.to_string()).collect())
                };
                Some(RequestHeaderConfig {
                    ca,
                    allowed_names: setting(&flags.requestheader_allowed_names, CM_ALLOWED_NAMES, &[])?,
                    username_headers: header_names(
                        "requestheader-username-headers",
                        setting(&flags.requestheader_username_headers, CM_USERNAME_HEADERS, DEFAULT_USERNAME_HEADERS)?,
                    )?,
                    uid_headers: header_names(
                        "requestheader-uid-headers",
                        setting(&flags.requestheader_uid_headers, CM_UID_HEADERS, &[])?,
                    )?,
                    group_headers: header_names(
                        "requestheader-group-headers",
                        setting(&flags.requestheader_group_headers, CM_GROUP_HEADERS, DEFAULT_GROUP_HEADERS)?,
                    )?,
                    extra_headers_prefixes: header_prefixes(
                        "requestheader-extra-headers-prefix",
                        setting(&flags.requestheader_extra_headers_prefix, CM_EXTRA_PREFIXES, DEFAULT_EXTRA_PREFIXES)?,
                    )?,
                })
            }
        };
        Ok(AuthenticationConfig::new(client_ca, request_header))
    }
}

/// A ConfigMap list value: `None` when absent, empty or `null`.
fn configmap_list(
    data: Option<&BTreeMap<String, String>>,
    key: &'static str,
) -> Result<Option<Vec<String>>, AuthConfigError> {
    let Some(value) = data.and_then(|d| d.get(key)).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    serde_json::from_str::<Option<Vec<String>>>(value)
        .map_err(|e| AuthConfigError::BadConfigMapValue { key, reason: format!("not a JSON array of strings: {e}") })
}

fn trimmed(setting: &'static str, values: Vec<String>) -> Result<Vec<String>, AuthConfigError> {
    values
        .into_iter()
        .map(|value| {
            let name = value.trim().to_ascii_lowercase();
            if name.is_empty() { Err(AuthConfigError::BadHeaderName { setting, value }) } else { Ok(name) }
        })
        .collect()
}

fn header_names(setting: &'static str, values: Vec<String>) -> Result<Vec<HeaderName>, AuthConfigError> {
    trimmed(setting, values)?
        .into_iter()
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| AuthConfigError::BadHeaderName { setting, value: name })
        })
        .collect()
}

fn header_prefixes(setting: &'static str, values: Vec<String>) -> Result<Vec<String>, AuthConfigError> {
    let prefixes = trimmed(setting, values)?;
    for prefix in &prefixes {
        // A prefix is a header name with its end cut off, so it must itself be a valid header name.
        if HeaderName::from_bytes(prefix.as_bytes()).is_err() {
            return Err(AuthConfigError::BadHeaderName { setting, value: prefix.clone() });
        }
    }
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::TestCa;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn nothing_configured_means_no_certificate_authentication() {
        let config = AuthenticationConfig::from_flags_and_configmap(&AuthenticationFlags::default(), None).unwrap();
        assert!(config.client_ca.is_none());
        assert!(config.request_header.is_none());
    }

    #[test]
    fn configmap_values_are_used_with_json_list_values() {
        let client = TestCa::new("client-ca");
        let proxy = TestCa::new("front-proxy-ca");
        let cm = data(&[
            (CM_CLIENT_CA, &client.pem()),
            (CM_REQUESTHEADER_CA, &proxy.pem()),
            (CM_ALLOWED_NAMES, r#"["front-proxy-client"]"#),
            (CM_USERNAME_HEADERS, r#"["X-Remote-User"]"#),
            (CM_GROUP_HEADERS, r#"["X-Remote-Group"]"#),
            (CM_EXTRA_PREFIXES, r#"["X-Remote-Extra-"]"#),
            (CM_UID_HEADERS, r#"["X-Remote-Uid"]"#),
        ]);
        let config =
            AuthenticationConfig::from_flags_and_configmap(&AuthenticationFlags::default(), Some(&cm)).unwrap();
        assert_eq!(config.client_ca.as_ref().unwrap().anchors().len(), 1);
        let rh = config.request_header.unwrap();
        assert_eq!(rh.allowed_names, vec!["front-proxy-client".to_string()]);
        assert_eq!(rh.username_headers, vec![HeaderName::from_static("x-remote-user")]);
        assert_eq!(rh.group_headers, vec![HeaderName::from_static("x-remote-group")]);
        assert_eq!(rh.uid_headers, vec![HeaderName::from_static("x-remote-uid")]);
        assert_eq!(rh.extra_headers_prefixes, vec!["x-remote-extra-".to_string()]);
    }

    #[test]
    fn absent_configmap_lists_take_the_defaults() {
        let proxy = TestCa::new("front-proxy-ca");
        let cm = data(&[(CM_REQUESTHEADER_CA, &proxy.pem()), (CM_GROUP_HEADERS, "null")]);
        let rh = AuthenticationConfig::from_flags_and_configmap(&AuthenticationFlags::default(), Some(&cm))
            .unwrap()
            .request_header
            .unwrap();
        assert!(rh.allowed_names.is_empty());
        assert_eq!(rh.username_headers, vec![HeaderName::from_static("x-remote-user")]);
        assert_eq!(rh.group_headers, vec![HeaderName::from_static("x-remote-group")]);
        assert_eq!(rh.extra_headers_prefixes, vec!["x-remote-extra-".to_string()]);
        assert!(rh.uid_headers.is_empty());
    }

    #[test]
    fn flags_win_over_the_configmap() {
        let dir = tempfile::tempdir().unwrap();
        let flag_ca = TestCa::new("flag-ca");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, format!("{}{}", flag_ca.pem(), TestCa::new("second").pem())).unwrap();
        let cm = data(&[
            (CM_REQUESTHEADER_CA, &TestCa::new("cm-ca").pem()),
            (CM_ALLOWED_NAMES, r#"["from-configmap"]"#),
            (CM_USERNAME_HEADERS, r#"["X-From-Configmap"]"#),
        ]);
        let flags = AuthenticationFlags {
            requestheader_client_ca_file: Some(path),
            requestheader_group_headers: vec![" X-Flag-Group ".into()],
            ..AuthenticationFlags::default()
        };
        let rh = AuthenticationConfig::from_flags_and_configmap(&flags, Some(&cm)).unwrap().request_header.unwrap();
        assert_eq!(rh.ca.anchors().len(), 2, "the flag's bundle, not the ConfigMap's");
        // With the CA from a flag, the ConfigMap's lists do not apply.
        assert!(rh.allowed_names.is_empty());
        assert_eq!(rh.username_headers, vec![HeaderName::from_static("x-remote-user")]);
        assert_eq!(rh.group_headers, vec![HeaderName::from_static("x-flag-group")]);

        // With the CA from the ConfigMap, a flag still wins for its own setting.
        let flags = AuthenticationFlags {
            requestheader_allowed_names: vec!["from-flag".into()],
            ..AuthenticationFlags::default()
        };
        let rh = AuthenticationConfig::from_flags_and_configmap(&flags, Some(&cm)).unwrap().request_header.unwrap();
        assert_eq!(rh.allowed_names, vec!["from-flag".to_string()]);
        assert_eq!(rh.username_headers, vec![HeaderName::from_static("x-from-configmap")]);
    }

    #[test]
    fn bad_values_are_errors() {
        let proxy = TestCa::new("front-proxy-ca").pem();
        let cases = [
            data(&[(CM_CLIENT_CA, "not pem")]),
            data(&[(CM_REQUESTHEADER_CA, &proxy), (CM_ALLOWED_NAMES, "front-proxy-client")]),
            data(&[(CM_REQUESTHEADER_CA, &proxy), (CM_USERNAME_HEADERS, r#"[""]"#)]),
            data(&[(CM_REQUESTHEADER_CA, &proxy), (CM_GROUP_HEADERS, r#"["bad header"]"#)]),
        ];
        for cm in cases {
            let result = AuthenticationConfig::from_flags_and_configmap(&AuthenticationFlags::default(), Some(&cm));
            assert!(result.is_err(), "{cm:?}");
        }
        let flags = AuthenticationFlags {
            client_ca_file: Some("/nonexistent/ca.pem".into()),
            ..AuthenticationFlags::default()
        };
        let error = AuthenticationConfig::from_flags_and_configmap(&flags, None).unwrap_err();
        assert!(error.to_string().starts_with("cannot read --client-ca-file /nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn every_configuration_has_a_new_generation() {
        let a = AuthenticationConfig::default();
        let b = AuthenticationConfig::default();
        assert_ne!(a.generation(), b.generation());
    }

    #[test]
    fn lookup_is_needed_unless_skipped_or_both_cas_are_flags() {
        let mut flags = AuthenticationFlags::default();
        assert!(!flags.needs_no_lookup());
        flags.client_ca_file = Some("a".into());
        assert!(!flags.needs_no_lookup());
        flags.requestheader_client_ca_file = Some("b".into());
        assert!(flags.needs_no_lookup());
        assert!(AuthenticationFlags { skip_lookup: true, ..AuthenticationFlags::default() }.needs_no_lookup());
    }
}
