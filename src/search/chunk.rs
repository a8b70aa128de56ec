//! Cuts extracted text into passages for embedding: windows of at most
//! [`CHUNK_TOKENS`] tokens, each overlapping the one before by
//! [`OVERLAP_TOKENS`], never across a section (so every chunk has one page
//! or heading). Pure: the token places come from the caller's counter.

use super::extract::Section;

/// Tokens per chunk: the model reads 256 with `[CLS]` and `[SEP]`.
pub const CHUNK_TOKENS: usize = 254;
/// Tokens a chunk repeats from the end of the one before it.
pub const OVERLAP_TOKENS: usize = 32;
/// Chunks kept per file (about 500 000 tokens of text at most).
pub const MAX_CHUNKS: usize = 2048;

/// One passage of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0-based, in file order.
    pub index: u32,
    pub page: Option<u32>,
    pub section: Option<String>,
    pub content: String,
}

/// Cuts sections into chunks of at most `size` tokens overlapping by
/// `overlap`, with `spans` giving each token's byte range in a text.
pub fn chunk(
    sections: &[Section],
    spans: impl Fn(&str) -> Vec<(usize, usize)>,
    size: usize,
    overlap: usize,
) -> Vec<Chunk> {
    let size = size.max(1);
    let overlap = overlap.min(size - 1);
    let mut out = Vec::new();
    for s in sections {
        let tokens = spans(&s.text);
        let mut start = 0;
        while start < tokens.len() && out.len() < MAX_CHUNKS {
            let end = (start + size).min(tokens.len());
            let (from, to) = (tokens[start].0, tokens[end - 1].1);
            if let Some(content) = s.text.get(from..to) {
                out.push(Chunk {
                    index: out.len() as u32,
                    page: s.page,
                    section: s.heading.clone(),
                    content: content.to_owned(),
                });
            }
            if end == tokens.len() {
                break;
            }
            start = end - overlap;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::embed::word_spans;

    fn section(text: &str, page: Option<u32>, heading: Option<&str>) -> Section {
        Section {
            text: text.into(),
            page,
            heading: heading.map(str::to_owned),
        }
    }

    #[test]
    fn windows_overlap_and_stay_in_their_section() {
        let words: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
        let sections = vec![
            section(&words.join(" "), Some(1), None),
            section("alpha beta", Some(2), Some("Intro")),
            section("   ", Some(3), None),
        ];
        let chunks = chunk(&sections, word_spans, 4, 1);
        let texts: Vec<&str> = chunks.iter().map(|c| c.content.as_str()).collect();
        assert_eq!(
            texts,
            vec!["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9", "alpha beta"]
        );
        assert_eq!(
            chunks.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(chunks[2].page, Some(1));
        assert_eq!(chunks[3].page, Some(2));
        assert_eq!(chunks[3].section.as_deref(), Some("Intro"));
    }

    #[test]
    fn short_text_is_one_chunk_and_overlap_never_stalls() {
        let c = chunk(&[section("one two", None, None)], word_spans, 254, 32);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].content, "one two");
        // An overlap as large as the window still moves forward.
        let c = chunk(&[section("a b c d e", None, None)], word_spans, 2, 5);
        assert_eq!(c.len(), 4);
        assert!(chunk(&[], word_spans, 4, 1).is_empty());
    }
}
