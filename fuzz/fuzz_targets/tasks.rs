#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyspy_fuzz::tasks(data));
