# shellcheck shell=bash
# The Helm chart (deploy/helm/custom-metrics-apiserver) installed into the e2e control plane (docs/e2e-harness.md
# §11). Runs after the scenarios: the chart registers the same three APIServices as the harness, so the harness's
# are deleted first. The release goes into namespace e2e-helm with tls.mode=existingSecret (a Secret of the e2e
# adapter certificate, adapter-ca.crt as the caBundle): cert-manager is not part of the harness. Pods cannot run
# (no kubelet), so the checks are on what kube-apiserver accepted and on what the chart's RBAC grants; the chart's
# writer is checked against the harness's running adapter, which asks kube-apiserver the same SubjectAccessReview
# as an installed adapter would.
# Needs common.sh, assert.sh and adapter.sh sourced, the control plane and the adapter up, KUBECONFIG (admin).
# HELM names the helm binary, else `helm` on the PATH (.ci/run installs it).

HELM_NS=e2e-helm
HELM_RELEASE=custom-metrics-apiserver

helm_cmd() {
  # Helm's own cache, configuration and data stay in the workdir.
  HELM_CACHE_HOME=$W/helm/cache HELM_CONFIG_HOME=$W/helm/config HELM_DATA_HOME=$W/helm/data "${HELM:-helm}" "$@"
}

# helm_install: the namespace, the serving certificate's Secret and a writer ServiceAccount, then the chart with
# the optional objects switched on (a PodDisruptionBudget, a topology spread constraint, a writer), so that
# kube-apiserver validates them too.
helm_install() {
  kubectl create namespace "$HELM_NS" &&
    kubectl -n "$HELM_NS" create secret tls adapter-serving-cert --cert="$PKI/adapter.crt" --key="$PKI/adapter.key" &&
    kubectl -n "$HELM_NS" create serviceaccount metrics-writer || return 1
  cat >"$W/helm-values.yaml" <<EOF
tls:
  mode: existingSecret
  existingSecret:
    name: adapter-serving-cert
podDisruptionBudget: {enabled: true, maxUnavailable: 1}
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
writers:
  - name: rps
    namespace: $HELM_NS
    serviceAccounts: [{name: metrics-writer}]
    custom: [pods/requests_per_second]
EOF
  helm_cmd install "$HELM_RELEASE" "$REPO/deploy/helm/custom-metrics-apiserver" --namespace "$HELM_NS" \
    --values "$W/helm-values.yaml" --set-file tls.existingSecret.caBundle="$PKI/adapter-ca.crt" --timeout 60s
}

# helm_apiservices: the three APIServices are the release's, point at its Service and carry the CA, never
# insecureSkipTLSVerify.
helm_apiservices() {
  kubectl get apiservice "${ADAPTER_APISERVICES[@]}" -o json >"$W/helm-apiservices.json" || return 1
  python3 - "$W/helm-apiservices.json" "$PKI/adapter-ca.crt" "$HELM_NS" "$HELM_RELEASE" <<'EOF'
import base64, json, sys
items = json.load(open(sys.argv[1]))["items"]
ca = open(sys.argv[2], "rb").read()
ns, release = sys.argv[3], sys.argv[4]
want = {"v1beta2.custom.metrics.k8s.io": 200, "v1beta1.custom.metrics.k8s.io": 100, "v1beta1.external.metrics.k8s.io": 100}
got = {item["metadata"]["name"]: item for item in items}
if set(got) != set(want):
    sys.exit("APIServices: %s" % sorted(got))
for name, priority in want.items():
    meta, spec = got[name]["metadata"], got[name]["spec"]
    problems = []
    if meta.get("labels", {}).get("app.kubernetes.io/managed-by") != "Helm":
        problems.append("not managed by Helm: %s" % meta.get("labels"))
    if meta.get("annotations", {}).get("meta.helm.sh/release-namespace") != ns:
        problems.append("not of the release in %s: %s" % (ns, meta.get("annotations")))
    if spec.get("service") != {"name": release, "namespace": ns, "port": 443}:
        problems.append("service %s" % spec.get("service"))
    if spec.get("versionPriority") != priority:
        problems.append("versionPriority %s, not %s" % (spec.get("versionPriority"), priority))
    if spec.get("insecureSkipTLSVerify"):
        problems.append("insecureSkipTLSVerify")
    if base64.b64decode(spec.get("caBundle", "")) != ca:
        problems.append("the caBundle is not adapter-ca.crt")
    if problems:
        sys.exit("%s: %s" % (name, "; ".join(problems)))
    print("%s: release %s/%s, service %s, versionPriority %d, caBundle adapter-ca.crt" % (name, ns, release, spec["service"], priority))
EOF
}

