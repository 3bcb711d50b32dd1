//! TLS for the secure port: the serving certificate from files, from the certificate directory, or generated
//! and self-signed, or replaced while serving ([`ServingCertificate`], for the certificates the adapter manages
//! itself, docs/architecture.md §11); HTTP/2 and HTTP/1.1 offered by ALPN. Knows nothing of metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Names the generated certificate is valid for.
pub const SELF_SIGNED_NAMES: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "custom-metrics-apiserver.custom-metrics.svc",
    "custom-metrics-apiserver.custom-metrics.svc.cluster.local",
];

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// Explicit PEM files (`--tls-cert-file`, `--tls-private-key-file`).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// `<dir>/apiserver.crt` and `<dir>/apiserver.key`; generated there when absent.
    Dir(PathBuf),
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain and its key, as PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate chain.
    pub cert: String,
    /// The private key.
    pub key: String,
}

/// Loads or makes the serving certificate. A generated one is written to the directory when it is writable (so
/// that restarts keep it) and used from memory otherwise.
pub fn load_or_generate(source: &CertSource) -> Result<PemPair, TlsError> {
    match source {
        CertSource::Files { cert, key } => Ok(PemPair { cert: read(cert)?, key: read(key)? }),
        CertSource::Dir(dir) => {
            let (cert_path, key_path) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
            if cert_path.exists() && key_path.exists() {
                return Ok(PemPair { cert: read(&cert_path)?, key: read(&key_path)? });
            }
            let pair = self_signed()?;
            match write_pair(dir, &cert_path, &key_path, &pair) {
                Ok(()) => tracing::info!(dir = %dir.display(), "generated a self-signed serving certificate"),
                Err(error) => tracing::warn!(
                    dir = %dir.display(), %error,
                    "generated a self-signed serving certificate; cannot write it, using it from memory"
                ),
            }
            Ok(pair)
        }
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn write_pair(dir: &Path, cert_path: &Path, key_path: &Path, pair: &PemPair) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let mut key = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(key_path)?;
    key.write_all(pair.key.as_bytes())?;
    std::fs::write(cert_path, &pair.cert)
}

/// A self-signed certificate for [`SELF_SIGNED_NAMES`] (ECDSA P-256).
pub fn self_signed() -> Result<PemPair, TlsError> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.self_signed(&key)?;
    Ok(PemPair { cert: cert.pem(), key: key.serialize_pem() })
}

/// A rustls server configuration offering HTTP/2 and HTTP/1.1. With `request_client_certs`, clients are asked
/// for a certificate without being required to send one (Go's `tls.RequestClientCert`).
pub fn server_config(pair: &PemPair, request_client_certs: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let serving = ServingCertificate::new(pair)?;
    server_config_with(Arc::new(serving), request_client_certs)
}

/// [`server_config`] serving whatever `serving` holds at each handshake.
pub fn server_config_with(
    serving: Arc<ServingCertificate>,
    request_client_certs: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = if request_client_certs {
        builder.with_client_cert_verifier(Arc::new(RequestClientCert { provider }))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate and key the listener presents, replaceable while it serves: a new TLS handshake gets what was
/// last [`ServingCertificate::replace`]d, open connections keep theirs (docs/architecture.md §11).
#[derive(Debug)]
pub struct ServingCertificate {
    current: arc_swap::ArcSwap<rustls::sign::CertifiedKey>,
}

impl ServingCertificate {
    /// Serves `pair`.
    pub fn new(pair: &PemPair) -> Result<Self, TlsError> {
        Ok(ServingCertificate { current: arc_swap::ArcSwap::from_pointee(certified_key(pair)?) })
    }

    /// Serves `pair` from the next handshake on; a pair that does not parse leaves the current one served.
    pub fn replace(&self, pair: &PemPair) -> Result<(), TlsError> {
        self.current.store(Arc::new(certified_key(pair)?));
        Ok(())
    }

    /// The leaf certificate served now (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }
}

impl rustls::server::ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The chain and key of `pair`, checked to belong together.
fn certified_key(pair: &PemPair) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let pem_error =
        |reason: &str| TlsError::Pem { path: PathBuf::from("<serving certificate>"), reason: reason.into() };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(&format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate found"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).map_err(|e| pem_error(&format!("bad key PEM: {e}")))?;
    Ok(rustls::sign::CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider())?)
}

/// Requests a client certificate and checks only that the client holds its key. Which CA the chain must lead
/// to depends on the authenticator (front proxy or client certificates) and on a configuration that can change
/// while connections stay open, so chains are verified per connection by [`crate::auth`], not here. A client
/// without a certificate proceeds as anonymous or with a bearer token.
#[derive(Debug)]
struct RequestClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // No hints: clients then offer whatever certificate they have (Go, curl and rustls clients all do).
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_written_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let first = load_or_generate(&CertSource::Dir(certs.clone())).unwrap();
        assert!(certs.join("apiserver.crt").exists());
        let second = load_or_generate(&CertSource::Dir(certs)).unwrap();
        assert_eq!(first.cert, second.cert);
        assert!(server_config(&first, false).is_ok());
    }

    #[test]
    fn the_generated_certificate_is_valid_for_every_service_name() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{ServerName, UnixTime};

        let pair = self_signed().unwrap();
        let der = CertificateDer::from_pem_slice(pair.cert.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        for name in SELF_SIGNED_NAMES.iter().copied().chain(["custom-metrics-apiserver.custom-metrics.svc"]) {
            let server_name = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&der, &[], &server_name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = ServerName::try_from("example.com").unwrap();
        assert!(verifier.verify_server_cert(&der, &[], &other, &[], UnixTime::now()).is_err());
    }

    #[test]
    fn an_unwritable_directory_still_gets_a_certificate_from_memory() {
        let pair = load_or_generate(&CertSource::Dir("/proc/custom-metrics-certs".into())).unwrap();
        assert!(server_config(&pair, false).is_ok());
        assert!(!Path::new("/proc/custom-metrics-certs").exists());
    }

    #[test]
    fn explicit_files_win_over_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let pair = self_signed().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, &pair.cert).unwrap();
        std::fs::write(&key, &pair.key).unwrap();
        let loaded = load_or_generate(&CertSource::Files { cert, key }).unwrap();
        assert_eq!(loaded.cert, pair.cert);
        assert!(server_config(&loaded, true).is_ok());
        let error = server_config(&PemPair { cert: "junk".into(), key: pair.key }, false).unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error}");
    }

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let error =
            load_or_generate(&CertSource::Files { cert: "/nonexistent/c.pem".into(), key: "/k".into() }).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/c.pem"), "{error}");
    }
}
