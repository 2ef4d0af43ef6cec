//! The policies that need new hosts, as batches of the rolling machine ([`super::rolling`]):
//! - `RollingWithAdditionalBatch`: batch 1 is a batch of new hosts (the batch size), then the
//!   existing hosts roll as under `Rolling`; at the end the additional hosts are released, so
//!   the environment keeps its size and never serves with less than its full capacity.
//! - `Immutable`: one new host first, then as many more as the environment has; once all pass
//!   their gates the original hosts are drained and released. A failure releases the new
//!   hosts and leaves the originals untouched.
//! - `TrafficSplitting`: as many new hosts as the environment has, which get
//!   `NewVersionPercent` of the traffic (load balancer weights) for `EvaluationTime`; if they
//!   stay healthy the originals are drained and released, else the traffic goes back and the
//!   new hosts are released.
//!
//! A host to launch is a member with an empty id ([`MemberRole::Launch`]) until the
//! orchestrator names it with what the provisioner launched. A deployment that must give
//! hosts back after a failure or an abort is `Failing` / `Aborting` until they are gone.

mod cleanup;

pub(super) use cleanup::{after_abort, clean_up, start_failing};

use super::events::Emitter;
use super::{DeploySettings, FleetView};
use crate::model::{Deployment, DeploymentStatus, Member, MemberRole, MemberState, Millis};
use crate::options::{CommandOptions, DeploymentPolicy};

/// Lays out a deployment of `policy` over the members it was created with (the existing
/// hosts): the batches of new hosts to launch and the roles of the existing ones. `None` for
/// a policy that launches nothing.
pub fn layout(mut deployment: Deployment, options: &CommandOptions) -> Option<Deployment> {
    let existing = deployment.members.len();
    let slot = |batch: u32| Member {
        role: MemberRole::Launch,
        batch,
        ..super::pending_member("")
    };
    let mut launched = Vec::new();
    match options.policy {
        DeploymentPolicy::RollingWithAdditionalBatch => {
            let size = super::batches::batch_size(options, existing);
            launched.extend((0..size).map(|_| slot(0)));
            for (index, member) in deployment.members.iter_mut().enumerate() {
                member.batch = 1 + (index / size) as u32;
            }
        }
        DeploymentPolicy::Immutable => {
            launched.push(slot(0));
            launched.extend((1..existing.max(1)).map(|_| slot(1)));
            let retire_batch = if existing > 1 { 2 } else { 1 };
            retire(&mut deployment.members, retire_batch);
        }
        DeploymentPolicy::TrafficSplitting => {
            launched.extend((0..existing.max(1)).map(|_| slot(0)));
            retire(&mut deployment.members, 1);
        }
        _ => return None,
    }
    deployment.policy = options.policy.as_str().to_string();
    launched.append(&mut deployment.members);
    deployment.members = launched;
    Some(deployment)
}

fn retire(members: &mut [Member], batch: u32) {
    for member in members {
        member.role = MemberRole::Retire;
        member.batch = batch;
    }
}

/// Whether the deployment's policy launches hosts.
pub fn launches(deployment: &Deployment) -> bool {
    DeploymentPolicy::parse(&deployment.policy).is_some_and(DeploymentPolicy::needs_new_hosts)
}

/// A member the provisioner has not named yet.
pub fn is_slot(member: &Member) -> bool {
    member.role == MemberRole::Launch && member.instance_id.is_empty()
}

/// Whether `batch` is one of hosts being retired (the originals under Immutable and
/// TrafficSplitting, the additional batch once a RollingWithAdditionalBatch deployment is done).
pub fn is_retire_batch(deployment: &Deployment, batch: u32) -> bool {
    deployment
        .members
        .iter()
        .filter(|m| m.batch == batch)
        .any(|m| {
            m.role == MemberRole::Retire
                || matches!(
                    m.state,
                    MemberState::Retiring | MemberState::Releasing | MemberState::Released
                )
        })
}

/// The event that starts a batch of new hosts, in Elastic Beanstalk's words where it has them.
pub(super) fn launch_event(policy: &str, batch: u32, count: usize) -> String {
    match DeploymentPolicy::parse(policy) {
        Some(DeploymentPolicy::RollingWithAdditionalBatch) => format!(
            "Rolling with Additional Batch deployment policy enabled. Launching a new batch of {count} additional instance(s)."
        ),
        Some(DeploymentPolicy::Immutable) if batch == 0 => {
            "Immutable deployment policy enabled. Launching one instance with the new version to verify health.".to_string()
        }
        Some(DeploymentPolicy::TrafficSplitting) => format!(
            "Traffic splitting deployment policy enabled. Launching {count} instance(s) with the new version."
        ),
        _ => format!("Launching {count} more instance(s) with the new version."),
    }
}

