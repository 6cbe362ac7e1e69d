//! An executor's side of `PlannerService.Work`, the same for the ping
//! executor and the SNMP poller: a stream to every configured planner (only
//! the leader sends work) held with reconnect backoff, registration and
//! heartbeats, assignments fenced by the highest leader epoch seen and
//! checked against draining and capacity, each accepted batch run on a task
//! of its own by the executor's [`BatchRunner`] and reported as `BatchDone`,
//! and the drain at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_types::StatusExt as _;
use tracing::Instrument as _;

use crate::client::{ClientOptions, PeerChannel, connect};
use crate::delivery::ResultSender;
use crate::proto::v1;
use crate::proto::v1::planner_service_client::PlannerServiceClient;

/// What an executor says about itself when it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub executor_id: String,
    pub capacity: u32,
    pub labels: HashMap<String, String>,
    pub hostname: String,
    /// Drawn at start, sent on every registration of this process: the
    /// planner lets the holder of the executor id reconnect at once, and
    /// refuses another process while the holder is live.
    pub instance_token: String,
}

impl Identity {
    /// An identity with a fresh instance token.
    pub fn new(
        executor_id: String,
        capacity: u32,
        labels: HashMap<String, String>,
        hostname: String,
    ) -> Self {
        Self {
            executor_id,
            capacity,
            labels,
            hostname,
            instance_token: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The configured executor id, or when none is, `<prefix>-<hostname>-<grpc
    /// port>`: two processes on one host cannot listen on one port, so the
    /// id is unique per instance, and the port is configuration, so it is
    /// stable across restarts (with an ephemeral port, `:0`, it is not: set
    /// `executor_id` then).
    pub fn executor_id(configured: &str, prefix: &str, hostname: &str, grpc_port: u16) -> String {
        if configured.is_empty() {
            format!("{prefix}-{hostname}-{grpc_port}")
        } else {
            configured.to_string()
        }
    }
}

/// The executor's own pacing, as each heartbeat reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pacing {
    /// Packets per second allowed; 0 when the executor has no such budget.
    pub pps_budget: u32,
    /// Packets (or requests) per second sent lately.
    pub pps_used: f64,
}

/// What one kind of executor brings to the work streams: how it runs an
/// assignment's batch, and how busy its engine is.
pub trait BatchRunner: Send + Sync + 'static {
    /// The kind registered with the planner.
    const KIND: v1::ExecutorKind;

    /// The state the work streams, the batches and the status RPC share.
    fn state(&self) -> &ExecutorState;

    /// Why this executor will not run `assignment`, beyond the shared
    /// checks (leader epoch, draining, capacity); `None` to accept it.
    fn refuse(&self, _assignment: &v1::Assignment) -> Option<String> {
        None
    }

    /// The engine's pacing, for heartbeats.
    fn pacing(&self) -> Pacing;

    /// Runs every target of an accepted batch from its start time, hands
    /// the results to delivery ([`Outbox`]), and returns the report. The
    /// in-flight counts and `completed_batches` are kept by the caller.
    fn run(
        self: Arc<Self>,
        assignment: v1::Assignment,
    ) -> impl Future<Output = v1::BatchDone> + Send;

    /// Probes or polls the one target of a probe-now request with the
    /// engine `ExecutorService.Probe`/`Poll` use, within `request.timeout_ms`;
    /// the result goes back to the planner only, never to alerting.
    fn ad_hoc(
        self: Arc<Self>,
        request: v1::AdHocRequest,
    ) -> impl Future<Output = v1::ad_hoc_result::Outcome> + Send;
}

