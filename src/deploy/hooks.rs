//! Platform hooks (`.platform/hooks/<phase>/*`, `.platform/confighooks/<phase>/*`) and
//! Buildfile commands. Each runs in its own process group with the deployment's environment,
//! its output appended to `var/log/hostmanager/hooks.log`; a hook that outlives its timeout
//! is killed with its whole group, and a failure carries the last 50 lines of its output.
//!
//! A hook without its execute bit (zips made on Windows lose it) or with a CRLF shebang is run
//! through its interpreter with a warning, instead of failing as on Elastic Beanstalk.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;

use super::hook_output::{Summary, last_lines, last_of, open_log, output_since};
use super::steps::StepFailure;

const OUTPUT_TAIL_LINES: usize = 50;

/// Everything a hook run needs.
#[derive(Debug, Clone)]
pub struct HookContext {
    pub deployment: u64,
    pub cwd: PathBuf,
    pub env: crate::secret::Properties,
    pub timeout: Duration,
    /// uid/gid to switch to, when the agent is root and `deploy.hook_user` says so.
    pub user: Option<(u32, u32)>,
    pub log: PathBuf,
}

/// How to start one hook file. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    Direct,
    /// Through `program [arg]` from the shebang (not executable, or a CRLF shebang).
    Interpreter {
        program: String,
        arg: Option<String>,
        reason: &'static str,
    },
}

/// Decides how to run a hook from its mode and first line.
pub fn plan_launch(executable: bool, first_line: &str) -> Launch {
    let crlf = first_line.ends_with('\r');
    let line = first_line.trim_end_matches(['\r', '\n']);
    if executable && !crlf {
        return Launch::Direct;
    }
    let reason = if executable {
        "its shebang line ends with CR (a Windows line ending)"
    } else {
        "it is not executable"
    };
    match line.strip_prefix("#!") {
        Some(rest) => {
            let mut parts = rest.trim().splitn(2, char::is_whitespace);
            let program = parts.next().unwrap_or("/bin/sh").to_string();
            let arg = parts
                .next()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty());
            Launch::Interpreter {
                program,
                arg,
                reason,
            }
        }
        None => Launch::Interpreter {
            program: "/bin/sh".to_string(),
            arg: None,
            reason,
        },
    }
}

/// The hook files of `dir`, in lexicographic order (Elastic Beanstalk's rule): regular files
/// only, judged by the entry itself (a symlink is not a hook, whatever it points to).
pub fn hook_files(dir: &Path) -> Vec<PathBuf> {
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    let Some(entries) = is_dir.then(|| std::fs::read_dir(dir).ok()).flatten() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Runs every hook of `dir` (named `label` in messages); returns warnings for the event log.
pub async fn run_hook_dir(
    context: &HookContext,
    dir: &Path,
    label: &str,
) -> Result<Vec<String>, StepFailure> {
    let mut warnings = Vec::new();
    for file in hook_files(dir) {
        let name = format!(
            "{label}/{}",
            file.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let executable = std::fs::symlink_metadata(&file)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        let mut command = match plan_launch(executable, &first_line(&file)) {
            Launch::Direct => tokio::process::Command::new(&file),
            Launch::Interpreter {
                program,
                arg,
                reason,
            } => {
                warnings.push(format!("hook {name}: {reason}; ran it with {program}"));
                let mut command = tokio::process::Command::new(program);
                command.args(arg);
                command.arg(&file);
                command
            }
        };
        run(context, "hook ", &name, &mut command, None).await?;
    }
    Ok(warnings)
}

/// Runs one Buildfile command through `/bin/sh -c` (the Buildfile contract).
pub async fn run_command(
    context: &HookContext,
    name: &str,
    command_line: &str,
) -> Result<(), StepFailure> {
    let mut command = tokio::process::Command::new("/bin/sh");
    command.arg("-c").arg(command_line);
    run(context, "hook ", name, &mut command, None).await
}

/// A platform build command (`runtime/`): a program and its arguments, no shell, with `env`
/// added to the context's; otherwise exactly like a hook (group, timeout, hooks.log, tail).
pub async fn run_program(
    context: &HookContext,
    name: &str,
    program: &str,
    args: &[String],
    env: &std::collections::BTreeMap<String, String>,
    summary: Option<Summary>,
) -> Result<(), StepFailure> {
    let mut context = context.clone();
    context
        .env
        .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    run(&context, "", name, &mut command, summary).await
}

async fn run(
    context: &HookContext,
    noun: &str,
    name: &str,
    command: &mut tokio::process::Command,
    summary: Option<Summary>,
) -> Result<(), StepFailure> {
    let failure = |message: String| StepFailure::new(message).with_details(json!({ "hook": name }));
    let mut log =
        open_log(&context.log).map_err(|e| failure(format!("{}: {e}", context.log.display())))?;
    let _ = writeln!(
        log,
        "=== {} deployment {} {name}",
        jiff::Timestamp::now(),
        context.deployment
    );
    let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let stderr = log.try_clone().map_err(|e| failure(e.to_string()))?;
    // The output tail is read through this descriptor, not the path: if the log rotation renames
    // hooks.log meanwhile, the descriptor still reaches what the hook wrote.
    let written = log.try_clone().map_err(|e| failure(e.to_string()))?;
    command
        .current_dir(&context.cwd)
        .env_clear()
        .envs(&context.env)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0);
    if let Some((uid, gid)) = context.user {
        command.uid(uid).gid(gid);
    }
    let mut child = command
        .spawn()
        .map_err(|error| failure(format!("{noun}{name} could not start: {error}")))?;
    let pgid = child.id().map(|pid| pid as i32);
    let mut guard = GroupGuard {
        pgid,
        finished: false,
    };
    let outcome = tokio::time::timeout(context.timeout, child.wait()).await;
    let result = match outcome {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{noun}{name} failed with {status}")),
        Ok(Err(error)) => Err(format!("{noun}{name}: {error}")),
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            Err(format!(
                "{noun}{name} hung: still running after {:?} (deploy.hook_timeout); its process group was killed",
                context.timeout
            ))
        }
    };
    guard.finished = true;
    drop(guard);
    result.map_err(|message| {
        let window = output_since(&written, offset);
        let output = last_of(&window, OUTPUT_TAIL_LINES);
        // The last lines go into the message too, as EB's "Command failed on instance. …
        // Output: …" does: the deployment's record and the controller show them.
        let telling = summary
            .and_then(|s| s.of(&window))
            .unwrap_or_else(|| last_lines(&output, 3));
        let message = match telling {
            last if last.is_empty() => message,
            last => format!("{message}. Output: {last}"),
        };
        StepFailure::new(message).with_details(json!({ "hook": name, "output_tail": output }))
    })
}

