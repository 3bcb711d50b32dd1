//! A connection's TLS client certificate chain and its verification against a CA bundle.
//!
//! The TLS layer requests but does not verify client certificates (Go's `tls.RequestClientCert`); the
//! authenticators verify the chain here, against the front-proxy CA and against the client CA. A connection's
//! requests share one [`ClientCertChain`], which remembers each verification for the configuration generation it
//! was made under, so the work is done once per connection, again after a CA rotation, and again after
//! [`MEMO_LIFETIME`] (certificates expire while connections live).

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::time::Instant;

use super::config::CaBundle;

/// How long a verification result is reused for the same configuration.
pub const MEMO_LIFETIME: Duration = Duration::from_secs(60);

/// Which CA bundle a chain is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaRole {
    /// The front proxy's (`requestheader-client-ca-file`).
    FrontProxy,
    /// Client certificates' (`client-ca-file`).
    Client,
}

/// The identity fields of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafSubject {
    /// The subject's common name (the last one, as Go reads it); empty when absent.
    pub common_name: String,
    /// The subject's organisations.
    pub organizations: Vec<String>,
    /// Lower-case hex SHA-256 of the certificate's DER.
    pub sha256_hex: String,
}

#[derive(Debug)]
struct Memo {
    generation: u64,
    checked_at: Instant,
    front_proxy: Option<Result<(), String>>,
    client: Option<Result<(), String>>,
}

impl Memo {
    fn slot(&mut self, role: CaRole) -> &mut Option<Result<(), String>> {
        match role {
            CaRole::FrontProxy => &mut self.front_proxy,
            CaRole::Client => &mut self.client,
        }
    }
}

/// The TLS client certificate chain of one connection (leaf first), as rustls gives it. One value per connection,
/// shared by its requests (wrap it in an `Arc`), so that chain verification is memoised per connection and per
/// configuration generation.
#[derive(Debug)]
pub struct ClientCertChain {
    certs: Vec<CertificateDer<'static>>,
    subject: OnceLock<Result<LeafSubject, String>>,
    memo: Mutex<Option<Memo>>,
}

impl ClientCertChain {
    /// The chain as presented by the client, leaf first.
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Self {
        ClientCertChain { certs, subject: OnceLock::new(), memo: Mutex::new(None) }
    }

    /// The certificates, leaf first.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// Whether the client sent no certificate.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The leaf's subject, parsed once.
    pub(crate) fn subject(&self) -> Result<&LeafSubject, String> {
        self.subject.get_or_init(|| parse_subject(self.certs.first())).as_ref().map_err(Clone::clone)
    }

    /// Verifies the chain for client authentication against `bundle`, now, reusing an earlier answer made under
    /// the same configuration `generation` within [`MEMO_LIFETIME`].
    pub(crate) fn verify(&self, role: CaRole, generation: u64, bundle: &CaBundle) -> Result<(), String> {
        let now = Instant::now();
        let fresh = |memo: &Memo| memo.generation == generation && now.duration_since(memo.checked_at) < MEMO_LIFETIME;
        {
            let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(memo) = memo.as_mut().filter(|m| fresh(m))
                && let Some(result) = memo.slot(role)
            {
                return result.clone();
            }
        }
        // Verified outside the lock: another request of the connection may do the same work, never wait for it.
        let result = verify_chain(&self.certs, bundle);
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if !memo.as_ref().is_some_and(fresh) {
            *memo = Some(Memo { generation, checked_at: now, front_proxy: None, client: None });
        }
        if let Some(memo) = memo.as_mut() {
            *memo.slot(role) = Some(result.clone());
        }
        result
    }
}

fn verify_chain(certs: &[CertificateDer<'static>], bundle: &CaBundle) -> Result<(), String> {
    let Some((leaf, intermediates)) = certs.split_first() else {
        return Err("no client certificate".to_string());
    };
    let fail = |e: webpki::Error| format!("verifying certificate {} failed: {e}", certificate_identifier(leaf));
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(fail)?;
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            bundle.anchors(),
            intermediates,
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(fail)
}

/// `SN=…, CN=…` of a certificate, for log messages.
fn certificate_identifier(der: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => format!("SN={}, subject={}", cert.raw_serial_as_string(), cert.subject()),
        Err(_) => "(unparsable)".to_string(),
    }
}

