//! The Helm chart (`deploy/helm/custom-metrics-apiserver`) agrees with the program and with the stock manifest:
//! `helm template` in each `tls.mode`, its container arguments parsed by the program's own flag parser, the objects
//! it renders (APIServices with verified TLS, RBAC, security settings), and the values it refuses.
//!
//! Needs Helm 3: the `HELM` variable names it, else `helm` on the PATH (.ci/run installs it).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custom_metrics_apiserver::api::group_versions::SERVED;
use custom_metrics_apiserver::config::{Config, WriteAuth};
use custom_metrics_apiserver::server::tls::CertSource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleRef, Subject};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

const RELEASE: &str = "custom-metrics-apiserver";
const NS: &str = "metrics-system";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/custom-metrics-apiserver")
}

fn helm() -> OsString {
    std::env::var_os("HELM").unwrap_or_else(|| "helm".into())
}

/// The rendered chart: its documents, or helm's error output when it refuses the values.
struct Rendered {
    docs: Vec<Value>,
}

/// `helm template RELEASE CHART --namespace NS` with `values` (a YAML document).
fn template(values: &str) -> Result<Rendered, String> {
    let dir = tempfile::tempdir().unwrap();
    let values_file = dir.path().join("values.yaml");
    std::fs::write(&values_file, values).unwrap();
    let output = Command::new(helm())
        .args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", NS, "--values"])
        .arg(&values_file)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run helm ({:?}): {error}. The chart's tests need Helm 3: .ci/run installs it (go install \
                 helm.sh/helm/v3/cmd/helm@<version>, built into ~/.cache); or set HELM to its path",
                helm()
            )
        });
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).unwrap();
    let docs = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect();
    Ok(Rendered { docs })
}

fn render(values: &str) -> Rendered {
    template(values).unwrap_or_else(|error| panic!("helm template refused {values:?}: {error}"))
}

/// The error of values the chart must refuse.
fn refused(values: &str) -> String {
    match template(values) {
        Ok(_) => panic!("helm template accepted {values:?}"),
        Err(error) => error,
    }
}

/// A CA certificate's PEM, for the existingSecret mode's caBundle, with LF line ends (as a YAML block keeps it).
fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem().lines().map(|line| format!("{line}\n")).collect()
}

/// Values of the existingSecret mode, with `ca` as the caBundle.
fn existing_secret(ca: &str) -> String {
    let indented: String = ca.lines().map(|line| format!("      {line}\n")).collect();
    format!(
        "tls:\n  mode: existingSecret\n  existingSecret:\n    name: adapter-serving-cert\n    caBundle: |\n{indented}"
    )
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
    }

    fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.try_get(kind, name).unwrap_or_else(|| panic!("no {kind} {name} rendered; kinds: {:?}", self.kinds()))
    }

    fn try_get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs.iter().find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
    }

    fn typed<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        serde_yaml_ng::from_value(self.get(kind, name).clone())
            .unwrap_or_else(|e| panic!("{kind} {name} does not deserialize as a Kubernetes {kind}: {e}"))
    }

    fn deployment(&self) -> Deployment {
        self.typed("Deployment", RELEASE)
    }

    fn pod(&self) -> PodSpec {
        self.deployment().spec.template.spec.unwrap()
    }

    fn container(&self) -> Container {
        let pod = self.pod();
        assert_eq!(pod.containers.len(), 1);
        pod.containers.into_iter().next().unwrap()
    }

    fn args(&self) -> Vec<String> {
        self.container().args.unwrap()
    }

    /// The container's arguments through the program's own flag parser.
    fn config(&self) -> Result<Config, String> {
        let args = self.args();
        Config::from_args(std::iter::once("custom-metrics-apiserver".to_owned()).chain(args))
    }

    /// The directory where the Secret named `secret` is mounted in the container.
    fn mount_of_secret(&self, secret: &str) -> PathBuf {
        let pod = self.pod();
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret))
            .unwrap_or_else(|| panic!("no volume of Secret {secret}"));
        let mount = self
            .container()
            .volume_mounts
            .unwrap()
            .into_iter()
            .find(|m| m.name == volume.name)
            .unwrap_or_else(|| panic!("volume {} is not mounted", volume.name));
        assert_eq!(mount.read_only, Some(true), "the certificate's mount is read-only");
        PathBuf::from(mount.mount_path)
    }
}

const CERT_MANAGER: &str = "tls:\n  mode: certManager\n";

