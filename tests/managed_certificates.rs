//! `--manage-certificates` end to end in-process (docs/architecture.md §11): the adapter started against the fake
//! kube-apiserver creates its certificate Secret, writes the CA into its APIServices' caBundle, and serves a
//! certificate that a client trusting only that caBundle verifies for the Service's name, as kube-apiserver does.
//! A mounted certificate turns all of it off.

mod common;

use std::time::Duration;

use custom_metrics_apiserver::app;
use custom_metrics_apiserver::cluster::certificates::apiservice_names;
use custom_metrics_apiserver::cluster::fake_apiserver::FakeApiServer;
use custom_metrics_apiserver::config::Config;
use serde_json::json;

const SECRETS: &str = "/api/v1/namespaces/metrics/secrets";
const APISERVICES: &str = "/apis/apiregistration.k8s.io/v1/apiservices";

/// A fake cluster with discovery, Secrets and the three APIServices registered without a caBundle.
async fn cluster() -> FakeApiServer {
    common::install_crypto();
    let fake = FakeApiServer::start().await;
    fake.deny_by_default();
    fake.serve_discovery();
    fake.store_objects(SECRETS);
    for name in apiservice_names() {
        fake.put_object(
            APISERVICES,
            json!({"metadata": {"name": name}, "spec": {"service": {"name": "adapter", "namespace": "metrics"},
                "groupPriorityMinimum": 100, "versionPriority": 100}}),
        );
    }
    fake
}

async fn start(fake: &FakeApiServer, dir: &tempfile::TempDir, extra: &[&str]) -> app::Running {
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let flags = [
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--cert-dir={}", dir.path().join("certs").display()),
        "--bind-address=127.0.0.1".to_string(),
        "--secure-port=0".to_string(),
        "--service-name=adapter".to_string(),
        "--service-namespace=metrics".to_string(),
    ];
    let args =
        ["custom-metrics-apiserver"].into_iter().chain(flags.iter().map(String::as_str)).chain(extra.iter().copied());
    app::start(&Config::from_args(args).unwrap()).await.unwrap()
}

fn ca_bundle(fake: &FakeApiServer, name: &str) -> Option<Vec<u8>> {
    let apiservice = fake.stored(&format!("{APISERVICES}/{name}")).unwrap();
    let bundle: Option<k8s_openapi::ByteString> =
        serde_json::from_value(apiservice["spec"]["caBundle"].clone()).unwrap();
    bundle.map(|b| b.0)
}

#[tokio::test]
async fn the_adapter_serves_a_certificate_its_apiservices_ca_bundle_verifies() {
    let fake = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(&fake, &dir, &["--manage-certificates", "--certificate-secret-name=adapter-tls"]).await;

    let secret = fake.stored(&format!("{SECRETS}/adapter-tls")).expect("no Secret created");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let bundles: Vec<Vec<u8>> =
        apiservice_names().iter().map(|name| ca_bundle(&fake, name).expect("no caBundle")).collect();
    assert!(bundles.iter().all(|b| b == &bundles[0]));
    assert!(!dir.path().join("certs").exists(), "nothing is written to --cert-dir");

    // kube-apiserver's view: https://adapter.metrics.svc, trusting the caBundle and nothing else.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&bundles[0]).unwrap()])
        .resolve("adapter.metrics.svc", running.secure_addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://adapter.metrics.svc:{}/healthz", running.secure_addr.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Another name is not in the certificate.
    let other = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&bundles[0]).unwrap()])
        .resolve("adapter.other.svc", running.secure_addr)
        .build()
        .unwrap();
    let url = format!("https://adapter.other.svc:{}/healthz", running.secure_addr.port());
    assert!(other.get(&url).send().await.is_err());
    running.shutdown().await;
}

#[tokio::test]
async fn a_mounted_certificate_turns_the_management_off() {
    let fake = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let pair = custom_metrics_apiserver::server::tls::self_signed().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pair.cert).unwrap();
    std::fs::write(&key, &pair.key).unwrap();
    let (cert_flag, key_flag) =
        (format!("--tls-cert-file={}", cert.display()), format!("--tls-private-key-file={}", key.display()));
    let running = start(&fake, &dir, &["--manage-certificates", &cert_flag, &key_flag]).await;
    assert_eq!(fake.count(|r| r.path.starts_with(SECRETS) || r.path.starts_with(APISERVICES)), 0);
    assert!(apiservice_names().iter().all(|name| ca_bundle(&fake, name).is_none()));
    running.shutdown().await;
}
