//! Splitting a long reply into messages a platform accepts.
//!
//! Platforms cap a message's length (Discord 2000 characters, Slack about 4000 for readable
//! messages). A reply longer than that is sent as several messages, and where it is cut matters:
//! a cut in the middle of a word or a code block garbles what the reader sees. [`split_message`]
//! cuts at the last paragraph break, else line break, else space that fits; a code block cut in two
//! is closed at the end of one part and reopened (with its language) at the start of the next; with
//! [`SplitOptions::keep_angle_spans`], Slack-style `<...>` tokens (links, mentions) are never cut.
//! Every adapter shares it, so every platform splits the same way.

/// How [`split_message_with`] cuts text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SplitOptions {
    /// The most characters (Unicode scalar values) one part may have.
    pub limit: usize,
    /// Never cut inside `<...>` (Slack links `<https://x|label>` and mentions `<@U1>`).
    pub keep_angle_spans: bool,
}

impl SplitOptions {
    /// Parts of at most `limit` characters, markdown code blocks kept balanced.
    pub fn new(limit: usize) -> Self {
        Self { limit, keep_angle_spans: false }
    }

    /// Also keeps `<...>` spans whole (Slack mrkdwn).
    pub fn with_angle_spans(mut self) -> Self {
        self.keep_angle_spans = true;
        self
    }
}

/// Splits `text` into parts of at most `limit` characters; see [`split_message_with`].
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    split_message_with(text, SplitOptions::new(limit))
}

/// The fence that closes a code block cut in two.
const FENCE_CLOSE: &str = "\n```";
/// Below this limit there is no room to close and reopen code blocks; they are cut like text.
const MIN_LIMIT_FOR_FENCES: usize = 64;
/// Longest code-block language carried over to the next part.
const MAX_LANG: usize = 20;

/// Splits `text` into parts of at most `options.limit` characters without breaking words, code
/// blocks or (optionally) `<...>` spans, as far as the limit allows.
///
/// Text that fits is returned as one part; empty text gives no part. A single word longer than
/// the limit is cut hard (at a character boundary). Whitespace at a cut is dropped.
pub fn split_message_with(text: &str, options: SplitOptions) -> Vec<String> {
    let limit = options.limit.max(1);
    let fences = limit >= MIN_LIMIT_FOR_FENCES;
    let mut parts = Vec::new();
    let mut rest: String = text.trim_end().to_owned();
    while !rest.is_empty() {
        let chars: Vec<char> = rest.chars().collect();
        if chars.len() <= limit {
            parts.push(rest);
            break;
        }
        // Room for a closing fence, should the cut land inside a code block.
        let budget = if fences { limit - FENCE_CLOSE.len() } else { limit };
        let (cut, skip) = find_cut(&chars, budget, options.keep_angle_spans);
        let mut part: String = chars[..cut].iter().collect();
        let mut next: String = chars[cut + skip..].iter().collect();
        if fences && let Some(lang) = open_fence(&part) {
            part.push_str(FENCE_CLOSE);
            let lang: String = lang.chars().take(MAX_LANG).collect();
            next = format!("```{lang}\n{next}");
        } else {
            next = next.trim_start_matches(['\n', ' ']).to_owned();
        }
        let part = part.trim_end().to_owned();
        if !part.is_empty() {
            parts.push(part);
        }
        rest = next;
    }
    parts
}

