//! The translations, directive by directive: what each file's meaning depends on in the
//! others (`Facts`), and the walk that hands each directive to its rule (`paths.rs` for files
//! root's nginx would load or open, `targets.rs` for where it listens and proxies,
//! `main_file.rs` for what a bundle's whole nginx.conf must keep). Pure.

use std::collections::BTreeSet;

use super::edit::Editor;
use super::tree::Directive;
use super::{ConfFile, EB_UPSTREAM_NAMES, Host, ProxyTarget, Refusal, Translation};
use super::{main_file, paths, targets};

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
                    if let Some(name) = directive
                        .args
                        .first()
                        .and_then(|a| targets::upstream_name(&a.value))
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
    pub(super) fn missing_eb_upstreams(&self) -> Vec<&'static str> {
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
pub(super) enum Context {
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

pub(super) struct Pass<'a> {
    pub file: &'a ConfFile,
    pub host: &'a Host,
    pub facts: &'a Facts,
    pub editor: Editor,
    pub out: FileOutcome,
    /// Inside an upstream that got the balancer: its servers are placeholders, left alone.
    pub balanced_upstream: bool,
}

impl Pass<'_> {
    pub(super) fn translated(
        &mut self,
        directive: &Directive,
        became: String,
        why: impl Into<String>,
    ) {
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

    pub(super) fn refuse(&mut self, directive: &Directive, why: impl Into<String>) {
        self.out.refusals.push(Refusal {
            file: self.file.path.clone(),
            line: directive.line(),
            directive: directive.shown(),
            why: why.into(),
        });
    }

    /// Replaces one argument; returns the directive as it now reads.
    pub(super) fn replace_arg(
        &mut self,
        directive: &Directive,
        index: usize,
        value: &str,
    ) -> String {
        self.editor
            .replace(directive.args[index].span.clone(), quote(value));
        let mut shown = directive.name.value.clone();
        for (i, arg) in directive.args.iter().enumerate() {
            shown.push(' ');
            shown.push_str(if i == index { value } else { &arg.value });
        }
        shown
    }

    pub(super) fn remove(&mut self, directive: &Directive, why: impl Into<String>) {
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
        balanced_upstream: false,
    };
    if file.from_bundle {
        walk(&mut pass, tree, context_of(&file.path));
        if file.path == "nginx.conf" {
            main_file::check(&mut pass, tree);
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
                // `pid;` or `pid { … }` has no argument to replace (found by fuzzing).
                if directive.args.is_empty() || directive.block.is_some() {
                    pass.refuse(
                        directive,
                        "nginx's pid takes one argument, the pid file (the agent sets its own)",
                    );
                } else if directive.args[0].value != ours {
                    let became = pass.replace_arg(directive, 0, &ours);
                    pass.translated(
                        directive,
                        became,
                        "the agent finds its nginx master by this pid file",
                    );
                }
            }
            ("load_module", Context::Main) => paths::load_module(pass, directive),
            ("error_log" | "access_log", _) => paths::log_path(pass, directive),
            ("include", _) => paths::include(pass, directive),
            ("listen", Context::Server) => targets::listen(pass, directive, &mut listen_translated),
            ("proxy_pass", _) => targets::proxy_pass(pass, directive),
            ("upstream", Context::Http) => targets::upstream_block(pass, directive),
            ("server", Context::Upstream) if !pass.balanced_upstream => {
                targets::upstream_server(pass, directive)
            }
            (name, _) if is_lua(name) => pass.refuse(
                directive,
                "Lua in an override would run inside nginx (init_by_lua as root, in its master) and could change where its traffic goes; the agent loads nginx's Lua module only for its traffic switch, and Elastic Beanstalk's nginx has no Lua either",
            ),
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
        // A removed block's directives go with it (`user { access_log …; }`).
        if directive.block.is_some() && !pass.editor.removes(&directive.span) {
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

/// The directives of nginx's Lua module: `content_by_lua_block`, `lua_shared_dict`, ...
fn is_lua(name: &str) -> bool {
    name.contains("_by_lua") || name.starts_with("lua_")
}

/// A word as nginx must read it back: quoted when it holds what would end a bare word.
fn quote(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '\t', '\n', ';', '{', '}', '"', '\'', '#', '\\']) {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_string()
    }
}
