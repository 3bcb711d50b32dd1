//! The authentication configuration from ConfigMap `kube-system/extension-apiserver-authentication`, read at
//! start and watched, so that a rotated front-proxy or client CA is used without a restart
//! (docs/wire-contract.md §6.2).
//!
//! As in Kubernetes, the ConfigMap is not read with `--authentication-skip-lookup` or when both CA files are
//! given by flags; a missing ConfigMap is not an error; any other failure to read it is, unless
//! `--authentication-tolerate-lookup-failure`. An update that does not build a valid configuration is logged and
//! the previous configuration kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use tokio_util::task::AbortOnDropHandle;

use crate::auth::{AuthConfigError, AuthenticationConfig, AuthenticationFlags};

/// Namespace of the ConfigMap.
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Name of the ConfigMap.
pub const CONFIGMAP_NAME: &str = "extension-apiserver-authentication";

/// Owns the watch task; dropping it stops the watch.
#[derive(Debug)]
pub struct WatchGuard {
    task: Option<AbortOnDropHandle<()>>,
}

impl WatchGuard {
    /// Whether a watch is running (false when the ConfigMap is not looked up).
    pub fn is_watching(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

/// Reads the ConfigMap (unless not needed), builds the configuration and keeps watching the ConfigMap, swapping
/// in a new configuration on every change.
///
/// # Errors
///
/// The configuration cannot be built (a bad CA file or value), or the ConfigMap cannot be read and
/// `tolerate_lookup_failure` is not set.
pub async fn load_and_watch(
    client: kube::Client,
    flags: AuthenticationFlags,
) -> Result<(Arc<ArcSwap<AuthenticationConfig>>, WatchGuard), AuthConfigError> {
    if flags.needs_no_lookup() {
        let config = AuthenticationConfig::from_flags_and_configmap(&flags, None)?;
        return Ok((Arc::new(ArcSwap::from_pointee(config)), WatchGuard { task: None }));
    }
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let data = match api.get_opt(CONFIGMAP_NAME).await {
        Ok(Some(configmap)) => Some(configmap.data.unwrap_or_default()),
        Ok(None) => {
            tracing::warn!("ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} not found; watching for it");
            None
        }
        Err(error) if flags.tolerate_lookup_failure => {
            tracing::warn!(
                %error,
                "cannot read ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}; continuing without it (--authentication-tolerate-lookup-failure)"
            );
            None
        }
        Err(error) => return Err(AuthConfigError::Lookup { source: Box::new(error) }),
    };
    let config = AuthenticationConfig::from_flags_and_configmap(&flags, data.as_ref())?;
    log_config(&config);
    let shared = Arc::new(ArcSwap::from_pointee(config));
    let mut state = WatchState { flags, shared: Arc::clone(&shared), applied: data };
    let stream = watch_stream(api, watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}")))
        .default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => state.apply(event),
                Err(error) => {
                    tracing::warn!(%error, "watching ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} failed; retrying")
                }
            }
        }
    });
    Ok((shared, WatchGuard { task: Some(AbortOnDropHandle::new(task)) }))
}

fn log_config(config: &AuthenticationConfig) {
    tracing::info!(
        client_ca = config.client_ca.is_some(),
        front_proxy = config.request_header.is_some(),
        allowed_names = ?config.request_header.as_ref().map(|rh| &rh.allowed_names),
        "authentication configuration"
    );
}

/// The watch's state: one writer of the shared configuration.
struct WatchState {
    flags: AuthenticationFlags,
    shared: Arc<ArcSwap<AuthenticationConfig>>,
    /// The ConfigMap data the configuration in force was built from.
    applied: Option<BTreeMap<String, String>>,
}

impl WatchState {
    fn apply(&mut self, event: Event<ConfigMap>) {
        match event {
            Event::Apply(configmap) | Event::InitApply(configmap) => self.update(configmap.data.unwrap_or_default()),
            Event::Delete(_) => {
                tracing::warn!("ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} deleted; keeping the configuration")
            }
            Event::Init | Event::InitDone => {}
        }
    }

