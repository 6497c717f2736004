#![no_main]

// The body lives in the host library so that `tests/it/fuzz_regressions.rs` runs it on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmhook::fuzzing::ingest(data));
