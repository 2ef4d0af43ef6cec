//! Finishing a rotation: gzip a staged file to its final name, and telling whether any other
//! process still holds a renamed log open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

/// A rotated log waiting to be compressed.
#[derive(Debug, Clone)]
pub struct Staged {
    pub raw: PathBuf,
    pub final_path: PathBuf,
    pub source: PathBuf,
    /// Renamed file still possibly held by writers: (device, inode) and when a writer that
    /// still holds it is reported (it is compressed only once nobody holds it).
    pub wait_for: Option<(u64, u64, Instant)>,
    pub reported: bool,
    /// When to look again whether a writer still holds it (a `/proc` scan: backed off).
    pub next_check: Instant,
    pub check_every: Duration,
}

/// First wait before looking whether a renamed file is still held (nginx reopens in ms).
pub const FIRST_CHECK: Duration = Duration::from_millis(100);

impl Staged {
    pub fn new(
        raw: &Path,
        final_path: &Path,
        source: &Path,
        wait_for: Option<(u64, u64, Instant)>,
    ) -> Self {
        Self {
            raw: raw.to_path_buf(),
            final_path: final_path.to_path_buf(),
            source: source.to_path_buf(),
            wait_for,
            reported: false,
            next_check: Instant::now() + FIRST_CHECK,
            check_every: FIRST_CHECK,
        }
    }
}

/// Compresses a staged file to its final name (blocking): `.part`, fsync, rename, fsync the
/// directory, then remove the `.raw`. Returns the compressed size.
pub fn compress(staged: &Staged) -> io::Result<u64> {
    let dir = staged.final_path.parent().unwrap_or(Path::new("."));
    let name = staged
        .final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = dir.join(format!(".{name}.part"));
    // Staged by the agent in its own directory; still, never read through a link.
    let input = super::open::open_staged(&staged.raw)?;
    gzip_into(input, &part)?;
    fs::rename(&part, &staged.final_path)?;
    File::open(dir)?.sync_all()?;
    fs::remove_file(&staged.raw)?;
    Ok(fs::metadata(&staged.final_path)?.len())
}

/// gzip (level 6, like `gzip`) of `input` into `output`, fsynced.
pub fn gzip_file(input: &Path, output: &Path) -> io::Result<()> {
    gzip_into(File::open(input)?, output)
}

fn gzip_into(mut reader: File, output: &Path) -> io::Result<()> {
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(output)?;
    let mut encoder = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(1 << 20, out),
        flate2::Compression::new(6),
    );
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        encoder.write_all(&buffer[..read])?;
    }
    let file = encoder
        .finish()?
        .into_inner()
        .map_err(|error| error.into_error())?;
    file.sync_all()
}

/// Whether any other process still has `(dev, ino)` open (scans /proc/*/fd).
pub fn held_by_others(dev: u64, ino: u64) -> bool {
    let own = std::process::id().to_string();
    let Ok(processes) = fs::read_dir("/proc") else {
        return false;
    };
    for process in processes.flatten() {
        let pid = process.file_name();
        let pid = pid.to_string_lossy();
        if pid == own || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(meta) = fs::metadata(fd.path())
                && meta.dev() == dev
                && meta.ino() == ino
            {
                return true;
            }
        }
    }
    false
}
