//! What a report says about the host beyond its status: where its nginx is reachable, where in
//! EC2 it runs, since when the agent runs on it, and the request metrics of the last window in
//! a form the controller merges across hosts. Pure except `first_start`.

use std::net::SocketAddr;
use std::path::Path;

use hostmanager_protocol::{CpuShares, HostFacts, MetricsWindow};

use crate::aws::Placement;
use crate::metrics::MetricsSnapshot;

/// `controller.advertise_addr`, else `proxy.listen` when it names one concrete address (a
/// wildcard says nothing about where others reach the host).
pub fn advertised_addr(configured: Option<&str>, listen: SocketAddr) -> Option<String> {
    if let Some(addr) = configured {
        return Some(addr.to_string());
    }
    (!listen.ip().is_unspecified()).then(|| listen.to_string())
}

pub fn host_facts(
    advertised_addr: Option<String>,
    placement: &Placement,
    launched_at: Option<String>,
) -> HostFacts {
    HostFacts {
        advertised_addr,
        availability_zone: placement.availability_zone.clone(),
        instance_type: placement.instance_type.clone(),
        launched_at,
    }
}

/// The window as the controller takes it: counts add, latencies merge bucket by bucket.
pub fn metrics_window(snapshot: &MetricsSnapshot) -> MetricsWindow {
    let counts = snapshot.requests.counts;
    let host = &snapshot.host;
    MetricsWindow {
        ended_ms: snapshot
            .ended_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .unwrap_or_default(),
        duration_ms: (snapshot.window_secs * 1000.0).round() as u64,
        requests: counts.total,
        status_2xx: counts.success,
        status_3xx: counts.redirect,
        status_4xx: counts.client_error,
        status_5xx: counts.server_error,
        latency_us: snapshot.latency_us.clone(),
        cpu: host.cpu.map(|c| CpuShares {
            user: c.user,
            nice: c.nice,
            system: c.system,
            idle: c.idle,
            iowait: c.iowait,
            irq: c.irq,
            softirq: c.softirq,
        }),
        load_average: Some([
            host.load_average.one,
            host.load_average.five,
            host.load_average.fifteen,
        ]),
    }
}

/// When the agent first started on this host (RFC 3339), written on the first start
/// (`var/lib/hostmanager/first-start.json`) and read back ever after.
pub fn first_start(state_dir: &Path) -> Option<String> {
    let path = state_dir.join("first-start.json");
    if let Ok(Some(time)) = crate::fsutil::read_json::<String>(&path) {
        return Some(time);
    }
    let now = jiff::Timestamp::now();
    let now = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
    match crate::fsutil::write_json_atomic(&path, &now, 0o644) {
        Ok(()) => Some(now),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "cannot record the agent's first start");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{RequestWindow, Totals};

    #[test]
    fn the_advertised_address_is_configured_or_a_concrete_listen_address() {
        let listen = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(
            advertised_addr(Some("web-1.internal:80"), listen("0.0.0.0:80")).as_deref(),
            Some("web-1.internal:80")
        );
        assert_eq!(
            advertised_addr(None, listen("10.0.1.17:8080")).as_deref(),
            Some("10.0.1.17:8080")
        );
        assert_eq!(advertised_addr(None, listen("0.0.0.0:80")), None);
        assert_eq!(advertised_addr(None, listen("[::]:80")), None);
    }

    #[test]
    fn a_window_carries_counts_and_its_recorded_latencies_ascending() {
        let mut window = RequestWindow::new();
        for (status, us) in [(200, 1_000), (200, 1_000), (404, 50), (503, 2_000_000)] {
            window.record(&crate::metrics::LogLine {
                time_ms: 0,
                status,
                request_time_us: us,
            });
        }
        let snapshot = MetricsSnapshot {
            ended_at: "2026-11-22T14:03:20Z".into(),
            window_secs: 10.0,
            requests: window.stats(),
            requests_per_second: 0.4,
            totals: Totals::default(),
            host: Default::default(),
            latency_us: window.recorded_us(),
            worker: None,
        };
        let got = metrics_window(&snapshot);
        assert_eq!(got.ended_ms, 1_795_356_200_000);
        assert_eq!(got.duration_ms, 10_000);
        assert_eq!(
            (got.requests, got.status_2xx, got.status_4xx, got.status_5xx),
            (4, 2, 1, 1)
        );
        let values: Vec<u64> = got.latency_us.iter().map(|[v, _]| *v).collect();
        assert!(values.is_sorted(), "{values:?}");
        assert_eq!(got.latency_us.iter().map(|[_, n]| n).sum::<u64>(), 4);
        assert_eq!(got.latency_us[0], [50, 1]);
        assert_eq!(got.latency_us[1], [1_000, 2]);
        // 3 significant digits: 2 s is the top of its bucket, within 0.1 %.
        let [top, count] = got.latency_us[2];
        assert_eq!(count, 1);
        assert!((2_000_000..=2_002_048).contains(&top), "{top}");
        assert_eq!(got.cpu, None, "no CPU share before two samples");
    }

    #[test]
    fn the_first_start_is_kept_across_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = first_start(dir.path()).expect("written");
        assert_eq!(first_start(dir.path()), Some(first));
    }
}
