//! The translations, directive by directive. Pure.

use std::collections::BTreeSet;

use super::edit::Editor;
use super::tree::Directive;
use super::{
    ConfFile, EB_UPSTREAM_NAMES, EB_UPSTREAMS_FILE, Host, ProxyTarget, Refusal, Translation,
};

const EB_LOG_DIR: &str = "/var/log/nginx/";
const EB_CONF_D: &str = "/etc/nginx/conf.d/";
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

/// What a file's meaning depends on in the other files of the generation.
#[derive(Debug, Default)]
pub struct Facts {
    defined_upstreams: BTreeSet<String>,
    referenced_upstreams: BTreeSet<String>,
    /// The bundle sets `client_max_body_size` at http level (in `conf.d/*.conf`).
    bundle_body_size: Option<(String, u32)>,
    /// `conf.d/healthd_logformat.conf` is the agent's (so it defines `log_format healthd`).
    agent_healthd_format: bool,
}

impl Facts {
    pub fn gather(parsed: &[(&ConfFile, Vec<Directive>)]) -> Self {
        let mut facts = Facts::default();
        for (file, tree) in parsed {
            if file.path == "conf.d/healthd_logformat.conf" && !file.from_bundle {
                facts.agent_healthd_format = true;
            }
            if file.from_bundle
                && context_of(&file.path) == Context::Http
                && let Some(size) = tree.iter().find(|d| d.name.value == "client_max_body_size")
            {
                facts.bundle_body_size = Some((file.path.clone(), size.line()));
            }
            visit(tree, &mut |directive| match directive.name.value.as_str() {
                "upstream" => {
                    if let Some(name) = directive.args.first() {
                        facts.defined_upstreams.insert(name.value.clone());
                    }
                }
                "proxy_pass" => {
                    if let Some(name) = directive.args.first().and_then(|a| upstream_name(&a.value))
                    {
                        facts.referenced_upstreams.insert(name);
                    }
                }
                _ => {}
            });
        }
        facts
    }

    /// EB's upstream names the bundle uses without defining them.
    fn missing_eb_upstreams(&self) -> Vec<&'static str> {
        EB_UPSTREAM_NAMES
            .into_iter()
            .filter(|name| {
                self.referenced_upstreams.contains(*name) && !self.defined_upstreams.contains(*name)
            })
            .collect()
    }
}

fn visit(tree: &[Directive], each: &mut impl FnMut(&Directive)) {
    for directive in tree {
        each(directive);
        visit(directive.children(), each);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Main,
    Http,
    Server,
    Upstream,
    Other,
}

/// Where a file's top level sits: nginx.conf is the main context; the agent's nginx.conf
/// (and EB's) include `conf.d/*.conf` in http and `conf.d/elasticbeanstalk/*.conf` in server.
fn context_of(path: &str) -> Context {
    if path == "nginx.conf" {
        Context::Main
    } else if path.starts_with("conf.d/elasticbeanstalk/") {
        Context::Server
    } else {
        Context::Http
    }
}

#[derive(Debug, Default)]
pub struct FileOutcome {
    pub text: String,
    pub translations: Vec<Translation>,
    pub refusals: Vec<Refusal>,
    pub targets: Vec<ProxyTarget>,
    pub warnings: Vec<String>,
}

struct Pass<'a> {
    file: &'a ConfFile,
    host: &'a Host,
    facts: &'a Facts,
    editor: Editor,
    out: FileOutcome,
}

impl Pass<'_> {
    fn translated(&mut self, directive: &Directive, became: String, why: impl Into<String>) {
        let note = match became.as_str() {
            "" => format!("removed `{}`", directive.shown()),
            _ => format!("was `{}`", directive.shown()),
        };
        self.editor.note(&self.file.text, directive.span.end, &note);
        self.out.translations.push(Translation {
            file: self.file.path.clone(),
            line: directive.line(),
            directive: directive.shown(),
            became,
            why: why.into(),
        });
    }

    fn refuse(&mut self, directive: &Directive, why: impl Into<String>) {
        self.out.refusals.push(Refusal {
            file: self.file.path.clone(),
            line: directive.line(),
            directive: directive.shown(),
            why: why.into(),
        });
    }

    /// Replaces one argument; returns the directive as it now reads.
    fn replace_arg(&mut self, directive: &Directive, index: usize, value: &str) -> String {
        self.editor
            .replace(directive.args[index].span.clone(), quote(value));
        let mut shown = directive.name.value.clone();
        for (i, arg) in directive.args.iter().enumerate() {
            shown.push(' ');
            shown.push_str(if i == index { value } else { &arg.value });
        }
        shown
    }

    fn remove(&mut self, directive: &Directive, why: impl Into<String>) {
        self.editor.replace(directive.span.clone(), "");
        self.translated(directive, String::new(), why);
    }
}

