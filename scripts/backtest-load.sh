#!/usr/bin/env bash
# Times a 30-day backtest over HTTP (and a 7-day series read) on the release server.
#
#   scripts/backtest-load.sh                       # a temporary SQLite file
#   DATABASE_URL=postgres://... scripts/backtest-load.sh
#
# Registers a mock instance, writes DAYS=30 days of 30-second samples for it straight
# into the database (86,400 rows: a daily load wave with a hot hour), then sends
# REQUESTS=10 backtests of the whole span (172,800 ticks at the 15 s interval) and
# 10 series reads of the last 7 days, one at a time, and prints min / median / max
# of curl's total time. SKIP_BUILD=1 uses the existing target/release/autoscaler;
# SERVER_BIN=path runs another build (to compare two versions in one sitting).
set -euo pipefail
cd "$(dirname "$0")/.."
days="${DAYS:-30}"
requests="${REQUESTS:-10}"
server_bin="${SERVER_BIN:-target/release/autoscaler}"
[[ -n "${SKIP_BUILD:-}${SERVER_BIN:-}" ]] || cargo build --release --bin autoscaler >&2

work="$(mktemp -d)"
server_pid=""
fresh=""
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null
    wait 2>/dev/null
    [[ -n "$fresh" ]] && psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $fresh WITH (FORCE)"
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
database_url="${DATABASE_URL:-sqlite://$work/backtest.db}"
if [[ "$database_url" == postgres* ]]; then
    # A database of its own beside the one named, dropped afterwards.
    admin_url="$database_url"
    fresh="backtest_$$"
    psql -q "$admin_url" -c "CREATE DATABASE $fresh"
    database_url="${admin_url%/*}/$fresh"
fi
DATABASE_URL="$database_url" JWT_SECRET_KEY="backtest-load-secret-0123456789abcdef" \
    HOST=127.0.0.1 PORT="$port" RUN_JOBS=false LOG_DIR="$work/logs" \
    "$server_bin" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -fsS "$base/api/" >/dev/null 2>&1 && break; sleep 0.1; done

json() { curl -fsS -H 'Content-Type: application/json' "$@"; }
json -X POST "$base/api/auth/register" -d '{"email":"bt@example.com","password":"backtest-pass-1"}' >/dev/null
token=$(json -X POST "$base/api/auth/login" -d '{"email":"bt@example.com","password":"backtest-pass-1"}' | jq -r .token)
auth="Authorization: Bearer $token"
json -H "$auth" -X POST "$base/api/instances/" \
    -d '{"instance_id":"bt-1","instance_type":"t3.micro","region":"mock","is_mock":true}' >/dev/null

now=$(date -u +%s)
to=$(( now / 15 * 15 ))
from=$(( to - days * 86400 ))
points=$(( days * 2880 ))
echo "seeding $points samples over $days days..." >&2
if [[ "$database_url" == postgres* ]]; then
    psql -q "$database_url" <<SQL
INSERT INTO metrics (id, instance, ts, cpu_utilization, memory_usage, network_in, network_out, source)
SELECT gen_random_uuid(), i.id, to_timestamp($from + 30 * g + 7),
       CASE WHEN (g % 2880) BETWEEN 1200 AND 1320 THEN 92 + (g % 5) ELSE 30 + 25 * sin(g / 458.0) END,
       40 + (g % 9), 1000000 + (g % 97) * 1000, 500000, 'simulated'
FROM instances i, generate_series(0, $points - 1) g WHERE i.instance_id = 'bt-1';
UPDATE instances SET metric_count = $points WHERE instance_id = 'bt-1';
ANALYZE metrics;
SQL
else
    python3 - "$work/backtest.db" "$from" "$points" <<'PY'
import math, sqlite3, sys, uuid
db, start, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
(inst,) = c.execute("SELECT id FROM instances WHERE instance_id = 'bt-1'").fetchone()
def cpu(g):
    return 92 + g % 5 if 1200 <= g % 2880 <= 1320 else 30 + 25 * math.sin(g / 458.0)
c.executemany(
    "INSERT INTO metrics (id, instance, ts, cpu_utilization, memory_usage, network_in, network_out, source)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 'simulated')",
    ((str(uuid.uuid4()), inst, (start + 30 * g + 7) * 1_000_000, cpu(g), 40.0 + g % 9,
      1_000_000 + (g % 97) * 1000, 500_000) for g in range(points)))
c.execute("UPDATE instances SET metric_count = ? WHERE id = ?", (points, inst))
c.commit()
PY
fi

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
body="{\"from\":\"$(iso "$from")\",\"to\":\"$(iso "$to")\",\"policy\":{\"scale_up_cpu_above\":80}}"
stats() { sort -n | awk '{a[NR]=$1} END {printf "min %.1f ms  median %.1f ms  max %.1f ms (n=%d)\n", a[1]*1000, a[int((NR+1)/2)]*1000, a[NR]*1000, NR}'; }

json -H "$auth" -X POST "$base/api/instances/bt-1/backtest" -d "$body" |
    jq -c '{ticks, summary: .summary | {scale_ups, scale_downs, final_level}, baseline: .baseline | {scale_ups, scale_downs}}'
backend=SQLite; [[ "$database_url" == postgres* ]] && backend=PostgreSQL
printf '%s, backtest of %s days (%s samples): ' "$backend" "$days" "$points"
for _ in $(seq 1 "$requests"); do
    curl -fsS -o /dev/null -w '%{time_total}\n' -H "$auth" -H 'Content-Type: application/json' \
        -X POST "$base/api/instances/bt-1/backtest" -d "$body"
done | stats
printf '%s, series of the last 7 days (20,160 samples): ' "$backend"
for _ in $(seq 1 "$requests"); do
    curl -fsS -o /dev/null -w '%{time_total}\n' -H "$auth" \
        "$base/api/metrics/bt-1/series?from=$(iso $((to - 7 * 86400)))&to=$(iso "$to")"
done | stats
echo "server peak memory: $(awk '/VmHWM/ {print $2, $3}' /proc/$server_pid/status)"
