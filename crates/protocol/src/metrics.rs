//! The request-metrics window a report carries. Counts add and the latency histogram merges,
//! so a controller's environment percentiles are computed from every request, not averaged
//! from per-host percentiles.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsWindow {
    /// Milliseconds since the epoch at the window's end.
    pub ended_ms: i64,
    /// The window's length (the agent's `metrics.window`, 10 s by default).
    pub duration_ms: u64,
    pub requests: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Request latencies as `[microseconds, count]` pairs, ascending: the recorded values of
    /// the agent's HDR histogram (3 significant digits), so merging is adding counts.
    pub latency_us: Vec<[u64; 2]>,
    /// Host CPU over the window, percent of all cores.
    pub cpu: Option<CpuShares>,
    /// 1, 5 and 15 minute load averages.
    pub load_average: Option<[f64; 3]>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuShares {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/fuzz_targets/protocol.rs`: without serde_json's `float_roundtrip`, the
    /// shortest text of a parsed float read back as another float.
    #[test]
    fn floats_read_back_as_written() {
        let text =
            r#"{"load_average":[0.30000000000000004,2.2250738584e-308,1.797693133157e+308]}"#;
        let window: MetricsWindow = serde_json::from_str(text).expect("parses");
        let again: MetricsWindow =
            serde_json::from_str(&serde_json::to_string(&window).expect("serializes"))
                .expect("parses again");
        assert_eq!(again, window);
        assert_eq!(window.load_average.map(|l| l[2]), Some(1.797693133157e308));
    }
}