/// State shared by the work streams, the batches and the status RPC.
pub struct ExecutorState {
    pub identity: Identity,
    pub sender: ResultSender,
    /// Token and TLS settings for dialing planners.
    pub client: ClientOptions,
    pub started_at: SystemTime,
    /// The highest leader epoch seen: assignments below it are stale.
    pub max_epoch: AtomicU64,
    /// Accepted batches whose `BatchDone` is not sent yet, and their devices
    /// (what the capacity check counts).
    pub in_flight_batches: AtomicU32,
    pub in_flight_devices: AtomicU32,
    pub completed_batches: AtomicU64,
    pub stale_assignments: AtomicU64,
    /// The Work streams a planner has answered Register on, by a number
    /// drawn per stream: what GetExecutorStatus reports. A stream's entry
    /// goes with the stream, however it ends (see [`SessionGuard`]).
    planner_sessions: Mutex<BTreeMap<u64, PlannerSession>>,
    next_stream: AtomicU64,
    /// Set at shutdown: new assignments are refused while batches drain.
    pub draining: AtomicBool,
    /// Running batches, so shutdown can wait for them.
    pub batches: TaskTracker,
    /// Cancelled at shutdown once running batches have had their grace:
    /// runners stop probing, count every target without a verdict as
    /// skipped (no result for it) and return at once with their `BatchDone`.
    pub abort: CancellationToken,
}

impl ExecutorState {
    pub fn new(identity: Identity, sender: ResultSender, client: ClientOptions) -> Self {
        Self {
            identity,
            sender,
            client,
            started_at: SystemTime::now(),
            max_epoch: AtomicU64::new(0),
            in_flight_batches: AtomicU32::new(0),
            in_flight_devices: AtomicU32::new(0),
            completed_batches: AtomicU64::new(0),
            stale_assignments: AtomicU64::new(0),
            planner_sessions: Mutex::new(BTreeMap::new()),
            next_stream: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            batches: TaskTracker::new(),
            abort: CancellationToken::new(),
        }
    }

    /// `planner_connected` and `planner_session_id` as executor.proto has
    /// them: connected while a Work stream to a leading planner is
    /// registered, and that stream's session id (else that of any
    /// registered stream; empty when none is registered).
    pub fn planner_session(&self) -> (bool, String) {
        let sessions = self
            .planner_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let leading = sessions.values().find(|s| s.leading);
        match leading.or_else(|| sessions.values().next()) {
            Some(session) => (session.leading, session.session_id.clone()),
            None => (false, String::new()),
        }
    }

    /// Notes what a planner said of a stream: registered with `session_id`
    /// (when given) and leading or not.
    fn note_session(&self, stream: u64, session_id: Option<&str>, leading: bool) {
        let mut sessions = self
            .planner_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (sessions.get_mut(&stream), session_id) {
            (Some(session), id) => {
                session.leading = leading;
                if let Some(id) = id {
                    session.session_id = id.to_string();
                }
            }
            (None, Some(id)) => {
                sessions.insert(
                    stream,
                    PlannerSession {
                        session_id: id.to_string(),
                        leading,
                    },
                );
            }
            // Not registered yet: work_session holds a LeaderChange that
            // comes before Registered until it does.
            (None, None) => {}
        }
    }

    /// The drain at shutdown, once the gRPC server has stopped. It takes
    /// `timeout` in all, whatever the peers do, so an executor whose planner
    /// and alerting are gone exits promptly instead of waiting on nobody:
    ///
    /// 1. New work is refused (`draining`), so nothing new starts.
    /// 2. Running batches get half of `timeout` to finish, so the probes in
    ///    flight reach a verdict; only while alerting is connected, since
    ///    without it their results have nowhere to go.
    /// 3. What still runs is cut short (`abort`): runners skip their targets
    ///    without a verdict (no result) and send `BatchDone` on the streams,
    ///    still open for it. A runner that ignores `abort` is waited
    ///    for until the bound, then dropped with the process.
    /// 4. Alerting gets the rest of the bound to ack what is buffered, while
    ///    its ingest stream is connected (no reconnect is waited for); what is
    ///    still unacked then is lost with the process, and logged.
    /// 5. `work_stop` closes the work streams. Only now: closing one resets
    ///    it, dropping what is still queued on it, and a `BatchDone` of step
    ///    3 lost that way has the planner hand the batch to another executor
    ///    although its results were stored (counted twice). The ack wait
    ///    gives the streams time to flush; with nothing to wait for, a
    ///    `BatchDone` sent a moment before can still be lost (a half-close of
    ///    the stream would settle it).
    ///
    /// The delivery task is the caller's to stop afterwards.
    pub async fn drain(&self, timeout: Duration, work_stop: &CancellationToken) {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        self.draining.store(true, Ordering::Release);
        self.batches.close();
        let alerting_connected = self.sender.stats().connected;
        tracing::info!(
            batches = self.batches.len(),
            alerting_connected,
            ?timeout,
            "draining running batches"
        );
        let grace = if alerting_connected {
            timeout / 2
        } else {
            Duration::ZERO
        };
        if tokio::time::timeout(grace, self.batches.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                batches = self.batches.len(),
                "cutting running batches short: targets without a verdict are skipped"
            );
            self.abort.cancel();
            if tokio::time::timeout_at(deadline, self.batches.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    batches = self.batches.len(),
                    "batches still running at the drain bound; dropped with the process"
                );
            }
        }
        let unacked = self
            .sender
            .drain_while_connected(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        // See step 5 for why the streams close only after the ack wait.
        work_stop.cancel();
        if unacked.batches > 0 {
            tracing::warn!(
                unacked_batches = unacked.batches,
                unacked_results = unacked.results,
                alerting_connected = self.sender.stats().connected,
                "giving up result batches alerting has not acked"
            );
        }
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "drain finished"
        );
    }
}

