//! Never blind: what alerting knows of the planner, and the monitoring gaps
//! it raises when devices stop getting results. The planner is followed over
//! gRPC (its current ping cycle and connected executors, every few seconds),
//! because what only the planner knows — no executor connected, batches
//! nobody can take, no cycle at all — is the cause an operator needs to read
//! in the alert. Stale devices are grouped by cause and scope so that one
//! dead executor is one alert, never one per device.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use netward_shared::client::{ClientOptions, PeerChannel, connect};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::evaluate::Freshness;

/// The scope key of a gap covering the whole fleet.
pub const FLEET: &str = "all";

/// How often the planner is asked.
pub const PLANNER_POLL: Duration = Duration::from_secs(2);

/// The ping interval assumed until the planner has said what it is.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// What alerting last learned from the planner(s).
#[derive(Debug, Clone, Default)]
pub struct PlannerView {
    /// When a planner last answered at all (leader or standby).
    pub answered_at: Option<SystemTime>,
    /// Why the last round reached no planner (all URLs failed).
    pub error: Option<String>,
    /// Whether the last round found a leading planner.
    pub leader: bool,
    /// The leader's latest ping cycle: when it opened and its interval.
    pub cycle: Option<v1::CycleSummary>,
    /// Labels of the ping executors connected to the leader.
    pub executors: Vec<BTreeMap<String, String>>,
}

pub type SharedView = Arc<RwLock<PlannerView>>;

impl PlannerView {
    /// The ping interval the planner reported (10 s until it has).
    pub fn interval(&self) -> Duration {
        self.cycle
            .as_ref()
            .and_then(|c| c.interval)
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_INTERVAL)
    }

    /// A cause that leaves every device without results, if the planner's
    /// side shows one: unreachable, nobody leading, no cycle, no executor.
    pub fn fleet_cause(&self, now: SystemTime) -> Option<String> {
        let interval = self.interval();
        // The view itself is old: the follower cannot reach any planner.
        let heard = self
            .answered_at
            .is_some_and(|at| now.duration_since(at).unwrap_or_default() <= PLANNER_POLL * 3);
        if !heard {
            return Some(match &self.error {
                Some(error) => format!("the planner is unreachable ({error})"),
                None => "the planner has not answered alerting".to_string(),
            });
        }
        if !self.leader {
            return Some(
                "no planner is leading (standbys only: is the Redis lease reachable?)".into(),
            );
        }
        let opened = self
            .cycle
            .as_ref()
            .and_then(|c| c.started_at.as_ref())
            .and_then(crate::from_timestamp)
            .map(SystemTime::from);
        let late =
            opened.is_none_or(|at| now.duration_since(at).unwrap_or_default() > interval * 2);
        if late {
            return Some(match opened {
                Some(at) => format!("the planner opened no ping cycle since {}", clock(at)),
                None => "the planner has opened no ping cycle".into(),
            });
        }
        if self.executors.is_empty() {
            return Some("no ping executor is connected to the planner".into());
        }
        None
    }

    /// Why devices with `selector` get no results when the fleet as a whole
    /// does: nobody can take their batches, or their results get lost.
    fn group_cause(&self, selector: &BTreeMap<String, String>) -> String {
        let served = self
            .executors
            .iter()
            .any(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
        if !served {
            return format!(
                "no ping executor matches executor_selector {}: its batches go unserved",
                selector_text(selector)
            );
        }
        match &self.cycle {
            Some(cycle) if cycle.unserved > 0 => format!(
                "the planner left {} batches ({} devices) unserved in cycle {}: executors full or refusing",
                cycle.unserved, cycle.unserved_devices, cycle.cycle_id
            ),
            _ => "executors are connected but no results reach alerting (delivery or ingest stuck, or the devices are skipped)".into(),
        }
    }
}

/// Follows the planner(s) of `planner_urls` (comma-separated, leader and
/// standbys) every [`PLANNER_POLL`] until `stop`.
pub async fn follow_planner(
    planner_urls: String,
    client: ClientOptions,
    view: SharedView,
    stop: CancellationToken,
) {
    let clients: Vec<(String, Result<PlannerServiceClient<PeerChannel>, String>)> = planner_urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|url| {
            let client = connect(url, &client)
                .map(PlannerServiceClient::new)
                .map_err(|e| e.to_string());
            (url.to_string(), client)
        })
        .collect();
    let mut tick = tokio::time::interval(PLANNER_POLL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let round = ask_planners(&clients).await;
        let mut view = view.write().unwrap_or_else(|p| p.into_inner());
        match round {
            Round::Leader { cycle, executors } => {
                view.answered_at = Some(SystemTime::now());
                view.error = None;
                view.leader = true;
                if cycle.is_some() {
                    view.cycle = cycle;
                }
                view.executors = executors;
            }
            Round::NoLeader => {
                view.answered_at = Some(SystemTime::now());
                view.error = None;
                view.leader = false;
            }
            Round::Unreachable(error) => view.error = Some(error),
        }
    }
}

