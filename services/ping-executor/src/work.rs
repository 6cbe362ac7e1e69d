//! The ping executor's batches: each assignment's targets probed from its
//! start time, their results handed to delivery. The `Work` stream itself
//! (registration, fencing, capacity, `BatchDone`, the drain) is
//! `netward_shared::work`'s, the same as the SNMP poller's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use netward_shared::client::ClientOptions;
use netward_shared::delivery::ResultSender;
use netward_shared::proto::v1;
use netward_shared::work::{BatchRunner, ExecutorState, Outbox, Pacing, wait_for_start};
pub use netward_shared::work::{Identity, timestamp};
use rand::Rng as _;

use crate::icmp::{Pinger, ProbeFailure, ProbeOutcome, ProbeSpec};

/// The ping executor: the shared work-stream state and the ICMP engine.
pub struct Executor {
    pub state: ExecutorState,
    pub pinger: Arc<Pinger>,
    /// Results per `ResultBatch` message.
    pub results_per_message: usize,
}

impl Executor {
    pub fn new(
        identity: Identity,
        pinger: Arc<Pinger>,
        sender: ResultSender,
        client: ClientOptions,
        results_per_message: usize,
    ) -> Self {
        Self {
            state: ExecutorState::new(identity, sender, client),
            pinger,
            results_per_message,
        }
    }
}

impl BatchRunner for Executor {
    const KIND: v1::ExecutorKind = v1::ExecutorKind::Ping;

    fn state(&self) -> &ExecutorState {
        &self.state
    }

    fn pacing(&self) -> Pacing {
        let stats = self.pinger.stats();
        Pacing {
            pps_budget: stats.packets_per_second,
            pps_used: stats.pps_used,
        }
    }

    /// Probes every target of a batch from its start time, hands results to
    /// delivery in messages of `results_per_message`, and reports the batch.
    /// Cut short at shutdown (`state.abort`): a target without a verdict yet
    /// gets no result and is counted as skipped in `BatchDone`, as the SNMP
    /// poller does (no row claims a probe that did not happen).
    async fn run(self: Arc<Self>, assignment: v1::Assignment) -> v1::BatchDone {
        let started_wall = SystemTime::now();
        let abort = self.state.abort.clone();
        tokio::select! {
            () = wait_for_start(&assignment) => {}
            () = abort.cancelled() => {}
        }
        let started = tokio::time::Instant::now();
        let defaults = assignment.probe.unwrap_or_default();
        // Spread the targets' first packets over a short window, so a batch
        // of 500 is not one burst (the pacing budget smooths the rest).
        let window = Duration::from_millis(500);
        let trace_context = netward_shared::trace_context::current();
        let mut pending: FuturesUnordered<_> = assignment
            .targets
            .iter()
            .map(|target| {
                let settings = target.probe.unwrap_or(defaults);
                let jitter = window.mul_f64(rand::rng().random::<f64>());
                let pinger = &self.pinger;
                let abort = abort.clone();
                async move {
                    let probe = async {
                        tokio::time::sleep(jitter).await;
                        probe_target(pinger, target, &settings).await
                    };
                    // Dropping a probe mid-way is safe: its packets' replies
                    // are then simply not waited for.
                    tokio::select! {
                        biased;
                        () = abort.cancelled() => None,
                        probe = probe => Some(probe),
                    }
                }
            })
            .collect();

        let mut outbox = Outbox::new(
            &self.state.sender,
            &assignment,
            &trace_context,
            self.results_per_message,
        );
        let (mut succeeded, mut failed, mut skipped) = (0u32, 0u32, 0u32);
        while let Some(probed) = pending.next().await {
            let Some(mut probe) = probed else {
                skipped += 1;
                continue;
            };
            probe.cycle_id = assignment.cycle_id;
            probe.batch_id = assignment.batch_id.clone();
            if probe.outcome == v1::ProbeOutcome::Ok as i32 {
                succeeded += 1;
            } else {
                failed += 1;
            }
            outbox.push(probe);
        }
        let messages = outbox.finish();
        tracing::debug!(batch_id = %assignment.batch_id, succeeded, failed, skipped, "batch done");
        v1::BatchDone {
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            leader_epoch: assignment.leader_epoch,
            devices: assignment.targets.len() as u32,
            succeeded,
            failed,
            skipped,
            duration_ms: started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            result_batches_sent: messages,
            trace_context: Some(trace_context),
            cancelled: false,
            snmp_hints: Vec::new(),
            started_at: Some(timestamp(started_wall)),
        }
    }

