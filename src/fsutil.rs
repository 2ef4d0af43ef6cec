//! Crash-safe file primitives shared by every module that persists state.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content:
/// write a temporary sibling, fsync it, rename it over, fsync the directory.
/// A failure (a full disk: ENOSPC) names the file and leaves the old content and no temporary
/// file behind.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path)?;
    let tmp = dir.join(format!(".{}.tmp{}", file_name(path), std::process::id()));
    let outcome = (|| {
        fs::create_dir_all(dir)?;
        {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            // The mode given to open() is masked by the umask; secrets must be exactly `mode`.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    outcome.map_err(|error| {
        let _ = fs::remove_file(&tmp);
        io::Error::new(error.kind(), format!("writing {}: {error}", path.display()))
    })
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T, mode: u32) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes, mode)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            )
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Points the symlink `link` at `target` atomically (new link beside it, then rename over).
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let dir = parent(link)?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.new{}", file_name(link), std::process::id()));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp)?;
    fs::rename(&tmp, link)?;
    File::open(dir)?.sync_all()
}

/// Creates (or truncates) `path` for writing, readable by its owner only: for files that hold
/// what the app's bundle holds (downloads). A file left by a crash gets the mode too.
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Opens a log file for appending, creating it (and its directory) when needed.
pub fn open_append(path: &Path) -> io::Result<File> {
    fs::create_dir_all(parent(path)?)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// The last `count` lines of a text file, joined with newlines ("" when unreadable). Reads
/// only the end of the file, so it is cheap on large logs.
pub fn tail_lines(path: &Path, count: usize) -> String {
    match File::open(path) {
        Ok(mut file) => tail_of(&mut file, count),
        Err(_) => String::new(),
    }
}

/// `tail_lines` of a file already open (e.g. opened without following links).
pub fn tail_of(file: &mut File, count: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 64 * 1024;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(WINDOW);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    // A window that starts mid-file starts mid-line: drop that partial first line.
    let complete = if start > 0 && lines.len() > 1 {
        &lines[1..]
    } else {
        &lines[..]
    };
    complete[complete.len().saturating_sub(count)..].join("\n")
}

/// Opens `path` for reading only if it is a regular file, never through a symlink in its last
/// component (`O_NOFOLLOW`) and never blocking on a FIFO (`O_NONBLOCK`): for what root reads
/// in a directory someone else may have written to.
pub fn open_regular_nofollow(path: &Path) -> io::Result<File> {
    use nix::fcntl::OFlag;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// The bytes of the regular file `path`, at most `max` (more is an error); follows no link.
pub fn read_regular_nofollow(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular_nofollow(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Copies the regular file `from` to `to` (replaced if it exists) with exactly `mode`; follows
/// no symlink at either end.
pub fn copy_regular_nofollow(from: &Path, to: &Path, mode: u32) -> io::Result<()> {
    let mut source = open_regular_nofollow(from)?;
    let mut target = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(to)?;
    target.set_permissions(fs::Permissions::from_mode(mode))?;
    io::copy(&mut source, &mut target)?;
    Ok(())
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent", path.display()),
        )
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_even_when_a_looser_one_was_left_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("fresh.zip");
        let left = dir.path().join("left.zip");
        fs::write(&left, b"old").expect("write");
        fs::set_permissions(&left, fs::Permissions::from_mode(0o644)).expect("chmod");
        for path in [&fresh, &left] {
            let mut file = create_private(path).expect("create");
            file.write_all(b"new").expect("write");
            let mode = fs::metadata(path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            assert_eq!(fs::read(path).expect("read"), b"new");
        }
    }

    #[test]
    fn regular_file_copies_refuse_symlinks_and_fifos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        fs::write(&file, "content").expect("write");
        let link = dir.path().join("link");
        symlink(&file, &link).expect("symlink");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let copy = dir.path().join("copy");
        copy_regular_nofollow(&file, &copy, 0o640).expect("a regular file copies");
        assert_eq!(fs::read_to_string(&copy).expect("read"), "content");
        assert_eq!(
            fs::metadata(&copy).expect("meta").permissions().mode() & 0o7777,
            0o640
        );
        let through_link = copy_regular_nofollow(&link, &dir.path().join("x"), 0o644);
        assert_eq!(
            through_link
                .expect_err("a symlink is refused")
                .raw_os_error(),
            Some(nix::libc::ELOOP)
        );
        let from_fifo = copy_regular_nofollow(&fifo, &dir.path().join("y"), 0o644);
        assert_eq!(
            from_fifo.expect_err("a FIFO is refused").kind(),
            io::ErrorKind::InvalidInput
        );
        let onto_link = copy_regular_nofollow(&file, &link, 0o644);
        assert!(onto_link.is_err(), "the target may not be a symlink either");
        assert_eq!(fs::read_to_string(&file).expect("read"), "content");
    }

    #[test]
    fn atomic_write_sets_the_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/secret.json");
        write_atomic(&path, b"one", 0o600).expect("write");
        write_atomic(&path, b"two", 0o600).expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("sub")).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let text: String = (1..=100).map(|n| format!("line {n}\n")).collect();
        fs::write(&path, text).expect("write");
        assert_eq!(tail_lines(&path, 2), "line 99\nline 100");
        assert_eq!(tail_lines(&dir.path().join("missing"), 2), "");
    }

    #[test]
    fn symlink_is_replaced_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("current");
        replace_symlink(Path::new("releases/1"), &link).expect("first");
        replace_symlink(Path::new("releases/2"), &link).expect("second");
        assert_eq!(
            fs::read_link(&link).expect("readlink"),
            Path::new("releases/2")
        );
    }
}
