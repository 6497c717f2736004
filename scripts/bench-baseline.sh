#!/usr/bin/env bash
# `make bench BASELINE=<rev>` (called by scripts/bench.sh): the current host against the host
# built from <rev>, back to back on the same load, by the current load generator. <rev> is
# checked out in a worktree and built there with its own target dir and its own github plugin;
# each build then takes turns, ROUNDS times: ingest at 64 connections, then end to end at 64
# connections. Prints each round, the medians and the ratios current/baseline as Markdown.
#
# Arguments: the baseline revision. Environment: WASMHOOK and WASMHOOK_BENCH (the current
# builds), BASELINE_ROUNDS, INGEST_REQUESTS, INGEST_WARMUP, E2E_REQUESTS, E2E_WARMUP.
set -euo pipefail

cd "$(dirname "$0")/.."
baseline=$1
: "${BASELINE_ROUNDS:=3}" "${INGEST_REQUESTS:=20000}" "${INGEST_WARMUP:=2000}"
: "${E2E_REQUESTS:=10000}" "${E2E_WARMUP:=1000}"
baseline_commit=$(git rev-parse --short "$baseline^{commit}")
baseline_target=${BASELINE_TARGET_DIR:-$HOME/.cache/wasmhook/baseline-target}
# A fixed path per commit, kept between runs: cargo's fingerprints include the path, so a new
# path would rebuild the baseline from scratch each time.
worktree=$HOME/.cache/wasmhook/baseline-worktree-$baseline_commit
out=$(mktemp -d "${TMPDIR:-/tmp}/wasmhook-baseline-out-XXXXXX")
trap 'rm -rf "$out"' EXIT

echo "building the baseline $baseline_commit in $worktree" >&2
if [ ! -d "$worktree" ]; then
    git worktree prune
    git worktree add --detach "$worktree" "$baseline_commit" >/dev/null
fi
(
    cd "$worktree"
    export CARGO_TARGET_DIR=$baseline_target
    cargo build --release -p wasmhook >&2
    cargo build --profile plugin --target wasm32-wasip2 -p wasmhook-plugin-github >&2
    mkdir -p target/plugins
    cp "$baseline_target/wasm32-wasip2/plugin/wasmhook_plugin_github.wasm" target/plugins/github.wasm
)
current_plugins=target/plugins
baseline_plugins=$worktree/target/plugins
baseline_wasmhook=$baseline_target/release/wasmhook

# measure BUILD ROUND: one ingest run and one end-to-end run of that build; appends
# "build accepted/s p99 deliveries/s latency-p99" to $out/rounds.
measure() {
    local build=$1 round=$2 wasmhook plugins
    if [ "$build" = baseline ]; then
        wasmhook=$baseline_wasmhook plugins=$baseline_plugins
    else
        wasmhook=$WASMHOOK plugins=$current_plugins
    fi
    "$WASMHOOK_BENCH" ingest --wasmhook "$wasmhook" --plugins-dir "$plugins" \
        --connections 64 --requests "$INGEST_REQUESTS" --warmup "$INGEST_WARMUP" \
        > "$out/ingest-$build-$round.md"
    "$WASMHOOK_BENCH" e2e --wasmhook "$wasmhook" --plugins-dir "$plugins" \
        --connections 64 --requests "$E2E_REQUESTS" --warmup "$E2E_WARMUP" \
        > "$out/e2e-$build-$round.md"
    # The ingest table's row: | 64 | requests | accepted/s | p50 | p99 | ...
    local ingest e2e
    ingest=$(awk -F'|' '$2 ~ /^ *64 *$/ && $3 ~ /^ *[0-9]+ *$/ { gsub(/ /, ""); print $4, $6; exit }' \
        "$out/ingest-$build-$round.md")
    # The end-to-end table's row: | hosts | 64 | webhooks | deliveries/s | p50 | p99 | ...
    e2e=$(awk -F'|' '$2 ~ /^ *1 *$/ && $3 ~ /^ *64 *$/ { gsub(/ /, ""); print $5, $7; exit }' \
        "$out/e2e-$build-$round.md")
    # The ingest cost row: | ingest, 64 connections | webhooks | host CPU | PostgreSQL CPU | …
    local cost
    cost=$(awk -F'|' '$2 ~ /^ *ingest, 64 connections *$/ { gsub(/ /, ""); print $4, $5, $7; exit }' \
        "$out/ingest-$build-$round.md")
    [ -n "$ingest" ] && [ -n "$e2e" ] && [ -n "$cost" ] \
        || { echo "error: no result row from the $build build" >&2; exit 1; }
    echo "$build $round $ingest $e2e $cost" >> "$out/rounds"
    echo "round $round, $build: ingest accepted/s and p99 ms: $ingest; end to end deliveries/s and p99 ms: $e2e; ingest host CPU µs, PostgreSQL CPU µs, WAL bytes: $cost" >&2
}

for round in $(seq 1 "$BASELINE_ROUNDS"); do
    measure baseline "$round"
    measure current "$round"
done

# median BUILD COLUMN: the median over the rounds of one build's column (3 to 9 of rounds).
median() {
    awk -v build="$1" -v column="$2" '$1 == build { print $column }' "$out/rounds" | sort -g \
        | awk '{ values[NR] = $1 } END { if (NR % 2) print values[(NR + 1) / 2]; else print (values[NR / 2] + values[NR / 2 + 1]) / 2 }'
}

echo "Current build against the baseline $baseline_commit, the same load back to back, $BASELINE_ROUNDS rounds each, alternating (ingest: 64 connections, $INGEST_REQUESTS signed 8.8 KB pushes after $INGEST_WARMUP warm-up; end to end: one host, 64 connections, $E2E_REQUESTS webhooks to one receiver answering 204)."
echo
echo "| build | round | ingest accepted/s | ingest p99 ms | end-to-end deliveries/s | end-to-end p99 ms | ingest host CPU µs/webhook | ingest PostgreSQL CPU µs/webhook | ingest WAL bytes/webhook |"
echo "|---|---|---|---|---|---|---|---|---|"
awk '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$out/rounds"
echo
echo "| median | ingest accepted/s | ingest p99 ms | end-to-end deliveries/s | end-to-end p99 ms | ingest host CPU µs/webhook | ingest PostgreSQL CPU µs/webhook | ingest WAL bytes/webhook |"
echo "|---|---|---|---|---|---|---|---|"
for build in baseline current; do
    row="| $build"
    for column in 3 4 5 6 7 8 9; do
        row="$row | $(median "$build" "$column")"
    done
    echo "$row |"
done
row="| ratio current/baseline"
for column in 3 4 5 6 7 8 9; do
    row="$row | $(awk -v b="$(median baseline "$column")" -v c="$(median current "$column")" 'BEGIN { printf "%.2f", c / b }')"
done
echo "$row |"