/// Holds a `Work` stream to each planner of `planner_urls` (comma-separated:
/// a leader and standbys; only the leader sends work) until `stop`.
pub fn spawn_work_streams<R: BatchRunner>(
    executor: &Arc<R>,
    planner_urls: &str,
    stop: &CancellationToken,
) {
    for url in planner_urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        tokio::spawn(hold_work_stream(
            executor.clone(),
            url.to_string(),
            stop.clone(),
        ));
    }
}

/// How long a refused registration waits when the planner gave no hint, and
/// at most whatever it said.
const REFUSED_RETRY: Duration = Duration::from_secs(15);
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(300);

/// How a work session ended badly.
#[derive(Debug)]
enum SessionError {
    /// Connecting or the stream failed.
    Failed(String),
    /// The planner refused the registration: another live process holds
    /// the executor id. Retry after `retry_after`, not sooner.
    Refused {
        message: String,
        retry_after: Duration,
    },
}

impl From<tonic::Status> for SessionError {
    fn from(status: tonic::Status) -> Self {
        if status.code() == tonic::Code::AlreadyExists {
            let retry_after = status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay)
                .unwrap_or(REFUSED_RETRY)
                .clamp(Duration::from_secs(1), REFUSED_RETRY_MAX);
            return Self::Refused {
                message: status.message().to_string(),
                retry_after,
            };
        }
        Self::Failed(format!("{:?}: {}", status.code(), status.message()))
    }
}

