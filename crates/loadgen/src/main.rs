//! `hostmanager-loadgen`: N simulated agents against one controller, speaking the real
//! protocol (enrollment, gzip reports with status, metrics windows and events, pacing,
//! rotation). It prints a line per period and, on each SIGUSR1, the numbers of the segment
//! since the previous one; it never asserts. `benches/controller.sh` drives it.

mod agent;
mod client;
mod report;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use agent::Shared;
use report::{Profile, SimHost, rfc3339};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The controller's base URL.
    #[arg(long, default_value = "http://127.0.0.1:7600")]
    url: String,
    /// The operator token (the controller writes DATA_DIR/admin.token on its first start).
    #[arg(long)]
    admin_token_file: PathBuf,
    /// Simulated agents.
    #[arg(long, default_value_t = 2000)]
    agents: u32,
    /// The report interval, seconds (the controller's `hosts.interval`).
    #[arg(long, default_value_t = 10.0)]
    interval_secs: f64,
    /// Agents per environment (environments `PREFIX-0`, `PREFIX-1`, … are created).
    #[arg(long, default_value_t = 100)]
    agents_per_env: u32,
    #[arg(long, default_value = "bench")]
    env_prefix: String,
    /// Requests in flight at most, i.e. the connection pool's size. By Little's law a fleet
    /// needs rate × latency of them: 2 000 reports/s × 0.3 s (a loaded controller's group
    /// commit) is 600, so fewer would make the generator, not the controller, the limit
    /// (`lag_p99_ms` shows it).
    #[arg(long, default_value_t = 2048)]
    connections: usize,
    /// Chance that a report carries 1 to 3 new events.
    #[arg(long, default_value_t = 0.01)]
    event_chance: f64,
    /// Idle hosts: no traffic and a status that does not change between reports.
    #[arg(long)]
    idle: bool,
    /// Seconds between period lines.
    #[arg(long, default_value_t = 5)]
    period_secs: u64,
    /// Request timeout, seconds (the agent's `controller.timeout`).
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn unix_secs() -> f64 {
    now_ms() as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(error) = run(args).await {
        eprintln!("hostmanager-loadgen: {error}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    // Installed first: SIGUSR1's default action would end the process.
    let signals = Signals {
        usr1: signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?,
        term: signal(SignalKind::terminate()).map_err(|e| e.to_string())?,
    };
    let admin = std::fs::read_to_string(&args.admin_token_file)
        .map_err(|e| format!("{}: {e}", args.admin_token_file.display()))?
        .trim()
        .to_string();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(args.timeout_secs))
        .timeout(Duration::from_secs(args.timeout_secs))
        .pool_max_idle_per_host(args.connections)
        .build()
        .map_err(|e| e.to_string())?;
    let interval = Duration::from_secs_f64(args.interval_secs);
    let shared = Arc::new(Shared {
        client,
        url: args.url.trim_end_matches('/').to_string(),
        interval,
        profile: Profile {
            window_ms: interval.as_millis() as u64,
            event_chance: args.event_chance,
            requests: (50, 500),
            idle: args.idle,
        },
        in_flight: tokio::sync::Semaphore::new(args.connections.max(1)),
        stats: stats::Stats::new(),
    });
    let per_env = args.agents_per_env.max(1);
    let environments = args.agents.div_ceil(per_env);
    let started = Instant::now();
    let mut tokens = Vec::new();
    for index in 0..environments {
        let name = format!("{}-{index}", args.env_prefix);
        tokens.push(prepare_environment(&shared, &admin, &name, per_env).await?);
    }
    println!(
        "setup environments={environments} secs={:.1}",
        started.elapsed().as_secs_f64()
    );
    let enrolling = Instant::now();
    let launched = rfc3339(now_ms());
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.agents {
        let env = (index / per_env) as usize;
        let host = SimHost::new(
            format!("i-{:08x}", 0x0b00_0000 + index),
            format!("{}-{env}", args.env_prefix),
            launched.clone(),
        );
        let (shared, token) = (shared.clone(), tokens[env].clone());
        tasks.spawn(async move {
            let credential = agent::enroll(&shared, &host, &token).await?;
            Ok::<_, String>((host, credential))
        });
    }
    let mut enrolled = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| e.to_string())? {
            Ok(pair) => enrolled.push(pair),
            Err(error) => eprintln!("{error}"),
        }
    }
    let secs = enrolling.elapsed().as_secs_f64();
    println!(
        "enrolled agents={} failed={} secs={secs:.1} rate={:.1} t={:.3}",
        enrolled.len(),
        args.agents as usize - enrolled.len(),
        enrolled.len() as f64 / secs.max(1e-3),
        unix_secs()
    );
    if enrolled.is_empty() {
        return Err("no agent enrolled".into());
    }
    for (host, credential) in enrolled {
        tokio::spawn(agent::run(shared.clone(), host, credential));
    }
    print_until_stopped(
        &shared,
        signals,
        Duration::from_secs(args.period_secs.max(1)),
    )
    .await
}

struct Signals {
    usr1: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

/// The period lines, a segment line per SIGUSR1, and a last segment on SIGTERM / SIGINT.
async fn print_until_stopped(
    shared: &Shared,
    mut signals: Signals,
    period: Duration,
) -> Result<(), String> {
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    shared.stats.take_period();
    shared.stats.take_segment();
    let mut segment = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                println!("period t={:.3} {}", unix_secs(), shared.stats.take_period());
            }
            _ = signals.usr1.recv() => {
                println!("segment n={segment} t={:.3} {}", unix_secs(), shared.stats.take_segment());
                segment += 1;
            }
            _ = signals.term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!(
        "segment n={segment} t={:.3} {}",
        unix_secs(),
        shared.stats.take_segment()
    );
    Ok(())
}

/// Creates the environment (an existing one is fine: a second run on the same database) and
/// one enrollment token with a use per agent; returns the token.
async fn prepare_environment(
    shared: &Shared,
    admin: &str,
    name: &str,
    uses: u32,
) -> Result<String, String> {
    let created = operator(
        shared,
        admin,
        "/v1/environments",
        json!({ "EnvironmentName": name }),
    )
    .await;
    if let Err(error) = created
        && !error.contains("409")
    {
        return Err(format!("creating environment {name}: {error}"));
    }
    let path = format!("/v1/environments/{name}/enrollment-tokens");
    let token = operator(
        shared,
        admin,
        &path,
        json!({ "Uses": uses, "Expires": "24h" }),
    )
    .await
    .map_err(|e| format!("enrollment token for {name}: {e}"))?;
    token["Token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("enrollment token for {name}: no Token in {token}"))
}

async fn operator(shared: &Shared, admin: &str, path: &str, body: Value) -> Result<Value, String> {
    let body = client::encode(&body, client::Encoding::Identity)?;
    let url = format!("{}{path}", shared.url);
    client::post(
        &shared.client,
        &url,
        admin,
        body,
        client::Encoding::Identity,
    )
    .await
    .map_err(|f| f.message)
}
