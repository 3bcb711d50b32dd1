//! The serving certificate the adapter manages itself (`--manage-certificates`, docs/architecture.md §11): a CA
//! and a serving certificate kept in a Secret of the adapter's namespace, the CA written into the caBundle of the
//! three APIServices, and both renewed before they expire while the listener keeps serving.
//!
//! There is no leader. Every replica runs the same [`CertificateManager::sync`] every
//! `--certificate-sync-interval`, and kube-apiserver's optimistic concurrency decides between replicas: the first
//! create of the Secret wins (the others get 409 and load it), the first update of a renewal wins (the others get
//! a conflict and load the winner's). A renewal makes a new CA and certificate; the Secret keeps the previous ones,
//! the caBundle holds both CAs, and every replica switches to the new certificate only two sync intervals after
//! the renewal, by when every replica has put the new CA back into the caBundle should a stale one have removed it.
//! The previous CA stays in the caBundle until the next renewal, a third of the validity later, when the previous
//! certificate has long stopped being served.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_util::task::AbortOnDropHandle;

use crate::api::group_versions::SERVED;
use crate::clock::Clock;
use crate::server::tls::{PemPair, ServingCertificate, TlsError};

/// Secret keys: the serving certificate and key (the `kubernetes.io/tls` type's), the CA that signed it, and the
/// previous generation of the three.
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
const CA_CERT: &str = "ca.crt";
const PREVIOUS_TLS_CERT: &str = "previous-tls.crt";
const PREVIOUS_TLS_KEY: &str = "previous-tls.key";
const PREVIOUS_CA_CERT: &str = "previous-ca.crt";
/// When the current generation was made (RFC 3339): replicas serve it from two sync intervals later.
pub const RENEWED_AT_ANNOTATION: &str = "custom-metrics-apiserver/renewed-at";

/// Certificates start this long before they are made, so that a kube-apiserver whose clock is a little behind the
/// adapter's accepts them at once (Kubernetes' own self-signed certificates do the same).
const BACKDATE: Duration = Duration::from_secs(3600);

/// The APIService names the adapter keeps the caBundle of: `<version>.<group>` of every served group-version.
pub fn apiservice_names() -> Vec<String> {
    SERVED.iter().map(|gv| format!("{}.{}", gv.version, gv.group)).collect()
}

/// What the manager needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateOptions {
    /// The Service the APIServices point at.
    pub service: String,
    /// Its namespace, also the Secret's.
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// Lifetime of a CA and certificate.
    pub validity: Duration,
    /// How often the Secret and the caBundle are checked.
    pub sync_interval: Duration,
}

impl CertificateOptions {
    /// The names the serving certificate is for.
    pub fn dns_names(&self) -> Vec<String> {
        let svc = format!("{}.{}.svc", self.service, self.namespace);
        vec![svc.clone(), format!("{svc}.cluster.local")]
    }

    /// How long after a renewal replicas start serving the new certificate.
    pub fn switch_delay(&self) -> Duration {
        self.sync_interval * 2
    }
}

/// Why certificates could not be managed.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// kube-apiserver refused or failed a request.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Making a certificate failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The Secret holds something that is not a usable certificate.
    #[error("Secret {secret}: {reason}")]
    BadSecret {
        /// namespace/name.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate could not be served.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// One generation: a CA and the serving certificate it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Generation {
    ca: String,
    serving: PemPair,
}

/// What the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Material {
    current: Generation,
    previous: Option<Generation>,
    /// Milliseconds since the epoch when `current` was made.
    renewed_at: i64,
}

impl Material {
    /// The caBundle: the current CA, then the previous one.
    fn bundle(&self) -> Vec<u8> {
        let mut bundle = self.current.ca.clone().into_bytes();
        if let Some(previous) = &self.previous {
            bundle.extend_from_slice(previous.ca.as_bytes());
        }
        bundle
    }
}

