//! Brings a bundle onto local disk before anything that serves is touched, computing its
//! sha256 while it streams: a local zip is copied (so it cannot change between the check and
//! the extraction), `s3://bucket/key[?versionId=]` is read through aws-sdk-s3, `https://` is
//! streamed with reqwest. A local directory is used in place (hashed while it is copied).
//! Network sources are retried with capped backoff; every source has a size limit.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::extract::hex;
use crate::secret::shown_source;

/// Every message names the bundle as `shown_source` shows it: without a presigned URL's
/// signature, since these messages reach records, events and the agent's log.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bundle {} does not exist", shown_source(.0))]
    Missing(String),
    #[error("bundle source {:?} is not a path, file://, s3://bucket/key or https:// URL", shown_source(.0))]
    Scheme(String),
    #[error("bundle {}: {error}", shown_source(.bundle))]
    Io { bundle: String, error: io::Error },
    #[error("bundle {}: {message}", shown_source(.bundle))]
    Remote {
        bundle: String,
        message: String,
        retryable: bool,
    },
    #[error("bundle {} is larger than bundle.max_download_mib ({limit_mib} MiB)", shown_source(.bundle))]
    TooLarge { bundle: String, limit_mib: u64 },
    #[error("sha256 mismatch for {}: expected {expected}, got {actual}", shown_source(.bundle))]
    Checksum {
        bundle: String,
        expected: String,
        actual: String,
    },
}

impl FetchError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Remote {
                retryable: true,
                ..
            }
        )
    }
}

/// Where a bundle comes from. Pure parse of the request's `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    S3 {
        bucket: String,
        key: String,
        version: Option<String>,
    },
    Http(String),
}

pub fn parse_source(text: &str) -> Result<Source, FetchError> {
    if let Some(path) = text.strip_prefix("file://") {
        return Ok(Source::Local(PathBuf::from(path)));
    }
    if let Some(rest) = text.strip_prefix("s3://") {
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, key) = location
            .split_once('/')
            .ok_or_else(|| FetchError::Scheme(text.to_string()))?;
        if bucket.is_empty() || key.is_empty() {
            return Err(FetchError::Scheme(text.to_string()));
        }
        let version = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("versionId="))
            .map(str::to_string);
        return Ok(Source::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version,
        });
    }
    if text.starts_with("https://") || text.starts_with("http://") {
        return Ok(Source::Http(text.to_string()));
    }
    if text.contains("://") {
        return Err(FetchError::Scheme(text.to_string()));
    }
    Ok(Source::Local(PathBuf::from(text)))
}

/// A bundle on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalBundle {
    Zip { path: PathBuf, sha256: String },
    Dir { path: PathBuf },
}

/// Copies a local zip into `download_to` (or takes a directory in place).
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
    // A FIFO would hang the copy, a device never end: bundles are regular files.
    if !meta.is_file() {
        return Err(FetchError::Io {
            bundle: source.to_string(),
            error: io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or a directory",
            ),
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
    // 0600: the bundle may hold what the app keeps from other local users.
    let mut output = crate::fsutil::create_private(download_to).map_err(io)?;
    // The file may grow after the size check: copy one byte more than allowed at most.
    let sha256 = copy_hashing(&mut (&mut input).take(max_bytes + 1), &mut output).map_err(io)?;
    if output.metadata().map_err(io)?.len() > max_bytes {
        return Err(FetchError::TooLarge {
            bundle: source.to_string(),
            limit_mib: max_bytes >> 20,
        });
    }
    output.sync_all().map_err(io)?;
    Ok(LocalBundle::Zip {
        path: download_to.to_path_buf(),
        sha256,
    })
}

/// Streams an https:// bundle to `download_to`.
pub async fn fetch_http(
    client: &reqwest::Client,
    url: &str,
    download_to: &Path,
    max_bytes: u64,
) -> Result<LocalBundle, FetchError> {
    let remote = |message: String, retryable: bool| FetchError::Remote {
        bundle: url.to_string(),
        message,
        retryable,
    };
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|error| remote(describe(error), true))?;
    let status = response.status();
    if !status.is_success() {
        return Err(remote(
            format!("HTTP {status}"),
            status.is_server_error() || status.as_u16() == 429,
        ));
    }
    if response
        .content_length()
        .is_some_and(|length| length > max_bytes)
    {
        return Err(FetchError::TooLarge {
            bundle: url.to_string(),
            limit_mib: max_bytes >> 20,
        });
    }
    let io = |error| FetchError::Io {
        bundle: url.to_string(),
        error,
    };
    if let Some(parent) = download_to.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // 0600: the bundle may hold what the app keeps from other local users.
    let mut output = crate::fsutil::create_private(download_to).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| remote(describe(error), true))?
    {
        total += chunk.len() as u64;
        if total > max_bytes {
            return Err(FetchError::TooLarge {
                bundle: url.to_string(),
                limit_mib: max_bytes >> 20,
            });
        }
        hasher.update(&chunk);
        output.write_all(&chunk).map_err(io)?;
    }
    output.sync_all().map_err(io)?;
    Ok(LocalBundle::Zip {
        path: download_to.to_path_buf(),
        sha256: hex(&hasher.finalize()),
    })
}

