//! A deployment that launched hosts and fails or is aborted gives them back before it ends:
//! it is `Failing` / `Aborting` until the provisioner has released them (drained first when
//! they served), while the original hosts it was about to retire stay in service.

use super::super::events::Emitter;
use super::super::members::is_final;
use super::super::{DeploySettings, FleetView, StepOutcome};
use super::{is_slot, launches, step_release};
use crate::model::{Deployment, DeploymentStatus, MemberRole, MemberState, Millis};

/// After a failure: Failing while hosts it launched must be given back (the events of the
/// failure are the caller's). Returns whether the deployment still has hosts to release.
pub(in crate::deploy) fn start_failing(d: &mut Deployment, out: &mut Emitter) -> bool {
    if !launches(d) {
        return false;
    }
    let ids = to_release(d);
    if ids.is_empty() {
        return false;
    }
    d.status = DeploymentStatus::Failing;
    out.info(&format!(
        "Terminating the new instance(s) [{}]: the original instances keep serving.",
        ids.join(",")
    ));
    true
}

/// The launched hosts not yet released, sorted.
fn to_release(d: &Deployment) -> Vec<String> {
    let mut ids: Vec<String> = d
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Launch && !m.instance_id.is_empty())
        .filter(|m| m.state != MemberState::Released)
        .map(|m| m.instance_id.clone())
        .collect();
    ids.sort_unstable();
    ids
}

/// A Failing or Aborting deployment's step: the launched hosts are released (drained first
/// by the load balancer's answer), originals being retired stay in service; once nothing is
/// left to release it is Failed or Aborted.
pub(in crate::deploy) fn clean_up(
    d: &mut Deployment,
    view: &FleetView,
    settings: &DeploySettings,
    now_ms: Millis,
    release: &mut Vec<String>,
) {
    let mut left = false;
    for member in &mut d.members {
        match member.role {
            MemberRole::Launch if is_slot(member) && !is_final(member.state) => {
                member.state = MemberState::Failed;
                member.message = Some("Not launched: the deployment did not complete.".into());
                member.done_ms = Some(now_ms);
            }
            MemberRole::Launch if is_slot(member) => {}
            MemberRole::Launch => match member.state {
                MemberState::Released => {}
                MemberState::Retiring | MemberState::Releasing => {
                    left |= !step_release(member, view, settings, now_ms, release);
                }
                // It may have served: drained first, so the traffic goes back without errors.
                MemberState::Deployed | MemberState::Healthy | MemberState::TimedOut => {
                    member.state = MemberState::Retiring;
                    member.drain_started_ms = Some(now_ms);
                    left = true;
                }
                // Never served: released now, asked once even if it never enrolled.
                _ => {
                    member.state = MemberState::Releasing;
                    member.done_ms = Some(now_ms);
                    release.push(member.instance_id.clone());
                    left = true;
                }
            },
            MemberRole::Retire if member.state == MemberState::Releasing => {
                // Already being terminated when it failed: that cannot be undone.
                left |= !step_release(member, view, settings, now_ms, release);
            }
            MemberRole::Retire
                if !is_final(member.state) && member.state != MemberState::Released =>
            {
                member.state = MemberState::Failed;
                member.message = Some("Kept in service: the deployment did not complete.".into());
                member.done_ms = Some(now_ms);
            }
            _ => {}
        }
    }
    if !left {
        d.status = match d.status {
            DeploymentStatus::Aborting => DeploymentStatus::Aborted,
            _ => DeploymentStatus::Failed,
        };
        d.finished_ms = Some(now_ms);
    }
}

/// An abort of a deployment that launched hosts: Aborting until they are released.
pub(in crate::deploy) fn after_abort(mut out: StepOutcome, now_ms: Millis) -> StepOutcome {
    let d = &mut out.deployment;
    if d.status != DeploymentStatus::Aborted || !launches(d) || to_release(d).is_empty() {
        return out;
    }
    d.status = DeploymentStatus::Aborting;
    d.finished_ms = None;
    // Retiring originals go back into service; launched hosts are released from the next step.
    for member in &mut d.members {
        if member.role == MemberRole::Retire && member.state == MemberState::Retiring {
            member.state = MemberState::Failed;
            member.message = Some("Kept in service: the deployment was aborted.".into());
            member.done_ms = Some(now_ms);
        }
    }
    out
}
