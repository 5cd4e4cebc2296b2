#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| postwerk_fuzz::rspamd_map(data));
