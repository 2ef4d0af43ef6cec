//! Entry point: parse the command line, set up logging, run the command, exit with its code.

use clap::Parser;
use hostmanager_controller::cli::{Cli, EXIT_USAGE, execute};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            std::process::exit(if error.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOSTMANAGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hostmanager-controller: cannot start the async runtime: {error}");
            std::process::exit(70);
        }
    };
    let code = runtime.block_on(execute(cli));
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
