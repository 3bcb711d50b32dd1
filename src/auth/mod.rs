//! Delegated authentication and authorization, as Kubernetes' aggregated API servers do them (wire-contract §6.2,
//! §6.3). Pure logic over small traits; the kube-backed reviewers live in [`crate::cluster`].

use std::path::PathBuf;

/// Placeholder until the authentication module lands (replaced by the real definition on merge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AuthenticationFlags {
    pub client_ca_file: Option<PathBuf>,
    pub requestheader_client_ca_file: Option<PathBuf>,
    pub requestheader_allowed_names: Vec<String>,
    pub requestheader_username_headers: Vec<String>,
    pub requestheader_group_headers: Vec<String>,
    pub requestheader_extra_headers_prefix: Vec<String>,
    pub requestheader_uid_headers: Vec<String>,
    pub skip_lookup: bool,
    pub tolerate_lookup_failure: bool,
}

/// Placeholder until the authentication module lands (replaced by the real definition on merge).
#[derive(Debug)]
#[allow(missing_docs)]
pub struct ClientCertChain(Vec<rustls::pki_types::CertificateDer<'static>>);

#[allow(missing_docs)]
impl ClientCertChain {
    pub fn new(certs: Vec<rustls::pki_types::CertificateDer<'static>>) -> Self {
        ClientCertChain(certs)
    }
}
