//! The executor's side of `PlannerService.Work`: a stream to every
//! configured planner (only the leader sends work), assignments checked
//! against the highest leader epoch seen (fencing), batches probed when due
//! and their results handed to the delivery sender, `BatchDone` reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use netward_shared::client::{PeerChannel, connect};
use netward_shared::delivery::ResultSender;
use netward_shared::proto::v1;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::secret::Secret;
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::icmp::{Pinger, ProbeFailure, ProbeOutcome, ProbeSpec};

/// What the executor says about itself when it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub executor_id: String,
    pub capacity: u32,
    pub labels: std::collections::HashMap<String, String>,
    pub hostname: String,
}

/// State shared by the work streams, the batches and the status RPC.
pub struct Executor {
    pub identity: Identity,
    pub pinger: Arc<Pinger>,
    pub sender: ResultSender,
    pub token: Option<Secret<String>>,
    /// Results per `ResultBatch` message.
    pub results_per_message: usize,
    pub started_at: SystemTime,
    /// The highest leader epoch seen: assignments below it are stale.
    pub max_epoch: AtomicU64,
    pub in_flight_batches: AtomicU32,
    pub in_flight_devices: AtomicU32,
    pub completed_batches: AtomicU64,
    pub stale_assignments: AtomicU64,
    pub planners_connected: AtomicU32,
    /// Set at shutdown: new assignments are refused while batches drain.
    pub draining: AtomicBool,
    /// Running batches, so shutdown can wait for them.
    pub batches: TaskTracker,
}

impl Executor {
    /// Holds a `Work` stream to `planner_url` until `stop`, reconnecting
    /// with backoff.
    pub async fn hold_work_stream(self: Arc<Self>, planner_url: String, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = self.clone().work_session(&planner_url) => outcome,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(planner = %planner_url, "planner ended the work stream; reconnecting")
                }
                Err(reason) => {
                    tracing::warn!(planner = %planner_url, %reason, "work stream failed; reconnecting")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn work_session(self: Arc<Self>, planner_url: &str) -> Result<(), String> {
        let channel = connect(planner_url, self.token.as_ref()).map_err(|e| e.to_string())?;
        let mut client: PlannerServiceClient<PeerChannel> = PlannerServiceClient::new(channel);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let register = v1::Register {
            executor_id: self.identity.executor_id.clone(),
            kind: v1::ExecutorKind::Ping as i32,
            capacity: self.identity.capacity,
            labels: self.identity.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: self.identity.hostname.clone(),
            leader_epoch_seen: self.max_epoch.load(Ordering::Acquire),
        };
        let _ = out_tx.send(v1::WorkRequest {
            msg: Some(v1::work_request::Msg::Register(register)),
        });
        let mut inbound = client
            .work(UnboundedReceiverStream::new(out_rx))
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();

        self.planners_connected.fetch_add(1, Ordering::AcqRel);
        let connected = ConnectedGuard(&self.planners_connected);
        let heartbeat_stop = CancellationToken::new();
        let _stop_heartbeats = heartbeat_stop.clone().drop_guard();
        let mut heartbeats_started = false;

        while let Some(message) = inbound
            .message()
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        {
            match message.msg {
                Some(v1::work_response::Msg::Registered(registered)) => {
                    tracing::info!(
                        planner = %planner_url,
                        session = %registered.session_id,
                        leading = registered.leading,
                        epoch = registered.leader_epoch,
                        "registered with the planner"
                    );
                    if registered.leading {
                        self.max_epoch
                            .fetch_max(registered.leader_epoch, Ordering::AcqRel);
                    }
                    if !heartbeats_started {
                        heartbeats_started = true;
                        let every = Duration::from_millis(u64::from(
                            registered.heartbeat_interval_ms.max(500),
                        ));
                        tokio::spawn(self.clone().heartbeats(
                            out_tx.clone(),
                            every,
                            heartbeat_stop.clone(),
                        ));
                    }
                }
                Some(v1::work_response::Msg::Assignment(assignment)) => {
                    self.accept(assignment, &out_tx)
                }
                Some(v1::work_response::Msg::LeaderChange(change)) if change.leading => {
                    self.max_epoch
                        .fetch_max(change.leader_epoch, Ordering::AcqRel);
                }
                Some(v1::work_response::Msg::LeaderChange(_)) => {}
                Some(v1::work_response::Msg::Cancel(cancel)) => {
                    tracing::info!(batch_id = %cancel.batch_id, reason = %cancel.reason, "planner cancelled a batch");
                }
                None => {}
            }
        }
        drop(connected);
        Ok(())
    }

    async fn heartbeats(
        self: Arc<Self>,
        out: mpsc::UnboundedSender<v1::WorkRequest>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let stats = self.pinger.stats();
            let heartbeat = v1::Heartbeat {
                in_flight_batches: self.in_flight_batches.load(Ordering::Acquire),
                in_flight_devices: self.in_flight_devices.load(Ordering::Acquire),
                pps_budget: stats.packets_per_second,
                pps_used: stats.pps_used,
                unacked_result_batches: self.sender.stats().buffered as u32,
                sent_at: Some(timestamp(SystemTime::now())),
            };
            if out
                .send(v1::WorkRequest {
                    msg: Some(v1::work_request::Msg::Heartbeat(heartbeat)),
                })
                .is_err()
            {
                return;
            }
        }
    }

