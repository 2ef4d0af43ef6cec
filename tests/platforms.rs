//! Bundles without a Procfile on each platform, as Elastic Beanstalk's samples are laid out:
//! built with the host's real runtime (packages from PyPI and npm), served through nginx,
//! redeployed under load with no failed request; a Procfile overrides the default; a build
//! failure is refused with the tool's own message while the old release keeps serving.

mod common;

use common::TestHost;
use common::platforms::{
    build_fails, java_jar, platform_bundle, platform_line, redeploy_under_load, serving_platform,
};

fn started_host() -> TestHost {
    let mut host = TestHost::new();
    host.start();
    host
}

#[test]
fn python_builds_a_venv_serves_gunicorn_and_its_static_files() {
    let mut host = TestHost::new().set("deploy", "releases_to_keep", 2);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = host.deploy_ok(&platform_bundle(dir.path(), "python", "v1", &[]));
    assert_eq!(host.body("/"), "python v1");
    // nginx serves static/ itself: the app would answer "python v1".
    assert_eq!(
        host.body("/static/hello.txt"),
        "served by nginx from static/\n"
    );
    let platform = serving_platform(&host);
    assert_eq!(platform["platform"], "python", "{platform:#}");
    assert_eq!(platform["server"], "gunicorn");
    let version = platform["version"].as_str().expect("runtime version");
    assert!(version.starts_with("Python 3."), "{version}");
    let line = platform_line(&host, &record["id"]);
    assert!(
        line.contains("detected: requirements.txt at the bundle's root")
            && line.contains(
                "gunicorn --bind 127.0.0.1:$PORT --workers 1 --threads 15 application:application"
            ),
        "{line}"
    );
    let hooks =
        std::fs::read_to_string(host.path("var/log/hostmanager/hooks.log")).expect("hooks.log");
    assert!(
        hooks.contains("platform build `pip install -r requirements.txt gunicorn`"),
        "{hooks}"
    );
    // A link the app plants in its static directory to a file it does not own is not served.
    let static_dir = host.path("var/app/current/static");
    let link = static_dir.join("hostname");
    std::os::unix::fs::symlink("/etc/hostname", &link).expect("symlink");
    let app_user = nix::unistd::User::from_name(&common::app_user())
        .expect("lookup")
        .expect("user");
    std::os::unix::fs::lchown(
        &link,
        Some(app_user.uid.as_raw()),
        Some(app_user.gid.as_raw()),
    )
    .expect("lchown");
    let leaked = host.get("/static/hostname").expect("GET");
    assert_eq!(leaked.status, 403, "{}", leaked.body);
    let venv = platform["venv"].as_str().expect("venv");
    assert!(
        std::path::Path::new(venv).join("bin/gunicorn").exists(),
        "{venv}"
    );

    let v2 = platform_bundle(dir.path(), "python", "v2", &[]);
    redeploy_under_load(&host, &v2, "python v1", "python v2");

    let unresolvable = platform_bundle(
        dir.path(),
        "python",
        "v3",
        &[(
            "requirements.txt",
            b"no-such-package-for-hostmanager-tests==9.9.9\n",
        )],
    );
    build_fails(
        &host,
        &unresolvable,
        "no-such-package-for-hostmanager-tests",
        "python v2",
    );

    // The Procfile names its own callable (gunicorn still comes with the platform).
    let procfile = platform_bundle(
        dir.path(),
        "python",
        "v4",
        &[(
            "Procfile",
            b"web: gunicorn --bind 127.0.0.1:$PORT application:procfile_application\n",
        )],
    );
    host.deploy_ok(&procfile);
    assert_eq!(host.body("/"), "python v4 procfile");
    assert!(
        !std::path::Path::new(venv).exists(),
        "retention removes old venvs with their releases"
    );
    assert!(
        !host.path("var/lib/hostmanager/venvs/3").exists(),
        "a failed build's venv is removed with its release"
    );
}

#[test]
fn nodejs_installs_with_npm_ci_and_runs_npm_start() {
    let host = started_host();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = host.deploy_ok(&platform_bundle(dir.path(), "nodejs", "v1", &[]));
    // "1m" comes from the `ms` package npm installed.
    assert_eq!(host.body("/"), "nodejs v1 1m");
    let platform = serving_platform(&host);
    assert_eq!(platform["platform"], "nodejs", "{platform:#}");
    assert_eq!(platform["server"], "npm start");
    assert!(
        platform["version"]
            .as_str()
            .expect("version")
            .starts_with('v')
    );
    let line = platform_line(&host, &record["id"]);
    assert!(
        line.contains("detected: package.json") && line.contains("`exec npm start`"),
        "{line}"
    );

    let v2 = platform_bundle(dir.path(), "nodejs", "v2", &[]);
    redeploy_under_load(&host, &v2, "nodejs v1 1m", "nodejs v2 1m");

    // package.json no longer matches its lockfile: `npm ci` refuses.
    let out_of_sync = platform_bundle(
        dir.path(),
        "nodejs",
        "v3",
        &[(
            "package.json",
            br#"{"name":"hostmanager-platform-sample","version":"1.0.0","scripts":{"start":"node app.js"},"dependencies":{"ms":"2.1.2"}}"#,
        )],
    );
    build_fails(&host, &out_of_sync, "in sync", "nodejs v2 1m");

    let procfile = platform_bundle(
        dir.path(),
        "nodejs",
        "v4",
        &[("Procfile", b"web: node app.js procfile\n")],
    );
    host.deploy_ok(&procfile);
    assert_eq!(host.body("/"), "nodejs v4 1m procfile");
}

