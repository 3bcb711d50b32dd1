//! The deployment manifest agrees with the program: its arguments parse as our flags, its ports and probes
//! point at what the program serves, and it registers the three APIServices with the priorities HPA relies on.

use custom_metrics_apiserver::cluster::certificates::apiservice_names;
use custom_metrics_apiserver::config::{Config, WriteAuth};
use serde_yaml_ng::Value;

fn documents() -> Vec<Value> {
    documents_of("deployment.yaml")
}

fn documents_of(file: &str) -> Vec<Value> {
    let path = format!("{}/deploy/k8s/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifest"))
}

/// The container's arguments through the program's own flag parser.
fn config_of(deployment: &Value) -> Config {
    let args = args_of(deployment);
    Config::from_args(std::iter::once("custom-metrics-apiserver").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("manifest args {args:?} are refused: {e}"))
}

fn args_of(deployment: &Value) -> Vec<&str> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect()
}

#[test]
fn the_container_arguments_are_valid_flags_listening_where_the_ports_say() {
    for file in ["deployment.yaml", "ha.yaml"] {
        container_arguments_are_valid_flags_listening_where_the_ports_say(&documents_of(file));
    }
}

fn container_arguments_are_valid_flags_listening_where_the_ports_say(docs: &[Value]) {
    let deployment = find(docs, "Deployment", "custom-metrics-apiserver");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let config = config_of(deployment);
    assert!(config.secure_addr.ip().is_unspecified(), "the pod must listen on all interfaces");
    assert!(config.cluster().is_some(), "the manifest must run the adapter in cluster mode");
    assert!(config.cluster().unwrap().kubeconfig.is_none(), "in a pod the adapter uses its ServiceAccount");
    assert_eq!(config.write_auth, WriteAuth::Token);
    assert_eq!(config.write_addr, None, "no plain-HTTP listener: tokens travel over TLS only");
    assert!(config.manage_certificates, "the adapter manages its certificate and the caBundle");
    let env = container["env"].as_sequence().unwrap();
    let namespace = env.iter().find(|e| e["name"].as_str() == Some("CUSTOM_METRICS_SERVICE_NAMESPACE")).unwrap();
    assert_eq!(namespace["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("metadata.namespace"));

    let port = |name: &str| {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap()["containerPort"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(port("https"), u64::from(config.secure_addr.port()));
    assert_eq!(container["ports"].as_sequence().unwrap().len(), 1);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/livez"));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"].as_str(), Some("HTTPS"));

    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    let pod_security = &deployment["spec"]["template"]["spec"]["securityContext"];
    let non_root = security["runAsNonRoot"].as_bool().or(pod_security["runAsNonRoot"].as_bool());
    assert_eq!(non_root, Some(true));
    assert!(container["resources"]["requests"]["memory"].is_string());
}

#[test]
fn the_service_maps_443_to_the_https_port() {
    let docs = documents();
    let service = find(&docs, "Service", "custom-metrics-apiserver");
    assert_eq!(service["metadata"]["namespace"].as_str(), Some("custom-metrics"));
    let ports: Vec<(u64, &str)> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_u64().unwrap(), p["targetPort"].as_str().unwrap()))
        .collect();
    assert_eq!(ports, [(443, "https")]);
}

#[test]
fn the_three_apiservices_point_at_the_service_with_v1beta2_preferred() {
    let docs = documents();
    for (name, priority) in [
        ("v1beta1.custom.metrics.k8s.io", 100),
        ("v1beta2.custom.metrics.k8s.io", 200),
        ("v1beta1.external.metrics.k8s.io", 100),
    ] {
        let api = find(&docs, "APIService", name);
        let (version, group) = name.split_once('.').unwrap();
        assert_eq!(api["spec"]["group"].as_str(), Some(group));
        assert_eq!(api["spec"]["version"].as_str(), Some(version));
        assert_eq!(api["spec"]["versionPriority"].as_u64(), Some(priority));
        assert_eq!(api["spec"]["service"]["name"].as_str(), Some("custom-metrics-apiserver"));
        assert_eq!(api["spec"]["service"]["namespace"].as_str(), Some("custom-metrics"));
        assert_eq!(api["spec"]["service"]["port"].as_u64(), Some(443));
    }
}