/// The error without the URL reqwest puts in it (the caller names the bundle, shown).
fn describe(error: reqwest::Error) -> String {
    crate::errors::chain(&error.without_url())
}

/// Runs `attempt` up to `tries` times while it fails with a retryable error, sleeping
/// 1 s, 2 s, 4 s … (capped at 10 s) in between.
pub async fn with_retries<T, F, Fut>(tries: u32, mut attempt: F) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, FetchError>>,
{
    let mut delay = Duration::from_secs(1);
    let mut left = tries.max(1);
    loop {
        match attempt().await {
            Err(error) if error.is_retryable() && left > 1 => {
                tracing::warn!(%error, "bundle download failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                left -= 1;
            }
            outcome => return outcome,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            parse_source("/a/b.zip").ok(),
            Some(Source::Local("/a/b.zip".into()))
        );
        assert_eq!(
            parse_source("file:///a/b.zip").ok(),
            Some(Source::Local("/a/b.zip".into()))
        );
        assert_eq!(
            parse_source("s3://bucket/dir/app.zip?versionId=v7").ok(),
            Some(Source::S3 {
                bucket: "bucket".into(),
                key: "dir/app.zip".into(),
                version: Some("v7".into())
            })
        );
        assert_eq!(
            parse_source("https://h/app.zip").ok(),
            Some(Source::Http("https://h/app.zip".into()))
        );
        for bad in ["s3://bucket", "s3:///key", "ftp://h/a.zip"] {
            assert!(
                matches!(parse_source(bad), Err(FetchError::Scheme(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_local_bundle_is_copied_readable_by_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("app.zip");
        std::fs::write(&bundle, b"zip bytes").expect("write");
        std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let download = dir.path().join("downloads/7.zip");
        let source = bundle.display().to_string();
        fetch_local(&source, &bundle, &download, 1 << 20).expect("copied");
        let mode = std::fs::metadata(&download)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn errors_name_a_presigned_bundle_without_its_signature() {
        let url = "https://b.s3.amazonaws.com/k.zip?X-Amz-Credential=AKIAX&X-Amz-Signature=f00d";
        let errors = [
            FetchError::Missing(url.into()),
            FetchError::Scheme(url.into()),
            FetchError::Io {
                bundle: url.into(),
                error: io::Error::other("disk full"),
            },
            FetchError::Remote {
                bundle: url.into(),
                message: "HTTP 403 Forbidden".into(),
                retryable: false,
            },
            FetchError::TooLarge {
                bundle: url.into(),
                limit_mib: 1,
            },
            verify(url, Some("00"), "11").expect_err("mismatch"),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.contains("b.s3.amazonaws.com/k.zip"), "{message}");
            assert!(
                !message.contains("f00d") && !message.contains("AKIAX"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn retries_stop_at_the_first_success_or_a_final_error() {
        let mut calls = 0;
        let outcome = with_retries(3, || {
            calls += 1;
            let result = if calls < 2 {
                Err(FetchError::Remote {
                    bundle: "b".into(),
                    message: "503".into(),
                    retryable: true,
                })
            } else {
                Ok(calls)
            };
            async move { result }
        });
        tokio::time::pause();
        assert_eq!(outcome.await.expect("second try works"), 2);
        let mut final_calls = 0;
        let outcome: Result<(), FetchError> = with_retries(3, || {
            final_calls += 1;
            async { Err(FetchError::Missing("x".into())) }
        })
        .await;
        assert!(outcome.is_err());
        assert_eq!(final_calls, 1, "a final error is not retried");
    }
}
