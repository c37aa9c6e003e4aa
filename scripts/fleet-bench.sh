#!/usr/bin/env bash
# Runs the fleet benchmark matrix of BENCHMARKS.md, one run at a time:
# SQLite and PostgreSQL at 1,000 / 10,000 / 100,000 instances, two replicas on
# PostgreSQL, and PostgreSQL over TLS (the server's default when it offers TLS).
#
#   scripts/fleet-bench.sh [OUT_DIR]            (default target/fleet-bench)
#
# PG_URL names the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/test);
# each run creates a fresh database beside it and drops it afterwards.
# SIZES="1000 10000" limits the sizes. Prints each run's summary and keeps the
# full output (per-tick times and their breakdown) in OUT_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
out="${1:-target/fleet-bench}"
mkdir -p "$out"
pg="${PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
plain="${pg}$([[ "$pg" == *\?* ]] && echo '&' || echo '?')sslmode=disable"
sizes="${SIZES:-1000 10000 100000}"

cargo build --release --features bench --bin fleet-bench >&2
bench=target/release/fleet-bench

run() {
    local name="$1"
    shift
    echo "== $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "$bench" "$@" >"$out/$name.txt" 2>&1 || { cat "$out/$name.txt"; return 1; }
    sed -n '/^summary/,$p' "$out/$name.txt"
}

for n in $sizes; do
    run "sqlite-$n" --instances "$n"
    run "postgres-$n" --instances "$n" --database-url "$plain"
    run "postgres-2-replicas-$n" --instances "$n" --database-url "$plain" --replicas 2
done
run "postgres-tls-10000" --instances 10000 --database-url "$pg"