/// Holds a `Work` stream to `planner_url` until `stop`, reconnecting with
/// backoff, or after the planner's hint when it refused the executor id.
pub async fn hold_work_stream<R: BatchRunner>(
    executor: Arc<R>,
    planner_url: String,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = work_session(executor.clone(), &planner_url) => outcome,
        };
        let wait = match outcome {
            Ok(()) => {
                tracing::info!(planner = %planner_url, "planner ended the work stream; reconnecting");
                backoff
            }
            Err(SessionError::Failed(reason)) => {
                tracing::warn!(planner = %planner_url, %reason, "work stream failed; reconnecting");
                backoff
            }
            Err(SessionError::Refused {
                message,
                retry_after,
            }) => {
                // Not hammering: a live holder keeps the id until it stops
                // heartbeating, which is what the planner's hint waits for.
                let identity = &executor.state().identity;
                tracing::error!(
                    planner = %planner_url,
                    executor_id = %identity.executor_id,
                    retry_in_s = retry_after.as_secs(),
                    planner_says = %message,
                    "executor id {} is held by another live process ({}); retrying in {} s; \
                     set a unique executor_id ([{}] executor_id or NETWARD_{}__EXECUTOR_ID)",
                    identity.executor_id,
                    message,
                    retry_after.as_secs(),
                    config_section(R::KIND),
                    config_section(R::KIND).to_uppercase(),
                );
                retry_after
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The config section of an executor kind.
fn config_section(kind: v1::ExecutorKind) -> &'static str {
    match kind {
        v1::ExecutorKind::Snmp => "snmp_poller",
        _ => "ping_executor",
    }
}

async fn work_session<R: BatchRunner>(
    executor: Arc<R>,
    planner_url: &str,
) -> Result<(), SessionError> {
    let state = executor.state();
    let channel =
        connect(planner_url, &state.client).map_err(|e| SessionError::Failed(e.to_string()))?;
    let mut client: PlannerServiceClient<PeerChannel> = PlannerServiceClient::new(channel);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let register = v1::Register {
        executor_id: state.identity.executor_id.clone(),
        kind: R::KIND as i32,
        capacity: state.identity.capacity,
        labels: state.identity.labels.clone(),
        // Every crate of the workspace has the workspace's version.
        version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: state.identity.hostname.clone(),
        leader_epoch_seen: state.max_epoch.load(Ordering::Acquire),
        instance_token: state.identity.instance_token.clone(),
    };
    let _ = out_tx.send(v1::WorkRequest {
        msg: Some(v1::work_request::Msg::Register(register)),
    });
    let mut inbound = client
        .work(UnboundedReceiverStream::new(out_rx))
        .await?
        .into_inner();

    // Registered only once the planner answers Register (below).
    let stream = state.next_stream.fetch_add(1, Ordering::Relaxed);
    let registered_guard = SessionGuard { state, stream };
    // The planner queues its Registered after registering the stream, so a
    // LeaderChange may overtake it: then the LeaderChange is the newer word.
    let mut early_leading: Option<bool> = None;
    let mut registered_yet = false;
    // Heartbeats stop with the session, however it ends.
    let heartbeat_stop = CancellationToken::new();
    let _stop_heartbeats = heartbeat_stop.clone().drop_guard();
    let mut heartbeats_started = false;

    while let Some(message) = inbound.message().await? {
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
                    state
                        .max_epoch
                        .fetch_max(registered.leader_epoch, Ordering::AcqRel);
                }
                registered_yet = true;
                let leading = early_leading.take().unwrap_or(registered.leading);
                state.note_session(stream, Some(&registered.session_id), leading);
                if !heartbeats_started {
                    heartbeats_started = true;
                    let every =
                        Duration::from_millis(u64::from(registered.heartbeat_interval_ms.max(500)));
                    tokio::spawn(heartbeats(
                        executor.clone(),
                        out_tx.clone(),
                        every,
                        heartbeat_stop.clone(),
                    ));
                }
            }
            Some(v1::work_response::Msg::Assignment(assignment)) => {
                accept(&executor, assignment, &out_tx)
            }
            Some(v1::work_response::Msg::AdHocRequest(request)) => {
                run_ad_hoc(&executor, request, &out_tx)
            }
            Some(v1::work_response::Msg::LeaderChange(change)) => {
                if change.leading {
                    state
                        .max_epoch
                        .fetch_max(change.leader_epoch, Ordering::AcqRel);
                }
                if registered_yet {
                    state.note_session(stream, None, change.leading);
                } else {
                    early_leading = Some(change.leading);
                }
            }
            Some(v1::work_response::Msg::Cancel(cancel)) => {
                // A batch runs to its deadline at most anyway; the planner
                // has already moved on.
                tracing::info!(batch_id = %cancel.batch_id, reason = %cancel.reason, "planner cancelled a batch");
            }
            None => {}
        }
    }
    drop(registered_guard);
    Ok(())
}

