//! Results from executor tokens are stored only under the planner's grant:
//! the batch's signed list of devices ([`netward_shared::auth::grant`]).
//! Other callers (admin, the single token, anonymous) are trusted as before.

use netward_shared::auth::grant::{GrantKey, VerifiedGrant};
use netward_shared::auth::{Caller, Role};
use netward_shared::proto::v1;

/// Why a batch from `caller` may not be stored, or `None` when it may.
/// `reason` labels the rejection counter; the text goes to the sender.
pub fn refusal(
    key: Option<&GrantKey>,
    caller: &Caller,
    batch: &v1::ResultBatch,
    now_unix: i64,
) -> Option<(&'static str, String)> {
    if caller.role != Role::Executor {
        return None;
    }
    if batch.executor_id != caller.name {
        return Some((
            "wrong_executor",
            format!(
                "the executor token {:?} may only report as executor_id {:?}, not {:?}",
                caller.name, caller.name, batch.executor_id
            ),
        ));
    }
    let Some(key) = key else {
        return Some((
            "no_grant_key",
            "alerting has no auth.grant_key, so it cannot verify an executor token's results; \
             configure the same auth.grant_key on the planner and alerting"
                .to_string(),
        ));
    };
    let checked = VerifiedGrant::check(
        key,
        batch.grant.as_ref(),
        &caller.name,
        &batch.batch_id,
        now_unix,
    )
    .and_then(|grant| {
        grant.require_all(
            batch
                .probes
                .iter()
                .map(|p| p.device_id.as_str())
                .chain(batch.samples.iter().map(|s| s.device_id.as_str())),
        )
    });
    checked.err().map(|error| ("grant", error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netward_shared::auth::Scope;
    use netward_shared::auth::grant::pack_device_ids;
    use netward_shared::secret::Secret;

    const MINE: &str = "0191e3c2-7d3a-7b6e-8000-000000000001";
    const OTHER: &str = "0191e3c2-7d3a-7b6e-8000-000000000002";

    fn caller(role: Role) -> Caller {
        Caller {
            name: "branch-17".into(),
            role,
            scope: Scope::default(),
        }
    }

    fn batch(key: &GrantKey, devices: &[&str]) -> v1::ResultBatch {
        v1::ResultBatch {
            executor_id: "branch-17".into(),
            batch_id: "ping-1-0".into(),
            probes: devices
                .iter()
                .map(|id| v1::ProbeResult {
                    device_id: (*id).into(),
                    ..Default::default()
                })
                .collect(),
            grant: Some(key.sign(&v1::BatchGrant {
                executor: "branch-17".into(),
                batch_id: "ping-1-0".into(),
                expires_unix: 100,
                device_ids: pack_device_ids([MINE]),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn executor_results_need_a_grant_naming_their_devices() {
        let key = GrantKey::parse(&Secret::new("07".repeat(32))).unwrap();
        let executor = caller(Role::Executor);
        assert_eq!(
            refusal(Some(&key), &executor, &batch(&key, &[MINE]), 50),
            None
        );
        let forged = refusal(Some(&key), &executor, &batch(&key, &[MINE, OTHER]), 50);
        assert_eq!(forged.unwrap().0, "grant");
        let mut renamed = batch(&key, &[MINE]);
        renamed.executor_id = "branch-18".into();
        assert_eq!(
            refusal(Some(&key), &executor, &renamed, 50).unwrap().0,
            "wrong_executor"
        );
        assert_eq!(
            refusal(None, &executor, &batch(&key, &[MINE]), 50)
                .unwrap()
                .0,
            "no_grant_key"
        );
        // Other roles are not asked for grants.
        assert_eq!(
            refusal(None, &caller(Role::Admin), &batch(&key, &[OTHER]), 500),
            None
        );
    }
}
