//! `kill -9` of the agent at 20 random instants of deployments while requests flow through
//! nginx. The apps and nginx outlive the agent, so requests keep being served: at most the
//! requests in flight at a kill may fail (measured: none). After each kill the restarted
//! agent concludes the deployment, one release serves, and what it persisted agrees.
//! The seed is printed; `CRASH_SEED=<n>` replays a run.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::TestHost;
use common::bundles::{Entry, sample};
use common::crash::{assert_next_deployment_works, assert_serves, record_of, submit_deploy};
use common::load::{Load, Outcome};
use common::wait_for;
use nix::sys::signal::Signal;

const KILLS: usize = 20;
const THREADS: usize = 4;
const PROCFILE: &[u8] = b"web: python3 application.py\nworker: exec sleep 600\n";
const HOOK: &[u8] = b"#!/bin/sh\necho hook ran\n";

fn bundle(dir: &std::path::Path, version: &str) -> std::path::PathBuf {
    sample(
        dir,
        version,
        &[
            Entry::File("Procfile", PROCFILE, 0o644),
            Entry::File(".platform/hooks/predeploy/01.sh", HOOK, 0o755),
            Entry::File(".platform/hooks/postdeploy/01.sh", HOOK, 0o755),
        ],
    )
}

fn failed(outcomes: &[Outcome], valid: &BTreeSet<String>) -> Vec<Outcome> {
    outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((200, body)) if valid.contains(body)))
        .cloned()
        .collect()
}

#[test]
fn kills_at_random_instants_under_load_lose_no_request() {
    let mut rng = common::crash::seeded_rng();
    let mut host = TestHost::new();
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = host.deploy_ok(&bundle(dir.path(), "v0"));
    // How long one deployment takes here: the kills fall anywhere within it.
    let started = Instant::now();
    let timed = host.deploy_ok(&bundle(dir.path(), "v1"));
    let span = started.elapsed();
    eprintln!("one deployment takes {span:?}");
    let (mut serving, mut body) = (timed["id"].clone(), "Hello from v1\n".to_string());
    let _ = first;
    let mut valid = BTreeSet::from(["Hello from v0\n".to_string(), body.clone()]);
    let load = Load::start(host.proxy_port, "/", THREADS);
    let mut instants = Vec::new();
    for n in 0..KILLS {
        let version = format!("k{n}");
        valid.insert(format!("Hello from {version}\n"));
        let queued = submit_deploy(&host, &bundle(dir.path(), &version));
        // A fraction of the measured span: the seed replays the same fractions.
        let delay = span.mul_f64(rng.f64());
        // The pace: the random instant of the kill, not a synchronisation.
        std::thread::sleep(delay);
        let step = host.status()["deployment"]["step"].clone();
        host.stop_agent(Signal::SIGKILL, Duration::from_secs(5));
        instants.push((delay, step.clone()));
        host.start();
        let record = wait_for(
            "the interrupted deployment to conclude",
            Duration::from_secs(60),
            || {
                let record = record_of(&host, &queued["id"])?;
                let done = record["status"] != "running" && record["status"] != "queued";
                done.then_some(record)
            },
        );
        eprintln!(
            "kill {n} after {delay:?} (step {step}): {} {}",
            record["status"], record["message"]
        );
        if record["status"] == "succeeded" {
            (serving, body) = (record["id"].clone(), format!("Hello from {version}\n"));
        } else {
            assert_eq!(record["status"], "failed", "kill {n}: {record:#}");
        }
        assert_serves(&host, &serving, &body, &format!("kill {n} after {delay:?}"));
    }
    load.run_for(50);
    let outcomes = load.finish();
    let failures = failed(&outcomes, &valid);
    eprintln!(
        "{KILLS} kills at {instants:?}: {} of {} requests failed",
        failures.len(),
        outcomes.len()
    );
    assert!(
        outcomes.len() > 500,
        "the load ran: {} requests",
        outcomes.len()
    );
    // Each kill can at most cut the requests in flight then, one per load thread.
    assert!(
        failures.len() <= KILLS * THREADS,
        "{} of {} requests failed, beyond the {} in flight at the kills: {:?}",
        failures.len(),
        outcomes.len(),
        KILLS * THREADS,
        &failures[..failures.len().min(5)]
    );
    assert_next_deployment_works(
        &host,
        &bundle(dir.path(), "v-next"),
        "Hello from v-next\n",
        "after 20 kills",
    );
}
