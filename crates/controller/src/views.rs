//! What the operator API returns: Elastic Beanstalk's shapes (`eb`) filled from the store and
//! a fresh health evaluation. The shapes themselves are pure and live in `eb`; this file only
//! gathers what they need.

use serde::Serialize;
use serde_json::{Value, json};

use crate::eb::{self, EventDescription};
use crate::fleet::{App, now_ms};
use crate::http::response::Failure;
use crate::model::{
    AppVersion, Application, Deployment, Environment, EventFilter, EventSeverity, MemberState,
    Millis, StoredEvent,
};
use crate::orchestrator::{evaluate, fresh_instances};
use crate::store::Store;

/// `DescribeInstancesHealth` pages hold this many instances, as EB's do at most.
pub const INSTANCES_PAGE: usize = 100;

/// `DescribeEvents` returns at most this many per page (EB: 1000).
pub const MAX_EVENTS_PAGE: u32 = 1000;

pub fn date(ms: Millis) -> String {
    eb::date(ms)
}

/// EB's `ApplicationDescription`.
pub fn application(application: &Application, versions: &[AppVersion]) -> Value {
    let updated = versions
        .iter()
        .map(|v| v.created_ms)
        .max()
        .unwrap_or(application.created_ms);
    json!({
        "ApplicationName": application.name,
        "Description": application.description,
        "DateCreated": date(application.created_ms),
        "DateUpdated": date(updated.max(application.created_ms)),
        "Versions": versions.iter().map(|v| v.label.as_str()).collect::<Vec<_>>(),
    })
}

pub fn version(version: &AppVersion) -> eb::ApplicationVersionDescription {
    eb::application_version(version)
}

pub async fn environment<S: Store>(
    app: &App<S>,
    env: &Environment,
) -> Result<eb::EnvironmentDescription, Failure> {
    // With a load balancer: the host name it routes here, and its address.
    let Some(lb) = &app.lb else {
        return Ok(eb::environment_description(env, None, None));
    };
    let cname = crate::lb::render::cname(env, &lb.config.domain);
    let endpoint = format!("http://{}", lb.config.listen);
    Ok(eb::environment_description(
        env,
        Some(&cname),
        Some(&endpoint),
    ))
}

/// `DescribeEnvironmentHealth` with every attribute: the published status and causes, and the
/// instance counts and request metrics as of now.
pub async fn environment_health<S: Store>(
    app: &App<S>,
    env: &Environment,
) -> Result<eb::DescribeEnvironmentHealthResult, Failure> {
    let instances = fresh_instances(app, &env.name).await?;
    let evaluation = evaluate(app, env, &instances).await?;
    Ok(eb::environment_health(
        env,
        evaluation.metrics,
        evaluation.counts,
        now_ms(),
    ))
}

/// `DescribeInstancesHealth`: enrollment order, [`INSTANCES_PAGE`] at a time; `NextToken` is
/// the index of the next page's first instance.
pub async fn instances_health<S: Store>(
    app: &App<S>,
    env: &Environment,
    next_token: Option<&str>,
) -> Result<eb::DescribeInstancesHealthResult, Failure> {
    let start: usize = match next_token {
        None => 0,
        Some(token) => token.parse().map_err(|_| {
            Failure::bad_request(format!(
                "NextToken: {token:?} is not a token this API returned"
            ))
        })?,
    };
    let instances = fresh_instances(app, &env.name).await?;
    let evaluation = evaluate(app, env, &instances).await?;
    let deployments = deployments_by_serial(app, env).await?;
    let listed: Vec<_> = instances
        .iter()
        .filter(|i| i.revoked_ms.is_none())
        .zip(&evaluation.instances)
        .skip(start)
        .take(INSTANCES_PAGE)
        .map(|(instance, health)| eb::instance_health(instance, health, &deployments))
        .collect();
    let end = start + listed.len();
    Ok(eb::DescribeInstancesHealthResult {
        instance_health_list: listed,
        refreshed_at: date(now_ms()),
        next_token: (end < evaluation.instances.len()).then(|| end.to_string()),
    })
}

async fn deployments_by_serial<S: Store>(
    app: &App<S>,
    env: &Environment,
) -> Result<std::collections::BTreeMap<u64, i64>, Failure> {
    Ok(app
        .store
        .deployments(&env.name, 100)
        .await?
        .into_iter()
        .filter(|d| d.kind.is_deploy())
        .map(|d| (d.serial, d.id))
        .collect())
}

