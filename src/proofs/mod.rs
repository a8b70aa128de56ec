//! The log as a Merkle tree with signed checkpoints (ARCHITECTURE.md
//! "Proofs").
//!
//! One follower, under its own lease, reads the log through the gap-safe
//! `EventStore::read_all` from its own checkpoint and gives each event the
//! next leaf index, so leaves are only ever assigned over the prefix every
//! reader trusts: a transaction that commits late is read after everything
//! already in the tree and lands above every published checkpoint. Each
//! batch's leaves, the perfect subtrees they complete and the follower's
//! checkpoint commit in one transaction. Every N leaves or T seconds (when
//! events other than checkpoints arrived) the follower signs the tree head
//! as a C2SP signed note and appends it to the log as a
//! `log-checkpoint-signed` event of the `log-checkpoints` stream, and, when
//! configured, writes the note to object storage as well ([`Publisher`]).

pub mod note;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use scaidrive_domain::log::LogEvent;
use scaidrive_domain::merkle::{self, Frontier, Hash, MerkleError, NodeId, NodeSource, Recorder};
use scaidrive_domain::{DomainEvent as _, EventMetadata, LogPosition, NewEvent, RecordedEvent};
use scaidrive_projections::checkpoint::{self, Checkpoint as ReadCheckpoint};
use scaidrive_projections::db::{placeholders, Arg, Db};
use scaidrive_projections::{db_fetch_optional, tx_insert_rows};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::blob::{BlobError, BlobSettings, BlobStore};
use crate::lease::Lease;
use crate::store::{AppendRequest, DynStore, ExpectedVersion, StoreError, StreamAppend};
pub use note::{Checkpoint, NamedKey, NoteError, Verifier};

/// The follower's lease and its row in `projection_checkpoints`.
pub const FOLLOWER: &str = "merkle-log";
/// The stream that holds the signed checkpoints.
pub const STREAM: &str = "log-checkpoints";
/// The event type of a signed checkpoint.
pub const EVENT: &str = "log-checkpoint-signed";
/// The default key file in the data directory.
pub const KEY_FILE: &str = "log-signing-key";
const SERVICE_ACCOUNT: &str = "scaidrive-merkle-log";
/// Events read per batch.
const BATCH: usize = 1000;
/// How long the follower lets events gather after a short batch: under a
/// steady stream of commits, waking for each would spend a transaction on a
/// handful of leaves and take cores from the writers (the bench measured
/// 0.81x command throughput on PostgreSQL that way).
const LINGER: Duration = Duration::from_millis(100);

pub use crate::config::ProofSettings as Settings;

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("log signing key: {0}")]
    Key(String),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored node {0} is not a hash")]
    BadNode(i64),
    #[error("checkpoint publishing: {0}")]
    Publish(String),
}

// ------------------------------------------------------------ publishing

/// Where signed checkpoints are written besides the log, so a witness or an
/// auditor can fetch the heads from storage the server cannot rewrite
/// later (a bucket with object lock, a mirrored directory) without asking
/// the server. Each note goes to `checkpoints/{size}` (20 digits, so names
/// sort by size) and to `checkpoint`, the latest.
#[derive(Debug, Clone)]
pub struct Publisher {
    store: BlobStore,
    prefix: String,
}

