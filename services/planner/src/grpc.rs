//! `PlannerService` over the scheduler: the `Work` stream executors hold,
//! and the operator RPCs (sizing, policy, cycles, executors, leader).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use netward_shared::audit::{self, AuditEvent, AuditQuery};
use netward_shared::auth::{Caller, Role};
use netward_shared::proto::v1;
use netward_shared::proto::v1::planner_service_server::PlannerService;
use netward_shared::status::{FieldViolation, invalid_argument};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

use crate::adhoc::{self, AdHoc, AdHocDone, AdHocError, Outcome};
use crate::audit::PolicyAudit;
use crate::cycle::{RegisterError, Scheduler, WORK_CHANNEL, timestamp};
use crate::lease::LeaseState;
use crate::sizing::{self, SizingPolicy};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Probe-now's longest wait unless `with_ad_hoc_wait` says otherwise: a
/// second below the default server request timeout (30 s).
const DEFAULT_AD_HOC_WAIT: std::time::Duration = std::time::Duration::from_secs(29);

/// Largest device count `GetSizing` answers for.
const MAX_SIZING_DEVICES: u64 = 1_000_000_000;

pub struct PlannerGrpc {
    scheduler: Arc<Scheduler>,
    lease: watch::Receiver<LeaseState>,
    instance_id: String,
    /// Ends `Work` and `WatchCycles` streams when the server shuts down.
    shutdown: CancellationToken,
    /// Where SetPolicy changes and probe-now calls are recorded (in memory
    /// unless [`PlannerGrpc::with_audit`] gives Redis).
    audit: PolicyAudit,
    /// Probe-now requests waiting for their executor's answer.
    ad_hoc: Arc<AdHoc>,
}

impl PlannerGrpc {
    /// Validates and applies the fields `request` sets; returns the policy
    /// now in force. The scheduler's lock is not held across an await.
    fn apply_policy(&self, request: &v1::SetPolicyRequest) -> Result<SizingPolicy, Status> {
        let mut state = self.scheduler.lock();
        let policy = SizingPolicy {
            target_batches: request
                .target_batches
                .unwrap_or(state.policy.target_batches),
            rounding_step: request.rounding_step.unwrap_or(state.policy.rounding_step),
            min_batch_size: request
                .min_batch_size
                .unwrap_or(state.policy.min_batch_size),
            max_batch_size: request
                .max_batch_size
                .unwrap_or(state.policy.max_batch_size),
        };
        let violations = policy.violations();
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        tracing::info!(?policy, "sizing policy changed");
        state.policy = policy;
        Ok(policy)
    }

    pub fn new(
        scheduler: Arc<Scheduler>,
        lease: watch::Receiver<LeaseState>,
        instance_id: String,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            ad_hoc: Arc::new(AdHoc::new(scheduler.clone(), DEFAULT_AD_HOC_WAIT)),
            scheduler,
            lease,
            instance_id,
            shutdown,
            audit: PolicyAudit::memory(),
        }
    }

    /// Probe-now waits at most `wait`: set below the server's request
    /// timeout, so a caller gets the precise error, not the server's cut.
    pub fn with_ad_hoc_wait(mut self, wait: std::time::Duration) -> Self {
        self.ad_hoc = Arc::new(AdHoc::new(self.scheduler.clone(), wait));
        self
    }

    /// Probe-now for `ProbeDevice`/`PollDevice`: validated, routed, waited
    /// for, and recorded in the audit trail (it sends traffic to a device).
    async fn probe_now(
        &self,
        caller: &Caller,
        metadata: &tonic::metadata::MetadataMap,
        kind: v1::ExecutorKind,
        device: &str,
    ) -> Result<AdHocDone, Status> {
        let device = device.trim();
        if device.is_empty() {
            return Err(invalid_argument(&[FieldViolation::new(
                "device",
                device,
                "required: a device id or name",
            )]));
        }
        let done = self
            .ad_hoc
            .run(kind, device, &caller.scope, adhoc::caller_wait(metadata))
            .await
            .map_err(ad_hoc_status)?;
        let (action, outcome) = match &done.outcome {
            Outcome::Probe(result) => ("ProbeDevice", result.outcome().as_str_name()),
            Outcome::Sample(sample) => ("PollDevice", sample.outcome().as_str_name()),
        };
        let detail = json!({
            "device": &*done.device.name,
            "executor_id": done.executor_id,
            "outcome": outcome,
        });
        let event = AuditEvent::new(
            caller,
            "planner",
            action,
            "device",
            &*done.device.id,
            detail,
        );
        if let Err(error) = self.audit.record(event).await {
            tracing::error!(%error, actor = %caller.name, "audit event not recorded");
        }
        Ok(done)
    }

    pub fn with_audit(mut self, audit: PolicyAudit) -> Self {
        self.audit = audit;
        self
    }
}

