# shellcheck shell=bash
# Tiny pass/fail bookkeeping for the e2e scenarios.
#   check NAME CMD...                  run CMD once; pass iff it exits 0
#   check_eventually SECS NAME CMD...  poll CMD every 0.5 s for up to SECS seconds; pass iff it ever exits 0
#   record NAME pass|fail [DETAIL]     count a result decided elsewhere (e.g. a line of cmclient's output)
#   summary                            list the failed checks; the final line is exactly "N passed, N failed"
# A failed check prints the last 20 lines of CMD's output (stdout and stderr of its last attempt).
# check and check_eventually always return 0 (safe under set -e); LAST_OK is 1 when the check passed, else 0.

# shellcheck disable=SC2034 # LAST_OK is for the callers
PASSED=0
FAILED=0
FAILED_NAMES=()
CHECK_SEQ=0
LAST_OK=1

record() {
  local name=$1 result=$2 detail=${3:-}
  if [ "$result" = pass ]; then
    LAST_OK=1
    PASSED=$((PASSED + 1))
    echo "PASS  $name"
  else
    LAST_OK=0
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

check_eventually() {
  local secs=$1 name=$2; shift 2
  CHECK_SEQ=$((CHECK_SEQ + 1))
  local out=${W:-/tmp}/checks/$CHECK_SEQ.out t0=$SECONDS
  mkdir -p "$(dirname "$out")"
  local deadline=$((SECONDS + secs))
  while :; do
    if "$@" >"$out" 2>&1; then
      record "$name (after $((SECONDS - t0))s)" pass
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      record "$name" fail "not true within ${secs}s"
      tail -n 20 "$out" | sed 's/^/      | /'
      return 0
    fi
    sleep 0.5
  done
}

summary() {
  local n
  if [ "$FAILED" -gt 0 ]; then
    echo "failed checks:"
    for n in "${FAILED_NAMES[@]}"; do echo "  - $n"; done
  fi
  echo "$PASSED passed, $FAILED failed"
}

# ---------------------------------------------------------------------------------------------------
# Predicates for check / check_eventually.

# json_expect EXPR: parse JSON from stdin as d and evaluate the Python expression EXPR; print d when false.
# Helpers usable in EXPR: cond(d, TYPE) -> (status, reason) of a status condition, or None.
json_expect() {
  python3 -c '
import json, sys
raw = sys.stdin.read()
try:
    d = json.loads(raw)
except Exception as e:
    sys.exit("not JSON (%s): %r" % (e, raw[:2000]))
def cond(obj, t):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == t:
            return (c.get("status"), c.get("reason"))
    return None
expr = sys.argv[1]
try:
    ok = eval("(" + expr + "\n)", {"d": d, "cond": cond})
    err = None
except Exception as e:
    ok, err = False, e
if not ok:
    print("got: " + json.dumps(d, separators=(",", ":"))[:3000])
    if err is not None:
        print("error evaluating the expectation: %r" % (err,))
    print("expected: " + " ".join(expr.split()))
    sys.exit(1)
' "$1"
}

# raw_expect PATH EXPR: kubectl get --raw PATH (through kube-apiserver) answers JSON satisfying EXPR.
raw_expect() {
  local body
  body=$(kubectl get --raw "$1") || return 1
  printf '%s' "$body" | json_expect "$2"
}

# raw_fails_with PATH PATTERN: kubectl get --raw PATH fails and its error matches the regex PATTERN.
raw_fails_with() {
  local out
  if out=$(kubectl get --raw "$1" 2>&1); then
    echo "kubectl get --raw $1 succeeded, want an error matching /$2/: $out"
    return 1
  fi
  echo "$out"
  grep -Eq "$2" <<<"$out"
}
