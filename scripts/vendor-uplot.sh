#!/usr/bin/env bash
# Vendors uPlot (MIT) into static/vendor/ for the dashboard: fetches the release
# tarball from the npm registry, checks it against the registry's integrity hash,
# and copies the ES module, the stylesheet and the licence.
#
#   scripts/vendor-uplot.sh [version]
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-1.6.32}"
url="https://registry.npmjs.org/uplot/-/uplot-$version.tgz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

curl -fsSL "$url" -o "$work/uplot.tgz"
# The registry's own record of the tarball (sha512, base64), as npm checks it.
expected=$(curl -fsSL "https://registry.npmjs.org/uplot/$version" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["dist"]["integrity"])')
actual="sha512-$(openssl dgst -sha512 -binary "$work/uplot.tgz" | base64 -w0)"
[ "$expected" = "$actual" ] || { echo "integrity mismatch: $expected != $actual" >&2; exit 1; }

tar -xzf "$work/uplot.tgz" -C "$work"
mkdir -p static/vendor
cp "$work/package/dist/uPlot.esm.js" static/vendor/uPlot.esm.js
cp "$work/package/dist/uPlot.min.css" static/vendor/uPlot.min.css
cp "$work/package/LICENSE" static/vendor/uPlot.LICENSE
echo "uPlot $version vendored into static/vendor/ ($actual)"
