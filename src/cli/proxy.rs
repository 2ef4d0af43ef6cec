//! `hostmanager proxy config`.

use super::ProxyCommand;
use super::commands::EXIT_OK;
use crate::local_api::{ClientError, ControlClient};
use crate::proxy::ConfigView;

pub async fn run(client: &ControlClient, command: &ProxyCommand) -> Result<i32, ClientError> {
    match command {
        ProxyCommand::Config { json } => {
            let view: ConfigView = client.get("/v1/proxy/config").await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                );
            } else {
                print!("{}", render(&view));
            }
            Ok(EXIT_OK)
        }
    }
}

/// The text form: a summary, each translation, then every file. Pure.
fn render(view: &ConfigView) -> String {
    let mut out = format!(
        "nginx configuration {} ({}), upstream port {}\n",
        view.generation, view.dir, view.upstream_port
    );
    match view.overrides.as_slice() {
        [] => out.push_str("no overrides from the bundle\n"),
        files => out.push_str(&format!(
            "the bundle's .platform/nginx: {}\n",
            files.join(", ")
        )),
    }
    if !view.translations.is_empty() {
        out.push_str("translated for this host:\n");
        for translation in &view.translations {
            out.push_str(&format!("  {translation}\n"));
        }
    }
    for warning in &view.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    for file in &view.files {
        out.push_str(&format!("\n==> {} <==\n{}", file.path, file.content));
        if !file.content.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
