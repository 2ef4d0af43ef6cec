//! Continuous requests through nginx from background threads, one new connection per request,
//! recording every outcome: the evidence for "zero failed requests" during cutovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// What one request saw: the status and body, or why it failed.
pub type Outcome = Result<(u16, String), String>;

#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Requests finished so far, across threads.
    done: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    pub fn start(port: u16, path: &'static str, threads: usize) -> Self {
        Self::start_for_host(port, path, None, threads)
    }

    /// `start`, with a `Host` header (a load balancer's virtual host).
    pub fn start_for_host(
        port: u16,
        path: &'static str,
        host: Option<&str>,
        threads: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let host = host.map(str::to_string);
        let workers = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                let done = done.clone();
                let host = host.clone();
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match &host {
                            None => super::http::get(port, path),
                            Some(host) => {
                                super::http::request(port, "GET", path, &[("Host", host)], b"")
                            }
                        }
                        .map(|r| (r.status, r.body))
                        .map_err(|e| e.to_string());
                        outcomes.push(outcome);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes
                })
            })
            .collect();
        Self {
            stop,
            done,
            workers,
        }
    }

    /// Waits until `more` requests beyond those finished now have finished: the load then
    /// surely covered what happened before the call.
    pub fn run_for(&self, more: usize) {
        let target = self.done.load(Ordering::Relaxed) + more;
        super::wait_for(
            "the load's requests",
            std::time::Duration::from_secs(60),
            || (self.done.load(Ordering::Relaxed) >= target).then_some(()),
        );
    }

    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.workers
            .into_iter()
            .flat_map(|w| w.join().expect("load thread"))
            .collect()
    }
}

/// The load ran throughout (over 100 requests) and every request got a 200 with one of the
/// `valid` bodies.
pub fn assert_every_request_served(
    outcomes: &[Outcome],
    valid: &std::collections::BTreeSet<String>,
) {
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((200, body)) if valid.contains(body)))
        .collect();
    assert!(
        outcomes.len() > 100,
        "the load ran throughout: {} requests",
        outcomes.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
}
