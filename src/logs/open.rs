//! Opening a log as root without following what the app controls.
//!
//! Every log the agent reads, copies, uploads or cuts is opened here (the watcher, rotation,
//! tail and bundle), so that an app that replaces its log with a symbolic link to
//! `/etc/shadow`, or hard-links another user's file into its log directory, gets its log
//! refused (and an event saying why) instead of root reading or cutting that file:
//! - the directories on the way are opened one by one; a symbolic link among them is followed
//!   only when root (or the agent's own user) owns it, e.g. `var/app/current`; one the app
//!   made is refused;
//! - the file itself is opened with `O_NOFOLLOW` (and `O_NONBLOCK`, so a FIFO cannot hang the
//!   agent), after a no-follow `stat` that refuses anything but a regular file before it is
//!   opened (opening some devices has effects);
//! - then `fstat` of what was opened: a regular file with one link and, in a directory someone
//!   other than the agent can write, owned by an expected owner.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};

/// Symbolic links followed on one path, at most (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Who may own a log: the agent's user (root in production) always; the app user too for the
/// logs the app writes itself (`extra_files`, `watch.files` and anything the app created under
/// `var/log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    pub agent: u32,
    pub app: Option<u32>,
}

impl Owners {
    /// The agent's effective uid and `app_user`'s (when it exists).
    pub fn resolve(app_user: &str) -> Self {
        let agent = rustix::process::geteuid().as_raw();
        let app = nix::unistd::User::from_name(app_user)
            .ok()
            .flatten()
            .map(|user| user.uid.as_raw());
        Self { agent, app }
    }

    /// The owners a log of this kind may have.
    pub fn allowed(&self, app_writes_it: bool) -> Vec<u32> {
        let mut owners = vec![self.agent];
        if app_writes_it && let Some(app) = self.app {
            owners.push(app);
        }
        owners
    }
}

#[derive(Debug)]
pub enum OpenError {
    /// The log is not there (or cannot be read): nothing to report.
    Io(io::Error),
    /// The log is there but is not one root may read or cut: why (for the warning event).
    Refused(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => error.fmt(f),
            Self::Refused(why) => f.write_str(why),
        }
    }
}

impl From<rustix::io::Errno> for OpenError {
    fn from(errno: rustix::io::Errno) -> Self {
        Self::Io(errno.into())
    }
}

impl From<OpenError> for io::Error {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Io(error) => error,
            OpenError::Refused(why) => io::Error::new(io::ErrorKind::PermissionDenied, why),
        }
    }
}

/// Opens the log at `path` for reading (`write`: reading and writing, for a copytruncate),
/// refusing symbolic links, anything but a regular file with one link, and (in a directory
/// others can write) owners other than `owners`. `owners[0]` is the agent's user: the only owner of directory links followed.
pub fn open_log(path: &Path, owners: &[u32], write: bool) -> Result<File, OpenError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(OpenError::Refused(format!(
            "{} is not a file name",
            path.display()
        )));
    };
    let dir = open_dir(parent, owners)?;
    let shown = path.display();
    let before = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    check_type(&before, &shown)?;
    let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
    let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        // Swapped for a link between the stat and the open.
        Err(rustix::io::Errno::LOOP) => {
            return Err(OpenError::Refused(format!(
                "{shown} is a symbolic link (not followed)"
            )));
        }
        Err(errno) => return Err(errno.into()),
    };
    let stat = rustix::fs::fstat(&fd)?;
    check_type(&stat, &shown)?;
    // Only where someone else can write could the file have been planted; in the agent's own
    // directories every entry was made by the agent or nginx's master (which hands the logs it
    // reopens to its worker user: a legitimate other owner).
    let dir_stat = rustix::fs::fstat(&dir)?;
    let others_write = dir_stat.st_uid != owners.first().copied().unwrap_or_default()
        || dir_stat.st_mode & 0o022 != 0;
    if others_write && !owners.contains(&stat.st_uid) {
        return Err(OpenError::Refused(format!(
            "{shown} is owned by uid {}, not by {}",
            stat.st_uid,
            describe(owners)
        )));
    }
    if stat.st_nlink > 1 {
        return Err(OpenError::Refused(format!(
            "{shown} has {} hard links (it may be another file's)",
            stat.st_nlink
        )));
    }
    Ok(File::from(fd))
}

/// Opens a file the agent itself staged (a rotated `.raw`) for reading: not through a link,
/// and only a regular file.
pub fn open_staged(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(CWD, path, flags, Mode::empty())?;
    let stat = rustix::fs::fstat(&fd)?;
    check_type(&stat, &path.display())?;
    Ok(File::from(fd))
}

fn check_type(stat: &rustix::fs::Stat, shown: &impl std::fmt::Display) -> Result<(), OpenError> {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok(()),
        FileType::Symlink => Err(OpenError::Refused(format!(
            "{shown} is a symbolic link (not followed)"
        ))),
        other => Err(OpenError::Refused(format!(
            "{shown} is not a regular file ({other:?})"
        ))),
    }
}

