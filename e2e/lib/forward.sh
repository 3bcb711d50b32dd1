# shellcheck shell=bash
# Forwarding to another adapter (--forward-external-metrics, docs/architecture.md §13) against the real control plane
# (docs/e2e-harness.md §14). Runs after the managed-certificate checks: the Go reference adapter (bench/reference,
# REFERENCE_BIN) runs as the neighbour on 127.0.0.1, a second adapter of ours (the forwarder) forwards the
# external metrics it does not hold to it, as the manifest's ServiceAccount (its token in a file), and the three
# APIServices are registered at the forwarder. Through kube-apiserver: the neighbour's hard-coded
# my-external-metric (42 for foo=bar, 43 for foo=baz) and our written metric are read from the same group, an HPA
# scales on the neighbour's metric, and with the neighbour stopped an HPA on our metric keeps scaling and the
# APIServices stay Available. The forwarder and the neighbour are stopped at the end; the Helm chart's step registers
# the APIServices again.
# Needs common.sh, assert.sh and adapter.sh sourced, the control plane and the harness's adapter up (its
# kubeconfig, WRITER_TOKEN), KUBECONFIG (admin), REFERENCE_BIN.

FWD_APP_NS=e2e-forward
FWD_OURS=e2e_forward_ours
FWD_EXTERNAL=/apis/external.metrics.k8s.io/v1beta1
# The Go reference adapter hard-codes its plain write listener at :8080.
FWD_GO_WRITE_PORT=8080

# forward_start: the neighbour (Go reference adapter, serving the e2e adapter certificate, delegating to
# kube-apiserver as the adapter's ServiceAccount), then the forwarder, then the APIServices registered at the
# forwarder and Available.
forward_start() {
  [ -x "${REFERENCE_BIN:-}" ] || { log "no Go reference adapter (REFERENCE_BIN=${REFERENCE_BIN:-})"; return 1; }
  port_free "$FWD_GO_WRITE_PORT" || { log "port $FWD_GO_WRITE_PORT is taken: the Go reference adapter needs it"; return 1; }
  NEIGHBOUR_PORT=$(free_port)
  start_bg neighbour env -C "$W" "$REFERENCE_BIN" \
    --lister-kubeconfig="$W/adapter.kubeconfig" --authentication-kubeconfig="$W/adapter.kubeconfig" \
    --authorization-kubeconfig="$W/adapter.kubeconfig" \
    --secure-port="$NEIGHBOUR_PORT" --bind-address=127.0.0.1 \
    --tls-cert-file="$PKI/adapter.crt" --tls-private-key-file="$PKI/adapter.key"
  wait_until "$E2E_TIMEOUT" "neighbour /readyz" --proc neighbour forward_port_ready "$NEIGHBOUR_PORT" || return 1
  # The neighbour authorizes the forwarder's ServiceAccount, as it would any client (README, "Coexisting with
  # another adapter"): the chart's forward.rbac role, by hand.
  kubectl apply -f - >&2 <<EOF || return 1
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-forwarder}
rules: [{apiGroups: [external.metrics.k8s.io], resources: ["*"], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-forwarder}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-forwarder}
subjects: [{kind: ServiceAccount, name: custom-metrics-apiserver, namespace: custom-metrics}]
EOF
  kubectl -n custom-metrics create token custom-metrics-apiserver --duration=2h >"$W/forward-token" || return 1
  FORWARDER_PORT=$(free_port)
  start_bg forwarder "$ADAPTER_BIN" --kubeconfig="$W/adapter.kubeconfig" --bind-address=127.0.0.1 \
    --secure-port="$FORWARDER_PORT" \
    --tls-cert-file="$PKI/adapter.crt" --tls-private-key-file="$PKI/adapter.key" \
    --forward-external-metrics="https://127.0.0.1:$NEIGHBOUR_PORT" --forward-ca-file="$PKI/adapter-ca.crt" \
    --forward-token-file="$W/forward-token" --forward-discovery-ttl=2s \
    --forward-failure-threshold=2 --forward-cool-down=5s --forward-timeout=2s \
    --log-format=json --v=4
  wait_until "$E2E_TIMEOUT" "forwarder /readyz" --proc forwarder forward_port_ready "$FORWARDER_PORT" || return 1
  kubectl delete apiservice "${ADAPTER_APISERVICES[@]}" --ignore-not-found >&2 || return 1
  ADAPTER_PORT=$FORWARDER_PORT ADAPTER_CA_B64=$(base64 -w0 "$PKI/adapter-ca.crt") \
    render "$E2E_DIR/manifests/adapter-registration.yaml" >"$W/forward-registration.yaml" || return 1
  kubectl apply -f "$W/forward-registration.yaml" >&2 || return 1
  local a
  for a in "${ADAPTER_APISERVICES[@]}"; do
    kubectl wait --for=condition=Available --timeout="${E2E_TIMEOUT}s" "apiservice/$a" >&2 || return 1
  done
  kubectl create namespace "$FWD_APP_NS" >&2
}

