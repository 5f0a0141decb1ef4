#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flake_core::fuzzing::junit(data));
