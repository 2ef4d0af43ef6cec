//! nginx overrides as Elastic Beanstalk bundles write them (`tests/fixtures/eb-overrides/`),
//! deployed with the sample app behind a real nginx: each serves with its translations
//! listed, or the deployment fails and the previous release keeps serving.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::bundles::{Entry, sample};
use common::http::request;
use common::load::{Load, assert_every_request_served};
use common::{TestHost, free_ports};
use serde_json::Value;

fn corpus(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eb-overrides")
        .join(case)
}

/// `(path under .platform/nginx, content)` of a corpus case.
fn case_files(case: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus(case);
    let mut files = Vec::new();
    for sub in ["", "conf.d", "conf.d/elasticbeanstalk"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && entry.path().is_file() {
                let relative = if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                };
                files.push((relative, std::fs::read(entry.path()).expect("read")));
            }
        }
    }
    assert!(!files.is_empty(), "corpus case {case} has no files");
    files
}

/// The sample app at `version` with `files` as its `.platform/nginx`.
fn bundle_with(dir: &Path, version: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
    let names: Vec<String> = files
        .iter()
        .map(|(path, _)| format!(".platform/nginx/{path}"))
        .collect();
    let entries: Vec<Entry<'_>> = files
        .iter()
        .zip(&names)
        .map(|((_, content), name)| Entry::File(name, content, 0o644))
        .collect();
    sample(dir, version, &entries)
}

fn bundle(dir: &Path, version: &str, case: &str) -> PathBuf {
    bundle_with(dir, version, &case_files(case))
}

fn translations(record: &Value) -> Vec<String> {
    record["proxy_translations"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|t| {
                    format!(
                        "{} {}",
                        t["file"].as_str().unwrap_or(""),
                        t["directive"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn step_names(record: &Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn overrides_written_for_eb_serve_through_nginx_with_each_translation_listed() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "location-8080",
            "conf.d/elasticbeanstalk/00_application.conf proxy_pass http://127.0.0.1:8080",
        ),
        ("eb-upstream-name", "conf.d/hostmanager_eb_upstreams.conf "),
        // The bundle's upstream picks the app's port per request (the runtime switch).
        ("upstream-defined", "conf.d/upstream.conf upstream nodejs"),
        ("full-nginx-conf", "nginx.conf user nginx"),
        (
            "sse",
            "conf.d/elasticbeanstalk/sse.conf proxy_pass http://localhost:8080",
        ),
    ];
    for (n, (case, expected)) in cases.iter().enumerate() {
        let version = format!("v{n}");
        let record = host.deploy_ok(&bundle(dir.path(), &version, case));
        let listed = translations(&record);
        assert!(
            listed.iter().any(|t| t == expected),
            "{case}: {expected:?} not among the translations {listed:?}"
        );
        assert!(
            step_names(&record).contains(&"verify-through-nginx".to_string()),
            "{case}: {record:#}"
        );
        let page = host.get("/").expect("through nginx");
        assert_eq!(
            (page.status, page.body.as_str()),
            (200, format!("Hello from {version}\n").as_str()),
            "{case}"
        );
        let events = host.events();
        let reported = events.iter().any(|e| {
            e["deployment_id"] == record["id"]
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("nginx override translated: "))
        });
        assert!(reported, "{case}: no info event for the translations");
    }
    // The last one, the SSE location, streams from the app through the translated proxy_pass.
    let events = host.get("/events/stream").expect("sse location");
    assert_eq!(events.status, 200);
    assert_eq!(events.header("X-Accel-Buffering"), Some("no"));
    let deploy_log =
        std::fs::read_to_string(host.path("var/log/hostmanager/deploy.log")).expect("deploy.log");
    assert!(
        deploy_log.contains("nginx override translated: nginx.conf line 3: `user nginx` removed"),
        "{deploy_log}"
    );
    let shown = host.cli_ok(&["proxy", "config"]);
    for expected in [
        "the bundle's .platform/nginx: conf.d/elasticbeanstalk/sse.conf",
        "translated for this host:\n  conf.d/elasticbeanstalk/sse.conf line 3: `proxy_pass http://localhost:8080` -> `proxy_pass http://hostmanager_web`",
        "==> conf.d/elasticbeanstalk/sse.conf <==",
        "proxy_pass              http://hostmanager_web; # hostmanager: was `proxy_pass http://localhost:8080`",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in:\n{shown}");
    }
}

#[test]
fn a_full_eb_nginx_conf_runs_as_the_host_needs_it() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&bundle(dir.path(), "v1", "full-nginx-conf"));
    let page = host.get("/").expect("through nginx");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("X-Full-Config"), Some("eb-default"));
    // The agent still finds its master (pid file) and its logs (access, error, healthd).
    let status = host.status();
    assert_eq!(status["proxy"]["running"], true, "{status:#}");
    let access =
        std::fs::read_to_string(host.path("var/log/nginx/access.log")).expect("access.log");
    assert!(access.contains("GET / HTTP/1.0"), "{access}");
    let view: Value =
        serde_json::from_str(&host.cli_ok(&["proxy", "config", "--json"])).expect("json");
    let main = view["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == "nginx.conf")
        .expect("nginx.conf");
    let text = main["content"].as_str().expect("content");
    assert!(
        text.contains(&format!(
            "listen        127.0.0.1:{} default_server;",
            host.proxy_port
        )),
        "{text}"
    );
    assert!(!text.contains("/var/run/nginx.pid;"), "{text}");
}