/// A member of a batch of new hosts before it enrolls: a slot counts toward the hosts to
/// launch; a launched host becomes Dispatched once it enrolled (its first reply carries the
/// new version); either times out at the batch's deadline.
pub(super) fn launching(
    member: &mut Member,
    view: &FleetView,
    now_ms: Millis,
    deadline_ms: Millis,
    launch: &mut usize,
) {
    if now_ms > deadline_ms {
        member.state = MemberState::TimedOut;
        member.message = Some(if is_slot(member) {
            "Not launched before the command timeout.".into()
        } else {
            "The new instance did not enroll before the command timeout.".into()
        });
        member.done_ms = Some(now_ms);
        return;
    }
    if is_slot(member) {
        if member.state == MemberState::Pending {
            *launch += 1;
        }
        return;
    }
    if view
        .instances
        .get(&member.instance_id)
        .is_some_and(|h| h.enrolled)
    {
        member.state = MemberState::Dispatched;
        member.dispatched_ms = Some(now_ms);
    }
}

/// Why launching new hosts failed (the orchestrator marks the slots Failed with the
/// provisioner's error; a slot not named by the deadline times out), as the deployment's
/// message.
pub(super) fn launch_failure(d: &Deployment) -> Option<String> {
    let failed: Vec<&Member> = d
        .members
        .iter()
        .filter(|m| is_slot(m) && matches!(m.state, MemberState::Failed | MemberState::TimedOut))
        .collect();
    let first = failed.first()?;
    Some(format!(
        "Could not launch {} new instance(s): {}. Aborting the operation.",
        failed.len(),
        first
            .message
            .as_deref()
            .map_or("the provisioner failed", |m| m.trim_end_matches('.'))
    ))
}

/// TrafficSplitting, its new hosts' batch just passed: the event that starts the evaluation.
pub(super) fn evaluation_event(
    d: &Deployment,
    batch: u32,
    settings: &DeploySettings,
) -> Option<String> {
    (d.policy == DeploymentPolicy::TrafficSplitting.as_str() && is_retire_batch(d, batch + 1))
        .then(|| {
            format!(
                "Sending {}% of the traffic to the new instance(s) for {} seconds to evaluate them.",
                settings.new_version_percent,
                settings.evaluation_ms / 1000
            )
        })
}

/// RollingWithAdditionalBatch, every batch done: the additional hosts start retiring. Returns
/// whether it changed anything.
pub(super) fn retire_additional_batch(
    d: &mut Deployment,
    now_ms: Millis,
    out: &mut Emitter,
) -> bool {
    if d.policy != DeploymentPolicy::RollingWithAdditionalBatch.as_str() {
        return false;
    }
    let mut ids = Vec::new();
    for member in d.members.iter_mut().filter(|m| {
        m.role == MemberRole::Launch
            && !m.instance_id.is_empty()
            && m.state != MemberState::Released
    }) {
        member.state = MemberState::Retiring;
        member.drain_started_ms = Some(now_ms);
        ids.push(member.instance_id.clone());
    }
    if ids.is_empty() {
        return false;
    }
    ids.sort_unstable();
    out.info(&format!(
        "Removing the additional batch of instance(s) [{}] from the load balancer and terminating them.",
        ids.join(",")
    ));
    true
}

/// One step of a retire batch: (TrafficSplitting) the evaluation, then drain, release, and
/// done once every host is gone. `Err` is why the deployment fails.
pub(super) fn retire_batch(
    d: &mut Deployment,
    batch: u32,
    view: &FleetView,
    settings: &DeploySettings,
    now_ms: Millis,
    out: &mut Emitter,
    release: &mut Vec<String>,
) -> Result<bool, String> {
    let not_started = d
        .members
        .iter()
        .filter(|m| m.batch == batch)
        .all(|m| m.state == MemberState::Pending);
    if not_started {
        if d.policy == DeploymentPolicy::TrafficSplitting.as_str()
            && !evaluated(d, view, settings, now_ms)?
        {
            return Ok(false);
        }
        let mut ids: Vec<String> = Vec::new();
        for member in d.members.iter_mut().filter(|m| m.batch == batch) {
            member.state = MemberState::Retiring;
            member.drain_started_ms = Some(now_ms);
            ids.push(member.instance_id.clone());
        }
        ids.sort_unstable();
        out.info(&format!(
            "The new instance(s) passed their health checks. Removing the original instance(s) [{}] from the load balancer and terminating them.",
            ids.join(",")
        ));
    }
    let mut done = true;
    for member in d.members.iter_mut().filter(|m| m.batch == batch) {
        done &= step_release(member, view, settings, now_ms, release);
    }
    Ok(done)
}

