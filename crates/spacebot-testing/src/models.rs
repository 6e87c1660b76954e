//! Where the tests find the real model files `scripts/fetch-models` fetches.

use std::path::PathBuf;

/// The variable naming the SmolLM2 chat model file.
pub const CHAT_MODEL_VAR: &str = "SPACEBOT_TEST_CHAT_MODEL";

/// The SmolLM2-135M-Instruct file: `SPACEBOT_TEST_CHAT_MODEL` (`.ci/run` sets it), else where
/// `scripts/fetch-models chat` puts it (`SPACEBOT_MODELS_DIR`, else `~/.cache/spacebot/models`).
///
/// # Panics
///
/// When it is in neither, saying how to fetch it.
pub fn chat_model_file() -> PathBuf {
    if let Some(path) = std::env::var_os(CHAT_MODEL_VAR).filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    let models = std::env::var_os("SPACEBOT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/spacebot/models"));
    let path = models.join("SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{CHAT_MODEL_VAR} is not set and {} does not exist: the local-model tests need SmolLM2; run \
         `export {CHAT_MODEL_VAR}=\"$(scripts/fetch-models chat)\"` and test again",
        path.display()
    );
    path
}