#[test]
fn an_https_redirect_that_exempts_the_health_checker_behaves_as_on_eb() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&bundle(dir.path(), "v1", "https-redirect"));
    let redirected = request(
        host.proxy_port,
        "GET",
        "/",
        &[("X-Forwarded-Proto", "http")],
        &[],
    )
    .expect("get");
    assert_eq!(redirected.status, 301);
    let behind_tls = request(
        host.proxy_port,
        "GET",
        "/",
        &[("X-Forwarded-Proto", "https")],
        &[],
    )
    .expect("get");
    assert_eq!(behind_tls.status, 200);
    // The deployment's check through nginx came as EB's health checker, and was let through.
    let access =
        std::fs::read_to_string(host.path("var/log/nginx/access.log")).expect("access.log");
    assert!(
        access
            .lines()
            .any(|l| l.contains("\"GET /health HTTP/1.1\" 200")
                && l.contains("\"ELB-HealthChecker/2.0\"")),
        "{access}"
    );
}

#[test]
fn a_body_size_and_a_gzip_block_from_the_bundle_apply() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let upload = vec![b'x'; 15 << 20];
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let refused = request(host.proxy_port, "POST", "/", &[], &upload).expect("post");
    assert_eq!(
        refused.status, 413,
        "proxy.client_max_body_size (10m) applies by default"
    );
    let mut files = case_files("body-size");
    files.extend(case_files("gzip"));
    host.deploy_ok(&bundle_with(dir.path(), "v2", &files));
    let accepted = request(host.proxy_port, "POST", "/", &[], &upload).expect("post");
    // nginx answers 413 before it proxies anything; past it, the sample app (no POST handler)
    // answers 501, or nginx 502 when the app hangs up while the body is still coming.
    assert_ne!(
        accepted.status, 413,
        "the bundle's 20M applies: {accepted:?}"
    );
    let long = "y".repeat(400);
    let record = host.cli(&[
        "configure",
        "--set",
        &format!("LONG={long}"),
        "--wait",
        "--json",
    ]);
    assert!(record.status.success());
    let compressed = request(
        host.proxy_port,
        "GET",
        "/env/LONG",
        &[("Accept-Encoding", "gzip")],
        &[],
    )
    .expect("get");
    assert_eq!(
        compressed.header("Content-Encoding"),
        Some("gzip"),
        "{compressed:?}"
    );
}

