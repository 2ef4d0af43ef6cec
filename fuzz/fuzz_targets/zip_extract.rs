//! Bundle extraction (`deploy/extract.rs`): the archive comes from memory, the files go to a
//! scratch directory, through the agent's own checks and writes. Whatever the archive, and
//! whether extraction succeeds or fails half-way, nothing lands outside the release, the
//! bounds hold and no written file keeps setuid/setgid/sticky or world-write bits.
#![no_main]

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use hostmanager::config::BundleLimits;
use hostmanager::deploy::extract_zip_from;
use libfuzzer_sys::fuzz_target;

/// Small bounds so that a zip bomb is refused within a few writes: a few dozen entries and
/// 1 MiB (the ratio bound applies above 1 MiB per entry, so it is reached too).
const LIMITS: BundleLimits = BundleLimits {
    max_entries: 32,
    max_unpacked_bytes: 1 << 20,
    max_compression_ratio: 100,
    max_download_bytes: 1 << 20,
};

/// One scratch directory per process, emptied after every input.
static SCRATCH: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("hostmanager-fuzz-zip-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir.canonicalize().expect("canonical scratch dir")
});

/// Files and links written (directories are implied by nested entries), and their bytes.
struct Walk {
    entries: u64,
    bytes: u64,
}

fn walk(dir: &Path, release: &Path, walk_totals: &mut Walk) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).expect("metadata");
        if !meta.is_dir() {
            walk_totals.entries += 1;
        }
        if meta.file_type().is_symlink() {
            // A link that resolves must resolve inside the release (dangling ones may be
            // completed by build steps; extract.rs checks them lexically).
            if let Ok(real) = fs::canonicalize(&path) {
                assert!(real.starts_with(release), "{path:?} -> {real:?}");
            }
        } else if meta.is_dir() {
            walk(&path, release, walk_totals);
        } else {
            assert!(meta.is_file(), "{path:?} is neither file, dir nor link");
            let mode = meta.permissions().mode();
            assert_eq!(mode & 0o7002, 0, "{path:?} has mode {mode:o}");
            walk_totals.bytes += meta.len();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let scratch = &*SCRATCH;
    let release = scratch.join("release");
    let result = extract_zip_from(Cursor::new(data), Path::new("bundle.zip"), &release, LIMITS);
    // Nothing next to the release: no entry or link climbed out of it.
    for entry in fs::read_dir(scratch).expect("scratch") {
        let name = entry.expect("entry").file_name();
        assert_eq!(
            name, "release",
            "extraction wrote {name:?} outside the release"
        );
    }
    if release.exists() {
        let mut totals = Walk {
            entries: 0,
            bytes: 0,
        };
        walk(&release, &release, &mut totals);
        assert!(
            totals.bytes <= LIMITS.max_unpacked_bytes,
            "{} bytes written",
            totals.bytes
        );
        // Files and links only: directories for nested entries are not entries of the zip.
        assert!(
            totals.entries <= LIMITS.max_entries,
            "{} entries written",
            totals.entries
        );
        if let Err(error) = &result {
            assert!(!error.to_string().is_empty());
        }
        fs::remove_dir_all(&release).expect("clean scratch");
    }
});
