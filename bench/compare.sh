#!/usr/bin/env bash
# embedgate against nginx + njs doing the same job, side by side, on one box:
# a gated page with a token minted into every embed, a passthrough page and
# a 403, for an 8 KB (2 embeds), a 40 KB (5) and a 400 KB (20) page, over
# HTTP/1.1 (wrk) and cleartext HTTP/2 (h2load). Both outputs are checked
# first; then each case runs for both, back to back, and the ratio is printed.
#
# Usage: bench/compare.sh            full set: HTTP/1.1 median of 3 x 10 s per case,
#                                    HTTP/2 one 10 s run per case (~14 min)
#        QUICK=1 bench/compare.sh    one 3 s run per case (~3 min)
# Env:   WORKERS=1 (default: the gateway with `workers = 1` and nginx with one
#          worker, both pinned to core 0; the CMS stand-in and the load
#          generator on core 1), or WORKERS=0 (all cores: the gateway with
#          `workers = 0`, nginx with `worker_processes auto`, nothing pinned)
#        EMBEDGATE_BIN (measure this binary instead of building one),
#        CASES (default "h1 h2 memory"), KEEP_LOGS=1 (keep the work folder).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=compare.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
WORKERS="${WORKERS:-1}"
CONNECTIONS=32
STREAMS=10
CASES="${CASES:-h1 h2 memory}"
if [[ -n "${QUICK:-}" ]]; then
    RUNS=1 H2_RUNS=1 DURATION=3 IDLE_COUNTS="1000"
else
    RUNS=3 H2_RUNS=1 DURATION=10 IDLE_COUNTS="1000 10000"
fi
PAGES=("8k:8:2" "40k:40:5" "400k:400:20")
SESSION="$BENCH_SESSION"
KEY="$BENCH_KEY"
# Every server started here exits by itself after this long.
SERVER_LIFETIME=1200

bench_install nginx:nginx /usr/lib/nginx/modules/ngx_http_js_module.so:libnginx-mod-http-js \
    wrk:wrk h2load:nghttp2-client curl:curl
bench_need python3 taskset timeout

cd "$ROOT"
bench_build

bench_work
if [[ "$WORKERS" == 0 ]]; then
    SERVER_CORE=() CLIENT_CORE=() NGINX_WORKERS=auto
else
    SERVER_CORE=(taskset -c 0) CLIENT_CORE=(taskset -c 1) NGINX_WORKERS=1
fi

bench_pages "$WORK/pages"
read -r UP_PORT GW_PORT NG_PORT NG_H2_PORT < <(bench_free_ports 4)
UPSTREAM="http://127.0.0.1:$UP_PORT"
declare -A H1_URL=([embedgate]="http://127.0.0.1:$GW_PORT" [nginx]="http://127.0.0.1:$NG_PORT")
declare -A H2_URL=([embedgate]="http://127.0.0.1:$GW_PORT" [nginx]="http://127.0.0.1:$NG_H2_PORT")
# The memory case holds 10,000 idle connections from one address.
bench_gateway_config "$WORK/gateway.toml" "$GW_PORT" "$UPSTREAM" "$WORKERS" \
    "max_connections = 30000
max_connections_per_ip = 0"

# Both servers may hold 10,000 connections (and the client as many).
ulimit -Sn "$(ulimit -Hn)"
start() { bench_spawn "$SERVER_LIFETIME" "$@"; }
start_gateway() {
    start env EMBEDGATE_LOG="${EMBEDGATE_LOG:-info}" "${SERVER_CORE[@]}" "$EMBEDGATE_BIN" \
        --config "$WORK/gateway.toml" >>"$WORK/gateway.log" 2>&1
    GW_PID=${PIDS[-1]}
    bench_wait_ready "${H1_URL[embedgate]}/" || { tail -n 20 "$WORK/gateway.log" >&2; exit 1; }
}
start_nginx() {
    start "${SERVER_CORE[@]}" nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf"
    NG_PID=${PIDS[-1]}
    bench_wait_ready "${H1_URL[nginx]}/" || { tail -n 20 "$WORK/nginx-error.log" >&2; exit 1; }
}
# Stops both servers and starts them again: memory is measured on fresh
# processes, not on heaps that the load runs have grown.
restart_servers() {
    kill "$GW_PID" "$NG_PID"
    wait "$GW_PID" "$NG_PID" 2>/dev/null || true
    start_gateway
    start_nginx
}
start "${CLIENT_CORE[@]}" "$UPSTREAM_BIN" "127.0.0.1:$UP_PORT" "$WORK/pages" >"$WORK/upstream.log" 2>&1
bench_wait_ready "$UPSTREAM/page-8k.html"
start_gateway

