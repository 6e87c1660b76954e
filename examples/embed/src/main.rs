//! The example program: an assistant on the terminal, one line per message.
//!
//! ```sh
//! echo "roll 2d6" | cargo run -p example-embed      # offline, with the built-in demo model
//! EMBED_OPENAI_URL=http://127.0.0.1:8080/v1 EMBED_MODEL=my-model cargo run -p example-embed
//! ```
//!
//! `EMBED_OPENAI_URL` switches to a real model behind any OpenAI-compatible server (with
//! `EMBED_API_KEY` if it needs one, and `EMBED_MODEL`, default `gpt-4.1-mini`).

use std::process::ExitCode;
use std::sync::Arc;

use example_embed::{DemoModel, DiceRoll, run};
use tokio::io::BufReader;

use spacebot_core::LanguageModel;
use spacebot_llm::{ProviderConfig, ProviderKind, ProviderModel};

#[tokio::main]
async fn main() -> ExitCode {
    let model = match model_from_env() {
        Ok(model) => model,
        Err(error) => {
            eprintln!("example-embed: can't set up the model: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("Talking to {} — try `roll 2d6`; end with Ctrl-D.", model.name());
    let input = BufReader::new(tokio::io::stdin());
    match run(model, Arc::new(DiceRoll::new()), input, tokio::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("example-embed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The demo model, or a provider when `EMBED_OPENAI_URL` is set.
fn model_from_env() -> Result<Arc<dyn LanguageModel>, spacebot_llm::Error> {
    let Ok(base_url) = std::env::var("EMBED_OPENAI_URL") else {
        return Ok(Arc::new(DemoModel::new()));
    };
    // Two rustls crypto providers are in the dependency tree; pick one before any TLS client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api_key = std::env::var("EMBED_API_KEY").unwrap_or_default();
    let model = std::env::var("EMBED_MODEL").unwrap_or_else(|_| "gpt-4.1-mini".to_owned());
    let config = ProviderConfig::new(ProviderKind::OpenAi, api_key).with_base_url(base_url);
    Ok(Arc::new(ProviderModel::new("embed", config, model)?))
}
