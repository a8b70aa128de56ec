//! Search: text extraction, the keyword (BM25) index and the indexer that
//! feeds it from the log, and the permission-filtered queries the HTTP layer
//! answers with.
//!
//! The keyword index is a projection of the log like the read models, but
//! it lives in the data directory (tantivy), not in the database: each
//! server process keeps its own, fed by its own indexer task from its own
//! checkpoint (the payload of the index's last commit). See ARCHITECTURE.md,
//! "Search".

pub mod chunk;
pub mod embed;
pub mod extract;
pub mod gate;
pub mod index;
pub mod indexer;
pub mod rank;
pub mod semantic;
pub mod vectors;

use std::path::PathBuf;

/// How much text is indexed per file, and how large a document is opened.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the index directories live (default `{data_dir}/search`).
    pub dir: PathBuf,
    /// Extracted text kept per file, in bytes (`SCAIDRIVE_SEARCH_MAX_TEXT_BYTES`,
    /// default 1 MiB); what is cut is not searchable.
    pub max_text_bytes: usize,
    /// Container documents (PDF, Office) larger than this are indexed by
    /// name only (`SCAIDRIVE_SEARCH_MAX_DOCUMENT_BYTES`, default 64 MiB):
    /// they must be read whole to be parsed.
    pub max_document_bytes: u64,
    /// The index writer's memory budget.
    pub writer_heap_bytes: usize,
}

impl Settings {
    /// Defaults under `data_dir`, overridden from the environment.
    pub fn from_env(data_dir: &std::path::Path) -> Self {
        let num = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Settings {
            dir: std::env::var("SCAIDRIVE_SEARCH_DIR")
                .ok()
                .filter(|d| !d.trim().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("search")),
            max_text_bytes: num("SCAIDRIVE_SEARCH_MAX_TEXT_BYTES", 1024 * 1024) as usize,
            max_document_bytes: num("SCAIDRIVE_SEARCH_MAX_DOCUMENT_BYTES", 64 * 1024 * 1024),
            writer_heap_bytes: 50_000_000,
        }
    }
}

/// How often an indexer looks at the log when no commit woke it.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs an indexer's `step` until `shutdown`: again at once while it finds
/// events, then when the store announces a commit (or every [`POLL`]), and
/// after a failure with a doubling backoff up to `max_backoff`.
pub(crate) async fn follow_log<E, F, Fut>(
    store: &crate::store::DynStore,
    shutdown: &tokio_util::sync::CancellationToken,
    what: &str,
    max_backoff: std::time::Duration,
    step: F,
) where
    E: std::fmt::Display,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize, E>>,
{
    use std::time::Duration;
    let mut wake = store.subscribe();
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        match step().await {
            Ok(n) if n > 0 => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(_) => {
                tokio::select! {
                    _ = wake.recv() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} indexer step failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}
