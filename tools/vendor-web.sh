#!/usr/bin/env bash
# Refreshes tally/web/vendor/ from the npm registry: the versions pinned in
# tools/web-vendor/package.json, their browser ES modules and their licenses. `make vendor` runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/tally/web/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp "$root/tools/web-vendor/package.json" "$work/"
npm install --prefix "$work" --ignore-scripts --no-audit --no-fund --omit=peer --save-exact >/dev/null
modules="$work/node_modules"
version() { node -p "require('$modules/$1/package.json').version"; }

rm -rf "$vendor"
mkdir -p "$vendor/graphql-ws" "$vendor/uplot"

# graphql-ws: the client and the shared chunk it imports (no runtime dependency).
cp "$modules/graphql-ws/dist/client.js" "$vendor/graphql-ws/client.js"
cp "$modules"/graphql-ws/dist/common-*.js "$vendor/graphql-ws/"
cp "$modules/graphql-ws/LICENSE.md" "$vendor/graphql-ws/LICENSE.md"
version graphql-ws >"$vendor/graphql-ws/VERSION"

# uPlot: the ES module and its stylesheet.
cp "$modules/uplot/dist/uPlot.esm.js" "$vendor/uplot/uPlot.esm.js"
cp "$modules/uplot/dist/uPlot.min.css" "$vendor/uplot/uPlot.min.css"
cp "$modules/uplot/LICENSE" "$vendor/uplot/LICENSE"
version uplot >"$vendor/uplot/VERSION"

echo "vendored into $vendor:"
(cd "$vendor" && for d in */; do echo "  ${d%/} $(cat "$d/VERSION")"; done)