#[test]
fn the_apiservices_verify_the_adapter_with_the_ca_bundle_it_writes() {
    let docs = documents();
    for name in apiservice_names() {
        let api = find(&docs, "APIService", &name);
        assert!(api["spec"]["insecureSkipTLSVerify"].is_null(), "{name} skips TLS verification");
        assert!(api["spec"]["caBundle"].is_null(), "{name}: the adapter writes the caBundle");
    }
}

/// The rules of the Role or ClusterRole bound to the adapter's ServiceAccount by the binding `name`.
fn bound_rules(docs: &[Value], binding_kind: &str, name: &str) -> Vec<Value> {
    let binding = find(docs, binding_kind, name);
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some("custom-metrics-apiserver"));
    assert_eq!(binding["subjects"][0]["namespace"].as_str(), Some("custom-metrics"));
    let kind = binding["roleRef"]["kind"].as_str().unwrap();
    let role = find(docs, kind, binding["roleRef"]["name"].as_str().unwrap());
    if kind == "Role" {
        assert_eq!(role["metadata"]["namespace"], binding["metadata"]["namespace"]);
    }
    role["rules"].as_sequence().unwrap().clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[test]
fn rbac_lets_the_adapter_keep_its_secret_and_patch_exactly_its_apiservices() {
    let docs = documents();
    let rules = bound_rules(&docs, "ClusterRoleBinding", "custom-metrics-apiserver-apiservices");
    assert_eq!(rules.len(), 1);
    assert_eq!(strings(&rules[0]["apiGroups"]), ["apiregistration.k8s.io"]);
    assert_eq!(strings(&rules[0]["resources"]), ["apiservices"]);
    let mut names = strings(&rules[0]["resourceNames"]);
    names.sort();
    let mut expected = apiservice_names();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(strings(&rules[0]["verbs"]), ["get", "patch"]);

    let secret = Config::from_args(["custom-metrics-apiserver"])
        .unwrap()
        .cluster()
        .unwrap()
        .certificates
        .certificate_secret_name
        .clone();
    let rules = bound_rules(&docs, "RoleBinding", "custom-metrics-apiserver-certificates");
    let mut by_verb: Vec<(String, Vec<String>)> = rules
        .iter()
        .flat_map(|rule| {
            assert_eq!(strings(&rule["apiGroups"]), [""]);
            assert_eq!(strings(&rule["resources"]), ["secrets"]);
            let names = strings(&rule["resourceNames"]);
            strings(&rule["verbs"]).into_iter().map(move |verb| (verb, names.clone()))
        })
        .collect();
    by_verb.sort();
    assert_eq!(
        by_verb,
        [
            ("create".to_string(), vec![]),
            ("get".to_string(), vec![secret.clone()]),
            ("update".to_string(), vec![secret])
        ]
    );
}

#[test]
fn rbac_delegates_auth_and_lets_the_hpa_controller_read_both_groups() {
    let docs = documents();
    let delegator = find(&docs, "ClusterRoleBinding", "custom-metrics:system:auth-delegator");
    assert_eq!(delegator["roleRef"]["name"].as_str(), Some("system:auth-delegator"));
    let reader = find(&docs, "RoleBinding", "custom-metrics-auth-reader");
    assert_eq!(reader["metadata"]["namespace"].as_str(), Some("kube-system"));
    assert_eq!(reader["roleRef"]["name"].as_str(), Some("extension-apiserver-authentication-reader"));

    let hpa = find(&docs, "ClusterRoleBinding", "hpa-controller-custom-metrics");
    assert_eq!(hpa["subjects"][0]["name"].as_str(), Some("horizontal-pod-autoscaler"));
    assert_eq!(hpa["subjects"][0]["namespace"].as_str(), Some("kube-system"));
    let role = find(&docs, "ClusterRole", hpa["roleRef"]["name"].as_str().unwrap());
    let groups: Vec<&str> = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["apiGroups"].as_sequence().unwrap().iter().map(|g| g.as_str().unwrap()))
        .collect();
    assert!(groups.contains(&"custom.metrics.k8s.io") && groups.contains(&"external.metrics.k8s.io"), "{groups:?}");
}