/// One event: EB's `EventDescription` and, beside it, what an operator filters and follows by.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    #[serde(flatten)]
    pub description: EventDescription,
    /// Extension: where it was written ("controller", or the host journal's source).
    pub source: String,
    /// Extension: the host journal's id of the event, for events that came from a host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<u64>,
    /// Extension: the deployment that emitted it, as a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<i64>,
    /// Extension: increasing in commit order; `After=<Seq>` follows from here.
    pub seq: i64,
}

/// `DescribeEvents`. Query: `EnvironmentName`, `InstanceId`, `Severity` (at least),
/// `StartTime`/`EndTime` (RFC 3339), `MaxRecords`, `NextToken`; extensions `After` (a `Seq`)
/// with `Order=oldest` to follow.
pub async fn events<S: Store>(app: &App<S>, pairs: &[(String, String)]) -> Result<Value, Failure> {
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let time = |key: &str| -> Result<Option<Millis>, Failure> {
        get(key)
            .map(|text| {
                text.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|_| {
                        Failure::bad_request(format!("{key}: {text:?} is not an RFC 3339 time"))
                    })
            })
            .transpose()
    };
    let number = |key: &str| -> Result<Option<i64>, Failure> {
        get(key)
            .map(|text| {
                text.parse()
                    .map_err(|_| Failure::bad_request(format!("{key}: {text:?} is not a number")))
            })
            .transpose()
    };
    let min_severity = get("Severity")
        .map(|text| {
            EventSeverity::parse(text).ok_or_else(|| {
                Failure::bad_request(format!(
                    "Severity: {text:?} is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"
                ))
            })
        })
        .transpose()?;
    let limit = match number("MaxRecords")? {
        None => 100,
        Some(n) if (1..=i64::from(MAX_EVENTS_PAGE)).contains(&n) => n as u32,
        Some(n) => {
            return Err(Failure::bad_request(format!(
                "MaxRecords: {n} is not between 1 and {MAX_EVENTS_PAGE}"
            )));
        }
    };
    let oldest_first = match get("Order") {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "Order: {other:?} is not newest or oldest"
            )));
        }
    };
    let environment = get("EnvironmentName").map(str::to_string);
    let filter = EventFilter {
        environment: environment.clone(),
        instance_id: get("InstanceId").map(str::to_string),
        min_severity,
        since_ms: time("StartTime")?,
        until_ms: time("EndTime")?,
        // A page token in the direction of reading: newest first pages go back in time from
        // `NextToken` (the last page's oldest seq), following goes forward from `After`.
        after_seq: if oldest_first {
            number("After")?
        } else {
            number("NextToken")?
        },
        newest_first: !oldest_first,
        limit,
    };
    let stored = app.store.events(&filter).await?;
    let applications = application_names(app).await?;
    let next_token = (!oldest_first && stored.len() == limit as usize)
        .then(|| stored.last().map(|e| e.seq.to_string()))
        .flatten();
    let events: Vec<Event> = stored.iter().map(|e| event(e, &applications)).collect();
    let mut page = json!({ "Events": events });
    if let Some(token) = next_token {
        page["NextToken"] = json!(token);
    }
    Ok(page)
}

async fn application_names<S: Store>(
    app: &App<S>,
) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    Ok(app
        .store
        .environments()
        .await?
        .into_iter()
        .map(|env| (env.name, env.application))
        .collect())
}

fn event(stored: &StoredEvent, applications: &std::collections::BTreeMap<String, String>) -> Event {
    let e = &stored.event;
    let application = applications.get(&e.environment).map_or("", String::as_str);
    Event {
        description: eb::event_description(stored, application, None),
        source: e.source.clone(),
        source_id: e.source_id,
        deployment_id: e.deployment_id,
        seq: stored.seq,
    }
}

/// A deployment as the API shows it: the stored resource, and for each member still running
/// on its host the agent's current step (`host_step`, from the host's last report).
pub fn deployment<S: Store>(app: &App<S>, deployment: &Deployment) -> Value {
    let mut document = serde_json::to_value(deployment).unwrap_or_default();
    let cache = app.cache.lock().unwrap_or_else(|p| p.into_inner());
    let running = |state: MemberState| matches!(state, MemberState::Dispatched);
    if let Some(members) = document["members"].as_array_mut() {
        for (json, member) in members.iter_mut().zip(&deployment.members) {
            let step = cache
                .instances
                .get(&member.instance_id)
                .and_then(|i| i.status.deployment.as_ref())
                .filter(|_| running(member.state))
                .map(|op| op.step.clone())
                .filter(|step| !step.is_empty());
            if let Some(step) = step {
                json["host_step"] = Value::String(step);
            }
        }
    }
    document
}
