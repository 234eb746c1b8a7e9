#!/usr/bin/env bash
# Soak and chaos test of the release gateway on loopback (see bench/README.md).
#
# Mixed traffic at about 70% of the measured capacity (gated, public, denied,
# per-video sessions, uploads, slow readers, aborted requests, HTTP/2) while
# the CMS is killed with -9 and restarted, the allowlist is rewritten and
# SIGHUP sent, and Redis (the second gateway's session source) is stopped and
# started. Every second it samples each gateway's RSS, open fds and threads.
# Fails (exit 1) on a panic, a gated page with an embed lacking a fresh token
# (or with a token it may not have), bytes of another request's response in a
# body, any status a request of its kind should never get, RSS growth over 10%
# from the 20% after the warm-up (the first 20%) to the last 20% of the run, or fds not back
# to their pre-traffic count after the traffic stops. Exit 0 otherwise.
#
# Usage: bench/soak.sh             10 minutes of traffic (about 11 minutes in all)
#        QUICK=1 bench/soak.sh     60 seconds of traffic (about 75 seconds in all; CI)
# Env:   SOAK_DURATION (seconds of traffic, overrides the two above),
#        EMBEDGATE_BIN (a gateway binary to test instead of building target/release/embedgate),
#        EMBEDGATE_LOG (gateway log filter, default info: one access line per request),
#        SOAK_SUMMARY (also write the markdown summary to this file),
#        KEEP_LOGS=1 (keep the work folder: logs, configs, samples.csv, summary.md;
#        it is kept anyway when the soak fails).
# Needs python3 (3.11, standard library only) and, for the HTTP/2 share,
# h2load (Debian: nghttp2-client; installed when root and missing, skipped
# otherwise) and curl. Redis is used if redis-server is on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${QUICK:-}" && "${QUICK}" != 0 ]]; then
    DURATION="${SOAK_DURATION:-60}" CAP_SECONDS=4 CYCLE=12 IDLE=10
else
    DURATION="${SOAK_DURATION:-600}" CAP_SECONDS=10 CYCLE=30 IDLE=15
fi
# Safety net: the whole soak (and, through it, every process it started) is
# killed after this long.
LIFETIME=$((DURATION + CAP_SECONDS + 150))

python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null ||
    { echo "soak.sh: python3 (3.9 or later) is required" >&2; exit 1; }

if [[ -n "${EMBEDGATE_BIN:-}" ]]; then
    GATEWAY_BIN="$EMBEDGATE_BIN"
else
    # A no-op when the binary is up to date; builds it on a clean clone.
    (cd "$ROOT" && cargo build --quiet --release --bin embedgate)
    GATEWAY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/embedgate"
fi
[[ -x "$GATEWAY_BIN" ]] || { echo "soak.sh: no gateway binary at $GATEWAY_BIN" >&2; exit 1; }

H2LOAD="$(command -v h2load || true)"
if [[ -z "$H2LOAD" && "$(id -u)" -eq 0 ]]; then
    echo "soak.sh: installing nghttp2-client (h2load)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
            apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null 2>&1; } || true
    H2LOAD="$(command -v h2load || true)"
fi
[[ -n "$H2LOAD" ]] || echo "soak.sh: note: h2load missing (apt-get install nghttp2-client); no h2load share" >&2
command -v curl >/dev/null || echo "soak.sh: note: curl missing; no HTTP/2 content checks" >&2
REDIS_SERVER="$(command -v redis-server || true)"
[[ -n "$REDIS_SERVER" ]] || echo "soak.sh: note: redis-server missing; no Redis gateway, no Redis chaos" >&2

WORK="$(mktemp -d "${TMPDIR:-/tmp}/embedgate-soak.XXXXXX")"
STATUS=1
SOAK_PID=
cleanup() {
    # Stop soak.py (TERM: it stops what it started), then whatever it left.
    if [[ -n "$SOAK_PID" ]] && kill -0 "$SOAK_PID" 2>/dev/null; then
        kill -TERM "$SOAK_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$SOAK_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SOAK_PID" 2>/dev/null || true
    fi
    if [[ -f "$WORK/pids" ]]; then
        while read -r pid; do
            [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
        done <"$WORK/pids"
    fi
    if [[ -n "${KEEP_LOGS:-}" || "$STATUS" -ne 0 ]]; then
        echo "soak.sh: logs, configs and samples kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'STATUS=130; exit 130' INT TERM

# Every process is bounded: `timeout` ends soak.py after $LIFETIME, and with
# setpriv each one dies with its parent (this script -> timeout -> soak.py ->
# the CMS, Redis, the gateways, h2load), even when killed with -9.
DIE_WITH_PARENT=()
command -v setpriv >/dev/null && DIE_WITH_PARENT=(setpriv --pdeathsig KILL --)
"${DIE_WITH_PARENT[@]}" timeout -k 5 "$LIFETIME" "${DIE_WITH_PARENT[@]}" python3 "$ROOT/bench/soak.py" run \
    --bin "$GATEWAY_BIN" --work "$WORK" --duration "$DURATION" --cap-seconds "$CAP_SECONDS" \
    --cycle "$CYCLE" --idle "$IDLE" --redis-server "$REDIS_SERVER" --h2load "$H2LOAD" \
    --summary "${SOAK_SUMMARY:-}" &
SOAK_PID=$!
STATUS=0
wait "$SOAK_PID" || STATUS=$?
SOAK_PID=
if [[ "$STATUS" -eq 124 ]]; then
    echo "soak.sh: the soak did not finish within ${LIFETIME}s" >&2
elif [[ "$STATUS" -eq 137 ]]; then
    echo "soak.sh: soak.py was killed" >&2
fi
if [[ "$STATUS" -eq 0 ]]; then
    echo "soak.sh: passed"
else
    echo "soak.sh: FAILED (exit $STATUS)" >&2
fi
exit "$STATUS"
