//! The reply as the model writes it: the channel's model calls are streamed, and the text that
//! will be the reply (a `reply` call's `content` as its arguments arrive, or the plain text of a
//! model answering in text) is published as [`RuntimeEvent::ReplyDelta`]s, so the portal and the
//! OpenAI API show a reply while it is written. The reply itself is still recorded and sent
//! whole when the call ends; deltas are only a preview of it.

use futures::StreamExt;

use spacebot_core::{
    ChatRequest, ChatResponse, DraftScrubber, LanguageModel, LlmError, LlmErrorKind, MessageId, RuntimeEvent, Scrubber,
    StreamEvent,
};

use crate::tools::REPLY_TOOL;

use super::Channel;

/// The argument names a `reply` call's text may come under (as `ChannelCall::parse` accepts).
const REPLY_FIELDS: [&str; 3] = ["content", "text", "message"];

/// What one streamed model call has shown of a reply so far.
struct Draft {
    /// The plain text, while it may be the reply.
    text: Option<DraftScrubber>,
    /// Plain text may still be followed by tool calls (the model calls tools).
    tentative: bool,
    /// The first `reply` call, once it started: its part, its argument JSON so far, the length
    /// of its text already fed to `reply`.
    reply_call: Option<usize>,
    reply_json: String,
    reply_fed: usize,
    reply: DraftScrubber,
}

/// What a stream event changes in the preview.
#[derive(Debug, PartialEq)]
enum Preview {
    /// More reply text.
    Delta { text: String, tentative: bool },
    /// What was shown is not the reply.
    Discard,
}

impl Draft {
    fn new(scrubber: Scrubber, tentative: bool) -> Self {
        Self {
            text: Some(DraftScrubber::new(scrubber.clone())),
            reply: DraftScrubber::new(scrubber),
            tentative,
            reply_call: None,
            reply_json: String::new(),
            reply_fed: 0,
        }
    }

    fn take(&mut self, event: &StreamEvent) -> Option<Preview> {
        match event {
            StreamEvent::TextDelta(piece) => {
                let draft = self.text.as_mut()?;
                let delta = draft.push(piece);
                // Text shaped like a tool call written out (a JSON object, a tag) is refused
                // when the answer ends, so it is not shown.
                if draft.shown().starts_with(['{', '<', '[', '`']) {
                    self.text = None;
                    return None;
                }
                delta.map(|text| Preview::Delta { text, tentative: self.tentative })
            }
            StreamEvent::ToolCallStarted { call, name } if name == REPLY_TOOL && self.reply_call.is_none() => {
                self.reply_call = Some(*call);
                // The text before a reply call is not the reply.
                let shown = self.text.take().is_some_and(|text| !text.shown().is_empty());
                shown.then_some(Preview::Discard)
            }
            StreamEvent::ToolArguments { call, json } if Some(*call) == self.reply_call => {
                self.reply_json.push_str(json);
                let content = partial_string_field(&self.reply_json, &REPLY_FIELDS)?;
                let piece = content.get(self.reply_fed..).filter(|piece| !piece.is_empty())?;
                self.reply_fed = content.len();
                self.reply.push(piece).map(|text| Preview::Delta { text, tentative: false })
            }
            _ => None,
        }
    }
}

impl Channel {
    /// One model call of the turn, streamed: the reply it writes is previewed as it comes.
    pub(super) async fn streamed_call(
        &mut self,
        model: &dyn LanguageModel,
        request: ChatRequest,
        answering: Option<&MessageId>,
    ) -> Result<ChatResponse, LlmError> {
        let mut stream = model.stream(request).await?;
        let mut draft = Draft::new(self.ctx.outbox.scrubber().clone(), model.calls_tools());
        while let Some(event) = stream.next().await {
            let event = event?;
            if let StreamEvent::Done(response) = event {
                return Ok(response);
            }
            match draft.take(&event) {
                Some(Preview::Delta { text, tentative }) => {
                    self.draft_shown = true;
                    self.ctx.outbox.publish(RuntimeEvent::ReplyDelta {
                        agent: self.ctx.agent.clone(),
                        conversation: self.ctx.conversation.clone(),
                        message: answering.cloned(),
                        text,
                        tentative,
                    });
                }
                Some(Preview::Discard) => self.discard_draft(answering),
                None => {}
            }
        }
        Err(LlmError::new(
            LlmErrorKind::InvalidResponse,
            format!("{}: the answer's stream ended before the answer did", model.name()),
        ))
    }

    /// Tells the readers of the preview that what it showed since the last reply is not a
    /// reply, if it showed anything.
    pub(super) fn discard_draft(&mut self, answering: Option<&MessageId>) {
        if std::mem::take(&mut self.draft_shown) {
            self.ctx.outbox.publish(RuntimeEvent::ReplyDiscarded {
                agent: self.ctx.agent.clone(),
                conversation: self.ctx.conversation.clone(),
                message: answering.cloned(),
            });
        }
    }
}

