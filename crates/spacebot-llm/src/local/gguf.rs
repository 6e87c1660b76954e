//! Reading a GGUF file: its metadata (architecture, context length, chat template), the
//! tokenizer rebuilt from its vocabulary, and its quantized weights.
//!
//! Every failure is an [`Error`] naming the file in one sentence: missing, not GGUF, an
//! architecture or tokenizer this build can't run.

use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::template::ChatTemplate;
use super::transformer::Transformer;
use crate::error::Error;

/// The model architectures this build runs (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Architecture {
    Llama,
    Qwen2,
}

impl Architecture {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            _ => None,
        }
    }

    /// The prefix of its metadata keys.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }
}

/// What the metadata says about a model, read without its weights.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    pub(crate) architecture: Architecture,
    /// `general.name`, or the file's stem.
    pub(crate) name: String,
    /// The context length it was trained for.
    pub(crate) context_length: usize,
    pub(crate) template: ChatTemplate,
}

/// Opens `path` and reads its GGUF header (metadata and tensor table, not the weights).
fn read_header(path: &Path) -> Result<(Content, BufReader<File>), Error> {
    let file = File::open(path).map_err(|error| match error.kind() {
        ErrorKind::NotFound => Error::ModelFileMissing { path: path.to_owned() },
        _ => invalid(path, format!("it can't be opened: {error}")),
    })?;
    let mut reader = BufReader::new(file);
    let content =
        Content::read(&mut reader).map_err(|error| invalid(path, format!("it is not a GGUF file ({error})")))?;
    Ok((content, reader))
}

fn invalid(path: &Path, reason: String) -> Error {
    Error::ModelFileInvalid { path: path.to_owned(), reason }
}

fn text<'a>(content: &'a Content, key: &str) -> Option<&'a str> {
    content.metadata.get(key).and_then(|value| value.to_string().ok()).map(String::as_str)
}

/// The model's metadata, checked: a supported architecture and a GPT-2 style BPE tokenizer.
fn info_of(path: &Path, content: &Content) -> Result<ModelInfo, Error> {
    let architecture_name = text(content, "general.architecture")
        .ok_or_else(|| invalid(path, "its metadata names no architecture (general.architecture)".to_owned()))?;
    let architecture = Architecture::from_name(architecture_name).ok_or_else(|| Error::UnsupportedArchitecture {
        path: path.to_owned(),
        architecture: architecture_name.to_owned(),
    })?;
    match text(content, "tokenizer.ggml.model") {
        Some("gpt2") => {}
        Some(other) => {
            return Err(invalid(
                path,
                format!(
                    "its tokenizer is '{other}', and spacebot reads only byte-level BPE ('gpt2') tokenizers from GGUF"
                ),
            ));
        }
        None => return Err(invalid(path, "it carries no tokenizer (tokenizer.ggml.model)".to_owned())),
    }
    let context_length = content
        .metadata
        .get(&format!("{}.context_length", architecture.key()))
        .and_then(|value| value.to_u32().ok())
        .map_or(2048, |length| length as usize);
    let name = text(content, "general.name").map(str::to_owned).unwrap_or_else(|| {
        path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_else(|| "local".to_owned())
    });
    let template = ChatTemplate::from_metadata(text(content, "tokenizer.chat_template"));
    Ok(ModelInfo { architecture, name, context_length, template })
}

/// Reads and checks `path`'s metadata only: cheap enough for start-up and `doctor`.
pub(crate) fn inspect(path: &Path) -> Result<ModelInfo, Error> {
    let (content, _) = read_header(path)?;
    info_of(path, &content)
}

/// A loaded model: its weights, tokenizer and the ids that end its turn.
pub(crate) struct Loaded {
    pub(crate) info: ModelInfo,
    pub(crate) tokenizer: Tokenizer,
    /// The decoder, with the attention cache of the last generation.
    pub(crate) weights: std::sync::Mutex<Transformer>,
    pub(crate) stop_ids: Vec<u32>,
}

/// Loads `path` whole (blocking: run it off the async threads), to read prompts and answers of
/// up to `context` tokens together.
pub(crate) fn load(path: &Path, context: usize) -> Result<Loaded, Error> {
    let (content, mut reader) = read_header(path)?;
    let info = info_of(path, &content)?;
    let tokenizer = tokenizer(path, &content)?;
    let mut stop_ids: Vec<u32> =
        info.template.end_of_turn().iter().filter_map(|token| tokenizer.token_to_id(token)).collect();
    if let Some(eos) = content.metadata.get("tokenizer.ggml.eos_token_id").and_then(|value| value.to_u32().ok()) {
        stop_ids.push(eos);
    }
    let weights = Transformer::from_gguf(info.architecture, &content, &mut reader, context.min(info.context_length))
        .map_err(|error| invalid(path, format!("its weights can't be read ({error})")))?;
    Ok(Loaded { info, tokenizer, weights: std::sync::Mutex::new(weights), stop_ids })
}

