//! Property tests over what comes from the network or the model: message splitting and the
//! scrubber take any text without panicking and keep their promises. They run a few hundred
//! cases in the normal test run; `PROPTEST_CASES=1000000 cargo test -p spacebot-core --test it
//! properties` is the long run (`docs/security.md`).

use proptest::prelude::*;

use spacebot_core::{REDACTED, Scrubber, SplitOptions, split_message_with};

/// Text with the characters splitting and scrubbing care about: fences, angle spans, breaks,
/// multi-byte characters and credential-like runs.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("```".to_owned()),
        Just("```rust\n".to_owned()),
        Just("<https://example.com|link>".to_owned()),
        Just("<@U123>".to_owned()),
        Just("\n\n".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("sk-".to_owned()),
        Just("é🦀".to_owned()),
        "[a-zA-Z0-9_-]{1,30}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn split_parts_fit_the_limit_and_lose_no_word(text in text(), limit in 1usize..300, angle in any::<bool>()) {
        let options = if angle { SplitOptions::new(limit).with_angle_spans() } else { SplitOptions::new(limit) };
        let parts = split_message_with(&text, options);
        for part in &parts {
            prop_assert!(part.chars().count() <= limit.max(1), "a part over {} chars: {:?}", limit, part);
        }
        // Every non-whitespace character of the text is in the parts, in order (fences added to
        // close and reopen code blocks come on top).
        let joined: String = parts.concat();
        let mut rest = joined.chars().filter(|c| !c.is_whitespace());
        for wanted in text.chars().filter(|c| !c.is_whitespace()) {
            prop_assert!(rest.any(|c| c == wanted), "lost {:?} splitting {:?} into {:?}", wanted, text, parts);
        }
    }

    #[test]
    fn the_scrubber_takes_anything_leaves_no_secret_and_is_stable(
        text in text(),
        secret in "[a-zA-Z0-9]{8,24}",
        at in any::<prop::sample::Index>(),
    ) {
        let scrubber = Scrubber::new().with_secrets([secret.clone()]);
        let mut with_secret = text.clone();
        let cut = with_secret.char_indices().map(|(i, _)| i).chain([with_secret.len()]).nth(at.index(text.chars().count() + 1)).unwrap_or(0);
        with_secret.insert_str(cut, &secret);
        let scrubbed = scrubber.scrub(&with_secret).into_owned();
        prop_assert!(!scrubbed.contains(&secret), "{:?} kept in {:?}", secret, scrubbed);
        prop_assert!(scrubbed.contains(REDACTED));
        prop_assert_eq!(scrubber.scrub(&scrubbed).into_owned(), scrubbed.clone(), "scrubbing twice changed it");
        let _ = scrubber.find(&text);
    }
}
