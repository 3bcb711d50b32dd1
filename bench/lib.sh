# shellcheck shell=bash
# Helpers shared by bench/run, bench/compare and bench/label-index (sourced).

# fmt_int N: N rounded, with thousands separators (12,345).
fmt_int() { awk -v v="$1" 'BEGIN { s = sprintf("%d", v + 0.5); t = ""
  while (length(s) > 3) { t = "," substr(s, length(s) - 2) t; s = substr(s, 1, length(s) - 3) }; print s t }'; }
# mib KIB: KiB as "12.3 MiB".
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
# median X...: the median of the numbers (the mean of the middle two for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# rss_kib PID: the resident set size of PID in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# create_bench_pods NAMESPACE N FILE: creates NAMESPACE with N pods labelled app=bench (bench-0 ...) and N labelled
# app=noise (noise-0 ...), from one List written to FILE. Needs kubectl with a KUBECONFIG; the pods stay Pending.
create_bench_pods() {
  kubectl create namespace "$1" >/dev/null || return 1
  python3 - "$2" "$1" >"$3" <<'PY'
import json, sys
n, ns = int(sys.argv[1]), sys.argv[2]
items = [{"apiVersion": "v1", "kind": "Pod",
          "metadata": {"name": f"{app}-{i}", "namespace": ns, "labels": {"app": app}},
          "spec": {"containers": [{"name": "c", "image": "pause"}]}}
         for app in ("bench", "noise") for i in range(n)]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
PY
  timeout 300 kubectl create -f "$3" >/dev/null
}
