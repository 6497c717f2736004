#!/usr/bin/env bash
# Runs schemathesis (PyPI) against the admin API's OpenAPI document of a real host with an
# embedded PostgreSQL on 127.0.0.1, and fails on any 5xx, schema violation or status the document
# does not list for the operation that answered it.
set -euo pipefail
wasmhook="${CARGO_TARGET_DIR:?}/debug/wasmhook"
work=$(mktemp -d)
# The embedded PostgreSQL runs as the postgres user when this runs as root: it must reach the
# directory.
chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin_port=$(free_port)
token="api-fuzz-token-of-at-least-32-characters"
cat > "$work/wasmhook.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[database]
data_dir = "$work/data"
[admin]
token = "$token"
listen = "127.0.0.1:$admin_port"
[plugins]
dir = "target/plugins"
[[sources]]
name = "github"
plugin = "github"
secrets = ["fuzz-secret"]
TOML
"$wasmhook" serve --config "$work/wasmhook.toml" > "$work/serve.log" 2>&1 &
server=$!
stop() {
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log"; exit 1; }
cd "$work"
schemathesis run "http://127.0.0.1:$admin_port/admin/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance \
  --max-examples 25 --seed 20261125