async fn heartbeats<R: BatchRunner>(
    executor: Arc<R>,
    out: mpsc::UnboundedSender<v1::WorkRequest>,
    every: Duration,
    stop: CancellationToken,
) {
    let state = executor.state();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pacing = executor.pacing();
        let heartbeat = v1::Heartbeat {
            in_flight_batches: state.in_flight_batches.load(Ordering::Acquire),
            in_flight_devices: state.in_flight_devices.load(Ordering::Acquire),
            pps_budget: pacing.pps_budget,
            pps_used: pacing.pps_used,
            unacked_result_batches: state.sender.stats().buffered as u32,
            sent_at: Some(timestamp(SystemTime::now())),
            leader_epoch_seen: state.max_epoch.load(Ordering::Acquire),
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

/// Fencing, the executor's own checks, draining and capacity, then the
/// batch runs on its own task and its `BatchDone` goes back on `out`.
fn accept<R: BatchRunner>(
    executor: &Arc<R>,
    assignment: v1::Assignment,
    out: &mpsc::UnboundedSender<v1::WorkRequest>,
) {
    let state = executor.state();
    let reject = |reason: String| {
        tracing::warn!(batch_id = %assignment.batch_id, epoch = assignment.leader_epoch, %reason, "assignment rejected");
        ack(
            out,
            &assignment,
            Some(reason),
            state.max_epoch.load(Ordering::Acquire),
        );
    };
    let seen = state
        .max_epoch
        .fetch_max(assignment.leader_epoch, Ordering::AcqRel);
    if assignment.leader_epoch < seen {
        state.stale_assignments.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("netward_executor_stale_assignments_total").increment(1);
        return reject(format!(
            "stale leader epoch {} (seen {seen})",
            assignment.leader_epoch
        ));
    }
    if let Some(reason) = executor.refuse(&assignment) {
        return reject(reason);
    }
    if state.draining.load(Ordering::Acquire) {
        return reject("executor is shutting down".into());
    }
    let devices = assignment.targets.len() as u32;
    let held = state.in_flight_devices.load(Ordering::Acquire);
    if held + devices > state.identity.capacity {
        return reject(format!(
            "over capacity: {held} + {devices} > {}",
            state.identity.capacity
        ));
    }
    ack(out, &assignment, None, seen.max(assignment.leader_epoch));
    // Counted before the task starts, so the next assignment's capacity
    // check sees this one.
    state.in_flight_devices.fetch_add(devices, Ordering::AcqRel);
    state.in_flight_batches.fetch_add(1, Ordering::AcqRel);
    let span = tracing::info_span!(
        "executor.probe_batch",
        cycle_id = assignment.cycle_id,
        batch_id = %assignment.batch_id,
        devices
    );
    crate::trace_context::set_parent(&span, assignment.trace_context.as_ref());
    let executor = executor.clone();
    let out = out.clone();
    state.batches.spawn(
        async move {
            let done = executor.clone().run(assignment).await;
            let state = executor.state();
            state.in_flight_devices.fetch_sub(devices, Ordering::AcqRel);
            state.in_flight_batches.fetch_sub(1, Ordering::AcqRel);
            state.completed_batches.fetch_add(1, Ordering::AcqRel);
            // If the stream is gone, the planner has already given the batch
            // to another executor; the results were delivered all the same.
            let _ = out.send(v1::WorkRequest {
                msg: Some(v1::work_request::Msg::BatchDone(done)),
            });
        }
        .instrument(span),
    );
}

/// Runs a probe-now request on a task of its own, so the stream loop goes
/// on reading (a poll may take seconds), and answers on `out`. Refused
/// while draining or for the other kind; cut short at shutdown (`abort`).
/// Not counted in the in-flight load: one device, bounded by its timeout.
fn run_ad_hoc<R: BatchRunner>(
    executor: &Arc<R>,
    request: v1::AdHocRequest,
    out: &mpsc::UnboundedSender<v1::WorkRequest>,
) {
    use v1::ad_hoc_result::Outcome;
    let request_id = request.request_id.clone();
    let answer = move |out: &mpsc::UnboundedSender<v1::WorkRequest>, outcome: Outcome| {
        // A closed stream: the planner has already told its caller.
        let _ = out.send(v1::WorkRequest {
            msg: Some(v1::work_request::Msg::AdHocResult(v1::AdHocResult {
                request_id,
                outcome: Some(outcome),
            })),
        });
    };
    let state = executor.state();
    let device = request
        .target
        .as_ref()
        .map(|t| t.device_name.clone())
        .unwrap_or_default();
    tracing::info!(request_id = %request.request_id, %device, kind = request.kind().as_str_name(), "probe-now request");
    if request.kind() != R::KIND {
        let refusal = format!(
            "this executor is {}; the request is {}",
            R::KIND.as_str_name(),
            request.kind().as_str_name()
        );
        return answer(out, Outcome::Error(refusal));
    }
    if state.draining.load(Ordering::Acquire) {
        return answer(out, Outcome::Error("executor is shutting down".into()));
    }
    let abort = state.abort.clone();
    let executor = executor.clone();
    let out = out.clone();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            () = abort.cancelled() => Outcome::Error("executor is shutting down".into()),
            outcome = executor.ad_hoc(request) => outcome,
        };
        answer(&out, outcome);
    });
}

