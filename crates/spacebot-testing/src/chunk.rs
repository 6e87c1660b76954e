//! Splitting answers into stream pieces (dev-only test support).
//!
//! Streamed answers arrive in several pieces so consumers are tested on reassembly, never on a
//! single convenient chunk.

/// How many fragments a streamed tool call's arguments arrive in.
pub(crate) const ARGUMENT_FRAGMENTS: usize = 3;

/// Splits text into word-sized pieces, each keeping its trailing space. Concatenating the pieces
/// gives the text back; empty text gives no pieces.
pub(crate) fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(' ')
}

/// Splits `text` into at most `parts` pieces of similar length, cut on char boundaries.
/// Concatenating the pieces gives the text back; empty text gives no pieces.
pub(crate) fn fragments(text: &str, parts: usize) -> Vec<&str> {
    let size = text.len().div_ceil(parts.max(1)).max(1);
    let mut pieces = Vec::with_capacity(parts);
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_reassemble_to_the_original() {
        let text = "héllo wörld, this is {\"a\": 1}";
        assert_eq!(words(text).collect::<String>(), text);
        assert!(words(text).count() > 1);
        for parts in 1..6 {
            let pieces = fragments(text, parts);
            assert!(pieces.len() <= parts);
            assert_eq!(pieces.concat(), text);
        }
        assert_eq!(fragments("{}", 3), vec!["{", "}"]);
        assert!(fragments("", 3).is_empty());
        assert_eq!(words("").count(), 0);
    }
}