/// A CA and a serving certificate for `names` it signed, valid from `now - BACKDATE` until `now + validity`.
fn generate(names: &[String], now_millis: i64, validity: Duration) -> Result<Generation, rcgen::Error> {
    let now = now_millis.div_euclid(1000);
    let not_before =
        time::OffsetDateTime::from_unix_timestamp(now - BACKDATE.as_secs() as i64).map_err(|_| rcgen::Error::Time)?;
    let not_after = time::OffsetDateTime::from_unix_timestamp(now.saturating_add(validity.as_secs() as i64))
        .map_err(|_| rcgen::Error::Time)?;

    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("custom-metrics-apiserver-ca@{now}"));
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    (ca_params.not_before, ca_params.not_after) = (not_before, not_after);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_default());
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = (not_before, not_after);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generation { ca: ca.pem(), serving: PemPair { cert: cert.pem(), key: key.serialize_pem() } })
}

/// The validity (seconds since the epoch) and DNS names of the first certificate of `pem`.
fn leaf_facts(pem: &str) -> Option<(i64, i64, Vec<String>)> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = cert.validity();
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some((validity.not_before.timestamp(), validity.not_after.timestamp(), names))
}

/// Whether `generation` must be renewed at `now_millis`: past 2/3 of its lifetime (counted from when it was made,
/// not from its backdated start), unreadable, or not for every one of `names`.
fn renewal_due(generation: &Generation, names: &[String], now_millis: i64) -> bool {
    let Some((not_before, not_after, covered)) = leaf_facts(&generation.serving.cert) else { return true };
    if !names.iter().all(|name| covered.contains(name)) {
        return true;
    }
    let made = not_before + BACKDATE.as_secs() as i64;
    let due = made + (not_after - made) * 2 / 3;
    now_millis.div_euclid(1000) >= due
}

/// Whether the serving certificate of `generation` has expired at `now_millis`.
fn expired(generation: &Generation, now_millis: i64) -> bool {
    leaf_facts(&generation.serving.cert).is_none_or(|(_, not_after, _)| now_millis.div_euclid(1000) >= not_after)
}

