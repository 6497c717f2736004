#!/usr/bin/env bash
# `make bench`: the whole benchmark set with fixed counts — the plugin call against native, ingest
# against a bare axum ceiling at 1/16/64/256 connections, ingest with a million rows already in
# the events table, end to end with 1 and 2 host processes on one database. Prints every table
# and rewrites the generated block of BENCHMARKS.md (between `<!-- bench:begin -->` and
# `<!-- bench:end -->`) with the date, the machine, the versions, the commands and the numbers.
# Everything outside the markers is left alone.
#
# Expects what `make bench` builds first: the plugins (target/plugins), the release binary and the
# load generator (`tools/bench`, `wasmhook-bench`), which starts the release binary as its hosts.
# Takes about 10-15 minutes on two cores. The counts can be lowered through the environment for a
# quick check of the script itself (for example INGEST_REQUESTS=500 PREFILL_EVENTS=20000); the
# block records the commands exactly as they ran. With BASELINE=<rev> (`make bench
# BASELINE=b2823e8`), it also builds that revision in a worktree and runs it and the current
# build back to back (scripts/bench-baseline.sh), printing their ratios.
set -euo pipefail

cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/wasmhook/target}"
export CARGO_TARGET_DIR
WASMHOOK=${WASMHOOK:-$CARGO_TARGET_DIR/release/wasmhook}
WASMHOOK_BENCH=${WASMHOOK_BENCH:-$CARGO_TARGET_DIR/release/wasmhook-bench}
# The load generator starts this binary as the measured hosts (its --wasmhook option).
export WASMHOOK
BENCH_FILE=${BENCH_FILE:-BENCHMARKS.md}

# Fixed counts (the published numbers use these defaults).
PLUGIN_CALLS=${PLUGIN_CALLS:-20000}
INGEST_REQUESTS=${INGEST_REQUESTS:-20000}
INGEST_REQUESTS_ONE_CONNECTION=${INGEST_REQUESTS_ONE_CONNECTION:-3000}
INGEST_WARMUP=${INGEST_WARMUP:-2000}
PREFILL_EVENTS=${PREFILL_EVENTS:-1000000}
E2E_REQUESTS=${E2E_REQUESTS:-10000}
E2E_WARMUP=${E2E_WARMUP:-1000}
# Upper bound for each step; the prefill step writes a few GB.
STEP_TIMEOUT=${STEP_TIMEOUT:-1800}

for marker in '<!-- bench:begin -->' '<!-- bench:end -->'; do
    if [ "$(grep -cxF -- "$marker" "$BENCH_FILE")" != 1 ]; then
        echo "error: $BENCH_FILE must contain the line '$marker' exactly once" >&2
        exit 1
    fi
done
[ -x "$WASMHOOK" ] || { echo "error: $WASMHOOK is missing: run make release" >&2; exit 1; }
[ -x "$WASMHOOK_BENCH" ] || { echo "error: $WASMHOOK_BENCH is missing: run make bench" >&2; exit 1; }
[ -f target/plugins/github.wasm ] || { echo "error: target/plugins/github.wasm is missing: run make plugins" >&2; exit 1; }

OUT=$(mktemp -d "${TMPDIR:-/tmp}/wasmhook-bench-XXXXXX")
trap 'rm -rf "$OUT"' EXIT

# --- The machine and the versions -------------------------------------------------------------

postgres_version() {
    local dir=""
    if command -v initdb >/dev/null 2>&1; then
        dir=$(dirname "$(command -v initdb)")
    elif command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        dir=$(pg_config --bindir)
    else
        dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    fi
    if [ -n "$dir" ] && [ -x "$dir/postgres" ]; then
        "$dir/postgres" --version
    else
        echo "unknown"
    fi
}

