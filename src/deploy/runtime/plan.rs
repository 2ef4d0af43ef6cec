//! How a bundle is built and started on its platform. Pure: facts and options in, commands out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::detect::BundleFacts;
use crate::config::{PlatformConfig, PlatformName};
use crate::deploy::hook_output::Summary;

/// Where a build puts what lives outside the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDirs {
    /// The Python virtualenv of this deployment.
    pub venv: PathBuf,
    /// The build user's download and build caches, shared between releases.
    pub cache: PathBuf,
}

/// One build command: a program and its arguments, never a shell line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildCommand {
    /// As hooks.log and failures name it (`pip install -r requirements.txt`).
    pub label: String,
    pub program: String,
    pub args: Vec<String>,
    /// Added to the hook environment (caches, toolchain settings).
    pub env: BTreeMap<String, String>,
    /// Directories created first, owned by the build user (relative ones in the release).
    pub creates: Vec<PathBuf>,
    /// Where the tool's output says what went wrong, when not in its last lines.
    pub summary: Option<Summary>,
}

/// The command that prints the runtime's version, and what to install when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub program: &'static str,
    pub args: &'static [&'static str],
    pub install: &'static str,
}

/// What a platform does with one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub build: Vec<BuildCommand>,
    /// The web process when the bundle has no Procfile.
    pub default_web: Option<String>,
    /// The application server the web process runs.
    pub server: Option<String>,
    /// For the release's processes and later hooks.
    pub env: BTreeMap<String, String>,
    pub venv: Option<PathBuf>,
    /// Candidate static mappings (kept only where the directory exists in the release).
    pub static_files: Vec<(String, String)>,
    pub probe: Option<Probe>,
}

/// The plan for `platform`; `Err` when there is no Procfile and the platform cannot tell what
/// to start (the message says what it looked for).
pub fn plan(
    platform: PlatformName,
    facts: &BundleFacts,
    options: &PlatformConfig,
    dirs: &BuildDirs,
) -> Result<Plan, String> {
    let mut plan = match platform {
        PlatformName::Python => python(facts, options, dirs),
        PlatformName::Nodejs => nodejs(facts, options, dirs)?,
        PlatformName::Go => go(facts, dirs),
        PlatformName::Java => java(facts, options)?,
        PlatformName::Procfile => Plan::default(),
    };
    // The platform-wide mappings over the platform's own defaults (the same URL replaces).
    plan.static_files
        .retain(|(url, _)| !options.static_files.contains_key(url));
    plan.static_files.extend(
        options
            .static_files
            .iter()
            .map(|(url, dir)| (url.clone(), dir.clone())),
    );
    if let Some(procfile) = &facts.procfile {
        // A Procfile always wins, as on Elastic Beanstalk; the build still runs.
        plan.default_web = None;
        plan.server = procfile
            .iter()
            .find(|e| e.name == "web")
            .and_then(|web| server_of(&web.command))
            .filter(|server| known_servers(platform).contains(&server.as_str()));
    } else if plan.default_web.is_none() {
        return Err(
            "bundle has no readable Procfile at its root (platform procfile requires one)"
                .to_string(),
        );
    }
    Ok(plan)
}

/// The application servers a Procfile's web process is named by in health causes (any other
/// program is just the web process).
fn known_servers(platform: PlatformName) -> &'static [&'static str] {
    match platform {
        PlatformName::Python => &[
            "gunicorn",
            "uwsgi",
            "uvicorn",
            "hypercorn",
            "daphne",
            "waitress-serve",
        ],
        PlatformName::Nodejs => &["node", "npm", "yarn", "pm2-runtime"],
        PlatformName::Java => &["java"],
        PlatformName::Go | PlatformName::Procfile => &[],
    }
}

/// The program a command line starts: its first word after `exec` and `VAR=value` words.
fn server_of(command: &str) -> Option<String> {
    let word = command
        .split_whitespace()
        .find(|w| *w != "exec" && !w.contains('='))?;
    let name = Path::new(word).file_name()?.to_string_lossy().to_string();
    Some(name)
}

