//! Reaction names: Slack reacts by shortcode (`+1`), the agent may name an emoji by character.

/// Common emoji and their Slack shortcodes.
const SHORTCODES: &[(&str, &str)] = &[
    ("👍", "+1"),
    ("👎", "-1"),
    ("❤️", "heart"),
    ("❤", "heart"),
    ("😄", "smile"),
    ("😂", "joy"),
    ("🎉", "tada"),
    ("👀", "eyes"),
    ("✅", "white_check_mark"),
    ("❌", "x"),
    ("🤔", "thinking_face"),
    ("🔥", "fire"),
    ("🙏", "pray"),
    ("👋", "wave"),
    ("🚀", "rocket"),
    ("💯", "100"),
    ("⚠️", "warning"),
    ("😢", "cry"),
    ("🙂", "slightly_smiling_face"),
    ("😊", "blush"),
];

/// The Slack reaction name for `emoji`: a known emoji character's shortcode, or a `:name:` or bare
/// name lowercased without colons. `None` for an emoji character with no known shortcode.
pub fn shortcode(emoji: &str) -> Option<String> {
    let emoji = emoji.trim();
    if let Some((_, code)) = SHORTCODES.iter().find(|(character, _)| *character == emoji) {
        return Some((*code).to_owned());
    }
    let name = emoji.trim_matches(':').to_lowercase();
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+-'".contains(c));
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_and_names_become_shortcodes() {
        assert_eq!(shortcode("👍").as_deref(), Some("+1"));
        assert_eq!(shortcode(":Fire:").as_deref(), Some("fire"));
        assert_eq!(shortcode("eyes").as_deref(), Some("eyes"));
        assert_eq!(shortcode("🦀"), None);
        assert_eq!(shortcode(""), None);
    }
}
