//! libFuzzer target `http_bodies`: feeds every input to [`spacebot_fuzz::check_http_bodies`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spacebot_fuzz::check_http_bodies(data));
