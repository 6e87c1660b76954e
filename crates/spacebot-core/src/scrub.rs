//! Secrets kept out of everything the runtime sends or records: the one [`Scrubber`] every
//! outbound path goes through.
//!
//! The [`Outbox`](crate::Outbox) scrubs every response it delivers and every event it publishes,
//! and hands out the same scrubber ([`Outbox::scrubber`](crate::Outbox::scrubber)) to whoever
//! records an outgoing message, so the log never holds what was not sent.
//!
//! It masks two kinds of secret: tokens that look like credentials (the prefixes of well-known
//! API keys and tokens, PEM private keys), and any value it was told is secret (the keys and
//! tokens of the configuration, say), as written and in the encodings a model may be talked into
//! using: hexadecimal (either case), base64 and base64url (at any byte alignment inside a longer
//! encoded text, so what stands around it doesn't hide it) and URL percent-encoding.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event::RuntimeEvent;
use crate::message::OutboundResponse;
use crate::process::ProcessChange;

/// What a masked secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not masked as values: masking a short string would mangle
/// ordinary words that happen to contain it.
pub const MIN_SECRET_LEN: usize = 8;

/// Prefixes of well-known credentials, with the least number of token characters after them.
const PREFIXES: [(&str, usize); 9] = [
    ("sk-ant-", 20),
    ("sk-", 20),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xapp-", 10),
    ("ghp_", 20),
    ("github_pat_", 20),
    ("AKIA", 16),
    ("AIza", 30),
];

/// Finds and masks secrets in text. Cheap to clone (the known values are shared).
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Exact secret values, longest first (so a value containing another is masked whole).
    known: Arc<[String]>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the values themselves.
        f.debug_struct("Scrubber").field("known", &self.known.len()).finish()
    }
}

impl Scrubber {
    /// A scrubber that masks credential-shaped tokens only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also masks these values wherever they appear, as written or encoded (values shorter than
    /// [`MIN_SECRET_LEN`] are ignored).
    pub fn with_secrets(self, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut known: Vec<String> = self.known.iter().cloned().collect();
        for value in values.into_iter().map(Into::into).filter(|value| value.trim().len() >= MIN_SECRET_LEN) {
            known.extend(encodings(value.as_bytes()));
            known.push(value);
        }
        known.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        known.dedup();
        Self { known: known.into() }
    }

    /// What kind of secret `text` carries, if it carries one (for messages and logs: never the
    /// secret itself).
    pub fn find(&self, text: &str) -> Option<&'static str> {
        if self.known.iter().any(|value| text.contains(value.as_str())) {
            Some("a configured secret")
        } else if private_key(text, 0).is_some() {
            Some("a private key")
        } else if tokens(text).any(|(_, token)| credential(token)) {
            Some("an API key or token")
        } else {
            None
        }
    }

    /// `text` with every secret replaced by [`REDACTED`]; borrowed when there is none.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.find(text).is_none() {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for value in self.known.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        let mut from = 0;
        while let Some((start, end)) = private_key(&out, from) {
            out.replace_range(start..end, REDACTED);
            from = start + REDACTED.len();
        }
        let spans: Vec<(usize, usize)> = tokens(&out)
            .filter(|(_, token)| credential(token))
            .map(|(start, token)| (start, start + token.len()))
            .collect();
        for (start, end) in spans.into_iter().rev() {
            out.replace_range(start..end, REDACTED);
        }
        Cow::Owned(out)
    }

    /// [`scrub`](Self::scrub) for an owned string.
    pub fn scrub_owned(&self, text: String) -> String {
        match self.scrub(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(scrubbed) => scrubbed,
        }
    }

    /// A file's contents with the secrets masked when they are text (UTF-8), as a text reply
    /// would be; other contents (an image, an archive) are returned as they are.
    pub fn scrub_bytes(&self, data: Vec<u8>) -> Vec<u8> {
        match String::from_utf8(data) {
            Ok(text) => self.scrub_owned(text).into_bytes(),
            Err(not_text) => not_text.into_bytes(),
        }
    }
}

