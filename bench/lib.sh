# What the bench scripts share: sourced by them, never run on its own.
# Each function says what it expects; the caller has `set -euo pipefail`,
# ROOT (the repository) and SCRIPT (its own name, for messages).

# The session on the allowlist and the EdgeAuth key every bench gateway uses.
BENCH_SESSION="bench-member-4f1d2c7a9e03"
BENCH_KEY="5be0b1f4a3c29d8e7f60152a4c3b2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
BENCH_TTL=300

# Installs the Debian packages behind missing commands, given as
# "command:package" pairs (a path instead of a command is checked as a file):
# quietly when root; otherwise prints the install command and exits.
bench_install() {
    local pair tool package missing=()
    for pair in "$@"; do
        tool="${pair%%:*}" package="${pair#*:}"
        if [[ "$tool" == /* ]]; then
            [[ -e "$tool" ]] || missing+=("$package")
        else
            command -v "$tool" >/dev/null || missing+=("$package")
        fi
    done
    ((${#missing[@]})) || return 0
    if [[ "$(id -u)" != 0 ]]; then
        echo "$SCRIPT: missing ${missing[*]}; install them with:" >&2
        echo "    sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "$SCRIPT: installing ${missing[*]}..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

# Exits unless every named command is there (ones no script installs).
bench_need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$SCRIPT: $tool is required" >&2; exit 1; }
    done
}

# Builds the CMS stand-in and, unless EMBEDGATE_BIN names one, the gateway
# (release); sets TARGET_DIR, EMBEDGATE_BIN and UPSTREAM_BIN. Run from ROOT.
bench_build() {
    TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    cargo build --quiet --release --example static_upstream
    if [[ -z "${EMBEDGATE_BIN:-}" ]]; then
        cargo build --quiet --release --bin embedgate
        EMBEDGATE_BIN="$TARGET_DIR/release/embedgate"
    fi
    UPSTREAM_BIN="$TARGET_DIR/release/examples/static_upstream"
}

# Makes WORK (a fresh folder) and PIDS (the processes bench_spawn started):
# on exit they are stopped and WORK is removed, unless KEEP_LOGS is set.
bench_work() {
    WORK="$(mktemp -d)"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "${KEEP_LOGS:-}" ]]; then echo "work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}

# Starts "$@" in the background, killed after $1 seconds whatever happens.
bench_spawn() {
    local lifetime="$1"
    shift
    timeout "$lifetime" "$@" &
    PIDS+=($!)
}

# Prints $1 free loopback ports, all different, all below the kernel's range
# for outgoing connections: a port the kernel hands out (bind to port 0) can
# be taken by an outgoing connection before the server that is to listen on
# it starts, or while it restarts, and the server then fails to bind.
bench_free_ports() {
    python3 "$ROOT/bench/free_ports.py" "$1"
}

# Waits until something answers HTTP on $1 (extra curl args after it).
bench_wait_ready() {
    local _ url="$1"
    shift
    for _ in $(seq 50); do
        curl -s -o /dev/null --max-time 1 "$@" "$url" && return 0
        sleep 0.1
    done
    echo "$SCRIPT: nothing answers on $url" >&2
    return 1
}

# Writes the pages of 8, 40 and 400 KB (2, 5 and 20 embeds) into $1.
bench_pages() {
    mkdir -p "$1"
    python3 "$ROOT/bench/make_page.py" "$1/page-8k.html" 8 2 >/dev/null
    python3 "$ROOT/bench/make_page.py" "$1/page-40k.html" 40 5 >/dev/null
    python3 "$ROOT/bench/make_page.py" "$1/page-400k.html" 400 20 >/dev/null
}

# Writes the bench gateway's config to $1: listening on port $2, the CMS at
# $3, `workers = $4`, more [server] lines in $5; the allowlist file next to
# it holds BENCH_SESSION. /videos/ is gated, the rest public; every
# Infomaniak embed gets an EdgeAuth token.
bench_gateway_config() {
    local file="$1" port="$2" upstream="$3" workers="$4" server_extra="${5:-}"
    printf '%s\n' "$BENCH_SESSION" >"$(dirname "$file")/allowlist.txt"
    cat >"$file" <<EOF
[server]
listen = "127.0.0.1:$port"
workers = $workers
$server_extra

[upstream]
url = "$upstream"

[session]
cookie = "sessionid"

[session.allowlist]
file = "allowlist.txt"

[[route]]
prefix = "/videos/"
gated = true

[[route]]
prefix = "/"
gated = false

[[embed]]
src = "https://api.vod2.infomaniak.com/res/embed/{share}.html"

[embed.token]
kind = "edgeauth"
key = "$BENCH_KEY"
ttl = "${BENCH_TTL}s"
acl = "/hls/{share}/*"
EOF
}

# Writes nginx + njs doing the gateway's job into $1 (nginx.conf, embed.js):
# $2 worker_processes, the CMS on port $3, HTTP/1.1 on $4, h2c on $5, the
# deny page from file $6; $7 non-empty for one process (no master).
bench_nginx_config() {
    mkdir -p "$1/nginx-tmp"
    python3 - "$ROOT" "$@" "$BENCH_SESSION" "$BENCH_KEY" "$BENCH_TTL" <<'PY'
import sys
root, work, workers, up, port, h2, deny_file, single, session, key, ttl = sys.argv[1:]
deny = open(deny_file).read().replace("\\", "\\\\").replace("'", "\\'")
conf = open(root + "/bench/nginx/nginx.conf.in").read()
for name, value in [("WORK", work), ("WORKERS", workers), ("UPSTREAM_PORT", up), ("PORT", port),
                    ("H2_PORT", h2), ("SESSION", session), ("DENY_PAGE", deny)]:
    conf = conf.replace("@%s@" % name, value)
if single:
    # One process, so that a profiler sees the worker's requests.
    conf = conf.replace("daemon off;", "daemon off;\nmaster_process off;")
open(work + "/nginx.conf", "w").write(conf)
js = open(root + "/bench/nginx/embed.js").read().replace("@KEY@", key).replace("@TTL@", ttl)
open(work + "/embed.js", "w").write(js)
PY
}
