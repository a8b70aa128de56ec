//! The SMB side of a connector, over libsmbclient (the `pavao` crate).
//!
//! libsmbclient is blocking (and pavao runs one native call at a time per
//! process), so every call runs on the blocking pool under a deadline.
//! Content moves through bounded channels a buffer at a time: a large file
//! never sits in memory whole.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use pavao::{SmbClient, SmbCredentials, SmbDirentType, SmbMode, SmbOpenOptions, SmbOptions};
use tokio::sync::mpsc;

/// One read or write buffer.
pub const IO_BUFFER: usize = 1 << 20;
/// How long one SMB call (connect, list, open, one buffer) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why talking to the SMB server failed, with the HTTP status it maps to.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SmbFailure {
    pub status: u16,
    pub message: String,
}

impl SmbFailure {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn of(what: &str, e: &pavao::SmbError) -> Self {
        if let pavao::SmbError::Io(io) = e {
            let code = io.raw_os_error().unwrap_or_default();
            return match code {
                // EACCES, EPERM: libsmbclient's answer to NT_STATUS_LOGON_FAILURE
                // and to an account that may not use the share.
                1 | 13 if what == "connect" || what == "list the base folder" => Self::new(
                    401,
                    format!("the SMB server rejected the credentials ({what}: {io})"),
                ),
                1 | 13 => Self::new(403, format!("the SMB server denied access ({what}: {io})")),
                110 | 62 => Self::new(504, format!("the SMB server timed out ({what}: {io})")),
                2 => Self::new(404, format!("not found on the SMB server ({what}: {io})")),
                17 => Self::new(409, format!("already exists on the SMB server ({what})")),
                39 => Self::new(
                    409,
                    format!("the folder is not empty on the SMB server ({what})"),
                ),
                _ => Self::new(
                    502,
                    format!("the SMB server is unreachable or failed ({what}: {io})"),
                ),
            };
        }
        Self::new(502, format!("SMB error ({what}: {e})"))
    }

    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: i64,
    pub share: String,
    pub domain: String,
    pub username: String,
    pub password: String,
    /// Root of the connector inside the share ("" or "a/b").
    pub base_path: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("share", &self.share)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// An entry of the walked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmbEntry {
    pub is_dir: bool,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// A connected session to one share.
#[derive(Clone)]
pub struct Smb {
    client: Arc<SmbClient>,
    base: String,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SmbFailure> + Send + 'static,
    limit: Duration,
) -> Result<T, SmbFailure> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(SmbFailure::new(502, format!("SMB worker failed: {e}"))),
        Err(_) => Err(SmbFailure::new(504, "the SMB server timed out")),
    }
}