impl Scrubber {
    /// How much of `text` is settled: the length of its longest prefix whose scrubbed form no
    /// text written after it can change. What follows may still complete a secret that starts
    /// in the rest (a token still being written, the start of a configured value or of one of
    /// its encodings, a private key whose END line has not come), so only the settled part may
    /// be shown while text is still coming in. See [`DraftScrubber`].
    pub fn settled_len(&self, text: &str) -> usize {
        // A token running to the end may still grow into a credential.
        let mut end = match tokens(text).last() {
            Some((start, token)) if start + token.len() == text.len() => start,
            _ => text.len(),
        };
        // A configured value (or an encoding of it) may be starting at the end.
        for value in self.known.iter() {
            let from = text.len().saturating_sub(value.len());
            if let Some(start) =
                (from..text.len()).find(|&at| text.is_char_boundary(at) && value.starts_with(&text[at..]))
            {
                end = end.min(start);
            }
        }
        // Nor may the cut fall inside a value already written: the scrubbed prefix would show
        // the part of it before the cut. Moving the cut back can land it inside another.
        loop {
            let inside = self
                .known
                .iter()
                .flat_map(|value| text.match_indices(value.as_str()))
                .filter(|&(start, value)| start < end && start + value.len() > end)
                .map(|(start, _)| start)
                .min();
            match inside {
                Some(start) => end = start,
                None => break,
            }
        }
        // A PEM block is masked whole once its header says it is a private key, so any block
        // not closed yet stays back from its BEGIN line.
        if let Some(begin) = text.rfind("-----BEGIN") {
            let closed = text[begin..]
                .find("-----END")
                .is_some_and(|footer| text[begin + footer + "-----END".len()..].contains("-----"));
            if !closed {
                end = end.min(begin);
            }
        }
        end
    }

    /// `response` with the secrets masked in every text it carries.
    pub fn response(&self, response: OutboundResponse) -> OutboundResponse {
        match response {
            OutboundResponse::Text { text } => OutboundResponse::Text { text: self.scrub_owned(text) },
            OutboundResponse::ThreadReply { thread_name, text } => OutboundResponse::ThreadReply {
                thread_name: self.scrub_owned(thread_name),
                text: self.scrub_owned(text),
            },
            OutboundResponse::Reaction { emoji } => OutboundResponse::Reaction { emoji: self.scrub_owned(emoji) },
            OutboundResponse::File { filename, mime_type, data, caption } => OutboundResponse::File {
                filename: self.scrub_owned(filename),
                mime_type,
                data: self.scrub_bytes(data),
                caption: caption.map(|caption| self.scrub_owned(caption)),
            },
            other => other,
        }
    }

    /// `event` with the secrets masked in every text it carries (responses, process
    /// descriptions, statuses and results, delivery errors).
    pub fn event(&self, event: RuntimeEvent) -> RuntimeEvent {
        match event {
            RuntimeEvent::ResponseSent { agent, conversation, adapter, response } => {
                RuntimeEvent::ResponseSent { agent, conversation, adapter, response: self.response(response) }
            }
            RuntimeEvent::ReplyDelta { agent, conversation, message, text, tentative } => {
                RuntimeEvent::ReplyDelta { agent, conversation, message, text: self.scrub_owned(text), tentative }
            }
            RuntimeEvent::DeliveryFailed { agent, conversation, adapter, error } => {
                RuntimeEvent::DeliveryFailed { agent, conversation, adapter, error: self.scrub_owned(error) }
            }
            RuntimeEvent::Process(mut process) => {
                process.change = match process.change {
                    ProcessChange::Started { description } => {
                        ProcessChange::Started { description: self.scrub_owned(description) }
                    }
                    ProcessChange::Status { text } => ProcessChange::Status { text: self.scrub_owned(text) },
                    ProcessChange::Finished { state, summary } => {
                        ProcessChange::Finished { state, summary: self.scrub_owned(summary) }
                    }
                };
                RuntimeEvent::Process(process)
            }
            other => other,
        }
    }
}

