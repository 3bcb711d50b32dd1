# shellcheck shell=bash
# PKI of the e2e control plane (docs/e2e-harness.md §3.1): three CAs (and a second front-proxy CA), the kube-apiserver serving cert, client
# certs for the admin (system:masters), kube-controller-manager and the front proxy, the adapter's serving cert
# (SAN <svc>.<ns>.svc, localhost, 127.0.0.1) and the service-account key pair. Needs OpenSSL >= 3.0 (req -CA).
#
# As a library:   gen_certs DIR [ADAPTER_SVC] [ADAPTER_NS];  write_kubeconfigs DIR https://127.0.0.1:PORT
# As a script:    e2e/lib/pki.sh DIR [https://127.0.0.1:PORT]   (PORT defaults to 6443)

# gen_certs DIR [ADAPTER_SVC] [ADAPTER_NS]
gen_certs() (
  set -euo pipefail
  local D=${1:?dir} SVC=${2:-custom-metrics-apiserver} NS=${3:-custom-metrics} DAYS=2
  mkdir -p "$D"
  cd "$D"
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
  ca() {
    key "$1"
    openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days "$DAYS" -out "$1.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  }
  leaf() {
    key "$1"
    local e=(-addext "basicConstraints=critical,CA:FALSE"
      -addext "keyUsage=critical,digitalSignature,keyEncipherment" -addext "extendedKeyUsage=$4")
    [ -n "${5:-}" ] && e+=(-addext "subjectAltName=$5")
    openssl req -x509 -new -key "$1.key" -subj "$3" -days "$DAYS" -CA "$2.crt" -CAkey "$2.key" "${e[@]}" -out "$1.crt"
  }
  ca ca e2e-cluster-ca                  # --client-ca-file; signs the apiserver serving cert and client certs
  ca front-proxy-ca e2e-front-proxy-ca  # --requestheader-client-ca-file
  ca adapter-ca e2e-adapter-ca          # APIService.spec.caBundle
  ca front-proxy-ca-2 e2e-front-proxy-ca-2  # added to the ConfigMap later: CA rotation without a restart
  leaf apiserver ca "/CN=kube-apiserver" serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1"
  leaf admin ca "/O=system:masters/CN=e2e-admin" clientAuth
  leaf kcm ca "/CN=system:kube-controller-manager" clientAuth
  leaf front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
  leaf front-proxy-client-2 front-proxy-ca-2 "/CN=front-proxy-client" clientAuth
  leaf adapter adapter-ca "/CN=$SVC.$NS.svc" serverAuth \
    "DNS:$SVC.$NS.svc,DNS:$SVC.$NS.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub
  # The chains must verify, or nothing downstream can work.
  openssl verify -CAfile ca.crt apiserver.crt admin.crt kcm.crt >/dev/null
  openssl verify -CAfile front-proxy-ca.crt front-proxy-client.crt >/dev/null
  openssl verify -CAfile front-proxy-ca-2.crt front-proxy-client-2.crt >/dev/null
  openssl verify -CAfile adapter-ca.crt adapter.crt >/dev/null
)

# write_kubeconfigs DIR SERVER_URL: DIR/admin.kubeconfig and DIR/kcm.kubeconfig (certs embedded).
write_kubeconfigs() (
  set -euo pipefail
  local D=${1:?dir} SERVER=${2:?server url} u K
  for u in admin kcm; do
    K=$D/$u.kubeconfig
    kubectl config --kubeconfig="$K" set-cluster e2e --server="$SERVER" --certificate-authority="$D/ca.crt" --embed-certs=true >/dev/null
    kubectl config --kubeconfig="$K" set-credentials "$u" --client-certificate="$D/$u.crt" --client-key="$D/$u.key" --embed-certs=true >/dev/null
    kubectl config --kubeconfig="$K" set-context e2e --cluster=e2e --user="$u" >/dev/null
    kubectl config --kubeconfig="$K" use-context e2e >/dev/null
  done
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  gen_certs "${1:?usage: $0 DIR [https://127.0.0.1:PORT]}"
  write_kubeconfigs "$1" "${2:-https://127.0.0.1:6443}"
fi