/// The string value of the first of `fields` in a JSON object still being written, as far as it
/// is written: `{"content": "Hel` gives `Hello` once `lo` arrives. Escapes are decoded; one cut
/// in the middle is left for the next call. `None` until such a field's string has begun, or when
/// `json` is not an object.
///
/// Only the object's own keys are looked at: values of other fields (strings, numbers, nested
/// objects and arrays) are skipped over.
fn partial_string_field(json: &str, fields: &[&str]) -> Option<String> {
    let mut rest = json.trim_start().strip_prefix('{')?;
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        let (key, complete, after) = read_string(rest.strip_prefix('"')?);
        if !complete {
            return None;
        }
        let after = after.trim_start().strip_prefix(':')?.trim_start();
        if fields.contains(&key.as_str()) {
            let (value, _, _) = read_string(after.strip_prefix('"')?);
            return Some(value);
        }
        rest = skip_value(after)?;
    }
}

/// Reads a JSON string's contents (after its opening quote): the decoded text, whether its
/// closing quote came, and what follows it.
fn read_string(body: &str) -> (String, bool, &str) {
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (out, true, &body[at + 1..]),
            '\\' => {
                let decoded = match chars.next() {
                    Some((_, 'n')) => '\n',
                    Some((_, 't')) => '\t',
                    Some((_, 'r')) => '\r',
                    Some((_, 'b')) => '\u{8}',
                    Some((_, 'f')) => '\u{c}',
                    Some((_, 'u')) => match unicode_escape(&body[at + 2..]) {
                        Some((c, used)) => {
                            for _ in 0..used {
                                chars.next();
                            }
                            c
                        }
                        // Cut in the middle: decoded when the rest arrives.
                        None => return (out, false, ""),
                    },
                    Some((_, other)) => other,
                    None => return (out, false, ""),
                };
                out.push(decoded);
            }
            c => out.push(c),
        }
    }
    (out, false, "")
}

/// Decodes the hex digits of a `\u` escape at the start of `hex` (a surrogate pair takes the
/// `\uXXXX` after it too): the character and how many chars of `hex` it used. `None` while they
/// are not all there; an unpaired surrogate decodes to U+FFFD.
fn unicode_escape(hex: &str) -> Option<(char, usize)> {
    let unit = |at: usize| hex.get(at..at + 4).and_then(|digits| u32::from_str_radix(digits, 16).ok());
    let first = unit(0)?;
    if !(0xD800..0xDC00).contains(&first) {
        return Some((char::from_u32(first).unwrap_or('\u{FFFD}'), 4));
    }
    if hex.len() < 10 {
        return None;
    }
    match (hex.get(4..6), unit(6)) {
        (Some("\\u"), Some(second)) if (0xDC00..0xE000).contains(&second) => {
            let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            Some((char::from_u32(code).unwrap_or('\u{FFFD}'), 10))
        }
        _ => Some(('\u{FFFD}', 4)),
    }
}

