use std::collections::BTreeSet;

use super::build::package_facts;
use super::*;
use crate::config::{PlatformChoice, default_config};
use crate::deploy::ProcfileEntry;

fn facts(files: &[&str]) -> BundleFacts {
    BundleFacts {
        files: files.iter().map(|f| f.to_string()).collect(),
        dirs: BTreeSet::new(),
        ..BundleFacts::default()
    }
}

fn procfile(web: &str) -> Option<Vec<ProcfileEntry>> {
    Some(vec![ProcfileEntry {
        name: "web".into(),
        command: web.into(),
        line: 1,
    }])
}

fn dirs() -> BuildDirs {
    BuildDirs {
        venv: "/hm/var/lib/hostmanager/venvs/7".into(),
        cache: "/hm/var/cache/hostmanager/build/0".into(),
    }
}

fn planned(platform: PlatformName, facts: &BundleFacts) -> Plan {
    plan(platform, facts, &default_config().platform, &dirs()).expect("a plan")
}

#[test]
fn auto_detection_names_the_file_it_went_by() {
    let cases = [
        (
            &["requirements.txt", "package.json"][..],
            PlatformName::Python,
            "requirements.txt",
        ),
        (
            &["application.py"][..],
            PlatformName::Python,
            "application.py",
        ),
        (&["package.json"][..], PlatformName::Nodejs, "package.json"),
        (&["server.js"][..], PlatformName::Nodejs, "server.js"),
        (&["go.mod", "main.go"][..], PlatformName::Go, "go.mod"),
        (&["main.go"][..], PlatformName::Go, "main.go"),
        (&["app-1.0.jar"][..], PlatformName::Java, "app-1.0.jar"),
    ];
    for (files, platform, file) in cases {
        let choice = choose(PlatformChoice::Auto, &facts(files)).expect("detected");
        assert_eq!(choice.platform, platform, "{files:?}");
        assert_eq!(
            choice.reason,
            format!("detected: {file} at the bundle's root")
        );
    }
    let only_procfile = BundleFacts {
        procfile: procfile("./run"),
        ..facts(&["Procfile", "run"])
    };
    let choice = choose(PlatformChoice::Auto, &only_procfile).expect("procfile");
    assert_eq!(choice.platform, PlatformName::Procfile);
    let error = choose(PlatformChoice::Auto, &facts(&["README.md"])).expect_err("nothing");
    assert!(error.contains("no Procfile at its root"), "{error}");
    assert!(error.contains("platform.name"), "{error}");
    let fixed = choose(
        PlatformChoice::Fixed(PlatformName::Go),
        &facts(&["package.json"]),
    );
    assert_eq!(fixed.expect("fixed").platform, PlatformName::Go);
}

#[test]
fn python_builds_a_venv_with_gunicorn_and_serves_the_wsgi_application() {
    let bundle = BundleFacts {
        requirements: Some("Flask==3.0.0\n".into()),
        ..facts(&["requirements.txt", "application.py"])
    };
    let plan = planned(PlatformName::Python, &bundle);
    let labels: Vec<&str> = plan.build.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "python3 -m venv",
            "pip install -r requirements.txt gunicorn"
        ]
    );
    assert_eq!(
        plan.build[1].program,
        "/hm/var/lib/hostmanager/venvs/7/bin/python"
    );
    assert!(
        plan.build[1]
            .args
            .windows(2)
            .any(|w| w == ["--cache-dir", "/hm/var/cache/hostmanager/build/0/pip"])
    );
    assert_eq!(
        plan.default_web.as_deref(),
        Some(
            "exec gunicorn --bind 127.0.0.1:$PORT --workers 1 --threads 15 application:application"
        )
    );
    assert_eq!(plan.server.as_deref(), Some("gunicorn"));
    assert!(plan.env["PATH"].starts_with("/hm/var/lib/hostmanager/venvs/7/bin:"));
    assert_eq!(
        plan.static_files,
        [("/static".to_string(), "static".to_string())]
    );
}

#[test]
fn a_procfile_wins_and_gunicorn_is_added_only_when_it_is_used_and_not_listed() {
    let listed = BundleFacts {
        requirements: Some("gunicorn==22.0.0\nflask\n".into()),
        procfile: procfile("gunicorn --bind :$PORT app:app"),
        ..facts(&["requirements.txt", "Procfile"])
    };
    let plan = planned(PlatformName::Python, &listed);
    assert_eq!(plan.build[1].label, "pip install -r requirements.txt");
    assert_eq!(plan.default_web, None);
    assert_eq!(plan.server.as_deref(), Some("gunicorn"));
    let own_server = BundleFacts {
        procfile: procfile("python3 application.py"),
        ..facts(&["application.py", "Procfile"])
    };
    let plan = planned(PlatformName::Python, &own_server);
    assert!(
        plan.build.is_empty(),
        "nothing to install: {:?}",
        plan.build
    );
    assert_eq!(plan.venv, None);
    assert_eq!(plan.server, None, "python3 is not an application server");
}

