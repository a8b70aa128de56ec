//! Feeds the keyword index from the log, and rebuilds it.
//!
//! Every process runs one [`Indexer`] task: it reads the log after the
//! index's checkpoint, extracts the text of new file versions (reading the
//! content through the blob store, at most the configured bytes), and
//! commits the batch's documents with the batch's last position as the
//! checkpoint. Uploads never wait for it; a read that sends
//! `X-ScaiDrive-Position` waits (bounded) for [`Indexer::wait_for`].
//!
//! Directories under the search directory: `CURRENT` names the index in
//! use (`keyword-v<N>-<id>`). A process that finds it locked by another
//! process on the same data directory (several servers on one machine)
//! builds a private one of its own from the log. A rebuild
//! ([`rebuild`]) fills a fresh directory beside the live one and then
//! points `CURRENT` at it; the serving process notices, switches and
//! deletes the old one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use scaidrive_domain::drive::file::{FileEvent, Version};
use scaidrive_domain::{LogPosition, RecordedEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::extract::{self, Kind};
use super::index::{FileDoc, IndexError, KeywordIndex, INDEX_VERSION};
use super::Settings;
use crate::blob::BlobStore;
use crate::store::{DynStore, StoreError};

const BATCH: usize = 500;
const REBUILD_BATCH: usize = 2000;
/// Files whose text is extracted at once.
const EXTRACT_PARALLEL: usize = 2;

/// Why the indexer could not go on.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("search index: {0}")]
    Other(String),
}

/// What the search index needs from one event: the one place events are
/// decoded for search.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new file or a new current version (`name` only for a new file).
    Content {
        file_id: String,
        tenant_id: String,
        name: Option<String>,
        version: Version,
    },
    Renamed {
        file_id: String,
        name: String,
    },
    Purged {
        file_id: String,
    },
}

/// Whether the index cares about an event type.
pub fn handles(event_type: &str) -> bool {
    matches!(
        event_type,
        "file-created" | "file-version-added" | "file-renamed" | "file-purged"
    )
}

/// Decodes an event into the change it makes to the index, if any. Moves,
/// trash and restore change nothing here: the query reads where a file is
/// and whether it is live from the drive read model.
pub fn change_of(event: &RecordedEvent) -> Result<Option<Change>, serde_json::Error> {
    if !handles(&event.event_type) {
        return Ok(None);
    }
    let tenant = event.tenant_id.clone().unwrap_or_default();
    Ok(match event.decode::<FileEvent>()? {
        FileEvent::FileCreated {
            file_id,
            tenant_id,
            name,
            version,
            ..
        } => Some(Change::Content {
            file_id: file_id.to_string(),
            tenant_id: tenant_id.to_string(),
            name: Some(name),
            version,
        }),
        FileEvent::FileVersionAdded {
            file_id, version, ..
        } => Some(Change::Content {
            file_id: file_id.to_string(),
            tenant_id: tenant,
            name: None,
            version,
        }),
        FileEvent::FileRenamed { file_id, name, .. } => Some(Change::Renamed {
            file_id: file_id.to_string(),
            name,
        }),
        FileEvent::FilePurged { file_id, .. } => Some(Change::Purged {
            file_id: file_id.to_string(),
        }),
        _ => None,
    })
}

/// Extracted text and how extraction went.
struct Text {
    content: String,
    status: &'static str,
}

/// Reads a version's content (bounded) and extracts its text. Never fails:
/// a failure is the status, and the file stays findable by name.
async fn extract_text(
    blob: &BlobStore,
    settings: &Settings,
    tenant_id: &str,
    name: &str,
    version: &Version,
) -> Text {
    let (extracted, status) = extract_sections(blob, settings, tenant_id, name, version).await;
    Text {
        content: extracted.map(|e| e.text()).unwrap_or_default(),
        status,
    }
}