#[test]
fn scrapers_get_a_role_allowing_exactly_get_on_the_metrics_path() {
    let docs = documents();
    let role = find(&docs, "ClusterRole", "custom-metrics-apiserver-metrics-reader");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(strings(&rules[0]["nonResourceURLs"]), [custom_metrics_apiserver::metrics::METRICS_PATH]);
    assert_eq!(strings(&rules[0]["verbs"]), ["get"]);
    assert!(rules[0]["apiGroups"].is_null() && rules[0]["resources"].is_null(), "{:?}", rules[0]);
}

#[test]
fn the_example_writer_may_create_exactly_one_metric() {
    let docs = documents_of("example-writer.yaml");
    let account = find(&docs, "ServiceAccount", "metrics-writer");
    let namespace = account["metadata"]["namespace"].as_str().unwrap();
    let binding = find(&docs, "RoleBinding", "metrics-writer-requests-per-second");
    assert_eq!(binding["subjects"][0]["name"].as_str(), Some("metrics-writer"));
    assert_eq!(binding["subjects"][0]["namespace"].as_str(), Some(namespace));
    let role = find(&docs, "Role", binding["roleRef"]["name"].as_str().unwrap());
    assert_eq!(role["metadata"]["namespace"].as_str(), Some(namespace));
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    fn strings(v: &Value) -> Vec<&str> {
        v.as_sequence().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
    }
    assert_eq!(strings(&rules[0]["apiGroups"]), ["custom.metrics.k8s.io"]);
    assert_eq!(strings(&rules[0]["resources"]), ["pods/requests_per_second"]);
    assert_eq!(strings(&rules[0]["verbs"]), ["create"]);
}

#[test]
fn the_memory_limit_gives_the_default_store_budget() {
    use custom_metrics_apiserver::store::{DEFAULT_MAX_STORE_BYTES, budget};
    let docs = documents();
    let deployment = find(&docs, "Deployment", "custom-metrics-apiserver");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let limit = container["resources"]["limits"]["memory"].as_str().unwrap();
    let mebibytes: u64 = limit.strip_suffix("Mi").and_then(|m| m.parse().ok()).expect("a limit in Mi");
    // In the pod the budget is derived from this limit (cgroup); outside a container it is the fixed default. Both
    // must agree, so that the README's figures hold in either case.
    assert_eq!(budget::from_memory_limit(mebibytes << 20), DEFAULT_MAX_STORE_BYTES);
}

// The HA variant (deploy/k8s/ha.yaml): deployment.yaml with replicas on the Redis store.

/// deployment.yaml's Deployment with what ha.yaml changes taken out of both, so that the rest must be equal.
fn without_ha_changes(deployment: &Value) -> Value {
    let mut d = deployment.clone();
    let spec = d["spec"].as_mapping_mut().unwrap();
    spec.remove("replicas");
    spec.remove("strategy");
    let pod = d["spec"]["template"]["spec"].as_mapping_mut().unwrap();
    pod.remove("affinity");
    pod.remove("topologySpreadConstraints");
    let container = d["spec"]["template"]["spec"]["containers"][0].as_mapping_mut().unwrap();
    container.remove("env");
    let args = container.get_mut("args").unwrap().as_sequence_mut().unwrap();
    args.retain(|a| !a.as_str().unwrap().starts_with("--store="));
    d
}

