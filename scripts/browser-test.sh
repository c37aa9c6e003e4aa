#!/usr/bin/env bash
# Swagger UI in a real headless Chromium: starts the server on a temp SQLite
# database, registers a user, then runs tests/browser/swagger.mjs with its token.
# Installs Debian's chromium and the pinned playwright-core if they are missing.
#
#   scripts/browser-test.sh [path/to/autoscaler-binary]
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-target/debug/autoscaler}"
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd tests/browser && npm ci --no-audit --no-fund --silent)

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
DATABASE_URL="sqlite://$work/browser.db" JWT_SECRET_KEY="browser-test-secret-0123456789abcdef" \
    HOST=127.0.0.1 PORT="$port" LOG_DIR="$work/logs" RUST_LOG=warn "$bin" >"$work/server.log" 2>&1 &
server=$!
trap 'status=$?; kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; [ $status -eq 0 ] || cat "$work/server.log" >&2; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -fsS "$base/api/" >/dev/null 2>&1 && break; sleep 0.1; done

email=swagger@example.com
json='Content-Type: application/json'
curl -fsS -X POST "$base/api/auth/register" -H "$json" -d "{\"email\": \"$email\", \"password\": \"testpass123\"}" >/dev/null
token=$(curl -fsS -X POST "$base/api/auth/login" -H "$json" -d "{\"email\": \"$email\", \"password\": \"testpass123\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

BASE="$base" TOKEN="$token" EMAIL="$email" node tests/browser/swagger.mjs