fn describe(owners: &[u32]) -> String {
    let names: Vec<String> = owners.iter().map(|uid| format!("uid {uid}")).collect();
    names.join(" or ")
}

/// Opens the directory `path` component by component; symbolic links on the way are followed
/// only when one of `trusted` owns them (an app cannot chown a link to root).
fn open_dir(path: &Path, owners: &[u32]) -> Result<OwnedFd, OpenError> {
    let trusted = &owners[..1.min(owners.len())];
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let start = if path.is_absolute() { "/" } else { "." };
    let mut dir = rustix::fs::openat(CWD, start, dir_flags, Mode::empty())?;
    let mut walked = PathBuf::from(start);
    let mut pending = components(path);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        walked.push(&name);
        let fd = rustix::fs::openat(
            &dir,
            name.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => dir = fd,
            FileType::Symlink if trusted.contains(&stat.st_uid) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(OpenError::Io(io::Error::from_raw_os_error(
                        nix::libc::ELOOP,
                    )));
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                if target.is_absolute() {
                    dir = rustix::fs::openat(CWD, "/", dir_flags, Mode::empty())?;
                }
                let mut expanded = components(&target);
                expanded.extend(pending.drain(..));
                pending = expanded;
            }
            FileType::Symlink => {
                return Err(OpenError::Refused(format!(
                    "{} is a symbolic link owned by uid {} (only links owned by uid {} are followed)",
                    walked.display(),
                    stat.st_uid,
                    trusted.first().copied().unwrap_or_default()
                )));
            }
            _ => {
                return Err(OpenError::Io(io::Error::from_raw_os_error(
                    nix::libc::ENOTDIR,
                )));
            }
        }
    }
    Ok(dir)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn me() -> Vec<u32> {
        vec![rustix::process::geteuid().as_raw()]
    }

    fn refused(result: Result<File, OpenError>) -> String {
        match result {
            Err(OpenError::Refused(why)) => why,
            Err(OpenError::Io(error)) => panic!("an I/O error, not a refusal: {error}"),
            Ok(_) => panic!("opened"),
        }
    }

    #[test]
    fn regular_files_open_and_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        std::fs::write(&log, "hello\n").expect("write");
        let mut text = String::new();
        open_log(&log, &me(), false)
            .expect("open")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "hello\n");

        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t\n").expect("write");
        let link = dir.path().join("link.log");
        symlink(&secret, &link).expect("symlink");
        let why = refused(open_log(&link, &me(), true));
        assert!(why.contains("link.log is a symbolic link"), "{why}");

        let hard = dir.path().join("hard.log");
        std::fs::hard_link(&secret, &hard).expect("hard link");
        let why = refused(open_log(&hard, &me(), false));
        assert!(why.contains("2 hard links"), "{why}");

        let why = refused(open_log(dir.path(), &me(), false));
        assert!(why.contains("not a regular file"), "{why}");

        let fifo = dir.path().join("fifo.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let why = refused(open_log(&fifo, &me(), false));
        assert!(why.contains("not a regular file"), "{why}");

        // In a directory only the agent writes, the owner is not the question.
        let mine = open_log(&log, &[me()[0], u32::MAX - 1], false);
        assert!(mine.is_ok());
        // Where others can write, a file of another owner is refused.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(
            &shared,
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .expect("chmod");
        let planted = shared.join("planted.log");
        std::fs::write(&planted, "x\n").expect("write");
        open_log(&planted, &me(), false).expect("the agent's own file");
        let why = refused(open_log(&planted, &[u32::MAX - 1, me()[0] + 1], false));
        assert!(why.contains("is owned by uid"), "{why}");

        assert!(matches!(
            open_log(&dir.path().join("missing.log"), &me(), false),
            Err(OpenError::Io(_))
        ));
    }

    #[test]
    fn directory_links_are_followed_only_when_trusted_owners_own_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("releases/7/log");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::fs::write(real.join("app.log"), "x\n").expect("write");
        symlink(dir.path().join("releases/7"), dir.path().join("current")).expect("symlink");
        symlink("releases/7", dir.path().join("relative")).expect("symlink");
        let owners = me();
        open_log(&dir.path().join("current/log/app.log"), &owners, false).expect("absolute");
        open_log(&dir.path().join("relative/log/app.log"), &owners, false).expect("relative");
        open_log(
            &dir.path().join("relative/../7/log/app.log"),
            &owners,
            false,
        )
        .expect("dot-dot");
        // `..` after a link is taken in the link's target, as the kernel does.
        // A link the trusted owner did not make: here, every link is "someone else's".
        let why =
            refused(open_dir(&dir.path().join("current/log"), &[u32::MAX - 1]).map(File::from));
        assert!(
            why.contains("current is a symbolic link owned by uid"),
            "{why}"
        );
    }
}