/// Reads a version's content (bounded) and extracts its sections, with how
/// extraction went (`ok`, `truncated`, `unsupported`, `too_large`,
/// `failed`); no sections unless it gave text.
pub(crate) async fn extract_sections(
    blob: &BlobStore,
    settings: &Settings,
    tenant_id: &str,
    name: &str,
    version: &Version,
) -> (Option<extract::Extracted>, &'static str) {
    let c = &version.content;
    let Some(kind) = Kind::detect(&c.mime_type, name) else {
        return (None, "unsupported");
    };
    let limit = if kind.needs_whole_file() {
        if c.size > settings.max_document_bytes {
            return (None, "too_large");
        }
        c.size
    } else {
        // A text prefix a little longer than the cap (HTML markup shrinks).
        (settings.max_text_bytes as u64).saturating_mul(if kind == Kind::Html { 4 } else { 1 }) + 4
    };
    let mut bytes = Vec::with_capacity(limit.min(c.size) as usize);
    for chunk in &c.chunks {
        if bytes.len() as u64 >= limit {
            break;
        }
        match blob.get_chunk(tenant_id, &chunk.hash).await {
            Ok(b) => {
                let take = ((limit - bytes.len() as u64) as usize).min(b.len());
                bytes.extend_from_slice(&b[..take]);
            }
            Err(e) => {
                tracing::warn!(error = %e, version_id = %c.version_id, "search: content unreadable");
                return (None, "failed");
            }
        }
    }
    let cap = settings.max_text_bytes;
    let cut_input = (bytes.len() as u64) < c.size;
    let done = tokio::task::spawn_blocking(move || extract::extract(kind, &bytes, cap)).await;
    match done {
        Ok(Ok(e)) => {
            let status = if e.truncated || cut_input {
                "truncated"
            } else {
                "ok"
            };
            (Some(e), status)
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, version_id = %c.version_id, "search: extraction failed");
            (None, "failed")
        }
        Err(_) => (None, "failed"),
    }
}