    /// Probe-now: the target probed as in a batch, with its own settings
    /// (the planner always sends them). Bounded by the settings, as every
    /// probe is: `timeout_ms` is the planner's wait, not needed here.
    async fn ad_hoc(self: Arc<Self>, request: v1::AdHocRequest) -> v1::ad_hoc_result::Outcome {
        let target = request.target.unwrap_or_default();
        let settings = target.probe.unwrap_or_default();
        v1::ad_hoc_result::Outcome::Probe(probe_target(&self.pinger, &target, &settings).await)
    }
}

/// Probes one target now with `settings`: what a batch does for each of
/// its targets, probe-now and `ExecutorService.Probe` too.
pub async fn probe_target(
    pinger: &Pinger,
    target: &v1::Target,
    settings: &v1::ProbeSettings,
) -> v1::ProbeResult {
    let probed_at = SystemTime::now();
    let began = tokio::time::Instant::now();
    let outcome = match target.address.parse() {
        Ok(address) => pinger.probe(address, &spec(settings)).await,
        Err(_) => ProbeOutcome::invalid_address(),
    };
    result(target, &outcome, probed_at, began.elapsed())
}

/// The probe settings of a target, with the documented defaults for zeros.
pub fn spec(settings: &v1::ProbeSettings) -> ProbeSpec {
    let or = |value: u32, default: u64| {
        if value == 0 {
            default
        } else {
            u64::from(value)
        }
    };
    ProbeSpec {
        count: if settings.count == 0 {
            3
        } else {
            settings.count.min(100)
        },
        interval: Duration::from_millis(or(settings.interval_ms, 200)),
        timeout: Duration::from_millis(or(settings.timeout_ms, 1000)),
        retries: settings.retries.unwrap_or(2).min(10),
    }
}

/// A probe's outcome as the API reports it.
pub fn result(
    target: &v1::Target,
    outcome: &ProbeOutcome,
    probed_at: SystemTime,
    took: Duration,
) -> v1::ProbeResult {
    let micros = |d: Option<Duration>| d.map(|d| d.as_micros().min(u128::from(u32::MAX)) as u32);
    let (outcome_code, detail) = match &outcome.failure {
        None => (v1::ProbeOutcome::Ok, String::new()),
        Some(ProbeFailure::Timeout) => (v1::ProbeOutcome::Timeout, String::new()),
        Some(ProbeFailure::Unreachable) => (v1::ProbeOutcome::Unreachable, String::new()),
        Some(ProbeFailure::NoRoute(error)) => (v1::ProbeOutcome::NoRoute, error.clone()),
        Some(ProbeFailure::SendError(error)) => (v1::ProbeOutcome::SendError, error.clone()),
        Some(ProbeFailure::InvalidAddress) => (
            v1::ProbeOutcome::InvalidAddress,
            format!("not an IP address: {:?}", target.address),
        ),
    };
    v1::ProbeResult {
        device_id: target.device_id.clone(),
        address: target.address.clone(),
        cycle_id: 0,
        batch_id: String::new(),
        sent: outcome.sent,
        received: outcome.received,
        loss_percent: outcome.loss_percent(),
        rtt_min_us: micros(outcome.rtt_min()),
        rtt_avg_us: micros(outcome.rtt_avg()),
        rtt_max_us: micros(outcome.rtt_max()),
        rtt_stddev_us: micros(outcome.rtt_stddev()),
        outcome: outcome_code as i32,
        error_detail: detail,
        probed_at: Some(timestamp(probed_at)),
        retries_sent: outcome.retries_sent,
        duration_ms: took.as_millis().min(u128::from(u32::MAX)) as u32,
    }
}
