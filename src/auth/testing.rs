//! Test certificates made with rcgen: CAs, intermediates and client certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

use super::ClientCertChain;

/// A certificate authority that can sign client certificates and intermediates.
pub(crate) struct TestCa {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    params
}

impl TestCa {
    /// A self-signed root.
    pub(crate) fn new(cn: &str) -> Self {
        let params = ca_params(cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, issuer: Issuer::new(params, key) }
    }

    /// An intermediate CA signed by this one.
    pub(crate) fn intermediate(&self, cn: &str) -> Self {
        let params = ca_params(cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCa { cert, issuer: Issuer::new(params, key) }
    }

    /// This CA's certificate as PEM.
    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// This CA's certificate as DER.
    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A certificate with the given subject and extended key usages.
    pub(crate) fn leaf_with(
        &self,
        cn: Option<&str>,
        orgs: &[&str],
        eku: Vec<ExtendedKeyUsagePurpose>,
    ) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        // rcgen keeps one value per attribute type, so a second O is given as a custom type with O's OID.
        assert!(orgs.len() <= 2, "at most two organisations");
        if let Some(org) = orgs.first() {
            params.distinguished_name.push(DnType::OrganizationName, *org);
        }
        if let Some(org) = orgs.get(1) {
            params.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 10]), *org);
        }
        params.extended_key_usages = eku;
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &self.issuer).unwrap().der().clone()
    }

    /// A client certificate (EKU clientAuth) with common name `cn` and organisations `orgs`.
    pub(crate) fn client_cert(&self, cn: &str, orgs: &[&str]) -> CertificateDer<'static> {
        self.leaf_with(Some(cn), orgs, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// The chain a client presents: a client certificate from this CA, alone.
    pub(crate) fn client_chain(&self, cn: &str, orgs: &[&str]) -> ClientCertChain {
        ClientCertChain::new(vec![self.client_cert(cn, orgs)])
    }
}