impl Publisher {
    /// Opens `url`: a directory, a `file://` URL or `s3://bucket[/prefix]`;
    /// the S3 endpoint, credentials and timeout are the blob store's.
    pub fn open(url: &str, blob: &BlobSettings, data_dir: &Path) -> Result<Self, ProofError> {
        let (target, prefix) = match url.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                (
                    format!("s3://{bucket}"),
                    prefix.trim_matches('/').to_owned(),
                )
            }
            None => (url.to_owned(), String::new()),
        };
        let settings = BlobSettings {
            url: Some(target),
            ..blob.clone()
        };
        let store =
            BlobStore::open(&settings, data_dir).map_err(|e| ProofError::Publish(e.to_string()))?;
        Ok(Self { store, prefix })
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The object name of the checkpoint of `size` leaves.
    pub fn name_of(size: u64) -> String {
        format!("checkpoints/{size:020}")
    }

    /// Writes one signed note: its own object first, then the latest.
    pub async fn publish(&self, size: u64, note: &str) -> Result<(), BlobError> {
        let bytes = bytes::Bytes::from(note.to_owned());
        self.store
            .put_object(&self.path(&Self::name_of(size)), bytes.clone())
            .await?;
        self.store.put_object(&self.path("checkpoint"), bytes).await
    }

    /// The latest published note, if any was published.
    pub async fn latest(&self) -> Result<Option<String>, BlobError> {
        self.read("checkpoint").await
    }

    /// A published note by its object name (`checkpoint`, or
    /// [`Publisher::name_of`] a size).
    pub async fn read(&self, name: &str) -> Result<Option<String>, BlobError> {
        match self.store.get_object(&self.path(name)).await {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(BlobError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The log's origin (and key name): configured, else the public URL's host
/// with `/log`, else `scaidrive.local/log`.
pub fn origin(settings: &Settings, public_url: Option<&str>) -> String {
    if let Some(o) = &settings.origin {
        return o.trim().to_owned();
    }
    public_url
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(|h| format!("{h}/log")))
        .unwrap_or_else(|| "scaidrive.local/log".into())
}

/// Loads the checkpoint key: the configured seed, else the key file in
/// `data_dir`, created (mode 0600) on first use.
pub fn load_key(settings: &Settings, name: &str, data_dir: &Path) -> Result<NamedKey, ProofError> {
    let seed = match &settings.signing_key {
        Some(s) => decode_seed(s.expose()).ok_or_else(|| {
            ProofError::Key("SCAIDRIVE_LOG_SIGNING_KEY is not base64 of 32 bytes".into())
        })?,
        None => key_file(&data_dir.join(KEY_FILE))?,
    };
    Ok(NamedKey::new(name, seed)?)
}

pub fn decode_seed(text: &str) -> Option<[u8; 32]> {
    crate::secrets::decode(text)
}

/// Reads a base64 seed from `path`, or creates one there (first writer
/// wins; see [`crate::secrets::key_file`]).
pub fn key_file(path: &Path) -> Result<[u8; 32], ProofError> {
    crate::secrets::key_file(path).map_err(|e| ProofError::Key(e.to_string()))
}

// ------------------------------------------------------------ storage

/// The key of a node's row in `merkle_nodes`: its level in the top byte,
/// its index below.
pub fn node_key(id: NodeId) -> i64 {
    ((id.level as i64) << 56) | id.index as i64
}

fn hash_of(key: i64, hex_text: &str) -> Result<Hash, ProofError> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
        .ok_or(ProofError::BadNode(key))
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: i64,
    hash: String,
}

/// Loads the given nodes (those present) into a map.
pub async fn load_nodes(db: &Db, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, ProofError> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let args: Vec<Arg> = chunk.iter().map(|id| Arg::Int(node_key(*id))).collect();
        let sql = format!(
            "SELECT id, hash FROM merkle_nodes WHERE id IN ({})",
            placeholders(1, args.len())
        );
        let rows: Vec<NodeRow> = db.fetch_all_args(&sql, &args).await?;
        let by_key: HashMap<i64, NodeId> = chunk.iter().map(|id| (node_key(*id), *id)).collect();
        for r in rows {
            if let Some(id) = by_key.get(&r.id) {
                out.insert(*id, hash_of(r.id, &r.hash)?);
            }
        }
    }
    Ok(out)
}

/// Runs `f` (a proof or root computation) over the stored nodes: once to
/// learn which nodes it reads, then over those nodes loaded in one go.
pub async fn with_nodes<T>(
    db: &Db,
    f: impl Fn(&dyn NodeSource) -> Result<T, MerkleError>,
) -> Result<T, ProofError> {
    let rec = Recorder::default();
    f(&rec)?;
    let nodes = load_nodes(db, &rec.into_ids()).await?;
    Ok(f(&nodes)?)
}

/// How many leaves the tree holds.
pub async fn tree_size(db: &Db) -> Result<u64, ProofError> {
    let n = db
        .fetch_i64_args(
            "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM merkle_leaves",
            &[],
        )
        .await?;
    Ok(n.max(0) as u64)
}

/// An event's place in the tree.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Leaf {
    pub leaf_index: i64,
    pub event_id: String,
    pub tenant_id: Option<String>,
    pub position: i64,
}

pub async fn leaf_of(db: &Db, event_id: &str) -> Result<Option<Leaf>, ProofError> {
    Ok(db_fetch_optional!(
        db,
        Leaf,
        "SELECT leaf_index, event_id, tenant_id, position FROM merkle_leaves WHERE event_id = $1",
        event_id
    )?)
}

/// Leaf indexes of the events at these log positions.
pub async fn leaves_at(db: &Db, positions: &[i64]) -> Result<HashMap<i64, i64>, ProofError> {
    let mut out = HashMap::new();
    for chunk in positions.chunks(500) {
        let args: Vec<Arg> = chunk.iter().map(|p| Arg::Int(*p)).collect();
        let sql = format!(
            "SELECT leaf_index, event_id, tenant_id, position FROM merkle_leaves WHERE position IN ({})",
            placeholders(1, args.len())
        );
        let rows: Vec<Leaf> = db.fetch_all_args(&sql, &args).await?;
        out.extend(rows.into_iter().map(|l| (l.position, l.leaf_index)));
    }
    Ok(out)
}

