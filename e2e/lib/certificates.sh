# shellcheck shell=bash
# The managed serving certificate (--manage-certificates, docs/architecture.md §11) against the real control plane
# (docs/e2e-harness.md §13). Runs after the scenarios: the three APIServices are registered again WITHOUT a caBundle,
# at a second adapter started with --manage-certificates as the manifest's ServiceAccount (so with the manifest's
# RBAC for its Secret and the APIServices); they must become Available once it has written its CA into them. Its
# certificate lives E2E_CERT_VALIDITY (45 s; renewed at 2/3, 30 s) with a sync every E2E_CERT_SYNC (3 s), so a
# renewal happens within the phase: reads through kube-apiserver must keep working, an HPA on the metric must keep
# reading it, and the APIServices must stay Available across it. The second adapter is stopped at the end: the Helm chart's step registers the APIServices
# again and must find nobody rewriting their caBundle.
# Needs common.sh, assert.sh and adapter.sh sourced, the control plane and the harness's adapter up (its
# kubeconfig, WRITER_TOKEN), KUBECONFIG (admin).

CERT_NS=custom-metrics
CERT_SECRET=custom-metrics-apiserver-certs
CERT_SERVER_NAME=custom-metrics-apiserver.custom-metrics.svc
CERT_METRIC=e2e_rotation
# The value and the HPA reading it live in a namespace of their own, deleted at the end.
CERT_APP_NS=e2e-certs
CERT_READ=/apis/external.metrics.k8s.io/v1beta1/namespaces/$CERT_APP_NS/$CERT_METRIC

# certificates_register: the three APIServices at the managed adapter's port, the harness's registration without
# its caBundle lines; fails when the rendered objects still carry one.
certificates_register() {
  kubectl delete apiservice "${ADAPTER_APISERVICES[@]}" --ignore-not-found >&2 || return 1
  ADAPTER_PORT=$MANAGED_PORT ADAPTER_CA_B64=unused render "$E2E_DIR/manifests/adapter-registration.yaml" |
    grep -v '^  caBundle:' >"$W/managed-registration.yaml" || return 1
  kubectl apply -f "$W/managed-registration.yaml" >&2 || return 1
  local a bundle
  for a in "${ADAPTER_APISERVICES[@]}"; do
    bundle=$(kubectl get apiservice "$a" -o jsonpath='{.spec.caBundle}') || return 1
    [ -z "$bundle" ] || { log "APIService $a has a caBundle before the adapter started"; return 1; }
  done
}

# certificates_start: the managed adapter, as the manifest's ServiceAccount; ready once its Secret exists and its
# /readyz answers ok, verified against the Secret's CA for the Service's name.
certificates_start() {
  MANAGED_PORT=$(free_port)
  certificates_register || return 1
  start_bg managed-adapter "$ADAPTER_BIN" --kubeconfig="$W/adapter.kubeconfig" --bind-address=127.0.0.1 \
    --secure-port="$MANAGED_PORT" --manage-certificates --service-namespace="$CERT_NS" \
    --certificate-validity="${E2E_CERT_VALIDITY:-45s}" --certificate-sync-interval="${E2E_CERT_SYNC:-3s}" \
    --log-format=json --v=4
  wait_until "$E2E_TIMEOUT" "managed adapter /readyz" --proc managed-adapter certificates_ready
}

certificates_secret_ca() {
  kubectl -n "$CERT_NS" get secret "$CERT_SECRET" -o jsonpath='{.data.ca\.crt}' | base64 -d >"$W/managed-ca.crt" &&
    [ -s "$W/managed-ca.crt" ]
}

certificates_ready() {
  certificates_secret_ca &&
    [ "$(curl -fsS --max-time 2 --cacert "$W/managed-ca.crt" \
      --resolve "$CERT_SERVER_NAME:$MANAGED_PORT:127.0.0.1" "https://$CERT_SERVER_NAME:$MANAGED_PORT/readyz")" = ok ]
}

# certificates_available: every APIService Available, with the Secret's CA as its caBundle.
certificates_available() {
  local a
  for a in "${ADAPTER_APISERVICES[@]}"; do
    kubectl wait --for=condition=Available --timeout="${E2E_TIMEOUT}s" "apiservice/$a" >&2 || return 1
  done
  certificates_secret_ca || return 1
  for a in "${ADAPTER_APISERVICES[@]}"; do
    kubectl get apiservice "$a" -o jsonpath='{.spec.caBundle}' | base64 -d >"$W/managed-bundle.crt" || return 1
    cmp "$W/managed-bundle.crt" "$W/managed-ca.crt" >&2 || { log "$a: the caBundle is not the Secret's CA"; return 1; }
  done
}

# certificates_write_and_read: a value written to the managed adapter (TLS verified against its CA) reads back
# through kube-apiserver, and an HPA on it (External, AverageValue 1) is ScalingActive with that value.
certificates_write_and_read() {
  local code
  kubectl create namespace "$CERT_APP_NS" >&2 || return 1
  code=$(curl -sS -o "$W/managed-write.out" -w '%{http_code}' --max-time 5 --cacert "$W/managed-ca.crt" \
    --resolve "$CERT_SERVER_NAME:$MANAGED_PORT:127.0.0.1" -H "Authorization: Bearer $WRITER_TOKEN" \
    -X POST "https://$CERT_SERVER_NAME:$MANAGED_PORT/write-external-metrics/namespaces/$CERT_APP_NS/$CERT_METRIC" \
    -d '"7"') || return 1
  [ "$code" = 200 ] || { log "write answered $code: $(cat "$W/managed-write.out")"; return 1; }
  kubectl get --raw "$CERT_READ" | grep -q '"value":"7"' || return 1
  kubectl apply -f - >&2 <<EOF || return 1
apiVersion: apps/v1
kind: Deployment
metadata: {name: rotation, namespace: $CERT_APP_NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: rotation}}
  template:
    metadata: {labels: {app: rotation}}
    spec: {terminationGracePeriodSeconds: 0, containers: [{name: c, image: pause}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: rotation, namespace: $CERT_APP_NS}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: rotation}
  # One replica at most: the average stays the value itself (7), and no pods come and go.
  minReplicas: 1
  maxReplicas: 1
  metrics:
    - type: External
      external:
        metric: {name: $CERT_METRIC}
        target: {type: AverageValue, averageValue: "1"}
EOF
  wait_until "${E2E_SCALE_TIMEOUT:-45}" "HPA rotation reads $CERT_METRIC" certificates_hpa_reads
}

