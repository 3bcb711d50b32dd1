# shellcheck shell=bash
# Builds what the e2e harness runs. Needs common.sh sourced and $W set.
#   build_k8s:     e2e/build (etcd, kube-apiserver, kube-controller-manager from e2e/k8s); sets E2E_BIN.
#                  Its last stdout line is E2E_BIN=<dir>. A preset E2E_BIN holding all three binaries skips it.
#   build_scenarios: go vet and go test -c of the scenarios (e2e/k8s/scenarios) into $W; sets SCENARIOS_TEST.
#   build_adapter: cargo build --release in the repository (honours CARGO_TARGET_DIR); sets ADAPTER_BIN.
#                  A preset ADAPTER_BIN (an executable) skips it.

E2E_BINARIES=(etcd kube-apiserver kube-controller-manager)

have_k8s_binaries() {
  local b
  [ -n "${E2E_BIN:-}" ] || return 1
  for b in "${E2E_BINARIES[@]}"; do [ -x "$E2E_BIN/$b" ] || return 1; done
}

build_k8s() {
  if have_k8s_binaries; then
    log "E2E_BIN=$E2E_BIN preset with all binaries; not running e2e/build"
    return 0
  fi
  [ -x "$E2E_DIR/build" ] || { log "e2e/build is missing or not executable"; return 1; }
  log "running e2e/build (output: $W/logs/e2e-build.log)"
  if ! "$E2E_DIR/build" >"$W/logs/e2e-build.out" 2>"$W/logs/e2e-build.log"; then
    log "e2e/build failed"
    cat "$W/logs/e2e-build.out" >>"$W/logs/e2e-build.log"
    return 1
  fi
  cat "$W/logs/e2e-build.out" >>"$W/logs/e2e-build.log"
  E2E_BIN=$(tail -n 1 "$W/logs/e2e-build.out" | sed -n 's/^E2E_BIN=//p')
  [ -n "$E2E_BIN" ] || { log "e2e/build did not print E2E_BIN=<dir> as its last line"; return 1; }
  export E2E_BIN
  have_k8s_binaries || { log "E2E_BIN=$E2E_BIN lacks one of: ${E2E_BINARIES[*]}"; return 1; }
  log "E2E_BIN=$E2E_BIN"
}

build_scenarios() {
  SCENARIOS_TEST=$W/scenarios.test
  log "go vet + go test -c ./scenarios (output: $W/logs/go-test-build.log)"
  # The same settings as e2e/build, so that the packages it compiled are reused from the Go build cache.
  if ! (cd "$E2E_DIR/k8s" && export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} \
    GOFLAGS="-trimpath -buildvcs=false -mod=readonly" &&
    go vet ./scenarios && go test -c -o "$SCENARIOS_TEST" ./scenarios) \
    >"$W/logs/go-test-build.log" 2>&1; then
    log "go vet or go test -c ./scenarios failed"
    return 1
  fi
  export SCENARIOS_TEST
}

build_adapter() {
  if [ -n "${ADAPTER_BIN:-}" ] && [ -x "$ADAPTER_BIN" ]; then
    log "ADAPTER_BIN=$ADAPTER_BIN preset; not running cargo build"
    return 0
  fi
  log "cargo build --release (output: $W/logs/cargo-build.log)"
  if ! (cd "$REPO" && cargo build --release) >"$W/logs/cargo-build.log" 2>&1; then
    log "cargo build --release failed"
    return 1
  fi
  local target=${CARGO_TARGET_DIR:-target}
  case "$target" in /*) ;; *) target=$REPO/$target ;; esac
  ADAPTER_BIN=$target/release/custom-metrics-apiserver
  export ADAPTER_BIN
  [ -x "$ADAPTER_BIN" ] || { log "cargo built no $ADAPTER_BIN"; return 1; }
  log "ADAPTER_BIN=$ADAPTER_BIN"
}

# build_reference: the Go reference adapter (bench/reference/build, cached outside the repository), the neighbour of
# the forwarding checks (e2e/lib/forward.sh); a preset REFERENCE_BIN skips it. Sets REFERENCE_BIN.
build_reference() {
  if [ -n "${REFERENCE_BIN:-}" ] && [ -x "$REFERENCE_BIN" ]; then
    log "REFERENCE_BIN=$REFERENCE_BIN preset; not running bench/reference/build"
    return 0
  fi
  log "bench/reference/build (output: $W/logs/reference-build.log)"
  "$REPO/bench/reference/build" >"$W/logs/reference-build.out" 2>"$W/logs/reference-build.log" || return 1
  REFERENCE_BIN=$(tail -n 1 "$W/logs/reference-build.out" | sed -n 's/^REFERENCE_BIN=//p')
  export REFERENCE_BIN
  [ -x "$REFERENCE_BIN" ] || { log "bench/reference/build gave no binary"; return 1; }
  log "REFERENCE_BIN=$REFERENCE_BIN"
}
