//! The app user's side of the deployment boundary in tests: a release it owns, planted with
//! its own `.platform`, and the markers that show whether root ran or loaded any of it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{TestHost, run_as};

/// A directory anyone may write to: whoever would run a planted hook leaves its marker there.
pub fn marker_dir() -> tempfile::TempDir {
    let mark = tempfile::tempdir().expect("mark dir");
    std::fs::set_permissions(mark.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod mark dir");
    mark
}

/// An nginx override nginx opens a file for as soon as it parses it (`nginx -t` included):
/// `var/log/nginx/<name>.log` under the host's root (EB's `/var/log/nginx`, translated; a log
/// anywhere else is refused).
pub fn logging_conf(name: &str) -> String {
    format!("error_log /var/log/nginx/{name}.log;\n")
}

/// The file `logging_conf(name)` makes nginx open.
pub fn nginx_marker(host: &TestHost, name: &str) -> PathBuf {
    host.path(&format!("var/log/nginx/{name}.log"))
}

/// The app user's attack on a release it owns: `.platform` moved aside, its own put in place
/// with a hook for every phase and nginx files that load a module and open a log.
pub fn plant(release: &Path, mark: &Path) {
    let hook = format!(
        "#!/bin/sh\ntouch {}/planted-hook-ran-as-$(id -u)\n",
        mark.display()
    );
    let main = "load_module /usr/lib/nginx/modules/planted.so;\nerror_log /var/log/nginx/planted-main.log;\nevents {}\nhttp { include conf.d/*.conf; }\n".to_string();
    let conf = logging_conf("planted-conf");
    let script = r#"set -e
cd "$RELEASE"
mv .platform .platform-aside
for phase in hooks/prebuild hooks/predeploy hooks/postdeploy confighooks/prebuild confighooks/predeploy confighooks/postdeploy; do
  mkdir -p ".platform/$phase"
  printf '%s' "$HOOK" > ".platform/$phase/00.sh"
  chmod 755 ".platform/$phase/00.sh"
done
mkdir -p .platform/nginx/conf.d/elasticbeanstalk
printf '%s' "$MAIN" > .platform/nginx/nginx.conf
printf '%s' "$CONF" > .platform/nginx/conf.d/x.conf
printf '%s' "$CONF" > .platform/nginx/conf.d/elasticbeanstalk/x.conf
"#;
    run_as(
        "webapp",
        script,
        &[
            ("RELEASE", release.to_str().expect("utf-8")),
            ("HOOK", &hook),
            ("MAIN", &main),
            ("CONF", &conf),
        ],
    );
}

/// Markers a planted hook (in `mark`) or planted nginx file (in the host's nginx log
/// directory) would have left.
pub fn planted(host: &TestHost, mark: &Path) -> Vec<String> {
    let nginx_logs = host.path("var/log/nginx");
    [mark, nginx_logs.as_path()]
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("planted"))
        .collect()
}

pub fn release(host: &TestHost, id: &serde_json::Value) -> PathBuf {
    host.path(&format!("var/app/releases/{id}"))
}

/// The active nginx config, every file of it, as one text.
pub fn active_nginx_config(host: &TestHost) -> String {
    let active = host.path("var/lib/hostmanager/nginx/active");
    let mut text = String::new();
    for sub in ["", "conf.d", "conf.d/elasticbeanstalk"] {
        for entry in std::fs::read_dir(active.join(sub))
            .expect("active generation")
            .flatten()
        {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    text
}

pub fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}
