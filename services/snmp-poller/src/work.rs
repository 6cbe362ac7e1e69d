//! The poller's side of `PlannerService.Work` (the same protocol as the
//! ping executor's): a stream to every configured planner (only the leader
//! sends work), assignments checked against the highest leader epoch seen
//! (fencing), batches polled when due — many devices at once, each within
//! its own deadline — samples handed to the delivery sender, and `BatchDone`
//! reported with the learned `SnmpHints`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use netward_shared::client::{PeerChannel, connect};
use netward_shared::delivery::ResultSender;
use netward_shared::proto::v1;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::secret::Secret;
use rand::Rng as _;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::poll::Poller;
use crate::{system_time, timestamp};

/// What the poller says about itself when it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub executor_id: String,
    pub capacity: u32,
    pub labels: HashMap<String, String>,
    pub hostname: String,
}

/// State shared by the work streams, the batches and the status RPC.
pub struct SnmpExecutor {
    pub identity: Identity,
    pub poller: Arc<Poller>,
    pub sender: ResultSender,
    pub token: Option<Secret<String>>,
    /// Samples per `ResultBatch` message.
    pub results_per_message: usize,
    /// Devices polled at once over all batches; a device waits for a permit
    /// (its deadline still counts, so a wait is never unbounded).
    pub permits: Arc<Semaphore>,
    pub started_at: SystemTime,
    /// The highest leader epoch seen: assignments below it are stale.
    pub max_epoch: AtomicU64,
    pub in_flight_batches: AtomicU32,
    pub in_flight_devices: AtomicU32,
    pub completed_batches: AtomicU64,
    pub stale_assignments: AtomicU64,
    pub planners_connected: AtomicU32,
    /// SNMP requests sent (the "packets" of the status RPC).
    pub requests: RequestRate,
    /// Devices whose poll ended in SEND_ERROR (local trouble).
    pub send_errors: AtomicU64,
    /// Set at shutdown: new assignments are refused while batches drain.
    pub draining: AtomicBool,
    /// Running batches, so shutdown can wait for them.
    pub batches: TaskTracker,
}

/// Requests per second over the last ten seconds.
#[derive(Default)]
pub struct RequestRate {
    total: AtomicU64,
    /// (when, total then), oldest first, spanning at most ten seconds.
    marks: Mutex<VecDeque<(Instant, u64)>>,
}