started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
started_seconds=$SECONDS
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cpu_count=$(grep -c '^processor' /proc/cpuinfo)
memory=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
kernel=$(uname -sr)
load_average=$(cut -d' ' -f1-3 /proc/loadavg)
rustc_version=$(rustc --version)
postgresql_version=$(postgres_version)
wasmtime_version=$(awk '$0 == "name = \"wasmtime\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    commit="$commit (with uncommitted changes)"
fi

# --- The runs ---------------------------------------------------------------------------------

declare -a commands=()
declare -A seconds=()

# run NAME SHOWN-COMMAND COMMAND...: runs the command (bounded), shows its output and keeps it.
run() {
    local name=$1 shown=$2
    shift 2
    commands+=("$shown")
    echo "+ $shown" >&2
    local start=$SECONDS
    timeout --kill-after=30 "$STEP_TIMEOUT" "$@" | tee "$OUT/$name.md"
    seconds[$name]=$((SECONDS - start))
    echo >&2
}

plugin_command=(cargo bench -p wasmhook --bench plugin_call)
run plugin "WASMHOOK_BENCH_CALLS=$PLUGIN_CALLS ${plugin_command[*]}" \
    env WASMHOOK_BENCH_CALLS="$PLUGIN_CALLS" "${plugin_command[@]}"

ingest_args=(ingest
    --connections 1 --connections 16 --connections 64 --connections 256
    --requests "$INGEST_REQUESTS_ONE_CONNECTION" --requests "$INGEST_REQUESTS"
    --requests "$INGEST_REQUESTS" --requests "$INGEST_REQUESTS"
    --warmup "$INGEST_WARMUP")
run ingest "wasmhook-bench ${ingest_args[*]}" "$WASMHOOK_BENCH" "${ingest_args[@]}"

prefill_args=(ingest --connections 64 --requests "$INGEST_REQUESTS" --warmup "$INGEST_WARMUP"
    --prefill-events "$PREFILL_EVENTS")
run prefill "wasmhook-bench ${prefill_args[*]}" "$WASMHOOK_BENCH" "${prefill_args[@]}"

e2e_args=(e2e --hosts 1 --hosts 2 --connections 4 --connections 64
    --requests "$E2E_REQUESTS" --warmup "$E2E_WARMUP")
run e2e "wasmhook-bench ${e2e_args[*]}" "$WASMHOOK_BENCH" "${e2e_args[@]}"

# With BASELINE=<rev>: the current build against that revision's, back to back.
BASELINE=${BASELINE:-}
if [ -n "$BASELINE" ]; then
    run baseline "scripts/bench-baseline.sh $BASELINE" \
        env WASMHOOK="$WASMHOOK" WASMHOOK_BENCH="$WASMHOOK_BENCH" INGEST_REQUESTS="$INGEST_REQUESTS" \
        INGEST_WARMUP="$INGEST_WARMUP" E2E_REQUESTS="$E2E_REQUESTS" E2E_WARMUP="$E2E_WARMUP" \
        scripts/bench-baseline.sh "$BASELINE"
fi

total_seconds=$((SECONDS - started_seconds))

# --- The generated block ----------------------------------------------------------------------

# Puts a blank line between tables and the text around them, so that Markdown renders both.
separate_tables() {
    awk '{
        table = /^\|/
        if (NR > 1 && previous != "" && $0 != "" && table != previous_table) print ""
        print
        previous = $0
        previous_table = table
    }' "$1"
}

section() {
    local title=$1 name=$2
    printf '\n#### %s (%d s)\n\n' "$title" "${seconds[$name]}"
    separate_tables "$OUT/$name.md"
}

{
    echo '<!-- bench:begin -->'
    echo '<!-- Generated by `make bench` (scripts/bench.sh): everything up to the end marker is rewritten on each run. -->'
    echo
    echo '## Latest `make bench` run (generated)'
    echo
    printf 'Run on %s from commit %s; %d min %d s in all.\n' \
        "$started_at" "$commit" $((total_seconds / 60)) $((total_seconds % 60))
    echo
    echo '| machine and versions | |'
    echo '|---|---|'
    echo "| CPU | $cpu_model, $cpu_count logical CPUs |"
    echo "| RAM | $memory |"
    echo "| kernel | $kernel |"
    echo "| load average before the run | $load_average |"
    echo "| Rust | $rustc_version |"
    echo "| PostgreSQL | $postgresql_version |"
    echo "| wasmtime | $wasmtime_version (Cargo.lock) |"
    echo
    echo 'Commands, in order (`wasmhook-bench` is `$CARGO_TARGET_DIR/release/wasmhook-bench`, the load generator of `tools/bench`, which `make bench` builds; it measures `$CARGO_TARGET_DIR/release/wasmhook`, from `make release`):'
    echo
    echo '```'
    printf '%s\n' "${commands[@]}"
    echo '```'
    section 'Plugin call: wasm through the full host path vs native' plugin
    section 'Ingest: 1, 16, 64 and 256 connections, against bare axum' ingest
    section "Ingest before and after adding $PREFILL_EVENTS rows to the events table" prefill
    section 'End to end: 1 and 2 host processes on one database' e2e
    if [ -n "$BASELINE" ]; then
        section "Against the baseline $BASELINE" baseline
    fi
    echo
    echo '<!-- bench:end -->'
} > "$OUT/block.md"

awk -v block="$OUT/block.md" '
    $0 == "<!-- bench:begin -->" { while ((getline line < block) > 0) print line; skipping = 1; next }
    $0 == "<!-- bench:end -->" { skipping = 0; next }
    !skipping { print }
' "$BENCH_FILE" > "$OUT/benchmarks.md"
cp "$OUT/benchmarks.md" "$BENCH_FILE"

echo
cat "$OUT/block.md"
echo
echo "updated the generated block of $BENCH_FILE (${total_seconds} s)" >&2
