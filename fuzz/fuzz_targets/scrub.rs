//! libFuzzer target `scrub`: feeds every input to [`spacebot_fuzz::check_scrub`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spacebot_fuzz::check_scrub(data));
