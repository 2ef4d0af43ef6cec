//! Text output of the operator commands, from the API's JSON documents.

use serde_json::Value;

fn s(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

pub fn environments(list: &Value) -> String {
    let mut out = format!(
        "{:<24} {:<10} {:<10} {:<9} {:<16} {}\n",
        "NAME", "TIER", "STATUS", "HEALTH", "VERSION", "CAUSES"
    );
    for env in list["Environments"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<24} {:<10} {:<10} {:<9} {:<16} {}\n",
            s(&env["EnvironmentName"]),
            s(&env["Tier"]["Name"]),
            s(&env["Status"]),
            s(&env["HealthStatus"]),
            s(&env["VersionLabel"]),
            env["Causes"]
                .as_array()
                .and_then(|c| c.first())
                .map(s)
                .unwrap_or(""),
        ));
    }
    out
}

pub fn environment(env: &Value) -> String {
    format!(
        "Environment: {}\n  Application: {}\n  Id: {}\n  Tier: {}\n  Status: {}\n  Health: {} ({})\n  Version: {}\n  Updated: {}\n",
        s(&env["EnvironmentName"]),
        s(&env["ApplicationName"]),
        s(&env["EnvironmentId"]),
        s(&env["Tier"]["Name"]),
        s(&env["Status"]),
        s(&env["HealthStatus"]),
        s(&env["Health"]),
        s(&env["VersionLabel"]),
        s(&env["DateUpdated"]),
    )
}

pub fn health(both: &Value) -> String {
    let health = &both["Health"];
    let mut out = format!(
        "{}  {} ({})  {}\n",
        s(&health["EnvironmentName"]),
        s(&health["HealthStatus"]),
        s(&health["Color"]),
        s(&health["Status"])
    );
    for cause in health["Causes"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}\n", s(cause)));
    }
    let metrics = &health["ApplicationMetrics"];
    if !metrics["RequestCount"].is_null() {
        // Codes and latency are absent for a window without requests (EB leaves them out too).
        let mut line = format!("  requests/s {}", metrics["RequestCount"]);
        let codes = &metrics["StatusCodes"];
        if codes.is_object() {
            line.push_str(&format!(
                "  2xx {}%  3xx {}%  4xx {}%  5xx {}%",
                codes["Status2xx"], codes["Status3xx"], codes["Status4xx"], codes["Status5xx"]
            ));
        }
        let latency = &metrics["Latency"];
        if latency.is_object() {
            line.push_str(&format!(
                "  p99 {}s  p50 {}s",
                latency["P99"], latency["P50"]
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&instances(&both["Instances"]));
    out
}

pub fn instances(list: &Value) -> String {
    let mut out = format!(
        "  {:<22} {:<9} {:<14} {}\n",
        "INSTANCE", "HEALTH", "VERSION", "CAUSES"
    );
    for instance in list["InstanceHealthList"].as_array().into_iter().flatten() {
        let causes: Vec<&str> = instance["Causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        out.push_str(&format!(
            "  {:<22} {:<9} {:<14} {}\n",
            s(&instance["InstanceId"]),
            s(&instance["HealthStatus"]),
            s(&instance["Deployment"]["VersionLabel"]),
            causes.join(" "),
        ));
    }
    out
}

pub fn event(event: &Value) -> String {
    let instance = event["InstanceId"]
        .as_str()
        .map(|i| format!(" [{i}]"))
        .unwrap_or_default();
    format!(
        "{} {:<5}{} {}\n",
        s(&event["EventDate"]),
        s(&event["Severity"]),
        instance,
        s(&event["Message"])
    )
}

pub fn deployment(deployment: &Value) -> String {
    let mut out = format!(
        "Deployment {} ({}) of {} to {}: {}\n",
        deployment["id"],
        s(&deployment["kind"]),
        s(&deployment["version_label"]),
        s(&deployment["environment"]),
        s(&deployment["status"]),
    );
    if let Some(message) = deployment["message"].as_str() {
        out.push_str(&format!("  {message}\n"));
    }
    let batched = deployment["policy"]
        .as_str()
        .is_some_and(|p| p != "AllAtOnce");
    let mut batch = None;
    for member in deployment["members"].as_array().into_iter().flatten() {
        if batched && batch != member["batch"].as_u64() {
            batch = member["batch"].as_u64();
            out.push_str(&format!("  Batch {}:\n", batch.unwrap_or(0) + 1));
        }
        let detail = match (member["step"].as_str(), member["message"].as_str()) {
            (Some(step), Some(message)) => format!(" at {step}: {message}"),
            (None, Some(message)) => format!(": {message}"),
            _ => String::new(),
        };
        let gate = match (member["state"].as_str(), member["host_step"].as_str()) {
            (Some("deployed"), _) => {
                format!(" (health gate: {} reports)", member["healthy_reports"])
            }
            (Some("dispatched"), Some(step)) => format!(" (on the host: {step})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<22} {}{gate}{detail}\n",
            s(&member["instance_id"]),
            s(&member["state"])
        ));
    }
    out
}

/// One line of progress while `--wait` runs.
pub fn progress(deployment: &Value) -> String {
    let members = deployment["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let count = |state: &str| members.iter().filter(|m| m["state"] == state).count();
    // The batch running: the lowest one with a member not done.
    let batches = members
        .iter()
        .filter_map(|m| m["batch"].as_u64())
        .max()
        .unwrap_or(0)
        + 1;
    let current = members
        .iter()
        .filter(|m| {
            !matches!(
                m["state"].as_str(),
                Some("healthy" | "failed" | "timed_out")
            )
        })
        .filter_map(|m| m["batch"].as_u64())
        .min();
    let batch = match current {
        Some(current) if batches > 1 => format!(" — batch {} of {batches}", current + 1),
        _ => String::new(),
    };
    format!(
        "deployment {}: {}{batch} — {} of {} healthy, {} deployed, {} dispatched, {} draining, {} failed",
        deployment["id"],
        s(&deployment["status"]),
        count("healthy"),
        members.len(),
        count("deployed"),
        count("dispatched"),
        count("draining"),
        count("failed") + count("timed_out"),
    )
}