#[test]
fn the_managed_mode_is_the_default_and_lets_the_adapter_keep_its_secret_and_its_apiservices_ca_bundle() {
    let chart = render("tls:\n  managed:\n    validity: 720h\n    syncInterval: 1m\n");
    let config = chart.config().unwrap_or_else(|e| panic!("the chart's args {:?} are refused: {e}", chart.args()));
    assert!(config.manage_certificates);
    let flags = &config.cluster().unwrap().certificates;
    assert_eq!(flags.certificate_validity, std::time::Duration::from_secs(720 * 3600));
    assert_eq!(flags.certificate_sync_interval, std::time::Duration::from_secs(60));
    assert_eq!(flags.service_name, RELEASE, "the certificate is for the chart's Service");
    let secret = format!("{RELEASE}-certs");
    assert_eq!(flags.certificate_secret_name, secret);
    let env = chart.container().env.unwrap();
    let namespace = env.iter().find(|e| e.name == "CUSTOM_METRICS_SERVICE_NAMESPACE").unwrap();
    let field = namespace.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
    assert_eq!(field.field_path, "metadata.namespace");
    assert!(chart.pod().volumes.is_none() && chart.container().volume_mounts.is_none(), "nothing is mounted");
    assert!(chart.of_kind("Certificate").is_empty() && chart.of_kind("Issuer").is_empty(), "{:?}", chart.kinds());
    let default = render("").config().unwrap();
    assert!(default.manage_certificates, "managed is the default mode");

    let role: k8s_openapi::api::rbac::v1::Role = chart.typed("Role", &format!("{RELEASE}-certificates"));
    assert_eq!(role.metadata.namespace.as_deref(), Some(NS));
    let rules = role.rules.unwrap();
    let names: Vec<(Vec<String>, Option<Vec<String>>)> =
        rules.iter().map(|r| (r.verbs.clone(), r.resource_names.clone())).collect();
    assert_eq!(
        names,
        [(vec!["create".to_owned()], None), (vec!["get".to_owned(), "update".to_owned()], Some(vec![secret]))]
    );
    let apiservices: ClusterRole = chart.typed("ClusterRole", &format!("{RELEASE}-apiservices"));
    let rule = apiservices.rules.unwrap().remove(0);
    let mut names = rule.resource_names.unwrap();
    names.sort();
    let mut served: Vec<String> = SERVED.iter().map(|gv| format!("{}.{}", gv.version, gv.group)).collect();
    served.sort();
    assert_eq!(names, served);
    assert_eq!(rule.verbs, ["get", "patch"]);
    for (kind, name) in [("RoleBinding", "certificates"), ("ClusterRoleBinding", "apiservices")] {
        let binding = chart.get(kind, &format!("{RELEASE}-{name}"));
        assert_eq!(binding["subjects"][0]["name"].as_str(), Some(RELEASE), "{kind}");
    }
    assert!(render(CERT_MANAGER).try_get("Role", &format!("{RELEASE}-certificates")).is_none());
}

#[test]
fn in_every_tls_mode_the_arguments_are_flags_the_program_accepts_serving_the_mounted_certificate() {
    let ca = ca_pem();
    for (mode, values) in [("certManager", CERT_MANAGER.to_owned()), ("existingSecret", existing_secret(&ca))] {
        let chart = render(&values);
        let config =
            chart.config().unwrap_or_else(|e| panic!("{mode}: the chart's args {:?} are refused: {e}", chart.args()));
        assert!(config.secure_addr.ip().is_unspecified(), "{mode}: the pod listens on all interfaces");
        let cluster = config.cluster().unwrap_or_else(|| panic!("{mode}: the adapter must run in cluster mode"));
        assert!(cluster.kubeconfig.is_none(), "{mode}: in a pod the adapter uses its ServiceAccount");
        assert_eq!(config.write_auth, WriteAuth::Token, "{mode}");
        assert_eq!(config.write_addr, None, "{mode}: no plain-HTTP listener: tokens travel over TLS only");

        let secret = match mode {
            "certManager" => chart.get("Certificate", RELEASE)["spec"]["secretName"].as_str().unwrap().to_owned(),
            _ => "adapter-serving-cert".to_owned(),
        };
        let dir = chart.mount_of_secret(&secret);
        assert_eq!(config.cert, CertSource::Files { cert: dir.join("tls.crt"), key: dir.join("tls.key") }, "{mode}");
        assert!(!config.manage_certificates, "{mode}");

        let container = chart.container();
        let ports = container.ports.clone().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].name.as_deref(), Some("https"));
        assert_eq!(ports[0].container_port, i32::from(config.secure_addr.port()), "{mode}");
        for (probe, path) in [
            (&container.startup_probe, "/livez"),
            (&container.liveness_probe, "/livez"),
            (&container.readiness_probe, "/readyz"),
        ] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!((get.path.as_deref(), get.scheme.as_deref()), (Some(path), Some("HTTPS")), "{mode}");
        }
    }
}

