# shellcheck shell=bash
# Tiny pass/fail bookkeeping for the e2e scenarios.
#   check NAME CMD...                  run CMD once; pass iff it exits 0
#   record NAME pass|fail [DETAIL]     count a result decided elsewhere (e.g. a Go test of the scenarios)
#   summary                            list the failed checks; the final line is exactly "N passed, N failed"
#   record_go_results                  record the checks of the scenarios' `go test -v` output (stdin)
# A failed check prints the last 20 lines of CMD's output (stdout and stderr of its last attempt).
# check always returns 0 (safe under set -e).

PASSED=0
FAILED=0
FAILED_NAMES=()
CHECK_SEQ=0

record() {
  local name=$1 result=$2 detail=${3:-}
  if [ "$result" = pass ]; then
    PASSED=$((PASSED + 1))
    echo "PASS  $name"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    echo "FAIL  $name${detail:+ -- $detail}"
  fi
}

check() {
  local name=$1; shift
  CHECK_SEQ=$((CHECK_SEQ + 1))
  local out=${W:-/tmp}/checks/$CHECK_SEQ.out
  mkdir -p "$(dirname "$out")"
  if "$@" >"$out" 2>&1; then
    record "$name" pass
  else
    record "$name" fail
    tail -n 20 "$out" | sed 's/^/      | /'
  fi
}

summary() {
  local n
  if [ "$FAILED" -gt 0 ]; then
    echo "failed checks:"
    for n in "${FAILED_NAMES[@]}"; do echo "  - $n"; done
  fi
  echo "$PASSED passed, $FAILED failed"
}

# record_go_results: read the scenarios' `go test -v` output on stdin; record each "e2e-check: PASS|FAIL NAME"
# line (one per check, as it ends: docs/e2e-harness.md §8) and echo the rest, indented, without Go's own
# per-test result lines (=== RUN, --- PASS), which would repeat them.
record_go_results() {
  local line
  while IFS= read -r line; do
    case $line in
      "e2e-check: PASS "*) record "${line#e2e-check: PASS }" pass ;;
      "e2e-check: FAIL "*) record "${line#e2e-check: FAIL }" fail ;;
      "=== "* | *"--- PASS: "* | *"--- FAIL: "* | *"--- SKIP: "*) ;;
      *) echo "      | $line" ;;
    esac
  done
}