/// The byte-level BPE tokenizer the file describes (`tokenizer.ggml.tokens`, `.merges`,
/// `.token_type`), its control tokens (`<|im_start|>`, ...) kept whole.
pub(super) fn tokenizer(path: &Path, content: &Content) -> Result<Tokenizer, Error> {
    let strings = |key: &str| -> Result<Vec<&str>, Error> {
        let values = content
            .metadata
            .get(key)
            .and_then(|value| value.to_vec().ok())
            .ok_or_else(|| invalid(path, format!("its tokenizer has no {key}")))?;
        values
            .iter()
            .map(|value| value.to_string().map(String::as_str))
            .collect::<Result<_, _>>()
            .map_err(|error| invalid(path, format!("its {key} is not a list of strings ({error})")))
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?
        .into_iter()
        .filter_map(|merge| merge.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    let vocab: Vocab = tokens.iter().enumerate().map(|(id, token)| ((*token).to_owned(), id as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|error| invalid(path, format!("its tokenizer can't be built ({error})")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    // Types from llama.cpp's vocabulary: 3 is a control token, 4 one the model's authors added.
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type").and_then(|value| value.to_vec().ok())
    {
        Some(values) => values.iter().map(|value| value.to_i32().unwrap_or(1)).collect(),
        None => Vec::new(),
    };
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter().copied().chain(std::iter::repeat(1)))
        .filter(|(token, kind)| matches!(kind, 3 | 4) || (token.starts_with("<|") && token.ends_with("|>")))
        .map(|(token, _)| AddedToken::from((*token).to_owned(), true))
        .collect();
    tokenizer
        .add_special_tokens(special)
        .map_err(|error| invalid(path, format!("its control tokens can't be added to its tokenizer ({error})")))?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::{self, Value};

    use super::*;

    fn string_value(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    fn write_gguf(path: &Path, metadata: &[(&str, Value)]) {
        let mut file = File::create(path).unwrap();
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(key, value)| (*key, value)).collect();
        gguf_file::write(&mut file, &metadata, &[]).unwrap();
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = inspect(Path::new("/nonexistent/models/SmolLM2.gguf")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the local model file /nonexistent/models/SmolLM2.gguf does not exist (fetch it with `scripts/fetch-models chat`)"
        );
        assert!(matches!(load(Path::new("/nonexistent/x.gguf"), 64), Err(Error::ModelFileMissing { .. })));
    }

    #[test]
    fn a_file_that_is_not_gguf_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.gguf");
        std::fs::write(&path, "just some text, not a model").unwrap();
        let error = inspect(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "the local model file {} can't be loaded: it is not a GGUF file",
                path.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn a_wrong_architecture_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bert.gguf");
        write_gguf(
            &path,
            &[("general.architecture", string_value("bert")), ("tokenizer.ggml.model", string_value("gpt2"))],
        );
        let error = inspect(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the local model file {} holds a 'bert' model, which spacebot can't run (it runs GGUF models of the llama and qwen2 architectures)",
                path.display()
            )
        );
        assert!(matches!(load(&path, 64), Err(Error::UnsupportedArchitecture { .. })));
    }

    #[test]
    fn a_sentencepiece_tokenizer_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tinyllama.gguf");
        write_gguf(
            &path,
            &[("general.architecture", string_value("llama")), ("tokenizer.ggml.model", string_value("llama"))],
        );
        let error = inspect(&path).unwrap_err().to_string();
        assert!(error.contains("its tokenizer is 'llama'"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[test]
    fn metadata_gives_name_context_and_template() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_gguf(
            &path,
            &[
                ("general.architecture", string_value("qwen2")),
                ("general.name", string_value("Tiny")),
                ("qwen2.context_length", Value::U32(4096)),
                ("tokenizer.ggml.model", string_value("gpt2")),
                ("tokenizer.chat_template", string_value("{{'<|start_header_id|>'}}")),
            ],
        );
        let info = inspect(&path).unwrap();
        assert_eq!(info.architecture, Architecture::Qwen2);
        assert_eq!(info.name, "Tiny");
        assert_eq!(info.context_length, 4096);
        assert_eq!(info.template, ChatTemplate::Llama3);
    }
}