/// Retiring → (drained) Releasing → (gone) Released; true once Released (or never retired).
fn step_release(
    member: &mut Member,
    view: &FleetView,
    settings: &DeploySettings,
    now_ms: Millis,
    release: &mut Vec<String>,
) -> bool {
    let host = view
        .instances
        .get(&member.instance_id)
        .filter(|h| h.enrolled);
    if member.state == MemberState::Retiring {
        let started = member.drain_started_ms.unwrap_or(now_ms);
        let timed_out = now_ms.saturating_sub(started) >= settings.drain_timeout_ms as i64;
        let drained = host
            .and_then(|h| h.lb.as_ref())
            .is_none_or(|lb| !lb.in_rotation && lb.sessions == 0);
        if timed_out || drained {
            member.state = MemberState::Releasing;
            member.done_ms = Some(now_ms);
        }
    }
    if member.state == MemberState::Releasing {
        // Gone, as seen by a step after the one that first asked for it (which may have
        // found it not enrolled yet).
        let asked = member.done_ms.is_some_and(|asked| asked < now_ms);
        if host.is_none() && asked {
            member.state = MemberState::Released;
            member.done_ms = Some(now_ms);
        } else {
            release.push(member.instance_id.clone());
        }
    }
    !matches!(member.state, MemberState::Retiring | MemberState::Releasing)
}

/// TrafficSplitting: whether the evaluation is over. It starts when the last new host passed
/// its gate; a new host that reports worse than the threshold, or whose load balancer checks
/// fail, during it fails the deployment.
fn evaluated(
    d: &Deployment,
    view: &FleetView,
    settings: &DeploySettings,
    now_ms: Millis,
) -> Result<bool, String> {
    let launched: Vec<&Member> = d
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Launch && m.state == MemberState::Healthy)
        .collect();
    let started = launched
        .iter()
        .filter_map(|m| m.done_ms)
        .max()
        .unwrap_or(now_ms);
    let mut failing: Vec<&str> = launched
        .iter()
        .filter(|m| {
            view.instances.get(&m.instance_id).is_none_or(|host| {
                !host.enrolled
                    || !super::members::passes(host.health, settings.threshold)
                    || host.lb.as_ref().is_some_and(|lb| !lb.up)
            })
        })
        .map(|m| m.instance_id.as_str())
        .collect();
    if !failing.is_empty() && !settings.ignore_health_check {
        failing.sort_unstable();
        return Err(format!(
            "Instance id(s) '{}' did not pass health check during the traffic splitting evaluation. Aborting the operation.",
            failing.join(",")
        ));
    }
    Ok(now_ms.saturating_sub(started) >= settings.evaluation_ms as i64)
}

/// The load balancer weights of a TrafficSplitting deployment while its new hosts share the
/// traffic: (new hosts' weight, original hosts' weight), in percent of the configured
/// weight, so that the new hosts together get `percent` of the requests:
/// `w_new / w_old = p·n_old / ((100 − p)·n_new)`, the larger scaled to 100. `None` outside
/// the split (before any new host serves, once the originals retire, on failure).
pub fn split_weights(d: &Deployment, percent: u32) -> Option<(u32, u32)> {
    if d.policy != DeploymentPolicy::TrafficSplitting.as_str()
        || d.status != DeploymentStatus::InProgress
    {
        return None;
    }
    let count =
        |pick: &dyn Fn(&Member) -> bool| d.members.iter().filter(|m| pick(m)).count() as u64;
    let new = count(&|m| m.role == MemberRole::Launch && m.state == MemberState::Healthy);
    let old = count(&|m| m.role == MemberRole::Retire && m.state == MemberState::Pending);
    if new == 0 || old == 0 {
        return None;
    }
    let p = u64::from(percent.clamp(1, 100));
    let (numerator, denominator) = (p * old, (100 - p) * new);
    // Rounded to the nearest percent; HAProxy's weights are whole numbers.
    let scaled = |part: u64, whole: u64| ((100 * part + whole / 2) / whole) as u32;
    Some(if numerator >= denominator {
        (100, scaled(denominator, numerator))
    } else {
        (scaled(numerator, denominator).max(1), 100)
    })
}

#[cfg(test)]
#[path = "fresh_tests.rs"]
mod tests;
