//! What a bundle's whole `nginx.conf` must keep for the agent (its pid file, its error log,
//! the agent's http-level files), and the EB upstreams a bundle uses without defining. Pure.

use super::paths::EB_CONF_D;
use super::rules::{Facts, Pass};
use super::tree::Directive;
use super::{ConfFile, EB_UPSTREAMS_FILE, Host, Translation};

/// Checks that only a bundle's full nginx.conf needs: the pid file and error log the agent
/// relies on, and the agent's http-level files when it does not include `conf.d/*.conf`.
pub(super) fn check(pass: &mut Pass<'_>, tree: &[Directive]) {
    let end = pass.file.text.len();
    let separator = if pass.file.text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let mut appended = String::new();
    if !tree.iter().any(|d| d.name.value == "pid") {
        let pid = pass.host.pid_file.display();
        appended.push_str(&format!(
            "pid {pid}; # hostmanager: added (the agent finds its nginx master by this pid file)\n"
        ));
        pass.out.translations.push(added(
            "nginx.conf",
            &format!("pid {pid}"),
            "the agent finds its nginx master by this pid file",
        ));
    }
    if !tree.iter().any(|d| d.name.value == "error_log") {
        let log = pass.host.log_dir.join("error.log");
        appended.push_str(&format!(
            "error_log {} warn; # hostmanager: added (nginx's errors go to the agent's log directory)\n",
            log.display()
        ));
        pass.out.translations.push(added(
            "nginx.conf",
            &format!("error_log {} warn", log.display()),
            "nginx's errors go to the agent's log directory",
        ));
    }
    if !appended.is_empty() {
        pass.editor.insert(end, format!("{separator}{appended}"));
    }
    load_switch_modules(pass, tree);
    let Some(http) = tree.iter().find(|d| d.name.value == "http") else {
        return;
    };
    let includes_conf_d = http.children().iter().any(|d| {
        d.name.value == "include"
            && d.args.first().is_some_and(|a| {
                let path = a
                    .value
                    .strip_prefix(EB_CONF_D)
                    .map_or(a.value.clone(), |rest| format!("conf.d/{rest}"));
                path == "conf.d/*.conf"
            })
    });
    if !includes_conf_d {
        let mut files = vec![
            "conf.d/hostmanager_upstream.conf",
            "conf.d/healthd_logformat.conf",
        ];
        if !pass.facts.missing_eb_upstreams().is_empty() {
            files.push(EB_UPSTREAMS_FILE);
        }
        let text: String = files.iter().map(|f| format!(" include {f};")).collect();
        if let Some(block) = &http.block {
            pass.editor.insert(block.inner_start, text.clone());
        }
        pass.out.translations.push(Translation {
            file: "nginx.conf".into(),
            line: http.line(),
            directive: "http".into(),
            became: text.trim().to_string(),
            why: "the http block does not include conf.d/*.conf, where the agent defines the app's upstream and the healthd log format".into(),
        });
    }
    let servers: Vec<&Directive> = http
        .children()
        .iter()
        .filter(|d| d.name.value == "server")
        .collect();
    let includes_eb = servers.iter().any(|server| {
        server.children().iter().any(|d| {
            d.name.value == "include"
                && d.args.first().is_some_and(|a| {
                    a.value == "conf.d/elasticbeanstalk/*.conf"
                        || a.value == "/etc/nginx/conf.d/elasticbeanstalk/*.conf"
                })
        })
    });
    if !includes_eb {
        pass.out.warnings.push(
            "nginx.conf: no server block includes conf.d/elasticbeanstalk/*.conf, so nginx writes no healthd log (no request metrics, no request-based health) and the agent's `location /` is not used; Elastic Beanstalk asks the same of a full nginx.conf".into(),
        );
    }
}

/// The traffic switch's modules, first in the file (a module loads before its directives are
/// read), on line 1 so that no line number moves. A module the bundle loads itself, or
/// Debian's `modules-enabled` (which loads every installed one), is not loaded twice.
fn load_switch_modules(pass: &mut Pass<'_>, tree: &[Directive]) {
    let loads_modules_enabled = tree.iter().any(|d| {
        d.name.value == "include"
            && d.args
                .first()
                .is_some_and(|a| a.value.starts_with("/etc/nginx/modules-enabled"))
    });
    if loads_modules_enabled {
        return;
    }
    let loaded: Vec<String> = tree
        .iter()
        .filter(|d| d.name.value == "load_module")
        .filter_map(|d| d.args.first())
        .filter_map(|a| a.value.rsplit('/').next().map(str::to_string))
        .collect();
    let lines: Vec<String> = pass
        .host
        .modules
        .iter()
        .filter(|m| {
            m.file_name()
                .is_none_or(|name| !loaded.contains(&name.to_string_lossy().into_owned()))
        })
        .map(|m| format!("load_module {};", m.display()))
        .collect();
    if lines.is_empty() {
        return;
    }
    let text = lines.join(" ");
    pass.editor.insert(0, format!("{text} "));
    pass.out.translations.push(added(
        "nginx.conf",
        &text,
        "the agent's traffic switch needs nginx's Lua module (it changes the app's port at a cutover without a reload)",
    ));
}

fn added(file: &str, became: &str, why: &str) -> Translation {
    Translation {
        file: file.into(),
        line: 0,
        directive: String::new(),
        became: became.into(),
        why: why.into(),
    }
}

pub struct Added {
    pub translation: Translation,
    pub file: ConfFile,
}

/// The EB upstreams a bundle relies on without defining them, pointing at the app.
pub fn eb_upstreams(facts: &Facts, host: &Host) -> Option<Added> {
    let missing = facts.missing_eb_upstreams();
    if missing.is_empty() {
        return None;
    }
    let mut text = String::from(
        "# Generated by hostmanager: Elastic Beanstalk's upstream names that the bundle's overrides use, pointing at the app.\n",
    );
    for name in &missing {
        let servers = match &host.balancer {
            Some(balancer) => format!(
                "    server 0.0.0.1; # never connected to: the balancer sets the peer\n    {balancer}\n"
            ),
            None => format!("    server {};\n", host.app_endpoint),
        };
        text.push_str(&format!(
            "upstream {name} {{\n{servers}    keepalive 16;\n}}\n"
        ));
    }
    let names = missing.join(", ");
    let target = match host.balancer {
        Some(_) => "the app's serving port, picked per request".to_string(),
        None => host.app_endpoint.clone(),
    };
    Some(Added {
        translation: Translation {
            file: EB_UPSTREAMS_FILE.into(),
            line: 0,
            directive: String::new(),
            became: format!("upstream {names} -> {target}"),
            why: format!(
                "the overrides proxy to EB's upstream {names}, which EB's platform defines; here it points at the app's web process"
            ),
        },
        file: ConfFile {
            path: EB_UPSTREAMS_FILE.into(),
            text,
            from_bundle: false,
        },
    })
}
