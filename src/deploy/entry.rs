//! Decides whether a bundle entry may be extracted: its path must stay inside the release
//! directory, a symlink must point inside it, and the bundle as a whole must stay within the
//! configured count, size and compression-ratio bounds. Pure.

use std::path::{Component, Path, PathBuf};

use crate::config::BundleLimits;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("entry {0:?} has an absolute path")]
    Absolute(String),
    #[error("entry {0:?} escapes the release directory ('..')")]
    Escapes(String),
    #[error("entry {0:?} has an empty or invalid name")]
    Invalid(String),
    #[error("symlink {entry:?} points outside the release directory (to {target:?})")]
    SymlinkEscapes { entry: String, target: String },
    #[error("bundle has more than {limit} entries (bundle.max_entries)")]
    TooManyEntries { limit: u64 },
    #[error(
        "bundle unpacks to more than {limit_mib} MiB (bundle.max_unpacked_mib); entry {entry:?} goes over"
    )]
    TooLarge { entry: String, limit_mib: u64 },
    #[error(
        "entry {entry:?} has a compression ratio of {ratio}:1, above bundle.max_compression_ratio ({limit}:1)"
    )]
    Ratio {
        entry: String,
        ratio: u64,
        limit: u64,
    },
}

/// The relative path an entry is extracted to, or why it must not be.
pub fn entry_path(name: &str) -> Result<PathBuf, EntryProblem> {
    // Zips made on Windows sometimes use '\' as separator.
    let normalised = name.replace('\\', "/");
    if normalised.contains('\0') {
        return Err(EntryProblem::Invalid(name.to_string()));
    }
    if normalised.starts_with('/') || has_drive_letter(&normalised) {
        return Err(EntryProblem::Absolute(name.to_string()));
    }
    let mut path = PathBuf::new();
    for component in Path::new(&normalised).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(EntryProblem::Escapes(name.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(EntryProblem::Absolute(name.to_string()));
            }
        }
    }
    if path.as_os_str().is_empty() {
        return Err(EntryProblem::Invalid(name.to_string()));
    }
    Ok(path)
}

/// Checks that a symlink at `entry` (relative to the release) pointing at `target` resolves
/// inside the release, lexically (the link is created before anything it points to).
pub fn check_symlink(entry: &Path, target: &str) -> Result<(), EntryProblem> {
    let escapes = || EntryProblem::SymlinkEscapes {
        entry: entry.display().to_string(),
        target: target.to_string(),
    };
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return Err(escapes());
    }
    let mut depth: usize = entry.parent().map_or(0, |p| p.components().count());
    for component in Path::new(target).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(escapes)?,
            Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    Ok(())
}

fn has_drive_letter(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Running totals while a bundle is checked or extracted.
#[derive(Debug, Clone)]
pub struct Budget {
    limits: BundleLimits,
    entries: u64,
    unpacked: u64,
}

/// Below this size an entry's ratio says nothing (a small file of zeros compresses 100:1).
const RATIO_MIN_BYTES: u64 = 1 << 20;

impl Budget {
    pub fn new(limits: BundleLimits) -> Self {
        Self {
            limits,
            entries: 0,
            unpacked: 0,
        }
    }

    /// Accounts one entry with its declared sizes.
    pub fn admit(
        &mut self,
        name: &str,
        unpacked: u64,
        compressed: u64,
    ) -> Result<(), EntryProblem> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(EntryProblem::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        self.add_bytes(name, unpacked)?;
        if unpacked >= RATIO_MIN_BYTES {
            let ratio = unpacked / compressed.max(1);
            if ratio > self.limits.max_compression_ratio {
                return Err(EntryProblem::Ratio {
                    entry: name.to_string(),
                    ratio,
                    limit: self.limits.max_compression_ratio,
                });
            }
        }
        Ok(())
    }

    /// Accounts bytes actually written (a lying header cannot sneak past the declared size).
    pub fn add_bytes(&mut self, name: &str, bytes: u64) -> Result<(), EntryProblem> {
        self.unpacked = self.unpacked.saturating_add(bytes);
        if self.unpacked > self.limits.max_unpacked_bytes {
            return Err(EntryProblem::TooLarge {
                entry: name.to_string(),
                limit_mib: self.limits.max_unpacked_bytes >> 20,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BundleLimits {
        BundleLimits {
            max_entries: 3,
            max_unpacked_bytes: 10 << 20,
            max_compression_ratio: 100,
            max_download_bytes: 1 << 30,
        }
    }

    #[test]
    fn safe_paths_are_kept() {
        assert_eq!(
            entry_path("app/main.py").expect("ok"),
            Path::new("app/main.py")
        );
        assert_eq!(entry_path("./a/./b").expect("ok"), Path::new("a/b"));
        assert_eq!(
            entry_path("dir\\file.txt").expect("ok"),
            Path::new("dir/file.txt")
        );
    }

    #[test]
    fn hostile_paths_are_rejected_with_their_reason() {
        assert_eq!(
            entry_path("../evil"),
            Err(EntryProblem::Escapes("../evil".into()))
        );
        assert_eq!(
            entry_path("a/../../evil"),
            Err(EntryProblem::Escapes("a/../../evil".into()))
        );
        assert_eq!(
            entry_path("/etc/passwd"),
            Err(EntryProblem::Absolute("/etc/passwd".into()))
        );
        assert_eq!(
            entry_path("C:/x"),
            Err(EntryProblem::Absolute("C:/x".into()))
        );
        assert_eq!(
            entry_path("..\\evil"),
            Err(EntryProblem::Escapes("..\\evil".into()))
        );
        assert!(matches!(entry_path("./"), Err(EntryProblem::Invalid(_))));
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(check_symlink(Path::new("a/link"), "../b").is_ok());
        assert!(check_symlink(Path::new("a/link"), "x/../../b").is_ok());
        assert!(check_symlink(Path::new("link"), "../b").is_err());
        assert!(check_symlink(Path::new("a/link"), "../../b").is_err());
        assert!(check_symlink(Path::new("link"), "/etc").is_err());
    }

    #[test]
    fn budget_counts_entries_bytes_and_ratio() {
        let mut budget = Budget::new(limits());
        assert!(budget.admit("a", 10, 5).is_ok());
        assert!(budget.admit("b", 2 << 20, 1 << 20).is_ok());
        assert!(matches!(
            budget.admit("c", 9 << 20, 1 << 20),
            Err(EntryProblem::TooLarge { .. })
        ));
        assert!(matches!(
            budget.admit("d", 1, 1),
            Err(EntryProblem::TooManyEntries { limit: 3 })
        ));
        let mut budget = Budget::new(limits());
        assert!(matches!(
            budget.admit("bomb", 5 << 20, 1000),
            Err(EntryProblem::Ratio { .. })
        ));
    }
}