#[test]
fn an_override_that_breaks_the_site_fails_the_deployment_and_the_previous_release_serves() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let record = host.deploy(&bundle(dir.path(), "v2", "breaks-site"), &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(
        message.starts_with("verify-through-nginx: nginx answers 500 for /health")
            && message.contains(
                "the bundle's nginx overrides (conf.d/elasticbeanstalk/00_application.conf)"
            ),
        "{message}"
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
    let status = host.status();
    assert_eq!(
        status["release"]["version_label"], "sample-v1",
        "{status:#}"
    );
    let processes = status["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 1, "only v1's web runs: {processes:#?}");
}

#[test]
fn an_override_that_proxies_where_nothing_listens_fails_naming_it() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let nowhere = free_ports(1)[0];
    let text = std::fs::read_to_string(corpus(
        "wrong-port/conf.d/elasticbeanstalk/00_application.conf",
    ))
    .expect("corpus")
    .replace("9999", &nowhere.to_string());
    let files = vec![(
        "conf.d/elasticbeanstalk/00_application.conf".to_string(),
        text.into_bytes(),
    )];
    let record = host.deploy(&bundle_with(dir.path(), "v2", &files), &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    let expected = format!(
        "the override `conf.d/elasticbeanstalk/00_application.conf` (line 2) proxies to 127.0.0.1:{nowhere}, where nothing listens; the app listens on $PORT ({})",
        host.alternate_port
    );
    assert!(
        message.starts_with("verify-through-nginx: nginx answers 502 for /health")
            && message.contains(&expected),
        "{message}"
    );
    assert_eq!(host.body("/"), "Hello from v1\n");
}

#[test]
fn an_override_root_must_not_load_is_refused_before_anything_serving_is_touched() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let generation = host.status()["proxy"]["generation"].clone();
    let record = host.deploy(&bundle(dir.path(), "v2", "refused"), &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().expect("message");
    assert!(
        message.starts_with("proxy-config: the bundle's nginx overrides cannot be used on this host: .platform/nginx/conf.d/elasticbeanstalk/extra.conf line 2: `include /var/app/current/nginx-extra.conf`: root's nginx loads only")
            && message.contains(".platform/nginx/conf.d/elasticbeanstalk/extra.conf line 4: `access_log /tmp/app-access.log`: nginx's master runs as root"),
        "{message}"
    );
    assert_eq!(host.status()["proxy"]["generation"], generation);
    assert_eq!(host.body("/"), "Hello from v1\n");
}

#[test]
fn cutovers_with_translated_overrides_under_load_fail_no_request() {
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&bundle(dir.path(), "v0", "location-8080"));
    let load = Load::start(host.proxy_port, "/", 2);
    let mut valid = BTreeSet::from(["Hello from v0\n".to_string()]);
    let cases = [
        "upstream-defined",
        "full-nginx-conf",
        "eb-upstream-name",
        "sse",
        "location-8080",
    ];
    for (n, case) in cases.iter().enumerate() {
        let version = format!("v{}", n + 1);
        valid.insert(format!("Hello from {version}\n"));
        host.deploy_ok(&bundle(dir.path(), &version, case));
    }
    for command in ["restart", "rollback"] {
        let output = host.cli(&[command, "--wait", "--json"]);
        let record: Value = serde_json::from_slice(&output.stdout).expect("json");
        assert_eq!(record["status"], "succeeded", "{command}: {record:#}");
        let steps = step_names(&record);
        assert!(
            steps.iter().any(|s| s.ends_with("verify-through-nginx")),
            "{command}: {steps:?}"
        );
    }
    let outcomes = load.finish();
    assert_eq!(host.body("/"), "Hello from v4\n", "rolled back to v4");
    assert_every_request_served(&outcomes, &valid);
}
