# shellcheck shell=bash
# The adapter under test (docs/e2e-harness.md §4.3, profile A): its identity objects from the project manifest,
# the adapter itself as a local process on 127.0.0.1 in cluster mode, and its registration with kube-apiserver through an
# ExternalName Service (externalName: localhost) and the three APIServices with a caBundle for adapter-ca.crt.
# Needs common.sh sourced, the control plane up (PKI, ADMIN_KUBECONFIG) and ADAPTER_BIN set.
#
# E2E_DISCOVERY_REFRESH (default 3s) is the adapter's --discovery-refresh-interval: short, so that the suite sees
# several periodic discovery refreshes.
#
# Sets: ADAPTER_PORT (HTTPS, default 8443), ADAPTER_URL, WRITE_URL (the same secure port), WRITER_TOKEN.

ADAPTER_APISERVICES=(v1beta2.custom.metrics.k8s.io v1beta1.custom.metrics.k8s.io v1beta1.external.metrics.k8s.io)

# manifest_identity_objects: the project manifest without its Deployment, Service and APIServices
# (i.e. the Namespace, ServiceAccount and RBAC objects), as a YAML stream on stdout.
manifest_identity_objects() {
  python3 - "$REPO/deploy/k8s/deployment.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
keep = [d for d in docs if d.get("kind") not in ("Deployment", "Service", "APIService")]
kinds = sorted({d["kind"] for d in keep})
if "ServiceAccount" not in kinds or not any(k.endswith("Binding") for k in kinds):
    sys.exit("deploy/k8s/deployment.yaml: no ServiceAccount or RBAC bindings found (kinds: %s)" % kinds)
sys.stderr.write("manifest objects applied: %s\n" % ", ".join("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in keep))
yaml.safe_dump_all(keep, sys.stdout, sort_keys=False)
EOF
}

# apply_adapter_identity: kubectl apply the Namespace, ServiceAccount and RBAC of the project manifest.
apply_adapter_identity() {
  manifest_identity_objects >"$W/adapter-identity.yaml" || return 1
  kubectl apply -f "$W/adapter-identity.yaml" >&2
}

# sa_kubeconfig NAMESPACE SERVICEACCOUNT FILE: a kubeconfig holding a fresh token of the ServiceAccount, as
# a pod would have mounted.
sa_kubeconfig() {
  local token
  token=$(kubectl -n "$1" create token "$2" --duration=2h) || return 1
  kubectl config --kubeconfig="$3" set-cluster e2e --server="$APISERVER_URL" \
    --certificate-authority="$PKI/ca.crt" --embed-certs=true >/dev/null &&
    kubectl config --kubeconfig="$3" set-credentials "$2" --token="$token" >/dev/null &&
    kubectl config --kubeconfig="$3" set-context e2e --cluster=e2e --user="$2" >/dev/null &&
    kubectl config --kubeconfig="$3" use-context e2e >/dev/null
}

# start_adapter: run the adapter in cluster mode, as its ServiceAccount (kubeconfig with its token), with the e2e
# serving certificate; writes go to the secure port with a bearer token. Waits for /readyz (label index synced).
start_adapter() {
  ADAPTER_PORT=${E2E_ADAPTER_PORT:-8443}
  if ! port_free "$ADAPTER_PORT"; then
    log "127.0.0.1:$ADAPTER_PORT is in use; the adapter gets a free port instead"
    ADAPTER_PORT=$(free_port)
  fi
  ADAPTER_URL=https://127.0.0.1:$ADAPTER_PORT
  WRITE_URL=$ADAPTER_URL
  export ADAPTER_PORT ADAPTER_URL WRITE_URL
  sa_kubeconfig custom-metrics custom-metrics-apiserver "$W/adapter.kubeconfig" || return 1
  start_bg adapter "$ADAPTER_BIN" --kubeconfig="$W/adapter.kubeconfig" --bind-address=127.0.0.1 \
    --secure-port="$ADAPTER_PORT" \
    --tls-cert-file="$PKI/adapter.crt" --tls-private-key-file="$PKI/adapter.key" \
    --deleted-object-grace-period="${E2E_DELETED_OBJECT_GRACE:-5s}" \
    --discovery-refresh-interval="${E2E_DISCOVERY_REFRESH:-3s}" \
    --log-format=json --v=4
  wait_until "$E2E_TIMEOUT" "adapter $ADAPTER_URL/readyz" --proc adapter adapter_ready || return 1
  log "adapter ready: HTTPS $ADAPTER_URL (API and token-authorized writes)"
}

# make_writer: ServiceAccount e2e/e2e-writer bound to the manifest's ClusterRole custom-metrics-writer (may write
# every metric); WRITER_TOKEN is its token, used by write_metric.
make_writer() {
  kubectl -n custom-metrics create serviceaccount e2e-writer >&2 || return 1
  kubectl create clusterrolebinding e2e-writer --clusterrole=custom-metrics-writer \
    --serviceaccount=custom-metrics:e2e-writer >&2 || return 1
  WRITER_TOKEN=$(kubectl -n custom-metrics create token e2e-writer --duration=2h) || return 1
  export WRITER_TOKEN
}

# The certificate is verified against adapter-ca.crt, exactly as the aggregator will.
adapter_ready() { [ "$(curl -fsS --max-time 2 --cacert "$PKI/adapter-ca.crt" "$ADAPTER_URL/readyz")" = ok ]; }

# register_adapter: ExternalName Service + three APIServices (caBundle, never insecureSkipTLSVerify);
# wait until all three are Available.
register_adapter() {
  ADAPTER_CA_B64=$(base64 -w0 "$PKI/adapter-ca.crt")
  export ADAPTER_CA_B64
  render "$E2E_DIR/manifests/adapter-registration.yaml" >"$W/adapter-registration.yaml" || return 1
  if grep -q insecureSkipTLSVerify "$W/adapter-registration.yaml"; then
    log "adapter-registration.yaml must not skip TLS verification"
    return 1
  fi
  kubectl apply -f "$W/adapter-registration.yaml" >&2 || return 1
  local a
  for a in "${ADAPTER_APISERVICES[@]}"; do
    if ! kubectl wait --for=condition=Available --timeout="${E2E_TIMEOUT}s" "apiservice/$a" >&2; then
      log "APIService $a is not Available:"
      kubectl get apiservice "$a" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2
      return 1
    fi
  done
  log "APIServices Available: ${ADAPTER_APISERVICES[*]}"
}

# write_metric PATH VALUE: POST VALUE (a JSON quantity string) to the adapter's write API at PATH
# (PATH starts with /write-metrics or /write-external-metrics, may carry a query) over TLS, with the e2e
# writer's bearer token. Fails on non-200.
write_metric() {
  local path=$1 value=$2 code
  code=$(write_status "$WRITER_TOKEN" "$path" "$value") || return 1
  if [ "$code" != 200 ]; then
    log "write $path = $value answered $code: $(cat "$W/last-write.out")"
    return 1
  fi
}

# write_status TOKEN PATH VALUE: POST VALUE to the write API with TOKEN (none if empty); prints the HTTP status,
# the body goes to $W/last-write.out.
write_status() {
  local auth=()
  [ -n "$1" ] && auth=(-H "Authorization: Bearer $1")
  curl -sS -o "$W/last-write.out" -w '%{http_code}' --max-time 5 --cacert "$PKI/adapter-ca.crt" "${auth[@]}" \
    -X POST "$WRITE_URL$2" -d "\"$3\""
}