# certificates_hpa_reads: the HPA's last sync read the metric (ScalingActive) and saw the value 7.
certificates_hpa_reads() {
  local status
  status=$(kubectl -n "$CERT_APP_NS" get hpa rotation -o \
    jsonpath='{.status.conditions[?(@.type=="ScalingActive")].status} {.status.currentMetrics[0].external.current.averageValue}')
  [ "$status" = "True 7" ]
}

# The SHA-256 fingerprint of the certificate the managed adapter serves now.
certificates_served() {
  openssl s_client -connect "127.0.0.1:$MANAGED_PORT" -servername "$CERT_SERVER_NAME" </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256
}

# certificates_rotation: from now until two sync intervals after the adapter serves a renewed certificate, every
# second: the value reads back through kube-apiserver and every APIService is Available. Then the Secret holds the
# previous generation and the caBundle both CAs.
certificates_rotation() {
  local first now available rotated_at="" failures=0 reads=0 deadline=$((SECONDS + ${E2E_CERT_ROTATION_TIMEOUT:-90}))
  local sync=${E2E_CERT_SYNC:-3s}
  first=$(certificates_served) && [ -n "$first" ] || return 1
  while :; do
    if ! kubectl get --raw "$CERT_READ" 2>>"$W/managed-rotation.err" | grep -q '"value":"7"'; then
      failures=$((failures + 1))
      log "read through kube-apiserver failed during the rotation"
    fi
    reads=$((reads + 1))
    available=$(kubectl get apiservice "${ADAPTER_APISERVICES[@]}" \
      -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Available")].status}{"\n"}{end}' |
      grep -c '=True$')
    if [ "$available" != "${#ADAPTER_APISERVICES[@]}" ]; then
      failures=$((failures + 1))
      log "an APIService is not Available during the rotation"
    fi
    if ! certificates_hpa_reads; then
      failures=$((failures + 1))
      log "the HPA did not read its metric during the rotation"
    fi
    now=$(certificates_served)
    if [ -z "$rotated_at" ] && [ -n "$now" ] && [ "$now" != "$first" ]; then
      rotated_at=$SECONDS
      log "the managed adapter serves its renewed certificate"
    fi
    # Two sync intervals after the switch: every replica's view and the aggregator's have caught up.
    if [ -n "$rotated_at" ] && [ "$SECONDS" -ge $((rotated_at + 2 * ${sync%s})) ]; then break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no renewed certificate served within ${E2E_CERT_ROTATION_TIMEOUT:-90}s"
      return 1
    fi
    sleep 1
  done
  log "$reads reads, HPA and APIService checks during the rotation, $failures failures"
  [ "$failures" -eq 0 ] || return 1
  # The HPA controller syncs every second, more often than this loop looks: its events tell of every failed read.
  if kubectl -n "$CERT_APP_NS" get events --field-selector reason=FailedGetExternalMetric -o name | grep .; then
    log "the HPA failed to read its metric during the rotation"
    return 1
  fi
  kubectl -n "$CERT_NS" get secret "$CERT_SECRET" -o jsonpath='{.data.previous-ca\.crt}' | base64 -d \
    >"$W/managed-previous-ca.crt" && [ -s "$W/managed-previous-ca.crt" ] || return 1
  kubectl get apiservice "${ADAPTER_APISERVICES[0]}" -o jsonpath='{.spec.caBundle}' | base64 -d |
    grep -c 'BEGIN CERTIFICATE' | grep -qx 2
}

# certificates_stop: the managed adapter stopped (SIGTERM), so that nothing rewrites the caBundle afterwards; the
# HPA's namespace deleted.
certificates_stop() {
  local pid
  kubectl delete namespace "$CERT_APP_NS" --wait=false --ignore-not-found >&2 || return 1
  pid=$(pid_of managed-adapter) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait_until 20 "managed adapter stopped" bash -c "! kill -0 $pid"
}

# certificate_checks: the checks of docs/e2e-harness.md §13, in order; after a failed start, none of the others.
certificate_checks() {
  check "managed certificates: a second adapter with --manage-certificates, its APIServices registered without a caBundle" certificates_start
  alive managed-adapter && [ -s "$W/managed-ca.crt" ] || return 0
  check "managed certificates: the APIServices become Available with the adapter's CA as their caBundle" certificates_available
  check "managed certificates: a value written to the adapter reads back through kube-apiserver and an HPA reads it" certificates_write_and_read
  check "managed certificates: a renewal (validity ${E2E_CERT_VALIDITY:-45s}) served without a failed read, HPA read or unavailable APIService" certificates_rotation
  check "managed certificates: the adapter stopped" certificates_stop
}
