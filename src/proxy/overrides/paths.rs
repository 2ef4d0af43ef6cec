//! Files root's nginx master would load or open: includes, modules, logs. EB's locations
//! are translated to this host's; anything else a bundle or the app could control is refused.
//! Pure.

use super::rules::Pass;
use super::tree::Directive;

/// EB's configuration directory, the generation's own `conf.d` here.
pub(super) const EB_CONF_D: &str = "/etc/nginx/conf.d/";
const EB_LOG_DIR: &str = "/var/log/nginx/";
const MODULE_DIR: &str = "/usr/lib/nginx/modules/";
/// Trees root's nginx may load from: the system's own configuration and modules.
const SYSTEM_TREES: [&str; 2] = ["/etc/nginx/", "/usr/share/nginx/"];
const MODULE_TREES: [&str; 3] = [
    "/usr/lib/nginx/modules/",
    "/usr/share/nginx/modules/",
    "/usr/lib64/nginx/modules/",
];
/// Log destinations that are not files nginx's master would create.
const SPECIAL_LOGS: [&str; 5] = ["off", "stderr", "/dev/stderr", "/dev/stdout", "/dev/null"];

pub(super) fn log_path(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(path) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let ours = format!("{}/", pass.host.log_dir.display());
    let special = SPECIAL_LOGS.contains(&path.as_str())
        || path.starts_with("syslog:")
        || path.starts_with("memory:");
    if special || path.starts_with(&ours) || !path.starts_with('/') {
        // Relative paths are under the agent's own nginx prefix.
        if climbs(&path) {
            pass.refuse(
                directive,
                "a log path with `..` could leave the agent's directories",
            );
        }
        return;
    }
    if let Some(rest) = path.strip_prefix(EB_LOG_DIR)
        && !climbs(rest)
    {
        let became = pass.replace_arg(directive, 0, &format!("{ours}{rest}"));
        pass.translated(
            directive,
            became,
            "EB's /var/log/nginx is the agent's nginx log directory on this host",
        );
        return;
    }
    pass.refuse(
        directive,
        format!(
            "nginx's master runs as root and would create or append to this file; write logs under /var/log/nginx/ (the agent's {ours}) or to syslog:"
        ),
    );
}

pub(super) fn include(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(path) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    if climbs(&path) {
        pass.refuse(
            directive,
            "root's nginx would load a file from outside the configuration: an include may not use `..`",
        );
        return;
    }
    if let Some(rest) = path.strip_prefix(EB_CONF_D) {
        let became = pass.replace_arg(directive, 0, &format!("conf.d/{rest}"));
        pass.translated(
            directive,
            became,
            "EB's /etc/nginx/conf.d is this generation's own conf.d",
        );
        return;
    }
    if path.starts_with('/') && !SYSTEM_TREES.iter().any(|tree| path.starts_with(tree)) {
        pass.refuse(
            directive,
            "root's nginx loads only the bundle's .platform/nginx files (included by relative paths) and the system's /etc/nginx and /usr/share/nginx; put the file under .platform/nginx/conf.d/",
        );
    }
}

pub(super) fn load_module(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(path) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let name = path.rsplit('/').next().unwrap_or_default().to_string();
    let safe_name = !name.is_empty() && !climbs(&path);
    if MODULE_TREES.iter().any(|tree| path.starts_with(tree)) && safe_name {
        return;
    }
    if !path.starts_with('/') && path.starts_with("modules/") && safe_name {
        let became = pass.replace_arg(directive, 0, &format!("{MODULE_DIR}{name}"));
        pass.translated(
            directive,
            became,
            "nginx's modules are in /usr/lib/nginx/modules on this host",
        );
        return;
    }
    pass.refuse(
        directive,
        "root's nginx would load this code: only modules installed in /usr/lib/nginx/modules are loaded",
    );
}

/// A path with a `..` component could lead out of any tree it starts in.
fn climbs(path: &str) -> bool {
    path.split('/').any(|part| part == "..")
}
