# shellcheck shell=bash
# The adapter under test (docs/e2e-harness.md §4.3, profile A): its identity objects from the project manifest,
# the adapter itself as a local process on 127.0.0.1, and its registration with kube-apiserver through an
# ExternalName Service (externalName: localhost) and the three APIServices with a caBundle for adapter-ca.crt.
# Needs common.sh sourced, the control plane up (PKI, ADMIN_KUBECONFIG) and ADAPTER_BIN set.
#
# Sets: ADAPTER_PORT (HTTPS, default 8443), ADAPTER_WRITE_PORT (plain HTTP), ADAPTER_URL, WRITE_URL.

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

# start_adapter: run the adapter in standalone mode with the e2e serving certificate; wait for /readyz.
start_adapter() {
  ADAPTER_PORT=${E2E_ADAPTER_PORT:-8443}
  if ! port_free "$ADAPTER_PORT"; then
    log "127.0.0.1:$ADAPTER_PORT is in use; the adapter gets a free port instead"
    ADAPTER_PORT=$(free_port)
  fi
  ADAPTER_WRITE_PORT=$(free_port)
  ADAPTER_URL=https://127.0.0.1:$ADAPTER_PORT
  WRITE_URL=http://127.0.0.1:$ADAPTER_WRITE_PORT
  export ADAPTER_PORT ADAPTER_WRITE_PORT ADAPTER_URL WRITE_URL
  start_bg adapter "$ADAPTER_BIN" --standalone --bind-address=127.0.0.1 \
    --secure-port="$ADAPTER_PORT" --write-port="$ADAPTER_WRITE_PORT" \
    --tls-cert-file="$PKI/adapter.crt" --tls-private-key-file="$PKI/adapter.key" \
    --log-format=json
  wait_until "$E2E_TIMEOUT" "adapter $ADAPTER_URL/readyz" --proc adapter adapter_ready || return 1
  wait_until "$E2E_TIMEOUT" "adapter write port $WRITE_URL/readyz" --proc adapter \
    curl -fsS --max-time 2 "$WRITE_URL/readyz" || return 1
  log "adapter ready: HTTPS $ADAPTER_URL, writes $WRITE_URL"
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
# (PATH starts with /write-metrics or /write-external-metrics, may carry a query). Fails on non-200.
write_metric() {
  local path=$1 value=$2 code
  code=$(curl -sS -o "$W/last-write.out" -w '%{http_code}' --max-time 5 -X POST "$WRITE_URL$path" -d "\"$value\"") || return 1
  if [ "$code" != 200 ]; then
    log "write $path = $value answered $code: $(cat "$W/last-write.out")"
    return 1
  fi
}
