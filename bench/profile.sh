#!/usr/bin/env bash
# Where the time goes, in instructions per request: embedgate (and nginx + njs
# doing the same job, for comparison) under valgrind's callgrind, one
# keep-alive client sending the same request again and again, for each path.
# Instruction counts repeat exactly from run to run, whatever else the box
# is doing, so two builds can be compared on a busy machine.
#
# Usage: bench/profile.sh              embedgate and nginx, every case
# Env:   EMBEDGATE_BIN (profile this binary instead of building one),
#        PEER=0 (embedgate only), TOP=12 (functions listed per case),
#        KEEP_LOGS=1 (keep the callgrind files for callgrind_annotate),
#        ONLY=REGEX (only the cases whose name matches, e.g. ONLY='denied|passthrough-8k'),
#        H2=1 (each case sent by `h2load -c32 -m10` over cleartext HTTP/2, the load of
#          compare.sh's HTTP/2 cases: 320 streams at once, instead of one HTTP/1.1 client).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=profile.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TOP="${TOP:-12}"
SESSION="$BENCH_SESSION"
# name, path, warm-up requests, measured requests, with the member's cookie
CASES=(
    "denied-8k /videos/page-8k.html 200 2000 no"
    "passthrough-8k /articles/page-8k.html 200 2000 no"
    "passthrough-40k /articles/page-40k.html 100 1000 no"
    "passthrough-400k /articles/page-400k.html 20 200 no"
    "gated-8k /videos/page-8k.html 50 1000 yes"
    "gated-40k /videos/page-40k.html 50 500 yes"
    "gated-400k /videos/page-400k.html 10 50 yes"
)

bench_need valgrind callgrind_annotate callgrind_control python3 curl
[[ "${H2:-0}" != 0 ]] && bench_need h2load
cd "$ROOT"
bench_build

bench_work
bench_pages "$WORK/pages"
read -r UP_PORT GW_PORT NG_PORT NG_H2_PORT < <(bench_free_ports 4)
bench_spawn 3600 "$UPSTREAM_BIN" "127.0.0.1:$UP_PORT" "$WORK/pages" \
    >/dev/null 2>&1
bench_gateway_config "$WORK/gateway.toml" "$GW_PORT" "http://127.0.0.1:$UP_PORT" 1
bench_wait_ready "http://127.0.0.1:$UP_PORT/page-8k.html"

# A keep-alive HTTP/1.1 client: sends one request N times, reading each answer
# whole; fails on a status other than the one expected, so an error page is
# never profiled as the path it stands in for.
cat >"$WORK/client.py" <<'PY'
import socket, sys
port, path, count, cookie, expected = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
head = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: profile\r\nAccept: */*\r\n" % (path, port)
if cookie != "-":
    head += "Cookie: sessionid=%s\r\n" % cookie
request = (head + "\r\n").encode()
sock = socket.create_connection(("127.0.0.1", port))
for _ in range(count):
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode()
    if status != expected:
        sys.exit("%s answered %s, not %s" % (path, status, expected))
    fields = dict(l.split(b":", 1) for l in head.split(b"\r\n")[1:])
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    if b"content-length" in fields:
        while len(body) < int(fields[b"content-length"]):
            body += sock.recv(65536)
    else:
        while not body.endswith(b"0\r\n\r\n"):
            body += sock.recv(65536)
PY

# Sends $3 requests for path $2 to port $1 with cookie $4 (or -), each to
# be answered with status $5: by the HTTP/1.1 client, or with H2=1 by h2load.
send_requests() {
    local port="$1" path="$2" count="$3" cookie="$4" expected="$5"
    if [[ "${H2:-0}" == 0 ]]; then
        python3 "$WORK/client.py" "$port" "$path" "$count" "$cookie" "$expected"
        return
    fi
    local header=()
    [[ "$cookie" != - ]] && header=(-H "cookie: sessionid=$cookie")
    # h2load wants no more clients than requests (a short warm-up).
    local clients=$((count < 32 ? count : 32))
    if ! h2load -n "$count" -c"$clients" -m10 "${header[@]}" "http://127.0.0.1:$port$path" |
        grep -q " $count ${expected:0:1}xx"; then
        echo "$SCRIPT: $path over HTTP/2 was not answered $expected $count times" >&2
        return 1
    fi
}

# Profiles the server started by "$@" as $NAME, listening for HTTP/1.1 on
# port $2 and for cleartext HTTP/2 on port $3; prints a table.
profile() {
    local name="$1" port="$2" h2_port="$3"
    shift 3
    local curl_h2=()
    if [[ "${H2:-0}" != 0 ]]; then
        port="$h2_port"
        curl_h2=(--http2-prior-knowledge)
    fi
    bench_spawn 3600 valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.out" "$@" \
        >"$WORK/$name.log" 2>&1
    local vg=""
    for _ in $(seq 100); do
        sleep 0.3
        vg="$(pgrep -f "callgrind-out-file=$WORK/$name.out" | tail -n1 || true)"
        [[ -n "$vg" ]] && curl -s -o /dev/null --max-time 2 "${curl_h2[@]}" "http://127.0.0.1:$port/" && break
    done
    local spec case path warm count member part=0
    for spec in "${CASES[@]}"; do
        read -r case path warm count member <<<"$spec"
        [[ -n "${ONLY:-}" && ! "$case" =~ $ONLY ]] && continue
        local cookie=- expected=200
        [[ "$member" == yes ]] && cookie="$SESSION"
        [[ "$case" == denied-* ]] && expected=403
        send_requests "$port" "$path" "$warm" "$cookie" "$expected"
        callgrind_control -z "$vg" >/dev/null 2>&1
        send_requests "$port" "$path" "$count" "$cookie" "$expected"
        callgrind_control -d "$vg" >/dev/null 2>&1
        part=$((part + 1))
        local total
        total="$(callgrind_annotate "$WORK/$name.out.$part" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
        printf '%-10s %-16s %12d instructions per request\n' "$name" "$case" "$((total / count))"
        if [[ "$TOP" -gt 0 ]]; then
            # The functions that spend the most themselves (not counting their callees).
            callgrind_annotate --inclusive=no --threshold=100 "$WORK/$name.out.$part" 2>/dev/null |
                awk -v n="$count" -v top="$TOP" -v total="$total" '
                    /^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ {
                        ir = $1; gsub(",", "", ir); fn = $0
                        # Frames that hold the whole run (main, the runtime) are not costs of their own.
                        if (ir + 0 > (total + 0) / 2) next
                        sub(/^ *[0-9,]+ \([^)]*\) +/, "", fn); sub(/ \[.*/, "", fn); sub(/^[^:]*:/, "", fn)
                        if (shown++ < top) printf "    %10d  %s\n", ir / n, substr(fn, 1, 100)
                    }'
        fi
    done
    kill "$vg" 2>/dev/null || true
}

EMBEDGATE_LOG=info profile embedgate "$GW_PORT" "$GW_PORT" "$EMBEDGATE_BIN" --config "$WORK/gateway.toml"
if [[ "${PEER:-1}" != 0 ]] && command -v nginx >/dev/null; then
    echo denied >"$WORK/deny.html"
    bench_nginx_config "$WORK" 1 "$UP_PORT" "$NG_PORT" "$NG_H2_PORT" "$WORK/deny.html" single
    profile nginx "$NG_PORT" "$NG_H2_PORT" nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf"
fi
