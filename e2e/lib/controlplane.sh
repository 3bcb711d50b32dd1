# shellcheck shell=bash
# The control plane of the e2e harness (docs/e2e-harness.md §2, §3.2, §5.1): etcd, kube-apiserver with its
# aggregation layer, and kube-controller-manager with the deployment, replicaset, HPA, garbage-collector and
# namespace controllers (the namespace controller is what gets stuck when an aggregated API fails discovery). Every server listens on 127.0.0.1 on a free port; every process is recorded by start_bg.
# Needs common.sh and pki.sh sourced, $W set, $E2E_BIN holding etcd, kube-apiserver, kube-controller-manager.
#
# Sets: PKI, ETCD_PORT, ETCD_PEER_PORT, APISERVER_PORT, APISERVER_URL, KCM_PORT, ADMIN_KUBECONFIG.

# start_controlplane: PKI + etcd + kube-apiserver + KCM, each waited for (bounded).
start_controlplane() {
  PKI=$W/pki
  APISERVER_PORT=$(free_port)
  APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
  gen_certs "$PKI" || die "certificate generation failed"
  write_kubeconfigs "$PKI" "$APISERVER_URL" || die "writing kubeconfigs failed"
  ADMIN_KUBECONFIG=$PKI/admin.kubeconfig
  export PKI APISERVER_PORT APISERVER_URL ADMIN_KUBECONFIG
  start_etcd || return 1
  start_apiserver || return 1
  start_kcm || return 1
}

start_etcd() {
  ETCD_PORT=$(free_port)
  ETCD_PEER_PORT=$(free_port)
  export ETCD_PORT
  start_bg etcd "$E2E_BIN/etcd" --name e2e --data-dir "$W/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn
  wait_until "$E2E_TIMEOUT" "etcd /health on 127.0.0.1:$ETCD_PORT" --proc etcd \
    etcd_healthy || return 1
  log "etcd ready on 127.0.0.1:$ETCD_PORT"
}
etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

start_apiserver() {
  local D=$PKI
  start_bg kube-apiserver "$E2E_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$D/apiserver.crt" --tls-private-key-file="$D/apiserver.key" \
    --client-ca-file="$D/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$D/sa.pub" --service-account-signing-key-file="$D/sa.key" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --requestheader-client-ca-file="$D/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-uid-headers=X-Remote-Uid \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$D/front-proxy-client.crt" --proxy-client-key-file="$D/front-proxy-client.key" \
    --enable-aggregator-routing="${E2E_AGGREGATOR_ROUTING:-false}" \
    --disable-admission-plugins=ServiceAccount \
    --profiling=false --v=1
  # /readyz includes the RBAC bootstrap and APIService registration hooks.
  wait_until $((E2E_TIMEOUT + 30)) "kube-apiserver /readyz on $APISERVER_URL" --proc kube-apiserver \
    apiserver_ready || return 1
  log "kube-apiserver ready on $APISERVER_URL"
}
apiserver_ready() { [ "$(kubectl --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=3s get --raw=/readyz 2>/dev/null)" = ok ]; }

start_kcm() {
  local D=$PKI
  KCM_PORT=$(free_port)
  export KCM_PORT
  start_bg kube-controller-manager "$E2E_BIN/kube-controller-manager" \
    --kubeconfig="$D/kcm.kubeconfig" \
    --authentication-kubeconfig="$D/kcm.kubeconfig" --authorization-kubeconfig="$D/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --controllers=deployment-controller,replicaset-controller,horizontal-pod-autoscaler-controller,garbage-collector-controller,namespace-controller \
    --horizontal-pod-autoscaler-sync-period=1s \
    --horizontal-pod-autoscaler-downscale-stabilization=0s \
    --horizontal-pod-autoscaler-tolerance=0.1 \
    --v=2
  wait_until "$E2E_TIMEOUT" "kube-controller-manager /healthz on 127.0.0.1:$KCM_PORT" --proc kube-controller-manager \
    kcm_healthy || return 1
  # With --use-service-account-credentials each controller creates its ServiceAccount when it starts.
  local sa
  for sa in deployment-controller replicaset-controller horizontal-pod-autoscaler namespace-controller generic-garbage-collector; do
    wait_until "$E2E_TIMEOUT" "ServiceAccount kube-system/$sa (created by KCM)" --proc kube-controller-manager \
      kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n kube-system get serviceaccount "$sa" || return 1
  done
  log "kube-controller-manager ready on 127.0.0.1:$KCM_PORT"
}
kcm_healthy() { [ "$(curl -fsSk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz")" = ok ]; }