/// Kills the hook's group if the deployment is abandoned mid-hook (timeout of the whole
/// deployment, agent shutdown). A hook that finished may leave daemons behind on purpose.
struct GroupGuard {
    pgid: Option<i32>,
    finished: bool,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.kill();
        }
    }
}

/// After a crash: kills every process a hook of deployment `id` on this root left running.
/// Hooks and everything they start inherit HOSTMANAGER_ROOT and HOSTMANAGER_DEPLOYMENT_ID, so
/// they are found by their environment with no window for a race (a pid file written after
/// the spawn could be missing when the agent dies).
pub fn kill_orphaned_hooks(root: &Path, id: u64) -> usize {
    let wanted = [
        format!("HOSTMANAGER_ROOT={}", root.display()),
        format!("HOSTMANAGER_DEPLOYMENT_ID={id}"),
    ];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if wanted.iter().all(|w| vars.contains(&w.as_bytes())) {
            let pgid = crate::supervise::read_stat(pid).map_or(pid, |s| s.pgid);
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            killed += 1;
        }
    }
    killed
}

fn first_line(path: &Path) -> String {
    let mut buffer = [0u8; 256];
    let read = crate::fsutil::open_regular_nofollow(path)
        .and_then(|mut f| f.read(&mut buffer))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buffer[..read]);
    text.split('\n').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_listing_skips_symlinks_and_never_enters_a_linked_directory() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        std::fs::write(elsewhere.join("planted.sh"), "#!/bin/sh\n").expect("write");
        let phase = dir.path().join("prebuild");
        std::fs::create_dir_all(&phase).expect("mkdir");
        std::fs::write(phase.join("01_real.sh"), "#!/bin/sh\n").expect("write");
        symlink(elsewhere.join("planted.sh"), phase.join("00_link.sh")).expect("symlink");
        assert_eq!(hook_files(&phase), [phase.join("01_real.sh")]);
        let linked_phase = dir.path().join("predeploy");
        symlink(&elsewhere, &linked_phase).expect("symlink");
        assert_eq!(hook_files(&linked_phase), Vec::<PathBuf>::new());
    }

    #[test]
    fn executable_hooks_run_directly() {
        assert_eq!(plan_launch(true, "#!/bin/bash"), Launch::Direct);
    }

    #[test]
    fn non_executable_and_crlf_hooks_run_through_their_shebang() {
        assert_eq!(
            plan_launch(false, "#!/usr/bin/env python3"),
            Launch::Interpreter {
                program: "/usr/bin/env".into(),
                arg: Some("python3".into()),
                reason: "it is not executable"
            }
        );
        assert!(matches!(
            plan_launch(true, "#!/bin/bash\r"),
            Launch::Interpreter { ref program, arg: None, reason } if program == "/bin/bash" && reason.contains("CR")
        ));
        assert!(
            matches!(plan_launch(false, "echo hi"), Launch::Interpreter { ref program, .. } if program == "/bin/sh")
        );
    }
}