# helm_adapter_rbac: what the chart grants its ServiceAccount (delegated authentication and authorization, the
# authentication ConfigMap, the label index's watches), and not more than that in kube-system.
helm_adapter_rbac() {
  local sa=system:serviceaccount:$HELM_NS:$HELM_RELEASE
  kubectl auth can-i --quiet create tokenreviews.authentication.k8s.io --as="$sa" &&
    kubectl auth can-i --quiet create subjectaccessreviews.authorization.k8s.io --as="$sa" &&
    kubectl -n kube-system auth can-i --quiet get configmaps/extension-apiserver-authentication --as="$sa" &&
    kubectl auth can-i --quiet watch pods --all-namespaces --as="$sa" &&
    kubectl auth can-i --quiet list deployments.apps --all-namespaces --as="$sa" &&
    ! kubectl -n kube-system auth can-i --quiet get secrets --as="$sa"
}

# helm_writer: the writer of the `writers` value may write pods/requests_per_second in its namespace and nothing
# else. Denied answers are cached by the adapter for 10 s, hence the bounded wait for the first 200.
helm_writer() {
  local token base=/write-metrics/namespaces/$HELM_NS/pods/helm-target
  token=$(kubectl -n "$HELM_NS" create token metrics-writer --duration=10m) || return 1
  if ! wait_until 30 "the chart's writer may write" helm_write_answers "$token" "$base/requests_per_second" 200; then
    cat "$W/last-write.out"
    return 1
  fi
  helm_write_answers "$token" "$base/other_metric" 403 &&
    helm_write_answers "$token" "/write-metrics/namespaces/default/pods/helm-target/requests_per_second" 403
}

# helm_write_answers TOKEN PATH CODE: a write of "1" to PATH with TOKEN answers CODE.
helm_write_answers() { [ "$(write_status "$1" "$2" 1)" = "$3" ]; }

# helm_uninstall: the release and its cluster-scoped objects go away.
helm_uninstall() {
  helm_cmd uninstall "$HELM_RELEASE" --namespace "$HELM_NS" --wait --timeout 60s || return 1
  local left
  left=$(kubectl get apiservice,clusterrole,clusterrolebinding -l app.kubernetes.io/instance="$HELM_RELEASE" -o name)
  [ -z "$left" ] || { echo "left after helm uninstall: $left"; return 1; }
}

# helm_checks: the chart's checks, one line each.
helm_checks() {
  if ! command -v "${HELM:-helm}" >/dev/null; then
    record "helm install deploy/helm/custom-metrics-apiserver" fail \
      "helm not found: set HELM or put helm on the PATH (.ci/run installs it)"
    return 0
  fi
  check "helm: the harness's APIServices deleted (the chart registers the same names)" \
    kubectl delete apiservice "${ADAPTER_APISERVICES[@]}"
  check "helm install (tls.mode=existingSecret, a writer, a PodDisruptionBudget) into namespace $HELM_NS" helm_install
  check "kubectl get apiservice: the chart's three APIServices, its Service, the CA as caBundle" helm_apiservices
  # The objects, as kubectl shows them (Available stays False: no pod serves them).
  kubectl get apiservice "${ADAPTER_APISERVICES[@]}" 2>&1 | sed 's/^/      | /' || true
  check "the chart's Deployment, Service, ServiceAccount, PodDisruptionBudget and writer Role exist" \
    kubectl -n "$HELM_NS" get "deployment/$HELM_RELEASE" "service/$HELM_RELEASE" "serviceaccount/$HELM_RELEASE" \
    "poddisruptionbudget/$HELM_RELEASE" "role/$HELM_RELEASE-writer-rps" "rolebinding/$HELM_RELEASE-writer-rps"
  check "the chart's RBAC: token and access reviews, the authentication ConfigMap, watches; no Secrets" helm_adapter_rbac
  check "the chart's writer may write its metric through the adapter (200), not another one (403)" helm_writer
  check "helm uninstall removes the release's APIServices and cluster roles" helm_uninstall
}
