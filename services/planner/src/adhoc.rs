//! Probe-now (`ProbeDevice`, `PollDevice`): one device's target built as
//! for an assignment, sent as an `AdHocRequest` over the Work stream of the
//! least-loaded connected executor whose labels match the device's
//! selector, and the wait for its `AdHocResult`, bounded however the
//! executor behaves. Executors dial out (they may sit behind NAT), so the
//! stream they hold is the only way to reach them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use netward_shared::auth::Scope;
use netward_shared::inventory_copy::CopiedDevice;
use netward_shared::proto::v1;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::cycle::{Scheduler, SessionId, selector_matches};

/// Added to a probe's own bound for the trip over the streams.
const MARGIN: Duration = Duration::from_secs(5);
/// An SNMP poll-now's budget on the poller (a slow agent gives a partial
/// sample by then), before `MARGIN`.
const POLL_BUDGET: Duration = Duration::from_secs(15);

/// What the caller gets: the outcome and who ran it.
#[derive(Debug)]
pub struct AdHocDone {
    pub outcome: Outcome,
    pub executor_id: String,
    pub executor_labels: BTreeMap<String, String>,
    pub device: Arc<CopiedDevice>,
}

/// A probe's result or a poll's sample.
#[derive(Debug)]
pub enum Outcome {
    Probe(v1::ProbeResult),
    Sample(v1::SnmpSample),
}

#[derive(Debug, thiserror::Error)]
pub enum AdHocError {
    #[error("device {0:?} not found")]
    NotFound(String),
    #[error("the planner's inventory copy is not synced yet; retry in a few seconds")]
    NotSynced,
    /// The device cannot be polled (no SNMP, disabled, credential missing).
    #[error("{0}")]
    NotPollable(String),
    #[error(
        "no {} connected to this planner matches device {device:?}'s executor_selector {}; \
         connected: {}",
        kind_noun(*kind),
        selector_text(selector),
        connected_text(connected)
    )]
    NoExecutor {
        kind: v1::ExecutorKind,
        device: String,
        selector: BTreeMap<String, String>,
        /// Connected executors of the kind with their labels.
        connected: Vec<(String, BTreeMap<String, String>)>,
    },
    #[error("executor {executor} left (its Work stream ended) before answering")]
    SessionEnded { executor: String },
    #[error("executor {executor} cannot take the request: {reason}")]
    Unreachable { executor: String, reason: String },
    #[error("executor {executor} did not run the request: {reason}")]
    Refused { executor: String, reason: String },
    #[error(
        "executor {executor} (version {version}) did not answer within {} ms{}",
        waited.as_millis(),
        if *by_caller { " (the caller's deadline)" } else { "; a build older than probe-now ignores the request" }
    )]
    Timeout {
        executor: String,
        version: String,
        waited: Duration,
        by_caller: bool,
    },
}

fn kind_noun(kind: v1::ExecutorKind) -> &'static str {
    match kind {
        v1::ExecutorKind::Snmp => "snmp-poller",
        _ => "ping-executor",
    }
}

/// `{site=tbilisi-01}`, `{} (any executor)`.
fn selector_text(selector: &BTreeMap<String, String>) -> String {
    if selector.is_empty() {
        return "{} (any executor)".into();
    }
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(","))
}

fn connected_text(connected: &[(String, BTreeMap<String, String>)]) -> String {
    if connected.is_empty() {
        return "none".into();
    }
    let mut text = String::new();
    for (index, (id, labels)) in connected.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(
            text,
            "{id} {}",
            selector_text(labels).replace(" (any executor)", "")
        );
    }
    text
}

/// An answer awaited: from which session, and where it goes.
struct Pending {
    session: SessionId,
    tx: oneshot::Sender<v1::ad_hoc_result::Outcome>,
}

/// Requests sent and not answered yet, by request id.
pub struct AdHoc {
    scheduler: Arc<Scheduler>,
    pending: Mutex<HashMap<String, Pending>>,
    /// The longest wait, below the server's request timeout, so the caller
    /// hears this planner's precise error rather than the server's cut.
    max_wait: Duration,
}

/// Removes a request from `pending` however its wait ends.
struct PendingGuard<'a> {
    ad_hoc: &'a AdHoc,
    request_id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.ad_hoc.pending().remove(&self.request_id);
    }
}

