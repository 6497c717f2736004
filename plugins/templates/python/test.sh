#!/bin/sh
# Runs the fixtures against the built component through wasmhook's own runtime.
#   WASMHOOK=/path/to/wasmhook ./test.sh   (default: `wasmhook` on PATH)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec "${WASMHOOK:-wasmhook}" plugin run "${1:-${WASMHOOK_PLUGIN_OUT:-$here/dist/example.wasm}}" --fixtures "$here/fixtures"