fn kind_filter(kind: i32) -> Result<Option<v1::ExecutorKind>, Status> {
    match v1::ExecutorKind::try_from(kind) {
        Ok(v1::ExecutorKind::Unspecified) => Ok(None),
        Ok(kind) => Ok(Some(kind)),
        Err(_) => Err(invalid_argument(&[FieldViolation::new(
            "kind",
            kind,
            "unknown executor kind",
        )])),
    }
}

fn check_register(register: &v1::Register) -> Result<(), Status> {
    let mut v = Vec::new();
    if register.executor_id.is_empty() || register.executor_id.len() > 128 {
        v.push(FieldViolation::new(
            "register.executor_id",
            &register.executor_id,
            "1-128 characters",
        ));
    }
    if !matches!(
        v1::ExecutorKind::try_from(register.kind),
        Ok(v1::ExecutorKind::Ping | v1::ExecutorKind::Snmp)
    ) {
        v.push(FieldViolation::new(
            "register.kind",
            register.kind,
            "EXECUTOR_KIND_PING or EXECUTOR_KIND_SNMP",
        ));
    }
    if register.capacity == 0 {
        v.push(FieldViolation::new(
            "register.capacity",
            0,
            "must be at least 1 device",
        ));
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(invalid_argument(&v))
    }
}

impl PlannerGrpc {
    /// Live cycles and executors are the leader's: a standby says who leads.
    fn require_leader(&self) -> Result<(), Status> {
        if self.scheduler.lock().leading {
            return Ok(());
        }
        let leader = match &*self.lease.borrow() {
            LeaseState::Standby {
                leader: Some(holder),
            } => holder.clone(),
            _ => "unknown (no leader yet)".to_string(),
        };
        Err(Status::failed_precondition(format!(
            "this planner is a standby; ask the leader: {leader}"
        )))
    }
}

#[tonic::async_trait]
impl PlannerService for PlannerGrpc {
    type WorkStream = ResponseStream<v1::WorkResponse>;