pub fn translate_file(
    file: &ConfFile,
    tree: &[Directive],
    host: &Host,
    facts: &Facts,
) -> FileOutcome {
    let mut pass = Pass {
        file,
        host,
        facts,
        editor: Editor::default(),
        out: FileOutcome::default(),
    };
    if file.from_bundle {
        walk(&mut pass, tree, context_of(&file.path));
        if file.path == "nginx.conf" {
            main_file(&mut pass, tree);
        }
    } else if file.path == "nginx.conf"
        && let Some((source, line)) = &facts.bundle_body_size
    {
        // Ours is set in the server block, where it would win over the bundle's http-level
        // value: the bundle's applies, as on EB (whose server block sets none).
        if let Some(size) = find_in_server(tree, "client_max_body_size") {
            let why = format!(
                "{source} line {line} sets client_max_body_size for every server; proxy.client_max_body_size would override it"
            );
            pass.remove(size, why);
        }
    }
    let Pass {
        editor, mut out, ..
    } = pass;
    out.text = editor.apply(&file.text);
    out
}

fn find_in_server<'a>(tree: &'a [Directive], name: &str) -> Option<&'a Directive> {
    let http = tree.iter().find(|d| d.name.value == "http")?;
    let server = http.children().iter().find(|d| d.name.value == "server")?;
    server.children().iter().find(|d| d.name.value == name)
}

fn walk(pass: &mut Pass<'_>, tree: &[Directive], context: Context) {
    // The first `listen` on EB's port 80 in a server becomes proxy.listen; the others
    // (`listen [::]:80`) would then duplicate it.
    let mut listen_translated = false;
    for directive in tree {
        match (directive.name.value.as_str(), context) {
            ("user", Context::Main) => {
                let why = format!(
                    "this host's nginx workers run as {}, nginx's default user here",
                    pass.host.worker_user
                );
                pass.remove(directive, why);
            }
            ("daemon" | "master_process", Context::Main) => {
                pass.remove(
                    directive,
                    "the agent runs nginx as a daemon with a master, which outlives the agent",
                );
            }
            ("pid", Context::Main) => {
                let ours = pass.host.pid_file.display().to_string();
                if directive.args.first().map(|a| a.value.as_str()) != Some(ours.as_str()) {
                    let became = pass.replace_arg(directive, 0, &ours);
                    pass.translated(
                        directive,
                        became,
                        "the agent finds its nginx master by this pid file",
                    );
                }
            }
            ("load_module", Context::Main) => load_module(pass, directive),
            ("error_log" | "access_log", _) => log_path(pass, directive),
            ("include", _) => include(pass, directive),
            ("listen", Context::Server) => listen(pass, directive, &mut listen_translated),
            ("proxy_pass", _) => proxy_pass(pass, directive),
            ("server", Context::Upstream) => upstream_server(pass, directive),
            ("log_format", Context::Http)
                if pass.file.path == "nginx.conf"
                    && pass.facts.agent_healthd_format
                    && directive.args.first().is_some_and(|a| a.value == "healthd") =>
            {
                pass.remove(
                    directive,
                    "the agent defines log_format healthd in EB's format (conf.d/healthd_logformat.conf); a second definition is an error",
                );
            }
            _ => {}
        }
        if directive.block.is_some() {
            let inner = match directive.name.value.as_str() {
                "http" => Context::Http,
                "server" if context == Context::Http => Context::Server,
                "upstream" => Context::Upstream,
                _ => Context::Other,
            };
            walk(pass, directive.children(), inner);
        }
    }
}

