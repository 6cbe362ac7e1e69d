//! The poller's batches: each assignment's agents polled when due — many
//! devices at once, each within its own deadline — samples handed to the
//! delivery sender, and the learned `SnmpHints` returned for `BatchDone`.
//! The `Work` stream itself (registration, fencing, capacity, `BatchDone`,
//! the drain) is `netward_shared::work`'s, the same as the ping executor's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use netward_shared::client::ClientOptions;
use netward_shared::delivery::ResultSender;
use netward_shared::proto::v1;
pub use netward_shared::work::Identity;
use netward_shared::work::{BatchRunner, ExecutorState, Outbox, Pacing, wait_for_start};
use rand::Rng as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::poll::Poller;
use crate::{system_time, timestamp};

/// The SNMP poller: the shared work-stream state and the polling engine.
pub struct SnmpExecutor {
    pub state: ExecutorState,
    pub poller: Arc<Poller>,
    /// Samples per `ResultBatch` message.
    pub results_per_message: usize,
    /// Devices polled at once over all batches; a device waits for a permit
    /// (its deadline still counts, so a wait is never unbounded).
    pub permits: Arc<Semaphore>,
    /// SNMP requests sent (the "packets" of the status RPC).
    pub requests: RequestRate,
    /// Devices whose poll ended in SEND_ERROR (local trouble).
    pub send_errors: AtomicU64,
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
        client: ClientOptions,
        results_per_message: usize,
        concurrency: usize,
    ) -> Self {
        Self {
            state: ExecutorState::new(identity, sender, client),
            poller,
            results_per_message,
            permits: Arc::new(Semaphore::new(concurrency)),
            requests: RequestRate::default(),
            send_errors: AtomicU64::new(0),
        }
    }

    /// Polls every target of a batch from its start time (many at once,
    /// each within min(its budget, the batch deadline)), hands samples to
    /// delivery in messages of `results_per_message`, and returns the
    /// report. The batch ends by its deadline whatever its agents do.
    pub async fn run_batch(self: &Arc<Self>, assignment: v1::Assignment) -> v1::BatchDone {
        let devices = assignment.targets.len() as u32;
        // Cut short at shutdown (`state.abort`): targets not polled yet are
        // skipped, as when the deadline passes before their turn.
        let abort = self.state.abort.clone();
        tokio::select! {
            () = wait_for_start(&assignment) => {}
            () = abort.cancelled() => {}
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
                let abort = abort.clone();
                let poll = async move {
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
                };
                async move {
                    tokio::select! {
                        biased;
                        () = abort.cancelled() => None,
                        polled = poll => polled,
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
        let mut hints = Vec::new();
        let (mut succeeded, mut failed, mut skipped) = (0u32, 0u32, 0u32);
        while let Some(polled) = pending.next().await {
            let Some((mut sample, hint)) = polled else {
                skipped += 1;
                continue;
            };
            self.requests.add(sample.requests_sent);
            metrics::counter!("netward_snmp_requests_total")
                .increment(u64::from(sample.requests_sent));
            metrics::counter!("netward_snmp_polls_total", "outcome" => sample.outcome().as_str_name())
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
            outbox.push(sample);
            hints.push(hint);
        }
        let messages = outbox.finish();
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
}

impl BatchRunner for SnmpExecutor {
    const KIND: v1::ExecutorKind = v1::ExecutorKind::Snmp;

    fn state(&self) -> &ExecutorState {
        &self.state
    }

    fn refuse(&self, assignment: &v1::Assignment) -> Option<String> {
        (assignment.kind() != v1::ExecutorKind::Snmp).then(|| {
            format!(
                "this is an snmp-poller; the assignment is {}",
                assignment.kind().as_str_name()
            )
        })
    }

    fn pacing(&self) -> Pacing {
        // SNMP is paced by the per-device concurrency, not a budget.
        Pacing {
            pps_budget: 0,
            pps_used: self.requests.per_second(),
        }
    }

    async fn run(self: Arc<Self>, assignment: v1::Assignment) -> v1::BatchDone {
        self.run_batch(assignment).await
    }

    /// Poll-now: the target polled as `ExecutorService.Poll` does, with a
    /// permit like any batch's device, by `timeout_ms` (a permit waited
    /// for counts): a slow agent yields a partial sample in time.
    async fn ad_hoc(self: Arc<Self>, request: v1::AdHocRequest) -> v1::ad_hoc_result::Outcome {
        use v1::ad_hoc_result::Outcome;
        let timeout = Duration::from_millis(u64::from(request.timeout_ms.max(1000)));
        let deadline = Instant::now() + timeout;
        let target = request.target.unwrap_or_default();
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await
        else {
            return Outcome::Error(format!(
                "every polling slot stayed busy for {timeout:?}; retry later"
            ));
        };
        let snmp = target.snmp.unwrap_or_default();
        let (sample, _hints) = self
            .poller
            .poll(&target.address, &target.device_id, &snmp, Some(deadline))
            .await;
        drop(permit);
        self.requests.add(sample.requests_sent);
        Outcome::Sample(sample)
    }
}