fn parse_subject(leaf: Option<&CertificateDer<'static>>) -> Result<LeafSubject, String> {
    let leaf = leaf.ok_or_else(|| "no client certificate".to_string())?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("cannot parse client certificate: {e}"))?;
    let subject = cert.subject();
    let common_name = subject.iter_common_name().filter_map(|a| a.as_str().ok()).last().unwrap_or_default().to_string();
    let organizations = subject.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
    let sha256_hex = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(LeafSubject { common_name, organizations, sha256_hex })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::TestCa;
    use rcgen::ExtendedKeyUsagePurpose;

    fn bundle(ca: &TestCa) -> CaBundle {
        CaBundle::from_pem(ca.pem().as_bytes(), "test").unwrap()
    }

    #[test]
    fn a_client_certificate_verifies_against_its_ca_only() {
        let ca = TestCa::new("ca");
        let other = TestCa::new("other");
        let chain = ca.client_chain("alice", &["dev"]);
        assert_eq!(chain.verify(CaRole::Client, 1, &bundle(&ca)), Ok(()));
        let error = chain.verify(CaRole::FrontProxy, 1, &bundle(&other)).unwrap_err();
        assert!(error.contains("UnknownIssuer"), "{error}");
    }

    #[test]
    fn intermediates_from_the_chain_are_used() {
        let root = TestCa::new("root");
        let intermediate = root.intermediate("intermediate");
        let leaf = intermediate.client_cert("front-proxy-client", &[]);
        let with_intermediate = ClientCertChain::new(vec![leaf.clone(), intermediate.der()]);
        assert_eq!(with_intermediate.verify(CaRole::FrontProxy, 1, &bundle(&root)), Ok(()));
        let without = ClientCertChain::new(vec![leaf]);
        assert!(without.verify(CaRole::FrontProxy, 1, &bundle(&root)).is_err());
    }

    #[test]
    fn a_server_only_certificate_is_not_a_client_certificate() {
        let ca = TestCa::new("ca");
        let server_only = ca.leaf_with(Some("alice"), &[], vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let chain = ClientCertChain::new(vec![server_only]);
        assert!(chain.verify(CaRole::Client, 1, &bundle(&ca)).is_err());
        // Without any EKU extension, every usage is allowed (RFC 5280, as Go).
        let no_eku = ClientCertChain::new(vec![ca.leaf_with(Some("alice"), &[], vec![])]);
        assert_eq!(no_eku.verify(CaRole::Client, 1, &bundle(&ca)), Ok(()));
    }

    #[test]
    fn results_are_memoised_per_generation_and_role() {
        let ca = TestCa::new("ca");
        let other = TestCa::new("other");
        let chain = ca.client_chain("alice", &[]);
        assert_eq!(chain.verify(CaRole::FrontProxy, 7, &bundle(&ca)), Ok(()));
        // Same generation: the remembered answer, even though this bundle would reject the chain.
        assert_eq!(chain.verify(CaRole::FrontProxy, 7, &bundle(&other)), Ok(()));
        // The other role is verified on its own.
        assert!(chain.verify(CaRole::Client, 7, &bundle(&other)).is_err());
        // A new generation (a rotated CA) verifies again.
        assert!(chain.verify(CaRole::FrontProxy, 8, &bundle(&other)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn results_expire_after_the_memo_lifetime() {
        let ca = TestCa::new("ca");
        let other = TestCa::new("other");
        let chain = ca.client_chain("alice", &[]);
        assert_eq!(chain.verify(CaRole::Client, 1, &bundle(&ca)), Ok(()));
        tokio::time::advance(MEMO_LIFETIME).await;
        assert!(chain.verify(CaRole::Client, 1, &bundle(&other)).is_err());
    }

    #[test]
    fn the_subject_gives_common_name_organisations_and_fingerprint() {
        let ca = TestCa::new("ca");
        let der = ca.client_cert("alice", &["dev", "ops"]);
        let chain = ClientCertChain::new(vec![der.clone()]);
        let subject = chain.subject().unwrap();
        assert_eq!(subject.common_name, "alice");
        assert_eq!(subject.organizations, vec!["dev".to_string(), "ops".to_string()]);
        assert_eq!(subject.sha256_hex.len(), 64);
        let no_cn = ClientCertChain::new(vec![ca.leaf_with(None, &["dev"], vec![])]);
        assert_eq!(no_cn.subject().unwrap().common_name, "");
        assert!(ClientCertChain::new(vec![]).subject().is_err());
    }
}