/// Where to cut `chars` so the first part has at most `budget` characters: the index of the cut
/// and how many characters (whitespace) to drop there.
fn find_cut(chars: &[char], budget: usize, keep_angle_spans: bool) -> (usize, usize) {
    let window = &chars[..budget.min(chars.len())];
    // A reopened fence at the start of the part is not a place to cut.
    // (Unless the fence line fills the whole window: then the part can't both keep it whole and
    // fit, and the fence is cut like any text.)
    let start = if window.starts_with(&['`', '`', '`']) {
        window.iter().position(|&c| c == '\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    let start = if start >= window.len() { 0 } else { start };
    let allowed = |i: usize| i > start && (!keep_angle_spans || !inside_angle_span(window, i));
    // Paragraph break, then line break, then space; a break in the first third would leave a
    // stub part, so it only counts when nothing better exists.
    let min = budget / 3;
    let paragraph = (1..window.len()).rev().find(|&i| window[i] == '\n' && window[i - 1] == '\n' && allowed(i));
    if let Some(i) = paragraph.filter(|&i| i >= min) {
        return (i - 1, 2);
    }
    let newline = (0..window.len()).rev().find(|&i| window[i] == '\n' && allowed(i));
    if let Some(i) = newline.filter(|&i| i >= min) {
        return (i, 1);
    }
    let space = (0..window.len()).rev().find(|&i| window[i].is_whitespace() && allowed(i));
    if let Some(i) = space.or(newline).or(paragraph.map(|i| i - 1)) {
        return (i, 1);
    }
    // One unbreakable run: cut hard, but not inside a `<...>` span if one starts in the window.
    if keep_angle_spans
        && let Some(open) = (start..window.len()).rev().find(|&i| window[i] == '<')
        && open > start
        && inside_angle_span(window, window.len())
    {
        return (open, 0);
    }
    (window.len().max(start + 1).min(chars.len()), 0)
}

/// Whether position `i` falls between a `<` and its `>`.
fn inside_angle_span(chars: &[char], i: usize) -> bool {
    let before = &chars[..i.min(chars.len())];
    match before.iter().rposition(|&c| c == '<') {
        Some(open) => !before[open..].contains(&'>'),
        None => false,
    }
}

/// The language of the code block still open at the end of `text`, if one is.
fn open_fence(text: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(after) = trimmed.strip_prefix("```") {
            open = match open {
                Some(_) => None,
                None => Some(after.trim().to_owned()),
            };
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fences_balanced(part: &str) -> bool {
        part.lines().filter(|l| l.trim_start().starts_with("```")).count() % 2 == 0
    }

    #[test]
    fn short_text_is_one_part_and_empty_text_none() {
        assert_eq!(split_message("hello", 2000), vec!["hello"]);
        assert!(split_message("", 2000).is_empty());
    }

    #[test]
    fn cuts_between_words_within_the_limit() {
        let text = "word ".repeat(1000);
        let parts = split_message(&text, 2000);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        for part in &parts {
            assert!(part.chars().count() <= 2000, "part of {} chars", part.chars().count());
            assert!(part.split(' ').all(|w| w == "word"), "a word was cut: {part:?}");
        }
        assert_eq!(parts.join(" ").split(' ').count(), 1000);
    }

    #[test]
    fn prefers_paragraph_breaks() {
        let first = "a".repeat(70);
        let text = format!("{first}\n\n{}", "b ".repeat(30));
        let parts = split_message(&text, 100);
        assert_eq!(parts[0], first);
    }

    #[test]
    fn code_blocks_are_closed_and_reopened() {
        let code: String = (0..200).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here is the code:\n```rust\n{code}```\nDone.");
        let parts = split_message(&text, 500);
        assert!(parts.len() > 3);
        for (i, part) in parts.iter().enumerate() {
            assert!(part.chars().count() <= 500, "part {i} has {} chars", part.chars().count());
            assert!(fences_balanced(part), "part {i} has an unbalanced fence: {part:?}");
            if i > 0 && i + 1 < parts.len() {
                assert!(part.starts_with("```rust\n"), "part {i} does not reopen the block: {part:?}");
            }
        }
        let lines: Vec<&str> = parts.iter().flat_map(|p| p.lines()).filter(|l| l.starts_with("let ")).collect();
        assert_eq!(lines.len(), 200, "every code line survives exactly once");
    }

    #[test]
    fn a_fence_line_as_long_as_the_limit_is_cut_within_it() {
        // Found by the property test: the part was one character over the limit.
        for part in split_message("```rust\n```", 8) {
            assert!(part.chars().count() <= 8, "{part:?}");
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let text = "é".repeat(3000);
        let parts = split_message(&text, 2000);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), 1996);
    }

    #[test]
    fn angle_spans_are_kept_whole_when_asked() {
        let link = "<https://example.com/a/long/path|a link with spaces in its label>";
        let text = format!("{} {link} tail", "x".repeat(40));
        let parts = split_message_with(&text, SplitOptions::new(80).with_angle_spans());
        assert!(parts.iter().any(|p| p.contains(link)), "the link was cut: {parts:?}");
        let plain = split_message(&text, 80);
        assert!(!plain.iter().any(|p| p.contains(link)), "without the option the label's spaces are cut points");
    }

    #[test]
    fn an_unbreakable_run_is_cut_hard() {
        let text = "x".repeat(250);
        let parts = split_message(&text, 100);
        assert!(parts.iter().all(|p| p.chars().count() <= 100));
        assert_eq!(parts.concat(), text);
    }
}