# nginx answers denials with the gateway's own deny page.
curl -s "${H1_URL[embedgate]}/videos/page-8k.html" -o "$WORK/deny.html"
bench_nginx_config "$WORK" "$NGINX_WORKERS" "$UP_PORT" "$NG_PORT" "$NG_H2_PORT" "$WORK/deny.html" ""
start_nginx

fail() { echo "compare.sh: check failed: $*" >&2; exit 1; }

# Checks what $1 (embedgate or nginx) serves over $2 (h1 or h2).
check_server() {
    local server="$1" proto="$2" url status spec name embeds source
    local curl_args=(-s --max-time 10 -o "$WORK/body" -D "$WORK/head" -w '%{http_code}')
    if [[ "$proto" == h2 ]]; then
        url="${H2_URL[$server]}" curl_args+=(--http2-prior-knowledge)
    else
        url="${H1_URL[$server]}"
    fi
    for spec in "${PAGES[@]}"; do
        IFS=: read -r name _ embeds <<<"$spec"
        source="$WORK/pages/page-$name.html"
        status="$(curl "${curl_args[@]}" "$url/articles/page-$name.html")"
        [[ "$status" == 200 ]] || fail "$server $proto passthrough $name: $status"
        cmp -s "$WORK/body" "$source" || fail "$server $proto passthrough $name: bytes differ"
        status="$(curl "${curl_args[@]}" "$url/videos/page-$name.html")"
        [[ "$status" == 403 ]] || fail "$server $proto denied $name: $status"
        cmp -s "$WORK/body" "$WORK/deny.html" || fail "$server $proto denied $name: not the deny page"
        status="$(curl "${curl_args[@]}" -H "Cookie: sessionid=$SESSION" "$url/videos/page-$name.html")"
        [[ "$status" == 200 ]] || fail "$server $proto gated $name: $status"
        grep -qi '^cache-control:.*no-store' "$WORK/head" || fail "$server $proto gated $name: not no-store"
        python3 bench/check_page.py "$source" "$WORK/body" "$KEY" "$embeds" >/dev/null ||
            fail "$server $proto gated $name"
    done
    echo "checked $server over $proto: passthrough byte-identical, 403 with the deny page, gated pages no-store with every token's HMAC recomputed"
}

# An awk function: wrk's and h2load's durations ("850us", "1.2ms", "2s") in ms.
AWK_MS='
    function ms(v) {
        if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
        if (v ~ /ms$/) return substr(v, 1, length(v) - 2)
        if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
        return v
    }'

# wrk on $1 (extra args after it); prints "req/s p50_ms p99_ms non2xx".
run_wrk() {
    local out="$WORK/wrk.txt"
    "${CLIENT_CORE[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" >"$out"
    awk "$AWK_MS"'
        /Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, non2xx }' "$out"
}

