#!/usr/bin/env bash
# The dashboard in a real headless Chromium: starts the server on a temp SQLite
# database with 1-second collection and scaling ticks and no cooldown (so a
# simulated load is decided on at once), then runs tests/browser/dashboard.mjs.
# A Kubernetes API fake (tests/browser/kube-fake.mjs) is started first and the
# server gets its kubeconfig, so a scale target can be attached and written.
# Screenshots go to target/dashboard-screenshots/; with DOC_SHOT=docs/dashboard-instance.png
# the instance page is also saved there for the README.
# Installs Debian's chromium and the pinned playwright-core if they are missing.
#
#   scripts/dashboard-test.sh [path/to/autoscaler-binary]
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-target/debug/autoscaler}"
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd tests/browser && npm ci --no-audit --no-fund --silent)

work=$(mktemp -d)
node tests/browser/kube-fake.mjs "$work" >"$work/kube-fake.log" 2>&1 &
fake=$!
trap 'kill $fake 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do [ -s "$work/kube-fake.url" ] && break; sleep 0.1; done
[ -s "$work/kube-fake.url" ] || { echo "the Kubernetes fake did not start" >&2; cat "$work/kube-fake.log" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
DATABASE_URL="sqlite://$work/dashboard.db" JWT_SECRET_KEY="dashboard-test-secret-0123456789abcdef" \
    HOST=127.0.0.1 PORT="$port" LOG_DIR="$work/logs" RUST_LOG=warn KUBECONFIG="$work/kubeconfig" \
    METRICS_INTERVAL_SECONDS=1 SCALING_INTERVAL_SECONDS=1 SCALING_COOLDOWN_SECONDS=0 \
    "$bin" >"$work/server.log" 2>&1 &
server=$!
trap 'status=$?; kill $server $fake 2>/dev/null || true; wait $server $fake 2>/dev/null || true; [ $status -eq 0 ] || cat "$work/server.log" "$work/kube-fake.log" >&2; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -fsS "$base/api/" >/dev/null 2>&1 && break; sleep 0.1; done

BASE="$base" KUBE_FAKE="$(cat "$work/kube-fake.url")" SHOTS="${SHOTS:-target/dashboard-screenshots}" DOC_SHOT="${DOC_SHOT:-}" STUB_PENDING="${STUB_PENDING:-}" node tests/browser/dashboard.mjs