/// What follows one JSON value at the start of `text`; `None` when it isn't all there yet.
fn skip_value(text: &str) -> Option<&str> {
    if let Some(body) = text.strip_prefix('"') {
        let (_, complete, after) = read_string(body);
        return complete.then_some(after);
    }
    if text.starts_with(['{', '[']) {
        // Structural characters are ASCII, so bytes can be matched in UTF-8 text.
        let bytes = text.as_bytes();
        let (mut at, mut depth) = (0, 0usize);
        while at < bytes.len() {
            match bytes[at] {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&text[at + 1..]);
                    }
                }
                b'"' => {
                    let (_, complete, after) = read_string(&text[at + 1..]);
                    if !complete {
                        return None;
                    }
                    at = text.len() - after.len();
                    continue;
                }
                _ => {}
            }
            at += 1;
        }
        return None;
    }
    // A number, `true`, `false` or `null`: up to the next separator, which must have come.
    let end = text.find([',', '}'])?;
    Some(&text[end..])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_field_is_read_as_far_as_it_is_written() {
        let fields = &REPLY_FIELDS;
        assert_eq!(partial_string_field(r#"{"content": "Hel"#, fields).as_deref(), Some("Hel"));
        assert_eq!(partial_string_field(r#"{"content": "Hello"}"#, fields).as_deref(), Some("Hello"));
        assert_eq!(partial_string_field(r#"{"text":"a\nb"#, fields).as_deref(), Some("a\nb"));
        assert_eq!(partial_string_field(r#"{"content": "a\"#, fields).as_deref(), Some("a"), "an escape cut");
        assert_eq!(partial_string_field(r#"{"content": "caf\u00e"#, fields).as_deref(), Some("caf"));
        assert_eq!(partial_string_field(r#"{"content": "caf\u00e9!"#, fields).as_deref(), Some("café!"));
        assert_eq!(partial_string_field(r#"{"content": "\ud83d\ude00"#, fields).as_deref(), Some("😀"));
        assert_eq!(partial_string_field(r#"{"content": "\ud83d"#, fields).as_deref(), Some(""));
        // Other fields first, of every kind, are skipped; nested keys are not the field.
        let json = r#"{"n": 1, "meta": {"content": "no", "list": ["}", 2]}, "ok": true, "message": "yes"#;
        assert_eq!(partial_string_field(json, fields).as_deref(), Some("yes"));
        assert_eq!(partial_string_field(r#"{"n": 1"#, fields), None, "no field yet");
        assert_eq!(partial_string_field(r#"{"cont"#, fields), None, "a key cut");
        assert_eq!(partial_string_field(r#"{"content": 5}"#, fields), None, "not a string");
        assert_eq!(partial_string_field(r#"["content"]"#, fields), None, "not an object");
    }

    #[test]
    fn every_cut_of_a_reply_call_decodes_to_a_prefix_of_its_text() {
        let text = "Line one,\n\"quoted\" — café 😀 \\ done";
        let json = json!({ "content": text }).to_string();
        let mut previous = String::new();
        for cut in (0..=json.len()).filter(|&cut| json.is_char_boundary(cut)) {
            let partial = partial_string_field(&json[..cut], &REPLY_FIELDS).unwrap_or_default();
            assert!(text.starts_with(&partial), "{cut}: {partial:?}");
            assert!(partial.starts_with(&previous), "{cut}: {partial:?} after {previous:?}");
            previous = partial;
        }
        assert_eq!(previous, text);
    }

    fn previews(draft: &mut Draft, events: &[StreamEvent]) -> Vec<Preview> {
        events.iter().filter_map(|event| draft.take(event)).collect()
    }

    fn arguments(call: usize, json: &str) -> StreamEvent {
        StreamEvent::ToolArguments { call, json: json.to_owned() }
    }

    #[test]
    fn a_reply_calls_text_is_previewed_for_sure_and_text_before_it_is_discarded() {
        let mut draft = Draft::new(Scrubber::new(), true);
        let events = [
            StreamEvent::TextDelta("Let me ".into()),
            StreamEvent::TextDelta("answer. ".into()),
            StreamEvent::ToolCallStarted { call: 1, name: REPLY_TOOL.into() },
            arguments(1, r#"{"content": "The answ"#),
            arguments(1, r#"er is 42, "#),
            arguments(1, r#"key sk-abcdefghij"#),
            arguments(1, r#"klmnopqrstuvwx!"}"#),
            StreamEvent::ToolCallStarted { call: 2, name: REPLY_TOOL.into() },
            arguments(2, r#"{"content": "a second reply is not the reply"}"#),
        ];
        let shown = previews(&mut draft, &events);
        assert_eq!(
            shown,
            [
                Preview::Delta { text: "Let me".into(), tentative: true },
                Preview::Delta { text: " answer.".into(), tentative: true },
                Preview::Discard,
                Preview::Delta { text: "The".into(), tentative: false },
                Preview::Delta { text: " answer is 42,".into(), tentative: false },
                Preview::Delta { text: " key".into(), tentative: false },
                Preview::Delta { text: " [redacted]!".into(), tentative: false },
            ]
        );
    }

    #[test]
    fn plain_text_is_certain_from_a_model_without_tools_and_never_shown_when_shaped_like_a_call() {
        let mut draft = Draft::new(Scrubber::new(), false);
        let shown = previews(&mut draft, &[StreamEvent::TextDelta("Hi there, ".into())]);
        assert_eq!(shown, [Preview::Delta { text: "Hi there,".into(), tentative: false }]);

        let mut draft = Draft::new(Scrubber::new(), true);
        let events = [StreamEvent::TextDelta("  {\"name\": ".into()), StreamEvent::TextDelta("\"reply\"} ".into())];
        assert_eq!(previews(&mut draft, &events), []);
        // A call other than `reply` leaves the text as it is (the turn discards it after).
        let mut draft = Draft::new(Scrubber::new(), true);
        let events = [
            StreamEvent::TextDelta("Checking. ".into()),
            StreamEvent::ToolCallStarted { call: 1, name: "branch".into() },
            arguments(1, r#"{"content": "not a reply"}"#),
        ];
        assert_eq!(previews(&mut draft, &events), [Preview::Delta { text: "Checking.".into(), tentative: true }]);
    }
}
