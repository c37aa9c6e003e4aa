#!/usr/bin/env bash
# HTTP load test of the release server, jobs running, with wrk from 127.0.0.1.
#
#   scripts/http-load.sh                         # on a temporary SQLite file
#   DATABASE_URL=postgres://... scripts/http-load.sh
#
# Starts the server (RUN_JOBS=true) on a free port, registers a user, logs in,
# registers and monitors a mock instance with some metrics, then runs wrk
# (CONNECTIONS=64 connections, DURATION=30s, THREADS=2) against
#   GET  /api/
#   GET  /api/metrics/<id>?limit=100       (bearer token)
#   POST /api/metrics/simulate             (instant simulation; wrk Lua script)
#   GET  /api/metrics/<big>?limit=100, ?page=1&page_size=100 and
#        ?page=500&page_size=100 on an instance with BIG_METRICS=100000 metrics
#        (the paged reads report a total; BIG_METRICS=0 skips them)
# and prints requests/s and latency percentiles, then the cost of one login
# (argon2) as the mean of LOGINS=20 sequential logins. Installs wrk with apt-get
# if it is missing. SKIP_BUILD=1 uses the existing target/release/autoscaler;
# SERVER_BIN=path runs another build (e.g. a copy from before a change, to compare).
# Figures and their context are in BENCHMARKS.md.
set -euo pipefail

cd "$(dirname "$0")/.."
duration="${DURATION:-30s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
logins="${LOGINS:-20}"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk; then
    echo "installing wrk..." >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
for tool in curl jq python3; do
    need "$tool" || { echo "$tool is required" >&2; exit 1; }
done

if [[ -z "${SKIP_BUILD:-}" && -z "${SERVER_BIN:-}" ]]; then
    cargo build --release --bin autoscaler >&2
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
base="http://127.0.0.1:${port}"
database_url="${DATABASE_URL:-sqlite://${work}/load.db}"
backend=SQLite
[[ "$database_url" == postgres* ]] && backend=PostgreSQL

DATABASE_URL="$database_url" \
JWT_SECRET_KEY="${JWT_SECRET_KEY:-http-load-secret-0123456789abcdef}" \
HOST=127.0.0.1 PORT="$port" RUN_JOBS=true LOG_DIR="$work/logs" \
    "${SERVER_BIN:-${CARGO_TARGET_DIR:-target}/release/autoscaler}" >"$work/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 100); do
    curl -fsS "$base/api/" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done

json() { curl -fsS -H 'Content-Type: application/json' "$@"; }
email="load-$(date +%s%N)@example.com"
password="load-test-password-1"
instance="load-mock-$(date +%s%N)"
json -X POST "$base/api/auth/register" -d "{\"email\":\"$email\",\"password\":\"$password\"}" >/dev/null
token="$(json -X POST "$base/api/auth/login" -d "{\"email\":\"$email\",\"password\":\"$password\"}" | jq -r .token)"
auth="Authorization: Bearer $token"
json -H "$auth" -X POST "$base/api/instances/" \
    -d "{\"instance_id\":\"$instance\",\"instance_type\":\"t3.micro\",\"region\":\"mock\",\"is_mock\":true}" >/dev/null
json -H "$auth" -X PATCH "$base/api/instances/$instance/monitor/start" >/dev/null
# Two hours of history at 30 s: 240 metrics, so limit=100 returns a full page.
json -H "$auth" -X POST "$base/api/metrics/simulate" \
    -d "{\"instance_id\":\"$instance\",\"cpu_utilization\":45,\"memory_usage\":50,\"network_in\":2000000,\"network_out\":1000000,\"duration_minutes\":120,\"interval_seconds\":30}" >/dev/null

# The big instance: BIG_METRICS metrics in simulations of 10,000 (6 s apart).
big="load-big-$(date +%s%N)"
big_metrics="${BIG_METRICS:-100000}"
json -H "$auth" -X POST "$base/api/instances/" \
    -d "{\"instance_id\":\"$big\",\"instance_type\":\"t3.micro\",\"region\":\"mock\",\"is_mock\":true}" >/dev/null
for _ in $(seq 1 $((big_metrics / 10000))); do
    json -H "$auth" -X POST "$base/api/metrics/simulate" \
        -d "{\"instance_id\":\"$big\",\"cpu_utilization\":45,\"memory_usage\":50,\"network_in\":2000000,\"network_out\":1000000,\"duration_minutes\":1000,\"interval_seconds\":6}" >/dev/null
done

cat >"$work/simulate.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"instance_id":"' .. os.getenv("INSTANCE") .. '","cpu_utilization":55.5,"memory_usage":48.2,"network_in":2500000,"network_out":1200000}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA

echo "HTTP load on $backend: wrk -t$threads -c$connections -d$duration, server at $base (jobs running)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo

# One wrk run: prints the endpoint, req/s, latency percentiles and any errors.
load() {
    local name="$1"
    shift
    local out="$work/wrk.txt"
    wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@" >"$out" 2>&1
    local rps p50 p75 p90 p99 bad
    rps="$(awk '/^Requests\/sec/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p75="$(awk '$1 == "75%" {print $2}' "$out")"
    p90="$(awk '$1 == "90%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    bad="$(awk -F': *' '/Non-2xx/ {print $2}' "$out")"
    printf '%-34s %10s req/s   p50 %-9s p75 %-9s p90 %-9s p99 %-9s' \
        "$name" "$rps" "$p50" "$p75" "$p90" "$p99"
    [[ -n "$bad" ]] && printf '  NON-2xx: %s' "$bad"
    grep -q 'Socket errors' "$out" && printf '  %s' "$(grep 'Socket errors' "$out")"
    printf '\n'
    [[ -n "${VERBOSE:-}" ]] && cat "$out"
    return 0
}

load "GET /api/" "$base/api/"
load "GET /api/metrics/<id>?limit=100" -H "$auth" "$base/api/metrics/$instance?limit=100"
INSTANCE="$instance" TOKEN="$token" load "POST /api/metrics/simulate" \
    -s "$work/simulate.lua" "$base/api/metrics/simulate"
if (( big_metrics >= 10000 )); then
    total="$(curl -fsS -H "$auth" "$base/api/metrics/$big?page_size=1" | jq .pagination.total_count)"
    echo "big instance: $total metrics"
    load "GET <big>?limit=100" -H "$auth" "$base/api/metrics/$big?limit=100"
    load "GET <big>?page=1&page_size=100" -H "$auth" "$base/api/metrics/$big?page=1&page_size=100"
    load "GET <big>?page=500&page_size=100" -H "$auth" "$base/api/metrics/$big?page=500&page_size=100"
fi

started="$(date +%s%N)"
for _ in $(seq 1 "$logins"); do
    json -X POST "$base/api/auth/login" -d "{\"email\":\"$email\",\"password\":\"$password\"}" >/dev/null
done
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo
echo "login (argon2): $logins sequential logins in ${elapsed_ms} ms = $((elapsed_ms / logins)) ms per login"
