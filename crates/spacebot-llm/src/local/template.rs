//! Chat templates: how a local model's prompt is laid out, read from the GGUF metadata.
//!
//! GGUF files carry their chat template as a Jinja string (`tokenizer.chat_template`). Rather
//! than embed a Jinja engine, the template is recognised by its markers and rendered by one of
//! the families small models use: ChatML (SmolLM2, Qwen2), Llama 3, and Gemma. A file with no
//! template, or one that is none of these, gets ChatML.

use spacebot_core::ChatMessage;

/// A prompt layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatTemplate {
    /// `<|im_start|>role\ntext<|im_end|>\n`, the answer opened with `<|im_start|>assistant\n`.
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\ntext<|eot_id|>`.
    Llama3,
    /// `<start_of_turn>user\ntext<end_of_turn>\n`; no system role, so the system prompt leads
    /// the first user turn.
    Gemma,
}

impl ChatTemplate {
    /// The family of the Jinja template `template` (the GGUF's `tokenizer.chat_template`);
    /// ChatML when there is none or it is not recognised.
    pub(crate) fn from_metadata(template: Option<&str>) -> Self {
        match template {
            Some(text) if text.contains("<|start_header_id|>") => Self::Llama3,
            Some(text) if text.contains("<start_of_turn>") => Self::Gemma,
            _ => Self::ChatMl,
        }
    }

    /// Its name, for logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ChatMl => "chatml",
            Self::Llama3 => "llama3",
            Self::Gemma => "gemma",
        }
    }

    /// The tokens that end the model's turn (besides the file's end-of-sequence token).
    pub(crate) fn end_of_turn(self) -> &'static [&'static str] {
        match self {
            Self::ChatMl => &["<|im_end|>", "<|endoftext|>"],
            Self::Llama3 => &["<|eot_id|>", "<|end_of_text|>"],
            Self::Gemma => &["<end_of_turn>", "<eos>"],
        }
    }

    /// The prompt for `system` and `messages`, ending where the model's answer starts.
    ///
    /// Tools are not offered to local models, so tool calls and results of an earlier model (a
    /// hosted one, before the config changed) appear as plain text.
    pub(crate) fn render(self, system: &str, messages: &[ChatMessage]) -> String {
        let mut turns: Vec<(&'static str, String)> = Vec::with_capacity(messages.len() + 1);
        if !system.trim().is_empty() {
            turns.push(("system", system.to_owned()));
        }
        for message in messages {
            match message {
                ChatMessage::User { content, .. } => turns.push(("user", content.clone())),
                ChatMessage::Assistant { content, tool_calls } => {
                    let mut text = content.clone();
                    for call in tool_calls {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(&format!("[called {} with {}]", call.name, call.arguments));
                    }
                    turns.push(("assistant", text));
                }
                ChatMessage::ToolResult { name, content, .. } => {
                    turns.push(("user", format!("[result of {name}]\n{content}")));
                }
                _ => {}
            }
        }
        let mut out = String::new();
        match self {
            Self::ChatMl => {
                for (role, text) in &turns {
                    out.push_str(&format!("<|im_start|>{role}\n{text}<|im_end|>\n"));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            Self::Llama3 => {
                out.push_str("<|begin_of_text|>");
                for (role, text) in &turns {
                    out.push_str(&format!("<|start_header_id|>{role}<|end_header_id|>\n\n{}<|eot_id|>", text.trim()));
                }
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            Self::Gemma => {
                out.push_str("<bos>");
                let mut pending_system: Option<String> = None;
                for (role, text) in turns {
                    match role {
                        "system" => pending_system = Some(text),
                        "assistant" => out.push_str(&format!("<start_of_turn>model\n{}<end_of_turn>\n", text.trim())),
                        _ => {
                            let text = match pending_system.take() {
                                Some(system) => format!("{}\n\n{}", system.trim(), text.trim()),
                                None => text.trim().to_owned(),
                            };
                            out.push_str(&format!("<start_of_turn>user\n{text}<end_of_turn>\n"));
                        }
                    }
                }
                if let Some(system) = pending_system {
                    out.push_str(&format!("<start_of_turn>user\n{}<end_of_turn>\n", system.trim()));
                }
                out.push_str("<start_of_turn>model\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use spacebot_core::ToolCall;

    use super::*;

    /// SmolLM2-135M-Instruct's `tokenizer.chat_template`, as its GGUF file carries it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}";

    const GEMMA: &str = "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}";

    #[test]
    fn templates_are_recognised_by_their_markers() {
        assert_eq!(ChatTemplate::from_metadata(Some(SMOLLM2)), ChatTemplate::ChatMl);
        assert_eq!(ChatTemplate::from_metadata(Some(LLAMA3)), ChatTemplate::Llama3);
        assert_eq!(ChatTemplate::from_metadata(Some(GEMMA)), ChatTemplate::Gemma);
        assert_eq!(ChatTemplate::from_metadata(None), ChatTemplate::ChatMl);
        assert_eq!(ChatTemplate::from_metadata(Some("{{ messages }}")), ChatTemplate::ChatMl);
    }

    #[test]
    fn chatml_renders_each_turn_and_opens_the_answer() {
        let messages =
            vec![ChatMessage::user("hello"), ChatMessage::assistant("Hi!"), ChatMessage::user("how are you?")];
        assert_eq!(
            ChatTemplate::ChatMl.render("Be brief.", &messages),
            "<|im_start|>system\nBe brief.<|im_end|>\n\
             <|im_start|>user\nhello<|im_end|>\n\
             <|im_start|>assistant\nHi!<|im_end|>\n\
             <|im_start|>user\nhow are you?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::ChatMl.render("  ", &[ChatMessage::user("x")]),
            "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n",
            "an empty system prompt is left out"
        );
    }

    #[test]
    fn llama3_and_gemma_render_their_own_markers() {
        let messages = vec![ChatMessage::user("hello")];
        assert_eq!(
            ChatTemplate::Llama3.render("Be brief.", &messages),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let messages = vec![ChatMessage::user("hello"), ChatMessage::assistant("Hi!"), ChatMessage::user("bye")];
        assert_eq!(
            ChatTemplate::Gemma.render("Be brief.", &messages),
            "<bos><start_of_turn>user\nBe brief.\n\nhello<end_of_turn>\n\
             <start_of_turn>model\nHi!<end_of_turn>\n\
             <start_of_turn>user\nbye<end_of_turn>\n\
             <start_of_turn>model\n"
        );
    }

    #[test]
    fn tool_calls_and_results_become_plain_text() {
        let call = ToolCall::new("c1", "reply", serde_json::json!({"text": "hi"}));
        let messages = vec![
            ChatMessage::user("hello"),
            ChatMessage::assistant_with_calls("", vec![call]),
            ChatMessage::tool_result("c1", "reply", "sent"),
        ];
        let prompt = ChatTemplate::ChatMl.render("", &messages);
        assert!(prompt.contains("<|im_start|>assistant\n[called reply with {\"text\":\"hi\"}]<|im_end|>"), "{prompt}");
        assert!(prompt.contains("<|im_start|>user\n[result of reply]\nsent<|im_end|>"), "{prompt}");
    }

    #[test]
    fn each_family_stops_at_its_end_of_turn() {
        assert!(ChatTemplate::ChatMl.end_of_turn().contains(&"<|im_end|>"));
        assert!(ChatTemplate::Llama3.end_of_turn().contains(&"<|eot_id|>"));
        assert!(ChatTemplate::Gemma.end_of_turn().contains(&"<end_of_turn>"));
        assert_eq!(ChatTemplate::Gemma.name(), "gemma");
    }
}
