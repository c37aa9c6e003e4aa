#!/usr/bin/env bash
# Starts moto's AWS server in the background for the CloudWatch integration tests.
#
#   scripts/moto.sh [PORT]      (default 5000)
#
# Installs `moto[server]` with pip if `moto_server` is missing (~45 s), waits until
# the server answers, then prints its pid on stdout. Stop it with `kill <pid>`.
# Run the tests with: AWS_ENDPOINT_URL=http://127.0.0.1:PORT cargo test --test cloudwatch_moto
set -euo pipefail

port="${1:-5000}"
log="${MOTO_LOG:-${TMPDIR:-/tmp}/moto-${port}.log}"

if ! python3 -c 'import moto.server, flask' >/dev/null 2>&1; then
    echo "installing moto[server]..." >&2
    python3 -m pip install --quiet 'moto[server]' >&2
fi

# `python3 -m` rather than the `moto_server` script, which pip may put off PATH.
python3 -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!

# Up to ~30 s for the first start (imports are slow); fail if it died.
for _ in $(seq 1 150); do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "moto_server exited; see $log" >&2
        exit 1
    fi
    if python3 - "$port" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
PY
        echo "$pid"
        exit 0
    fi
    sleep 0.2
done
echo "moto_server did not answer on port $port; see $log" >&2
kill "$pid" 2>/dev/null || true
exit 1