/// What a planner said of one Work stream.
#[derive(Debug, Clone)]
struct PlannerSession {
    /// From its `Registered`.
    session_id: String,
    /// From its `Registered`, then its `LeaderChange`s.
    leading: bool,
}

/// Forgets a stream's session however the stream ends (an error, the
/// planner closing it, the task being dropped at shutdown).
struct SessionGuard<'a> {
    state: &'a ExecutorState,
    stream: u64,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.state
            .planner_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.stream);
    }
}

fn ack(
    out: &mpsc::UnboundedSender<v1::WorkRequest>,
    assignment: &v1::Assignment,
    rejected: Option<String>,
    leader_epoch_seen: u64,
) {
    let _ = out.send(v1::WorkRequest {
        msg: Some(v1::work_request::Msg::AssignmentAck(v1::AssignmentAck {
            cycle_id: assignment.cycle_id,
            batch_id: assignment.batch_id.clone(),
            leader_epoch: assignment.leader_epoch,
            rejected: rejected.is_some(),
            reject_reason: rejected.unwrap_or_default(),
            // Above `leader_epoch` on a stale-epoch rejection: the leader
            // then takes an epoch above it (see the planner's lease).
            leader_epoch_seen,
        })),
    });
}

/// Waits for an assignment's start time, if it has one in the future; never
/// long, whatever a skewed clock says.
pub async fn wait_for_start(assignment: &v1::Assignment) {
    if let Some(start_at) = assignment.start_at.as_ref().and_then(system_time)
        && let Ok(wait) = start_at.duration_since(SystemTime::now())
    {
        tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
    }
}

/// A result that travels in a `ResultBatch`.
pub trait BatchResult: Sized {
    /// Puts `results` in `batch`'s field for their kind.
    fn put(results: Vec<Self>, batch: &mut v1::ResultBatch);
}

impl BatchResult for v1::ProbeResult {
    fn put(results: Vec<Self>, batch: &mut v1::ResultBatch) {
        batch.probes = results;
    }
}

impl BatchResult for v1::SnmpSample {
    fn put(results: Vec<Self>, batch: &mut v1::ResultBatch) {
        batch.samples = results;
    }
}

/// One batch's results on their way to delivery, in `ResultBatch` messages
/// of `per_message` results at most, each carrying the assignment's cycle,
/// batch, leader epoch and the batch span's trace context.
pub struct Outbox<'a, T> {
    sender: &'a ResultSender,
    assignment: &'a v1::Assignment,
    trace_context: &'a v1::TraceContext,
    per_message: usize,
    buffered: Vec<T>,
    messages: u32,
}

impl<'a, T: BatchResult> Outbox<'a, T> {
    pub fn new(
        sender: &'a ResultSender,
        assignment: &'a v1::Assignment,
        trace_context: &'a v1::TraceContext,
        per_message: usize,
    ) -> Self {
        let per_message = per_message.max(1);
        Self {
            sender,
            assignment,
            trace_context,
            per_message,
            buffered: Vec::with_capacity(per_message),
            messages: 0,
        }
    }

    /// Adds a result; a full message is handed to delivery at once.
    pub fn push(&mut self, result: T) {
        self.buffered.push(result);
        if self.buffered.len() >= self.per_message {
            self.deliver();
        }
    }

    /// Hands what is left to delivery; returns the messages sent in all.
    pub fn finish(mut self) -> u32 {
        if !self.buffered.is_empty() {
            self.deliver();
        }
        self.messages
    }

