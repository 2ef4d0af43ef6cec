//! `hostmanager logs ...` and the `--since` reader of `hostmanager events`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::commands::{EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use super::{Cli, LogsCommand};
use crate::config::{self, PublishDestination};
use crate::local_api::{ClientError, ControlClient};
use crate::logs::plan::{path_key, publish_prefix, rotated_name};
use crate::logs::{
    BundleJob, ErrorEntry, JobState, LogStatus, TailReport, gzip_file, upload_verified,
};
use crate::store::{LocalStore, Multipart, ObjectStore, S3Store};

/// `--since`: a duration back from now ("10m") or a time ("2026-01-01T10:00:00Z").
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(duration) = humantime::parse_duration(text) {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        return Ok(jiff::Timestamp::now()
            .as_millisecond()
            .saturating_sub(millis));
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| format!("--since {text:?} is neither a duration like \"10m\" nor a time like \"2026-01-01T10:00:00Z\""))
}

pub async fn run(
    client: &ControlClient,
    command: &LogsCommand,
    cli: &Cli,
) -> Result<i32, ClientError> {
    match command {
        LogsCommand::Tail { json } => {
            let report: TailReport = client.post("/v1/logs/tail", &serde_json::json!({})).await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.text);
                eprintln!("Saved to {}", report.path);
                if let Some(key) = &report.key {
                    eprintln!("Uploaded as {key}");
                }
            }
            if let Some(error) = &report.upload_error {
                eprintln!("hostmanager logs tail: upload failed: {error}");
                return Ok(EXIT_FAILED);
            }
            Ok(EXIT_OK)
        }
        LogsCommand::Bundle { upload, json } => bundle(client, *upload, *json).await,
        LogsCommand::Rotate => {
            let answer: serde_json::Value = client
                .post("/v1/logs/rotate", &serde_json::json!({}))
                .await?;
            let rotated = answer["rotated"].as_array().cloned().unwrap_or_default();
            println!("Rotated {} log(s).", rotated.len());
            for name in rotated {
                println!("  {}", name.as_str().unwrap_or_default());
            }
            Ok(EXIT_OK)
        }
        LogsCommand::Errors { json } => {
            let errors: Vec<ErrorEntry> = client.get("/v1/logs/errors").await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&errors).unwrap_or_default()
                );
            } else if errors.is_empty() {
                println!("No severe errors since the agent started.");
            } else {
                for entry in &errors {
                    println!(
                        "{:>7}  {}  {}  ({})",
                        entry.count, entry.fingerprint, entry.title, entry.file
                    );
                }
            }
            Ok(EXIT_OK)
        }
        LogsCommand::Status { json } => {
            let status: LogStatus = client.get("/v1/logs/status").await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{}", render_status(&status));
            }
            Ok(EXIT_OK)
        }
        LogsCommand::PublishDir {
            dir,
            destination,
            env_id,
            instance_id,
        } => Ok(publish_dir(cli, dir, destination, env_id, instance_id).await),
    }
}

fn render_status(status: &LogStatus) -> String {
    let destination = status.destination.as_deref().unwrap_or("off");
    let mut out = format!(
        "Watched:      {}\nRotations:    {}\nPublishing:   {destination}\nSpool:        {} file(s), {} KiB of {} KiB; {} waiting, {} published\n",
        status.watched_files.join(", "),
        status.rotations,
        status.spool_files,
        status.spool_bytes >> 10,
        status.spool_budget_bytes >> 10,
        status.pending_files,
        status.published_total,
    );
    if status.shed_files > 0 {
        out.push_str(&format!(
            "Shed:         {} unpublished file(s), {} KiB (over budget)\n",
            status.shed_files,
            status.shed_bytes >> 10
        ));
    }
    if status.truncated_lines > 0 {
        out.push_str(&format!(
            "Truncated:    {} line(s) longer than 64 KiB\n",
            status.truncated_lines
        ));
    }
    if let Some(error) = &status.last_error {
        out.push_str(&format!(
            "Last error:   {error} ({} failure(s))\n",
            status.publish_failures
        ));
    }
    out.push_str(&format!(
        "Severe:       {} recently{}\n",
        status.severe_errors.count,
        status
            .severe_errors
            .top
            .as_deref()
            .map(|t| format!(", mostly: {t}"))
            .unwrap_or_default()
    ));
    out
}