fn format_time(millis: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

fn parse_time(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    let since = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// The Secret holding `material`.
fn to_secret(name: &str, namespace: &str, material: &Material, resource_version: Option<String>) -> Secret {
    let mut data = std::collections::BTreeMap::new();
    let mut put = |key: &str, value: &str| data.insert(key.to_string(), ByteString(value.as_bytes().to_vec()));
    put(TLS_CERT, &material.current.serving.cert);
    put(TLS_KEY, &material.current.serving.key);
    put(CA_CERT, &material.current.ca);
    if let Some(previous) = &material.previous {
        put(PREVIOUS_TLS_CERT, &previous.serving.cert);
        put(PREVIOUS_TLS_KEY, &previous.serving.key);
        put(PREVIOUS_CA_CERT, &previous.ca);
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            resource_version,
            labels: Some([("app.kubernetes.io/managed-by".to_string(), "custom-metrics-apiserver".to_string())].into()),
            annotations: Some([(RENEWED_AT_ANNOTATION.to_string(), format_time(material.renewed_at))].into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The material of `secret`, or why it holds none.
fn from_secret(secret: &Secret) -> Result<Material, String> {
    let data = secret.data.as_ref().ok_or("no data")?;
    let text = |key: &str| -> Result<Option<String>, String> {
        data.get(key)
            .map(|value| String::from_utf8(value.0.clone()).map_err(|_| format!("{key} is not PEM text")))
            .transpose()
    };
    let required = |key: &str| text(key)?.ok_or_else(|| format!("no {key}"));
    let current =
        Generation { ca: required(CA_CERT)?, serving: PemPair { cert: required(TLS_CERT)?, key: required(TLS_KEY)? } };
    let previous = match (text(PREVIOUS_CA_CERT)?, text(PREVIOUS_TLS_CERT)?, text(PREVIOUS_TLS_KEY)?) {
        (Some(ca), Some(cert), Some(key)) => Some(Generation { ca, serving: PemPair { cert, key } }),
        _ => None,
    };
    let renewed_at = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(RENEWED_AT_ANNOTATION))
        .and_then(|text| parse_time(text))
        .unwrap_or(0);
    Ok(Material { current, previous, renewed_at })
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// Keeps the Secret, the caBundle and the served certificate in step; see the module documentation.
pub struct CertificateManager {
    secrets: Api<Secret>,
    apiservices: Api<APIService>,
    options: CertificateOptions,
    clock: Arc<dyn Clock>,
    serving: Arc<ServingCertificate>,
    /// The generation served, to log changes once.
    served: Mutex<Option<String>>,
}

/// The background task of [`CertificateManager::start`]; stops when dropped.
pub type CertificateGuard = AbortOnDropHandle<()>;

impl CertificateManager {
    /// Reads or creates the Secret, writes the caBundle, and returns the manager serving its certificate.
    pub async fn new(
        client: kube::Client,
        options: CertificateOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, CertificateError> {
        let secrets = Api::namespaced(client.clone(), &options.namespace);
        let apiservices = Api::all(client);
        let material = Self::read_or_create(&secrets, &apiservices, &options, &*clock).await?;
        let serving = Arc::new(ServingCertificate::new(&material.current.serving)?);
        let manager = Arc::new(CertificateManager {
            secrets,
            apiservices,
            options,
            clock,
            serving,
            served: Mutex::new(Some(material.current.serving.cert.clone())),
        });
        manager.sync().await?;
        Ok(manager)
    }

    /// [`CertificateManager::new`], then [`CertificateManager::sync`] every sync interval in the background.
    pub async fn start(
        client: kube::Client,
        options: CertificateOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<Self>, CertificateGuard), CertificateError> {
        let manager = Self::new(client, options, clock).await?;
        let syncing = Arc::clone(&manager);
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(syncing.options.sync_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                if let Err(error) = syncing.sync().await {
                    tracing::warn!(%error, "managing the serving certificate; retrying at the next sync");
                }
            }
        });
        Ok((manager, AbortOnDropHandle::new(task)))
    }

    /// What the listener serves.
    pub fn serving(&self) -> Arc<ServingCertificate> {
        Arc::clone(&self.serving)
    }

    fn secret_name(&self) -> String {
        format!("{}/{}", self.options.namespace, self.options.secret)
    }

    /// One round: read the Secret (recreating it if deleted), renew it when due, put its CAs into the caBundle,
    /// and serve the certificate the moment calls for.
    pub async fn sync(&self) -> Result<(), CertificateError> {
        let (mut material, resource_version) = match self.read().await? {
            Some(found) => found,
            None => (Self::read_or_create(&self.secrets, &self.apiservices, &self.options, &*self.clock).await?, None),
        };
        let now = self.clock.now_millis();
        if renewal_due(&material.current, &self.options.dns_names(), now)
            && let Some(resource_version) = resource_version
        {
            material = self.renew(material, resource_version, now).await?;
        }
        ensure_bundle(&self.apiservices, &material.bundle()).await;
        self.serve(&material, self.clock.now_millis())
    }

    async fn read(&self) -> Result<Option<(Material, Option<String>)>, CertificateError> {
        match self.secrets.get_opt(&self.options.secret).await {
            Ok(Some(secret)) => match from_secret(&secret) {
                Ok(material) => Ok(Some((material, secret.metadata.resource_version))),
                Err(reason) => {
                    let (secrets, apiservices, options) = (&self.secrets, &self.apiservices, &self.options);
                    let version = secret.metadata.resource_version;
                    let material =
                        replace_unreadable(secrets, apiservices, options, &*self.clock, version, reason).await?;
                    Ok(Some((material, None)))
                }
            },
            Ok(None) => Ok(None),
            Err(source) => {
                Err(CertificateError::Kube { action: format!("reading Secret {}", self.secret_name()), source })
            }
        }
    }

    /// The Secret's material; when there is no Secret, a new generation written into the caBundle and then
    /// created as the Secret, or, when another replica created it first, that one's.
    async fn read_or_create(
        secrets: &Api<Secret>,
        apiservices: &Api<APIService>,
        options: &CertificateOptions,
        clock: &dyn Clock,
    ) -> Result<Material, CertificateError> {
        let name = format!("{}/{}", options.namespace, options.secret);
        let load = |secret: &Secret| {
            from_secret(secret).map_err(|reason| CertificateError::BadSecret { secret: name.clone(), reason })
        };
        let kube_error =
            |action: &str, source| CertificateError::Kube { action: format!("{action} Secret {name}"), source };
        if let Some(secret) = secrets.get_opt(&options.secret).await.map_err(|e| kube_error("reading", e))? {
            return match from_secret(&secret) {
                Ok(material) => Ok(material),
                Err(reason) => {
                    let version = secret.metadata.resource_version;
                    replace_unreadable(secrets, apiservices, options, clock, version, reason).await
                }
            };
        }
        let now = clock.now_millis();
        let material = Material {
            current: generate(&options.dns_names(), now, options.validity)?,
            previous: None,
            renewed_at: now,
        };
        let secret = to_secret(&options.secret, &options.namespace, &material, None);
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %name, "created the serving certificate and its CA");
                // Nothing trusted the adapter before: no old certificate to keep serving meanwhile.
                ensure_bundle(apiservices, &material.bundle()).await;
                Ok(material)
            }
            Err(error) if is_status(&error, 409) => {
                tracing::info!(secret = %name, "another replica created the serving certificate first; using it");
                let secret = secrets.get(&options.secret).await.map_err(|e| kube_error("reading", e))?;
                load(&secret)
            }
            Err(error) => Err(kube_error("creating", error)),
        }
    }

    /// A new generation, its CA written into the caBundle beside the current one before the Secret is updated;
    /// when another replica renewed first (a conflict), that one's.
    async fn renew(&self, old: Material, resource_version: String, now: i64) -> Result<Material, CertificateError> {
        let renewed = Material {
            current: generate(&self.options.dns_names(), now, self.options.validity)?,
            previous: Some(old.current),
            renewed_at: now,
        };
        ensure_bundle(&self.apiservices, &renewed.bundle()).await;
        let secret = to_secret(&self.options.secret, &self.options.namespace, &renewed, Some(resource_version));
        match self.secrets.replace(&self.options.secret, &PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %self.secret_name(), switch_in = ?self.options.switch_delay(), "renewed the serving certificate and its CA");
                Ok(renewed)
            }
            Err(error) if is_status(&error, 409) => {
                tracing::info!(secret = %self.secret_name(), "another replica renewed the serving certificate first; using it");
                match self.read().await? {
                    Some((material, _)) => Ok(material),
                    None => Err(CertificateError::BadSecret {
                        secret: self.secret_name(),
                        reason: "deleted during a renewal".into(),
                    }),
                }
            }
            Err(source) => {
                Err(CertificateError::Kube { action: format!("updating Secret {}", self.secret_name()), source })
            }
        }
    }

    /// Serves the previous certificate until two sync intervals after a renewal (while it is still valid), the
    /// current one otherwise.
    fn serve(&self, material: &Material, now: i64) -> Result<(), CertificateError> {
        let switch_at = material.renewed_at.saturating_add(self.options.switch_delay().as_millis() as i64);
        let generation = match &material.previous {
            Some(previous) if now < switch_at && !expired(previous, now) => previous,
            _ => &material.current,
        };
        let mut served = self.served.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if served.as_deref() != Some(generation.serving.cert.as_str()) {
            self.serving.replace(&generation.serving)?;
            tracing::info!(secret = %self.secret_name(), "serving the renewed certificate");
            *served = Some(generation.serving.cert.clone());
        }
        Ok(())
    }
}

