//! Unpacks a bundle (a zip file or a directory) into a fresh release directory, enforcing
//! `entry.rs`'s rules. Symlinks are created last, in directories that contain no symlink,
//! and then resolved for real: a chain of links cannot lead out of the release.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::entry::{Budget, EntryProblem, check_symlink, entry_path};
use crate::config::BundleLimits;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a readable zip file: {message}")]
    Zip { path: PathBuf, message: String },
    #[error("bundle rejected: {0}")]
    Entry(#[from] EntryProblem),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// File modes from a bundle lose setuid, setgid and sticky bits.
fn sanitize_mode(mode: u32, fallback: u32) -> u32 {
    match mode & 0o777 {
        0 => fallback,
        bits => bits | 0o400,
    }
}

/// Extracts `zip_path` into `target` (which must not exist yet).
pub fn extract_zip(
    zip_path: &Path,
    target: &Path,
    limits: BundleLimits,
) -> Result<(), BundleError> {
    let zip_error = |error: zip::result::ZipError| BundleError::Zip {
        path: zip_path.to_path_buf(),
        message: error.to_string(),
    };
    let file = File::open(zip_path).map_err(io_at(zip_path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    // First pass over the central directory only: reject before writing anything.
    let mut budget = Budget::new(limits);
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(zip_error)?;
        let name = entry.name().map_err(zip_error)?.into_owned();
        entry_path(&name)?;
        budget.admit(&name, entry.size(), entry.compressed_size())?;
    }
    fs::create_dir_all(target).map_err(io_at(target))?;
    let mut written = Budget::new(limits);
    let mut links = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(zip_error)?;
        let name = entry.name().map_err(zip_error)?.into_owned();
        let relative = entry_path(&name)?;
        let path = target.join(&relative);
        if entry.is_symlink() {
            let mut link_target = String::new();
            (&mut entry)
                .take(4096)
                .read_to_string(&mut link_target)
                .map_err(io_at(&path))?;
            check_symlink(&relative, &link_target)?;
            links.push((relative, link_target));
        } else if entry.is_dir() {
            fs::create_dir_all(&path).map_err(io_at(&path))?;
        } else {
            let mode = sanitize_mode(entry.unix_mode().unwrap_or(0o644), 0o644);
            write_file(&path, mode, &mut entry, &name, &mut written)?;
        }
    }
    create_links(target, &links)
}

fn write_file(
    path: &Path,
    mode: u32,
    source: &mut impl Read,
    name: &str,
    budget: &mut Budget,
) -> Result<(), BundleError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_at(path))?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = source.read(&mut buffer).map_err(io_at(path))?;
        if read == 0 {
            break;
        }
        budget.add_bytes(name, read as u64)?;
        out.write_all(&buffer[..read]).map_err(io_at(path))?;
    }
    out.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_at(path))
}

fn create_links(target: &Path, links: &[(PathBuf, String)]) -> Result<(), BundleError> {
    let root = fs::canonicalize(target).map_err(io_at(target))?;
    for (relative, link_target) in links {
        let path = target.join(relative);
        if let Some(parent) = relative.parent() {
            if through_symlink(target, parent) {
                return Err(escaped(relative, link_target));
            }
            fs::create_dir_all(target.join(parent)).map_err(io_at(&path))?;
        }
        symlink(link_target, &path).map_err(io_at(&path))?;
    }
    for (relative, link_target) in links {
        // Dangling links are allowed (build steps may create their targets); resolvable ones
        // must land inside the release.
        if let Ok(resolved) = fs::canonicalize(target.join(relative))
            && !resolved.starts_with(&root)
        {
            return Err(escaped(relative, link_target));
        }
    }
    Ok(())
}

fn escaped(relative: &Path, link_target: &str) -> BundleError {
    BundleError::Entry(EntryProblem::SymlinkEscapes {
        entry: relative.display().to_string(),
        target: link_target.to_string(),
    })
}

fn through_symlink(root: &Path, relative: &Path) -> bool {
    let mut path = root.to_path_buf();
    relative.components().any(|component| {
        path.push(component);
        fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// Copies the directory bundle `source` into `target` under the same rules and returns the
/// sha256 of its content (paths, modes, bytes), which identifies the bundle like a zip's hash.
pub fn copy_dir(source: &Path, target: &Path, limits: BundleLimits) -> Result<String, BundleError> {
    let mut files = Vec::new();
    collect(source, Path::new(""), &mut files)?;
    files.sort();
    let mut budget = Budget::new(limits);
    let mut hasher = Sha256::new();
    let mut links = Vec::new();
    fs::create_dir_all(target).map_err(io_at(target))?;
    for relative in files {
        let from = source.join(&relative);
        let name = relative.display().to_string();
        let meta = fs::symlink_metadata(&from).map_err(io_at(&from))?;
        budget.admit(&name, meta.len(), meta.len())?;
        hasher.update(name.as_bytes());
        hasher.update([0]);
        let to = target.join(&relative);
        if meta.file_type().is_symlink() {
            let link_target = fs::read_link(&from)
                .map_err(io_at(&from))?
                .display()
                .to_string();
            check_symlink(&relative, &link_target)?;
            hasher.update(b"link:");
            hasher.update(link_target.as_bytes());
            links.push((relative, link_target));
        } else if meta.is_dir() {
            fs::create_dir_all(&to).map_err(io_at(&to))?;
        } else {
            let mode = sanitize_mode(meta.permissions().mode(), 0o644);
            hasher.update(mode.to_le_bytes());
            let mut reader = HashingReader {
                inner: File::open(&from).map_err(io_at(&from))?,
                hasher: &mut hasher,
            };
            write_file(&to, mode, &mut reader, &name, &mut Budget::new(limits))?;
        }
    }
    create_links(target, &links)?;
    Ok(hex(&hasher.finalize()))
}

fn collect(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<(), BundleError> {
    let dir = root.join(relative);
    for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
        let entry = entry.map_err(io_at(&dir))?;
        let child = relative.join(entry.file_name());
        let file_type = entry.file_type().map_err(io_at(&dir))?;
        out.push(child.clone());
        if file_type.is_dir() {
            collect(root, &child, out)?;
        }
    }
    Ok(())
}

struct HashingReader<'h, R> {
    inner: R,
    hasher: &'h mut Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
