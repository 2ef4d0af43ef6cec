//! The translations of the suite's corpus of EB overrides (`tests/fixtures/eb-overrides/`).
//! `tests/deploy_overrides.rs` deploys the same files behind a real nginx.

use std::path::Path;

use super::*;
use crate::proxy::render::{NginxModel, render, sample_model};

fn host() -> Host {
    Host {
        app_ports: [5000, 8000, 8080, 18500, 18501].into(),
        app_endpoint: "127.0.0.1:18501".into(),
        balancer: None,
        modules: Vec::new(),
        upstream: "hostmanager_web".into(),
        listen: "127.0.0.1:18080".parse().expect("addr"),
        pid_file: "/srv/hm/var/lib/hostmanager/nginx/run/nginx.pid".into(),
        log_dir: "/srv/hm/var/log/nginx".into(),
        worker_user: "nobody".into(),
    }
}

/// The agent's files with the corpus case's files on top, as a generation holds them.
fn generation(case: &str) -> Vec<ConfFile> {
    let model = NginxModel {
        upstream_port: 18501,
        listen: "127.0.0.1:18080".parse().expect("addr"),
        ..sample_model()
    };
    let mut files: Vec<ConfFile> = render(&model)
        .into_iter()
        .map(|f| ConfFile {
            path: f.path.to_string(),
            text: f.content,
            from_bundle: false,
        })
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eb-overrides")
        .join(case);
    for sub in ["", "conf.d", "conf.d/elasticbeanstalk"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".conf")) || !entry.path().is_file() {
                continue;
            }
            let path = if sub.is_empty() {
                name
            } else {
                format!("{sub}/{name}")
            };
            let text = std::fs::read_to_string(entry.path()).expect("corpus file");
            files.retain(|f| f.path != path);
            files.push(ConfFile {
                path,
                text,
                from_bundle: true,
            });
        }
    }
    files
}

fn translated(case: &str) -> Translated {
    translate(&generation(case), &host())
        .unwrap_or_else(|refusals| panic!("{case} refused: {refusals:?}"))
}

fn text_of<'a>(out: &'a Translated, path: &str) -> &'a str {
    &out.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"))
        .text
}

fn text_of_files(files: &[ConfFile], path: &str) -> String {
    files
        .iter()
        .find(|f| f.path == path)
        .expect("file")
        .text
        .clone()
}

fn shown(out: &Translated) -> Vec<String> {
    out.translations.iter().map(|t| t.to_string()).collect()
}

#[test]
fn a_location_on_the_node_port_goes_to_the_app_upstream() {
    let out = translated("location-8080");
    let file = text_of(&out, "conf.d/elasticbeanstalk/00_application.conf");
    assert!(
        file.contains("proxy_pass          http://hostmanager_web; # hostmanager: was `proxy_pass http://127.0.0.1:8080`"),
        "{file}"
    );
    assert_eq!(out.translations.len(), 1, "{:?}", shown(&out));
    let translation = &out.translations[0];
    assert_eq!(
        (translation.line, translation.became.as_str()),
        (2, "proxy_pass http://hostmanager_web")
    );
    assert!(translation.why.contains("port 8080"), "{translation}");
    // Line numbers stay those of the bundle's file.
    let original = generation("location-8080");
    let original = &text_of_files(&original, "conf.d/elasticbeanstalk/00_application.conf");
    assert_eq!(file.lines().count(), original.lines().count());
}

#[test]
fn an_eb_upstream_name_the_bundle_does_not_define_is_defined_for_the_app() {
    let out = translated("eb-upstream-name");
    let added = text_of(&out, EB_UPSTREAMS_FILE);
    assert!(
        added.contains("upstream nodejs {\n    server 127.0.0.1:18501;"),
        "{added}"
    );
    assert_eq!(out.translations.len(), 1, "{:?}", shown(&out));
    assert!(out.translations[0].why.contains("nodejs"));
}

#[test]
fn an_upstream_the_bundle_defines_on_the_node_port_points_at_the_app() {
    let out = translated("upstream-defined");
    let file = text_of(&out, "conf.d/upstream.conf");
    assert!(
        file.contains("server 127.0.0.1:18501; # hostmanager: was `server 127.0.0.1:8080`"),
        "{file}"
    );
    assert!(!out.files.iter().any(|f| f.path == EB_UPSTREAMS_FILE));
}