/// Applies a run of events to an index (without committing).
async fn apply_batch(
    ix: &KeywordIndex,
    blob: &BlobStore,
    settings: &Settings,
    batch: &[RecordedEvent],
) -> Result<(), IndexerError> {
    let mut changes = Vec::new();
    for e in batch {
        match change_of(e) {
            Ok(Some(c)) => changes.push(c),
            Ok(None) => {}
            Err(err) => tracing::warn!(
                event_type = %e.event_type,
                position = e.log.position,
                error = %err,
                "search: cannot decode event; skipped"
            ),
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    // Documents as the batch leaves them (None: purged), over the committed
    // index.
    let mut docs: HashMap<String, Option<FileDoc>> = HashMap::new();
    let current = |docs: &HashMap<String, Option<FileDoc>>,
                   id: &str|
     -> Result<Option<FileDoc>, IndexError> {
        match docs.get(id) {
            Some(d) => Ok(d.clone()),
            None => ix.get(id),
        }
    };
    // The name each content change is extracted under (it picks the
    // extractor when the MIME type says little).
    let mut names: Vec<Option<String>> = Vec::with_capacity(changes.len());
    {
        let mut latest: HashMap<String, String> = HashMap::new();
        for c in &changes {
            match c {
                Change::Content { file_id, name, .. } => {
                    let n = match name {
                        Some(n) => Some(n.clone()),
                        None => match latest.get(file_id) {
                            Some(n) => Some(n.clone()),
                            None => ix.get(file_id)?.map(|d| d.name),
                        },
                    };
                    if let Some(n) = &n {
                        latest.insert(file_id.clone(), n.clone());
                    }
                    names.push(n);
                }
                Change::Renamed { file_id, name } => {
                    latest.insert(file_id.clone(), name.clone());
                    names.push(None);
                }
                Change::Purged { .. } => names.push(None),
            }
        }
    }
    // Owned jobs: the futures borrow nothing, so the task stays `Send`.
    let jobs: Vec<Option<(String, String, Version)>> = changes
        .iter()
        .zip(&names)
        .map(|(c, name)| match (c, name) {
            (
                Change::Content {
                    tenant_id, version, ..
                },
                Some(name),
            ) => Some((tenant_id.clone(), name.clone(), version.clone())),
            _ => None,
        })
        .collect();
    let texts: Vec<Option<Text>> = futures::stream::iter(jobs.into_iter().map(|job| {
        let blob = blob.clone();
        let settings = settings.clone();
        async move {
            match job {
                Some((tenant_id, name, version)) => {
                    Some(extract_text(&blob, &settings, &tenant_id, &name, &version).await)
                }
                None => None,
            }
        }
    }))
    .buffered(EXTRACT_PARALLEL)
    .collect()
    .await;
    for ((change, name), text) in changes.into_iter().zip(names).zip(texts) {
        match change {
            Change::Content {
                file_id,
                tenant_id,
                version,
                ..
            } => {
                let (Some(name), Some(text)) = (name, text) else {
                    // A version of a file the index never saw (purged
                    // since): nothing to show.
                    continue;
                };
                let d = FileDoc {
                    file_id: file_id.clone(),
                    tenant_id,
                    name,
                    content: text.content,
                    version_id: version.content.version_id.to_string(),
                    extraction: text.status.to_owned(),
                };
                ix.put(&d)?;
                docs.insert(file_id, Some(d));
            }
            Change::Renamed { file_id, name } => {
                if let Some(mut d) = current(&docs, &file_id)? {
                    d.name = name;
                    ix.put(&d)?;
                    docs.insert(file_id, Some(d));
                }
            }
            Change::Purged { file_id } => {
                ix.remove(&file_id);
                docs.insert(file_id, None);
            }
        }
    }
    Ok(())
}

const CURRENT: &str = "CURRENT";

fn read_current(dir: &Path) -> Option<String> {
    let name = std::fs::read_to_string(dir.join(CURRENT)).ok()?;
    let name = name.trim().to_owned();
    let prefix = format!("keyword-v{INDEX_VERSION}-");
    (name.starts_with(&prefix) && !name.contains('/') && !name.contains("..")).then_some(name)
}

fn write_current(dir: &Path, name: &str) -> Result<(), std::io::Error> {
    let tmp = dir.join(format!("{CURRENT}.{}", uuid::Uuid::now_v7().simple()));
    std::fs::write(&tmp, name)?;
    std::fs::rename(&tmp, dir.join(CURRENT))
}

fn fresh_name(private: bool) -> String {
    let id = uuid::Uuid::now_v7().simple();
    if private {
        format!("private-keyword-v{INDEX_VERSION}-{id}")
    } else {
        format!("keyword-v{INDEX_VERSION}-{id}")
    }
}

fn is_lock_busy(e: &IndexError) -> bool {
    matches!(
        e,
        IndexError::Tantivy(tantivy::TantivyError::LockFailure(..))
    )
}

/// The index one process serves from and feeds.
pub struct Indexer {
    settings: Settings,
    store: DynStore,
    blob: BlobStore,
    index: parking_lot::RwLock<Arc<KeywordIndex>>,
    /// The `CURRENT` name this process serves, `None` for a private index.
    serving: parking_lot::Mutex<Option<String>>,
    progress: watch::Sender<LogPosition>,
    batches: AtomicU64,
}

impl Indexer {
    /// Opens the index named by `CURRENT` (creating one if there is none),
    /// or a private one if another process holds it.
    pub fn open(
        settings: Settings,
        store: DynStore,
        blob: BlobStore,
    ) -> Result<Arc<Self>, IndexerError> {
        std::fs::create_dir_all(&settings.dir).map_err(IndexError::from)?;
        let heap = settings.writer_heap_bytes;
        let (index, serving) = match read_current(&settings.dir) {
            Some(name) => match KeywordIndex::open(&settings.dir.join(&name), heap) {
                Ok(ix) => (ix, Some(name)),
                Err(e) if is_lock_busy(&e) => {
                    let private = fresh_name(true);
                    tracing::info!(dir = %private, "search index in use by another process; keeping a private one");
                    (
                        KeywordIndex::open(&settings.dir.join(&private), heap)?,
                        None,
                    )
                }
                Err(e) => return Err(e.into()),
            },
            None => {
                let name = fresh_name(false);
                let ix = KeywordIndex::open(&settings.dir.join(&name), heap)?;
                write_current(&settings.dir, &name).map_err(IndexError::from)?;
                (ix, Some(name))
            }
        };
        let at = index.checkpoint()?;
        let (progress, _) = watch::channel(at);
        Ok(Arc::new(Self {
            settings,
            store,
            blob,
            index: parking_lot::RwLock::new(Arc::new(index)),
            serving: parking_lot::Mutex::new(serving),
            progress,
            batches: AtomicU64::new(0),
        }))
    }

    /// The index queries read now.
    pub fn index(&self) -> Arc<KeywordIndex> {
        self.index.read().clone()
    }

    /// The position the index has applied up to.
    pub fn position(&self) -> LogPosition {
        *self.progress.borrow()
    }

    /// Events the index is behind the log head.
    pub async fn lag(&self) -> Result<i64, StoreError> {
        let head = self.store.head().await?;
        Ok((head.position - self.position().position).max(0))
    }

    /// Waits until the index has applied `position`, at most `timeout`.
    pub async fn wait_for(&self, position: LogPosition, timeout: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Applies at most one batch; returns the events read.
    pub async fn step(&self) -> Result<usize, IndexerError> {
        self.follow_rebuild()?;
        let from = self.position();
        let batch = self.store.read_all(from, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.log) else {
            return Ok(0);
        };
        let ix = self.index();
        apply_batch(&ix, &self.blob, &self.settings, &batch).await?;
        let ix2 = ix.clone();
        tokio::task::spawn_blocking(move || ix2.commit(last))
            .await
            .map_err(|e| IndexerError::Other(e.to_string()))??;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.progress.send_replace(last);
        Ok(batch.len())
    }

    /// Switches to the index a rebuild pointed `CURRENT` at.
    fn follow_rebuild(&self) -> Result<(), IndexerError> {
        let Some(serving) = self.serving.lock().clone() else {
            return Ok(());
        };
        let Some(latest) = read_current(&self.settings.dir) else {
            return Ok(());
        };
        if latest == serving {
            return Ok(());
        }
        let fresh = match KeywordIndex::open(
            &self.settings.dir.join(&latest),
            self.settings.writer_heap_bytes,
        ) {
            Ok(ix) => ix,
            // The rebuild still holds it: try again on the next step.
            Err(e) if is_lock_busy(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let at = fresh.checkpoint()?;
        let old = std::mem::replace(&mut *self.index.write(), Arc::new(fresh));
        *self.serving.lock() = Some(latest.clone());
        self.progress.send_replace(at);
        let old_dir = old.dir().to_owned();
        drop(old);
        tracing::info!(index = %latest, "search index rebuilt; switched");
        // Readers still holding the old index keep their open files.
        let _ = std::fs::remove_dir_all(old_dir);
        Ok(())
    }

    /// Runs until `shutdown`, stepping whenever the log may have grown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        super::follow_log(
            &self.store,
            &shutdown,
            "search",
            Duration::from_secs(2),
            || self.step(),
        )
        .await;
        if self.serving.lock().is_none() {
            // A private index is rebuilt from the log at the next start.
            let dir = self.index().dir().to_owned();
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Catches up with the log head (tests, benchmarks).
    pub async fn catch_up(&self) -> Result<(), IndexerError> {
        while self.step().await? > 0 {}
        Ok(())
    }
}

/// Builds the keyword index again from the start of the log beside the live
/// one, then points `CURRENT` at it (a serving process switches on its next
/// step). Returns the events read.
pub async fn rebuild(
    settings: &Settings,
    store: &DynStore,
    blob: &BlobStore,
    mut progress: impl FnMut(i64),
) -> Result<u64, IndexerError> {
    std::fs::create_dir_all(&settings.dir).map_err(IndexError::from)?;
    let name = fresh_name(false);
    let dir: PathBuf = settings.dir.join(&name);
    let ix = Arc::new(KeywordIndex::open(
        &dir,
        settings.writer_heap_bytes.max(100_000_000),
    )?);
    let mut at = LogPosition::START;
    let mut read = 0u64;
    loop {
        let batch = store.read_all(at, REBUILD_BATCH).await?;
        let Some(last) = batch.last().map(|e| e.log) else {
            break;
        };
        apply_batch(&ix, blob, settings, &batch).await?;
        read += batch.len() as u64;
        at = last;
        progress(at.position);
    }
    let ix2 = ix.clone();
    tokio::task::spawn_blocking(move || ix2.commit(at))
        .await
        .map_err(|e| IndexerError::Other(e.to_string()))??;
    drop(ix);
    let old = read_current(&settings.dir);
    write_current(&settings.dir, &name).map_err(IndexError::from)?;
    // With no server serving the old index, nobody else will delete it.
    if let Some(old) = old {
        let old_dir = settings.dir.join(old);
        if let Ok(probe) = KeywordIndex::open(&old_dir, 15_000_000) {
            drop(probe);
            let _ = std::fs::remove_dir_all(old_dir);
        }
    }
    Ok(read)
}
