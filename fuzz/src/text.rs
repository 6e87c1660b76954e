//! Text the platforms and the model send through: message splitting and the scrubber.

use spacebot_core::{REDACTED, Scrubber, SplitOptions, split_message_with};

/// Splits the text with a limit of 1 to 300 characters (the first two bytes) and angle spans
/// kept whole or not (the third): every part fits the limit, and every non-whitespace character
/// of the text is in the parts, in order (fences added to close and reopen code blocks come on
/// top).
pub fn check_split(data: &[u8]) {
    let (limit, angle, text) = match data {
        [a, b, c, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b]) % 300) + 1, c & 1 == 1, rest),
        _ => (80, false, data),
    };
    let text = String::from_utf8_lossy(text);
    let options = if angle { SplitOptions::new(limit).with_angle_spans() } else { SplitOptions::new(limit) };
    let parts = split_message_with(&text, options);
    for part in &parts {
        assert!(part.chars().count() <= limit, "a part over {limit} chars: {part:?}");
    }
    let joined: String = parts.concat();
    let mut rest = joined.chars().filter(|c| !c.is_whitespace());
    for wanted in text.chars().filter(|c| !c.is_whitespace()) {
        assert!(rest.any(|c| c == wanted), "lost {wanted:?} splitting {text:?} into {parts:?}");
    }
}

/// Alphanumeric characters a secret is made of.
const SECRET_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Takes a secret of 8 to 24 alphanumeric characters (its length from the first byte, its
/// characters from the next ones), inserts it at a character boundary of the text (chosen by the
/// byte after it) and scrubs: the secret is gone, a mark stands in its place, and scrubbing
/// again changes nothing.
pub fn check_scrub(data: &[u8]) {
    let Some((&length, rest)) = data.split_first() else { return };
    let length = usize::from(length % 17) + 8;
    if rest.len() < length + 1 {
        return;
    }
    let (secret, rest) = rest.split_at(length);
    let secret: String =
        secret.iter().map(|b| char::from(SECRET_ALPHABET[usize::from(*b) % SECRET_ALPHABET.len()])).collect();
    let (at, text) = (rest[0], &rest[1..]);
    let text = String::from_utf8_lossy(text);
    let scrubber = Scrubber::new().with_secrets([secret.clone()]);
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let cut = boundaries[usize::from(at) % boundaries.len()];
    let mut with_secret = text.to_string();
    with_secret.insert_str(cut, &secret);
    let scrubbed = scrubber.scrub(&with_secret).into_owned();
    assert!(!scrubbed.contains(&secret), "{secret:?} kept in {scrubbed:?}");
    assert!(scrubbed.contains(REDACTED), "no mark in {scrubbed:?}");
    assert_eq!(scrubber.scrub(&scrubbed), scrubbed, "scrubbing twice changed it");
    let _ = scrubber.find(&text);
}