impl AdHoc {
    pub fn new(scheduler: Arc<Scheduler>, max_wait: Duration) -> Self {
        Self {
            scheduler,
            pending: Mutex::new(HashMap::new()),
            max_wait,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An executor's answer; ignored unless the request is pending on its
    /// session (a late answer, or another session's, changes nothing).
    pub fn answered(&self, session: SessionId, result: v1::AdHocResult) {
        let mut pending = self.pending();
        if pending
            .get(&result.request_id)
            .is_none_or(|p| p.session != session)
        {
            return;
        }
        if let Some(waiter) = pending.remove(&result.request_id) {
            let outcome = result.outcome.unwrap_or_else(|| {
                v1::ad_hoc_result::Outcome::Error("it answered without an outcome".into())
            });
            let _ = waiter.tx.send(outcome);
        }
    }

    /// Probes (`Ping`) or polls (`Snmp`) the device `key` (id or name) now
    /// on a matching executor. `caller_wait` is what is left of the
    /// caller's deadline, if it gave one.
    pub async fn run(
        &self,
        kind: v1::ExecutorKind,
        key: &str,
        scope: &Scope,
        caller_wait: Option<Duration>,
    ) -> Result<AdHocDone, AdHocError> {
        let device = self
            .scheduler
            .find_device(key)
            .ok_or(AdHocError::NotSynced)?
            // Outside the caller's scope reads as absent, as in the inventory.
            .filter(|d| scope.allows(&d.region, &[&d.site_id, &d.site_name, &d.site_code]))
            .ok_or_else(|| AdHocError::NotFound(key.to_string()))?;
        let (target, own_bound) = self.target(&device, kind)?;
        let (mut wait, mut by_caller) = ((own_bound + MARGIN).min(self.max_wait), false);
        if let Some(left) = caller_wait
            && left < wait
        {
            (wait, by_caller) = (left, true);
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        let request = v1::AdHocRequest {
            request_id: request_id.clone(),
            kind: kind as i32,
            target: Some(target),
            // The executor's own bound: a second short of the wait, so its
            // answer (a partial sample at worst) arrives in time.
            timeout_ms: wait.saturating_sub(Duration::from_secs(1)).as_millis() as u32,
        };
        let chosen = self.send(kind, &device, request, &request_id, tx)?;
        let _guard = PendingGuard {
            ad_hoc: self,
            request_id,
        };
        tracing::info!(device = %device.name, executor_id = %chosen.id, kind = kind.as_str_name(), "probe-now sent");
        // An answer that came in just before the session ended still counts.
        let outcome = tokio::select! {
            biased;
            answer = rx => answer.map_err(|_| AdHocError::SessionEnded { executor: chosen.id.clone() })?,
            () = chosen.ended.cancelled() => {
                return Err(AdHocError::SessionEnded { executor: chosen.id });
            }
            () = tokio::time::sleep(wait) => {
                return Err(AdHocError::Timeout {
                    executor: chosen.id,
                    version: if chosen.version.is_empty() { "unknown".into() } else { chosen.version },
                    waited: wait,
                    by_caller,
                });
            }
        };
        use v1::ad_hoc_result::Outcome as Answer;
        let outcome = match outcome {
            Answer::Probe(result) if kind == v1::ExecutorKind::Ping => Outcome::Probe(result),
            Answer::Sample(sample) if kind == v1::ExecutorKind::Snmp => Outcome::Sample(sample),
            Answer::Error(reason) => {
                return Err(AdHocError::Refused {
                    executor: chosen.id,
                    reason,
                });
            }
            _ => {
                return Err(AdHocError::Refused {
                    executor: chosen.id,
                    reason: "it answered with the other kind of result".into(),
                });
            }
        };
        Ok(AdHocDone {
            outcome,
            executor_id: chosen.id,
            executor_labels: chosen.labels,
            device,
        })
    }

    /// The device's target, as an assignment of `kind` would carry it, and
    /// how long running it may take on the executor.
    fn target(
        &self,
        device: &CopiedDevice,
        kind: v1::ExecutorKind,
    ) -> Result<(v1::Target, Duration), AdHocError> {
        let mut target = self.scheduler.target(device, kind);
        if kind == v1::ExecutorKind::Ping {
            // Complete settings: there is no Assignment.probe to fall back on.
            let settings = *target.probe.get_or_insert(self.scheduler.config.probe);
            let attempts = u64::from(settings.count.max(1) + settings.retries.unwrap_or(2));
            let each = u64::from(settings.interval_ms) + u64::from(settings.timeout_ms.max(1000));
            return Ok((target, Duration::from_millis(attempts * each)));
        }
        let name = &device.name;
        let Some(snmp) = &device.snmp else {
            return Err(AdHocError::NotPollable(format!(
                "device {name:?} has no SNMP settings; `netward probe` pings it"
            )));
        };
        if !snmp.enabled {
            return Err(AdHocError::NotPollable(format!(
                "SNMP polling is disabled for device {name:?}"
            )));
        }
        let target_snmp = target.snmp.as_ref();
        if !snmp.credential_id.is_empty() && target_snmp.is_none_or(|t| t.credential.is_none()) {
            // Credentials are resolved for the devices cycles poll.
            return Err(AdHocError::NotPollable(if device.enabled {
                format!(
                    "the SNMP credential {} of device {name:?} is not resolved yet (the planner \
                     fetches it from the inventory); retry in a few seconds",
                    snmp.credential_id
                )
            } else {
                format!("device {name:?} is disabled, so its SNMP credential is not resolved")
            }));
        }
        target = self.scheduler.with_hints(target);
        if let Some(snmp) = target.snmp.as_mut() {
            // The operator sees the whole picture, labels included.
            snmp.refresh_labels = true;
        }
        Ok((target, POLL_BUDGET))
    }

    /// Picks the least-loaded matching executor of `kind`, records the wait
    /// for its answer, and queues the request on its stream.
    fn send(
        &self,
        kind: v1::ExecutorKind,
        device: &CopiedDevice,
        request: v1::AdHocRequest,
        request_id: &str,
        tx: oneshot::Sender<v1::ad_hoc_result::Outcome>,
    ) -> Result<Chosen, AdHocError> {
        let state = self.scheduler.lock();
        let of_kind = || state.executors.values().filter(|e| e.kind == kind);
        let Some(executor) = of_kind()
            .filter(|e| selector_matches(device.executor_selector.iter(), &e.labels))
            .min_by(|a, b| {
                let load = |e: &crate::cycle::Executor| {
                    f64::from(e.in_flight_devices) / f64::from(e.capacity.max(1))
                };
                load(a).total_cmp(&load(b)).then_with(|| a.id.cmp(&b.id))
            })
        else {
            let mut connected: Vec<(String, BTreeMap<String, String>)> = of_kind()
                .map(|e| (e.id.clone(), e.labels.clone()))
                .collect();
            connected.sort();
            return Err(AdHocError::NoExecutor {
                kind,
                device: device.name.to_string(),
                selector: device
                    .executor_selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                connected,
            });
        };
        let chosen = Chosen {
            id: executor.id.clone(),
            labels: executor.labels.clone(),
            version: executor.version.clone(),
            ended: executor.ended.clone(),
        };
        // Recorded before the send, so an answer cannot outrun it.
        self.pending().insert(
            request_id.to_string(),
            Pending {
                session: executor.session,
                tx,
            },
        );
        let message = v1::WorkResponse {
            msg: Some(v1::work_response::Msg::AdHocRequest(request)),
        };
        if let Err(error) = executor.tx.try_send(Ok(message)) {
            self.pending().remove(request_id);
            let reason = match error {
                tokio::sync::mpsc::error::TrySendError::Full(_) => "its Work stream is full",
                tokio::sync::mpsc::error::TrySendError::Closed(_) => "its Work stream is closing",
            };
            return Err(AdHocError::Unreachable {
                executor: chosen.id,
                reason: reason.into(),
            });
        }
        Ok(chosen)
    }
}

/// The executor a request went to.
struct Chosen {
    id: String,
    labels: BTreeMap<String, String>,
    version: String,
    ended: CancellationToken,
}

/// What is left of a caller's deadline, from its `grpc-timeout` header
/// (`<digits><H|M|S|m|u|n>`, the gRPC over HTTP/2 form).
pub fn caller_wait(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use netward_shared::inventory_copy::InventoryCopy;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;
    use crate::cycle::{WORK_CHANNEL, WorkReceiver};
    use crate::sizing::SizingPolicy;

    /// A scheduler over one device, `router-b`, selecting `zone=b`, in
    /// region EMEA.
    fn scheduler() -> Arc<Scheduler> {
        let device = v1::Device {
            id: "d-b".into(),
            name: "router-b".into(),
            ip_address: "127.0.0.1".into(),
            region: "EMEA".into(),
            site_name: "paris".into(),
            executor_selector: HashMap::from([("zone".into(), "b".into())]),
            ..Default::default()
        };
        Arc::new(Scheduler::new(
            crate::PlannerConfig::default().cycle_config(),
            SizingPolicy::default(),
            Arc::new(RwLock::new(InventoryCopy::of([device], 1))),
        ))
    }

    /// Registers a ping executor labelled `zone`; its session and stream.
    fn connect(scheduler: &Scheduler, id: &str, zone: &str) -> (SessionId, WorkReceiver) {
        let (tx, rx) = mpsc::channel(WORK_CHANNEL);
        let register = v1::Register {
            executor_id: id.into(),
            kind: v1::ExecutorKind::Ping as i32,
            capacity: 100,
            labels: HashMap::from([("zone".into(), zone.into())]),
            ..Default::default()
        };
        let (session, _) = scheduler
            .register(register, String::new(), tx, Instant::now())
            .unwrap();
        (session, rx)
    }

    /// The AdHocRequest queued on `rx`, if any.
    fn request(rx: &mut WorkReceiver) -> Option<v1::AdHocRequest> {
        loop {
            match rx.try_recv().ok()?.ok()?.msg {
                Some(v1::work_response::Msg::AdHocRequest(request)) => return Some(request),
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn the_least_loaded_matching_executor_runs_it_and_only_its_answer_counts() {
        let scheduler = scheduler();
        let (_, mut rx_a) = connect(&scheduler, "exec-a", "a");
        let (busy, mut rx_b1) = connect(&scheduler, "exec-b1", "b");
        let (idle, mut rx_b2) = connect(&scheduler, "exec-b2", "b");
        scheduler
            .lock()
            .executors
            .get_mut(&busy)
            .unwrap()
            .in_flight_devices = 50;
        // This scheduler does not lead: a standby routes probe-now too.
        assert!(!scheduler.lock().leading);
        let ad_hoc = Arc::new(AdHoc::new(scheduler.clone(), Duration::from_secs(20)));
        let running = tokio::spawn({
            let ad_hoc = ad_hoc.clone();
            async move {
                ad_hoc
                    .run(v1::ExecutorKind::Ping, "router-b", &Scope::default(), None)
                    .await
            }
        });
        let sent = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(request) = request(&mut rx_b2) {
                    return request;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert!(request(&mut rx_a).is_none() && request(&mut rx_b1).is_none());
        let target = sent.target.clone().unwrap();
        assert_eq!(
            (target.device_id.as_str(), target.address.as_str()),
            ("d-b", "127.0.0.1")
        );
        assert_eq!(
            target.probe,
            Some(scheduler.config.probe),
            "complete settings"
        );
        let answer = |session, received| {
            ad_hoc.answered(
                session,
                v1::AdHocResult {
                    request_id: sent.request_id.clone(),
                    outcome: Some(v1::ad_hoc_result::Outcome::Probe(v1::ProbeResult {
                        received,
                        ..Default::default()
                    })),
                },
            )
        };
        // Another session's answer to the request is not taken.
        answer(busy, 1);
        answer(idle, 3);
        let done = running.await.unwrap().unwrap();
        assert_eq!(done.executor_id, "exec-b2");
        assert!(matches!(done.outcome, Outcome::Probe(ref r) if r.received == 3));
        assert!(ad_hoc.pending().is_empty());
    }

    #[tokio::test]
    async fn outside_the_callers_scope_reads_as_not_found() {
        let scheduler = scheduler();
        let _session = connect(&scheduler, "exec-b", "b");
        let ad_hoc = AdHoc::new(scheduler, Duration::from_secs(20));
        let scope = Scope {
            regions: vec!["AMER".into()],
            sites: Vec::new(),
        };
        let error = ad_hoc
            .run(v1::ExecutorKind::Ping, "router-b", &scope, None)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "device \"router-b\" not found");
        let error = ad_hoc
            .run(v1::ExecutorKind::Ping, "d-b", &scope, None)
            .await
            .unwrap_err();
        assert!(matches!(error, AdHocError::NotFound(_)), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_executor_that_ignores_the_request_costs_the_caller_its_deadline() {
        let scheduler = scheduler();
        let _session = connect(&scheduler, "exec-b", "b");
        let ad_hoc = AdHoc::new(scheduler, Duration::from_secs(20));
        let error = ad_hoc
            .run(
                v1::ExecutorKind::Ping,
                "router-b",
                &Scope::default(),
                Some(Duration::from_secs(2)),
            )
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "executor exec-b (version unknown) did not answer within 2000 ms (the caller's deadline)"
        );
        assert!(ad_hoc.pending().is_empty());
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        let wait = |value: &str| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("grpc-timeout", value.parse().unwrap());
            caller_wait(&metadata)
        };
        assert_eq!(wait("2S"), Some(Duration::from_secs(2)));
        assert_eq!(wait("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(wait("9999937u"), Some(Duration::from_micros(9_999_937)));
        assert_eq!(wait("1M"), Some(Duration::from_secs(60)));
        assert_eq!(wait("5x"), None);
        assert_eq!(wait(""), None);
        assert_eq!(caller_wait(&tonic::metadata::MetadataMap::new()), None);
    }

    #[test]
    fn the_no_executor_message_names_the_selector_and_who_is_connected() {
        let error = AdHocError::NoExecutor {
            kind: v1::ExecutorKind::Ping,
            device: "r1".into(),
            selector: BTreeMap::from([("zone".into(), "c".into())]),
            connected: vec![
                (
                    "ping-a".into(),
                    BTreeMap::from([("zone".into(), "a".into())]),
                ),
                ("ping-b".into(), BTreeMap::new()),
            ],
        };
        assert_eq!(
            error.to_string(),
            "no ping-executor connected to this planner matches device \"r1\"'s \
             executor_selector {zone=c}; connected: ping-a {zone=a}, ping-b {}"
        );
    }
}
