//! The keyword index: one tantivy document per file (its name, always, and
//! the text extracted from its current version), in the data directory.
//!
//! The index holds what search matches on and nothing a listing decides:
//! where a file is, whether it is in the trash and who may see it are read
//! from the drive and access read models when a query is answered (see
//! [`super::query`]). So a move, a trash or a restore needs no index
//! change, and a permission change counts at once.
//!
//! Its checkpoint (the last log position applied) is the payload of the
//! tantivy commit that holds the documents, so the two never disagree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tantivy::collector::{Count, TopDocs};
use tantivy::columnar::StrColumn;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, TokenStream,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use scaidrive_domain::LogPosition;

/// The tokenizer's name: Unicode word boundaries (alphanumeric runs in any
/// script), lower-cased with Unicode rules, overlong tokens dropped. No
/// stemming, so an exact token always matches itself.
const TOKENIZER: &str = "scaidrive";

/// Bump when the schema or tokenizer changes: a new directory is built.
pub const INDEX_VERSION: u32 = 1;

/// Errors of the keyword index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Dir(String),
    #[error("search index I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl From<tantivy::directory::error::OpenDirectoryError> for IndexError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> Self {
        IndexError::Dir(e.to_string())
    }
}

/// The fields of a document.
#[derive(Clone, Copy)]
struct Fields {
    file_id: Field,
    tenant_id: Field,
    name: Field,
    content: Field,
    version_id: Field,
    extraction: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        // A fast field too: a query reads thousands of candidates' ids
        // from the column instead of the document store.
        file_id: b.add_text_field("file_id", STRING | STORED | FAST),
        tenant_id: b.add_text_field("tenant_id", STRING | STORED),
        name: b.add_text_field("name", text.clone().set_stored()),
        // Stored so a rename can re-add the document without reading and
        // extracting the content again.
        content: b.add_text_field("content", text.set_stored()),
        version_id: b.add_text_field("version_id", STORED),
        extraction: b.add_text_field("extraction", STRING | STORED),
    };
    (b.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .build()
}

/// The searchable side of one file.
#[derive(Debug, Clone, Default)]
pub struct FileDoc {
    pub file_id: String,
    pub tenant_id: String,
    pub name: String,
    pub content: String,
    pub version_id: String,
    /// `ok`, `truncated`, `unsupported`, `too_large` or `failed: …`.
    pub extraction: String,
}

/// A match: the file and its BM25 score.
#[derive(Debug, Clone)]
pub struct Hit {
    pub file_id: String,
    pub score: f32,
}

/// One keyword index directory, open for writing (one writer per process
/// and directory) and reading.
pub struct KeywordIndex {
    dir: PathBuf,
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: parking_lot::Mutex<IndexWriter<TantivyDocument>>,
    /// Queries run one per core; the rest wait their turn.
    queries: super::gate::Gate,
}