#[test]
fn the_pod_runs_non_root_on_a_read_only_root_without_capabilities_and_system_cluster_critical() {
    let chart = render("");
    let pod = chart.pod();
    let security = chart.container().security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-cluster-critical"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some(RELEASE));
    assert_eq!(chart.deployment().spec.replicas, Some(1));
}

#[test]
fn the_three_apiservices_point_at_the_service_with_v1beta2_preferred_and_verified_tls() {
    let ca = ca_pem();
    for (mode, values) in
        [("managed", String::new()), ("certManager", CERT_MANAGER.to_owned()), ("existingSecret", existing_secret(&ca))]
    {
        let chart = render(&values);
        let service: Service = chart.typed("Service", RELEASE);
        assert_eq!(service.metadata.namespace.as_deref(), Some(NS));
        let service_port = service.spec.unwrap().ports.unwrap()[0].port;
        assert_eq!(service_port, 443);

        let mut names: Vec<String> =
            chart.of_kind("APIService").iter().map(|a| a["metadata"]["name"].as_str().unwrap().to_owned()).collect();
        names.sort();
        let mut served: Vec<String> = SERVED.iter().map(|gv| format!("{}.{}", gv.version, gv.group)).collect();
        served.sort();
        assert_eq!(names, served, "{mode}: one APIService per served group-version");

        for gv in SERVED {
            let name = format!("{}.{}", gv.version, gv.group);
            let api: APIService = chart.typed("APIService", &name);
            let spec = api.spec.unwrap();
            assert_eq!((spec.group.as_deref(), spec.version.as_deref()), (Some(gv.group), Some(gv.version)));
            // The preferred version (the first of its group in SERVED) must have the highest priority in its
            // group: it is the version the HPA controller reads.
            let preferred = SERVED.iter().find(|other| other.group == gv.group).unwrap().version == gv.version;
            let others = SERVED.iter().filter(|o| o.group == gv.group && o.version != gv.version).count();
            let expected = if preferred && others > 0 { 200 } else { 100 };
            assert_eq!(spec.version_priority, expected, "{mode}: {name}");
            assert_eq!(spec.group_priority_minimum, 100);
            let target = spec.service.unwrap();
            assert_eq!((target.name.as_deref(), target.namespace.as_deref()), (Some(RELEASE), Some(NS)));
            assert_eq!(target.port, Some(service_port));
            assert_eq!(spec.insecure_skip_tls_verify, None, "{mode}: {name} must verify the adapter's certificate");

            let annotations = api.metadata.annotations.unwrap_or_default();
            match mode {
                "managed" => {
                    assert!(spec.ca_bundle.is_none(), "{name}: the adapter writes the caBundle");
                    assert!(!annotations.contains_key("cert-manager.io/inject-ca-from"));
                }
                "certManager" => {
                    assert!(spec.ca_bundle.is_none(), "{name}: cert-manager's CA injector sets the caBundle");
                    let from = &annotations["cert-manager.io/inject-ca-from"];
                    let (namespace, certificate) = from.split_once('/').unwrap();
                    assert_eq!(namespace, NS);
                    let dns_names: Vec<&str> = chart.get("Certificate", certificate)["spec"]["dnsNames"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap())
                        .collect();
                    assert!(
                        dns_names.contains(&format!("{RELEASE}.{NS}.svc").as_str()),
                        "{name}: the certificate must name the Service as kube-apiserver dials it: {dns_names:?}"
                    );
                }
                _ => {
                    assert_eq!(spec.ca_bundle.unwrap().0, ca.as_bytes(), "{name}: the caBundle is the given CA");
                    assert!(!annotations.contains_key("cert-manager.io/inject-ca-from"));
                }
            }
        }
        let text = serde_yaml_ng::to_string(&chart.docs).unwrap();
        assert!(!text.contains("insecureSkipTLSVerify"), "{mode}");
    }
}

#[test]
fn cert_manager_mode_makes_its_own_ca_unless_an_issuer_is_given() {
    let chart = render(CERT_MANAGER);
    let serving = chart.get("Certificate", RELEASE);
    let issuer_name = serving["spec"]["issuerRef"]["name"].as_str().unwrap();
    let issuer = chart.get("Issuer", issuer_name);
    let ca_secret = issuer["spec"]["ca"]["secretName"].as_str().unwrap();
    let ca = chart
        .of_kind("Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"].as_str() == Some(ca_secret))
        .expect("the CA issuer's certificate");
    assert_eq!(ca["spec"]["isCA"].as_bool(), Some(true));
    let root = chart.get("Issuer", ca["spec"]["issuerRef"]["name"].as_str().unwrap());
    assert!(root["spec"]["selfSigned"].is_mapping());
    assert_eq!(serving["spec"]["usages"][0].as_str(), Some("server auth"));

    let chart = render(
        "tls:\n  mode: certManager\n  certManager:\n    issuerRef: {name: company-ca, kind: ClusterIssuer, group: cert-manager.io}\n",
    );
    assert!(chart.of_kind("Issuer").is_empty(), "an existing issuer: no Issuer of the chart's own");
    assert_eq!(chart.of_kind("Certificate").len(), 1);
    let issuer_ref = &chart.get("Certificate", RELEASE)["spec"]["issuerRef"];
    assert_eq!((issuer_ref["name"].as_str(), issuer_ref["kind"].as_str()), (Some("company-ca"), Some("ClusterIssuer")));
}

