#!/usr/bin/env bash
# Soak: the release server with its jobs monitoring 1,000 mock instances, under a
# wrk load mixing metric reads and simulations for DURATION (default 5m). Reports
# status counts (any 5xx fails the run) and the server's resident memory sampled
# every 10 s, so a leak shows as a climb after warm-up.
#
#   scripts/soak.sh                       # SQLite in a temp dir
#   DATABASE_URL=postgres://... scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-5m}"
instances="${INSTANCES:-1000}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin autoscaler >&2

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
DATABASE_URL="${DATABASE_URL:-sqlite://$work/soak.db}" JWT_SECRET_KEY="soak-secret-0123456789abcdef0123" \
    HOST=127.0.0.1 PORT="$port" LOG_DIR="$work/logs" RUST_LOG=warn \
    target/release/autoscaler >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -fsS "$base/api/" >/dev/null 2>&1 && break; sleep 0.1; done

json='Content-Type: application/json'
email="soak-$RANDOM@example.com"
curl -fsS -X POST "$base/api/auth/register" -H "$json" -d "{\"email\": \"$email\", \"password\": \"testpass123\"}" >/dev/null
token=$(curl -fsS -X POST "$base/api/auth/login" -H "$json" -d "{\"email\": \"$email\", \"password\": \"testpass123\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

echo "registering and monitoring $instances mock instances..." >&2
python3 - "$base" "$token" "$instances" <<'PY'
import json, sys, urllib.request
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
for i in range(n):
    call("POST", "/api/instances/", {"instance_id": f"soak-{i}", "instance_type": "t2.micro", "region": "mock", "is_mock": True})
    call("PATCH", f"/api/instances/soak-{i}/monitor/start")
PY

cat >"$work/mix.lua" <<LUA
-- Three reads of metrics for one simulation, over random instances.
local token = "$token"
local n = $instances
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) s5xx = 0; s4xx = 0; ok = 0 end
function request()
  local id = "soak-" .. math.random(0, n - 1)
  if math.random(4) == 1 then
    return wrk.format("POST", "/api/metrics/simulate",
      {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
      '{"instance_id": "' .. id .. '", "cpu_utilization": ' .. math.random(0, 100) .. ', "memory_usage": 50}')
  end
  return wrk.format("GET", "/api/metrics/" .. id .. "?limit=100", {["Authorization"] = "Bearer " .. token})
end
function response(status, headers, body)
  if status >= 500 then s5xx = s5xx + 1 elseif status >= 400 then s4xx = s4xx + 1 else ok = ok + 1 end
end
function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("ok"); b = b + t:get("s4xx"); c = c + t:get("s5xx") end
  io.write(string.format("statuses: %d 2xx, %d 4xx, %d 5xx\n", a, b, c))
  io.write(string.format("p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  if c > 0 then os.exit(1) end
end
LUA

rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
echo "RSS before load: $(( $(rss) / 1024 )) MiB" >&2
(
    while kill -0 $server 2>/dev/null; do
        printf '%s RSS %d MiB\n' "$(date +%T)" $(( $(rss) / 1024 ))
        sleep 10
    done
) >"$work/rss.log" &
sampler=$!
status=0
wrk -t2 -c16 -d"$duration" --timeout 10s -s "$work/mix.lua" "$base" || status=$?
kill $sampler 2>/dev/null || true
echo "resident memory every 10 s:"
cat "$work/rss.log"
echo "RSS after load: $(( $(rss) / 1024 )) MiB"
grep -cE ' ERROR ' "$work/server.log" | xargs -I{} echo "server ERROR lines: {}"
exit $status
