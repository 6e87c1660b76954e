//! The in-memory full-text copy that recall ranks with: every live memory's words, stemmed
//! (`stem`), scored with Okapi BM25 exactly as SQLite's FTS5 `bm25()` scores its tokens (k1 =
//! 1.2, b = 0.75, FTS5's idf).
//!
//! Why a copy: FTS5 computes `bm25()` for every row that matches any query word before it can
//! sort, reading each row's length from its own table as it goes, so a recall of four words
//! cost 9 to 18 ms at 100,000 memories (about 3 µs per matching row; see docs/benchmarks.md).
//! Here a matching row costs a few nanoseconds. The FTS5 index stays the durable, transactional
//! full-text index in the file (what `sqlite3` and other tools query), and the test
//! `ranks_as_fts5_does` holds this copy to its ranking.
//!
//! The copy follows the database as the vector copy does (see `indexes.rs`): loaded at open,
//! updated by the writer after each commit, reloaded when another process wrote.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

use spacebot_core::MemoryId;

use crate::memory::vectors::{Entry, Scored, keep_best};

/// BM25's term-frequency saturation, as FTS5's `bm25()`.
const K1: f64 = 1.2;

/// BM25's length normalisation, as FTS5's `bm25()`.
const B: f64 = 0.75;

/// Calls `each` with every word of `text`, as the FTS5 index tokenizes it (`unicode61
/// remove_diacritics 2`): runs of letters and digits, lowercased, with the diacritics of Latin
/// letters removed (`Café` gives `cafe`, `Łódź` gives `łodz`: letters of their own such as `ł`,
/// `ø` and `ß` stay, as do other scripts' marks, so `й` is not `и`).
pub(crate) fn for_each_word(text: &str, mut each: impl FnMut(&str)) {
    let mut folded = String::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
        if word.is_ascii() {
            if word.bytes().any(|byte| byte.is_ascii_uppercase()) {
                folded.clear();
                folded.push_str(word);
                folded.make_ascii_lowercase();
                each(&folded);
            } else {
                each(word);
            }
            continue;
        }
        folded.clear();
        for c in word.chars() {
            if is_latin(c) {
                decompose_canonical(c, |part| {
                    if !is_combining_mark(part) {
                        folded.extend(part.to_lowercase());
                    }
                });
            } else {
                folded.extend(c.to_lowercase());
            }
        }
        if !folded.is_empty() {
            each(&folded);
        }
    }
}

/// The stem of a word `for_each_word` gave: English inflections stripped, conservatively, so
/// "painting", "painted" and "paints" all index and match as `paint`, "asked" as `ask`, "parties"
/// as `party`, "baking" and "baked" as `bak` ("bake" stays: no rule tells a silent `e` from a
/// word's own). Only ASCII words of four letters or more change;
/// a stem keeps at least three letters and a vowel. Both the index and the query words go
/// through it, so a query matches every inflection of its words.
pub(crate) fn stem(word: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let bytes = word.as_bytes();
    if bytes.len() < 4 || !bytes.iter().all(u8::is_ascii_lowercase) {
        return Cow::Borrowed(word);
    }
    let has_vowel = |stem: &str| stem.bytes().any(|b| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y'));
    let stem: String = if let Some(base) = word.strip_suffix("ies").filter(|base| base.len() >= 2) {
        format!("{base}y")
    } else if let Some(base) = word.strip_suffix("sses") {
        format!("{base}ss")
    } else if word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") && !word.ends_with("is") {
        word[..word.len() - 1].to_owned()
    } else if let Some(base) = word.strip_suffix("ing").filter(|base| base.len() >= 3 && has_vowel(base)) {
        undouble(base)
    } else if let Some(base) = word.strip_suffix("ed").filter(|base| base.len() >= 3 && has_vowel(base)) {
        undouble(base)
    } else {
        word.to_owned()
    };
    if stem == word { Cow::Borrowed(word) } else { Cow::Owned(stem) }
}

/// `runn` → `run`, `stopp` → `stop`; `ll`, `ss` and `zz` stay (`falling` → `fall`).
fn undouble(base: &str) -> String {
    let bytes = base.as_bytes();
    match bytes {
        [.., a, b] if a == b && !matches!(a, b'l' | b's' | b'z' | b'a' | b'e' | b'i' | b'o' | b'u') => {
            base[..base.len() - 1].to_owned()
        }
        _ => base.to_owned(),
    }
}

/// Whether `c` is one of the accented Latin letters whose diacritics FTS5 removes (Latin-1
/// Supplement, Latin Extended-A and -B, Latin Extended Additional).
fn is_latin(c: char) -> bool {
    matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}')
}

