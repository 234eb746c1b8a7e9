#!/usr/bin/env bash
# Loopback load test of the gateway on one core, in five cases:
#   (a) upstream direct, (b) gateway passthrough (ungated path),
#   (c) gateway 403 (gated path, no cookie), (d) gateway gated + rewrite,
#   (e) rewrite-fa: (d) with the CMS's session check behind the verdict cache
#       as the session source instead of the allowlist file,
#   (f) rewrite-tls: (d) over HTTPS (keep-alive), (g) rewrite-br: (d) for a
#       visitor accepting br, so the page is compressed on the way out.
#
# Usage: bench/load.sh              run all seven cases (DURATION=10s each by default)
#        bench/load.sh --page-only  only (re)generate bench/page.html and exit
# Env:   DURATION (wrk -d, default 10s), CONNECTIONS (wrk -c, default 32),
#        EMBEDGATE_LOG (gateway log filter, default info: one access line per request).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=load.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PAGE="$ROOT/bench/page.html"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
SESSION="$BENCH_SESSION"
# Safety net: every server started here exits by itself after this many seconds.
SERVER_LIFETIME=300

# The ~40 KB article with 5 Infomaniak embeds (bench/make_page.py; same bytes on every run).
generate_page() {
    python3 "$ROOT/bench/make_page.py" "$1" 40 5
}

if [[ "${1:-}" == "--page-only" ]]; then
    generate_page "$PAGE"
    exit 0
fi
[[ -s "$PAGE" ]] || generate_page "$PAGE"

bench_install wrk:wrk curl:curl
bench_need python3 taskset timeout cmp openssl

cd "$ROOT"
cargo build --quiet --release --bin embedgate --example static_upstream
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
GATEWAY_BIN="$TARGET_DIR/release/embedgate"
UPSTREAM_BIN="$TARGET_DIR/release/examples/static_upstream"

bench_work
read -r UP_PORT GW_PORT FA_PORT TLS_PORT < <(bench_free_ports 4)
UPSTREAM="http://127.0.0.1:$UP_PORT"
GATEWAY="http://127.0.0.1:$GW_PORT"
# A second gateway whose session source is the CMS's session check (here the
# static upstream, which answers 200 to everything) behind the verdict cache.
GATEWAY_FA="http://127.0.0.1:$FA_PORT"
# A third one terminating TLS (a certificate made here; wrk does not verify it).
GATEWAY_TLS="https://127.0.0.1:$TLS_PORT"

bench_gateway_config "$WORK/gateway.toml" "$GW_PORT" "$UPSTREAM" 1
sed -e "s|^listen = .*|listen = \"127.0.0.1:$FA_PORT\"|" \
    -e "s|^file = \"allowlist.txt\"|[session.allowlist.forward_auth]\nurl = \"$UPSTREAM/session-check\"|" \
    "$WORK/gateway.toml" >"$WORK/gateway-fa.toml"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/tls.key" -out "$WORK/tls.pem" \
    -days 1 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
{
    sed -e "s|^listen = .*|listen = \"127.0.0.1:$TLS_PORT\"|" "$WORK/gateway.toml"
    printf '\n[server.tls]\ncert = "tls.pem"\nkey = "tls.key"\n'
} >"$WORK/gateway-tls.toml"

bench_spawn "$SERVER_LIFETIME" taskset -c 1 "$UPSTREAM_BIN" "127.0.0.1:$UP_PORT" "$PAGE" \
    >"$WORK/upstream.log" 2>&1
for config in gateway gateway-fa gateway-tls; do
    bench_spawn "$SERVER_LIFETIME" env EMBEDGATE_LOG="${EMBEDGATE_LOG:-info}" \
        taskset -c 0 "$GATEWAY_BIN" --config "$WORK/$config.toml" >"$WORK/$config.log" 2>&1
done
bench_wait_ready "$UPSTREAM/"
bench_wait_ready "$GATEWAY/" || { tail -n 20 "$WORK/gateway.log" >&2; exit 1; }
bench_wait_ready "$GATEWAY_FA/" || { tail -n 20 "$WORK/gateway-fa.log" >&2; exit 1; }
bench_wait_ready "$GATEWAY_TLS/" -k || { tail -n 20 "$WORK/gateway-tls.log" >&2; exit 1; }