/// Masks secrets in text that arrives in pieces (a reply as the model writes it), handing out
/// only what is settled: the pieces it returns, joined, are always a prefix of the scrubbed
/// whole, so a secret split across pieces is never shown in part.
///
/// Leading whitespace is not shown, nor trailing whitespace until something follows it, so what
/// was shown is also a prefix of the whole with its ends trimmed.
///
/// A push costs time in the text not yet closed, not in the whole draft: once settled text has a
/// point no secret can span (after whitespace, outside any configured value and PEM block), the
/// text before it is scrubbed for good and never read again.
#[derive(Debug, Clone)]
pub struct DraftScrubber {
    scrubber: Scrubber,
    /// Everything pushed so far, as written, from its first character that is not whitespace.
    raw: String,
    /// Where the open part of `raw` starts: no secret spans this point, and `raw[..base]` is
    /// scrubbed for good into `closed`.
    base: usize,
    /// `raw[..base]` scrubbed.
    closed: String,
    /// The scrubbed text handed out so far: `closed` (bar trailing whitespace not shown yet),
    /// then a prefix of the open part scrubbed.
    shown: String,
    /// A piece no longer extended what was shown (it can't happen with the rules above; if it
    /// ever did, nothing more is shown rather than something inconsistent).
    stuck: bool,
}

impl DraftScrubber {
    /// A draft scrubbed by `scrubber`.
    pub fn new(scrubber: Scrubber) -> Self {
        Self { scrubber, raw: String::new(), base: 0, closed: String::new(), shown: String::new(), stuck: false }
    }

    /// Adds a piece; returns the text newly settled and safe to show, if there is any.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.raw.push_str(if self.raw.is_empty() { piece.trim_start() } else { piece });
        if self.stuck {
            return None;
        }
        let open = &self.raw[self.base..];
        let settled = &open[..self.scrubber.settled_len(open)];
        let scrubbed = self.scrubber.scrub(settled);
        // The settled whole, scrubbed and trimmed, is `head` then `tail`.
        let (head, tail) = match scrubbed.trim_end() {
            "" => (self.closed.trim_end(), ""),
            tail => (self.closed.as_str(), tail),
        };
        // What was shown of `closed` is a prefix of it (it only ever lags by whitespace), so
        // only the open part needs comparing.
        let new = match self.shown.len().checked_sub(head.len()) {
            None => format!("{}{tail}", head.get(self.shown.len()..)?),
            Some(past) => match tail.strip_prefix(&self.shown[head.len()..]) {
                Some(_) => tail[past..].to_owned(),
                None => {
                    self.stuck = true;
                    return None;
                }
            },
        };
        let cut = self.scrubber.closing_point(open, settled.len());
        if cut > 0 {
            let closing = self.scrubber.scrub(&open[..cut]).into_owned();
            self.closed.push_str(&closing);
            self.base += cut;
        }
        if new.is_empty() {
            return None;
        }
        self.shown.push_str(&new);
        Some(new)
    }

    /// The text handed out so far.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// How many bytes of the draft are still open (read again by the next push).
    #[cfg(test)]
    fn open_len(&self) -> usize {
        self.raw.len() - self.base
    }
}

impl Scrubber {
    /// The last point in `text[..settled]` no secret can span, so `text` scrubbed is the text
    /// before it scrubbed then the text after it scrubbed: right after whitespace (no token spans
    /// it), outside every configured value written and every PEM block. `0` when there is none.
    fn closing_point(&self, text: &str, settled: usize) -> usize {
        let mut limit = settled;
        loop {
            let Some((at, space)) = text[..limit].char_indices().rev().find(|(_, c)| c.is_whitespace()) else {
                return 0;
            };
            let cut = at + space.len_utf8();
            let inside = self
                .known
                .iter()
                .flat_map(|value| text.match_indices(value.as_str()))
                .filter(|&(start, value)| start < cut && start + value.len() > cut)
                .map(|(start, _)| start)
                .min();
            if let Some(start) = inside {
                limit = start;
                continue;
            }
            if let Some(begin) = text[..cut].rfind("-----BEGIN") {
                let closed = text[begin..cut]
                    .find("-----END")
                    .is_some_and(|footer| text[begin + footer + "-----END".len()..cut].contains("-----"));
                if !closed {
                    limit = begin;
                    continue;
                }
            }
            return cut;
        }
    }
}