enum Round {
    Leader {
        cycle: Option<v1::CycleSummary>,
        executors: Vec<BTreeMap<String, String>>,
    },
    NoLeader,
    Unreachable(String),
}

/// One round over the planners: the leader's answer if one leads.
async fn ask_planners(
    clients: &[(String, Result<PlannerServiceClient<PeerChannel>, String>)],
) -> Round {
    let mut errors = Vec::new();
    let mut answered = false;
    for (url, client) in clients {
        let mut client = match client {
            Ok(client) => client.clone(),
            Err(error) => {
                errors.push(format!("{url}: {error}"));
                continue;
            }
        };
        let deadline = PLANNER_POLL;
        let cycle = tokio::time::timeout(
            deadline,
            client.get_current_cycle(v1::GetCurrentCycleRequest {
                kind: v1::ExecutorKind::Ping as i32,
            }),
        )
        .await;
        let cycle = match cycle {
            Err(_) => {
                errors.push(format!("{url}: no answer within {deadline:?}"));
                continue;
            }
            Ok(Ok(response)) => response.into_inner().cycle,
            // Leading, but no cycle has started yet.
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => None,
            Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                answered = true;
                continue;
            }
            Ok(Err(status)) => {
                errors.push(format!("{url}: {:?}: {}", status.code(), status.message()));
                continue;
            }
        };
        let executors = tokio::time::timeout(
            deadline,
            client.list_executors(v1::ListExecutorsRequest {
                kind: v1::ExecutorKind::Ping as i32,
            }),
        )
        .await;
        let executors = match executors {
            Ok(Ok(response)) => response
                .into_inner()
                .executors
                .into_iter()
                .map(|e| e.labels.into_iter().collect())
                .collect(),
            Ok(Err(status)) => {
                errors.push(format!("{url}: {:?}: {}", status.code(), status.message()));
                continue;
            }
            Err(_) => {
                errors.push(format!("{url}: no answer within {deadline:?}"));
                continue;
            }
        };
        return Round::Leader { cycle, executors };
    }
    if answered {
        Round::NoLeader
    } else {
        Round::Unreachable(errors.join("; "))
    }
}

/// Stale devices of one cause and scope: one monitoring-gap alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// The scope's key, stable while the gap lasts ("all", "selector:site=x").
    pub scope: String,
    /// The scope in words ("all devices", "devices with executor_selector site=x").
    pub scope_text: String,
    pub cause: String,
    pub devices: Vec<Uuid>,
    /// Monitored devices in the scope.
    pub in_scope: usize,
    /// The oldest last result among the stale devices (`None`: some never had one).
    pub since: Option<SystemTime>,
}

impl Gap {
    /// The alert's summary.
    pub fn summary(&self) -> String {
        let since = match self.since {
            Some(at) => format!(" since {}", clock(at)),
            None => String::new(),
        };
        format!(
            "monitoring gap: {} of {} {} have no fresh result{since}: {}",
            self.devices.len(),
            self.in_scope,
            self.scope_text,
            self.cause
        )
    }
}

