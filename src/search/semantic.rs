//! Feeds the vector index from the log, and rebuilds it.
//!
//! Like the keyword indexer, every process runs one [`SemanticIndexer`]
//! task over its own index: it reads the log after the index's checkpoint,
//! keeps what it needs to know of every file (tenant, share, name, current
//! version, trashed) and of every tenant (`vectorization_enabled`, from
//! `tenant-updated`), and for the files of tenants with vectorization on it
//! extracts the current version's sections, cuts them into chunks
//! ([`super::chunk`]), embeds them and replaces the file's chunks. A new
//! version re-chunks; trash and purge drop the chunks (a restore embeds
//! again); a move changes the chunks' share; turning vectorization on
//! embeds the tenant's live files, turning it off drops its chunks.
//!
//! `CURRENT_SEMANTIC` in the search directory names the index in use
//! (`semantic-v<N>-<id>`); a process that finds it locked keeps a private
//! one; a rebuild fills a fresh directory and points the name at it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scaidrive_domain::drive::file::FileEvent;
use scaidrive_domain::tenancy::TenantEvent;
use scaidrive_domain::{LogPosition, RecordedEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::chunk::{self, CHUNK_TOKENS, OVERLAP_TOKENS};
use super::embed::{EmbedError, Embedder};
use super::indexer::extract_sections;
use super::vectors::{FileMeta, Op, StoredChunk, VectorError, VectorIndex};
use super::Settings;
use crate::blob::BlobStore;
use crate::store::{DynStore, StoreError};

/// Bump when chunking or the stored shape changes: a new directory is built.
pub const INDEX_VERSION: u32 = 1;
/// Events per step: embedding is slow, so batches commit often.
const BATCH: usize = 100;
const REBUILD_BATCH: usize = 500;
const CURRENT: &str = "CURRENT_SEMANTIC";

/// Why the semantic indexer could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    #[error(transparent)]
    Index(#[from] VectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// Whether the semantic indexer cares about an event type.
pub fn handles(event_type: &str) -> bool {
    matches!(
        event_type,
        "file-created"
            | "file-version-added"
            | "file-renamed"
            | "file-moved"
            | "file-deleted"
            | "file-restored"
            | "file-purged"
            | "tenant-updated"
    )
}

/// Applies a run of events to the index (what queries see at once) and
/// returns the operations to journal with the batch's checkpoint.
async fn apply_batch(
    ix: &VectorIndex,
    blob: &BlobStore,
    settings: &Settings,
    embedder: &Embedder,
    batch: &[RecordedEvent],
) -> Result<Vec<Op>, SemanticError> {
    let mut ops: Vec<Op> = Vec::new();
    // Files whose chunks are made from their state at the batch's end.
    let mut embed: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut want = |id: String, embed: &mut Vec<String>| {
        if seen.insert(id.clone()) {
            embed.push(id);
        }
    };
    let push = |op: Op, ops: &mut Vec<Op>| -> Result<(), VectorError> {
        ix.apply(std::slice::from_ref(&op))?;
        ops.push(op);
        Ok(())
    };
    for e in batch.iter().filter(|e| handles(&e.event_type)) {
        if e.event_type == "tenant-updated" {
            let Some(tenant) = e.tenant_id.clone() else {
                continue;
            };
            let Ok(TenantEvent::TenantUpdated {
                settings: Some(s), ..
            }) = e.decode::<TenantEvent>()
            else {
                continue;
            };
            let on = s.vectorization_enabled;
            if on == ix.enabled(&tenant) {
                continue;
            }
            push(
                Op::Tenant {
                    id: tenant.clone(),
                    enabled: on,
                },
                &mut ops,
            )?;
            if on {
                for (id, _) in ix.tenant_files(&tenant) {
                    want(id, &mut embed);
                }
            }
            continue;
        }
        let event = match e.decode::<FileEvent>() {
            Ok(ev) => ev,
            Err(err) => {
                tracing::warn!(event_type = %e.event_type, position = e.log.position, error = %err, "semantic: cannot decode event; skipped");
                continue;
            }
        };
        match event {
            FileEvent::FileCreated {
                file_id,
                tenant_id,
                share_id,
                name,
                version,
                ..
            } => {
                let id = file_id.to_string();
                let meta = FileMeta {
                    tenant_id: tenant_id.to_string(),
                    share_id: share_id.to_string(),
                    name,
                    version,
                    trashed: false,
                };
                push(
                    Op::File {
                        id: id.clone(),
                        meta,
                    },
                    &mut ops,
                )?;
                want(id, &mut embed);
            }
            FileEvent::FileVersionAdded {
                file_id, version, ..
            } => {
                let id = file_id.to_string();
                if let Some(mut meta) = ix.file(&id) {
                    meta.version = version;
                    push(
                        Op::File {
                            id: id.clone(),
                            meta,
                        },
                        &mut ops,
                    )?;
                    want(id, &mut embed);
                }
            }
            FileEvent::FileRenamed { file_id, name, .. } => {
                let id = file_id.to_string();
                if let Some(mut meta) = ix.file(&id) {
                    meta.name = name;
                    push(Op::File { id, meta }, &mut ops)?;
                }
            }
            FileEvent::FileMoved {
                file_id, share_id, ..
            } => {
                let id = file_id.to_string();
                if let Some(mut meta) = ix.file(&id) {
                    meta.share_id = share_id.to_string();
                    push(Op::File { id, meta }, &mut ops)?;
                }
            }
            FileEvent::FileDeleted { file_id, .. } => {
                let id = file_id.to_string();
                if let Some(mut meta) = ix.file(&id) {
                    meta.trashed = true;
                    push(
                        Op::File {
                            id: id.clone(),
                            meta,
                        },
                        &mut ops,
                    )?;
                    push(
                        Op::Chunks {
                            id,
                            chunks: Vec::new(),
                        },
                        &mut ops,
                    )?;
                }
            }
            FileEvent::FileRestored { file_id, .. } => {
                let id = file_id.to_string();
                if let Some(mut meta) = ix.file(&id) {
                    meta.trashed = false;
                    push(
                        Op::File {
                            id: id.clone(),
                            meta,
                        },
                        &mut ops,
                    )?;
                    want(id, &mut embed);
                }
            }
            FileEvent::FilePurged { file_id, .. } => {
                push(
                    Op::Forget {
                        id: file_id.to_string(),
                    },
                    &mut ops,
                )?;
            }
            _ => {}
        }
    }
    for id in embed {
        let Some(meta) = ix.file(&id) else { continue };
        if meta.trashed || !ix.enabled(&meta.tenant_id) {
            continue;
        }
        let chunks = match chunks_of(blob, settings, embedder, &meta).await {
            Ok(c) => c,
            // The provider is down or slow: the step fails and is retried.
            Err(e @ (EmbedError::Unreachable(_) | EmbedError::Timeout)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(file_id = %id, error = %e, "semantic: cannot embed file; left without chunks");
                Vec::new()
            }
        };
        push(Op::Chunks { id, chunks }, &mut ops)?;
    }
    Ok(ops)
}

/// A file's current version as embedded chunks.
async fn chunks_of(
    blob: &BlobStore,
    settings: &Settings,
    embedder: &Embedder,
    meta: &FileMeta,
) -> Result<Vec<StoredChunk>, EmbedError> {
    let (extracted, _) =
        extract_sections(blob, settings, &meta.tenant_id, &meta.name, &meta.version).await;
    let Some(extracted) = extracted else {
        return Ok(Vec::new());
    };
    let tokens = embedder.tokens().clone();
    let chunks = tokio::task::spawn_blocking(move || {
        chunk::chunk(
            &extracted.sections,
            |t| tokens.spans(t),
            CHUNK_TOKENS,
            OVERLAP_TOKENS,
        )
    })
    .await
    .map_err(|e| EmbedError::Failed(e.to_string()))?;
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let vectors = embedder
        .embed(chunks.iter().map(|c| c.content.clone()).collect())
        .await?;
    Ok(chunks
        .iter()
        .zip(&vectors)
        .map(|(c, v)| StoredChunk::new(c, v))
        .collect())
}

fn read_current(dir: &Path) -> Option<String> {
    let name = std::fs::read_to_string(dir.join(CURRENT)).ok()?;
    let name = name.trim().to_owned();
    let prefix = format!("semantic-v{INDEX_VERSION}-");
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
        format!("private-semantic-v{INDEX_VERSION}-{id}")
    } else {
        format!("semantic-v{INDEX_VERSION}-{id}")
    }
}

/// The vector index one process serves from and feeds.
pub struct SemanticIndexer {
    settings: Settings,
    store: DynStore,
    blob: BlobStore,
    embedder: Arc<Embedder>,
    index: parking_lot::RwLock<Arc<VectorIndex>>,
    serving: parking_lot::Mutex<Option<String>>,
    progress: watch::Sender<LogPosition>,
}

impl SemanticIndexer {
    /// Opens the index `CURRENT_SEMANTIC` names (creating one), or a private
    /// one if another process holds it.
    pub fn open(
        settings: Settings,
        store: DynStore,
        blob: BlobStore,
        embedder: Arc<Embedder>,
    ) -> Result<Arc<Self>, SemanticError> {
        std::fs::create_dir_all(&settings.dir).map_err(VectorError::from)?;
        let (index, serving) = match read_current(&settings.dir) {
            Some(name) => match VectorIndex::open(&settings.dir.join(&name)) {
                Ok(ix) => (ix, Some(name)),
                Err(VectorError::Busy) => {
                    let private = fresh_name(true);
                    tracing::info!(dir = %private, "vector index in use by another process; keeping a private one");
                    (VectorIndex::open(&settings.dir.join(&private))?, None)
                }
                Err(e) => return Err(e.into()),
            },
            None => {
                let name = fresh_name(false);
                let ix = VectorIndex::open(&settings.dir.join(&name))?;
                write_current(&settings.dir, &name).map_err(VectorError::from)?;
                (ix, Some(name))
            }
        };
        let (progress, _) = watch::channel(index.checkpoint());
        Ok(Arc::new(Self {
            settings,
            store,
            blob,
            embedder,
            index: parking_lot::RwLock::new(Arc::new(index)),
            serving: parking_lot::Mutex::new(serving),
            progress,
        }))
    }

    /// The index queries read now.
    pub fn index(&self) -> Arc<VectorIndex> {
        self.index.read().clone()
    }

    /// The provider that embeds chunks and queries.
    pub fn embedder(&self) -> &Arc<Embedder> {
        &self.embedder
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
    pub async fn step(&self) -> Result<usize, SemanticError> {
        self.follow_rebuild()?;
        let from = self.position();
        let batch = self.store.read_all(from, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.log) else {
            return Ok(0);
        };
        let ix = self.index();
        let ops = apply_batch(&ix, &self.blob, &self.settings, &self.embedder, &batch).await?;
        let ix2 = ix.clone();
        tokio::task::spawn_blocking(move || ix2.commit(&ops, last))
            .await
            .map_err(|e| VectorError::Format(e.to_string()))??;
        self.progress.send_replace(last);
        Ok(batch.len())
    }

    /// Switches to the index a rebuild pointed `CURRENT_SEMANTIC` at.
    fn follow_rebuild(&self) -> Result<(), SemanticError> {
        let Some(serving) = self.serving.lock().clone() else {
            return Ok(());
        };
        let Some(latest) = read_current(&self.settings.dir) else {
            return Ok(());
        };
        if latest == serving {
            return Ok(());
        }
        let fresh = match VectorIndex::open(&self.settings.dir.join(&latest)) {
            Ok(ix) => ix,
            // The rebuild still holds it: try again on the next step.
            Err(VectorError::Busy) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let at = fresh.checkpoint();
        let old = std::mem::replace(&mut *self.index.write(), Arc::new(fresh));
        *self.serving.lock() = Some(latest.clone());
        self.progress.send_replace(at);
        let old_dir = old.dir().to_owned();
        drop(old);
        tracing::info!(index = %latest, "vector index rebuilt; switched");
        let _ = std::fs::remove_dir_all(old_dir);
        Ok(())
    }

    /// Runs until `shutdown`, stepping whenever the log may have grown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        super::follow_log(
            &self.store,
            &shutdown,
            "semantic",
            Duration::from_secs(5),
            || self.step(),
        )
        .await;
        if self.serving.lock().is_none() {
            let dir = self.index().dir().to_owned();
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Catches up with the log head (tests, benchmarks).
    pub async fn catch_up(&self) -> Result<(), SemanticError> {
        while self.step().await? > 0 {}
        Ok(())
    }
}

/// Builds the vector index again from the start of the log beside the live
/// one, then points `CURRENT_SEMANTIC` at it (a serving process switches on
/// its next step). Returns the events read.
pub async fn rebuild(
    settings: &Settings,
    store: &DynStore,
    blob: &BlobStore,
    embedder: &Embedder,
    mut progress: impl FnMut(i64),
) -> Result<u64, SemanticError> {
    std::fs::create_dir_all(&settings.dir).map_err(VectorError::from)?;
    let name = fresh_name(false);
    let dir: PathBuf = settings.dir.join(&name);
    let ix = VectorIndex::open(&dir)?;
    let mut at = LogPosition::START;
    let mut read = 0u64;
    loop {
        let batch = store.read_all(at, REBUILD_BATCH).await?;
        let Some(last) = batch.last().map(|e| e.log) else {
            break;
        };
        let ops = apply_batch(&ix, blob, settings, embedder, &batch).await?;
        ix.commit(&ops, last)?;
        read += batch.len() as u64;
        at = last;
        progress(at.position);
    }
    ix.commit(&[], at)?;
    drop(ix);
    let old = read_current(&settings.dir);
    write_current(&settings.dir, &name).map_err(VectorError::from)?;
    if let Some(old) = old {
        let old_dir = settings.dir.join(old);
        if !VectorIndex::in_use(&old_dir) {
            let _ = std::fs::remove_dir_all(old_dir);
        }
    }
    Ok(read)
}