#[test]
fn existing_secret_mode_needs_the_secret_and_its_ca_and_makes_no_certificate() {
    let chart = render(&existing_secret(&ca_pem()));
    assert!(chart.of_kind("Certificate").is_empty() && chart.of_kind("Issuer").is_empty(), "{:?}", chart.kinds());
    let error = refused("tls:\n  mode: existingSecret\n  existingSecret:\n    caBundle: x\n");
    assert!(error.contains("needs tls.existingSecret.name"), "{error}");
    let error = refused("tls:\n  mode: existingSecret\n  existingSecret:\n    name: s\n");
    assert!(error.contains("needs tls.existingSecret.caBundle"), "{error}");
}

#[test]
fn a_tls_mode_that_does_not_exist_is_refused() {
    let error = refused("tls:\n  mode: selfSigned\n");
    assert!(error.contains(r#"tls.mode: "selfSigned" is not one of managed, certManager, existingSecret"#), "{error}");
}

#[test]
fn more_than_one_replica_is_refused_with_the_memory_store() {
    let error = refused("replicas: 2\n");
    assert!(error.contains("replicas: 2 is refused: the adapter keeps its metrics in memory"), "{error}");
    assert!(refused("replicas: 0\n").contains("replicas: 0 is refused"));
}

/// The manifest's objects, as the chart names them: `custom-metrics-*` and `hpa-controller-custom-metrics` become
/// `<fullname>-*`, namespace `custom-metrics` the release's.
#[test]
fn the_chart_installs_everything_deploy_k8s_deployment_yaml_does() {
    let manifest_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/deployment.yaml")).unwrap();
    let manifest: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&manifest_text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect();
    let chart = render("");
    let by_name = |docs: &[Value], kind: &str| -> BTreeMap<String, Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .map(|d| (d["metadata"]["name"].as_str().unwrap().to_owned(), d.clone()))
            .collect()
    };

    // Roles: each of the manifest's has a chart role of the same kind with the same rules.
    let mut role_names = BTreeMap::new();
    for kind in ["ClusterRole", "Role"] {
        for (name, role) in by_name(&manifest, kind) {
            let rules = |r: &Value| -> Vec<PolicyRule> { serde_yaml_ng::from_value(r["rules"].clone()).unwrap() };
            let twin = chart
                .of_kind(kind)
                .into_iter()
                .find(|c| rules(c) == rules(&role))
                .unwrap_or_else(|| panic!("the chart has no {kind} with the rules of the manifest's {name}"));
            role_names.insert(name, twin["metadata"]["name"].as_str().unwrap().to_owned());
        }
    }
    for role in chart.of_kind("ClusterRole") {
        let _: ClusterRole = serde_yaml_ng::from_value(role.clone()).expect("a valid ClusterRole");
    }

    // Bindings: each of the manifest's has a chart binding of the same kind and namespace, to the same role (the
    // cluster's own roles by name, the manifest's by their twin), for the same subjects.
    let adapter =
        |s: &Subject| s.name == "custom-metrics-apiserver" && s.namespace.as_deref() == Some("custom-metrics");
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for (name, binding) in by_name(&manifest, kind) {
            let role_ref: RoleRef = serde_yaml_ng::from_value(binding["roleRef"].clone()).unwrap();
            let subjects: Vec<Subject> = serde_yaml_ng::from_value(binding["subjects"].clone()).unwrap();
            let want_role = role_names.get(&role_ref.name).cloned().unwrap_or(role_ref.name.clone());
            let want_subjects: Vec<Subject> = subjects
                .into_iter()
                .map(
                    |s| if adapter(&s) { Subject { name: RELEASE.into(), namespace: Some(NS.into()), ..s } } else { s },
                )
                .collect();
            // The manifest's own namespace is the release's.
            let want_namespace = match binding["metadata"]["namespace"].as_str() {
                Some("custom-metrics") => Some(NS),
                other => other,
            };
            let found = chart.of_kind(kind).into_iter().any(|c| {
                let c_ref: RoleRef = serde_yaml_ng::from_value(c["roleRef"].clone()).unwrap();
                let c_subjects: Vec<Subject> = serde_yaml_ng::from_value(c["subjects"].clone()).unwrap();
                c_ref.kind == role_ref.kind
                    && c_ref.name == want_role
                    && c_subjects == want_subjects
                    && c["metadata"]["namespace"].as_str() == want_namespace
            });
            assert!(found, "the chart has no {kind} like the manifest's {name} ({role_ref:?} for {want_subjects:?})");
        }
    }

    // The rest: the ServiceAccount, the Service, the Deployment and the APIServices, under the release's names.
    for kind in ["ServiceAccount", "Service", "Deployment"] {
        assert_eq!(by_name(&manifest, kind).len(), 1, "{kind}");
        chart.get(kind, RELEASE);
    }
    let mut manifest_apis: Vec<String> = by_name(&manifest, "APIService").into_keys().collect();
    let mut chart_apis: Vec<String> = by_name(&chart.docs, "APIService").into_keys().collect();
    manifest_apis.sort();
    chart_apis.sort();
    assert_eq!(manifest_apis, chart_apis);
    let kinds: Vec<&str> = manifest.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in kinds {
        // The Namespace is Helm's (--create-namespace), not the chart's.
        assert!(kind == "Namespace" || !chart.of_kind(kind).is_empty(), "the chart renders no {kind}");
    }

    // The container runs with the manifest's configuration (both in the managed mode), but for the certificate
    // directory, unused by both.
    let manifest_deployment: Deployment =
        serde_yaml_ng::from_value(by_name(&manifest, "Deployment").remove(RELEASE).unwrap()).unwrap();
    let manifest_container = manifest_deployment.spec.template.spec.unwrap().containers.remove(0);
    let manifest_config = Config::from_args(
        std::iter::once("custom-metrics-apiserver".to_owned()).chain(manifest_container.args.clone().unwrap()),
    )
    .unwrap();
    let mut chart_config = chart.config().unwrap();
    chart_config.cert = manifest_config.cert.clone();
    assert_eq!(chart_config, manifest_config);
    let container = chart.container();
    assert_eq!(container.resources, manifest_container.resources, "the store's budget follows the memory limit");
    assert_eq!(container.security_context, manifest_container.security_context);
}