/// One memory's occurrences of a word.
#[derive(Debug, Clone, Copy)]
struct Posting {
    doc: u32,
    count: u32,
}

/// A memory in the copy.
#[derive(Debug)]
struct Doc {
    entry: Entry,
    /// Its length in words, BM25's document length.
    words: u32,
    /// The distinct words it holds, by number, to find its postings when it is removed.
    terms: Box<[u32]>,
}

/// The word index of the live memories (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TextIndex {
    /// Each word's number; a word stays numbered after its last memory is gone (the
    /// vocabulary only shrinks when the copy is reloaded).
    terms: HashMap<Box<str>, u32>,
    /// Per word number, where it occurs, in no particular order.
    postings: Vec<Vec<Posting>>,
    /// Per document number; `None` for a free number.
    docs: Vec<Option<Doc>>,
    free: Vec<u32>,
    numbers: HashMap<i64, u32>,
    /// The sum of the documents' lengths.
    words: u64,
}

impl TextIndex {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many memories the copy holds.
    pub(crate) fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Gives back the spare capacity that growing by doubling left (after a load).
    pub(crate) fn shrink_to_fit(&mut self) {
        for list in &mut self.postings {
            list.shrink_to_fit();
        }
        self.postings.shrink_to_fit();
        self.docs.shrink_to_fit();
    }