    fn update(&mut self, data: BTreeMap<String, String>) {
        if self.applied.as_ref() == Some(&data) {
            return;
        }
        match AuthenticationConfig::from_flags_and_configmap(&self.flags, Some(&data)) {
            Ok(config) => {
                log_config(&config);
                self.shared.store(Arc::new(config));
                self.applied = Some(data);
            }
            Err(error) => tracing::warn!(%error, "invalid authentication configuration update ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::{CM_CLIENT_CA, CM_REQUESTHEADER_CA};
    use crate::auth::testing::TestCa;
    use crate::auth::{Authenticator, ClientCertChain};
    use crate::cluster::fake_apiserver::{FakeApiServer, FakeResponse, RecordedRequest, status_body};
    use serde_json::json;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::mpsc;

    const PATH: &str = "/api/v1/namespaces/kube-system/configmaps";

    fn configmap(version: &str, data: &[(&str, &str)]) -> serde_json::Value {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP_NAME, "namespace": CONFIGMAP_NAMESPACE, "resourceVersion": version},
            "data": data
        })
    }

    /// A server holding the ConfigMap `initial` whose first watch streams what is sent on the returned channel.
    async fn configmap_server(initial: serde_json::Value) -> (FakeApiServer, mpsc::UnboundedSender<serde_json::Value>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let receiver = Mutex::new(Some(receiver));
        let idle = Mutex::new(Vec::new());
        let server = FakeApiServer::answering(move |request: &RecordedRequest| {
            if request.path == format!("{PATH}/{CONFIGMAP_NAME}") {
                FakeResponse::Json(200, initial.clone())
            } else if request.path == PATH && request.is_watch() {
                match receiver.lock().unwrap().take() {
                    Some(receiver) => FakeResponse::Stream(receiver),
                    None => {
                        // Later watches stay open and quiet.
                        let (sender, receiver) = mpsc::unbounded_channel();
                        idle.lock().unwrap().push(sender);
                        FakeResponse::Stream(receiver)
                    }
                }
            } else if request.path == PATH {
                let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"},
                    "items": [initial.clone()]});
                FakeResponse::Json(200, list)
            } else {
                FakeResponse::Json(404, status_body(404, "NotFound", "not found"))
            }
        })
        .await;
        (server, events)
    }

    fn alice_headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-remote-user", http::HeaderValue::from_static("alice"));
        headers
    }

    async fn name_of(authenticator: &Authenticator, chain: &ClientCertChain) -> Option<String> {
        authenticator.authenticate(&mut alice_headers(), Some(chain)).await.ok().map(|u| u.name)
    }

    #[tokio::test]
    async fn a_rotated_front_proxy_ca_is_accepted_without_a_restart() {
        let old_ca = TestCa::new("front-proxy-ca");
        let new_ca = TestCa::new("front-proxy-ca-2");
        let (old_pem, new_pem) = (old_ca.pem(), new_ca.pem());
        let (server, events) = configmap_server(configmap("1", &[(CM_REQUESTHEADER_CA, &old_pem)])).await;
        let (config, guard) = load_and_watch(server.client(), AuthenticationFlags::default()).await.unwrap();
        assert!(guard.is_watching());
        let authenticator = Authenticator::new(Arc::clone(&config), None, Duration::ZERO);
        let old_proxy = old_ca.client_chain("front-proxy-client", &[]);
        let new_proxy = new_ca.client_chain("front-proxy-client", &[]);
        assert_eq!(name_of(&authenticator, &old_proxy).await.as_deref(), Some("alice"));
        assert_eq!(name_of(&authenticator, &new_proxy).await, None);

        // Wait for the watch to start, then rotate the CA.
        let watching = || server.requests().iter().any(RecordedRequest::is_watch);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !watching() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the watch starts");
        let watch = server.requests().into_iter().find(RecordedRequest::is_watch).unwrap();
        assert!(
            watch.query.contains("fieldSelector=metadata.name%3Dextension-apiserver-authentication"),
            "{}",
            watch.query
        );
        events.send(json!({"type": "MODIFIED", "object": configmap("2", &[(CM_REQUESTHEADER_CA, &new_pem)])})).unwrap();

        tokio::time::timeout(Duration::from_secs(10), async {
            while name_of(&authenticator, &new_proxy).await.is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the new CA is accepted");
        assert_eq!(name_of(&authenticator, &old_proxy).await, None, "the old CA is no longer trusted");

        drop(guard);
    }

    #[tokio::test]
    async fn lookup_failures_are_errors_unless_tolerated() {
        let server = FakeApiServer::answering(|_: &RecordedRequest| {
            FakeResponse::Json(403, status_body(403, "Forbidden", "configmaps is forbidden"))
        })
        .await;
        let error = load_and_watch(server.client(), AuthenticationFlags::default()).await.unwrap_err();
        assert!(matches!(error, AuthConfigError::Lookup { .. }), "{error:?}");

        let flags = AuthenticationFlags { tolerate_lookup_failure: true, ..AuthenticationFlags::default() };
        let (config, _guard) = load_and_watch(server.client(), flags).await.unwrap();
        assert!(config.load().request_header.is_none());
    }

    #[tokio::test]
    async fn a_missing_configmap_is_not_an_error() {
        let server =
            FakeApiServer::answering(|_: &RecordedRequest| FakeResponse::Json(404, status_body(404, "NotFound", "no")))
                .await;
        let (config, _guard) = load_and_watch(server.client(), AuthenticationFlags::default()).await.unwrap();
        assert!(config.load().client_ca.is_none());
    }

    #[tokio::test]
    async fn skip_lookup_reads_nothing_from_the_cluster() {
        let server = FakeApiServer::answering(|_: &RecordedRequest| {
            FakeResponse::Json(500, status_body(500, "InternalError", ""))
        })
        .await;
        let flags = AuthenticationFlags { skip_lookup: true, ..AuthenticationFlags::default() };
        let (config, guard) = load_and_watch(server.client(), flags).await.unwrap();
        assert!(!guard.is_watching());
        assert!(config.load().request_header.is_none());
        assert!(server.requests().is_empty());
    }

    #[test]
    fn an_invalid_update_keeps_the_previous_configuration() {
        let ca = TestCa::new("client-ca").pem();
        let data: BTreeMap<String, String> = [(CM_CLIENT_CA.to_string(), ca.clone())].into();
        let initial = AuthenticationConfig::from_flags_and_configmap(&AuthenticationFlags::default(), Some(&data));
        let shared = Arc::new(ArcSwap::from_pointee(initial.unwrap()));
        let mut state =
            WatchState { flags: AuthenticationFlags::default(), shared: Arc::clone(&shared), applied: Some(data) };
        let before = shared.load_full();

        let object = |data: serde_json::Value| -> ConfigMap {
            serde_json::from_value(json!({"metadata": {"name": CONFIGMAP_NAME}, "data": data})).unwrap()
        };
        state.apply(Event::Apply(object(json!({CM_CLIENT_CA: "not a certificate"}))));
        assert!(Arc::ptr_eq(&before, &shared.load_full()), "an invalid update is ignored");
        state.apply(Event::InitApply(object(json!({CM_CLIENT_CA: ca}))));
        assert!(Arc::ptr_eq(&before, &shared.load_full()), "unchanged data keeps the configuration");
        state.apply(Event::Delete(object(json!({}))));
        assert!(Arc::ptr_eq(&before, &shared.load_full()), "a deletion keeps the configuration");

        let proxy_ca = TestCa::new("front-proxy-ca").pem();
        state.apply(Event::Apply(object(json!({CM_CLIENT_CA: ca, CM_REQUESTHEADER_CA: proxy_ca}))));
        assert!(shared.load().request_header.is_some(), "a valid update applies");
    }
}