#[test]
fn the_adapter_rbac_follows_an_existing_service_account() {
    let chart = render("serviceAccount:\n  create: false\n  name: platform-adapter\n");
    assert!(chart.of_kind("ServiceAccount").is_empty());
    assert_eq!(chart.pod().service_account_name.as_deref(), Some("platform-adapter"));
    for name in [format!("{RELEASE}:system:auth-delegator"), format!("{RELEASE}-resource-reader")] {
        let subjects: Vec<Subject> =
            serde_yaml_ng::from_value(chart.get("ClusterRoleBinding", &name)["subjects"].clone()).unwrap();
        assert_eq!(
            (subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
            ("platform-adapter", Some(NS)),
            "{name}"
        );
    }
    let reader = chart.get("RoleBinding", &format!("{RELEASE}-auth-reader"));
    assert_eq!(reader["metadata"]["namespace"].as_str(), Some("kube-system"));
    assert_eq!(reader["subjects"][0]["name"].as_str(), Some("platform-adapter"));
    assert!(refused("serviceAccount:\n  create: false\n").contains("serviceAccount.name is required"));

    let extra = "rbac:\n  extraResourceRules:\n    - {apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch]}\n";
    let role: ClusterRole = render(extra).typed("ClusterRole", &format!("{RELEASE}-resource-reader"));
    let last = role.rules.unwrap().pop().unwrap();
    assert_eq!(
        (last.api_groups.unwrap(), last.resources.unwrap()),
        (vec!["example.com".to_owned()], vec!["widgets".to_owned()])
    );
}

#[test]
fn writers_become_roles_and_bindings_for_their_service_accounts() {
    let values = r#"
writers:
  - name: rps
    namespace: shop
    serviceAccounts:
      - name: frontend
      - name: batch
        namespace: jobs
    custom: [pods/requests_per_second, deployments.apps/queue_length]
    external: [queue_depth]
  - name: node-temperature
    serviceAccounts:
      - name: sensor
        namespace: hardware
    custom: [nodes/temperature]
    verbs: [create, delete]
"#;
    let chart = render(values);
    let role: Role = chart.typed("Role", &format!("{RELEASE}-writer-rps"));
    assert_eq!(role.metadata.namespace.as_deref(), Some("shop"));
    let rules = role.rules.unwrap();
    let rule = |group: &str| rules.iter().find(|r| r.api_groups.as_deref() == Some(&[group.to_owned()][..])).unwrap();
    assert_eq!(
        rule("custom.metrics.k8s.io").resources.as_deref().unwrap(),
        ["pods/requests_per_second", "deployments.apps/queue_length"]
    );
    assert_eq!(rule("custom.metrics.k8s.io").verbs, ["create"]);
    assert_eq!(rule("external.metrics.k8s.io").resources.as_deref().unwrap(), ["queue_depth"]);
    let binding = chart.get("RoleBinding", &format!("{RELEASE}-writer-rps"));
    assert_eq!(binding["metadata"]["namespace"].as_str(), Some("shop"));
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("Role"));
    let subjects: Vec<Subject> = serde_yaml_ng::from_value(binding["subjects"].clone()).unwrap();
    let subjects: Vec<(&str, Option<&str>)> =
        subjects.iter().map(|s| (s.name.as_str(), s.namespace.as_deref())).collect();
    assert_eq!(subjects, [("frontend", Some("shop")), ("batch", Some("jobs"))]);

    let cluster_role: ClusterRole = chart.typed("ClusterRole", &format!("{RELEASE}-writer-node-temperature"));
    let rules = cluster_role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.as_deref().unwrap(), ["nodes/temperature"]);
    assert_eq!(rules[0].verbs, ["create", "delete"]);
    let binding = chart.get("ClusterRoleBinding", &format!("{RELEASE}-writer-node-temperature"));
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(binding["subjects"][0]["namespace"].as_str(), Some("hardware"));

    // The unbound writer of every metric, as in the manifest.
    let all: ClusterRole = chart.typed("ClusterRole", &format!("{RELEASE}-writer"));
    assert_eq!(all.rules.unwrap()[0].verbs, ["create"]);
    assert!(
        chart
            .of_kind("ClusterRoleBinding")
            .iter()
            .all(|b| b["roleRef"]["name"].as_str() != Some(&format!("{RELEASE}-writer")))
    );
}

