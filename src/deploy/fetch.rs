//! Brings a bundle onto local disk before anything that serves is touched: a local zip is
//! copied into the downloads directory while its sha256 is computed (so it cannot change
//! between the check and the extraction); a local directory is used in place.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::extract::hex;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bundle {0} does not exist")]
    Missing(String),
    #[error("bundle source {0:?}: scheme not supported (use a path, file://, s3:// or https://)")]
    Scheme(String),
    #[error("bundle {bundle}: {error}")]
    Io { bundle: String, error: io::Error },
    #[error("bundle {bundle} is larger than bundle.max_download_mib ({limit_mib} MiB)")]
    TooLarge { bundle: String, limit_mib: u64 },
    #[error("sha256 mismatch for {bundle}: expected {expected}, got {actual}")]
    Checksum {
        bundle: String,
        expected: String,
        actual: String,
    },
}

/// A bundle on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalBundle {
    Zip { path: PathBuf, sha256: String },
    Dir { path: PathBuf },
}

/// Resolves `source` to a local path for the schemes handled without network.
pub fn local_path(source: &str) -> Result<Option<PathBuf>, FetchError> {
    if let Some(rest) = source.strip_prefix("file://") {
        return Ok(Some(PathBuf::from(rest)));
    }
    if source.contains("://") {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(source)))
}

/// Fetches a local source into `download_to` (zips) or leaves it in place (directories).
pub fn fetch_local(
    source: &str,
    path: &Path,
    download_to: &Path,
    max_bytes: u64,
) -> Result<LocalBundle, FetchError> {
    let io = |error| FetchError::Io {
        bundle: source.to_string(),
        error,
    };
    let meta =
        std::fs::metadata(path).map_err(|_| FetchError::Missing(path.display().to_string()))?;
    if meta.is_dir() {
        return Ok(LocalBundle::Dir {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > max_bytes {
        return Err(FetchError::TooLarge {
            bundle: source.to_string(),
            limit_mib: max_bytes >> 20,
        });
    }
    if let Some(parent) = download_to.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut input = File::open(path).map_err(io)?;
    let mut output = File::create(download_to).map_err(io)?;
    let sha256 = copy_hashing(&mut input, &mut output).map_err(io)?;
    output.sync_all().map_err(io)?;
    Ok(LocalBundle::Zip {
        path: download_to.to_path_buf(),
        sha256,
    })
}

/// Copies `input` to `output` and returns the sha256 of what went through.
pub fn copy_hashing(input: &mut impl Read, output: &mut impl Write) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = input.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        output.write_all(&buffer[..read])?;
    }
    Ok(hex(&hasher.finalize()))
}

/// Compares a computed digest with the expected one (case-insensitive).
pub fn verify(source: &str, expected: Option<&str>, actual: &str) -> Result<(), FetchError> {
    match expected {
        Some(expected) if !expected.eq_ignore_ascii_case(actual) => Err(FetchError::Checksum {
            bundle: source.to_string(),
            expected: expected.to_ascii_lowercase(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}
