#!/usr/bin/env bash
# Fuzzes the running API from its own OpenAPI document with schemathesis: every
# operation with every check schemathesis has (server errors, schema and status
# conformance, schema-invalid data refused and valid data accepted, auth enforced,
# deleted resources gone...), in every phase including the stateful one, which
# follows the document's links (register an instance, start and stop it, delete
# it, then expect 404). Settings: scripts/schemathesis.toml. Needs the server
# binary built (cargo build).
#
#   scripts/schemathesis.sh [path/to/autoscaler-binary]
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-target/debug/autoscaler}"
python3 -c 'import schemathesis' 2>/dev/null || python3 -m pip install --quiet schemathesis >&2

# Scale targets are checked live when attached: point the server's AWS at moto
# (started here when AWS_ENDPOINT_URL is not set) with throwaway credentials, so a
# PUT of a made-up group is a fast 400 rather than a wait on the real AWS.
moto_pid=""
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
    moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    moto_pid=$(bash scripts/moto.sh "$moto_port")
    export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
fi
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
DATABASE_URL="sqlite://$work/st.db" JWT_SECRET_KEY="schemathesis-secret-0123456789abcdef" \
    HOST=127.0.0.1 PORT="$port" LOG_DIR="$work/logs" RUST_LOG=warn \
    LOGIN_ATTEMPTS_PER_WINDOW=10000 "$bin" >"$work/server.log" 2>&1 &
server=$!
trap 'status=$?; kill $server ${moto_pid} 2>/dev/null || true; wait $server 2>/dev/null || true; [ $status -eq 0 ] || cat "$work/server.log" >&2; rm -rf "$work"' EXIT

for _ in $(seq 1 300); do
    curl -fsS "$base/api/" >/dev/null 2>&1 && break
    sleep 0.1
done

json='Content-Type: application/json'
curl -fsS -X POST "$base/api/auth/register" -H "$json" \
    -d '{"email": "user@example.com", "password": "securepassword123"}' >/dev/null
token=$(curl -fsS -X POST "$base/api/auth/login" -H "$json" \
    -d '{"email": "user@example.com", "password": "securepassword123"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
# An instance for the path parameters of the examples to find.
curl -fsS -X POST "$base/api/instances/" -H "$json" -H "Authorization: Bearer $token" \
    -d '{"instance_id": "mock-test-1", "instance_type": "t2.micro", "region": "mock", "is_mock": true}' >/dev/null

schemathesis --config-file scripts/schemathesis.toml run "$base/api/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --workers 2 \
    --suppress-health-check all \
    --request-timeout 10