fn python(facts: &BundleFacts, options: &PlatformConfig, dirs: &BuildDirs) -> Plan {
    let requirements = facts.requirements.as_deref();
    let uses_gunicorn = match &facts.procfile {
        None => true,
        Some(procfile) => procfile
            .iter()
            .any(|e| server_of(&e.command).as_deref() == Some("gunicorn")),
    };
    // Elastic Beanstalk's Python platform brings gunicorn; a bundle need not list it.
    let add_gunicorn = uses_gunicorn && !requirements.is_some_and(names_gunicorn);
    let mut plan = Plan {
        probe: Some(Probe {
            program: "python3",
            args: &["--version"],
            install: "apt install python3 python3-venv",
        }),
        static_files: options
            .python
            .static_files
            .iter()
            .map(|(url, dir)| (url.clone(), dir.clone()))
            .collect(),
        ..Plan::default()
    };
    if facts.procfile.is_none() {
        let python = &options.python;
        plan.default_web = Some(format!(
            "exec gunicorn --bind 127.0.0.1:$PORT --workers {} --threads {} {}",
            python.processes,
            python.threads,
            wsgi_target(&python.wsgi_path)
        ));
        plan.server = Some("gunicorn".to_string());
    }
    if requirements.is_none() && !add_gunicorn {
        return plan;
    }
    let venv = dirs.venv.display().to_string();
    plan.build.push(BuildCommand {
        label: "python3 -m venv".to_string(),
        program: "python3".to_string(),
        args: vec!["-m".into(), "venv".into(), venv.clone()],
        env: BTreeMap::new(),
        creates: vec![dirs.venv.clone()],
        summary: None,
    });
    let mut args: Vec<String> = [
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--cache-dir",
    ]
    .map(String::from)
    .to_vec();
    args.push(dirs.cache.join("pip").display().to_string());
    let mut label = "pip install".to_string();
    if requirements.is_some() {
        args.extend(["-r".to_string(), "requirements.txt".to_string()]);
        label.push_str(" -r requirements.txt");
    }
    if add_gunicorn {
        args.push("gunicorn".to_string());
        label.push_str(" gunicorn");
    }
    plan.build.push(BuildCommand {
        label,
        program: format!("{venv}/bin/python"),
        args,
        env: BTreeMap::new(),
        creates: vec![dirs.cache.join("pip")],
        summary: None,
    });
    plan.env = BTreeMap::from([
        (
            "PATH".to_string(),
            format!("{venv}/bin:{}", crate::supervise::APP_PATH),
        ),
        ("VIRTUAL_ENV".to_string(), venv),
    ]);
    plan.venv = Some(dirs.venv.clone());
    plan
}

/// A requirements line naming gunicorn (`gunicorn`, `gunicorn==22.0`, `Gunicorn[gevent]>=21`).
fn names_gunicorn(requirements: &str) -> bool {
    requirements.lines().any(|line| {
        let name: String = line
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        name.eq_ignore_ascii_case("gunicorn")
    })
}

/// `WSGIPath` as gunicorn's `module:callable`: `application.py` → `application:application`,
/// `project/wsgi.py` → `project.wsgi:application`, `project.wsgi` → `project.wsgi:application`.
pub fn wsgi_target(wsgi_path: &str) -> String {
    let (module, callable) = wsgi_path
        .split_once(':')
        .unwrap_or((wsgi_path, "application"));
    let module = module
        .strip_suffix(".py")
        .unwrap_or(module)
        .replace('/', ".");
    format!("{module}:{callable}")
}

fn nodejs(facts: &BundleFacts, options: &PlatformConfig, dirs: &BuildDirs) -> Result<Plan, String> {
    let mut plan = Plan {
        probe: Some(Probe {
            program: "node",
            args: &["--version"],
            install: "apt install nodejs npm",
        }),
        ..Plan::default()
    };
    let package = facts.package.as_ref();
    if package.is_some_and(|p| p.has_dependencies) {
        let lockfile = facts.has("package-lock.json") || facts.has("npm-shrinkwrap.json");
        let verb = if lockfile { "ci" } else { "install" };
        let mut args: Vec<String> = [verb, "--no-audit", "--no-fund", "--cache"]
            .map(String::from)
            .to_vec();
        args.push(dirs.cache.join("npm").display().to_string());
        let mut label = format!("npm {verb}");
        if options.nodejs.production {
            args.push("--omit=dev".to_string());
            label.push_str(" --omit=dev");
        }
        plan.build.push(BuildCommand {
            label,
            program: "npm".to_string(),
            args,
            env: BTreeMap::from([(
                "npm_config_update_notifier".to_string(),
                "false".to_string(),
            )]),
            creates: vec![PathBuf::from("node_modules"), dirs.cache.join("npm")],
            summary: Some(NPM_ERROR),
        });
    }
    if facts.procfile.is_some() {
        return Ok(plan);
    }
    // Elastic Beanstalk's order: `npm start` when package.json has a start script, else the
    // first of these files.
    if package.is_some_and(|p| p.start_script) {
        plan.default_web = Some("exec npm start".to_string());
        plan.server = Some("npm start".to_string());
    } else if let Some(file) = ["app.js", "server.js", "index.js"]
        .into_iter()
        .find(|f| facts.has(f))
    {
        plan.default_web = Some(format!("node {file}"));
        plan.server = Some("node".to_string());
    } else {
        return Err("nodejs platform: no Procfile, no scripts.start in package.json, and none of app.js, server.js, index.js at the bundle's root: add one of them".to_string());
    }
    Ok(plan)
}

