//! A bundle's `.platform/nginx` files (`proxy/overrides/`): parsed with nginx's lexical rules,
//! then translated from Elastic Beanstalk's platform to this host, or refused.
//!
//! Input: the files of `.platform/nginx`, each after a line `=== PATH` (text before the
//! first such line is `conf.d/fuzz.conf`), laid over the agent's rendered files as a
//! generation holds them.
//!
//! Properties: the agent's own files always parse; whatever is accepted is still valid nginx
//! syntax after the translations edited it (nginx would otherwise refuse the generation at
//! `nginx -t`, or worse, read it differently), and every refusal and translation names a
//! file of the generation.
#![no_main]

use std::sync::LazyLock;

use hostmanager::proxy::overrides::{ConfFile, Host, parse, translate};
use hostmanager::proxy::{NginxModel, render};
use libfuzzer_sys::fuzz_target;

static AGENT_FILES: LazyLock<Vec<ConfFile>> = LazyLock::new(|| {
    let model = NginxModel {
        worker_processes: "auto".into(),
        worker_connections: 1024,
        listen: "127.0.0.1:18080".parse().expect("addr"),
        client_max_body_size: "10m".into(),
        upstream_port: 18501,
        switch: None,
        pid_file: "/srv/hm/var/lib/hostmanager/nginx/run/nginx.pid".into(),
        temp_dir: "/srv/hm/var/lib/hostmanager/nginx/tmp".into(),
        html_dir: "/srv/hm/var/lib/hostmanager/nginx/html".into(),
        error_log: "/srv/hm/var/log/nginx/error.log".into(),
        access_log: "/srv/hm/var/log/nginx/access.log".into(),
        healthd_dir: "/srv/hm/var/log/nginx/healthd".into(),
        mime_types: Some("/etc/nginx/mime.types".into()),
        static_files: vec![("/static".into(), "/srv/hm/app/current/static".into())],
        worker_timeout: None,
    };
    let files: Vec<ConfFile> = render(&model)
        .into_iter()
        .map(|f| ConfFile {
            path: f.path.to_string(),
            text: f.content,
            from_bundle: false,
        })
        .collect();
    for file in &files {
        assert!(
            parse(&file.text).is_ok(),
            "the agent's {} parses",
            file.path
        );
    }
    files
});

static HOST: LazyLock<Host> = LazyLock::new(|| Host {
    app_ports: [5000, 8000, 8080, 18500, 18501].into(),
    app_endpoint: "127.0.0.1:18501".into(),
    balancer: None,
    modules: Vec::new(),
    upstream: "hostmanager_web".into(),
    listen: "127.0.0.1:18080".parse().expect("addr"),
    pid_file: "/srv/hm/var/lib/hostmanager/nginx/run/nginx.pid".into(),
    log_dir: "/srv/hm/var/log/nginx".into(),
    worker_user: "nobody".into(),
});

fn bundle_files(text: &str) -> Vec<ConfFile> {
    let mut files = Vec::new();
    let mut path = "conf.d/fuzz.conf".to_string();
    let mut body = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(next) = line.strip_prefix("=== ") {
            files.push((std::mem::take(&mut path), std::mem::take(&mut body)));
            path = next.trim().to_string();
        } else {
            body.push_str(line);
        }
    }
    files.push((path, body));
    files
        .into_iter()
        .filter(|(path, body)| !(path == "conf.d/fuzz.conf" && body.is_empty()))
        .map(|(path, text)| ConfFile {
            path,
            text,
            from_bundle: true,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bundle = bundle_files(text);
    // A bundle's file replaces the agent's of the same name.
    let mut files: Vec<ConfFile> = AGENT_FILES
        .iter()
        .filter(|f| bundle.iter().all(|b| b.path != f.path))
        .cloned()
        .collect();
    files.extend(bundle);
    let known = |name: &str| name.is_empty() || files.iter().any(|f| f.path == name);
    match translate(&files, &HOST) {
        Ok(translated) => {
            for file in &translated.files {
                if let Err(error) = parse(&file.text) {
                    panic!(
                        "{} no longer parses after translation: {error:?}\n{}",
                        file.path, file.text
                    );
                }
            }
            for t in &translated.translations {
                assert!(
                    known(&t.file) || translated.files.iter().any(|f| f.path == t.file),
                    "{t:?}"
                );
            }
        }
        Err(refusals) => {
            assert!(!refusals.is_empty());
            for refusal in &refusals {
                assert!(known(&refusal.file), "{refusal:?}");
                assert!(!refusal.why.is_empty());
            }
        }
    }
});