    async fn work(
        &self,
        request: Request<Streaming<v1::WorkRequest>>,
    ) -> Result<Response<Self::WorkStream>, Status> {
        use v1::work_request::Msg;
        let caller = Caller::of(&request);
        let remote = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let register = match inbound.message().await? {
            Some(v1::WorkRequest {
                msg: Some(Msg::Register(register)),
            }) => register,
            _ => {
                return Err(invalid_argument(&[FieldViolation::new(
                    "msg",
                    "not register",
                    "the first message of a Work stream must be a Register",
                )]));
            }
        };
        check_register(&register)?;
        // An executor token is one executor's identity: it registers as
        // that executor only (its grants, and alerting's check of them,
        // rest on this).
        if caller.role == Role::Executor && register.executor_id != caller.name {
            return Err(Status::permission_denied(format!(
                "the executor token {:?} may only register as executor_id {:?}, not {:?}",
                caller.name, caller.name, register.executor_id
            )));
        }
        // Bounded: an executor that stops reading has its session ended
        // when the channel fills, rather than the planner buffering for it.
        let (tx, rx) = mpsc::channel(WORK_CHANNEL);
        let (session, mut registered) = self
            .scheduler
            .register(register, remote, tx.clone(), Instant::now())
            .map_err(register_status)?;
        registered.planner_instance_id = self.instance_id.clone();
        let _ = tx.try_send(Ok(v1::WorkResponse {
            msg: Some(v1::work_response::Msg::Registered(registered)),
        }));
        drop(tx);

        let scheduler = self.scheduler.clone();
        let ad_hoc = self.ad_hoc.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = inbound.message() => message,
                };
                let now = Instant::now();
                match message {
                    Ok(Some(v1::WorkRequest { msg: Some(msg) })) => match msg {
                        Msg::Heartbeat(heartbeat) => scheduler.heartbeat(session, heartbeat, now),
                        Msg::AssignmentAck(ack) => {
                            scheduler.touch(session, now);
                            if ack.rejected {
                                scheduler.rejected(session, &ack);
                            }
                        }
                        Msg::BatchDone(done) => {
                            scheduler.touch(session, now);
                            scheduler.batch_done(session, &done, now);
                        }
                        Msg::AdHocResult(result) => {
                            scheduler.touch(session, now);
                            ad_hoc.answered(session, result);
                        }
                        Msg::Register(_) => {
                            tracing::warn!(session, "a second Register on one stream ignored")
                        }
                    },
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(status) => {
                        tracing::info!(session, code = ?status.code(), "work stream broke");
                        break;
                    }
                }
            }
            // Removing the session drops the last sender: the outbound
            // stream ends, and unfinished batches go to other executors.
            scheduler.disconnect(session);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_sizing(
        &self,
        request: Request<v1::GetSizingRequest>,
    ) -> Result<Response<v1::GetSizingResponse>, Status> {
        let request = request.into_inner();
        let current = self.scheduler.lock().policy;
        let policy = SizingPolicy {
            target_batches: request.target_batches.unwrap_or(current.target_batches),
            rounding_step: request.rounding_step.unwrap_or(current.rounding_step),
            min_batch_size: request.min_batch_size.unwrap_or(current.min_batch_size),
            max_batch_size: request.max_batch_size.unwrap_or(current.max_batch_size),
        };
        let mut violations = policy.violations();
        if request.device_count > MAX_SIZING_DEVICES {
            violations.push(FieldViolation::new(
                "device_count",
                request.device_count,
                "at most 1,000,000,000",
            ));
        }
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        let sizing = sizing::size(request.device_count, &policy);
        Ok(Response::new(v1::GetSizingResponse {
            device_count: sizing.device_count,
            batch_size: sizing.batch_size,
            batch_count: sizing.batch_count,
            policy: Some(policy_message(&policy)),
            explanation: sizing.explanation,
            clamped: sizing.clamped,
            unclamped_batch_size: sizing.unclamped_batch_size,
        }))
    }

    async fn get_policy(
        &self,
        _request: Request<v1::GetPolicyRequest>,
    ) -> Result<Response<v1::GetPolicyResponse>, Status> {
        let policy = self.scheduler.lock().policy;
        let config = &self.scheduler.config;
        Ok(Response::new(v1::GetPolicyResponse {
            sizing: Some(policy_message(&policy)),
            ping_interval: Some(duration(config.ping_interval)),
            snmp_interval: Some(duration(config.snmp_interval)),
            default_probe: Some(config.probe),
            snmp_label_refresh_interval: Some(duration(config.snmp_label_refresh)),
        }))
    }

    async fn set_policy(
        &self,
        request: Request<v1::SetPolicyRequest>,
    ) -> Result<Response<v1::SetPolicyResponse>, Status> {
        self.require_leader()?;
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let policy = self.apply_policy(&request)?;
        // Recorded right after the change; a failed record is logged and
        // does not undo the policy (it already applies).
        let detail = json!({
            "target_batches": policy.target_batches,
            "rounding_step": policy.rounding_step,
            "min_batch_size": policy.min_batch_size,
            "max_batch_size": policy.max_batch_size,
        });
        let event = AuditEvent::new(&caller, "planner", "SetPolicy", "policy", "", detail);
        if let Err(error) = self.audit.record(event).await {
            tracing::error!(%error, actor = %caller.name, "audit event not recorded");
        }
        Ok(Response::new(v1::SetPolicyResponse {
            sizing: Some(policy_message(&policy)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<v1::ListAuditEventsRequest>,
    ) -> Result<Response<v1::ListAuditEventsResponse>, Status> {
        let query =
            AuditQuery::from_request(request.get_ref()).map_err(|v| invalid_argument(&v))?;
        let events = self.audit.list(&query).await.map_err(|error| {
            tracing::warn!(%error, "audit events unreadable");
            Status::unavailable("audit events unavailable, retry later")
        })?;
        Ok(Response::new(audit::response(events, &query)))
    }

    async fn get_current_cycle(
        &self,
        request: Request<v1::GetCurrentCycleRequest>,
    ) -> Result<Response<v1::GetCurrentCycleResponse>, Status> {
        self.require_leader()?;
        let kind = kind_filter(request.into_inner().kind)?.unwrap_or(v1::ExecutorKind::Ping);
        let state = self.scheduler.lock();
        let Some(cycle) = state.cycles.iter().rev().find(|c| c.kind == kind) else {
            return Err(Status::not_found(format!(
                "no {} cycle has started yet",
                kind.as_str_name()
            )));
        };
        Ok(Response::new(v1::GetCurrentCycleResponse {
            cycle: Some(self.scheduler.summary(cycle)),
            batches: cycle
                .batches
                .iter()
                .map(|b| self.scheduler.batch_info(b))
                .collect(),
        }))
    }

    async fn list_executors(
        &self,
        request: Request<v1::ListExecutorsRequest>,
    ) -> Result<Response<v1::ListExecutorsResponse>, Status> {
        self.require_leader()?;
        let kind = kind_filter(request.into_inner().kind)?;
        let state = self.scheduler.lock();
        let mut executors: Vec<v1::ExecutorInfo> = state
            .executors
            .values()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .map(|e| v1::ExecutorInfo {
                executor_id: e.id.clone(),
                kind: e.kind as i32,
                labels: e.labels.clone().into_iter().collect(),
                capacity: e.capacity,
                in_flight_batches: state
                    .cycles
                    .iter()
                    .flat_map(|c| &c.batches)
                    .filter(|b| b.state == crate::cycle::BatchState::Assigned(e.session))
                    .count() as u32,
                in_flight_devices: e.in_flight_devices,
                last_heartbeat_at: Some(timestamp(e.last_heartbeat_wall)),
                connected_since: Some(timestamp(e.connected_since)),
                completed_batches: e.completed,
                overrun_batches: e.overruns,
                reassigned_batches: e.reassigned,
                version: e.version.clone(),
                hostname: e.hostname.clone(),
                session_id: e.session.to_string(),
                pps_budget: e.heartbeat.pps_budget,
                pps_used: e.heartbeat.pps_used,
                unacked_result_batches: e.heartbeat.unacked_result_batches,
                remote_address: e.remote_address.clone(),
            })
            .collect();
        executors.sort_by(|a, b| a.executor_id.cmp(&b.executor_id));
        Ok(Response::new(v1::ListExecutorsResponse { executors }))
    }

    async fn list_cycles(
        &self,
        request: Request<v1::ListCyclesRequest>,
    ) -> Result<Response<v1::ListCyclesResponse>, Status> {
        self.require_leader()?;
        let request = request.into_inner();
        let kind = kind_filter(request.kind)?;
        let before = if request.page_token.is_empty() {
            u64::MAX
        } else {
            request.page_token.parse::<u64>().map_err(|_| {
                invalid_argument(&[FieldViolation::new(
                    "page_token",
                    &request.page_token,
                    "not a token from a previous page",
                )])
            })?
        };
        // planner.proto: 0 = 20, larger than 1000 = 1000 (AIP-158); the
        // planner keeps fewer cycles than that anyway.
        let size = match request.page_size {
            0 => 20,
            n => n.min(1000),
        } as usize;
        let state = self.scheduler.lock();
        let mut cycles: Vec<v1::CycleSummary> = state
            .cycles
            .iter()
            .rev()
            .filter(|c| kind.is_none_or(|k| c.kind == k) && c.id < before)
            .take(size + 1)
            .map(|c| self.scheduler.summary(c))
            .collect();
        let next_page_token = if cycles.len() > size {
            cycles.truncate(size);
            cycles
                .last()
                .map(|c| c.cycle_id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListCyclesResponse {
            cycles,
            next_page_token,
        }))
    }

    type WatchCyclesStream = ResponseStream<v1::WatchCyclesResponse>;

    async fn watch_cycles(
        &self,
        request: Request<v1::WatchCyclesRequest>,
    ) -> Result<Response<Self::WatchCyclesStream>, Status> {
        self.require_leader()?;
        let kind = kind_filter(request.into_inner().kind)?;
        let shutdown = self.shutdown.clone();
        let events = BroadcastStream::new(self.scheduler.cycle_events.subscribe()).filter_map(
            move |event| match event {
                Ok(event) => {
                    let wanted = kind
                        .is_none_or(|k| event.cycle.as_ref().is_some_and(|c| c.kind == k as i32));
                    wanted.then_some(Ok(event))
                }
                // A slow watcher missed events: it is told, and goes on.
                Err(_) => Some(Err(Status::data_loss(
                    "watcher too slow: some cycle events were dropped",
                ))),
            },
        );
        let events =
            futures::StreamExt::take_until(events, async move { shutdown.cancelled().await });
        Ok(Response::new(Box::pin(events)))
    }

    async fn probe_device(
        &self,
        request: Request<v1::ProbeDeviceRequest>,
    ) -> Result<Response<v1::ProbeDeviceResponse>, Status> {
        let caller = Caller::of(&request);
        let done = self
            .probe_now(
                &caller,
                request.metadata(),
                v1::ExecutorKind::Ping,
                &request.get_ref().device,
            )
            .await?;
        let Outcome::Probe(result) = done.outcome else {
            return Err(Status::internal("a probe answered with a sample"));
        };
        Ok(Response::new(v1::ProbeDeviceResponse {
            result: Some(result),
            executor_id: done.executor_id,
            executor_labels: done.executor_labels.into_iter().collect(),
            device_name: done.device.name.to_string(),
            selector: selector_map(&done.device),
        }))
    }

    async fn poll_device(
        &self,
        request: Request<v1::PollDeviceRequest>,
    ) -> Result<Response<v1::PollDeviceResponse>, Status> {
        let caller = Caller::of(&request);
        let done = self
            .probe_now(
                &caller,
                request.metadata(),
                v1::ExecutorKind::Snmp,
                &request.get_ref().device,
            )
            .await?;
        let Outcome::Sample(sample) = done.outcome else {
            return Err(Status::internal("a poll answered with a probe result"));
        };
        Ok(Response::new(v1::PollDeviceResponse {
            sample: Some(sample),
            executor_id: done.executor_id,
            executor_labels: done.executor_labels.into_iter().collect(),
            device_name: done.device.name.to_string(),
            selector: selector_map(&done.device),
        }))
    }

    async fn get_leader(
        &self,
        _request: Request<v1::GetLeaderRequest>,
    ) -> Result<Response<v1::GetLeaderResponse>, Status> {
        let lease = self.lease.borrow().clone();
        let mut response = v1::GetLeaderResponse {
            instance_id: self.instance_id.clone(),
            ..Default::default()
        };
        match lease {
            LeaseState::Leader { epoch, expires_at } => {
                response.leading = true;
                response.leader_instance_id = self.instance_id.clone();
                response.leader_epoch = epoch;
                let left = expires_at.saturating_duration_since(std::time::Instant::now());
                response.lease_expires_at = Some(timestamp(std::time::SystemTime::now() + left));
            }
            LeaseState::Standby { leader } => {
                if let Some((id, epoch)) = leader.as_deref().and_then(crate::lease::parse_holder) {
                    response.leader_instance_id = id.to_string();
                    response.leader_epoch = epoch;
                }
            }
        }
        Ok(Response::new(response))
    }
}

/// A refused registration: `ALREADY_EXISTS` naming the holder, with the
/// retry delay in the message and as a `google.rpc.RetryInfo` detail.
fn register_status(error: RegisterError) -> Status {
    let retry_after = match &error {
        RegisterError::Held { retry_after, .. } => *retry_after,
    };
    tracing::warn!(%error, "registration refused");
    Status::with_error_details(
        Code::AlreadyExists,
        error.to_string(),
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

/// The status of a probe-now that failed: each error its own code.
fn ad_hoc_status(error: AdHocError) -> Status {
    let message = error.to_string();
    match error {
        AdHocError::NotFound(_) => Status::not_found(message),
        AdHocError::NotPollable(_) | AdHocError::NoExecutor { .. } => {
            Status::failed_precondition(message)
        }
        AdHocError::NotSynced
        | AdHocError::SessionEnded { .. }
        | AdHocError::Unreachable { .. }
        | AdHocError::Refused { .. } => Status::unavailable(message),
        AdHocError::Timeout { .. } => Status::deadline_exceeded(message),
    }
}

fn selector_map(
    device: &netward_shared::inventory_copy::CopiedDevice,
) -> std::collections::HashMap<String, String> {
    device
        .executor_selector
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn policy_message(policy: &SizingPolicy) -> v1::SizingPolicy {
    v1::SizingPolicy {
        target_batches: policy.target_batches,
        rounding_step: policy.rounding_step,
        min_batch_size: policy.min_batch_size,
        max_batch_size: policy.max_batch_size,
    }
}

fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
