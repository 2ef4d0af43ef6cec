//! Can the app user reach its release? Every directory from `/` down to the release must be
//! searchable (`x`) by it, or its processes die with "Permission denied" on their first file.
//! The rule is the kernel's: the owner's bits when the user owns the directory, else the
//! group's when one of its groups does, else the others' (ACLs are not read). Pure core,
//! thin I/O shell.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One directory on the way to the release, as `stat` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirOwner {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Who the app runs as: its uid, its primary gid and its supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Identity {
    fn can_search(&self, dir: &DirOwner) -> bool {
        if self.uid == 0 {
            return true;
        }
        let bit = if dir.uid == self.uid {
            0o100
        } else if dir.gid == self.gid || self.groups.contains(&dir.gid) {
            0o010
        } else {
            0o001
        };
        dir.mode & bit != 0
    }
}

/// The first directory of `chain` (ordered from `/` down) that `who` cannot search.
pub fn first_unreachable<'a>(chain: &'a [DirOwner], who: &Identity) -> Option<&'a DirOwner> {
    chain.iter().find(|dir| !who.can_search(dir))
}

/// What an operator reads when the check fails.
pub fn describe(dir: &DirOwner, user: &str, who: &Identity, release: &Path) -> String {
    let owner = |uid: u32| {
        nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map_or(uid.to_string(), |u| u.name)
    };
    let group = |gid: u32| {
        nix::unistd::Group::from_gid(gid.into())
            .ok()
            .flatten()
            .map_or(gid.to_string(), |g| g.name)
    };
    format!(
        "the app user {user} (uid {}) cannot reach its release {}: directory {} is mode {:04o}, owner {}, group {}, and gives it no search (x) permission; make it searchable by {user} (e.g. chmod o+x {})",
        who.uid,
        release.display(),
        dir.path.display(),
        dir.mode & 0o7777,
        owner(dir.uid),
        group(dir.gid),
        dir.path.display()
    )
}

/// `release` and each of its ancestors, from `/` down, as `stat` sees them (symlinks in the
/// path resolved first: the kernel checks the directories they lead to).
pub fn chain(release: &Path) -> std::io::Result<Vec<DirOwner>> {
    let real = std::fs::canonicalize(release)?;
    let mut dirs: Vec<&Path> = real.ancestors().collect();
    dirs.reverse();
    dirs.into_iter()
        .map(|dir| {
            let meta = std::fs::metadata(dir)?;
            Ok(DirOwner {
                path: dir.to_path_buf(),
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &str, uid: u32, gid: u32, mode: u32) -> DirOwner {
        DirOwner {
            path: path.into(),
            uid,
            gid,
            mode,
        }
    }

    const APP: Identity = Identity {
        uid: 900,
        gid: 900,
        groups: Vec::new(),
    };

    #[test]
    fn a_world_searchable_path_is_reachable() {
        let chain = [
            dir("/", 0, 0, 0o755),
            dir("/var", 0, 0, 0o711),
            dir("/var/app/releases/1", 900, 900, 0o750),
        ];
        assert_eq!(first_unreachable(&chain, &APP), None);
    }

    #[test]
    fn a_root_only_ancestor_is_named() {
        let chain = [
            dir("/", 0, 0, 0o755),
            dir("/srv", 0, 0, 0o700),
            dir("/srv/app", 0, 0, 0o755),
            dir("/srv/app/1", 900, 900, 0o755),
        ];
        assert_eq!(
            first_unreachable(&chain, &APP).map(|d| d.path.as_path()),
            Some(Path::new("/srv"))
        );
    }

    #[test]
    fn only_the_class_the_user_falls_in_counts() {
        // Owner without x, even though others have it: the kernel denies.
        let owned = [dir("/a", 900, 0, 0o601)];
        assert!(first_unreachable(&owned, &APP).is_some());
        // A group directory through a supplementary group.
        let with_group = Identity {
            groups: vec![33],
            ..APP
        };
        let grouped = [dir("/b", 0, 33, 0o750)];
        assert_eq!(first_unreachable(&grouped, &with_group), None);
        assert!(first_unreachable(&grouped, &APP).is_some());
        // Group member without group x, others with x: denied.
        let group_denied = [dir("/c", 0, 900, 0o701)];
        assert!(first_unreachable(&group_denied, &APP).is_some());
        let root = Identity {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        };
        assert_eq!(first_unreachable(&[dir("/d", 5, 5, 0o000)], &root), None);
    }

    #[test]
    fn the_chain_runs_from_the_root_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leaf = dir.path().join("a/b");
        std::fs::create_dir_all(&leaf).expect("mkdir");
        let chain = chain(&leaf).expect("chain");
        assert_eq!(
            chain.first().map(|d| d.path.as_path()),
            Some(Path::new("/"))
        );
        assert_eq!(
            chain.last().map(|d| d.path.clone()),
            Some(std::fs::canonicalize(&leaf).expect("real"))
        );
    }
}