#[test]
fn wsgi_paths_become_gunicorn_targets() {
    assert_eq!(plan::wsgi_target("application"), "application:application");
    assert_eq!(
        plan::wsgi_target("application.py"),
        "application:application"
    );
    assert_eq!(
        plan::wsgi_target("ebdjango/wsgi.py"),
        "ebdjango.wsgi:application"
    );
    assert_eq!(
        plan::wsgi_target("ebdjango.wsgi"),
        "ebdjango.wsgi:application"
    );
    assert_eq!(plan::wsgi_target("app:server"), "app:server");
}

#[test]
fn nodejs_installs_with_npm_ci_when_locked_and_starts_in_ebs_order() {
    let locked = BundleFacts {
        package: Some(PackageFacts {
            start_script: true,
            has_dependencies: true,
        }),
        ..facts(&["package.json", "package-lock.json", "app.js"])
    };
    let plan = planned(PlatformName::Nodejs, &locked);
    assert_eq!(plan.build.len(), 1);
    assert_eq!(plan.build[0].label, "npm ci --omit=dev");
    assert_eq!(plan.default_web.as_deref(), Some("exec npm start"));
    let unlocked = BundleFacts {
        package: Some(PackageFacts {
            start_script: false,
            has_dependencies: true,
        }),
        ..facts(&["package.json", "index.js", "server.js"])
    };
    let plan = planned(PlatformName::Nodejs, &unlocked);
    assert_eq!(plan.build[0].label, "npm install --omit=dev");
    assert_eq!(plan.default_web.as_deref(), Some("node server.js"));
    let error = plan::plan(
        PlatformName::Nodejs,
        &facts(&["package.json"]),
        &default_config().platform,
        &dirs(),
    )
    .expect_err("nothing to start");
    assert!(error.contains("app.js, server.js, index.js"), "{error}");
}

#[test]
fn package_json_facts_and_its_errors() {
    let facts = package_facts(r#"{"scripts":{"start":"node app.js"},"dependencies":{"ms":"2"}}"#)
        .expect("parses");
    assert!(facts.start_script && facts.has_dependencies);
    let facts = package_facts(r#"{"name":"x","dependencies":{}}"#).expect("parses");
    assert!(!facts.start_script && !facts.has_dependencies);
    let error = package_facts("{").expect_err("not JSON");
    assert!(
        error.message.starts_with("package.json is not valid JSON"),
        "{}",
        error.message
    );
}

#[test]
fn go_builds_application_go_unless_the_bundle_carries_the_binary() {
    let plan = planned(PlatformName::Go, &facts(&["application.go", "go.mod"]));
    assert_eq!(
        plan.build[0].args,
        ["build", "-o", "bin/application", "application.go"]
    );
    assert_eq!(plan.build[0].env["GOTOOLCHAIN"], "local");
    assert_eq!(plan.default_web.as_deref(), Some("bin/application"));
    let module = planned(PlatformName::Go, &facts(&["go.mod", "main.go"]));
    assert_eq!(module.build[0].args.last().map(String::as_str), Some("."));
    let prebuilt = BundleFacts {
        bin_application: true,
        ..facts(&["application.go"])
    };
    let plan = planned(PlatformName::Go, &prebuilt);
    assert!(plan.build.is_empty());
    assert_eq!(plan.default_web.as_deref(), Some("bin/application"));
}

#[test]
fn java_runs_the_single_jar_with_the_jvm_options() {
    let mut config = default_config().platform;
    config.java.jvm_options = vec!["-Xmx256m".into(), "-Dapp.name=it's".into()];
    let plan = plan::plan(
        PlatformName::Java,
        &facts(&["app-1.0.jar"]),
        &config,
        &dirs(),
    )
    .expect("plan");
    assert_eq!(
        plan.default_web.as_deref(),
        Some(r"exec java -Xmx256m '-Dapp.name=it'\''s' -jar app-1.0.jar")
    );
    assert!(plan.build.is_empty());
    let named = planned(PlatformName::Java, &facts(&["a.jar", "application.jar"]));
    assert_eq!(
        named.default_web.as_deref(),
        Some("exec java -jar application.jar")
    );
    let error = plan::plan(
        PlatformName::Java,
        &facts(&["a.jar", "b.jar"]),
        &config,
        &dirs(),
    )
    .expect_err("ambiguous");
    assert!(
        error.contains("2 .jar files at the bundle's root (a.jar, b.jar)"),
        "{error}"
    );
}

#[test]
fn the_procfile_platform_requires_a_procfile() {
    let error = plan::plan(
        PlatformName::Procfile,
        &facts(&["application.py"]),
        &default_config().platform,
        &dirs(),
    )
    .expect_err("no Procfile");
    assert!(error.contains("no readable Procfile"), "{error}");
}