impl RequestRate {
    pub fn add(&self, requests: u32) {
        self.total.fetch_add(u64::from(requests), Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn per_second(&self) -> f64 {
        let now = Instant::now();
        let total = self.total();
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        while marks
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(10))
        {
            marks.pop_front();
        }
        marks.push_back((now, total));
        let Some(&(since, then)) = marks.front() else {
            return 0.0;
        };
        let span = now.duration_since(since).as_secs_f64();
        if span < 0.5 {
            return 0.0;
        }
        (total - then) as f64 / span
    }
}

impl SnmpExecutor {
    pub fn new(
        identity: Identity,
        poller: Arc<Poller>,
        sender: ResultSender,
        token: Option<Secret<String>>,
        results_per_message: usize,
        concurrency: usize,
    ) -> Self {
        Self {
            identity,
            poller,
            sender,
            token,
            results_per_message,
            permits: Arc::new(Semaphore::new(concurrency)),
            started_at: SystemTime::now(),
            max_epoch: AtomicU64::new(0),
            in_flight_batches: AtomicU32::new(0),
            in_flight_devices: AtomicU32::new(0),
            completed_batches: AtomicU64::new(0),
            stale_assignments: AtomicU64::new(0),
            planners_connected: AtomicU32::new(0),
            requests: RequestRate::default(),
            send_errors: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            batches: TaskTracker::new(),
        }
    }

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
            kind: v1::ExecutorKind::Snmp as i32,
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
        // Heartbeats stop with the session, however it ends.
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
                    // A batch runs to its deadline at most anyway; the
                    // planner has already moved on.
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
            let heartbeat = v1::Heartbeat {
                in_flight_batches: self.in_flight_batches.load(Ordering::Acquire),
                in_flight_devices: self.in_flight_devices.load(Ordering::Acquire),
                // SNMP is paced by the per-device concurrency, not a budget.
                pps_budget: 0,
                pps_used: self.requests.per_second(),
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
        if assignment.kind() != v1::ExecutorKind::Snmp {
            return reject(format!(
                "this is an snmp-poller; the assignment is {}",
                assignment.kind().as_str_name()
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
        // Counted before the task starts, so the next assignment's capacity
        // check sees this one.
        self.in_flight_devices.fetch_add(devices, Ordering::AcqRel);
        self.in_flight_batches.fetch_add(1, Ordering::AcqRel);
        let span = tracing::info_span!(
            "executor.probe_batch",
            cycle_id = assignment.cycle_id,
            batch_id = %assignment.batch_id,
            devices
        );
        netward_shared::trace_context::set_parent(&span, assignment.trace_context.as_ref());
        let this = self.clone();
        let out = out.clone();
        self.batches.spawn(
            async move {
                let done = this.run_batch(assignment).await;
                this.in_flight_devices
                    .fetch_sub(done.devices, Ordering::AcqRel);
                this.in_flight_batches.fetch_sub(1, Ordering::AcqRel);
                // If the stream is gone, the planner has already given the
                // batch to another poller; the samples were delivered anyway.
                let _ = out.send(v1::WorkRequest {
                    msg: Some(v1::work_request::Msg::BatchDone(done)),
                });
            }
            .instrument(span),
        );
    }

    /// Polls every target of a batch from its start time (many at once,
    /// each within min(its budget, the batch deadline)), hands samples to
    /// delivery in messages of `results_per_message`, and returns the
    /// report. The batch ends by its deadline whatever its agents do.
    pub async fn run_batch(self: &Arc<Self>, assignment: v1::Assignment) -> v1::BatchDone {
        let devices = assignment.targets.len() as u32;
        if let Some(start_at) = assignment.start_at.as_ref().and_then(system_time)
            && let Ok(wait) = start_at.duration_since(SystemTime::now())
        {
            // Never wait long for a start time from a skewed clock.
            tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
        }
        let started_wall = SystemTime::now();
        let started = Instant::now();
        let deadline = assignment
            .deadline
            .as_ref()
            .and_then(system_time)
            .map(|at| {
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                started + left
            });
        // Spread the first requests over a short window, so a batch of 500
        // agents is not one burst on the wire.
        let window = Duration::from_millis(200);
        let trace_context = netward_shared::trace_context::current();
        let mut pending: FuturesUnordered<_> = assignment
            .targets
            .iter()
            .map(|target| {
                let jitter = window.mul_f64(rand::rng().random::<f64>());
                let this = self.clone();
                async move {
                    tokio::time::sleep(jitter).await;
                    // Waiting for a permit counts against the deadline.
                    let permit = match deadline {
                        Some(deadline) => {
                            match tokio::time::timeout_at(
                                deadline,
                                this.permits.clone().acquire_owned(),
                            )
                            .await
                            {
                                Ok(Ok(permit)) => permit,
                                _ => return None,
                            }
                        }
                        None => this.permits.clone().acquire_owned().await.ok()?,
                    };
                    let snmp = target.snmp.clone().unwrap_or_default();
                    let (sample, hints) = this
                        .poller
                        .poll(&target.address, &target.device_id, &snmp, deadline)
                        .await;
                    drop(permit);
                    Some((sample, hints))
                }
            })
            .collect();

        let mut buffered = Vec::with_capacity(self.results_per_message);
        let mut hints = Vec::new();
        let (mut succeeded, mut failed, mut skipped, mut messages) = (0u32, 0u32, 0u32, 0u32);
        while let Some(polled) = pending.next().await {
            let Some((mut sample, hint)) = polled else {
                skipped += 1;
                continue;
            };
            self.requests.add(sample.requests_sent);
            metrics::counter!("snmp_requests_total").increment(u64::from(sample.requests_sent));
            metrics::counter!("snmp_polls_total", "outcome" => sample.outcome().as_str_name())
                .increment(1);
            match sample.outcome() {
                v1::SnmpOutcome::Ok => succeeded += 1,
                v1::SnmpOutcome::SendError => {
                    self.send_errors.fetch_add(1, Ordering::Relaxed);
                    failed += 1;
                }
                _ => failed += 1,
            }
            sample.cycle_id = assignment.cycle_id;
            sample.batch_id = assignment.batch_id.clone();
            buffered.push(sample);
            hints.push(hint);
            if buffered.len() >= self.results_per_message {
                self.deliver(&assignment, std::mem::take(&mut buffered), &trace_context);
                messages += 1;
            }
        }
        if !buffered.is_empty() {
            self.deliver(&assignment, buffered, &trace_context);
            messages += 1;
        }
        self.completed_batches.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(batch_id = %assignment.batch_id, succeeded, failed, skipped, "batch done");
        v1::BatchDone {
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            leader_epoch: assignment.leader_epoch,
            devices,
            succeeded,
            failed,
            skipped,
            duration_ms: started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            result_batches_sent: messages,
            trace_context: Some(trace_context),
            cancelled: false,
            snmp_hints: hints,
            started_at: Some(timestamp(started_wall)),
        }
    }

    fn deliver(
        &self,
        assignment: &v1::Assignment,
        samples: Vec<v1::SnmpSample>,
        trace_context: &v1::TraceContext,
    ) {
        self.sender.send(v1::ResultBatch {
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            samples,
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
