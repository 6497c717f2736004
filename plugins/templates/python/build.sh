#!/bin/sh
# Builds src/app.py into a WebAssembly component with componentize-py.
#
#   ./build.sh                 -> dist/example.wasm
#   ./build.sh path/out.wasm   -> that path (or set WASMHOOK_PLUGIN_OUT)
#   WASMHOOK_WIT=/path/to/wit  -> the contract's WIT (default: the copy in ./wit)
#   COMPONENTIZE_PY=...        -> the componentize-py to run (default: .venv/bin/componentize-py)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${WASMHOOK_PLUGIN_OUT:-$here/dist/example.wasm}}
wit=${WASMHOOK_WIT:-$here/wit}
tool=${COMPONENTIZE_PY:-$here/.venv/bin/componentize-py}
if [ ! -x "$tool" ]; then
    echo "componentize-py not found at $tool; install it first:" >&2
    echo "  python3 -m venv $here/.venv && $here/.venv/bin/pip install -r $here/requirements.txt" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
"$tool" -d "$wit" -w plugin componentize -p "$here/src" app -o "$out"
