//! Entry point: parse the command line, set up logging, run the command, exit with its code.

use clap::Parser;
use hostmanager::cli::{Cli, LogFormat, execute};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // sysexits EX_USAGE for bad usage; help and version are not errors.
            std::process::exit(if error.use_stderr() { 64 } else { 0 });
        }
    };
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hostmanager: cannot start the async runtime: {error}");
            std::process::exit(70);
        }
    };
    let code = runtime.block_on(execute(&cli));
    // Do not wait for lingering blocking tasks (e.g. a stuck filesystem call) on exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOSTMANAGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