/// The runs of token characters in `text`, with their byte offsets.
/// The forms of `secret` that give it away: hex in both cases, URL percent-encoding (when it
/// differs), and the parts of its base64 and base64url encodings that stay the same whatever
/// bytes stand before or after it, at each of the three byte alignments.
fn encodings(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    let hex: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    forms.push(hex.to_ascii_uppercase());
    forms.push(hex);
    let percent: String = secret
        .iter()
        .map(|&byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect();
    if percent.as_bytes() != secret {
        forms.push(percent);
    }
    for offset in 0..3usize {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret);
        let encoded = base64(&bytes);
        // Characters whose six bits all come from the secret.
        let first = (8 * offset).div_ceil(6);
        let last = 8 * (offset + secret.len()) / 6;
        if let Some(stable) = encoded.get(first..last).filter(|stable| stable.len() >= MIN_SECRET_LEN) {
            forms.push(stable.replace('+', "-").replace('/', "_"));
            forms.push(stable.to_owned());
        }
    }
    forms
}

/// Standard base64 without padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (i, &byte)| group | u32::from(byte) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let index = (group >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

fn tokens(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let is_token = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while rest.next_if(|&(_, c)| !is_token(c)).is_some() {}
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some((at, c)) = rest.next_if(|&(_, c)| is_token(c)) {
            end = at + c.len_utf8();
        }
        Some((start, &text[start..end]))
    })
}

/// Whether a token is shaped like a well-known credential.
fn credential(token: &str) -> bool {
    PREFIXES.iter().any(|(prefix, min_len)| token.strip_prefix(prefix).is_some_and(|rest| rest.len() >= *min_len))
}