fail() { echo "load.sh: check failed: $*" >&2; tail -n 5 "$WORK/gateway.log" >&2; exit 1; }

# Fetches $1 (extra curl args after it) into $WORK/body; prints the status.
fetch() {
    local url="$1"
    shift
    curl -s --max-time 5 -o "$WORK/body" -w '%{http_code}' "$@" "$url"
}

check_case() {
    local status
    case "$1" in
    direct)
        status="$(fetch "$UPSTREAM/articles/edge.html")"
        [[ "$status" == 200 ]] || fail "upstream answered $status"
        cmp -s "$WORK/body" "$PAGE" || fail "upstream body differs from $PAGE"
        ;;
    passthrough)
        status="$(fetch "$GATEWAY/articles/edge.html")"
        [[ "$status" == 200 ]] || fail "passthrough answered $status, not 200"
        cmp -s "$WORK/body" "$PAGE" || fail "passthrough body is not byte-identical to the upstream's"
        ;;
    denied)
        status="$(fetch "$GATEWAY/videos/edge.html")"
        [[ "$status" == 403 ]] || fail "gated path without cookie answered $status, not 403"
        ;;
    rewrite | rewrite-fa | rewrite-tls)
        local gateway="$GATEWAY"
        [[ "$1" == rewrite-fa ]] && gateway="$GATEWAY_FA"
        [[ "$1" == rewrite-tls ]] && gateway="$GATEWAY_TLS"
        status="$(fetch "$gateway/videos/edge.html" -k -H "Cookie: sessionid=$SESSION")"
        [[ "$status" == 200 ]] || fail "gated path with cookie answered $status, not 200"
        local tokens
        tokens="$(grep -o 'token=st=' "$WORK/body" | wc -l)"
        [[ "$tokens" -eq 5 ]] || fail "rewritten page has $tokens tokens, not 5"
        ;;
    rewrite-br)
        status="$(fetch "$GATEWAY/videos/edge.html" -D "$WORK/headers" \
            -H "Cookie: sessionid=$SESSION" -H "Accept-Encoding: br")"
        [[ "$status" == 200 ]] || fail "gated path with cookie answered $status, not 200"
        grep -qi '^content-encoding: br' "$WORK/headers" || fail "no br encoding for a visitor accepting br"
        ;;
    esac
}

# Runs wrk on $2 (extra wrk args after it) and prints one table row for case $1.
measure() {
    local name="$1" url="$2"
    shift 2
    local out="$WORK/wrk-$name.txt"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" >"$out"
    awk -v name="$name" '
        /Requests\/sec:/ { rps = $2 }
        /Transfer\/sec:/ { xfer = $2 }
        $1 == "50%" { p50 = $2 }
        $1 == "99%" { p99 = $2 }
        /requests in/ { total = $1 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { errors = $0; sub(/.*Socket errors: */, "", errors) }
        END {
            printf "%-13s %10s %9s %9s %11s %9s %8s  %s\n", name, rps, p50, p99, xfer, total,
                (non2xx == "" ? 0 : non2xx), (errors == "" ? "-" : errors)
        }' "$out"
}

echo "page: $PAGE ($(wc -c <"$PAGE") bytes); wrk -t1 -c$CONNECTIONS -d$DURATION; gateway on core 0 (workers = 1), upstream and wrk on core 1"
printf '%-13s %10s %9s %9s %11s %9s %8s  %s\n' case req/s p50 p99 transfer/s requests non-2xx socket-errors
check_case direct
measure direct "$UPSTREAM/articles/edge.html"
check_case passthrough
measure passthrough "$GATEWAY/articles/edge.html"
check_case denied
measure denied "$GATEWAY/videos/edge.html"
check_case rewrite
measure rewrite "$GATEWAY/videos/edge.html" -H "Cookie: sessionid=$SESSION"
check_case rewrite-fa
measure rewrite-fa "$GATEWAY_FA/videos/edge.html" -H "Cookie: sessionid=$SESSION"
check_case rewrite-tls
measure rewrite-tls "$GATEWAY_TLS/videos/edge.html" -H "Cookie: sessionid=$SESSION"
check_case rewrite-br
measure rewrite-br "$GATEWAY/videos/edge.html" -H "Cookie: sessionid=$SESSION" -H "Accept-Encoding: br"
