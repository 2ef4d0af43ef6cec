//! Properties of crash recovery's decision (`conclusion`), the rules of docs/deployments.md
//! ("Crashes"): before the commit point a deployment is undone, after it finished, its
//! postdeploy hooks run once and only on the release that serves.

use proptest::prelude::*;

use super::super::model::{DeploymentStatus, InProgress, JobKind, StepRecord, StepStatus};
use super::{Conclusion, conclusion};

const ID: u64 = 7;

/// The steps a deployment records, the cutover's, the hooks' and a rollback's.
const STEPS: [&str; 16] = [
    "fetch",
    "extract",
    "hooks-prebuild",
    "buildfile",
    "hooks-predeploy",
    "confighooks-predeploy",
    "start-web",
    "health-gate",
    "switch-traffic",
    "flip",
    "stop-old",
    "start-worker",
    "hooks-postdeploy",
    "confighooks-postdeploy",
    "rollback-switch-traffic",
    "rollback-flip",
];

fn kind() -> impl Strategy<Value = JobKind> {
    prop::sample::select(
        &[
            JobKind::Deploy,
            JobKind::Configure,
            JobKind::Restart,
            JobKind::Rollback,
        ][..],
    )
}

fn steps() -> impl Strategy<Value = Vec<StepRecord>> {
    let status = prop::sample::select(
        &[
            StepStatus::Running,
            StepStatus::Succeeded,
            StepStatus::Failed,
        ][..],
    );
    let step = (prop::sample::select(&STEPS[..]), status).prop_map(|(name, status)| StepRecord {
        name: name.to_string(),
        status,
        started_ms: 0,
        duration_ms: None,
        message: None,
    });
    prop::collection::vec(step, 0..12)
}

/// Nothing, this deployment's release, or another's.
fn serving() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), Just(Some(ID)), (1..ID).prop_map(Some)]
}

fn postdeploy_succeeded(steps: &[StepRecord]) -> bool {
    steps
        .iter()
        .any(|s| s.name.ends_with("postdeploy") && s.status == StepStatus::Succeeded)
}

fn interrupted(committed: bool) -> InProgress {
    InProgress { id: ID, committed }
}

proptest! {
    #[test]
    fn a_deployment_interrupted_before_its_commit_point_is_undone(
        kind in kind(),
        steps in steps(),
        serving in serving(),
    ) {
        prop_assert_eq!(conclusion(interrupted(false), kind, &steps, serving), Conclusion::Undo);
    }

    #[test]
    fn after_the_commit_point_it_is_finished_never_undone(
        kind in kind(),
        steps in steps(),
        serving in serving(),
    ) {
        match conclusion(interrupted(true), kind, &steps, serving) {
            Conclusion::Undo => prop_assert!(false, "a committed deployment was undone"),
            Conclusion::RunPostdeploy(_) => {}
            Conclusion::Finish(status) => prop_assert!(
                matches!(status, DeploymentStatus::Succeeded | DeploymentStatus::RolledBack),
                "{:?}", status
            ),
        }
    }

    #[test]
    fn postdeploy_hooks_run_once_only_for_the_serving_release_of_their_kind(
        kind in kind(),
        steps in steps(),
        serving in serving(),
    ) {
        let decided = conclusion(interrupted(true), kind, &steps, serving);
        let phase = match kind {
            JobKind::Deploy => Some(".platform/hooks/postdeploy"),
            JobKind::Configure => Some(".platform/confighooks/postdeploy"),
            JobKind::Restart | JobKind::Rollback => None,
        };
        let owed = phase.filter(|_| serving == Some(ID) && !postdeploy_succeeded(&steps));
        match owed {
            // Hooks that had not succeeded are not skipped...
            Some(phase) => prop_assert_eq!(decided, Conclusion::RunPostdeploy(phase)),
            // ...and hooks that succeeded, or of a release that no longer serves, never run.
            None => prop_assert!(!matches!(decided, Conclusion::RunPostdeploy(_)), "{:?}", decided),
        }
    }

    #[test]
    fn a_committed_release_that_no_longer_serves_was_rolled_back(
        kind in kind(),
        steps in steps(),
        serving in prop_oneof![Just(None), (1..ID).prop_map(Some)],
    ) {
        // A rollback job's release is an earlier deployment's: it never "serves" as its own.
        let expected = match kind {
            JobKind::Rollback => DeploymentStatus::Succeeded,
            _ => DeploymentStatus::RolledBack,
        };
        prop_assert_eq!(
            conclusion(interrupted(true), kind, &steps, serving),
            Conclusion::Finish(expected)
        );
    }
}
