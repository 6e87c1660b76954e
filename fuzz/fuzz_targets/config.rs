//! libFuzzer target `config`: feeds every input to [`spacebot_fuzz::check_config`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spacebot_fuzz::check_config(data));
