//! libFuzzer target `slack`: feeds every input to [`spacebot_fuzz::check_slack`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spacebot_fuzz::check_slack(data));