forward_port_ready() { [ "$(curl -fsS --max-time 2 --cacert "$PKI/adapter-ca.crt" "https://127.0.0.1:$1/readyz")" = ok ]; }

# forward_write VALUE: our external metric in the app namespace, written to the forwarder.
forward_write() {
  local code
  code=$(curl -sS -o "$W/forward-write.out" -w '%{http_code}' --max-time 5 --cacert "$PKI/adapter-ca.crt" \
    -H "Authorization: Bearer $WRITER_TOKEN" -X POST \
    "https://127.0.0.1:$FORWARDER_PORT/write-external-metrics/namespaces/$FWD_APP_NS/$FWD_OURS" -d "\"$1\"") || return 1
  [ "$code" = 200 ] || { log "write answered $code: $(cat "$W/forward-write.out")"; return 1; }
}

# forward_values PATH: the values of an ExternalMetricValueList read through kube-apiserver, sorted, one line.
forward_values() {
  kubectl get --raw "$1" | python3 -c 'import json,sys; print(" ".join(sorted(i["value"] for i in json.load(sys.stdin)["items"])))'
}

# forward_discovery: the names external.metrics.k8s.io/v1beta1 lists through kube-apiserver, in order, one line.
forward_discovery() {
  kubectl get --raw "$FWD_EXTERNAL" | python3 -c 'import json,sys; print(" ".join(r["name"] for r in json.load(sys.stdin)["resources"]))'
}

# forward_reads: through kube-apiserver, the neighbour's metric (both series; one with a labelSelector, which travels
# with the forwarded read) and ours from the same group; discovery lists ours first, then the neighbour's.
forward_reads() {
  forward_write 5 || return 1
  local theirs ours sel
  theirs=$(forward_values "$FWD_EXTERNAL/namespaces/$FWD_APP_NS/my-external-metric") || return 1
  sel=$(forward_values "$FWD_EXTERNAL/namespaces/$FWD_APP_NS/my-external-metric?labelSelector=foo%3Dbar") || return 1
  ours=$(forward_values "$FWD_EXTERNAL/namespaces/$FWD_APP_NS/$FWD_OURS") || return 1
  log "neighbour's my-external-metric: [$theirs], with foo=bar: [$sel]; ours: [$ours]"
  [ "$theirs" = "42 43" ] && [ "$sel" = 42 ] && [ "$ours" = 5 ] || return 1
  # The Go library lists one placeholder, externalmetrics, for the whole external group: that is the neighbour's entry.
  wait_until 20 "discovery lists ours, then the neighbour's" forward_discovery_is "$FWD_OURS externalmetrics"
}

forward_discovery_is() {
  local names
  names=$(forward_discovery) || return 1
  [ "$names" = "$1" ] || { log "discovery lists: $names"; return 1; }
}

# forward_hpa NAME METRIC SELECTOR TARGET: a Deployment and an HPA (External, AverageValue TARGET, no scale-down
# delay) in the app namespace.
forward_hpa() {
  kubectl apply -f - >&2 <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: $FWD_APP_NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec: {terminationGracePeriodSeconds: 0, containers: [{name: c, image: pause}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: $1, namespace: $FWD_APP_NS}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: $1}
  minReplicas: 1
  maxReplicas: 10
  behavior: {scaleDown: {stabilizationWindowSeconds: 0}}
  metrics:
    - type: External
      external:
        metric: {name: $2, selector: {matchLabels: $3}}
        target: {type: AverageValue, averageValue: "$4"}
EOF
}

forward_replicas_are() {
  [ "$(kubectl -n "$FWD_APP_NS" get deployment "$1" -o jsonpath='{.spec.replicas}')" = "$2" ]
}

# forward_hpa_on_neighbour: an HPA on the neighbour's my-external-metric{foo=bar} (42) with target 14 scales its
# Deployment from 1 to 3 replicas, reading through kube-apiserver and us.
forward_hpa_on_neighbour() {
  forward_hpa theirs my-external-metric '{foo: bar}' 14 || return 1
  wait_until "${E2E_SCALE_TIMEOUT:-45}" "HPA theirs scales to 3" forward_replicas_are theirs 3
}

# forward_neighbour_down: the neighbour stopped; an HPA on our metric scales 1 → 4 → 2 as we write 4, then 2; the
# APIServices stay Available all along, discovery answers with ours alone, and a read of the neighbour's metric
# fails (503 from us) without failing ours.
forward_neighbour_down() {
  local pid
  pid=$(pid_of neighbour) || return 1
  kill -TERM "$pid" 2>/dev/null
  wait_until 20 "neighbour stopped" bash -c "! kill -0 $pid" || return 1
  forward_hpa ours "$FWD_OURS" '{}' 1 || return 1
  forward_write 4 || return 1
  wait_until "${E2E_SCALE_TIMEOUT:-45}" "HPA ours scales to 4" forward_replicas_are_available ours 4 || return 1
  forward_write 2 || return 1
  wait_until "${E2E_SCALE_TIMEOUT:-45}" "HPA ours scales to 2" forward_replicas_are_available ours 2 || return 1
  wait_until 20 "discovery lists ours alone" forward_discovery_is "$FWD_OURS" || return 1
  [ ! -s "$W/forward-unavailable" ] || { log "an APIService was not Available while the HPA scaled"; return 1; }
  if kubectl get --raw "$FWD_EXTERNAL/namespaces/$FWD_APP_NS/my-external-metric" >"$W/forward-down.out" 2>&1; then
    log "the neighbour's metric read back with the neighbour stopped"
    return 1
  fi
  grep -q 'ServiceUnavailable\|503' "$W/forward-down.out" || { log "$(cat "$W/forward-down.out")"; return 1; }
  forward_available
}

# The Deployment has N replicas and every APIService is Available (checked at each look, so all along the wait).
forward_replicas_are_available() {
  forward_available || echo unavailable >>"$W/forward-unavailable"
  forward_replicas_are "$1" "$2"
}

forward_available() {
  local n
  n=$(kubectl get apiservice "${ADAPTER_APISERVICES[@]}" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Available")].status}{"\n"}{end}' | grep -c '^True$')
  [ "$n" = "${#ADAPTER_APISERVICES[@]}" ] || { log "an APIService is not Available"; return 1; }
}

# forward_stop: the forwarder and the neighbour stopped, their namespace and role deleted.
forward_stop() {
  local name pid
  kubectl delete namespace "$FWD_APP_NS" --wait=false --ignore-not-found >&2 || return 1
  kubectl delete clusterrolebinding,clusterrole e2e-forwarder --ignore-not-found >&2 || return 1
  for name in forwarder neighbour; do
    pid=$(pid_of "$name") || continue
    kill -TERM "$pid" 2>/dev/null || true
    wait_until 20 "$name stopped" bash -c "! kill -0 $pid" || return 1
  done
}

# forward_checks: the checks of docs/e2e-harness.md §14, in order; after a failed start, only the stop.
forward_checks() {
  check "forwarding: the Go reference adapter as the neighbour, a forwarder of ours in front, the APIServices at it" forward_start
  if alive forwarder && alive neighbour; then
    check "forwarding: kubectl get --raw reads the neighbour's my-external-metric (and with a labelSelector) and ours from one group; discovery lists ours then the neighbour's" forward_reads
    check "forwarding: an HPA scales on the neighbour's metric through us (1 → 3)" forward_hpa_on_neighbour
    check "forwarding: with the neighbour stopped, an HPA on our metric keeps scaling (1 → 4 → 2), discovery answers, the APIServices stay Available" forward_neighbour_down
  fi
  check "forwarding: the forwarder and the neighbour stopped" forward_stop
}