#[test]
fn writers_that_would_grant_nothing_or_too_much_are_refused_with_what_is_wrong() {
    let writer = |fields: &str| format!("writers:\n  - {fields}\n");
    for (fields, message) in [
        ("{name: Bad_Name, serviceAccounts: [{name: a}], custom: [pods/q]}", r#"name "Bad_Name" must be a DNS label"#),
        ("{name: w, custom: [pods/q]}", "writers[w]: serviceAccounts is empty"),
        (
            "{name: w, serviceAccounts: [{namespace: x}], custom: [pods/q]}",
            "writers[w]: a ServiceAccount without a name",
        ),
        ("{name: w, serviceAccounts: [{name: a}]}", "writers[w]: neither custom nor external metrics"),
        (
            "{name: w, serviceAccounts: [{name: a}], custom: [pods.requests]}",
            r#"custom "pods.requests" is not <resource>/<metric>"#,
        ),
        ("{name: w, serviceAccounts: [{name: a}], external: [a/b]}", r#"external "a/b" is not a metric name"#),
        (
            "{name: w, serviceAccounts: [{name: a}], custom: [pods/q], verbs: [update]}",
            r#"verb "update": writes are authorized as create"#,
        ),
    ] {
        let error = refused(&writer(fields));
        assert!(error.contains(message), "{fields}: {error}");
    }
}

#[test]
fn extra_args_reach_the_program_and_bad_ones_fail_its_parser() {
    let chart = render("extraArgs: [\"--metric-ttl=10m\", \"--max-series=5000\"]\n");
    let config = chart.config().unwrap();
    assert_eq!(config.metric_ttl, Some(Duration::from_secs(600)));
    assert_eq!(config.limits.max_series, 5000);
    // What the chart renders is only as good as the flags it passes: a flag the program lacks is caught here.
    let error = render("extraArgs: [\"--no-such-flag\"]\n").config().unwrap_err();
    assert!(error.contains("--no-such-flag"), "{error}");
}

#[test]
fn scheduling_values_reach_the_pod_and_the_disruption_budget_selects_it() {
    let values = r#"
priorityClassName: ""
nodeSelector: {pool: system}
tolerations: [{key: dedicated, operator: Equal, value: system, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}]
podDisruptionBudget: {enabled: true, maxUnavailable: 1}
"#;
    let chart = render(values);
    let pod = chart.pod();
    assert_eq!(pod.priority_class_name, None);
    assert_eq!(pod.node_selector.unwrap().get("pool").map(String::as_str), Some("system"));
    assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("dedicated"));
    assert!(pod.affinity.unwrap().node_affinity.is_some());
    assert_eq!(pod.topology_spread_constraints.unwrap()[0].topology_key, "topology.kubernetes.io/zone");
    let pdb: PodDisruptionBudget = chart.typed("PodDisruptionBudget", RELEASE);
    let pdb_spec = pdb.spec.unwrap();
    assert_eq!(pdb_spec.selector.unwrap().match_labels, chart.deployment().spec.selector.match_labels);
    assert!(pdb_spec.min_available.is_none() && pdb_spec.max_unavailable.is_some());
    assert!(render("").of_kind("PodDisruptionBudget").is_empty(), "off by default");
    let error = refused("podDisruptionBudget: {enabled: true}\n");
    assert!(error.contains("needs one of minAvailable and maxUnavailable"), "{error}");
    assert_eq!(render("").pod().node_selector.unwrap().get("kubernetes.io/os").map(String::as_str), Some("linux"));
}

#[test]
fn each_store_renders_flags_the_program_accepts_and_redis_takes_its_password_from_the_secret() {
    use custom_metrics_apiserver::store::Backend;
    use custom_metrics_apiserver::store::flags::PASSWORD_ENV;
    // The default: the memory store, one replica, no password anywhere.
    let memory = render("");
    assert_eq!(memory.config().unwrap().store, Backend::Memory);
    let env = memory.container().env.unwrap_or_default();
    assert!(env.iter().all(|var| var.name != PASSWORD_ENV), "{env:?}");

    let values = "replicas: 3\nstore:\n  type: redis\n  redis:\n    url: redis://metrics@redis.data.svc:6380/2\n    \
                  passwordSecret: {name: redis-auth, key: secret}\n";
    let redis = render(values);
    assert_eq!(redis.deployment().spec.replicas, Some(3));
    let Backend::Redis(options) = redis.config().unwrap().store else {
        panic!("store.type: redis renders no redis:// store")
    };
    assert_eq!((options.host.as_str(), options.port, options.db), ("redis.data.svc", 6380, 2));
    assert_eq!(options.username.as_deref(), Some("metrics"));
    assert!(options.password.is_none(), "the password must not be in the arguments");
    let env = redis.container().env.unwrap();
    let passwords: Vec<_> = env.iter().filter(|var| var.name == PASSWORD_ENV).collect();
    assert_eq!(passwords.len(), 1, "{env:?}");
    let secret = passwords[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("redis-auth", "secret"));

    // Without a Secret: a Redis without a password.
    let no_password = render("store: {type: redis, redis: {url: \"redis://redis:6379\"}}\n");
    assert!(matches!(no_password.config().unwrap().store, Backend::Redis(_)));
    let env = no_password.container().env.unwrap_or_default();
    assert!(env.iter().all(|var| var.name != PASSWORD_ENV), "{env:?}");
}

#[test]
fn a_store_that_is_unknown_without_url_or_with_a_password_in_it_is_refused() {
    let error = refused("store: {type: disk}\n");
    assert!(error.contains(r#"store.type: "disk" is not one of memory, redis"#), "{error}");
    let error = refused("store: {type: redis}\n");
    assert!(error.contains("store.type=redis needs store.redis.url"), "{error}");
    let error = refused("store: {type: redis, redis: {url: \"redis://user:hunter2@redis:6379\"}}\n");
    assert!(error.contains("store.redis.url holds a password"), "{error}");
    assert!(!error.contains("hunter2"), "the refusal must not repeat the password: {error}");
    // Several replicas need the shared store, which takes them.
    let error = refused("replicas: 2\nstore: {type: memory}\n");
    assert!(error.contains("or store.type: redis to share the values between replicas"), "{error}");
}

#[test]
fn a_service_monitor_scrapes_metrics_over_verified_tls_with_the_scraper_role_bound() {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    assert!(render("").of_kind("ServiceMonitor").is_empty(), "off by default");
    let values = "metrics:\n  serviceMonitor:\n    enabled: true\n    additionalLabels: {release: kube-prometheus}\n    \
                  scraperServiceAccount: {name: prometheus-k8s, namespace: monitoring}\n";
    let chart = render(values);
    let monitor = chart.get("ServiceMonitor", RELEASE);
    assert_eq!(monitor["metadata"]["labels"]["release"].as_str(), Some("kube-prometheus"));
    // It selects the chart's Service and names a port that Service has.
    let service: Service = chart.typed("Service", RELEASE);
    let service_labels = service.metadata.labels.unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    for (key, value) in selector {
        assert_eq!(service_labels.get(key.as_str().unwrap()).map(String::as_str), value.as_str(), "{key:?}");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    let port = endpoint["port"].as_str().unwrap();
    assert!(service.spec.unwrap().ports.unwrap().iter().any(|p| p.name.as_deref() == Some(port)), "{port}");
    assert_eq!((endpoint["scheme"].as_str(), endpoint["path"].as_str()), (Some("https"), Some("/metrics")));
    // Verified: the name the managed certificate carries, against the CA of the Secret the adapter keeps it in.
    let tls = &endpoint["tlsConfig"];
    assert!(tls["insecureSkipVerify"].is_null(), "{tls:?}");
    assert_eq!(tls["serverName"].as_str(), Some(format!("{RELEASE}.{NS}.svc").as_str()));
    let secret = chart.args().iter().find_map(|a| a.strip_prefix("--certificate-secret-name=").map(str::to_owned));
    assert_eq!(tls["ca"]["secret"]["name"].as_str(), secret.as_deref());
    assert_eq!(tls["ca"]["secret"]["key"].as_str(), Some("ca.crt"));
    // The scraper's ServiceAccount may get /metrics, and nothing more comes with it.
    let binding: ClusterRoleBinding = chart.typed("ClusterRoleBinding", &format!("{RELEASE}-metrics-scraper"));
    let role: ClusterRole = chart.typed("ClusterRole", &binding.role_ref.name);
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].non_resource_urls.as_deref(), Some(&["/metrics".to_owned()][..]));
    assert_eq!(rules[0].verbs, ["get"]);
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), ("prometheus-k8s", Some("monitoring")));
    // Without a scraper ServiceAccount, no binding; a half-given one is refused.
    let unbound = render("metrics: {serviceMonitor: {enabled: true}}\n");
    assert!(unbound.try_get("ClusterRoleBinding", &format!("{RELEASE}-metrics-scraper")).is_none());
    let error = refused("metrics: {serviceMonitor: {enabled: true, scraperServiceAccount: {name: p}}}\n");
    assert!(error.contains("scraperServiceAccount.namespace is required"), "{error}");
}

