//! `hostmanager-controller run`: opens the database (migrations run at open), makes sure the
//! admin token and the URL-signing key (shared by replicas, in the database) exist, serves the API, runs the orchestrator, and
//! shuts down gracefully on SIGTERM or SIGINT (open requests finish, the last group commit is
//! written).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::cli::{EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE};
use crate::config::{Config, Database, Objects};
use crate::fleet::{App, Batcher, Cache, Counters, now_ms};
use crate::store::{Store, StoreError, postgres::PostgresStore, sqlite::SqliteStore};

pub async fn run(config: Config) -> i32 {
    if let Err(e) = private_dir(&config.data_dir) {
        eprintln!("hostmanager-controller: {e}");
        return EXIT_CONFIG;
    }
    match &config.database {
        Database::Sqlite(path) => match SqliteStore::open(path).await {
            Ok(store) => run_with(store, config).await,
            Err(e) => fail_open(&config, e),
        },
        Database::Postgres {
            url,
            max_connections,
        } => match PostgresStore::connect(url, *max_connections).await {
            Ok(store) => run_with(store, config).await,
            Err(e) => fail_open(&config, e),
        },
    }
}

fn fail_open(config: &Config, error: StoreError) -> i32 {
    eprintln!(
        "hostmanager-controller: opening the database ({}): {error}",
        config.database.describe()
    );
    EXIT_UNAVAILABLE
}

async fn run_with<S: Store>(store: S, config: Config) -> i32 {
    let store = Arc::new(store);
    let token_path = config.data_dir.join("admin.token");
    match admin_token(&token_path) {
        Ok(hash) => match store.add_admin_token(&hash, now_ms()).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                eprintln!("hostmanager-controller: storing the admin token: {e}");
                return EXIT_UNAVAILABLE;
            }
        },
        Err(e) => {
            eprintln!("hostmanager-controller: {e}");
            return EXIT_CONFIG;
        }
    }
    // In the database, not a file: every replica must sign and check bundle URLs alike.
    let signing_key = match store
        .shared_secret("bundle-url-signing", &crate::secrets::new_secret(""))
        .await
    {
        Ok(key) => key.into_bytes(),
        Err(e) => {
            eprintln!("hostmanager-controller: reading the URL-signing key: {e}");
            return EXIT_UNAVAILABLE;
        }
    };
    let objects: Arc<dyn hostmanager::store::ObjectStore> = match &config.objects {
        Objects::Local(dir) => {
            if let Err(e) = private_dir(dir) {
                eprintln!("hostmanager-controller: {e}");
                return EXIT_CONFIG;
            }
            Arc::new(hostmanager::store::LocalStore::new(dir.clone()))
        }
        Objects::S3 {
            bucket,
            region,
            endpoint_url,
            force_path_style,
        } => {
            // The agent's own S3 client: the same region, endpoint and checksum handling.
            let settings = hostmanager::config::AwsConfig {
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                force_path_style: *force_path_style,
                checksums: hostmanager::config::ChecksumPolicy::WhenRequired,
                imds_endpoint: String::new(),
                imds_timeout: std::time::Duration::from_secs(1),
            };
            match hostmanager::aws::sdk_config(&settings, None).await {
                Ok(sdk) => Arc::new(hostmanager::store::S3Store::new(
                    hostmanager::aws::s3_client(&sdk, &settings),
                    bucket.clone(),
                )),
                Err(hostmanager::aws::AwsError::NoRegion) => {
                    eprintln!(
                        "hostmanager-controller: objects.region: no AWS region; set objects.region or AWS_REGION"
                    );
                    return EXIT_CONFIG;
                }
            }
        }
    };
    let tls = match &config.tls {
        None => None,
        Some(files) => match crate::http::tls::acceptor(files) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("hostmanager-controller: {e}");
                return EXIT_CONFIG;
            }
        },
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "hostmanager-controller: listening on {}: {e}",
                config.listen
            );
            return EXIT_UNAVAILABLE;
        }
    };
    let lb = config
        .load_balancer
        .clone()
        .map(|lb| Arc::new(crate::lb::LoadBalancer::new(lb)));
    let agent_listener = match &lb {
        None => None,
        Some(lb) => {
            if let Err(e) = private_dir(&lb.config.dir) {
                eprintln!("hostmanager-controller: {e}");
                return EXIT_CONFIG;
            }
            match tokio::net::TcpListener::bind(lb.config.agent_listen).await {
                Ok(listener) => Some(listener),
                Err(e) => {
                    eprintln!(
                        "hostmanager-controller: load_balancer.agent_listen {}: {e}",
                        lb.config.agent_listen
                    );
                    return EXIT_UNAVAILABLE;
                }
            }
        }
    };
    let (batcher, committer) = Batcher::start(
        store.clone(),
        config.deploy.commit_window,
        config.hosts.interval,
    );
    let provisioner = match &config.provisioner {
        Some(provisioner) => Some(Arc::new(
            crate::provision::Provisioner::new(provisioner, &config.public_url).await,
        )),
        None => None,
    };
    let app = Arc::new(App {
        store,
        objects,
        signing_key,
        started_ms: now_ms(),
        replica: crate::secrets::new_id("replica-"),
        cache: Mutex::new(Cache::default()),
        batcher,
        counters: Counters::default(),
        config,
        lb: lb.clone(),
        provisioner,
    });
    if let Err(e) = app.refresh().await {
        eprintln!("hostmanager-controller: reading the database: {e}");
        return EXIT_UNAVAILABLE;
    }
    tracing::info!(
        listen = %app.config.listen,
        database = %app.config.database.describe(),
        replica = %app.replica,
        "controller started"
    );
    let stop = CancellationToken::new();
    let orchestrator = tokio::spawn(crate::orchestrator::run(app.clone(), stop.clone()));
    let server = tokio::spawn(crate::http::serve(listener, tls, app.clone(), stop.clone()));
    // HAProxy itself is left running when the controller stops: it keeps serving the
    // environments, with the last states it was told, until the controller is back.
    let balancer = match (lb, agent_listener) {
        (Some(lb), Some(listener)) => Some((
            tokio::spawn(crate::lb::agent_check::serve(
                listener,
                lb.clone(),
                stop.clone(),
            )),
            tokio::spawn(crate::lb::run(app.clone(), lb, stop.clone())),
        )),
        _ => None,
    };
    shutdown_signal().await;
    tracing::info!("stopping: finishing open requests");
    stop.cancel();
    let _ = server.await;
    let _ = orchestrator.await;
    if let Some((responder, balancer)) = balancer {
        let _ = responder.await;
        let _ = balancer.await;
    }
    // Dropping the last handle closes the batcher's channel: its last group is committed.
    drop(app);
    match committer.await {
        Ok(()) => EXIT_OK,
        Err(_) => EXIT_FAILED,
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The admin token's hash; the token is created (0600) when the file does not exist.
fn admin_token(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                return Err(format!("{}: empty admin token file", path.display()));
            }
            Ok(crate::secrets::hash(token))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = crate::secrets::new_secret("hma_");
            write_private(path, format!("{token}\n").as_bytes())?;
            Ok(crate::secrets::hash(&token))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The key that signs bundle URLs. Replicas behind one address must share it (copy the file).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}
