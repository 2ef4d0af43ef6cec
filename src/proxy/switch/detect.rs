//! Whether this host's nginx can run the traffic switch: the NDK and Lua modules are where
//! `proxy.modules_dir` says, and nginx loads them with the balancer API (lua-resty-core).

use std::path::{Path, PathBuf};

use crate::proxy::nginx::NginxRunner;

/// The modules the switch needs, in `load_module` order.
const MODULES: [&str; 2] = ["ndk_http_module.so", "ngx_http_lua_module.so"];
const INSTALL: &str = "on Debian: apt install libnginx-mod-http-lua";

/// The `load_module` paths when nginx runs the switch; why not otherwise. Runs `nginx -t` on
/// a small config in `scratch` (nothing that serves is touched).
pub async fn detect(
    runner: &NginxRunner,
    modules_dir: &Path,
    scratch: &Path,
) -> Result<Vec<PathBuf>, String> {
    let modules: Vec<PathBuf> = MODULES.iter().map(|m| modules_dir.join(m)).collect();
    if let Some(missing) = modules.iter().find(|m| !m.is_file()) {
        return Err(format!(
            "nginx's Lua module is not installed ({} does not exist; {INSTALL})",
            missing.display()
        ));
    }
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let conf = scratch.join("nginx.conf");
    let text = probe_conf(&modules, scratch);
    crate::fsutil::write_atomic(&conf, text.as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    runner
        .test(&conf)
        .await
        .map(|()| modules)
        .map_err(|message| format!("nginx cannot load its Lua module ({INSTALL}): {message}"))
}

fn probe_conf(modules: &[PathBuf], scratch: &Path) -> String {
    let mut text = String::from("# hostmanager: can nginx run the traffic switch?\n");
    for module in modules {
        text.push_str(&format!("load_module {};\n", module.display()));
    }
    text.push_str(&format!(
        "pid {pid};\nerror_log {log} warn;\nevents {{}}\nhttp {{\n    lua_shared_dict hostmanager_probe 16k;\n    init_by_lua_block {{ require(\"ngx.balancer\"); }}\n}}\n",
        pid = scratch.join("probe.pid").display(),
        log = scratch.join("error.log").display(),
    ));
    text
}
