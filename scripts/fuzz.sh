#!/usr/bin/env bash
# Fuzzes the host with libFuzzer (cargo-fuzz, nightly): every target in host/fuzz/fuzz_targets,
# one after the other, for SECONDS each (default 60). Not part of `make test`.
#
#   scripts/fuzz.sh [SECONDS]        (or: make fuzz FUZZ_SECONDS=300)
#
# Nightly builds go to their own target dir (WASMHOOK_FUZZ_TARGET_DIR, by default
# ~/.cache/wasmhook/fuzz-target) so that they never touch the stable build's cache. The corpus
# grows in host/fuzz/corpus/<target>; a crash stops its target, leaves its input in
# host/fuzz/artifacts/<target>/ and makes this script exit non-zero after the other targets ran.
# Keep a crash input by copying it into tests/fixtures/fuzz/<target>/: tests/it/fuzz_regressions.rs
# (stable, `cargo test`) replays every file there.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS]   (seconds per target, default 60)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."

# The Makefile exports the stable target dir; nightly must never build into it.
export CARGO_TARGET_DIR="${WASMHOOK_FUZZ_TARGET_DIR:-$HOME/.cache/wasmhook/fuzz-target}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

targets=$(cargo +nightly fuzz list --fuzz-dir host/fuzz)
# Debug assertions on, so that integer overflow counts as a crash too.
cargo +nightly fuzz build --fuzz-dir host/fuzz --debug-assertions

failed=()
for target in $targets; do
  echo "== fuzzing $target for ${seconds}s"
  mkdir -p "host/fuzz/corpus/$target"
  if ! cargo +nightly fuzz run --fuzz-dir host/fuzz --debug-assertions "$target" -- \
      -max_total_time="$seconds" -print_final_stats=1; then
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "crashed: ${failed[*]} (inputs in host/fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "no crash in: $(echo $targets)"
