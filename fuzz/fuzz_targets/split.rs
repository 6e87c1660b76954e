//! libFuzzer target `split`: feeds every input to [`spacebot_fuzz::check_split`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spacebot_fuzz::check_split(data));
