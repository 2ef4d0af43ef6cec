//! The nginx side of the traffic switch: the Lua module, the app's upstream that asks it for
//! the port, and the switch socket's server. Pure: text in, text out, golden-tested with the
//! rest of the config (`render.rs`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The shared memory zone the module keeps the port and the in-flight counts in.
pub const ZONE: &str = "hostmanager_switch";
/// What a generated upstream block uses to pick the app's port at each request.
pub const BALANCER: &str = "balancer_by_lua_block { hostmanager.balance(); }";
/// The Lua module's name (`require`), and its file in `lua_dir`.
pub const MODULE: &str = "hostmanager_switch";
/// The URI of the switch on its socket.
pub const SWITCH_URI: &str = "/switch";

/// Where the runtime switch lives; `None` in a model means nginx is reloaded at each cutover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSwitch {
    /// `load_module` lines: the NDK and the Lua module.
    pub modules: Vec<PathBuf>,
    /// Holds `hostmanager_switch.lua` (written by the agent, read by nginx's master).
    pub lua_dir: PathBuf,
    /// The switch socket, in a directory only root can enter.
    pub socket: PathBuf,
    /// The serving port, written by the agent before each switch, read at nginx's start.
    pub port_file: PathBuf,
    /// The only ports the switch accepts: `app.port`, `app.alternate_port`, and the fixed ports
    /// a web process may listen on instead of `$PORT` (`proxy.platform_ports`, the platforms'
    /// default ports; docs/deployments.md#the-port-contract).
    pub ports: Vec<u16>,
}

impl RuntimeSwitch {
    pub fn module_path(&self) -> PathBuf {
        self.lua_dir.join(format!("{MODULE}.lua"))
    }
}

/// The Lua module, with this host's port file and ports.
pub fn module(switch: &RuntimeSwitch) -> String {
    let ports: Vec<String> = switch
        .ports
        .iter()
        .map(|port| format!("[{port}] = true"))
        .collect();
    include_str!("hostmanager_switch.lua")
        .replace("@PORT_FILE@", &lua_string(&switch.port_file))
        .replace("@PORTS@", &ports.join(", "))
}

/// `load_module` lines for the top of nginx.conf.
pub fn load_modules(switch: &RuntimeSwitch) -> String {
    switch
        .modules
        .iter()
        .map(|module| format!("load_module {};\n", module.display()))
        .collect()
}

/// The http-level part: the zone, the module, the app's upstream and the switch socket.
pub fn upstream_conf(header: &str, upstream: &str, switch: &RuntimeSwitch) -> String {
    let module_text = module(switch);
    let digest = hex(&Sha256::digest(module_text.as_bytes()));
    let mut out = String::from(header);
    out.push_str(
        "# The app's port is picked per request by the Lua module from shared memory, which the\n\
         # agent sets through the switch socket at each cutover: nginx is not reloaded, so\n\
         # client keep-alive connections live on (docs/deployments.md).\n",
    );
    // The module's digest: a new agent's module makes the config differ, and so reloads nginx.
    let _ = writeln!(out, "# {MODULE}.lua sha256 {digest}");
    let _ = writeln!(out, "lua_shared_dict {ZONE} 4m;");
    let _ = writeln!(
        out,
        "lua_package_path \"{}/?.lua;;\";",
        switch.lua_dir.display()
    );
    let _ = writeln!(
        out,
        "init_by_lua_block {{ hostmanager = require(\"{MODULE}\"); }}"
    );
    out.push_str("log_by_lua_block { hostmanager.finished(); }\n");
    // Referenced so that nginx computes $request_id once per request (see the module).
    out.push_str("map $request_id $hostmanager_request_id {\n    default $request_id;\n}\n\n");
    let _ = writeln!(
        out,
        "upstream {upstream} {{\n    server 0.0.0.1; # never connected to: the balancer sets the peer\n    {BALANCER}\n    keepalive 16;\n}}\n"
    );
    let _ = writeln!(
        out,
        "server {{\n    listen unix:{};\n    access_log off;\n    location = {SWITCH_URI} {{\n        content_by_lua_block {{ hostmanager.control(); }}\n    }}\n    location / {{\n        return 404;\n    }}\n}}",
        switch.socket.display()
    );
    out
}

/// A Lua string literal for a path.
fn lua_string(path: &Path) -> String {
    let text = path.display().to_string();
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RuntimeSwitch {
        RuntimeSwitch {
            modules: vec!["/usr/lib/nginx/modules/ndk_http_module.so".into()],
            lua_dir: "/srv/hm/nginx/lua".into(),
            socket: "/srv/hm/nginx/run/switch.sock".into(),
            port_file: "/srv/hm/nginx/run/\"odd\\path".into(),
            ports: vec![18500, 18501],
        }
    }

    #[test]
    fn the_module_names_this_hosts_port_file_and_ports() {
        let text = module(&sample());
        assert!(text.contains(r#"local PORT_FILE = "/srv/hm/nginx/run/\"odd\\path""#));
        assert!(text.contains("local PORTS = { [18500] = true, [18501] = true }"));
        assert!(!text.contains('@'), "a placeholder is left: {text}");
    }

    #[test]
    fn the_config_changes_when_the_module_does() {
        let a = upstream_conf("", "web", &sample());
        let b = upstream_conf(
            "",
            "web",
            &RuntimeSwitch {
                ports: vec![18500, 18502],
                ..sample()
            },
        );
        assert_ne!(a, b, "the digest of the module is in the config");
    }
}
