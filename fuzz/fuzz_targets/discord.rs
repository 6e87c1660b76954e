//! libFuzzer target `discord`: feeds every input to [`spacebot_fuzz::check_discord`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spacebot_fuzz::check_discord(data));
