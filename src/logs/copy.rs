//! Copying a log's head for a copytruncate (blocking; on the logs thread), and hashing ranges
//! of it to tell later whether a collapse happened.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::Digest;

pub fn hash_range(file: &File, offset: u64, len: u64) -> io::Result<String> {
    let mut buffer = vec![0u8; len as usize];
    let read = rustix::io::pread(file, &mut buffer, offset).map_err(io::Error::from)?;
    buffer.truncate(read);
    Ok(crate::deploy::hex(&sha2::Sha256::digest(&buffer)))
}

pub fn copy_head(file: &File, len: u64, raw: &Path) -> io::Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(raw)?;
    // A clone shares the offset: seek it explicitly.
    let mut positioned = file.try_clone()?;
    io::Seek::seek(&mut positioned, io::SeekFrom::Start(0))?;
    let mut reader = positioned.take(len);
    let copied = io::copy(&mut reader, &mut out)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "log shrank during rotation",
        ));
    }
    out.sync_all()
}

pub fn append_rest(file: &File, from: u64, raw: &Path) -> io::Result<()> {
    use std::io::Seek;
    let mut input = file.try_clone()?;
    input.seek(io::SeekFrom::Start(from))?;
    let mut out = OpenOptions::new().append(true).open(raw)?;
    io::copy(&mut input, &mut out)?;
    out.sync_all()
}
