//! The reactions Telegram accepts from bots: a fixed set of emoji.

/// Telegram's reaction emoji, as the Bot API spells them (no variation selectors).
const ALLOWED: &[&str] = &[
    "👍",
    "👎",
    "❤",
    "🔥",
    "🥰",
    "👏",
    "😁",
    "🤔",
    "🤯",
    "😱",
    "🤬",
    "😢",
    "🎉",
    "🤩",
    "🤮",
    "💩",
    "🙏",
    "👌",
    "🕊",
    "🤡",
    "🥱",
    "🥴",
    "😍",
    "🐳",
    "❤‍🔥",
    "🌚",
    "🌭",
    "💯",
    "🤣",
    "⚡",
    "🍌",
    "🏆",
    "💔",
    "🤨",
    "😐",
    "🍓",
    "🍾",
    "💋",
    "🖕",
    "😈",
    "😴",
    "😭",
    "🤓",
    "👻",
    "👨‍💻",
    "👀",
    "🎃",
    "🙈",
    "😇",
    "😨",
    "🤝",
    "✍",
    "🤗",
    "🫡",
    "🎅",
    "🎄",
    "☃",
    "💅",
    "🤪",
    "🗿",
    "🆒",
    "💘",
    "🙉",
    "🦄",
    "😘",
    "💊",
    "🙊",
    "😎",
    "👾",
    "🤷‍♂",
    "🤷",
    "🤷‍♀",
    "😡",
];

/// Near equivalents for emoji models often pick that Telegram does not offer.
const SUBSTITUTES: &[(&str, &str)] =
    &[("✅", "👍"), ("✔", "👍"), ("👋", "🤝"), ("😀", "😁"), ("😂", "🤣"), ("🚀", "🔥")];

/// The emoji as Telegram accepts it: variation selectors and skin tones dropped, shortcodes such
/// as `thumbsup` read, a near equivalent for a few common ones; `None` when there is none.
pub(crate) fn telegram_reaction(emoji: &str) -> Option<&'static str> {
    let bare: String = emoji
        .trim()
        .trim_matches(':')
        .chars()
        .filter(|c| *c != '\u{fe0f}' && !('\u{1f3fb}'..='\u{1f3ff}').contains(c))
        .collect();
    let bare = match bare.as_str() {
        "thumbsup" | "+1" | "like" => "👍",
        "thumbsdown" | "-1" => "👎",
        "heart" => "❤",
        "fire" => "🔥",
        "eyes" => "👀",
        "tada" => "🎉",
        "pray" => "🙏",
        "ok_hand" => "👌",
        "100" => "💯",
        other => other,
    };
    ALLOWED
        .iter()
        .find(|allowed| **allowed == bare)
        .or_else(|| SUBSTITUTES.iter().find(|(from, _)| *from == bare).map(|(_, to)| to))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_read_as_telegram_spells_them() {
        assert_eq!(telegram_reaction("👍"), Some("👍"));
        assert_eq!(telegram_reaction("❤️"), Some("❤"), "the variation selector is dropped");
        assert_eq!(telegram_reaction("👍🏽"), Some("👍"), "skin tones are dropped");
        assert_eq!(telegram_reaction(":thumbsup:"), Some("👍"));
        assert_eq!(telegram_reaction("✅"), Some("👍"));
        assert_eq!(telegram_reaction("🦀"), None);
        for allowed in ALLOWED {
            assert!(spacebot_testing::fake_telegram::REACTION_EMOJI.contains(allowed), "{allowed} is a reaction");
        }
    }
}