    /// Fencing and capacity checks, then the batch runs on its own task.
    fn accept(
        self: &Arc<Self>,
        assignment: v1::Assignment,
        out: &mpsc::UnboundedSender<v1::WorkRequest>,
    ) {
        let reject = |reason: String| {
            tracing::warn!(batch_id = %assignment.batch_id, epoch = assignment.leader_epoch, %reason, "assignment rejected");
            ack(out, &assignment, Some(reason));
        };
        let seen = self
            .max_epoch
            .fetch_max(assignment.leader_epoch, Ordering::AcqRel);
        if assignment.leader_epoch < seen {
            self.stale_assignments.fetch_add(1, Ordering::AcqRel);
            metrics::counter!("executor_stale_assignments_total").increment(1);
            return reject(format!(
                "stale leader epoch {} (seen {seen})",
                assignment.leader_epoch
            ));
        }
        if self.draining.load(Ordering::Acquire) {
            return reject("executor is shutting down".into());
        }
        let devices = assignment.targets.len() as u32;
        let held = self.in_flight_devices.load(Ordering::Acquire);
        if held + devices > self.identity.capacity {
            return reject(format!(
                "over capacity: {held} + {devices} > {}",
                self.identity.capacity
            ));
        }
        ack(out, &assignment, None);
        self.in_flight_devices.fetch_add(devices, Ordering::AcqRel);
        self.in_flight_batches.fetch_add(1, Ordering::AcqRel);
        let span = tracing::info_span!(
            "executor.probe_batch",
            cycle_id = assignment.cycle_id,
            batch_id = %assignment.batch_id,
            devices
        );
        netward_shared::trace_context::set_parent(&span, assignment.trace_context.as_ref());
        self.batches.spawn(
            self.clone()
                .run_batch(assignment, out.clone())
                .instrument(span),
        );
    }

    /// Probes every target of a batch from its start time, hands results to
    /// delivery in messages of `results_per_message`, and reports the batch.
    async fn run_batch(
        self: Arc<Self>,
        assignment: v1::Assignment,
        out: mpsc::UnboundedSender<v1::WorkRequest>,
    ) {
        let started_wall = SystemTime::now();
        if let Some(start_at) = assignment.start_at.as_ref().and_then(system_time)
            && let Ok(wait) = start_at.duration_since(SystemTime::now())
        {
            // Never wait past the deadline for a start time from a skewed clock.
            tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
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
                let pinger = self.pinger.clone();
                async move {
                    tokio::time::sleep(jitter).await;
                    let probed_at = SystemTime::now();
                    let began = tokio::time::Instant::now();
                    let outcome = match target.address.parse() {
                        Ok(address) => pinger.probe(address, &spec(&settings)).await,
                        Err(_) => ProbeOutcome::invalid_address(),
                    };
                    result(target, &outcome, probed_at, began.elapsed())
                }
            })
            .collect();

        let mut buffered = Vec::with_capacity(self.results_per_message);
        let (mut succeeded, mut failed, mut messages) = (0u32, 0u32, 0u32);
        while let Some(mut probe) = pending.next().await {
            probe.cycle_id = assignment.cycle_id;
            probe.batch_id = assignment.batch_id.clone();
            if probe.outcome == v1::ProbeOutcome::Ok as i32 {
                succeeded += 1;
            } else {
                failed += 1;
            }
            buffered.push(probe);
            if buffered.len() >= self.results_per_message {
                self.deliver(&assignment, std::mem::take(&mut buffered), &trace_context);
                messages += 1;
            }
        }
        if !buffered.is_empty() {
            self.deliver(&assignment, buffered, &trace_context);
            messages += 1;
        }
        let devices = assignment.targets.len() as u32;
        self.in_flight_devices.fetch_sub(devices, Ordering::AcqRel);
        self.in_flight_batches.fetch_sub(1, Ordering::AcqRel);
        self.completed_batches.fetch_add(1, Ordering::AcqRel);
        let done = v1::BatchDone {
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            leader_epoch: assignment.leader_epoch,
            devices,
            succeeded,
            failed,
            skipped: 0,
            duration_ms: started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            result_batches_sent: messages,
            trace_context: Some(trace_context),
            cancelled: false,
            snmp_hints: Vec::new(),
            started_at: Some(timestamp(started_wall)),
        };
        tracing::debug!(batch_id = %assignment.batch_id, succeeded, failed, "batch done");
        // If the stream is gone, the planner has already given the batch to
        // another executor; the results were delivered all the same.
        let _ = out.send(v1::WorkRequest {
            msg: Some(v1::work_request::Msg::BatchDone(done)),
        });
    }

    fn deliver(
        &self,
        assignment: &v1::Assignment,
        probes: Vec<v1::ProbeResult>,
        trace_context: &v1::TraceContext,
    ) {
        self.sender.send(v1::ResultBatch {
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            probes,
            trace_context: Some(trace_context.clone()),
            leader_epoch: assignment.leader_epoch,
            ..Default::default()
        });
    }
}

/// Keeps `planners_connected` right however a session ends.
struct ConnectedGuard<'a>(&'a AtomicU32);

impl Drop for ConnectedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn ack(
    out: &mpsc::UnboundedSender<v1::WorkRequest>,
    assignment: &v1::Assignment,
    rejected: Option<String>,
) {
    let _ = out.send(v1::WorkRequest {
        msg: Some(v1::work_request::Msg::AssignmentAck(v1::AssignmentAck {
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            leader_epoch: assignment.leader_epoch,
            rejected: rejected.is_some(),
            reject_reason: rejected.unwrap_or_default(),
        })),
    });
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

pub fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

fn system_time(ts: &prost_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}