/// The byte span of the first PEM private key at or after `from` (to its END line, or to the end
/// of the text when cut).
fn private_key(text: &str, from: usize) -> Option<(usize, usize)> {
    let start = from + text.get(from..)?.find("-----BEGIN")?;
    let header_end = text[start..].find('\n').map_or(text.len(), |at| start + at);
    if !text[start..header_end].contains("PRIVATE KEY") {
        return private_key(text, start + "-----BEGIN".len());
    }
    let end = match text[header_end..].find("-----END") {
        Some(at) => {
            let footer = header_end + at;
            text[footer + 8..].find("-----").map_or(text.len(), |close| footer + 8 + close + 5)
        }
        None => text.len(),
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_left_alone() {
        let scrubber = Scrubber::new().with_secrets(["correct-horse-battery"]);
        for text in ["Sure, the meeting is at 3pm.", "use the sk- prefix for keys", "{\"weather\": \"sunny\"}", ""] {
            assert_eq!(scrubber.find(text), None, "{text}");
            assert!(matches!(scrubber.scrub(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn credential_shaped_tokens_are_masked_where_they_stand() {
        let scrubber = Scrubber::new();
        assert_eq!(
            scrubber.scrub("your key is sk-abcdefghijklmnopqrstuvwx, keep it safe"),
            "your key is [redacted], keep it safe"
        );
        assert_eq!(scrubber.scrub("token: \"xoxb-1234567890-abcdef\"."), "token: \"[redacted]\".");
        assert_eq!(
            scrubber.scrub("a ghp_abcdefghijklmnopqrstuvwxyz0123 and AKIAABCDEFGHIJKLMNOP here"),
            "a [redacted] and [redacted] here"
        );
        assert_eq!(scrubber.find("sk-ant-api03-abcdefghijklmnopqrstuv"), Some("an API key or token"));
    }

    #[test]
    fn private_keys_are_masked_whole_even_when_cut() {
        let scrubber = Scrubber::new();
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----";
        assert_eq!(scrubber.scrub(&format!("here: {key} done")), "here: [redacted] done");
        assert_eq!(scrubber.scrub("-----BEGIN PRIVATE KEY-----\nMIIEv"), "[redacted]");
        let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(scrubber.find(certificate), None, "a certificate is public");
    }

    #[test]
    fn configured_values_are_masked_anywhere_longest_first() {
        let scrubber = Scrubber::new().with_secrets(["hunter2hunter2", "hunter2hunter2-extra", "short"]);
        assert_eq!(scrubber.scrub("pw=hunter2hunter2-extra;"), "pw=[redacted];");
        assert_eq!(scrubber.scrub("(hunter2hunter2)"), "([redacted])");
        assert_eq!(scrubber.scrub("short words stay"), "short words stay", "short values are not secrets");
        assert_eq!(scrubber.find("xhunter2hunter2x"), Some("a configured secret"));
        assert!(!format!("{scrubber:?}").contains("hunter2"), "Debug never shows the values");
    }

    #[test]
    fn encoded_secrets_are_masked_too() {
        let secret = "provider-secret-value-42";
        let scrubber = Scrubber::new().with_secrets([secret]);
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!scrubber.scrub(&format!("hex: {hex}")).contains(&hex));
        assert!(!scrubber.scrub(&format!("HEX: {}", hex.to_uppercase())).contains(&hex.to_uppercase()));
        let url = "p%40ss%20word%26more-secret";
        let scrubber_url = Scrubber::new().with_secrets(["p@ss word&more-secret"]);
        assert_eq!(scrubber_url.scrub(&format!("?q={url}")), format!("?q={REDACTED}"));
        // base64 of the secret alone, and inside longer encoded texts at every alignment.
        for prefix in ["", "a", "ab", "abc", "hello, "] {
            let plain = format!("{prefix}{secret} and after");
            let encoded = base64(plain.as_bytes());
            let scrubbed = scrubber.scrub(&encoded);
            assert!(scrubbed.contains(REDACTED), "{prefix:?}: {encoded} -> {scrubbed}");
            let url_safe = encoded.replace('+', "-").replace('/', "_");
            assert!(scrubber.scrub(&url_safe).contains(REDACTED), "{prefix:?}: {url_safe}");
        }
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE");
        assert_eq!(base64(b"M"), "TQ");
        // Ordinary text and other base64 stay as they are.
        let other = base64(b"nothing to see here, really");
        assert_eq!(scrubber.scrub(&other), other);
    }

    #[test]
    fn scrubbing_twice_changes_nothing_more() {
        let scrubber = Scrubber::new().with_secrets(["s3cr3t-value-123"]);
        let once = scrubber.scrub("s3cr3t-value-123 sk-abcdefghijklmnopqrstuvwx").into_owned();
        assert_eq!(scrubber.scrub(&once), once);
    }

    /// Feeds `pieces` to a draft; returns what it showed, joined.
    fn shown(scrubber: &Scrubber, pieces: &[&str]) -> String {
        let mut draft = DraftScrubber::new(scrubber.clone());
        let out: String = pieces.iter().filter_map(|piece| draft.push(piece)).collect();
        assert_eq!(out, draft.shown());
        out
    }

    #[test]
    fn a_draft_never_shows_part_of_a_secret_split_across_pieces() {
        let scrubber = Scrubber::new().with_secrets(["hunter2 hunter2"]);
        // A credential written a few characters at a time: nothing of it shows until it ends.
        let out = shown(&scrubber, &["your key: sk", "-abcdefgh", "ijklmnopqrst", "uvwx and more"]);
        assert_eq!(out, "your key: [redacted] and");
        // A configured value with a space in it, cut inside the value.
        let out = shown(&scrubber, &["the password is hunter2", " hunt", "er2, see?"]);
        assert_eq!(out, "the password is [redacted], see?");
        // A private key held back from its BEGIN line until its END line closes it.
        let pieces = ["key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIE", "pAIBAAK\n-----END RSA PRIVATE KEY", "-----\nok."];
        let during = shown(&scrubber, &pieces[..2]);
        assert_eq!(during, "key:");
        assert_eq!(shown(&scrubber, &pieces), "key:\n[redacted]\nok.");
    }

    #[test]
    fn a_draft_shows_words_as_they_settle_without_the_ends_whitespace() {
        let scrubber = Scrubber::new();
        let mut draft = DraftScrubber::new(scrubber);
        assert_eq!(draft.push("  \n"), None);
        assert_eq!(draft.push("Hello"), None, "a word may still grow");
        assert_eq!(draft.push(" wor").as_deref(), Some("Hello"));
        assert_eq!(draft.push("ld! "), Some(" world!".to_owned()));
        assert_eq!(draft.push("\n\n"), None);
        assert_eq!(draft.push("Bye."), Some(" \n\nBye.".to_owned()));
    }

    /// The draft as it was before it kept a closed part: every push scrubs the whole text.
    fn shown_by_rescanning(scrubber: &Scrubber, pieces: &[&str]) -> String {
        let mut raw = String::new();
        let mut shown = String::new();
        for piece in pieces {
            raw.push_str(piece);
            let text = raw.trim_start();
            let settled = text[..scrubber.settled_len(text)].trim_end();
            let scrubbed = scrubber.scrub(settled);
            match scrubbed.strip_prefix(shown.as_str()) {
                Some(new) => shown.push_str(new),
                None => break,
            }
        }
        shown
    }

    #[test]
    fn a_long_draft_is_not_read_again_with_every_piece() {
        let scrubber = Scrubber::new().with_secrets(["hunter2 hunter2"]);
        let mut draft = DraftScrubber::new(scrubber);
        let mut text = String::new();
        for i in 0..5_000 {
            let word = format!("word{i} ");
            text.push_str(&word);
            draft.push(&word);
            assert!(draft.open_len() <= word.len(), "push {i}: {} bytes open", draft.open_len());
        }
        assert_eq!(draft.shown(), text.trim_end());
        // A configured value, a credential and a key keep their text open until they are closed.
        draft.push("the password is hunter2 ");
        assert!(draft.open_len() >= "hunter2 ".len());
        draft.push("hunter2 and -----BEGIN RSA PRIVATE KEY-----\nAB\n");
        assert!(draft.open_len() >= "-----BEGIN RSA PRIVATE KEY-----\nAB\n".len());
        draft.push("-----END RSA PRIVATE KEY----- done ");
        assert!(draft.open_len() <= "done ".len(), "{} open", draft.open_len());
        assert!(
            draft.shown().ends_with("the password is [redacted] and [redacted] done"),
            "{}",
            &draft.shown()[text.len() - 10..]
        );
    }

    /// The secret the draft property tests configure.
    const CASE_SECRET: &str = "pa55 word-secret";

    /// A text made of `parts` (indices into pieces of secrets, encodings, credentials, keys and
    /// plain words), and the scrubber that knows its secret.
    fn draft_case(parts: &[usize]) -> (Scrubber, String) {
        let hex: String = CASE_SECRET.bytes().map(|byte| format!("{byte:02x}")).collect();
        let alphabet = [
            "pa55 ",
            "word-secret",
            CASE_SECRET,
            &hex[..10],
            &hex[10..],
            "sk-",
            "abcdefghij",
            "klmnopqrstu",
            " ",
            "\n",
            "-----BEGIN RSA PRIVATE KEY-----\nAB",
            "-----END RSA PRIVATE KEY-----",
            "é ",
        ];
        (
            Scrubber::new().with_secrets([CASE_SECRET]),
            parts.iter().map(|&part| alphabet[part % alphabet.len()]).collect(),
        )
    }

    /// `text` cut into pieces of the lengths `cuts` (moved forward to character boundaries), then
    /// the rest.
    fn cut<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
        let mut pieces = Vec::new();
        let mut at = 0;
        for cut in cuts {
            let mut next = (at + cut).min(text.len());
            while !text.is_char_boundary(next) {
                next += 1;
            }
            pieces.push(&text[at..next]);
            at = next;
        }
        pieces.push(&text[at..]);
        pieces
    }

    proptest::proptest! {
        /// Keeping a closed part changes nothing in what is shown.
        #[test]
        fn a_draft_shows_what_rescanning_the_whole_text_would(
            parts in proptest::collection::vec(0usize..13, 0..32),
            cuts in proptest::collection::vec(0usize..40, 0..32),
        ) {
            let (scrubber, text) = draft_case(&parts);
            let pieces = cut(&text, &cuts);
            proptest::prop_assert_eq!(shown(&scrubber, &pieces), shown_by_rescanning(&scrubber, &pieces), "{:?}", pieces);
        }
    }

    proptest::proptest! {
        /// However a text is cut into pieces, what a draft shows is a prefix of the whole text
        /// scrubbed (and trimmed), so no secret is ever shown in part.
        #[test]
        fn a_draft_shows_a_prefix_of_the_scrubbed_whole(
            parts in proptest::collection::vec(0usize..13, 0..24),
            cuts in proptest::collection::vec(0usize..40, 0..24),
        ) {
            let (scrubber, text) = draft_case(&parts);
            let pieces = cut(&text, &cuts);
            let out = shown(&scrubber, &pieces);
            let whole = scrubber.scrub(&text);
            proptest::prop_assert!(whole.trim().starts_with(&out), "{text:?} in {pieces:?}: showed {out:?}, whole {whole:?}");
        }
    }
}
