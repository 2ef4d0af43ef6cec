//! Object storage behind one trait: S3 (through aws-sdk-s3, any S3-compatible endpoint) and a
//! local directory (the embedded default, and what tests compare against). Bundles are fetched
//! and logs are published through it.

mod etag;
mod local;
mod multipart;
mod s3;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub use etag::file_etag;
pub use local::LocalStore;
pub use s3::{Multipart, S3Store};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store}: object {key} not found")]
    NotFound { store: String, key: String },
    #[error("{store}: object {key} is larger than {limit} bytes")]
    TooLarge {
        store: String,
        key: String,
        limit: u64,
    },
    #[error("{store}: {operation} {key}: {message}")]
    Remote {
        store: String,
        operation: &'static str,
        key: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether trying again later may succeed (network trouble, throttling, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Remote { .. } | Self::Io { .. })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Create only: never replace an existing object (S3 `If-None-Match: *`), so a retried
    /// upload of a deterministic key cannot duplicate or clobber.
    pub if_none_match: bool,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// `if_none_match` was set and the key existed already.
    AlreadyExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// S3's ETag without quotes (MD5 of the bytes, or of the part MD5s with `-N` for a
    /// multipart upload); what an upload is verified against. Not filled in by `list`.
    pub etag: Option<String>,
}

/// A download: its size and the sha256 of its bytes, computed while streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    pub sha256: String,
}

pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// `s3://bucket` or `file:///dir`, for messages.
    fn describe(&self) -> String;

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>>;

    /// Streams the object (optionally one version of it) to `path`; refuses more than `max_bytes`.
    fn get_to_file<'a>(
        &'a self,
        key: &'a str,
        version: Option<&'a str>,
        path: &'a Path,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Downloaded, StoreError>>;

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>, StoreError>>;

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Every object whose key starts with `prefix`, sorted by key.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>, StoreError>>;

    /// Aborts every unfinished multipart upload under `prefix` (left by a process that was
    /// killed mid-upload, so its parts are not kept and billed forever); how many.
    fn abort_unfinished<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        let _ = prefix;
        Box::pin(async { Ok(0) })
    }

    /// The part size `put_file` uses for a file of `size` bytes, `None` for a single PUT; tells
    /// how the ETag of the uploaded object is computed (`file_etag`).
    fn part_size_for(&self, size: u64) -> Option<u64> {
        let _ = size;
        None
    }
}

/// Hashes what passes through while writing it to a file (shared by both stores).
pub(crate) struct HashingFile {
    file: tokio::fs::File,
    hasher: sha2::Sha256,
    bytes: u64,
    limit: u64,
}

impl HashingFile {
    pub async fn create(path: &Path, limit: u64) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| StoreError::Io {
                    path: parent.into(),
                    source,
                })?;
        }
        let io = |source| StoreError::Io {
            path: path.into(),
            source,
        };
        // 0600: a downloaded bundle may hold what the app keeps from other local users.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(io)?;
        // The mode given to open() applies only to a new file; one left by a crash gets it too.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .await
            .map_err(io)?;
        Ok(Self {
            file,
            hasher: sha2::Digest::new(),
            bytes: 0,
            limit,
        })
    }

    /// Appends a chunk; `false` when the limit would be passed.
    pub async fn write(&mut self, chunk: &[u8], path: &Path) -> Result<bool, StoreError> {
        use tokio::io::AsyncWriteExt;
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            return Ok(false);
        }
        sha2::Digest::update(&mut self.hasher, chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|source| StoreError::Io {
                path: path.into(),
                source,
            })?;
        Ok(true)
    }

    pub async fn finish(mut self, path: &Path) -> Result<Downloaded, StoreError> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await.map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })?;
        self.file
            .sync_all()
            .await
            .map_err(|source| StoreError::Io {
                path: path.into(),
                source,
            })?;
        let sha256 = crate::deploy::hex(&sha2::Digest::finalize(self.hasher));
        Ok(Downloaded {
            bytes: self.bytes,
            sha256,
        })
    }
}