# h2load on $1 (extra args after it); prints "req/s mean_ms broken 2xx 4xx"
# (broken: requests that errored or timed out).
run_h2load() {
    local out="$WORK/h2load.txt"
    "${CLIENT_CORE[@]}" h2load -t1 -c"$CONNECTIONS" -m"$STREAMS" -D "$DURATION" "$@" >"$out" 2>&1
    awk "$AWK_MS"'
        /^finished in/ { rps = $4 }
        /^time for request:/ { mean = ms($6) }
        /^requests:/ { broken = $12 + $14 }
        /^status codes:/ { ok = $3; denied = $7 }
        END { printf "%.0f %.2f %d %d %d\n", rps, mean, broken, ok, denied }' "$out"
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Prints one row: the case, both servers' req/s (median), latency and the ratio.
measure() {
    local proto="$1" path="$2" name="$3" server run url rps lat extra
    local -A rates lats
    local args=()
    [[ "$path" == gated ]] && args=(-H "Cookie: sessionid=$SESSION")
    local route=videos
    [[ "$path" == passthrough ]] && route=articles
    for server in embedgate nginx; do rates[$server]="" lats[$server]=""; done
    local runs="$RUNS"
    [[ "$proto" == h2 ]] && runs="$H2_RUNS"
    for run in $(seq "$runs"); do
        for server in embedgate nginx; do
            if [[ "$proto" == h1 ]]; then
                url="${H1_URL[$server]}/$route/page-$name.html"
                read -r rps _ lat extra < <(run_wrk "${args[@]}" "$url")
            else
                url="${H2_URL[$server]}/$route/page-$name.html"
                local broken ok denied
                read -r rps lat broken ok denied < <(run_h2load "${args[@]}" "$url")
                [[ "$broken" == 0 ]] || fail "h2load: $broken requests broke on $server $path $name"
                if [[ "$path" == denied ]]; then
                    [[ "$ok" == 0 && "$denied" -gt 0 ]] || fail "h2load: $ok 2xx on $server $path $name"
                else
                    [[ "$denied" == 0 && "$ok" -gt 0 ]] || fail "h2load: $denied 4xx on $server $path $name"
                fi
            fi
            rates[$server]+="$rps " lats[$server]+="$lat "
        done
    done
    local ours theirs
    # shellcheck disable=SC2086
    ours="$(median ${rates[embedgate]})" theirs="$(median ${rates[nginx]})"
    # shellcheck disable=SC2086
    printf '%-5s %-12s %-5s %9s %8s %9s %8s %7s\n' "$proto" "$path" "$name" \
        "$ours" "$(median ${lats[embedgate]})" "$theirs" "$(median ${lats[nginx]})" \
        "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2fx", a / b }')"
}

echo "embedgate $("$EMBEDGATE_BIN" --version 2>/dev/null | head -n1) against $(nginx -v 2>&1 | sed 's/.*: //') + njs $(dpkg-query -W -f='${Version}' libnginx-mod-http-js 2>/dev/null)"
if [[ "$WORKERS" == 0 ]]; then
    echo "workers = 0 / worker_processes auto, nothing pinned ($(nproc) cores)"
else
    echo "workers = 1 / one nginx worker on core 0; CMS stand-in and load generator on core 1"
fi
check_server embedgate h1
check_server nginx h1
check_server embedgate h2
check_server nginx h2

header() {
    printf '%-5s %-12s %-5s %9s %8s %9s %8s %7s\n' proto path page embedgate "$1" nginx "$1" ratio
}
for case in $CASES; do
    case "$case" in
    h1 | h2)
        echo
        if [[ "$case" == h1 ]]; then
            echo "HTTP/1.1: wrk -t1 -c$CONNECTIONS, median of $RUNS x ${DURATION}s; req/s and p99 (ms)"
            header p99
        else
            echo "HTTP/2 (h2c, prior knowledge): h2load -t1 -c$CONNECTIONS -m$STREAMS, median of $H2_RUNS x ${DURATION}s; req/s and mean (ms)"
            header mean
        fi
        for spec in "${PAGES[@]}"; do
            IFS=: read -r name _ _ <<<"$spec"
            for path in gated passthrough denied; do measure "$case" "$path" "$name"; done
        done
        ;;
    memory)
        echo
        echo "Idle keep-alive connections, each having fetched the 8 KB page once (bench/idle_memory.py),"
        echo "on freshly started servers (RSS of the gateway process and of the nginx worker)"
        for proto in h1 h2; do
            for count in $IDLE_COUNTS; do
                restart_servers
                # The processes themselves: timeout runs each as its child.
                gateway_pid="$(pgrep -P "$GW_PID")"
                nginx_worker="$(pgrep -P "$(pgrep -P "$NG_PID")" | head -n1)"
                "${CLIENT_CORE[@]}" python3 bench/idle_memory.py --proto "$proto" --count "$count" \
                    --url "${H1_URL[embedgate]}/articles/page-8k.html" --pid "$gateway_pid" \
                    --name embedgate
                "${CLIENT_CORE[@]}" python3 bench/idle_memory.py --proto "$proto" --count "$count" \
                    --url "${H2_URL[nginx]}/articles/page-8k.html" --h1-url "${H1_URL[nginx]}/articles/page-8k.html" \
                    --pid "$nginx_worker" --name nginx
            done
        done
        ;;
    *) fail "unknown case $case" ;;
    esac
done