/// Checks that only a bundle's full nginx.conf needs: the pid file and error log the agent
/// relies on, and the agent's http-level files when it does not include `conf.d/*.conf`.
fn main_file(pass: &mut Pass<'_>, tree: &[Directive]) {
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

fn added(file: &str, became: &str, why: &str) -> Translation {
    Translation {
        file: file.into(),
        line: 0,
        directive: String::new(),
        became: became.into(),
        why: why.into(),
    }
}

fn log_path(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(path) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let ours = format!("{}/", pass.host.log_dir.display());
    let special = SPECIAL_LOGS.contains(&path.as_str())
        || path.starts_with("syslog:")
        || path.starts_with("memory:");
    if special || path.starts_with(&ours) || !path.starts_with('/') {
        // Relative paths are under the agent's own nginx prefix.
        if path.split('/').any(|part| part == "..") {
            pass.refuse(
                directive,
                "a log path with `..` could leave the agent's directories",
            );
        }
        return;
    }
    if let Some(rest) = path.strip_prefix(EB_LOG_DIR)
        && !rest.split('/').any(|part| part == "..")
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

fn include(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(path) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    if path.split('/').any(|part| part == "..") {
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

fn load_module(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(path) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let name = path.rsplit('/').next().unwrap_or_default().to_string();
    let safe_name = !name.is_empty() && !path.split('/').any(|part| part == "..");
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

fn listen(pass: &mut Pass<'_>, directive: &Directive, translated: &mut bool) {
    let Some(address) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let on_port_80 = matches!(address.as_str(), "80" | "*:80" | "0.0.0.0:80" | "[::]:80");
    if !on_port_80 {
        return;
    }
    let ours = pass.host.listen;
    let ipv6 = address.starts_with('[');
    let same = ours.port() == 80 && ours.ip().is_unspecified() && ipv6 == ours.is_ipv6();
    if same && !ipv6 {
        *translated = true;
        return;
    }
    if same {
        return;
    }
    if *translated {
        let why = format!("this host's nginx listens on {ours} (proxy.listen) only");
        pass.remove(directive, why);
        return;
    }
    *translated = true;
    let became = pass.replace_arg(directive, 0, &ours.to_string());
    let why = format!("EB's port 80 is proxy.listen ({ours}) on this host");
    pass.translated(directive, became, why);
}

fn proxy_pass(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(url) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let Some(target) = loopback(&url) else {
        return;
    };
    if pass.host.app_ports.contains(&target.port) {
        let became_url = format!("http://{}{}", pass.host.upstream, target.rest);
        let became = pass.replace_arg(directive, 0, &became_url);
        let why = format!(
            "port {} is where EB's platform runs the app; here the app's web process listens on $PORT and `{}` follows it across zero-downtime cutovers",
            target.port, pass.host.upstream
        );
        pass.translated(directive, became, why);
    } else {
        pass.out.targets.push(ProxyTarget {
            file: pass.file.path.clone(),
            line: directive.line(),
            address: target.address,
        });
    }
}

fn upstream_server(pass: &mut Pass<'_>, directive: &Directive) {
    let Some(address) = directive.args.first().map(|a| a.value.clone()) else {
        return;
    };
    let Some(target) = loopback(&format!("http://{address}")) else {
        return;
    };
    if pass.host.app_ports.contains(&target.port) && target.rest.is_empty() {
        let endpoint = pass.host.app_endpoint.clone();
        let became = pass.replace_arg(directive, 0, &endpoint);
        let why = format!(
            "port {} is where EB's platform runs the app; here the app's web process listens on $PORT ({endpoint} for this release)",
            target.port
        );
        pass.translated(directive, became, why);
    } else {
        pass.out.targets.push(ProxyTarget {
            file: pass.file.path.clone(),
            line: directive.line(),
            address: target.address,
        });
    }
}

struct Loopback {
    address: String,
    port: u16,
    /// The URI part and anything after the port.
    rest: String,
}

/// `http://127.0.0.1:8080/x` (or localhost, [::1]); `None` for anything else.
fn loopback(url: &str) -> Option<Loopback> {
    let after = url.strip_prefix("http://")?;
    let authority_end = after.find(['/', '$', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, port.parse().ok()?),
        _ => (authority, 80),
    };
    let is_loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    is_loopback.then(|| Loopback {
        address: format!("{host}:{port}"),
        port,
        rest: rest.to_string(),
    })
}

/// `http://nodejs` or `http://nodejs/x` → `nodejs`: a name without a port or a dot.
fn upstream_name(url: &str) -> Option<String> {
    let after = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = after.find(['/', '$', '?']).unwrap_or(after.len());
    let name = &after[..end];
    let plain = !name.is_empty() && !name.contains([':', '.', '[']);
    plain.then(|| name.to_string())
}

/// A word as nginx must read it back: quoted when it holds what would end a bare word.
fn quote(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '\t', '\n', ';', '{', '}', '"', '\'', '#', '\\']) {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_string()
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
        text.push_str(&format!(
            "upstream {name} {{\n    server {};\n    keepalive 16;\n}}\n",
            host.app_endpoint
        ));
    }
    let names = missing.join(", ");
    Some(Added {
        translation: Translation {
            file: EB_UPSTREAMS_FILE.into(),
            line: 0,
            directive: String::new(),
            became: format!("upstream {names} -> {}", host.app_endpoint),
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
