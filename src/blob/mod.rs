//! Content-addressed chunk storage over `object_store`: a local directory by
//! default, S3 when configured. Chunks live at
//! `chunks/{tenant}/{h[0:2]}/{h[2:4]}/{h}`, written once per tenant; a chunk is
//! written before any event references it.

pub mod content;

/// The most a chunk read holds in memory at once per stream (64 KiB).
pub const READ_PIECE: u64 = 64 * 1024;

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, GetResultPayload, ObjectStore,
    PutPayload, RetryConfig,
};

/// Blob store failures.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found: {0}")]
    NotFound(String),
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time (after its retries).
    #[error("blob store timed out: {0}")]
    Timeout(String),
    #[error("blob store misconfigured: {0}")]
    Config(String),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => BlobError::NotFound(path),
            other if timed_out(&other) => BlobError::Timeout(other.to_string()),
            other => BlobError::Unavailable(other.to_string()),
        }
    }
}

/// Whether an error was caused, somewhere down its chain, by a request that
/// ran out of time (as opposed to a refused connection or an error answer).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        // The client's errors wrap theirs transparently, so the chain may
        // show the HTTP error, the reqwest error under it, or the I/O error.
        let timeout = err
            .downcast_ref::<HttpError>()
            .is_some_and(|h| matches!(h.kind(), HttpErrorKind::Timeout))
            || err
                .downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if timeout {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Where blobs live and how long the store may take.
#[derive(Debug, Clone)]
pub struct BlobSettings {
    /// `None` or a path/`file://` URL → local directory; `s3://bucket` → S3.
    pub url: Option<String>,
    /// Longest one S3 request may take, and the budget for retrying it.
    pub timeout: Duration,
    /// S3 endpoint overriding `AWS_ENDPOINT_URL` (S3-compatible stores, tests).
    pub s3_endpoint: Option<String>,
    /// Static credentials overriding the `AWS_*` ones (tests).
    pub s3_credentials: Option<(String, String)>,
}

impl BlobSettings {
    /// The embedded default: a directory under the data directory.
    pub fn local() -> Self {
        Self {
            url: None,
            timeout: Duration::from_secs(30),
            s3_endpoint: None,
            s3_credentials: None,
        }
    }
}

/// One stored chunk seen by a listing (for garbage collection).
#[derive(Debug, Clone)]
pub struct ChunkObject {
    pub tenant_id: String,
    pub hash: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// The chunk store.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    description: String,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// Whether a string is a lowercase hex SHA-256.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobStore {
    /// `None` or a path/`file://` URL → local directory; `s3://bucket[/prefix]`
    /// → S3 (credentials, region and endpoint from the standard `AWS_*`
    /// variables; `AWS_ALLOW_HTTP=true` for plain-HTTP endpoints).
    ///
    /// S3 requests are bounded: a connection that cannot be made within a
    /// few seconds, or a request that runs past `settings.timeout` after its
    /// retries, fails (502 / 504 to the client) instead of hanging the
    /// request for the client library's default of minutes.
    pub fn open(settings: &BlobSettings, data_dir: &FsPath) -> Result<Self, BlobError> {
        match settings.url.as_deref() {
            Some(u) if u.starts_with("s3://") => {
                let rest = &u["s3://".len()..];
                let bucket = rest.split('/').next().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(BlobError::Config("s3:// URL needs a bucket name".into()));
                }
                let timeout = settings.timeout.max(Duration::from_millis(100));
                let ms = |d: Duration| format!("{}ms", d.as_millis());
                // Set through config keys: replacing the client options would
                // drop what `from_env` read (AWS_ALLOW_HTTP, proxies, ...).
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        ms(timeout.min(Duration::from_secs(5))),
                    )
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        ms(timeout),
                    )
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig::default(),
                        max_retries: 3,
                        retry_timeout: timeout,
                    });
                if let Some(endpoint) = &settings.s3_endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some((key, secret)) = &settings.s3_credentials {
                    builder = builder
                        .with_access_key_id(key)
                        .with_secret_access_key(secret);
                }
                let s3 = builder
                    .build()
                    .map_err(|e| BlobError::Config(e.to_string()))?;
                Ok(Self {
                    inner: Arc::new(s3),
                    description: format!("s3 bucket {bucket}"),
                })
            }
            other => {
                let dir = match other {
                    Some(p) => std::path::PathBuf::from(p.strip_prefix("file://").unwrap_or(p)),
                    None => data_dir.join("blobs"),
                };
                std::fs::create_dir_all(&dir)
                    .map_err(|e| BlobError::Config(format!("{}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| BlobError::Config(e.to_string()))?;
                Ok(Self {
                    inner: Arc::new(fs),
                    description: format!("local directory {}", dir.display()),
                })
            }
        }
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Self {
        Self {
            inner: Arc::new(object_store::memory::InMemory::new()),
            description: "memory".into(),
        }
    }

    pub fn chunk_path(tenant_id: &str, hash: &str) -> Path {
        let (a, b) = (
            &hash[0..2.min(hash.len())],
            &hash[2.min(hash.len())..4.min(hash.len())],
        );
        Path::from(format!("chunks/{tenant_id}/{a}/{b}/{hash}"))
    }

    /// Whether the tenant already stores this chunk.
    pub async fn has_chunk(&self, tenant_id: &str, hash: &str) -> Result<bool, BlobError> {
        match self.inner.head(&Self::chunk_path(tenant_id, hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a whole small object at `path` (replacing what was there);
    /// the log's published checkpoints use it.
    pub async fn put_object(&self, path: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.inner
            .put(&Path::from(path), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Reads a whole small object.
    pub async fn get_object(&self, path: &str) -> Result<Bytes, BlobError> {
        Ok(self.inner.get(&Path::from(path)).await?.bytes().await?)
    }

    /// Stores a chunk unless the tenant has it; returns whether it was
    /// deduplicated (already present).
    pub async fn put_chunk(
        &self,
        tenant_id: &str,
        hash: &str,
        bytes: Bytes,
    ) -> Result<bool, BlobError> {
        if self.has_chunk(tenant_id, hash).await? {
            return Ok(true);
        }
        self.inner
            .put(
                &Self::chunk_path(tenant_id, hash),
                PutPayload::from_bytes(bytes),
            )
            .await?;
        Ok(false)
    }

    pub async fn get_chunk(&self, tenant_id: &str, hash: &str) -> Result<Bytes, BlobError> {
        Ok(self
            .inner
            .get(&Self::chunk_path(tenant_id, hash))
            .await?
            .bytes()
            .await?)
    }

    pub async fn get_chunk_range(
        &self,
        tenant_id: &str,
        hash: &str,
        range: Range<u64>,
    ) -> Result<Bytes, BlobError> {
        Ok(self
            .inner
            .get_range(&Self::chunk_path(tenant_id, hash), range)
            .await?)
    }

    /// Streams bytes `range` of a chunk in pieces of at most [`READ_PIECE`]
    /// bytes, each read only when the consumer asks for it: a download holds
    /// one piece per connection, never a whole chunk.
    pub async fn stream_chunk(
        &self,
        tenant_id: &str,
        hash: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let got = self
            .inner
            .get_opts(&Self::chunk_path(tenant_id, hash), options)
            .await?;
        Ok(match got.payload {
            GetResultPayload::File(file, _) => read_pieces(file, got.range),
            // Remote stores: the response body as it arrives from the socket.
            GetResultPayload::Stream(s) => s.map(|r| r.map_err(BlobError::from)).boxed(),
        })
    }

    pub async fn delete_chunk(&self, tenant_id: &str, hash: &str) -> Result<(), BlobError> {
        match self.inner.delete(&Self::chunk_path(tenant_id, hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored chunk (optionally of one tenant).
    pub async fn list_chunks(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<ChunkObject>, BlobError> {
        let prefix = match tenant_id {
            Some(t) => Path::from(format!("chunks/{t}")),
            None => Path::from("chunks"),
        };
        let mut out = Vec::new();
        let mut listing = self.inner.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let parts: Vec<String> = meta
                .location
                .parts()
                .map(|p| p.as_ref().to_owned())
                .collect();
            if parts.len() == 5 && is_sha256_hex(&parts[4]) {
                out.push(ChunkObject {
                    tenant_id: parts[1].clone(),
                    hash: parts[4].clone(),
                    size: meta.size,
                    last_modified: meta.last_modified,
                });
            }
        }
        Ok(out)
    }

    /// Readiness: the store answers a listing.
    pub async fn ping(&self) -> Result<(), BlobError> {
        let mut listing = self.inner.list(Some(&Path::from("chunks")));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.into()),
        }
    }
}

/// `range` of a local file, [`READ_PIECE`] bytes per blocking read, each
/// read when the stream is polled.
fn read_pieces(
    file: std::fs::File,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures::stream::try_unfold(
        (file, range.start, range.end),
        |(mut file, pos, end)| async move {
            if pos >= end {
                return Ok(None);
            }
            let n = (end - pos).min(READ_PIECE);
            let (file, piece) = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(pos))?;
                let mut buf = vec![0u8; n as usize];
                file.read_exact(&mut buf)?;
                Ok::<_, std::io::Error>((file, Bytes::from(buf)))
            })
            .await
            .map_err(|e| BlobError::Unavailable(format!("reading a chunk: {e}")))?
            .map_err(|e| BlobError::Unavailable(format!("reading a chunk: {e}")))?;
            Ok::<_, BlobError>(Some((piece, (file, pos + n, end))))
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[tokio::test]
    async fn chunks_are_stored_once_per_tenant() {
        let store = BlobStore::in_memory();
        let data = Bytes::from_static(b"hello world");
        let h = hex::encode(Sha256::digest(&data));
        assert!(!store
            .put_chunk("tnt_a", &h, data.clone())
            .await
            .expect("put"));
        assert!(
            store
                .put_chunk("tnt_a", &h, data.clone())
                .await
                .expect("put"),
            "second put dedups"
        );
        assert!(
            !store
                .put_chunk("tnt_b", &h, data.clone())
                .await
                .expect("put"),
            "other tenant stores its own"
        );
        assert_eq!(store.get_chunk("tnt_a", &h).await.expect("get"), data);
        assert_eq!(
            store
                .get_chunk_range("tnt_a", &h, 6..11)
                .await
                .expect("range"),
            Bytes::from_static(b"world")
        );
        assert_eq!(
            store.list_chunks(Some("tnt_a")).await.expect("list").len(),
            1
        );
        store.delete_chunk("tnt_a", &h).await.expect("delete");
        assert!(!store.has_chunk("tnt_a", &h).await.expect("head"));
    }

    #[test]
    fn chunk_paths_fan_out_by_hash_prefix() {
        let p = BlobStore::chunk_path("tnt_x", &"ab".repeat(32));
        assert_eq!(
            p.as_ref(),
            format!("chunks/tnt_x/ab/ab/{}", "ab".repeat(32))
        );
    }
}
