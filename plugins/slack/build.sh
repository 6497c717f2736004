#!/bin/sh
# Builds the Slack plugin into a WebAssembly component with componentize-py.
#
#   plugins/slack/build.sh                 -> target/plugins/slack.wasm
#   plugins/slack/build.sh out/slack.wasm  -> that path (or set WASMHOOK_PLUGIN_OUT)
#   WASMHOOK_WIT=/path/to/wit              -> the contract's WIT folder (default: the repo's wit/)
#   COMPONENTIZE_PY=/path/to/componentize-py (default: target/python-venv/bin/componentize-py)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-${WASMHOOK_PLUGIN_OUT:-$repo/target/plugins/slack.wasm}}
wit=${WASMHOOK_WIT:-$repo/wit}
tool=${COMPONENTIZE_PY:-$repo/target/python-venv/bin/componentize-py}
if [ ! -x "$tool" ]; then
    echo "componentize-py not found at $tool; install it first:" >&2
    echo "  python3 -m venv $repo/target/python-venv && $repo/target/python-venv/bin/pip install -r $here/requirements.txt" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
"$tool" -d "$wit" -w plugin componentize -p "$here/src" app -o "$out"
ls -l "$out"