/// What an export adds to each audit entry so an auditor can check it
/// against a checkpoint: the event's stored `hash`, stream and version, and
/// its leaf index (`None` until the tree holds it).
#[derive(Debug, Clone)]
pub struct Anchor {
    pub hash: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub leaf_index: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AnchorRow {
    position: i64,
    hash: String,
    stream_id: String,
    stream_version: i64,
}

/// The anchors of the events at these log positions (an event whose row is
/// gone has none).
pub async fn anchors(db: &Db, positions: &[i64]) -> Result<HashMap<i64, Anchor>, ProofError> {
    let leaves = leaves_at(db, positions).await?;
    let mut out = HashMap::new();
    for chunk in positions.chunks(500) {
        let args: Vec<Arg> = chunk.iter().map(|p| Arg::Int(*p)).collect();
        let sql = format!(
            "SELECT position, hash, stream_id, stream_version FROM events WHERE position IN ({})",
            placeholders(1, args.len())
        );
        let rows: Vec<AnchorRow> = db.fetch_all_args(&sql, &args).await?;
        for r in rows {
            out.insert(
                r.position,
                Anchor {
                    leaf_index: leaves.get(&r.position).copied(),
                    hash: r.hash,
                    stream_id: r.stream_id,
                    stream_version: r.stream_version,
                },
            );
        }
    }
    Ok(out)
}

/// The latest signed checkpoint: its note and tree head.
#[derive(Debug, Clone)]
pub struct Signed {
    pub note: String,
    pub size: u64,
}

pub async fn latest(store: &DynStore) -> Result<Option<Signed>, ProofError> {
    let Some(v) = store.stream_version(STREAM).await? else {
        return Ok(None);
    };
    let events = store.read_stream(STREAM, v - 1, 1).await?;
    Ok(events.last().and_then(signed_of))
}

fn signed_of(e: &RecordedEvent) -> Option<Signed> {
    Some(Signed {
        note: e.data.get("note")?.as_str()?.to_owned(),
        size: e.data.get("tree_size")?.as_u64()?,
    })
}

// ------------------------------------------------------------ the follower

/// Starts the tree follower; it appends leaves while this process holds
/// `lease` and runs until `stop` is cancelled.
pub fn spawn(
    db: Db,
    store: DynStore,
    key: std::sync::Arc<NamedKey>,
    settings: Settings,
    publish: Option<Publisher>,
    lease: Lease,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let f = Follower {
            db,
            store,
            key,
            settings,
            publish,
            lease,
            stop,
        };
        loop {
            tokio::select! {
                _ = f.stop.cancelled() => return,
                _ = f.lease.acquired() => {}
            }
            if let Err(e) = f.follow_while_held().await {
                tracing::warn!(error = %e, "merkle log follower failed; restarting from its checkpoint");
                tokio::select! {
                    _ = f.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    })
}

struct Follower {
    db: Db,
    store: DynStore,
    key: std::sync::Arc<NamedKey>,
    settings: Settings,
    publish: Option<Publisher>,
    lease: Lease,
    stop: CancellationToken,
}

impl Follower {
    async fn follow_while_held(&self) -> Result<(), ProofError> {
        let mut after = checkpoint::read(&self.db, FOLLOWER)
            .await?
            .map(|c| c.position)
            .unwrap_or(LogPosition::START);
        let size = tree_size(&self.db).await?;
        let nodes = load_nodes(&self.db, &Frontier::ids(size)).await?;
        let mut frontier = Frontier::load(&nodes, size)?;
        let signed = latest(&self.store).await?.map(|s| s.size).unwrap_or(0);
        // Leaves since the last checkpoint, less the checkpoint's own event.
        let mut pending = size.saturating_sub(signed).saturating_sub(1);
        if signed == 0 {
            pending = size;
        }
        let mut last_signed: Option<Instant> = None;
        let mut wake = self.store.subscribe();
        while !self.stop.is_cancelled() && self.lease.is_held() {
            let batch = self.store.read_all(after, BATCH).await?;
            if !batch.is_empty() {
                // On failure the caller restarts from the stored state.
                self.append(&mut frontier, &batch).await?;
                after = batch[batch.len() - 1].log;
                pending += batch.iter().filter(|e| e.event_type != EVENT).count() as u64;
            }
            let due = pending >= self.settings.every_events
                || (pending > 0 && last_signed.is_none_or(|t| t.elapsed() >= self.settings.every));
            if due && batch.len() < BATCH {
                self.sign(&frontier).await?;
                pending = 0;
                last_signed = Some(Instant::now());
                continue;
            }
            if !batch.is_empty() && batch.len() < BATCH {
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    _ = self.lease.lost() => break,
                    _ = tokio::time::sleep(LINGER) => {}
                }
                continue;
            }
            if batch.is_empty() {
                let wait = match last_signed {
                    Some(t) if pending > 0 => self
                        .settings
                        .every
                        .saturating_sub(t.elapsed())
                        .min(Duration::from_millis(500)),
                    _ => Duration::from_millis(500),
                };
                tokio::select! {
                    _ = self.stop.cancelled() => break,
                    _ = self.lease.lost() => break,
                    _ = wake.recv() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        Ok(())
    }

    /// Gives each event of the batch the next leaf and stores the leaves,
    /// the completed nodes and the checkpoint in one transaction.
    async fn append(
        &self,
        frontier: &mut Frontier,
        batch: &[RecordedEvent],
    ) -> Result<(), ProofError> {
        let mut leaves = Vec::with_capacity(batch.len());
        let mut nodes = Vec::with_capacity(batch.len() * 2);
        for e in batch {
            // A hash that is not hex (never written by this store) still
            // gets a leaf, over its text, so indexes stay in log order.
            let leaf =
                merkle::event_leaf(&e.hash).unwrap_or_else(|| merkle::leaf_hash(e.hash.as_bytes()));
            let index = frontier.size() as i64;
            for (id, h) in frontier.push(leaf) {
                nodes.push((node_key(id), hex::encode(h)));
            }
            leaves.push((
                index,
                scaidrive_domain::id::EventId::from_uuid(e.event_id).to_string(),
                e.tenant_id.clone(),
                e.log.position,
            ));
        }
        let mut tx = self.db.begin().await?;
        for chunk in leaves.chunks(400) {
            tx_insert_rows!(
                &mut tx,
                "INSERT INTO merkle_leaves (leaf_index, event_id, tenant_id, position) ",
                chunk,
                |mut row, l: &(i64, String, Option<String>, i64)| {
                    row.push_bind(l.0)
                        .push_bind(l.1.clone())
                        .push_bind(l.2.clone())
                        .push_bind(l.3);
                },
                ""
            )?;
        }
        for chunk in nodes.chunks(400) {
            tx_insert_rows!(
                &mut tx,
                "INSERT INTO merkle_nodes (id, hash) ",
                chunk,
                |mut row, n: &(i64, String)| {
                    row.push_bind(n.0).push_bind(n.1.clone());
                },
                ""
            )?;
        }
        let last = batch[batch.len() - 1].log;
        checkpoint::store(
            &mut tx,
            FOLLOWER,
            ReadCheckpoint {
                version: 1,
                position: last,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Signs the current tree head and appends it to the log.
    async fn sign(&self, frontier: &Frontier) -> Result<(), ProofError> {
        let cp = Checkpoint {
            origin: self.key.name().to_owned(),
            size: frontier.size(),
            root: frontier.root(),
        };
        let note = self.key.sign(&cp);
        let now = chrono::Utc::now();
        let (event_type, data) = LogEvent::LogCheckpointSigned {
            origin: cp.origin.clone(),
            tree_size: cp.size,
            root_hash: B64.encode(cp.root),
            note: note.clone(),
            key: self.key.verifier().text(),
        }
        .encode();
        let event = NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type,
            schema_version: 1,
            tenant_id: None,
            data,
            metadata: EventMetadata {
                occurred_at: now,
                actor: scaidrive_domain::Actor {
                    service_account: Some(SERVICE_ACCOUNT.into()),
                    ..Default::default()
                },
                correlation_id: None,
                causation_id: None,
            },
        };
        self.store
            .append(AppendRequest {
                streams: vec![StreamAppend {
                    stream_id: STREAM.into(),
                    expected: ExpectedVersion::Any,
                    events: vec![event],
                }],
                ..Default::default()
            })
            .await?;
        tracing::info!(tree_size = cp.size, "signed a log checkpoint");
        // Publishing is a copy for outside readers: a failure is logged and
        // the next checkpoint tries again; the log holds every note anyway.
        if let Some(p) = &self.publish {
            if let Err(e) = p.publish(cp.size, &note).await {
                tracing::warn!(error = %e, tree_size = cp.size, "could not publish the signed checkpoint");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_comes_from_the_setting_or_the_public_url() {
        let s = Settings::default();
        assert_eq!(origin(&s, None), "scaidrive.local/log");
        assert_eq!(
            origin(&s, Some("https://drive.example.com")),
            "drive.example.com/log"
        );
        let s = Settings {
            origin: Some("audit.example/x".into()),
            ..Settings::default()
        };
        assert_eq!(
            origin(&s, Some("https://drive.example.com")),
            "audit.example/x"
        );
    }

    #[test]
    fn the_key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        let a = key_file(&p).unwrap();
        assert_eq!(key_file(&p).unwrap(), a);
    }
}
