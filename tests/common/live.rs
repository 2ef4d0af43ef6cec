//! A running agent's config changed in place (SIGHUP) and an agent that exits by itself.

use std::process::ExitStatus;
use std::time::Duration;

use super::{TestHost, wait_for};

impl TestHost {
    /// `set` on a host already built: the next `reload` (or start) writes it.
    pub fn change(&mut self, section: &str, key: &str, value: impl Into<toml::Value>) {
        let mut table = &mut self.config;
        for part in section.split('.') {
            table = table
                .entry(part)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .expect("section");
        }
        table.insert(key.to_string(), value.into());
    }

    /// Removes a key set before (back to its default at the next `reload`).
    pub fn remove(&mut self, section: &str, key: &str) {
        if let Some(toml::Value::Table(table)) = self.config.get_mut(section) {
            table.remove(key);
        }
    }

    /// Writes the config and sends the agent SIGHUP (what `systemctl reload` does).
    pub fn reload(&self) {
        self.write_config();
        let pid = self.agent_pid().expect("agent running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
    }

    /// Waits for the agent to exit on its own; its exit status.
    pub fn wait_agent_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.agent.take().expect("agent running");
        wait_for("the agent to exit by itself", timeout, || {
            child.try_wait().expect("try_wait")
        })
    }
}