#[test]
fn the_ha_manifest_is_deployment_yaml_but_for_its_deployment_and_disruption_budget() {
    let base = documents();
    let ha = documents_of("ha.yaml");
    let key = |d: &Value| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap());
    let mut base_keys: Vec<String> = base.iter().map(key).collect();
    base_keys.push("PodDisruptionBudget/custom-metrics-apiserver".into());
    base_keys.sort();
    let mut ha_keys: Vec<String> = ha.iter().map(key).collect();
    ha_keys.sort();
    assert_eq!(ha_keys, base_keys, "ha.yaml must hold deployment.yaml's objects and a PodDisruptionBudget");
    for doc in &base {
        let other = find(&ha, doc["kind"].as_str().unwrap(), doc["metadata"]["name"].as_str().unwrap());
        if doc["kind"].as_str() == Some("Deployment") {
            assert_eq!(
                without_ha_changes(other),
                without_ha_changes(doc),
                "the Deployments differ beyond the HA changes"
            );
            // The stock arguments all stay, in order, with the store added.
            let (base_args, ha_args) = (args_of(doc), args_of(other));
            assert_eq!(ha_args.iter().filter(|a| !a.starts_with("--store=")).copied().collect::<Vec<_>>(), base_args);
        } else {
            assert_eq!(other, doc, "{} differs between deployment.yaml and ha.yaml", key(doc));
        }
    }
}

#[test]
fn the_ha_manifest_runs_two_replicas_on_redis_with_the_password_from_a_secret() {
    use custom_metrics_apiserver::store::Backend;
    use custom_metrics_apiserver::store::flags::PASSWORD_ENV;
    let docs = documents_of("ha.yaml");
    let deployment = find(&docs, "Deployment", "custom-metrics-apiserver");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    let Backend::Redis(redis) = config_of(deployment).store else { panic!("ha.yaml must choose a redis:// store") };
    assert!(redis.password.is_none(), "the password must not sit in the arguments");
    assert!(!args_of(deployment).iter().any(|a| a.starts_with("--store-password")), "the password comes from the env");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_sequence().unwrap();
    let passwords: Vec<&Value> = env.iter().filter(|var| var["name"].as_str() == Some(PASSWORD_ENV)).collect();
    assert_eq!(passwords.len(), 1, "{env:?}");
    let secret = &passwords[0]["valueFrom"]["secretKeyRef"];
    assert_eq!(secret["name"].as_str(), Some("custom-metrics-apiserver-redis"));
    assert_eq!(secret["key"].as_str(), Some("password"));
    assert!(secret["optional"].is_null(), "without the Secret the pods must not start without a password");
    // A rolling update never takes both replicas at once.
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(), Some(1));
}

#[test]
fn the_ha_replicas_are_kept_apart_and_a_disruption_budget_keeps_one_up() {
    let docs = documents_of("ha.yaml");
    let deployment = find(&docs, "Deployment", "custom-metrics-apiserver");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], pod_labels);
    let pod = &deployment["spec"]["template"]["spec"];
    let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["podAffinityTerm"]["topologyKey"].as_str(), Some("kubernetes.io/hostname"));
    assert_eq!(&anti["podAffinityTerm"]["labelSelector"]["matchLabels"], pod_labels);
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"].as_str(), Some("topology.kubernetes.io/zone"));
    assert_eq!(&spread["labelSelector"]["matchLabels"], pod_labels);

    let pdb = find(&docs, "PodDisruptionBudget", "custom-metrics-apiserver");
    assert_eq!(pdb["metadata"]["namespace"], deployment["metadata"]["namespace"]);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], pod_labels);
    let min_available = pdb["spec"]["minAvailable"].as_u64().unwrap();
    assert!(
        (1..deployment["spec"]["replicas"].as_u64().unwrap()).contains(&min_available),
        "minAvailable {min_available} must keep one replica up and still allow a drain"
    );
}