#[test]
fn a_full_nginx_conf_copied_from_eb_is_translated_directive_by_directive() {
    let out = translated("full-nginx-conf");
    let file = text_of(&out, "nginx.conf");
    let directives: Vec<&str> = out
        .translations
        .iter()
        .map(|t| t.directive.as_str())
        .collect();
    assert_eq!(
        directives,
        [
            "user nginx",
            "error_log /var/log/nginx/error.log warn",
            "pid /var/run/nginx.pid",
            "server 127.0.0.1:8080",
            "listen 80 default_server",
            "access_log /var/log/nginx/access.log main",
        ],
        "{:?}",
        shown(&out)
    );
    for expected in [
        "error_log               /srv/hm/var/log/nginx/error.log warn;",
        "pid                     /srv/hm/var/lib/hostmanager/nginx/run/nginx.pid;",
        "server 127.0.0.1:18501;",
        "listen        127.0.0.1:18080 default_server;",
        "access_log    /srv/hm/var/log/nginx/access.log main;",
    ] {
        assert!(file.contains(expected), "{expected} missing in:\n{file}");
    }
    assert!(
        !file.lines().any(|l| l.trim_start().starts_with("user")),
        "{file}"
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn overrides_that_need_no_translation_are_left_as_written() {
    for case in ["https-redirect", "gzip"] {
        let out = translated(case);
        assert!(out.translations.is_empty(), "{case}: {:?}", shown(&out));
        let original = generation(case);
        for file in &out.files {
            let before = original
                .iter()
                .find(|f| f.path == file.path)
                .expect("same files");
            assert_eq!(file.text, before.text, "{case}: {} changed", file.path);
        }
    }
}

#[test]
fn an_sse_location_on_localhost_is_translated_and_keeps_its_settings() {
    let out = translated("sse");
    let file = text_of(&out, "conf.d/elasticbeanstalk/sse.conf");
    assert!(
        file.contains("proxy_pass              http://hostmanager_web;"),
        "{file}"
    );
    assert!(file.contains("proxy_read_timeout      24h;"), "{file}");
}

#[test]
fn a_body_size_set_at_http_level_wins_over_the_agents_server_default() {
    let out = translated("body-size");
    let main = text_of(&out, "nginx.conf");
    assert!(
        !main
            .lines()
            .any(|l| l.trim_start().starts_with("client_max_body_size")),
        "{main}"
    );
    assert_eq!(out.translations.len(), 1, "{:?}", shown(&out));
    assert!(out.translations[0].why.contains("conf.d/proxy.conf line 1"));
}

#[test]
fn a_port_that_is_not_the_apps_is_left_and_remembered_as_a_likely_cause() {
    let out = translated("wrong-port");
    assert!(out.translations.is_empty());
    assert_eq!(
        out.targets,
        [ProxyTarget {
            file: "conf.d/elasticbeanstalk/00_application.conf".into(),
            line: 2,
            address: "127.0.0.1:9999".into(),
        }]
    );
}

#[test]
fn what_root_would_load_or_open_from_elsewhere_is_refused_by_file_line_and_directive() {
    let refusals = translate(&generation("refused"), &host()).expect_err("refused");
    let shown: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with("conf.d/elasticbeanstalk/extra.conf line 2: `include /var/app/current/nginx-extra.conf`: root's nginx loads only"),
        "{shown:?}"
    );
    assert!(
        shown[1].starts_with("conf.d/elasticbeanstalk/extra.conf line 4: `access_log /tmp/app-access.log`: nginx's master runs as root"),
        "{shown:?}"
    );
}

fn one_file(path: &str, text: &str) -> Vec<ConfFile> {
    let mut files = generation("gzip");
    files.retain(|f| f.path != path && !f.from_bundle);
    files.push(ConfFile {
        path: path.into(),
        text: text.into(),
        from_bundle: true,
    });
    files
}

#[test]
fn a_minimal_nginx_conf_gets_the_pid_file_error_log_and_agent_includes_it_relies_on() {
    let text = "user www-data www-data;\ndaemon off;\nevents {}\nhttp {\n    server {\n        listen 80;\n        listen [::]:80;\n        location / { proxy_pass http://localhost:5000/app/; }\n    }\n}";
    let out = translate(&one_file("nginx.conf", text), &host()).expect("translates");
    let file = text_of(&out, "nginx.conf");
    assert!(file.contains("http { include conf.d/hostmanager_upstream.conf; include conf.d/healthd_logformat.conf;\n"), "{file}");
    assert!(file.contains("listen 127.0.0.1:18080;"), "{file}");
    assert!(!file.contains("listen [::]:80;"), "{file}");
    assert!(
        file.contains("proxy_pass http://hostmanager_web/app/;"),
        "{file}"
    );
    assert!(file.ends_with("}\npid /srv/hm/var/lib/hostmanager/nginx/run/nginx.pid; # hostmanager: added (the agent finds its nginx master by this pid file)\nerror_log /srv/hm/var/log/nginx/error.log warn; # hostmanager: added (nginx's errors go to the agent's log directory)\n"), "{file}");
    assert_eq!(
        out.warnings.len(),
        1,
        "no healthd include: {:?}",
        out.warnings
    );
    let removed: Vec<&str> = out
        .translations
        .iter()
        .filter(|t| t.became.is_empty())
        .map(|t| t.directive.as_str())
        .collect();
    assert_eq!(
        removed,
        ["user www-data www-data", "daemon off", "listen [::]:80"]
    );
    let shown = shown(&out);
    assert!(
        shown.contains(&"nginx.conf: added `pid /srv/hm/var/lib/hostmanager/nginx/run/nginx.pid`: the agent finds its nginx master by this pid file".to_string()),
        "{shown:?}"
    );
}

#[test]
fn paths_are_translated_or_refused_by_where_they_lead() {
    let text = "load_module modules/ngx_http_geoip_module.so;\nload_module /usr/lib/nginx/modules/ngx_stream_module.so;\nload_module /var/app/current/evil.so;\nhttp {\n  include /etc/nginx/conf.d/*.conf;\n  include /etc/nginx/mime.types;\n  include ../../escape.conf;\n  error_log syslog:server=127.0.0.1 info;\n  access_log /var/log/nginx/../../../etc/cron.d/x;\n  server { include conf.d/elasticbeanstalk/*.conf; }\n}\npid /run/nginx.pid;\nerror_log stderr;\n";
    let refusals = translate(&one_file("nginx.conf", text), &host()).expect_err("refused");
    let lines: Vec<(u32, &str)> = refusals
        .iter()
        .map(|r| (r.line, r.directive.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (3, "load_module /var/app/current/evil.so"),
            (7, "include ../../escape.conf"),
            (9, "access_log /var/log/nginx/../../../etc/cron.d/x"),
        ]
    );
    let safe: String = text
        .lines()
        .filter(|l| !l.contains("evil") && !l.contains("escape") && !l.contains("cron"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = translate(&one_file("nginx.conf", &safe), &host()).expect("translates");
    let file = text_of(&out, "nginx.conf");
    assert!(
        file.contains("load_module /usr/lib/nginx/modules/ngx_http_geoip_module.so;"),
        "{file}"
    );
    assert!(file.contains("include conf.d/*.conf;"), "{file}");
    assert!(file.contains("include /etc/nginx/mime.types;"), "{file}");
    assert!(
        file.contains("pid /srv/hm/var/lib/hostmanager/nginx/run/nginx.pid;"),
        "{file}"
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn a_bundle_file_that_is_not_nginx_syntax_is_refused_with_its_line() {
    let refusals = translate(
        &one_file("conf.d/broken.conf", "gzip on;\nlocation / {\n"),
        &host(),
    )
    .expect_err("refused");
    assert_eq!(refusals.len(), 1);
    assert_eq!(
        refusals[0].to_string(),
        "conf.d/broken.conf line 2: not valid nginx syntax: unexpected end of file: the \"{\" opened here is never closed"
    );
}

#[test]
fn an_inline_healthd_format_gives_way_to_the_agents() {
    let text = "events {}\nhttp {\n  log_format healthd '$msec\"$uri\"';\n  include conf.d/*.conf;\n  server { listen 80; include conf.d/elasticbeanstalk/*.conf; }\n}\npid x;\nerror_log stderr;\n";
    let out = translate(&one_file("nginx.conf", text), &host()).expect("translates");
    let file = text_of(&out, "nginx.conf");
    assert!(
        !file
            .lines()
            .any(|l| l.trim_start().starts_with("log_format healthd")),
        "{file}"
    );
    assert!(file.contains("removed `log_format healthd"), "{file}");
}

/// Found by `fuzz/fuzz_targets/nginx_overrides.rs`: a `pid` without an argument (or with a
/// block) made the translation index an argument that is not there, a panic.
#[test]
fn a_pid_without_its_argument_is_refused_not_a_panic() {
    for text in [
        "pid;\nhttp {}\n",
        "pid {\n  include mime.types;\n}\nhttp {}\n",
    ] {
        let refusals = translate(&one_file("nginx.conf", text), &host()).expect_err(text);
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert_eq!(refusals[0].line, 1);
        assert!(
            refusals[0].why.contains("pid takes one argument"),
            "{refusals:?}"
        );
    }
}

/// Found by `fuzz/fuzz_targets/nginx_overrides.rs`: a removed directive with a block
/// (`user { … }`) still had its children translated, and the overlapping edits cut the file
/// apart (or out of bounds).
#[test]
fn the_directives_of_a_removed_block_are_not_edited_too() {
    let text = "user{o{access_log /var/log/nginx/; }}";
    let out = translate(&one_file("nginx.conf", text), &host()).expect("translates");
    let file = out
        .files
        .iter()
        .find(|f| f.path == "nginx.conf")
        .expect("nginx.conf");
    assert!(parse(&file.text).is_ok(), "{}", file.text);
    assert!(!file.text.contains("access_log"), "{}", file.text);
}