fn secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Smb {
    /// Connects and checks that the base folder can be listed (this is where
    /// rejected credentials and unreachable hosts show).
    pub async fn connect(ep: &Endpoint) -> Result<Smb, SmbFailure> {
        let ep = ep.clone();
        blocking(
            move || {
                let server = if ep.host.contains(':') {
                    format!("smb://[{}]:{}", ep.host, ep.port)
                } else {
                    format!("smb://{}:{}", ep.host, ep.port)
                };
                let creds = SmbCredentials::default()
                    .server(server)
                    .share(format!("/{}", ep.share))
                    .username(&ep.username)
                    .password(&ep.password)
                    .workgroup(&ep.domain);
                let options = SmbOptions::default()
                    .case_sensitive(true)
                    .one_share_per_server(true)
                    .no_auto_anonymous_login(true);
                let client =
                    SmbClient::new(creds, options).map_err(|e| SmbFailure::of("connect", &e))?;
                let _ = client.set_timeout(CALL_TIMEOUT);
                let base = if ep.base_path.is_empty() {
                    String::new()
                } else {
                    format!("/{}", ep.base_path)
                };
                let smb = Smb {
                    client: Arc::new(client),
                    base,
                };
                let root = if smb.base.is_empty() {
                    "/".to_owned()
                } else {
                    smb.base.clone()
                };
                // stat keeps libsmbclient's errno (a failed opendir does not).
                smb.client
                    .stat(&root)
                    .map_err(|e| SmbFailure::of("list the base folder", &e))?;
                Ok(smb)
            },
            CALL_TIMEOUT,
        )
        .await
    }

    fn full(&self, rel: &str) -> String {
        format!("{}/{}", self.base, rel)
    }

    /// Every file and folder below the base, by relative path.
    pub async fn walk(&self) -> Result<BTreeMap<String, SmbEntry>, SmbFailure> {
        let me = self.clone();
        blocking(
            move || {
                let mut out = BTreeMap::new();
                let mut todo = vec![String::new()];
                while let Some(dir) = todo.pop() {
                    let at = if dir.is_empty() {
                        if me.base.is_empty() {
                            "/".to_owned()
                        } else {
                            me.base.clone()
                        }
                    } else {
                        me.full(&dir)
                    };
                    let entries = me
                        .client
                        .list_dirplus(&at)
                        .map_err(|e| SmbFailure::of("list a folder", &e))?;
                    for e in entries {
                        if e.name == "." || e.name == ".." {
                            continue;
                        }
                        let rel = if dir.is_empty() {
                            e.name.clone()
                        } else {
                            format!("{dir}/{}", e.name)
                        };
                        let is_dir = e.get_type() == SmbDirentType::Dir;
                        if is_dir {
                            todo.push(rel.clone());
                        }
                        out.insert(
                            rel,
                            SmbEntry {
                                is_dir,
                                size: if is_dir { 0 } else { e.size },
                                mtime: secs(e.mtime),
                            },
                        );
                    }
                }
                Ok(out)
            },
            Duration::from_secs(600),
        )
        .await
    }

    /// Size and modification time of one file.
    pub async fn stat(&self, rel: &str) -> Result<SmbEntry, SmbFailure> {
        let (me, path) = (self.clone(), self.full(rel));
        blocking(
            move || {
                let s = me
                    .client
                    .stat(&path)
                    .map_err(|e| SmbFailure::of("stat", &e))?;
                Ok(SmbEntry {
                    is_dir: s.mode.is_dir(),
                    size: s.size,
                    mtime: secs(s.modified),
                })
            },
            CALL_TIMEOUT,
        )
        .await
    }

    /// Streams a file's bytes, a buffer at a time (at most two buffers in
    /// flight).
    pub fn read(&self, rel: &str) -> mpsc::Receiver<Result<Bytes, SmbFailure>> {
        let (tx, rx) = mpsc::channel(2);
        let (me, path) = (self.clone(), self.full(rel));
        tokio::task::spawn_blocking(move || {
            let mut file = match me
                .client
                .open_with(&path, SmbOpenOptions::default().read(true))
            {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(SmbFailure::of("open for reading", &e)));
                    return;
                }
            };
            let mut buf = vec![0u8; IO_BUFFER];
            loop {
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(SmbFailure::of(
                                "read",
                                &pavao::SmbError::Io(e),
                            )));
                            return;
                        }
                    }
                }
                if filled == 0 {
                    return;
                }
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..filled])))
                    .is_err()
                {
                    return;
                }
                if filled < buf.len() {
                    return;
                }
            }
        });
        rx
    }

    /// Writes a file from a stream of buffers (created or truncated), then
    /// answers its size and modification time.
    pub async fn write(
        &self,
        rel: &str,
        mut body: mpsc::Receiver<Result<Bytes, SmbFailure>>,
    ) -> Result<SmbEntry, SmbFailure> {
        let (me, path) = (self.clone(), self.full(rel));
        let handle = tokio::task::spawn_blocking(move || -> Result<(), SmbFailure> {
            let mut file = me
                .client
                .open_with(
                    &path,
                    SmbOpenOptions::default()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o644),
                )
                .map_err(|e| SmbFailure::of("open for writing", &e))?;
            while let Some(piece) = body.blocking_recv() {
                let piece = piece?;
                file.write_all(&piece)
                    .map_err(|e| SmbFailure::of("write", &pavao::SmbError::Io(e)))?;
            }
            file.flush()
                .map_err(|e| SmbFailure::of("write", &pavao::SmbError::Io(e)))?;
            Ok(())
        });
        handle
            .await
            .map_err(|e| SmbFailure::new(502, format!("SMB worker failed: {e}")))??;
        self.stat(rel).await
    }

    /// Creates a folder and its missing parents.
    pub async fn mkdirs(&self, rel: &str) -> Result<(), SmbFailure> {
        let me = self.clone();
        let rel = rel.to_owned();
        blocking(
            move || {
                let mut at = String::new();
                for part in rel.split('/').filter(|p| !p.is_empty()) {
                    at = if at.is_empty() {
                        part.to_owned()
                    } else {
                        format!("{at}/{part}")
                    };
                    let path = me.full(&at);
                    if me.client.stat(&path).is_ok() {
                        continue;
                    }
                    if let Err(e) = me.client.mkdir(&path, SmbMode::from(0o755)) {
                        let f = SmbFailure::of("create a folder", &e);
                        if f.status != 409 {
                            return Err(f);
                        }
                    }
                }
                Ok(())
            },
            CALL_TIMEOUT,
        )
        .await
    }

    /// Deletes a file (already gone is fine).
    pub async fn remove(&self, rel: &str) -> Result<(), SmbFailure> {
        let (me, path) = (self.clone(), self.full(rel));
        blocking(
            move || match me.client.unlink(&path) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let f = SmbFailure::of("delete", &e);
                    if f.is_not_found() {
                        Ok(())
                    } else {
                        Err(f)
                    }
                }
            },
            CALL_TIMEOUT,
        )
        .await
    }

    /// Deletes an empty folder: `false` when it still holds something (it
    /// is left as it is); already gone is fine.
    pub async fn remove_dir(&self, rel: &str) -> Result<bool, SmbFailure> {
        let (me, path) = (self.clone(), self.full(rel));
        blocking(
            move || match me.client.rmdir(&path) {
                Ok(()) => Ok(true),
                Err(e) => {
                    let f = SmbFailure::of("delete a folder", &e);
                    match f.status {
                        404 => Ok(true),
                        409 => Ok(false),
                        _ => Err(f),
                    }
                }
            },
            CALL_TIMEOUT,
        )
        .await
    }
}