    fn deliver(&mut self) {
        let mut batch = v1::ResultBatch {
            cycle_id: self.assignment.cycle_id,
            batch_id: self.assignment.batch_id.clone(),
            trace_context: Some(self.trace_context.clone()),
            leader_epoch: self.assignment.leader_epoch,
            grant: self.assignment.grant.clone(),
            ..Default::default()
        };
        T::put(std::mem::take(&mut self.buffered), &mut batch);
        self.sender.send(batch);
        self.messages += 1;
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

pub fn system_time(ts: &prost_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::sync::Semaphore;

    use super::*;
    use crate::delivery::DeliveryConfig;

    /// A runner whose batches end when the test adds a permit.
    struct Gated {
        state: ExecutorState,
        gate: Semaphore,
        refusal: Option<String>,
    }

    impl BatchRunner for Gated {
        const KIND: v1::ExecutorKind = v1::ExecutorKind::Ping;

        fn state(&self) -> &ExecutorState {
            &self.state
        }

        fn refuse(&self, _assignment: &v1::Assignment) -> Option<String> {
            self.refusal.clone()
        }

        fn pacing(&self) -> Pacing {
            Pacing::default()
        }

        async fn ad_hoc(self: Arc<Self>, _request: v1::AdHocRequest) -> v1::ad_hoc_result::Outcome {
            v1::ad_hoc_result::Outcome::Error("not in these tests".into())
        }

        async fn run(self: Arc<Self>, assignment: v1::Assignment) -> v1::BatchDone {
            self.gate.acquire().await.unwrap().forget();
            v1::BatchDone {
                batch_id: assignment.batch_id,
                devices: assignment.targets.len() as u32,
                ..Default::default()
            }
        }
    }

    fn sender(stop: &CancellationToken) -> ResultSender {
        // Nothing listens there: what is sent stays buffered.
        ResultSender::start(
            DeliveryConfig {
                executor_id: "test".into(),
                kind: v1::ExecutorKind::Ping,
                alerting_url: "http://127.0.0.1:1".into(),
                client: ClientOptions::default(),
                buffer_batches: 100,
            },
            stop.clone(),
        )
        .unwrap()
    }

    fn executor(stop: &CancellationToken, capacity: u32, refusal: Option<&str>) -> Arc<Gated> {
        Arc::new(Gated {
            state: ExecutorState::new(
                Identity::new("test".into(), capacity, HashMap::new(), "test".into()),
                sender(stop),
                ClientOptions::default(),
            ),
            gate: Semaphore::new(0),
            refusal: refusal.map(str::to_string),
        })
    }

    fn assignment(batch_id: &str, epoch: u64, devices: usize) -> v1::Assignment {
        v1::Assignment {
            batch_id: batch_id.into(),
            leader_epoch: epoch,
            targets: vec![v1::Target::default(); devices],
            ..Default::default()
        }
    }

    /// The next message on the stream: an ack's (batch, rejected, reason),
    /// or a BatchDone's (batch, false, "done").
    async fn next(out_rx: &mut mpsc::UnboundedReceiver<v1::WorkRequest>) -> (String, bool, String) {
        let message = tokio::time::timeout(Duration::from_secs(5), out_rx.recv())
            .await
            .unwrap()
            .unwrap();
        match message.msg {
            Some(v1::work_request::Msg::AssignmentAck(ack)) => {
                (ack.batch_id, ack.rejected, ack.reject_reason)
            }
            Some(v1::work_request::Msg::BatchDone(done)) => (done.batch_id, false, "done".into()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn stale_epochs_are_fenced_and_counted() {
        let stop = CancellationToken::new();
        let executor = executor(&stop, 100, None);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        executor.gate.add_permits(10);
        accept(&executor, assignment("b5", 5, 1), &out_tx);
        assert_eq!(next(&mut out_rx).await, ("b5".into(), false, String::new()));
        assert_eq!(next(&mut out_rx).await, ("b5".into(), false, "done".into()));
        accept(&executor, assignment("b4", 4, 1), &out_tx);
        assert_eq!(
            next(&mut out_rx).await,
            ("b4".into(), true, "stale leader epoch 4 (seen 5)".into())
        );
        accept(&executor, assignment("b5b", 5, 1), &out_tx);
        assert!(!next(&mut out_rx).await.1, "the same epoch is current");
        let state = executor.state();
        assert_eq!(state.stale_assignments.load(Ordering::Acquire), 1);
        assert_eq!(state.max_epoch.load(Ordering::Acquire), 5);
        stop.cancel();
    }

    #[tokio::test]
    async fn capacity_counts_running_batches_until_their_batch_done() {
        let stop = CancellationToken::new();
        let executor = executor(&stop, 4, None);
        let state = executor.state();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        accept(&executor, assignment("a", 1, 3), &out_tx);
        assert!(!next(&mut out_rx).await.1);
        assert_eq!(state.in_flight_devices.load(Ordering::Acquire), 3);
        assert_eq!(state.in_flight_batches.load(Ordering::Acquire), 1);
        accept(&executor, assignment("b", 1, 2), &out_tx);
        assert_eq!(
            next(&mut out_rx).await,
            ("b".into(), true, "over capacity: 3 + 2 > 4".into())
        );
        executor.gate.add_permits(1);
        assert_eq!(next(&mut out_rx).await, ("a".into(), false, "done".into()));
        assert_eq!(state.in_flight_devices.load(Ordering::Acquire), 0);
        assert_eq!(state.in_flight_batches.load(Ordering::Acquire), 0);
        assert_eq!(state.completed_batches.load(Ordering::Acquire), 1);
        accept(&executor, assignment("b", 1, 2), &out_tx);
        assert!(!next(&mut out_rx).await.1);
        stop.cancel();
    }

    #[tokio::test]
    async fn refusals_and_draining_reject_and_drain_waits_for_batches() {
        let stop = CancellationToken::new();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let picky = executor(&stop, 10, Some("wrong kind"));
        accept(&picky, assignment("x", 1, 1), &out_tx);
        assert_eq!(
            next(&mut out_rx).await,
            ("x".into(), true, "wrong kind".into())
        );

        let executor = executor(&stop, 10, None);
        accept(&executor, assignment("running", 1, 1), &out_tx);
        assert!(!next(&mut out_rx).await.1);
        let work_stop = CancellationToken::new();
        let drain = {
            let executor = executor.clone();
            let work_stop = work_stop.clone();
            tokio::spawn(async move {
                executor
                    .state()
                    .drain(Duration::from_secs(5), &work_stop)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        accept(&executor, assignment("late", 1, 1), &out_tx);
        assert_eq!(
            next(&mut out_rx).await,
            ("late".into(), true, "executor is shutting down".into())
        );
        assert!(!work_stop.is_cancelled(), "streams stay open for BatchDone");
        executor.gate.add_permits(1);
        assert_eq!(
            next(&mut out_rx).await,
            ("running".into(), false, "done".into())
        );
        drain.await.unwrap();
        assert!(work_stop.is_cancelled());
        stop.cancel();
    }

    #[tokio::test]
    async fn a_drain_without_alerting_cuts_batches_short_and_keeps_its_bound() {
        let stop = CancellationToken::new();
        let executor = executor(&stop, 10, None);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        // This runner ignores `abort`: only the bound ends the wait for it.
        accept(&executor, assignment("stuck", 1, 1), &out_tx);
        assert!(!next(&mut out_rx).await.1);
        let work_stop = CancellationToken::new();
        let started = tokio::time::Instant::now();
        executor
            .state()
            .drain(Duration::from_millis(600), &work_stop)
            .await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(3),
            "{took:?}"
        );
        // Alerting was never connected: no grace, the batch was cut at once.
        assert!(executor.state().abort.is_cancelled());
        assert!(work_stop.is_cancelled());
        stop.cancel();
    }

    #[tokio::test]
    async fn an_outbox_sends_full_messages_and_the_rest() {
        let stop = CancellationToken::new();
        let sender = sender(&stop);
        let assignment = assignment("b", 3, 0);
        let trace_context = v1::TraceContext::default();
        let mut outbox = Outbox::new(&sender, &assignment, &trace_context, 2);
        for _ in 0..5 {
            outbox.push(v1::ProbeResult::default());
        }
        assert_eq!(outbox.finish(), 3);
        assert_eq!(sender.stats().buffered, 3);
        stop.cancel();
    }

    #[test]
    fn timestamps_round_trip() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(system_time(&timestamp(at)), Some(at));
        let before_epoch = prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(system_time(&before_epoch), None);
    }
}