async fn bundle(client: &ControlClient, upload: bool, json: bool) -> Result<i32, ClientError> {
    let path = format!("/v1/logs/bundle?upload={upload}");
    let started: BundleJob = client.post(&path, &serde_json::json!({})).await?;
    let bar = (!json).then(|| {
        let bar = indicatif::ProgressBar::new(started.total_bytes);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("zipping");
        bar
    });
    let job = loop {
        let job: BundleJob = client
            .get(&format!("/v1/logs/bundle/{}", started.id))
            .await?;
        if let Some(bar) = &bar {
            bar.set_position(job.done_bytes);
            if job.state == JobState::Uploading {
                bar.set_message("uploading");
            }
        }
        if matches!(job.state, JobState::Done | JobState::Failed) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
    } else if job.state == JobState::Done {
        println!(
            "{} ({} files, {} KiB of logs): {}",
            job.name,
            job.files,
            job.total_bytes >> 10,
            job.path
        );
        if let Some(key) = &job.key {
            println!("Uploaded as {key}");
        }
    }
    if let Some(error) = &job.error {
        eprintln!("hostmanager logs bundle: {error}");
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}

/// Compresses every regular file of `dir` and publishes it the way rotated logs are, printing
/// one JSON line with the throughput. Uses the config's `[aws]` and `[logs.publish]` settings.
async fn publish_dir(
    cli: &Cli,
    dir: &Path,
    destination: &str,
    env_id: &str,
    instance_id: &str,
) -> i32 {
    let (config_path, required) = cli.config_path();
    let config = match config::load(&config_path, required) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return EXIT_CONFIG;
        }
    };
    let store: Arc<dyn ObjectStore> = match config::parse_destination(destination) {
        Err(message) => {
            eprintln!("hostmanager logs publish-dir: {message}");
            return EXIT_USAGE;
        }
        Ok(PublishDestination::Local(path)) => Arc::new(LocalStore::new(path)),
        Ok(PublishDestination::S3 { bucket }) => {
            let sdk = match crate::aws::sdk_config(&config.aws, None).await {
                Ok(sdk) => sdk,
                Err(error) => {
                    eprintln!("hostmanager logs publish-dir: {error}");
                    return EXIT_CONFIG;
                }
            };
            let publish = &config.logs.publish;
            Arc::new(
                S3Store::new(crate::aws::s3_client(&sdk, &config.aws), bucket).with_multipart(
                    Multipart {
                        threshold: publish.multipart_threshold_bytes,
                        part_size: publish.part_size_bytes,
                        concurrency: publish.concurrency,
                    },
                ),
            )
        }
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(error) => {
            eprintln!("hostmanager logs publish-dir: {}: {error}", dir.display());
            return EXIT_USAGE;
        }
    };
    files.sort();
    let state_dir = crate::paths::Paths::new(&cli.root).state_dir();
    let spool = match private_spool(&state_dir) {
        Ok(spool) => spool,
        Err(error) => {
            eprintln!(
                "hostmanager logs publish-dir: {}: {error}",
                state_dir.display()
            );
            return EXIT_FAILED;
        }
    };
    let started = Instant::now();
    let raw_bytes: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let epoch = jiff::Timestamp::now().as_second();
    let compressing = Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    ));
    let uploading = Arc::new(tokio::sync::Semaphore::new(config.logs.publish.concurrency));
    let prefix = publish_prefix(env_id, instance_id);
    let mut jobs = tokio::task::JoinSet::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let gz = spool.join(rotated_name(&path_key(&format!("var/log/{name}")), epoch));
        let key = format!(
            "{prefix}{}",
            gz.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let (store, compressing, uploading) =
            (store.clone(), compressing.clone(), uploading.clone());
        jobs.spawn(async move {
            let permit = compressing
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            let (input, output) = (file.clone(), gz.clone());
            tokio::task::spawn_blocking(move || gzip_file(&input, &output))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{}: {e}", file.display()))?;
            drop(permit);
            let _permit = uploading.acquire_owned().await.map_err(|e| e.to_string())?;
            upload_verified(&store, &key, &gz)
                .await
                .map_err(|e| e.to_string())?;
            let size = std::fs::metadata(&gz).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&gz);
            Ok::<u64, String>(size)
        });
    }
    let (mut count, mut gz_bytes, mut failed) = (0u64, 0u64, 0u64);
    while let Some(joined) = jobs.join_next().await {
        match joined {
            Ok(Ok(size)) => {
                count += 1;
                gz_bytes += size;
            }
            Ok(Err(message)) => {
                eprintln!("hostmanager logs publish-dir: {message}");
                failed += 1;
            }
            Err(join) => {
                eprintln!("hostmanager logs publish-dir: {join}");
                failed += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&spool);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "files": count,
            "failed": failed,
            "raw_bytes": raw_bytes,
            "gz_bytes": gz_bytes,
            "seconds": seconds,
            "raw_mib_per_second": raw_bytes as f64 / (1 << 20) as f64 / seconds.max(1e-9),
        })
    );
    if failed > 0 { EXIT_FAILED } else { EXIT_OK }
}

/// A new 0700 directory for `publish-dir`'s compressed files under the agent's state (root's),
/// never a predictable name in a world-writable directory such as `/tmp`, where another user
/// could plant it (or links in it) first.
fn private_spool(state_dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::create_dir_all(state_dir)?;
    let spool = state_dir.join(format!("publish-dir-{}", std::process::id()));
    // Left by a killed run that had the same pid.
    match std::fs::remove_dir_all(&spool) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    std::fs::DirBuilder::new().mode(0o700).create(&spool)?;
    Ok(spool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = jiff::Timestamp::now().as_millisecond();
        let ten_minutes = parse_since("10m").expect("duration");
        assert!((now - 600_000 - ten_minutes).abs() < 5_000);
        assert_eq!(parse_since("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert!(parse_since("yesterday-ish").is_err());
    }

    #[test]
    fn the_publish_spool_is_private_and_under_the_state() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let state = root.path().join("var/lib/hostmanager");
        let spool = private_spool(&state).expect("spool");
        assert!(spool.starts_with(&state));
        let mode = std::fs::metadata(&spool)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(spool.join("stale"), "x").expect("write");
        let again = private_spool(&state).expect("again");
        assert!(!again.join("stale").exists(), "a leftover is not reused");
    }
}
