//! Server keys that change the host's own software and accounts: `packages` (apt, one call
//! per file), `groups` and `users` (EB's rules: an existing one with another id fails).

use std::collections::BTreeMap;

use super::Engine;
use super::hooks::{HookContext, run_program};
use super::host_changes::Changed;
use super::steps::StepFailure;
use crate::ebext::FileKeys;

impl Engine {
    /// `groups` then `users` of one file.
    pub(super) async fn create_accounts(
        &self,
        root: &HookContext,
        plan: &FileKeys,
        context: &HookContext,
        record: &mut Vec<String>,
    ) -> Result<(), StepFailure> {
        let file = plan.file.as_str();
        for group in &plan.groups {
            let at = format!("{file} groups.{}", group.name);
            match nix::unistd::Group::from_name(&group.name).ok().flatten() {
                Some(existing) => {
                    if let Some(gid) = group.gid.filter(|g| *g != existing.gid.as_raw()) {
                        return Err(StepFailure::new(format!(
                            "{at}: group {} exists with gid {}, not {gid}",
                            group.name, existing.gid
                        )));
                    }
                    self.log_hook_line(context, &format!("{at}: exists"));
                }
                None => {
                    let mut args = vec!["--system".to_string()];
                    if let Some(gid) = group.gid {
                        args = vec!["-g".to_string(), gid.to_string()];
                    }
                    args.push(group.name.clone());
                    run_program(root, &at, "groupadd", &args, &BTreeMap::new(), None).await?;
                    record.push(format!("group {} created ({file})", group.name));
                }
            }
        }
        for user in &plan.users {
            let at = format!("{file} users.{}", user.name);
            let groups = user.groups.join(",");
            match nix::unistd::User::from_name(&user.name).ok().flatten() {
                Some(existing) => {
                    if let Some(uid) = user.uid.filter(|u| *u != existing.uid.as_raw()) {
                        return Err(StepFailure::new(format!(
                            "{at}: user {} exists with uid {}, not {uid}",
                            user.name, existing.uid
                        )));
                    }
                    if !groups.is_empty() {
                        let args = ["-a", "-G", &groups, &user.name].map(String::from);
                        run_program(root, &at, "usermod", &args, &BTreeMap::new(), None).await?;
                    }
                    self.log_hook_line(context, &format!("{at}: exists"));
                }
                None => {
                    // Elastic Beanstalk's users are non-interactive system users, by design.
                    let mut args: Vec<String> = [
                        "--system",
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                    ]
                    .map(String::from)
                    .to_vec();
                    if let Some(uid) = user.uid {
                        args.extend(["-u".to_string(), uid.to_string()]);
                    }
                    if let Some(home) = &user.home {
                        args.extend(["-d".to_string(), home.clone()]);
                    }
                    if !groups.is_empty() {
                        args.extend(["-G".to_string(), groups.clone()]);
                    }
                    args.push(user.name.clone());
                    run_program(root, &at, "useradd", &args, &BTreeMap::new(), None).await?;
                    record.push(format!("user {} created ({file})", user.name));
                }
            }
        }
        Ok(())
    }

    /// `packages: apt:` of one file in one apt-get call; a pinned version older than the
    /// installed one fails, as on Elastic Beanstalk.
    pub(super) async fn install_packages(
        &self,
        root: &HookContext,
        plan: &FileKeys,
        record: &mut Vec<String>,
        changed: &mut Changed,
    ) -> Result<(), StepFailure> {
        let mut wanted = Vec::new();
        for package in &plan.packages {
            let at = format!("{} packages.apt.{}", plan.file, package.name);
            let installed = installed_version(&package.name).await;
            match (&installed, &package.version) {
                (Some(_), None) => continue,
                (Some(have), Some(want)) if have == want => continue,
                (Some(have), Some(want)) if version_newer(have, want).await => {
                    return Err(StepFailure::new(format!(
                        "{at}: version {have} is installed, newer than the {want} the bundle pins (Elastic Beanstalk fails the same way): pin {have} or remove the pin"
                    )));
                }
                (_, Some(want)) => wanted.push(format!("{}={want}", package.name)),
                (None, None) => wanted.push(package.name.clone()),
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = ["install", "-y", "-q", "--no-install-recommends"]
            .map(String::from)
            .to_vec();
        args.extend(wanted.iter().cloned());
        let env = BTreeMap::from([("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())]);
        let at = format!("{} packages.apt", plan.file);
        run_program(root, &at, "apt-get", &args, &env, None).await?;
        for package in &plan.packages {
            if let Some(version) = installed_version(&package.name).await
                && wanted
                    .iter()
                    .any(|w| w.split('=').next() == Some(package.name.as_str()))
            {
                record.push(format!(
                    "package {} {version} installed ({})",
                    package.name, plan.file
                ));
                changed.packages.insert(package.name.clone());
            }
        }
        Ok(())
    }
}

/// The installed version of a Debian package, if it is installed.
async fn installed_version(name: &str) -> Option<String> {
    let output = tokio::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status} ${Version}", name])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.strip_prefix("installed ")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether Debian version `have` is newer than `want` (dpkg's own comparison).
async fn version_newer(have: &str, want: &str) -> bool {
    tokio::process::Command::new("dpkg")
        .args(["--compare-versions", have, "gt", want])
        .status()
        .await
        .is_ok_and(|s| s.success())
}