#[test]
fn go_builds_application_go_into_bin_application() {
    let host = started_host();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = host.deploy_ok(&platform_bundle(dir.path(), "go", "v1", &[]));
    assert_eq!(host.body("/"), "go v1");
    let platform = serving_platform(&host);
    assert_eq!(platform["platform"], "go", "{platform:#}");
    assert!(
        platform["version"]
            .as_str()
            .expect("version")
            .starts_with("go version go1.")
    );
    let line = platform_line(&host, &record["id"]);
    assert!(
        line.contains("detected: go.mod") && line.contains("`bin/application`"),
        "{line}"
    );

    let v2 = platform_bundle(dir.path(), "go", "v2", &[]);
    redeploy_under_load(&host, &v2, "go v1", "go v2");

    let broken = platform_bundle(
        dir.path(),
        "go",
        "v3",
        &[("application.go", b"package main\n\nfunc main() {\n")],
    );
    build_fails(&host, &broken, "application.go:", "go v2");

    let procfile = platform_bundle(
        dir.path(),
        "go",
        "v4",
        &[("Procfile", b"web: bin/application procfile\n")],
    );
    host.deploy_ok(&procfile);
    assert_eq!(host.body("/"), "go v4 procfile");
}

#[test]
fn java_runs_the_bundles_jar() {
    let host = started_host();
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = java_jar(dir.path());
    let bundle = |version: &str, extra: &[(&str, &[u8])]| {
        let mut files: Vec<(&str, &[u8])> = vec![("app.jar", &jar), ("Application.java", b"")];
        files.extend_from_slice(extra);
        platform_bundle(dir.path(), "java", version, &files)
    };
    let record = host.deploy_ok(&bundle("v1", &[]));
    assert_eq!(host.body("/"), "java v1");
    let platform = serving_platform(&host);
    assert_eq!(platform["platform"], "java", "{platform:#}");
    assert_eq!(platform["server"], "java");
    let line = platform_line(&host, &record["id"]);
    assert!(
        line.contains("detected: app.jar") && line.contains("`exec java -jar app.jar`"),
        "{line}"
    );

    redeploy_under_load(&host, &bundle("v2", &[]), "java v1", "java v2");

    let procfile = bundle("v3", &[("Procfile", b"web: java -jar app.jar procfile\n")]);
    host.deploy_ok(&procfile);
    assert_eq!(host.body("/"), "java v3 procfile");
}

#[test]
fn an_environments_platform_options_reach_its_hosts_and_bad_ones_are_refused_by_name() {
    use common::fleet::{TestController, fleet_in};
    let controller = TestController::start(None);
    // WSGIPath names the fixture's second callable: only the controller's option makes the
    // default gunicorn serve it.
    let hosts = fleet_in(
        &controller,
        "web",
        1,
        &["aws:elasticbeanstalk:container:python:WSGIPath=application:procfile_application"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = platform_bundle(dir.path(), "python", "v1", &[]);
    controller.deploy_wait("web", &bundle, "v1");
    common::wait_for(
        "the host serves v1",
        std::time::Duration::from_secs(60),
        || (hosts[0].get("/").ok()?.body == "python v1 procfile").then_some(()),
    );
    let platform = serving_platform(&hosts[0]);
    assert_eq!(
        platform["options"]["aws:elasticbeanstalk:container:python:WSGIPath"],
        "application:procfile_application"
    );
    let shown = common::wait_for(
        "the controller shows the platform",
        std::time::Duration::from_secs(30),
        || {
            let instances = controller.api("/v1/environments/web/instances");
            instances["InstanceHealthList"][0]["Deployment"]["Platform"]
                .as_str()
                .map(str::to_string)
        },
    );
    assert!(shown.starts_with("python (Python 3."), "{shown}");

    let refused = controller.cli(&[
        "deploy",
        "web",
        bundle.to_str().expect("path"),
        "--label",
        "v2",
        "--option",
        "hostmanager:platform:Name=ruby",
    ]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("hostmanager:platform:Name: \"ruby\" is not valid"),
        "{said}"
    );
}

#[test]
fn a_bundle_with_nothing_to_start_is_refused_in_the_platform_step_saying_why() {
    use common::bundles::{Entry, zip};
    let host = started_host();
    let dir = tempfile::tempdir().expect("tempdir");
    let nothing = zip(
        dir.path(),
        "nothing.zip",
        &[Entry::File("README.md", b"hello", 0o644)],
    );
    let record = host.deploy(&nothing, &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("platform: bundle rejected: no Procfile at its root")
            && message.contains("set platform.name"),
        "{message}"
    );
    let no_web = zip(
        dir.path(),
        "worker-only.zip",
        &[Entry::File(
            "Procfile",
            b"worker: python3 worker.py\n",
            0o644,
        )],
    );
    let record = host.deploy(&no_web, &[]);
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(
        record["message"], "platform: Procfile has no `web` process for nginx to proxy to",
        "{record:#}"
    );
}