/// Groups the stale devices of `freshness` by cause and scope: one gap for
/// the whole fleet when the planner's side explains it, else one per
/// executor selector (the unit the planner serves), each with the
/// per-device reasons that go into their states. A fleet gap already open
/// (`fleet_open`) keeps every stale device until none is left: an executor
/// coming back refreshes devices over a cycle, and the gap must not split
/// into per-selector alerts on the way out.
pub fn gaps(
    freshness: &Freshness,
    copy: &SharedCopy,
    view: &PlannerView,
    fleet_open: bool,
    now: SystemTime,
) -> (Vec<Gap>, Vec<(Uuid, String)>) {
    if freshness.stale.is_empty() {
        return (Vec::new(), Vec::new());
    }
    // Selector of every monitored device, and how many share each.
    let (selector_of, group_sizes) = {
        let copy = copy.read().unwrap_or_else(|p| p.into_inner());
        let mut selector_of: std::collections::HashMap<Uuid, BTreeMap<String, String>> =
            std::collections::HashMap::new();
        let mut sizes: BTreeMap<BTreeMap<String, String>, usize> = BTreeMap::new();
        for device in copy.devices.values().filter(|d| d.enabled) {
            let selector: BTreeMap<String, String> = device
                .executor_selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            *sizes.entry(selector.clone()).or_default() += 1;
            if let Ok(id) = Uuid::parse_str(&device.id) {
                selector_of.insert(id, selector);
            }
        }
        (selector_of, sizes)
    };
    let mut gaps: Vec<Gap> = Vec::new();
    let fleet_cause = view.fleet_cause(now).or_else(|| {
        fleet_open.then(|| {
            "results are coming back; these have none yet since the planner's side recovered"
                .to_string()
        })
    });
    match fleet_cause {
        Some(cause) => gaps.push(Gap {
            scope: FLEET.into(),
            scope_text: "devices".into(),
            cause,
            devices: freshness.stale.iter().map(|(id, _)| *id).collect(),
            in_scope: freshness.monitored,
            since: None,
        }),
        None => {
            let mut groups: BTreeMap<BTreeMap<String, String>, Vec<Uuid>> = BTreeMap::new();
            for (id, _) in &freshness.stale {
                let selector = selector_of.get(id).cloned().unwrap_or_default();
                groups.entry(selector).or_default().push(*id);
            }
            for (selector, devices) in groups {
                gaps.push(Gap {
                    scope: format!("selector:{}", selector_text(&selector)),
                    scope_text: if selector.is_empty() {
                        "devices with no executor selector".into()
                    } else {
                        format!(
                            "devices with executor_selector {}",
                            selector_text(&selector)
                        )
                    },
                    cause: view.group_cause(&selector),
                    in_scope: group_sizes.get(&selector).copied().unwrap_or(devices.len()),
                    devices,
                    since: None,
                });
            }
        }
    }
    let last: std::collections::HashMap<Uuid, Option<SystemTime>> =
        freshness.stale.iter().copied().collect();
    let mut reasons = Vec::with_capacity(freshness.stale.len());
    for gap in &mut gaps {
        let lasts: Vec<Option<SystemTime>> = gap
            .devices
            .iter()
            .map(|id| last.get(id).copied().flatten())
            .collect();
        gap.since = lasts
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .and_then(|all| all.into_iter().min());
        for (id, last) in gap.devices.iter().zip(lasts) {
            let reason = match last {
                Some(at) => format!("no result since {}: {}", clock(at), gap.cause),
                None => format!("no result yet: {}", gap.cause),
            };
            reasons.push((*id, reason));
        }
    }
    (gaps, reasons)
}

/// "site=tbilisi-01,zone=a"; "none" for the empty selector.
fn selector_text(selector: &BTreeMap<String, String>) -> String {
    if selector.is_empty() {
        return "none".into();
    }
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A wall-clock time of day in UTC, for reasons ("14:02:10").
fn clock(at: SystemTime) -> String {
    DateTime::<Utc>::from(at).format("%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + t)
    }

    fn leading(now: u64, executors: usize) -> PlannerView {
        PlannerView {
            answered_at: Some(at(now)),
            error: None,
            leader: true,
            cycle: Some(v1::CycleSummary {
                cycle_id: 7,
                started_at: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000 + now as i64 - 3,
                    nanos: 0,
                }),
                interval: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            executors: vec![BTreeMap::new(); executors],
        }
    }

    #[test]
    fn the_planners_side_names_a_fleet_wide_cause() {
        assert_eq!(leading(100, 1).fleet_cause(at(100)), None);
        assert_eq!(
            leading(100, 0).fleet_cause(at(100)).as_deref(),
            Some("no ping executor is connected to the planner")
        );
        let mut view = leading(100, 1);
        view.leader = false;
        assert!(
            view.fleet_cause(at(100))
                .unwrap()
                .contains("no planner is leading")
        );
        // The last cycle opened 3 s before t=100: late after two intervals.
        let mut view = leading(100, 1);
        view.answered_at = Some(at(118));
        assert!(
            view.fleet_cause(at(118))
                .unwrap()
                .contains("opened no ping cycle since")
        );
        let mut view = leading(100, 1);
        view.error = Some("http://127.0.0.1:50052: connection refused".into());
        assert!(
            view.fleet_cause(at(110)).unwrap().contains(
                "the planner is unreachable (http://127.0.0.1:50052: connection refused)"
            )
        );
        assert!(
            PlannerView::default()
                .fleet_cause(at(0))
                .unwrap()
                .contains("has not answered")
        );
    }

    #[test]
    fn a_selector_nobody_serves_is_named() {
        let mut view = leading(100, 0);
        view.executors = vec![BTreeMap::from([("site".to_string(), "a".to_string())])];
        let b = BTreeMap::from([("site".to_string(), "b".to_string())]);
        assert_eq!(
            view.group_cause(&b),
            "no ping executor matches executor_selector site=b: its batches go unserved"
        );
        assert!(
            view.group_cause(&BTreeMap::new())
                .contains("no results reach alerting")
        );
    }
}
