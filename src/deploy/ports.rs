//! The port contract (docs/deployments.md#the-port-contract): the web process is given `$PORT`
//! and must listen there, because zero-downtime cutovers start the new release on the port the
//! serving one does not use. What the health gate concludes from where the web process really
//! listens (`supervise/listening.rs`), and the words for it. Pure.

use crate::config::PlatformName;

/// Consecutive gate checks that must see the same finding before the gate acts on it: an app
/// may open another port (metrics, admin) a moment before `$PORT`.
pub const PORT_CONFIRMATIONS: u32 = 2;

/// What the web process's listening sockets say while its health check on `$PORT` fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortFinding {
    /// Not listening yet, or listening on `$PORT`: the gate goes on waiting.
    Undecided,
    /// It listens, not on `$PORT`, but on a port bundles written for Elastic Beanstalk
    /// hard-code (its platform's default or `app.port`).
    Fixed(u16),
    /// It listens only on other ports: it will never answer on `$PORT`.
    Elsewhere(Vec<u16>),
}

/// Where the process listens (sorted) against the port it was given.
pub fn judge(given: u16, listening: &[u16], accepted: &[u16]) -> PortFinding {
    if listening.is_empty() || listening.contains(&given) {
        return PortFinding::Undecided;
    }
    match listening.iter().find(|port| accepted.contains(port)) {
        Some(port) => PortFinding::Fixed(*port),
        None => PortFinding::Elsewhere(listening.to_vec()),
    }
}

/// The ports accepted in place of `$PORT`: the platform's default port (for a bundle that
/// only has a Procfile, any of `proxy.platform_ports`: it could be from any platform) and
/// `app.port`.
pub fn accepted_fixed_ports(
    platform: Option<PlatformName>,
    platform_ports: &[u16],
    app_port: u16,
) -> Vec<u16> {
    let mut ports = match platform.and_then(PlatformName::default_port) {
        Some(port) => vec![port],
        None => platform_ports.to_vec(),
    };
    if !ports.contains(&app_port) {
        ports.push(app_port);
    }
    ports
}

/// "the python platform's default port 8000", "app.port 5000", "port 8000".
fn port_role(port: u16, platform: Option<PlatformName>, app_port: u16) -> String {
    match platform {
        Some(name) if name.default_port() == Some(port) => {
            format!("the {name} platform's default port {port}")
        }
        _ if port == app_port => format!("app.port {port}"),
        None | Some(PlatformName::Procfile) => {
            format!("port {port} (an Elastic Beanstalk platform's default)")
        }
        Some(_) => format!("port {port}"),
    }
}

fn list(ports: &[u16]) -> String {
    let words: Vec<String> = ports.iter().map(u16::to_string).collect();
    match words.as_slice() {
        [one] => format!("port {one}"),
        many => format!("ports {}", many.join(", ")),
    }
}

/// Why the gate fails when the web process listens only elsewhere.
pub fn elsewhere_message(
    given: u16,
    listening: &[u16],
    accepted: &[u16],
    platform: Option<PlatformName>,
    app_port: u16,
) -> String {
    let roles: Vec<String> = accepted
        .iter()
        .map(|port| port_role(*port, platform, app_port))
        .collect();
    let head = format!(
        "process web listens on {}, not on the port it was given ($PORT = {given}): make it listen on $PORT, e.g. `--bind :$PORT`",
        list(listening)
    );
    match roles.as_slice() {
        [] => head,
        roles => format!(
            "{head}; a fixed port is only accepted in its place when it is {}",
            roles.join(" or ")
        ),
    }
}

/// Why the gate fails under `deploy.fixed_port = "refuse"`.
pub fn refused_message(
    given: u16,
    fixed: u16,
    platform: Option<PlatformName>,
    app_port: u16,
) -> String {
    format!(
        "process web listens on {} instead of the port it was given ($PORT = {given}), and deploy.fixed_port = \"refuse\": make it listen on $PORT, e.g. `--bind :$PORT`",
        port_role(fixed, platform, app_port)
    )
}

/// The warning when a fixed port is accepted.
pub fn fixed_port_warning(
    given: u16,
    fixed: u16,
    platform: Option<PlatformName>,
    app_port: u16,
) -> String {
    format!(
        "process web ignores $PORT ({given}) and listens on {}: nginx proxies there, as on Elastic Beanstalk, and the next deployments stop this release before starting the new one (requests fail in between) until the app listens on $PORT, e.g. `--bind :$PORT`",
        port_role(fixed, platform, app_port)
    )
}

/// The warning when a deployment stops the serving release first because of its fixed port.
pub fn stop_first_warning(serving: &str, fixed: u16, given: u16) -> String {
    format!(
        "{serving} listens on port {fixed}, not on the $PORT it was given ({given}): it stops before the new release starts, so requests fail until the new one passes its health gate; zero-downtime deployments need the app to listen on $PORT"
    )
}

