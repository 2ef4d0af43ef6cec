//! Finishing a rotation: gzip a staged file to its final name, and telling whether any other
//! process still holds a renamed log open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::rotate::Staged;

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
