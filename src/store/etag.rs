//! The ETag S3 gives an object, computed from a local file: the MD5 of the bytes for a single
//! PUT, or the MD5 of the concatenated part MD5s followed by `-<parts>` for a multipart upload.
//! Comparing it with the stored object's ETag confirms an upload byte for byte.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use md5::{Digest, Md5};

/// Blocking: reads the whole file.
pub fn file_etag(path: &Path, part_size: Option<u64>) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    let Some(part_size) = part_size.filter(|size| *size > 0) else {
        let mut md5 = Md5::new();
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                return Ok(crate::deploy::hex(&md5.finalize()));
            }
            md5.update(&buffer[..read]);
        }
    };
    let mut parts = Md5::new();
    let mut count = 0u64;
    loop {
        let mut part = Md5::new();
        let mut left = part_size;
        let mut seen = 0u64;
        while left > 0 {
            let want = buffer
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let read = file.read(&mut buffer[..want])?;
            if read == 0 {
                break;
            }
            part.update(&buffer[..read]);
            left -= read as u64;
            seen += read as u64;
        }
        if seen == 0 && count > 0 {
            break;
        }
        parts.update(part.finalize());
        count += 1;
        if left > 0 {
            break;
        }
    }
    Ok(format!("{}-{count}", crate::deploy::hex(&parts.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multipart_etags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").expect("write");
        assert_eq!(
            file_etag(&path, None).expect("etag"),
            "5d41402abc4b2a76b9719d911017c592"
        );
        // Two parts: "hel" and "lo".
        let expected = {
            let mut parts = Md5::new();
            parts.update(Md5::digest(b"hel"));
            parts.update(Md5::digest(b"lo"));
            format!("{}-2", crate::deploy::hex(&parts.finalize()))
        };
        assert_eq!(file_etag(&path, Some(3)).expect("etag"), expected);
        // Exactly one part's worth is still one part.
        let one = file_etag(&path, Some(5)).expect("etag");
        assert!(one.ends_with("-1"), "{one}");
    }
}