/// The warning when a new web process could not bind the fixed port the serving release holds.
pub fn make_room_warning(serving: &str, held: u16) -> String {
    format!(
        "the new web process cannot bind a port in use, and {serving} listens on port {held}, which the app seems to hard-code: stopping it and starting the new one again, so requests fail until the new one passes its health gate; zero-downtime deployments need the app to listen on $PORT"
    )
}

/// A hint for a web process that exited before it became healthy, when its stderr says that
/// a port was taken: most often a hard-coded port the serving release holds.
pub fn bind_conflict_hint(stderr_tail: &str) -> Option<&'static str> {
    let taken = stderr_tail.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.contains("address already in use") || line.contains("eaddrinuse")
    });
    taken.then_some(
        "its stderr says a port it binds is already in use: an app that hard-codes its port cannot start beside the serving release; make it listen on $PORT, e.g. `--bind :$PORT`",
    )
}

/// How the gate's timeout describes where the process listens.
pub fn listening_words(listening: Option<&[u16]>) -> String {
    match listening {
        None => "process web is not running".to_string(),
        Some([]) => "process web listens on no TCP port".to_string(),
        Some(ports) => format!("process web listens on {}", list(ports)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EB_PORTS: [u16; 3] = [5000, 8000, 8080];

    #[test]
    fn the_gate_waits_while_the_process_is_silent_or_on_its_port() {
        let accepted = [8000, 5000];
        assert_eq!(judge(5001, &[], &accepted), PortFinding::Undecided);
        assert_eq!(
            judge(5001, &[5001, 9090], &accepted),
            PortFinding::Undecided
        );
        assert_eq!(judge(5001, &[8000], &accepted), PortFinding::Fixed(8000));
        assert_eq!(
            judge(5001, &[8001, 9090], &accepted),
            PortFinding::Elsewhere(vec![8001, 9090])
        );
    }

    #[test]
    fn a_platforms_default_port_and_app_port_are_accepted() {
        assert_eq!(
            accepted_fixed_ports(Some(PlatformName::Python), &EB_PORTS, 5000),
            [8000, 5000]
        );
        assert_eq!(
            accepted_fixed_ports(Some(PlatformName::Nodejs), &EB_PORTS, 18500),
            [8080, 18500]
        );
        assert_eq!(
            accepted_fixed_ports(Some(PlatformName::Go), &EB_PORTS, 5000),
            [5000]
        );
        assert_eq!(
            accepted_fixed_ports(Some(PlatformName::Procfile), &EB_PORTS, 18500),
            [5000, 8000, 8080, 18500]
        );
        assert_eq!(accepted_fixed_ports(None, &[], 18500), [18500]);
    }

    #[test]
    fn messages_name_the_ports_and_what_to_do() {
        assert_eq!(
            elsewhere_message(
                18500,
                &[8001],
                &[8000, 18500],
                Some(PlatformName::Python),
                18500
            ),
            "process web listens on port 8001, not on the port it was given ($PORT = 18500): make it listen on $PORT, e.g. `--bind :$PORT`; a fixed port is only accepted in its place when it is the python platform's default port 8000 or app.port 18500"
        );
        assert_eq!(
            elsewhere_message(18500, &[8001], &[], None, 18500),
            "process web listens on port 8001, not on the port it was given ($PORT = 18500): make it listen on $PORT, e.g. `--bind :$PORT`"
        );
        assert_eq!(
            refused_message(18500, 8000, Some(PlatformName::Python), 18500),
            "process web listens on the python platform's default port 8000 instead of the port it was given ($PORT = 18500), and deploy.fixed_port = \"refuse\": make it listen on $PORT, e.g. `--bind :$PORT`"
        );
        assert!(
            fixed_port_warning(18500, 8080, Some(PlatformName::Procfile), 18500)
                .contains("listens on port 8080 (an Elastic Beanstalk platform's default):")
        );
        assert_eq!(
            listening_words(Some(&[8001, 9090])),
            "process web listens on ports 8001, 9090"
        );
        assert_eq!(
            listening_words(Some(&[])),
            "process web listens on no TCP port"
        );
    }

    #[test]
    fn a_port_taken_is_recognised_in_the_usual_runtimes_words() {
        let lines = |text: &str| format!("Traceback\n{text}\n");
        for said in [
            "OSError: [Errno 98] Address already in use",
            "Error: listen EADDRINUSE: address already in use :::8080",
            "listen tcp :5000: bind: address already in use",
            "java.net.BindException: Address already in use",
        ] {
            assert!(bind_conflict_hint(&lines(said)).is_some(), "{said}");
        }
        assert_eq!(bind_conflict_hint(&lines("ImportError: no module x")), None);
    }
}
