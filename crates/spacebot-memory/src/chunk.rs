//! Splitting text into chunks for import: on line boundaries, each at most a byte budget,
//! except that a single longer line is kept whole rather than cut mid-sentence.

/// Splits `text` into chunks of at most `max_bytes` bytes made of whole lines (a line longer
/// than that is a chunk of its own). Blank lines between chunks are dropped, so chunks never
/// start or end with whitespace; text with no content gives no chunk.
pub fn chunk_text(text: &str, max_bytes: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if current.is_empty() && line.trim().is_empty() {
            continue;
        }
        if !current.is_empty() && current.len() + 1 + line.len() > max_bytes {
            chunks.push(std::mem::take(&mut current).trim_end().to_owned());
            if line.trim().is_empty() {
                continue;
            }
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    let last = current.trim_end();
    if !last.is_empty() {
        chunks.push(last.to_owned());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk_unchanged() {
        assert_eq!(chunk_text("one\ntwo", 100), vec!["one\ntwo"]);
        assert!(chunk_text("\n  \n", 100).is_empty());
    }

    #[test]
    fn chunks_end_on_line_boundaries_within_the_budget() {
        let text = "aaaa\nbbbb\ncccc\ndddd\n";
        let chunks = chunk_text(text, 9);
        assert_eq!(chunks, vec!["aaaa\nbbbb", "cccc\ndddd"]);
        assert!(chunks.iter().all(|chunk| chunk.len() <= 9));
    }

    #[test]
    fn a_long_line_stays_whole() {
        let long = "x".repeat(50);
        let chunks = chunk_text(&format!("a\n{long}\nb"), 10);
        assert_eq!(chunks, vec!["a".to_owned(), long, "b".to_owned()]);
    }
}