impl KeywordIndex {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path, heap_bytes: usize) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        index.tokenizers().register(TOKENIZER, analyzer());
        let writer = index.writer_with_num_threads(1, heap_bytes.max(15_000_000))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            dir: dir.to_owned(),
            index,
            fields,
            reader,
            writer: parking_lot::Mutex::new(writer),
            queries: super::gate::Gate::per_core(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log position the last commit included.
    pub fn checkpoint(&self) -> Result<LogPosition, IndexError> {
        let metas = self.index.load_metas()?;
        Ok(metas
            .payload
            .as_deref()
            .and_then(LogPosition::parse_token)
            .unwrap_or(LogPosition::START))
    }

    /// Replaces (or adds) a file's document; takes effect at [`commit`](Self::commit).
    pub fn put(&self, d: &FileDoc) -> Result<(), IndexError> {
        let f = self.fields;
        let w = self.writer.lock();
        w.delete_term(Term::from_field_text(f.file_id, &d.file_id));
        w.add_document(doc!(
            f.file_id => d.file_id.as_str(),
            f.tenant_id => d.tenant_id.as_str(),
            f.name => d.name.as_str(),
            f.content => d.content.as_str(),
            f.version_id => d.version_id.as_str(),
            f.extraction => d.extraction.as_str(),
        ))?;
        Ok(())
    }

    /// Removes a file's document; takes effect at [`commit`](Self::commit).
    pub fn remove(&self, file_id: &str) {
        let w = self.writer.lock();
        w.delete_term(Term::from_field_text(self.fields.file_id, file_id));
    }

    /// Makes everything put and removed so far visible and durable, with
    /// `position` as the checkpoint.
    pub fn commit(&self, position: LogPosition) -> Result<(), IndexError> {
        {
            let mut w = self.writer.lock();
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&position.to_token());
            prepared.commit()?;
        }
        self.reader.reload()?;
        Ok(())
    }

    /// The committed document of a file.
    pub fn get(&self, file_id: &str) -> Result<Option<FileDoc>, IndexError> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.fields.file_id, file_id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&q, &TopDocs::with_limit(1))?;
        let Some((_, addr)) = top.into_iter().next() else {
            return Ok(None);
        };
        let d: TantivyDocument = searcher.doc(addr)?;
        let s = |field: Field| {
            d.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let f = self.fields;
        Ok(Some(FileDoc {
            file_id: s(f.file_id),
            tenant_id: s(f.tenant_id),
            name: s(f.name),
            content: s(f.content),
            version_id: s(f.version_id),
            extraction: s(f.extraction),
        }))
    }

    /// Documents in the index (committed).
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Documents of one tenant.
    pub fn tenant_documents(&self, tenant_id: &str) -> Result<usize, IndexError> {
        Ok(self
            .reader
            .searcher()
            .search(&self.tenant_term(tenant_id), &Count)?)
    }

    /// Documents of one tenant whose extraction did not give text.
    pub fn count_extraction(&self, tenant_id: &str, status: &str) -> Result<usize, IndexError> {
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.tenant_term(tenant_id)),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.extraction, status),
                    IndexRecordOption::Basic,
                )),
            ),
        ]);
        Ok(self.reader.searcher().search(&q, &Count)?)
    }

    fn tenant_term(&self, tenant_id: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.fields.tenant_id, tenant_id),
            IndexRecordOption::Basic,
        ))
    }

    /// The query's tokens, as the index tokenized names and text.
    pub fn tokens(text: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token().text.clone();
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// The best `limit` files of a tenant matching every token of `text`
    /// in their name or content (a name match weighs twice), by BM25, and
    /// how many files match in all.
    pub fn search(
        &self,
        tenant_id: &str,
        text: &str,
        limit: usize,
    ) -> Result<(Vec<Hit>, usize), IndexError> {
        let tokens = Self::tokens(text);
        if tokens.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, self.tenant_term(tenant_id))];
        for t in &tokens {
            let name: Box<dyn Query> = Box::new(BoostQuery::new(
                Box::new(TermQuery::new(
                    Term::from_field_text(f.name, t),
                    IndexRecordOption::WithFreqs,
                )),
                2.0,
            ));
            let content: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(f.content, t),
                IndexRecordOption::WithFreqs,
            ));
            clauses.push((
                Occur::Must,
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, name),
                    (Occur::Should, content),
                ])),
            ));
        }
        let q = BooleanQuery::new(clauses);
        let _turn = self.queries.enter();
        let searcher = self.reader.searcher();
        let (top, count) = searcher.search(&q, &(TopDocs::with_limit(limit.max(1)), Count))?;
        let mut columns: HashMap<u32, Option<StrColumn>> = HashMap::new();
        let mut hits = Vec::with_capacity(top.len());
        let mut id = String::new();
        for (score, addr) in top {
            let column = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    searcher
                        .segment_reader(addr.segment_ord)
                        .fast_fields()
                        .str("file_id")?,
                ),
            };
            let Some(column) = column else { continue };
            let Some(ord) = column.term_ords(addr.doc_id).next() else {
                continue;
            };
            id.clear();
            if column.ord_to_str(ord, &mut id)? {
                hits.push(Hit {
                    file_id: id.clone(),
                    score,
                });
            }
        }
        Ok((hits, count))
    }

    /// Bytes the index takes on disk.
    pub fn size_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

/// Total size of the files in a directory tree.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, tenant: &str, name: &str, content: &str) -> FileDoc {
        FileDoc {
            file_id: id.into(),
            tenant_id: tenant.into(),
            name: name.into(),
            content: content.into(),
            version_id: "v".into(),
            extraction: "ok".into(),
        }
    }

    #[test]
    fn matches_names_and_content_case_insensitively_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let ix = KeywordIndex::open(dir.path(), 20_000_000).unwrap();
        ix.put(&d("f1", "t1", "Quarterly Report.pdf", "Zürich ÉTÉ revenue"))
            .unwrap();
        ix.put(&d("f2", "t1", "notes.txt", "quarterly planning"))
            .unwrap();
        ix.put(&d("f3", "t2", "quarterly.txt", "")).unwrap();
        ix.commit(LogPosition::new(1, 3)).unwrap();
        assert_eq!(ix.checkpoint().unwrap(), LogPosition::new(1, 3));
        let (hits, total) = ix.search("t1", "QUARTERLY", 10).unwrap();
        assert_eq!(total, 2);
        let mut found: Vec<&str> = hits.iter().map(|h| h.file_id.as_str()).collect();
        found.sort();
        assert_eq!(found, vec!["f1", "f2"]);
        let (hits, _) = ix.search("t1", "zürich été", 10).unwrap();
        assert_eq!(hits.len(), 1);
        let (hits, _) = ix.search("t1", "quarterly planning", 10).unwrap();
        assert_eq!(hits.len(), 1, "every token must match");
        // Replace and remove.
        ix.put(&d("f1", "t1", "renamed.pdf", "Zürich")).unwrap();
        ix.remove("f2");
        ix.commit(LogPosition::new(2, 5)).unwrap();
        assert_eq!(ix.search("t1", "quarterly", 10).unwrap().1, 0);
        assert_eq!(ix.get("f1").unwrap().unwrap().name, "renamed.pdf");
    }
}
