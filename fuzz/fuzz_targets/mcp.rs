//! libFuzzer target `mcp`: feeds every input to [`spacebot_fuzz::check_mcp`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spacebot_fuzz::check_mcp(data));
