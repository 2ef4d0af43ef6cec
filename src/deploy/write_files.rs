//! Writing one `.ebextensions` `files` entry as root, the way cfn-init does (an existing file
//! is kept as `<path>.bak`; mode, owner and group; a `120xxx` mode makes a link), without
//! ever writing through what another user controls: every existing directory on the way must
//! be a real directory owned by root (or by the agent's user), so an app user cannot turn a
//! root write into one of its choosing with a planted link.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::ebext::{FileContent, FileEntry};

/// Writes `entry` at `target`; the `.bak` made of what was there, if anything.
pub fn write_entry(target: &Path, entry: &FileEntry) -> io::Result<Option<PathBuf>> {
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    make_trusted_dirs(dir)?;
    let uid = lookup_user(entry.owner.as_deref())?;
    let gid = lookup_group(entry.group.as_deref())?;
    let backup = match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            return Err(io::Error::other("a directory is there; files writes files"));
        }
        Ok(_) => {
            let mut name = target.as_os_str().to_owned();
            name.push(".bak");
            let bak = PathBuf::from(name);
            // rename moves the entry itself (a link stays a link): nothing is followed.
            fs::rename(target, &bak)?;
            Some(bak)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    let tmp = dir.join(format!(
        ".{}.hostmanager-new",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = fs::remove_file(&tmp);
    match &entry.content {
        FileContent::Link(to) => {
            std::os::unix::fs::symlink(to, &tmp)?;
            std::os::unix::fs::lchown(&tmp, uid, gid)?;
        }
        FileContent::Bytes(bytes) => {
            let mode = entry.mode.unwrap_or(0o644);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&tmp)?;
            file.write_all(bytes)?;
            std::os::unix::fs::fchown(&file, uid, gid)?;
            // After chown: chown clears setuid and setgid bits.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.sync_all()?;
        }
        FileContent::Remote(_) => return Err(io::Error::other("not fetched")),
    }
    fs::rename(&tmp, target)?;
    Ok(backup)
}

/// Creates the missing directories (0755, root's) and checks the existing ones.
pub fn make_trusted_dirs(dir: &Path) -> io::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let mut path = PathBuf::new();
    for part in dir.components() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                // A link root itself keeps (e.g. /var/run → /run, /lib → usr/lib) is fine.
                let owner = meta.uid();
                if owner != 0 && owner != me {
                    return Err(io::Error::other(format!(
                        "{} is a link owned by uid {owner}: root does not write through a link another user controls",
                        path.display()
                    )));
                }
            }
            Ok(meta) if meta.is_dir() => {
                let owner = meta.uid();
                let others_write = meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0;
                if (owner != 0 && owner != me) || others_write {
                    return Err(io::Error::other(format!(
                        "{} is writable by another user: root does not write where its target can be swapped",
                        path.display()
                    )));
                }
            }
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    path.display()
                )));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(0o755).create(&path)?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn lookup_user(name: Option<&str>) -> io::Result<Option<u32>> {
    let Some(name) = name else { return Ok(None) };
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(Some(uid));
    }
    match nix::unistd::User::from_name(name).map_err(io::Error::other)? {
        Some(user) => Ok(Some(user.uid.as_raw())),
        None => Err(io::Error::other(format!(
            "owner {name:?} does not exist on this host (create it under users:)"
        ))),
    }
}

fn lookup_group(name: Option<&str>) -> io::Result<Option<u32>> {
    let Some(name) = name else { return Ok(None) };
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    match nix::unistd::Group::from_name(name).map_err(io::Error::other)? {
        Some(group) => Ok(Some(group.gid.as_raw())),
        None => Err(io::Error::other(format!(
            "group {name:?} does not exist on this host (create it under groups:)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(content: FileContent, mode: Option<u32>) -> FileEntry {
        FileEntry {
            path: "/x".into(),
            content,
            mode,
            owner: None,
            group: None,
        }
    }

    #[test]
    fn a_file_is_written_with_its_mode_the_old_one_kept_and_links_are_made_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("etc/app/app.conf");
        let first = write_entry(
            &target,
            &entry(FileContent::Bytes(b"one".to_vec()), Some(0o640)),
        )
        .expect("written");
        assert_eq!(first, None);
        assert_eq!(fs::metadata(&target).expect("meta").mode() & 0o7777, 0o640);
        let second = write_entry(&target, &entry(FileContent::Bytes(b"two".to_vec()), None))
            .expect("written");
        assert_eq!(
            second.as_deref(),
            Some(dir.path().join("etc/app/app.conf.bak").as_path())
        );
        assert_eq!(
            fs::read(dir.path().join("etc/app/app.conf.bak")).expect("bak"),
            b"one"
        );
        assert_eq!(fs::read(&target).expect("new"), b"two");
        let link = dir.path().join("etc/app/current");
        write_entry(
            &link,
            &entry(FileContent::Link("/etc/app/app.conf".into()), Some(0o777)),
        )
        .expect("link");
        assert_eq!(
            fs::read_link(&link).expect("a link"),
            Path::new("/etc/app/app.conf")
        );
    }

    #[test]
    fn a_directory_others_may_write_is_not_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = write_entry(
            &open.join("sub/f"),
            &entry(FileContent::Bytes(Vec::new()), None),
        )
        .expect_err("refused");
        assert!(
            error.to_string().contains("is writable by another user"),
            "{error}"
        );
    }
}
