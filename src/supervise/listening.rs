//! Where an app listens: the TCP ports its processes hold listening sockets on, from `/proc`.
//!
//! The kernel's socket tables (`/proc/<pid>/net/tcp` and `tcp6`, seen from the app's network
//! namespace) list every listening socket with its inode; the links in `/proc/<pid>/fd` say
//! which of those inodes a process holds (`socket:[inode]`). An app is its leader and
//! everything in its session (a gunicorn master binds, its workers inherit the socket), so the
//! ports are collected over the session. Parsing is pure; `ports_by_session` reads.

use std::collections::{BTreeSet, HashMap, HashSet};

/// `st` of a listening socket in the tables (`TCP_LISTEN`).
const LISTEN_STATE: &str = "0A";

/// (inode, port) of each listening socket at the head of one table (`/proc/net/tcp` or
/// `tcp6`, header first). The kernel lists the listening hash before the established one
/// (`tcp_seq_start`), so the first line in another state ends the listening sockets: reading
/// stops there, and the cost does not grow with the host's connections (tens of thousands in
/// TIME_WAIT on a busy host, 20 ms of kernel time per full read). Pure.
pub fn parse_listening<'a>(table: impl IntoIterator<Item = &'a str>) -> Vec<(u64, u16)> {
    table
        .into_iter()
        .skip(1)
        .map(|line| line.split_ascii_whitespace().collect::<Vec<&str>>())
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
        .take_while(|fields| fields.get(3) == Some(&LISTEN_STATE))
        .filter_map(|fields| {
            let (_, port) = fields.get(1)?.rsplit_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let inode = fields.get(9)?.parse().ok()?;
            // Inode 0: a socket whose owner is gone (it is closing).
            (inode != 0).then_some((inode, port))
        })
        .collect()
}

/// The listening sockets of `/proc/<pid>/net/<table>`, read only as far as they go.
fn read_listening(pid: i32, table: &str) -> Vec<(u64, u16)> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/net/{table}")) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        // The header, then listening sockets; the first other line is the last one read.
        let listening =
            lines.is_empty() || line.split_ascii_whitespace().nth(3) == Some(LISTEN_STATE);
        lines.push(line);
        if !listening {
            break;
        }
    }
    parse_listening(lines.iter().map(String::as_str))
}

/// The inode of a socket fd's link target (`socket:[12345]`); none for anything else. Pure.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The sorted ports listened on by sockets among `held` inodes. Pure.
pub fn ports_held(listening: &[(u64, u16)], held: &HashSet<u64>) -> Vec<u16> {
    let ports: BTreeSet<u16> = listening
        .iter()
        .filter(|(inode, _)| held.contains(inode))
        .map(|(_, port)| *port)
        .collect();
    ports.into_iter().collect()
}

/// For each session led by one of `leaders`: the TCP ports its processes listen on. Blocking
/// (reads /proc). A leader that is gone, or whose fds cannot be read, gets no entry.
pub fn ports_by_session(leaders: &[i32]) -> HashMap<i32, Vec<u16>> {
    let mut members: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in super::stats::candidates(leaders) {
        if let Some(stat) = super::process::read_stat(pid)
            && leaders.contains(&stat.session)
        {
            members.entry(stat.session).or_default().push(pid);
        }
    }
    let mut ports = HashMap::new();
    for (leader, pids) in members {
        // The leader's namespace: an app that made its own sees its own sockets there.
        let listening: Vec<(u64, u16)> = ["tcp", "tcp6"]
            .iter()
            .flat_map(|table| read_listening(leader, table))
            .collect();
        let held: HashSet<u64> = pids.iter().flat_map(|pid| socket_inodes(*pid)).collect();
        ports.insert(leader, ports_held(&listening, &held));
    }
    ports
}

/// The socket inodes process `pid` holds.
fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        socket_inode(target.to_str()?)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4711 1 0000000000000000 100 0 0 10 0
   1: 00000000:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4712 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 0 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F40 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4713 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4714 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4801 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_are_read_with_their_inode_and_port() {
        // 0x1F40 = 8000 on loopback, 0x1388 = 5000 on every address, 0x2328 = 9000 closing
        // (inode 0); the established connection (st 01) ends the listening sockets.
        assert_eq!(parse_listening(TCP.lines()), [(4711, 8000), (4712, 5000)]);
        assert_eq!(parse_listening(TCP6.lines()), [(4801, 8080)]);
        assert_eq!(parse_listening("".lines()), []);
        assert_eq!(parse_listening("header\n  0: garbage\n".lines()), []);
    }

    #[test]
    fn only_the_sockets_a_process_holds_are_its_ports() {
        assert_eq!(socket_inode("socket:[4711]"), Some(4711));
        assert_eq!(socket_inode("pipe:[4711]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        let listening = [(4711, 8000), (4712, 5000), (4801, 8080), (4802, 8000)];
        let held = HashSet::from([4711, 4802, 4801, 99]);
        assert_eq!(ports_held(&listening, &held), [8000, 8080]);
    }

    #[test]
    fn a_sessions_ports_include_those_its_children_hold() {
        use std::io::BufRead;
        // A shell leading its own session, whose child (not the leader) listens.
        let script = "python3 -c 'import socket,time\ns=socket.socket()\ns.bind((\"127.0.0.1\",0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)' & wait";
        let mut child = std::process::Command::new("setsid")
            .args(["sh", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let session = child.id() as i32;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the port");
        let port: u16 = line.trim().parse().expect("a port");
        let ports = ports_by_session(&[session]);
        let _ = super::super::process::signal_group(session, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        assert_eq!(ports.get(&session).map(Vec::as_slice), Some(&[port][..]));
        assert!(
            ports_by_session(&[i32::MAX]).is_empty(),
            "a leader that is gone"
        );
    }
}
