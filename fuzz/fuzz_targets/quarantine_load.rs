#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flake_core::fuzzing::quarantine_load(data));