/// Replaces a Secret of that name that holds no usable generation (made by hand, cut short, another program's)
/// with a new generation, written into the caBundle first; when another replica replaced it first (a conflict),
/// that one's.
async fn replace_unreadable(
    secrets: &Api<Secret>,
    apiservices: &Api<APIService>,
    options: &CertificateOptions,
    clock: &dyn Clock,
    resource_version: Option<String>,
    reason: String,
) -> Result<Material, CertificateError> {
    let name = format!("{}/{}", options.namespace, options.secret);
    tracing::warn!(secret = %name, %reason, "the certificate Secret holds no usable certificate; replacing it");
    let now = clock.now_millis();
    let material =
        Material { current: generate(&options.dns_names(), now, options.validity)?, previous: None, renewed_at: now };
    ensure_bundle(apiservices, &material.bundle()).await;
    let secret = to_secret(&options.secret, &options.namespace, &material, resource_version);
    let kube_error =
        |action: &str, source| CertificateError::Kube { action: format!("{action} Secret {name}"), source };
    match secrets.replace(&options.secret, &PostParams::default(), &secret).await {
        Ok(_) => Ok(material),
        Err(error) if is_status(&error, 409) => {
            let secret = secrets.get(&options.secret).await.map_err(|e| kube_error("reading", e))?;
            from_secret(&secret).map_err(|reason| CertificateError::BadSecret { secret: name.clone(), reason })
        }
        Err(error) => Err(kube_error("replacing", error)),
    }
}