    /// About how many bytes of heap the copy holds (postings, documents, vocabulary, maps).
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let postings: usize = self.postings.iter().map(|list| list.capacity() * size_of::<Posting>()).sum();
        let docs: usize =
            self.docs.iter().flatten().map(|doc| doc.terms.len() * size_of::<u32>() + doc.entry.heap_bytes()).sum();
        let words: usize = self.terms.keys().map(|word| word.len()).sum();
        postings
            + self.postings.capacity() * size_of::<Vec<Posting>>()
            + self.docs.capacity() * size_of::<Option<Doc>>()
            + docs
            + self.free.capacity() * size_of::<u32>()
            // A hash map entry: key, value and about one control byte.
            + self.terms.capacity() * (size_of::<(Box<str>, u32)>() + 1)
            + words
            + self.numbers.capacity() * (size_of::<(i64, u32)>() + 1)
    }

    /// Adds the memory `entry.seq` with its `content`, replacing what the copy held for it.
    pub(crate) fn insert(&mut self, entry: Entry, content: &str) {
        self.remove(entry.seq);
        let doc = match self.free.pop() {
            Some(doc) => doc,
            None => {
                self.docs.push(None);
                u32::try_from(self.docs.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let mut counts: Vec<(u32, u32)> = Vec::new();
        let mut words = 0u32;
        for_each_word(content, |word| {
            let word = &*stem(word);
            words = words.saturating_add(1);
            let term = match self.terms.get(word) {
                Some(&term) => term,
                None => {
                    let term = u32::try_from(self.postings.len()).unwrap_or(u32::MAX);
                    self.terms.insert(Box::from(word), term);
                    self.postings.push(Vec::new());
                    term
                }
            };
            // Memories are short: a linear search of their distinct words beats hashing.
            match counts.iter_mut().find(|(known, _)| *known == term) {
                Some((_, count)) => *count += 1,
                None => counts.push((term, 1)),
            }
        });
        for &(term, count) in &counts {
            self.postings[term as usize].push(Posting { doc, count });
        }
        self.words += u64::from(words);
        self.numbers.insert(entry.seq, doc);
        let terms = counts.into_iter().map(|(term, _)| term).collect();
        self.docs[doc as usize] = Some(Doc { entry, words, terms });
    }

    /// Removes the memory `seq`, if present.
    pub(crate) fn remove(&mut self, seq: i64) {
        let Some(doc) = self.numbers.remove(&seq) else { return };
        let Some(removed) = self.docs.get_mut(doc as usize).and_then(Option::take) else { return };
        for &term in &removed.terms {
            let postings = &mut self.postings[term as usize];
            if let Some(at) = postings.iter().position(|posting| posting.doc == doc) {
                postings.swap_remove(at);
            }
        }
        self.words -= u64::from(removed.words);
        self.free.push(doc);
    }

    /// The `k` memories that `admit` lets through with the best BM25 score for `terms` (each
    /// counted once; a memory must hold at least one), best first, with their score (FTS5's
    /// `bm25()` negated: higher is better). Ties go to the older memory. `admit` is checked
    /// only for memories that would make the list.
    pub(crate) fn search(&self, terms: &[String], k: usize, admit: impl Fn(&Entry) -> bool) -> Vec<(MemoryId, f64)> {
        let rows = self.numbers.len();
        if k == 0 || rows == 0 {
            return Vec::new();
        }
        let average = self.words as f64 / rows as f64;
        let mut scores = vec![0.0f64; self.docs.len()];
        let mut touched: Vec<u32> = Vec::new();
        let mut seen: Vec<u32> = Vec::with_capacity(terms.len());
        for term in terms {
            let Some(&number) = self.terms.get(term.as_str()) else { continue };
            if seen.contains(&number) {
                continue;
            }
            seen.push(number);
            let postings = &self.postings[number as usize];
            let hits = postings.len() as f64;
            let idf = ((rows as f64 - hits + 0.5) / (hits + 0.5)).ln();
            let idf = if idf <= 0.0 { 1e-6 } else { idf };
            for posting in postings {
                let Some(doc) = &self.docs[posting.doc as usize] else { continue };
                let count = f64::from(posting.count);
                let slot = &mut scores[posting.doc as usize];
                if *slot == 0.0 {
                    touched.push(posting.doc);
                }
                // Operation for operation as FTS5 computes it, so scores are equal to the bit.
                *slot += idf * ((count * (K1 + 1.0)) / (count + K1 * (1.0 - B + B * f64::from(doc.words) / average)));
            }
        }
        let mut heap: BinaryHeap<Reverse<Scored<f64>>> = BinaryHeap::with_capacity(k + 1);
        for doc in touched {
            let Some(held) = &self.docs[doc as usize] else { continue };
            let scored = Scored { score: scores[doc as usize], seq: held.entry.seq, slot: doc as usize };
            keep_best(&mut heap, k, scored, &held.entry, &admit);
        }
        let mut best: Vec<Scored<f64>> = heap.into_iter().map(|Reverse(scored)| scored).collect();
        best.sort_by(|a, b| b.cmp(a));
        best.into_iter()
            .filter_map(|scored| {
                let doc = self.docs[scored.slot].as_ref()?;
                Some((doc.entry.id.clone(), scored.score))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use spacebot_core::MemoryType;

    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for_each_word(text, |word| found.push(word.to_owned()));
        found
    }

    fn entry(seq: i64) -> Entry {
        Entry::shared_fact(seq)
    }

    /// Query words as the index holds them: stemmed.
    fn terms(text: &str) -> Vec<String> {
        words(text).iter().map(|word| stem(word).into_owned()).collect()
    }

    fn ids(found: &[(MemoryId, f64)]) -> Vec<&str> {
        found.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn words_are_lowercased_letters_and_digits_without_diacritics() {
        assert_eq!(words("Alice's café, 2nd floor_B!"), ["alice", "s", "cafe", "2nd", "floor", "b"]);
        assert_eq!(words("ÉCOLE naïve Straße"), ["ecole", "naive", "straße"]);
        assert_eq!(words("København Łódź Ærø"), ["københavn", "łodz", "ærø"]);
        assert_eq!(words("Ελληνικά ПРИВЕТ мой"), ["ελληνικά", "привет", "мой"]);
        assert_eq!(words("東京 tower"), ["東京", "tower"]);
        assert!(words(" ?! -- ").is_empty());
    }

    #[test]
    fn rarer_words_and_shorter_memories_rank_higher() {
        let mut index = TextIndex::new();
        index.insert(entry(1), "tea tea coffee");
        index.insert(entry(2), "coffee every morning with friends at the corner shop");
        index.insert(entry(3), "coffee");
        index.insert(entry(4), "water");
        index.insert(entry(5), "juice");
        // "tea" is in one memory, "coffee" in three: the tea memory wins.
        let found = index.search(&terms("coffee tea"), 10, |_| true);
        assert_eq!(ids(&found), ["m1", "m3", "m2"]);
        assert!(found[0].1 > found[1].1 && found[1].1 > found[2].1);
        // A word repeated in the query counts once.
        assert_eq!(index.search(&terms("tea tea coffee"), 10, |_| true), found);
    }

    #[test]
    fn the_filter_applies_before_the_cut_and_removed_memories_are_gone() {
        let mut index = TextIndex::new();
        for seq in 1..=20 {
            index.insert(entry(seq), &format!("word{} shared", seq % 3));
        }
        let found = index.search(&terms("shared"), 3, |entry| entry.seq > 15);
        assert_eq!(ids(&found), ["m16", "m17", "m18"], "ties go to the older memory");
        index.remove(16);
        index.remove(99);
        let found = index.search(&terms("shared"), 3, |entry| entry.seq > 15);
        assert_eq!(ids(&found), ["m17", "m18", "m19"]);
        assert_eq!(index.len(), 19);
        // A freed number is reused, and the new memory is found by its own words only.
        index.insert(entry(30), "fresh");
        assert_eq!(ids(&index.search(&terms("fresh"), 3, |_| true)), ["m30"]);
        assert_eq!(index.search(&terms("shared"), 50, |_| true).len(), 19);
        // Inserting a memory again replaces its words.
        index.insert(entry(30), "renewed");
        assert!(index.search(&terms("fresh"), 3, |_| true).is_empty());
        assert_eq!(index.len(), 20);
    }

    /// A deterministic word: a few common, most rare, some with accents and capitals.
    #[test]
    fn stems_join_the_inflections_of_a_word() {
        for (words, expected) in [
            (&["paint", "paints", "painting", "painted"][..], "paint"),
            (&["ask", "asks", "asked", "asking"][..], "ask"),
            (&["baked", "baking"][..], "bak"),
            (&["party", "parties"][..], "party"),
            (&["run", "running"][..], "run"),
            (&["fall", "falling"][..], "fall"),
        ] {
            for word in words {
                assert_eq!(stem(word), expected, "{word}");
            }
        }
        for unchanged in ["this", "bus", "class", "need", "news1", "café", "alice", "w123", "word3", "red", "mой"] {
            assert_eq!(stem(unchanged), unchanged);
        }
    }

    fn word(state: &mut u64) -> String {
        const ACCENTED: &[&str] = &["café", "Crème", "naïve", "ÉCOLE", "Łódź", "København", "Ελληνικά", "мой"];
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let pick = *state % 1_000;
        match pick {
            0..16 => ACCENTED[(pick % 8) as usize].to_owned(),
            16..26 => format!("Word{}", pick % 4),
            _ => format!("w{}", (pick * pick) % 400),
        }
    }

    /// The copy ranks as FTS5 does: for random queries over a store of 2,000 memories (some
    /// forgotten since), the same top 50 with the same scores, as `bm25()` of the FTS5 index
    /// in the same file computes them.
    #[tokio::test]
    /// The arithmetic: the words here are ones `stem` leaves as they are, so FTS5 (which does not
    /// stem) and the copy must agree to the bit.
    async fn ranks_as_fts5_does() {
        use spacebot_core::{MemoryScope, MemoryStore, NewMemory};

        use crate::embed::HashingEmbedder;
        use crate::memory::MemoryGraph;
        use crate::memory::recall::query_terms;

        let store =
            MemoryGraph::open_in_memory(Arc::new(HashingEmbedder::new(64))).await.unwrap().with_merge_similarity(2.0);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let agent = spacebot_core::AgentId::from("main");
        let mut saved = Vec::new();
        for _ in 0..4 {
            let batch: Vec<NewMemory> = (0..500)
                .map(|_| {
                    let length = 1 + (state % 30) as usize;
                    let content: Vec<String> = (0..length).map(|_| word(&mut state)).collect();
                    NewMemory::new(MemoryType::Fact, content.join(" "), MemoryScope::agent("main"))
                })
                .collect();
            saved.extend(store.save_batch(batch).await.unwrap().into_iter().map(|outcome| outcome.id));
        }
        for id in saved.iter().step_by(7) {
            store.forget(&agent, id).await.unwrap();
        }
        assert!(store.read_index().text.len() > 1_500);
        for round in 0..60 {
            let length = 1 + round % 5;
            let query: Vec<String> = (0..length).map(|_| word(&mut state)).collect();
            let terms = query_terms(&query.join(" "));
            let ours = store.read_index().text.search(&terms, 50, |_| true);
            let fts5 = terms.iter().map(|term| format!("\"{term}\"")).collect::<Vec<_>>().join(" OR ");
            let theirs: Vec<(String, f64)> = sqlx::query_as(
                "SELECT m.id, -hits.score FROM
                   (SELECT rowid, bm25(memories_fts) AS score FROM memories_fts WHERE memories_fts MATCH ?1) AS hits
                 JOIN memories m ON m.seq = hits.rowid
                 ORDER BY hits.score, m.seq LIMIT 50",
            )
            .bind(&fts5)
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
            assert!(!theirs.is_empty(), "query {fts5} matches something");
            let ours: Vec<(String, f64)> =
                ours.into_iter().map(|(id, score)| (id.as_str().to_owned(), score)).collect();
            assert_eq!(ours, theirs, "query {fts5}");
        }
    }
}