/// npm follows its error with the command's usage and a log path: the error is what follows
/// `npm error code …`.
const NPM_ERROR: Summary = Summary {
    after: "npm error code",
    strip: "npm error",
};

fn go(facts: &BundleFacts, dirs: &BuildDirs) -> Plan {
    let mut plan = Plan {
        probe: Some(Probe {
            program: "go",
            args: &["version"],
            install: "apt install golang-go",
        }),
        server: Some("application".to_string()),
        ..Plan::default()
    };
    let prebuilt = if facts.bin_application {
        Some("bin/application")
    } else if facts.has("application") {
        Some("./application")
    } else {
        None
    };
    if let Some(binary) = prebuilt {
        plan.default_web = Some(binary.to_string());
        plan.probe = None;
        return plan;
    }
    let mut args = vec!["build".to_string(), "-o".into(), "bin/application".into()];
    let what = if facts.has("application.go") {
        args.push("application.go".into());
        "application.go".to_string()
    } else if facts.has("go.mod") {
        args.push(".".into());
        "the module".to_string()
    } else {
        let files = facts.go_files();
        args.extend(files.iter().map(|f| f.to_string()));
        files.join(" ")
    };
    let cache = |name: &str| dirs.cache.join("go").join(name).display().to_string();
    plan.build.push(BuildCommand {
        label: format!("go build -o bin/application {what}"),
        program: "go".to_string(),
        args,
        env: BTreeMap::from([
            ("GOCACHE".to_string(), cache("build")),
            ("GOPATH".to_string(), cache("path")),
            ("GOMODCACHE".to_string(), cache("mod")),
            // Never download a toolchain: the host's Go builds, or the build says why not.
            ("GOTOOLCHAIN".to_string(), "local".to_string()),
            ("GOFLAGS".to_string(), "-modcacherw".to_string()),
        ]),
        creates: vec![PathBuf::from("bin"), dirs.cache.join("go")],
        summary: None,
    });
    plan.default_web = Some("bin/application".to_string());
    plan
}

fn java(facts: &BundleFacts, options: &PlatformConfig) -> Result<Plan, String> {
    let mut plan = Plan {
        probe: Some(Probe {
            program: "java",
            args: &["-version"],
            install: "apt install default-jre-headless",
        }),
        server: Some("java".to_string()),
        ..Plan::default()
    };
    if facts.procfile.is_some() {
        return Ok(plan);
    }
    let jars = facts.jars();
    let jar = if facts.has("application.jar") {
        "application.jar"
    } else {
        match jars.as_slice() {
            [only] => only,
            [] => return Err("java platform: no Procfile and no .jar at the bundle's root: add application.jar or a Procfile".to_string()),
            many => {
                return Err(format!(
                    "java platform: {} .jar files at the bundle's root ({}) and no application.jar: rename the one to run application.jar or add a Procfile",
                    many.len(),
                    many.join(", ")
                ));
            }
        }
    };
    let mut words = vec!["exec".to_string(), "java".to_string()];
    words.extend(options.java.jvm_options.iter().map(|o| shell_quote(o)));
    words.extend(["-jar".to_string(), shell_quote(jar)]);
    plan.default_web = Some(words.join(" "));
    Ok(plan)
}

/// One word for `/bin/sh`: as is when it is plain, else single-quoted.
fn shell_quote(word: &str) -> String {
    let plain = word.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '+' | ',')
    });
    if plain && !word.is_empty() {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