/// Makes `bundle` the caBundle of each APIService that exists (and turns insecureSkipTLSVerify off, which
/// kube-apiserver refuses beside a caBundle). Failures are logged, not returned: an APIService registered later,
/// or a permission granted later, is handled at the next sync.
async fn ensure_bundle(apiservices: &Api<APIService>, bundle: &[u8]) {
    for name in apiservice_names() {
        let spec = match apiservices.get_opt(&name).await {
            Ok(Some(apiservice)) => apiservice.spec,
            Ok(None) => {
                tracing::debug!(apiservice = %name, "not registered; its caBundle is written once it is");
                continue;
            }
            Err(error) => {
                tracing::warn!(apiservice = %name, %error, "cannot read the APIService to check its caBundle");
                continue;
            }
        };
        let Some(spec) = spec else { continue };
        let current = spec.ca_bundle.as_ref().map(|b| b.0.as_slice());
        if current == Some(bundle) && spec.insecure_skip_tls_verify != Some(true) {
            continue;
        }
        let patch =
            serde_json::json!({"spec": {"caBundle": ByteString(bundle.to_vec()), "insecureSkipTLSVerify": false}});
        match apiservices.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => tracing::info!(apiservice = %name, "wrote the serving CA into the caBundle"),
            Err(error) => tracing::warn!(apiservice = %name, %error, "cannot write the caBundle"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use crate::cluster::fake_apiserver::FakeApiServer;
    use rustls::pki_types::{ServerName, UnixTime};
    use serde_json::json;
    use tokio::io::AsyncWriteExt;

    const SECRETS: &str = "/api/v1/namespaces/metrics/secrets";
    const SECRET: &str = "/api/v1/namespaces/metrics/secrets/adapter-certs";
    const APISERVICES: &str = "/apis/apiregistration.k8s.io/v1/apiservices";
    const HOUR: i64 = 3_600_000;
    const MINUTE: i64 = 60_000;

    fn options() -> CertificateOptions {
        CertificateOptions {
            service: "adapter".into(),
            namespace: "metrics".into(),
            secret: "adapter-certs".into(),
            validity: Duration::from_secs(3600),
            sync_interval: Duration::from_secs(60),
        }
    }

    /// A fake cluster keeping Secrets and the three APIServices, registered as the old manifest did: no caBundle,
    /// insecureSkipTLSVerify.
    async fn cluster() -> FakeApiServer {
        let server = FakeApiServer::start().await;
        server.store_objects(SECRETS);
        for name in apiservice_names() {
            let apiservice = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name}, "spec": {"insecureSkipTLSVerify": true, "groupPriorityMinimum": 100,
                "versionPriority": 100, "service": {"name": "adapter", "namespace": "metrics", "port": 443}}});
            server.put_object(APISERVICES, apiservice);
        }
        server
    }

    fn bundle_of(server: &FakeApiServer, name: &str) -> Option<Vec<u8>> {
        let apiservice = server.stored(&format!("{APISERVICES}/{name}"))?;
        let spec: k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIServiceSpec =
            serde_json::from_value(apiservice["spec"].clone()).unwrap();
        assert_ne!(spec.insecure_skip_tls_verify, Some(true), "{name} still skips verification");
        spec.ca_bundle.map(|b| b.0)
    }

    /// The one caBundle of the three APIServices (they must agree).
    fn bundle(server: &FakeApiServer) -> Vec<u8> {
        let bundles: Vec<_> = apiservice_names().iter().map(|name| bundle_of(server, name)).collect();
        assert!(bundles.iter().all(|b| b == &bundles[0]), "the APIServices disagree");
        bundles[0].clone().expect("no caBundle")
    }

    #[derive(Debug)]
    struct At(ManualClock);
    impl rustls::time_provider::TimeProvider for At {
        fn current_time(&self) -> Option<UnixTime> {
            Some(UnixTime::since_unix_epoch(Duration::from_millis(self.0.now_millis() as u64)))
        }
    }

    /// A TLS client trusting exactly `bundle`, at the clock's time, as kube-apiserver would.
    fn client(bundle: &[u8], clock: &ManualClock) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(bundle) {
            roots.add(ca.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_details(provider, Arc::new(At(clock.clone())))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A listener serving `serving`'s certificate, started once.
    async fn listener(serving: Arc<ServingCertificate>) -> std::net::SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::server::tls::server_config_with(serving, false).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = tls.shutdown().await;
                }
            }
        });
        address
    }

    /// The leaf the listener presents to a client trusting `bundle` at the clock's time, as
    /// `adapter.metrics.svc`; an error when the handshake fails verification.
    async fn handshake(address: std::net::SocketAddr, bundle: &[u8], clock: &ManualClock) -> std::io::Result<Vec<u8>> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        let name = ServerName::try_from("adapter.metrics.svc").unwrap();
        let tls = client(bundle, clock).connect(name, stream).await?;
        Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
    }

    fn secret_leaf(server: &FakeApiServer) -> Vec<u8> {
        let secret: Secret = serde_json::from_value(server.stored(SECRET).expect("no Secret")).unwrap();
        let cert = &secret.data.unwrap()[TLS_CERT];
        CertificateDer::from_pem_slice(&cert.0).unwrap().to_vec()
    }

    fn now() -> ManualClock {
        ManualClock::new(SystemClock.now_millis())
    }

    #[tokio::test]
    async fn the_first_replica_creates_the_secret_and_writes_its_ca_into_every_apiservice() {
        let server = cluster().await;
        let clock = now();
        let manager = CertificateManager::new(server.client(), options(), Arc::new(clock.clone())).await.unwrap();

        let secret: Secret = serde_json::from_value(server.stored(SECRET).unwrap()).unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.unwrap();
        assert_eq!(bundle(&server), data[CA_CERT].0, "the caBundle is the Secret's CA");
        assert!(!data.contains_key(PREVIOUS_CA_CERT));
        let address = listener(manager.serving()).await;
        let leaf = handshake(address, &bundle(&server), &clock).await.unwrap();
        assert_eq!(leaf, secret_leaf(&server));

        // Verified for both Service names, and for nothing else.
        let (_, _, names) = leaf_facts(&String::from_utf8(data[TLS_CERT].0.clone()).unwrap()).unwrap();
        assert_eq!(names, ["adapter.metrics.svc", "adapter.metrics.svc.cluster.local"]);
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let other = ServerName::try_from("adapter.other.svc").unwrap();
        assert!(client(&bundle(&server), &clock).connect(other, stream).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_racing_to_create_converge_on_one_secret() {
        let server = cluster().await;
        let clock = now();
        let (a, b) = tokio::join!(
            CertificateManager::new(server.client(), options(), Arc::new(clock.clone())),
            CertificateManager::new(server.client(), options(), Arc::new(clock.clone())),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.serving().leaf(), b.serving().leaf(), "both replicas serve the one stored certificate");
        assert_eq!(a.serving().leaf().to_vec(), secret_leaf(&server));
        let secret: Secret = serde_json::from_value(server.stored(SECRET).unwrap()).unwrap();
        assert_eq!(bundle(&server), secret.data.unwrap()[CA_CERT].0);
        // A late replica creates nothing: it loads.
        let creates = server.count(|r| r.method == http::Method::POST && r.path == SECRETS);
        let c = CertificateManager::new(server.client(), options(), Arc::new(clock)).await.unwrap();
        assert_eq!(c.serving().leaf(), a.serving().leaf());
        assert_eq!(server.count(|r| r.method == http::Method::POST && r.path == SECRETS), creates);
    }

    #[tokio::test]
    async fn a_replica_losing_the_create_loads_the_winners_secret() {
        let server = cluster().await;
        let clock = now();
        let winner = CertificateManager::new(server.client(), options(), Arc::new(clock.clone())).await.unwrap();
        // The loser read no Secret, made its own and posts it after the winner's create.
        let options = options();
        let own = Material {
            current: generate(&options.dns_names(), clock.now_millis(), options.validity).unwrap(),
            previous: None,
            renewed_at: 0,
        };
        let posted = Api::<Secret>::namespaced(server.client(), "metrics")
            .create(&PostParams::default(), &to_secret("adapter-certs", "metrics", &own, None))
            .await
            .unwrap_err();
        assert!(is_status(&posted, 409), "{posted}");
        let loser = CertificateManager::new(server.client(), options, Arc::new(clock)).await.unwrap();
        assert_eq!(loser.serving().leaf(), winner.serving().leaf());
    }

    #[tokio::test]
    async fn a_removed_ca_bundle_is_written_back() {
        let server = cluster().await;
        let clock = now();
        let manager = CertificateManager::new(server.client(), options(), Arc::new(clock)).await.unwrap();
        let written = bundle(&server);
        let name = &apiservice_names()[1];
        server.patch_stored(&format!("{APISERVICES}/{name}"), &json!({"spec": {"caBundle": null}}));
        assert_eq!(bundle_of(&server, name), None);
        manager.sync().await.unwrap();
        assert_eq!(bundle(&server), written);
        let patches = server.count(|r| r.method == http::Method::PATCH);
        manager.sync().await.unwrap();
        assert_eq!(server.count(|r| r.method == http::Method::PATCH), patches, "a correct caBundle is left alone");
    }

    #[tokio::test]
    async fn the_background_sync_writes_back_a_removed_ca_bundle() {
        let server = cluster().await;
        let options = CertificateOptions { sync_interval: Duration::from_millis(20), ..options() };
        let (_manager, _guard) = CertificateManager::start(server.client(), options, Arc::new(now())).await.unwrap();
        let written = bundle(&server);
        let name = &apiservice_names()[0];
        server.patch_stored(&format!("{APISERVICES}/{name}"), &json!({"spec": {"caBundle": null}}));
        tokio::time::timeout(Duration::from_secs(10), async {
            while bundle_of(&server, name).is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the caBundle was not written back");
        assert_eq!(bundle(&server), written);
    }

    #[tokio::test]
    async fn a_renewal_is_served_on_the_same_listener_once_its_ca_is_trusted() {
        let server = cluster().await;
        let clock = now();
        let manager = CertificateManager::new(server.client(), options(), Arc::new(clock.clone())).await.unwrap();
        let address = listener(manager.serving()).await;
        let first = handshake(address, &bundle(&server), &clock).await.unwrap();
        let first_bundle = bundle(&server);

        // Before 2/3 of the hour: nothing changes.
        clock.advance(39 * MINUTE);
        manager.sync().await.unwrap();
        assert_eq!(secret_leaf(&server), first);
        assert_eq!(bundle(&server), first_bundle);

        // Past 2/3: a new CA and certificate in the Secret, both CAs in the caBundle, the old certificate still
        // served (other replicas may not have the new CA in their view of the caBundle yet).
        clock.advance(2 * MINUTE);
        manager.sync().await.unwrap();
        let renewed = secret_leaf(&server);
        assert_ne!(renewed, first);
        let both = bundle(&server);
        assert!(both.ends_with(&first_bundle) && both.len() > first_bundle.len(), "the old CA stays in the caBundle");
        assert_eq!(handshake(address, &both, &clock).await.unwrap(), first);

        // Two sync intervals later the same listener serves the new certificate, trusted by the caBundle.
        clock.advance(2 * MINUTE);
        manager.sync().await.unwrap();
        assert_eq!(handshake(address, &both, &clock).await.unwrap(), renewed);
        // The old caBundle alone does not trust it: the new CA was needed.
        assert!(handshake(address, &first_bundle, &clock).await.is_err());

        // The next renewal drops the first CA.
        clock.advance(HOUR);
        manager.sync().await.unwrap();
        let next = bundle(&server);
        assert!(next.ends_with(&both[..both.len() - first_bundle.len()]) && !next.ends_with(&first_bundle));
    }

    #[tokio::test]
    async fn a_second_replica_follows_a_renewal_and_a_conflicting_one_takes_the_winners() {
        let server = cluster().await;
        let clock = now();
        let a = CertificateManager::new(server.client(), options(), Arc::new(clock.clone())).await.unwrap();
        let b = CertificateManager::new(server.client(), options(), Arc::new(clock.clone())).await.unwrap();
        let (stale, stale_version) = b.read().await.unwrap().unwrap();
        let first = a.serving().leaf();

        clock.advance(41 * MINUTE);
        a.sync().await.unwrap();
        let renewed = secret_leaf(&server);
        // b renews from what it read before a did: the update conflicts and b takes a's generation.
        let taken = b.renew(stale, stale_version.unwrap(), clock.now_millis()).await.unwrap();
        assert_eq!(CertificateDer::from_pem_slice(taken.current.serving.cert.as_bytes()).unwrap().to_vec(), renewed);
        assert_eq!(secret_leaf(&server), renewed, "the loser's generation was not stored");
        b.sync().await.unwrap();
        let secret: Secret = serde_json::from_value(server.stored(SECRET).unwrap()).unwrap();
        let data = secret.data.unwrap();
        let expected: Vec<u8> = [data[CA_CERT].0.clone(), data[PREVIOUS_CA_CERT].0.clone()].concat();
        assert_eq!(bundle(&server), expected, "b put the winner's CAs back into the caBundle");
        assert_eq!(b.serving().leaf(), first, "b keeps the old certificate until the switch");

        clock.advance(2 * MINUTE);
        b.sync().await.unwrap();
        assert_eq!(b.serving().leaf().to_vec(), renewed);
    }

    #[tokio::test]
    async fn a_secret_without_a_usable_certificate_is_replaced() {
        let server = cluster().await;
        let clock = now();
        server.put_object(
            SECRETS,
            json!({"metadata": {"name": "adapter-certs", "namespace": "metrics"}, "data": {"tls.crt": "AA=="}}),
        );
        let manager = CertificateManager::new(server.client(), options(), Arc::new(clock.clone())).await.unwrap();
        let address = listener(manager.serving()).await;
        assert_eq!(handshake(address, &bundle(&server), &clock).await.unwrap(), secret_leaf(&server));

        server.patch_stored(SECRET, &json!({"data": {"tls.key": null}}));
        manager.sync().await.unwrap();
        let replaced = secret_leaf(&server);
        assert_eq!(handshake(address, &bundle(&server), &clock).await.unwrap(), replaced);
    }

    #[tokio::test]
    async fn a_deleted_secret_is_made_again_and_a_certificate_for_other_names_is_renewed() {
        let server = cluster().await;
        let clock = now();
        let manager = CertificateManager::new(server.client(), options(), Arc::new(clock.clone())).await.unwrap();
        let first = secret_leaf(&server);
        Api::<Secret>::namespaced(server.client(), "metrics")
            .delete("adapter-certs", &Default::default())
            .await
            .unwrap();
        manager.sync().await.unwrap();
        let remade = secret_leaf(&server);
        assert_ne!(remade, first);
        let address = listener(manager.serving()).await;
        assert_eq!(handshake(address, &bundle(&server), &clock).await.unwrap(), remade);

        let moved = CertificateOptions { service: "renamed".into(), ..options() };
        let generation = generate(&options().dns_names(), clock.now_millis(), options().validity).unwrap();
        assert!(renewal_due(&generation, &moved.dns_names(), clock.now_millis()));
        assert!(!renewal_due(&generation, &options().dns_names(), clock.now_millis()));
    }
}
