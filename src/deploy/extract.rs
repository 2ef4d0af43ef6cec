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

/// File modes from a bundle lose setuid, setgid, sticky and world-write bits.
fn sanitize_mode(mode: u32, fallback: u32) -> u32 {
    // Not writable by other users either, whatever the zip says.
    match mode & 0o775 {
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
    let file = File::open(zip_path).map_err(io_at(zip_path))?;
    extract_zip_from(file, zip_path, target, limits)
}

/// `extract_zip` on an open archive (`zip_path` names it in errors): the fuzz target feeds
/// archives from memory through the same checks and writes (docs/fuzzing.md).
pub fn extract_zip_from(
    archive: impl Read + io::Seek,
    zip_path: &Path,
    target: &Path,
    limits: BundleLimits,
) -> Result<(), BundleError> {
    let zip_error = |error: zip::result::ZipError| BundleError::Zip {
        path: zip_path.to_path_buf(),
        message: error.to_string(),
    };
    let mut archive = zip::ZipArchive::new(archive).map_err(zip_error)?;
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
        // Dangling links are allowed (build steps may create their targets), but even then the
        // path they name must stay inside the release, through every link on the way.
        if !resolves_inside(&root, relative) {
            return Err(escaped(relative, link_target));
        }
    }
    Ok(())
}

/// Resolves `relative` under `root` the way the kernel would — following every symlink on the
/// way, the last component included — but carrying on lexically past components that do not
/// exist yet. False as soon as the path would leave `root`.
fn resolves_inside(root: &Path, relative: &Path) -> bool {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;
    enum Step {
        Name(OsString),
        Up,
    }
    fn steps(path: &Path) -> Option<Vec<Step>> {
        path.components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(Some(Step::Name(name.to_os_string()))),
                Component::ParentDir => Some(Some(Step::Up)),
                Component::CurDir => None,
                Component::RootDir | Component::Prefix(_) => Some(None),
            })
            .collect()
    }
    let Some(initial) = steps(relative) else {
        return false;
    };
    let mut pending: VecDeque<Step> = initial.into();
    let mut resolved = root.to_path_buf();
    let mut depth = 0usize;
    let mut hops = 0;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Up => {
                if depth == 0 {
                    return false;
                }
                resolved.pop();
                depth -= 1;
            }
            Step::Name(name) => {
                let candidate = resolved.join(&name);
                match fs::read_link(&candidate) {
                    Ok(target) => {
                        hops += 1;
                        // A loop, or a target outside any relative reach.
                        let Some(target_steps) = steps(&target).filter(|_| hops <= 40) else {
                            return false;
                        };
                        for step in target_steps.into_iter().rev() {
                            pending.push_front(step);
                        }
                    }
                    Err(_) => {
                        resolved = candidate;
                        depth += 1;
                    }
                }
            }
        }
    }
    true
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
        } else if !meta.is_file() {
            // FIFOs, sockets and devices have no place in a release (a FIFO would hang the copy).
            return Err(BundleError::Io {
                path: from,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file, a directory or a symlink",
                ),
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn release_with(links: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let release = dir.path().join("release");
        fs::create_dir_all(release.join("a")).expect("mkdir");
        for (link, target) in links {
            symlink(target, release.join(link)).expect("symlink");
        }
        let root = fs::canonicalize(&release).expect("canonical");
        (dir, root)
    }

    #[test]
    fn chains_of_links_that_climb_out_are_caught_even_when_dangling() {
        let (_dir, root) = release_with(&[("a/up", ".."), ("x", "a/up/a/up/../../../etc/none")]);
        assert!(
            resolves_inside(&root, Path::new("a/up")),
            "a/up is the release itself"
        );
        assert!(
            !resolves_inside(&root, Path::new("x")),
            "x climbs out through a/up"
        );
        let (_dir, root) = release_with(&[("s", "."), ("l", "s/..")]);
        assert!(!resolves_inside(&root, Path::new("l")));
    }

    #[test]
    fn links_inside_and_loops() {
        let (_dir, root) = release_with(&[
            ("cur", "a"),
            ("dangling", "a/later/file"),
            ("loop1", "loop2"),
            ("loop2", "loop1"),
        ]);
        assert!(resolves_inside(&root, Path::new("cur")));
        assert!(
            resolves_inside(&root, Path::new("dangling")),
            "a target built later is fine"
        );
        assert!(
            !resolves_inside(&root, Path::new("loop1")),
            "a loop is rejected"
        );
    }
}
