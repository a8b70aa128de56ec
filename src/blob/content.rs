//! Content in and out of the chunk store, with memory bounded by two chunks:
//! cutting a byte stream into chunks as it arrives, and streaming a byte
//! range of a file back out a small piece at a time.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use scaidrive_domain::drive::ChunkRef;
use sha2::{Digest, Sha256};

use super::{BlobError, BlobStore};

/// What storing a stream produced.
#[derive(Debug, Clone)]
pub struct Stored {
    pub size: u64,
    pub sha256: String,
    pub chunks: Vec<ChunkRef>,
    /// Chunks the tenant already had.
    pub deduplicated: u64,
}

/// Why a stream could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreContentError {
    #[error("content exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Cuts `body` into `chunk_size` chunks, stores each under its SHA-256 (once
/// per tenant) and hashes the whole. Stops as soon as `max_size` is passed.
///
/// A full chunk is hashed and written by a task of its own while the next
/// one arrives and is hashed into the whole, so the two hashes of every byte
/// run on two cores; at most one chunk is in flight besides the one being
/// filled.
pub async fn store_stream<S, E>(
    blob: &BlobStore,
    tenant: &str,
    body: S,
    chunk_size: u64,
    max_size: u64,
) -> Result<Stored, StoreContentError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut body = body;
    let cs = chunk_size as usize;
    let mut buf = BytesMut::with_capacity(cs);
    let mut whole = Sha256::new();
    let mut out = Stored {
        size: 0,
        sha256: String::new(),
        chunks: Vec::new(),
        deduplicated: 0,
    };
    let mut in_flight = VecDeque::new();
    while let Some(piece) = body.next().await {
        let mut piece = piece.map_err(|e| StoreContentError::Body(e.to_string()))?;
        out.size += piece.len() as u64;
        if out.size > max_size {
            return Err(StoreContentError::TooLarge(max_size));
        }
        whole.update(&piece);
        while !piece.is_empty() {
            let take = (cs - buf.len()).min(piece.len());
            buf.extend_from_slice(&piece.split_to(take));
            if buf.len() == cs {
                if let Some(done) = in_flight.pop_front() {
                    settle(done, &mut out).await?;
                }
                in_flight.push_back(flush(blob, tenant, buf.split().freeze()));
            }
        }
    }
    if !buf.is_empty() {
        in_flight.push_back(flush(blob, tenant, buf.split().freeze()));
    }
    while let Some(done) = in_flight.pop_front() {
        settle(done, &mut out).await?;
    }
    out.sha256 = hex::encode(whole.finalize());
    Ok(out)
}

type Flushed = tokio::task::JoinHandle<Result<(ChunkRef, bool), BlobError>>;

/// Hashes and stores one chunk on a task of its own: its reference and
/// whether the tenant had it already.
fn flush(blob: &BlobStore, tenant: &str, chunk: Bytes) -> Flushed {
    let (blob, tenant) = (blob.clone(), tenant.to_owned());
    tokio::spawn(async move {
        let size = chunk.len() as u64;
        let (hash, chunk) =
            tokio::task::spawn_blocking(move || (hex::encode(Sha256::digest(&chunk)), chunk))
                .await
                .map_err(|e| BlobError::Unavailable(format!("hashing a chunk failed: {e}")))?;
        let deduplicated = blob.put_chunk(&tenant, &hash, chunk).await?;
        Ok((ChunkRef { hash, size }, deduplicated))
    })
}

/// Adds a stored chunk to `out`, in order.
async fn settle(done: Flushed, out: &mut Stored) -> Result<(), BlobError> {
    let (chunk, deduplicated) = done
        .await
        .map_err(|e| BlobError::Unavailable(format!("storing a chunk failed: {e}")))??;
    if deduplicated {
        out.deduplicated += 1;
    }
    out.chunks.push(chunk);
    Ok(())
}

/// Streams bytes `[start, end)` of the content made of `chunks`.
pub fn read_range(
    blob: BlobStore,
    tenant: String,
    chunks: Vec<ChunkRef>,
    start: u64,
    end: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    async_stream::try_stream! {
        let mut offset = 0u64;
        for c in chunks {
            let (c_start, c_end) = (offset, offset + c.size);
            offset = c_end;
            if c_end <= start || c_start >= end {
                continue;
            }
            let from = start.max(c_start) - c_start;
            let to = end.min(c_end) - c_start;
            // Piece by piece, as the socket takes them: never a whole chunk.
            let mut pieces = blob
                .stream_chunk(&tenant, &c.hash, from..to)
                .await
                .map_err(std::io::Error::other)?;
            while let Some(piece) = pieces.next().await {
                yield piece.map_err(std::io::Error::other)?;
            }
        }
    }
}

/// SHA-256 of the content made of `chunks`, read back one chunk at a time.
pub async fn checksum(
    blob: &BlobStore,
    tenant: &str,
    chunks: &[ChunkRef],
) -> Result<String, BlobError> {
    let mut whole = Sha256::new();
    for c in chunks {
        whole.update(blob.get_chunk(tenant, &c.hash).await?);
    }
    Ok(hex::encode(whole.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_are_chunked_deduplicated_and_read_back_by_range() {
        let blob = BlobStore::in_memory();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let pieces: Vec<Result<Bytes, String>> = data
            .chunks(7_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let stored = store_stream(
            &blob,
            "tnt_a",
            futures::stream::iter(pieces.clone()),
            65_536,
            1 << 30,
        )
        .await
        .expect("store");
        assert_eq!(stored.size, 200_000);
        assert_eq!(stored.chunks.len(), 4);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(stored.deduplicated, 0);
        let again = store_stream(
            &blob,
            "tnt_a",
            futures::stream::iter(pieces),
            65_536,
            1 << 30,
        )
        .await
        .expect("store");
        assert_eq!(
            again.deduplicated, 4,
            "identical content stores nothing new"
        );

        let range: Vec<u8> = read_range(
            blob.clone(),
            "tnt_a".into(),
            stored.chunks.clone(),
            65_000,
            140_000,
        )
        .map(|b| b.expect("chunk"))
        .collect::<Vec<_>>()
        .await
        .concat();
        assert_eq!(range, &data[65_000..140_000]);
        assert_eq!(
            checksum(&blob, "tnt_a", &stored.chunks).await.expect("sum"),
            stored.sha256
        );
    }

    #[tokio::test]
    async fn oversize_streams_stop_early() {
        let blob = BlobStore::in_memory();
        let pieces = futures::stream::iter(vec![Ok::<_, String>(Bytes::from(vec![1u8; 1000])); 10]);
        assert!(matches!(
            store_stream(&blob, "t", pieces, 65_536, 5000).await,
            Err(StoreContentError::TooLarge(5000))
        ));
    }
}
