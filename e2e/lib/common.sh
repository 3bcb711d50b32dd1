# shellcheck shell=bash
# Shared helpers of the e2e harness: workdir, logging, process bookkeeping, bounded waits, free ports,
# templates, phase timings and teardown. Sourced by e2e/run and e2e/up (and by the other libraries).
#
# State (globals): E2E_DIR, REPO, W (workdir), PIDS/PID_NAMES (started processes), PHASES (timings).

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # used by the other libraries
REPO=$(cd "$E2E_DIR/.." && pwd)
E2E_TIMEOUT=${E2E_TIMEOUT:-60}   # default bound of every wait, seconds

# Never send loopback traffic through a proxy (curl, kubectl and the Go binaries all honour these).
export NO_PROXY="127.0.0.1,localhost,::1${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

PIDS=()
PID_NAMES=()
PHASES=()
ALLOCATED_PORTS=" "

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# e2e_workdir: create the temporary workdir $W with logs/ in it.
e2e_workdir() {
  W=$(mktemp -d "${TMPDIR:-/tmp}/cmapi-e2e.XXXXXX")
  mkdir -p "$W/logs" "$W/checks"
  export W
  log "workdir $W"
}

# start_bg NAME CMD...: run CMD in the background, output to $W/logs/NAME.log, record its PID.
start_bg() {
  local name=$1; shift
  # fds 7 and 8 (the scripts' saved stdout/stderr) are not passed on to long-running servers.
  "$@" >"$W/logs/$name.log" 2>&1 </dev/null 7>&- 8>&- &
  local pid=$!
  PIDS+=("$pid")
  PID_NAMES+=("$name")
  echo "$pid $name" >>"$W/pids"
  log "started $name (pid $pid), log $W/logs/$name.log"
}

# pid_of NAME: the recorded PID of a started component.
pid_of() {
  local i
  for i in "${!PID_NAMES[@]}"; do
    [ "${PID_NAMES[$i]}" = "$1" ] && { echo "${PIDS[$i]}"; return 0; }
  done
  return 1
}

# alive NAME: the component is still running.
alive() { local p; p=$(pid_of "$1") && kill -0 "$p" 2>/dev/null; }

# wait_until TIMEOUT DESCRIPTION [--proc NAME] CMD...: poll CMD (quietly) every 0.5 s until it succeeds.
# Fails after TIMEOUT seconds, or at once if the component NAME has exited.
wait_until() {
  local timeout=$1 desc=$2; shift 2
  local proc=""
  if [ "${1:-}" = --proc ]; then proc=$2; shift 2; fi
  local deadline=$((SECONDS + timeout))
  while :; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -n "$proc" ] && ! alive "$proc"; then
      log "FAILED waiting for $desc: $proc exited (see $W/logs/$proc.log)"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "FAILED waiting for $desc: not done after ${timeout}s"
      return 1
    fi
    sleep 0.5
  done
}

# free_port: print a TCP port free on 127.0.0.1 and not handed out before in this run.
free_port() {
  local p
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    case "$ALLOCATED_PORTS" in *" $p "*) continue ;; esac
    ALLOCATED_PORTS="$ALLOCATED_PORTS$p "
    echo "$p"
    return 0
  done
  die "no free port found"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
}

# render TEMPLATE: print TEMPLATE with every ${NAME} replaced by the environment variable NAME.
# Fails when a referenced variable is unset, so no half-rendered manifest ever reaches the cluster.
render() {
  python3 - "$1" <<'EOF'
import os, re, sys
text = open(sys.argv[1]).read()
missing = sorted({m for m in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text) if m not in os.environ})
if missing:
    sys.exit("render %s: unset variables: %s" % (sys.argv[1], ", ".join(missing)))
sys.stdout.write(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: os.environ[m.group(1)], text))
EOF
}

# Phase timings: phase_begin NAME ... phase_end; phases_print prints the table.
phase_begin() { PHASE_NAME=$1; PHASE_T0=$(date +%s.%N); log "=== phase: $PHASE_NAME"; }
phase_end() {
  local t1 d
  t1=$(date +%s.%N)
  d=$(awk -v a="$PHASE_T0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  PHASES+=("$(printf '%-72s %7ss' "$PHASE_NAME" "$d")")
  log "=== phase done: $PHASE_NAME (${d}s)"
}
phases_print() {
  local p
  [ "${#PHASES[@]}" -gt 0 ] || return 0
  echo "phase timings:"
  for p in "${PHASES[@]}"; do echo "  $p"; done
}

# print_log_tails: the last 50 lines of every component log.
print_log_tails() {
  local f
  [ -n "${W:-}" ] && [ -d "$W/logs" ] || return 0
  for f in "$W"/logs/*.log; do
    [ -e "$f" ] || continue
    echo "----- last 50 lines of $f -----"
    tail -n 50 "$f"
  done
}

# stop_all: stop every recorded process, newest first (TERM, then KILL after 10 s). Only recorded PIDs.
stop_all() {
  local i pid name
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[$i]} name=${PID_NAMES[$i]}
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      local deadline=$((SECONDS + 10))
      while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 10s; killing"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  PID_NAMES=()
}

# cleanup_workdir: remove $W unless E2E_KEEP=1 (then say where it is).
cleanup_workdir() {
  [ -n "${W:-}" ] && [ -d "$W" ] || return 0
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    log "workdir kept: $W"
  else
    rm -rf "$W"
  fi
}