#[test]
fn forwarding_renders_flags_the_program_accepts_with_the_neighbours_ca_mounted_and_its_group_readable() {
    let chart = render(
        "forward:\n  externalMetrics:\n    url: https://keda-operator-metrics-apiserver.keda.svc\n  caConfigMap:\n    name: keda-ca\n",
    );
    let config = chart.config().unwrap();
    let forward = config.forward.expect("no forwarding configured");
    assert_eq!(forward.external.as_deref(), Some("https://keda-operator-metrics-apiserver.keda.svc"));
    assert_eq!(forward.custom, None);
    assert_eq!(forward.token_file.as_deref(), Some(Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token")));
    // The CA file is the ConfigMap's key, mounted read-only.
    let ca_file = forward.ca_file.unwrap();
    let pod = chart.pod();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.config_map.as_ref().map(|c| c.name.as_str()) == Some("keda-ca"))
        .expect("no volume of the ConfigMap keda-ca");
    let mount = chart.container().volume_mounts.unwrap().into_iter().find(|m| m.name == volume.name).unwrap();
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(ca_file, Path::new(&mount.mount_path).join("ca.crt"));
    // The neighbour may let this adapter's ServiceAccount read exactly the forwarded group.
    let role = chart.get("ClusterRole", &format!("{RELEASE}-forwarder"));
    let strings = |value: &Value| -> Vec<String> {
        value.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(strings(&role["rules"][0]["apiGroups"]), ["external.metrics.k8s.io"]);
    assert_eq!(strings(&role["rules"][0]["verbs"]), ["get", "list"]);
    let binding = chart.get("ClusterRoleBinding", &format!("{RELEASE}-forwarder"));
    assert_eq!(binding["subjects"][0]["name"], RELEASE);
    // Without forwarding: no flag, no role.
    let plain = render("{}\n");
    assert_eq!(plain.config().unwrap().forward, None);
    assert!(plain.try_get("ClusterRole", &format!("{RELEASE}-forwarder")).is_none());
}

#[test]
fn forwarding_without_a_ca_for_https_or_with_a_token_over_http_is_refused() {
    let error = refused("forward:\n  customMetrics:\n    url: https://prometheus-adapter.monitoring.svc\n");
    assert!(error.contains("forward.caConfigMap.name"), "{error}");
    let error = refused("forward:\n  customMetrics:\n    url: http://prometheus-adapter.monitoring.svc\n");
    assert!(error.contains("forward.serviceAccountToken=false"), "{error}");
    let error = refused("forward:\n  customMetrics:\n    url: prometheus-adapter:443\n");
    assert!(error.contains("is not an https://"), "{error}");
    let plain = "forward:\n  customMetrics:\n    url: http://adapter.monitoring.svc\n  serviceAccountToken: false\n";
    let config = render(plain).config().unwrap().forward.unwrap();
    assert_eq!((config.custom.as_deref(), config.token_file), (Some("http://adapter.monitoring.svc"), None));
}
