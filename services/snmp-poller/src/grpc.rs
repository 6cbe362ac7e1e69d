//! `ExecutorService` on the SNMP poller: its status, and ad-hoc polls for
//! an operator ("poll this agent now", with grpcurl). The request carries a
//! credential: validation messages show secrets only as `[redacted]`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use netward_shared::proto::v1;
use netward_shared::proto::v1::executor_service_server::ExecutorService;
use netward_shared::status::{FieldViolation, invalid_argument};
use tonic::{Request, Response, Status};

use crate::timestamp;
use crate::walk::MAX_REPETITIONS;
use crate::work::SnmpExecutor;

pub struct PollerGrpc {
    executor: Arc<SnmpExecutor>,
    buffer_capacity: u32,
}

impl PollerGrpc {
    pub fn new(executor: Arc<SnmpExecutor>, buffer_capacity: u32) -> Self {
        Self {
            executor,
            buffer_capacity,
        }
    }
}

#[tonic::async_trait]
impl ExecutorService for PollerGrpc {
    async fn get_executor_status(
        &self,
        _request: Request<v1::GetExecutorStatusRequest>,
    ) -> Result<Response<v1::GetExecutorStatusResponse>, Status> {
        let poller = &self.executor;
        let e = &poller.state;
        let delivery = e.sender.stats();
        let (planner_connected, planner_session_id) = e.planner_session();
        Ok(Response::new(v1::GetExecutorStatusResponse {
            executor_id: e.identity.executor_id.clone(),
            kind: v1::ExecutorKind::Snmp as i32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: e.identity.hostname.clone(),
            labels: e.identity.labels.clone(),
            capacity: e.identity.capacity,
            started_at: Some(timestamp(e.started_at)),
            planner_connected,
            planner_session_id,
            leader_epoch: e.max_epoch.load(Ordering::Acquire),
            alerting_connected: delivery.connected,
            in_flight_batches: e.in_flight_batches.load(Ordering::Acquire),
            in_flight_devices: e.in_flight_devices.load(Ordering::Acquire),
            pps_budget: 0,
            pps_used: poller.requests.per_second(),
            budget_waits: 0,
            send_errors: poller.send_errors.load(Ordering::Relaxed),
            scheduler_lag_ms: 0,
            stray_replies: poller.poller.engine.stray_replies(),
            socket_mode: v1::IcmpSocketMode::Unspecified as i32,
            completed_batches: e.completed_batches.load(Ordering::Acquire),
            stale_assignments: e.stale_assignments.load(Ordering::Acquire),
            results_buffered: delivery.buffered as u32,
            // Sent on the ingest stream and not yet acked (in flight may
            // still count a batch the full buffer has since dropped).
            results_unacked: delivery.in_flight.min(delivery.buffered) as u32,
            results_buffer_capacity: self.buffer_capacity,
            results_acked: delivery.acked,
            results_dropped: delivery.dropped,
            results_replayed: delivery.replayed,
            results_rejected: delivery.rejected,
        }))
    }

    async fn probe(
        &self,
        _request: Request<v1::ProbeRequest>,
    ) -> Result<Response<v1::ProbeResponse>, Status> {
        Err(Status::failed_precondition(
            "this is an snmp-poller: ICMP probes are served by ping-executor",
        ))
    }

    async fn poll(
        &self,
        request: Request<v1::PollRequest>,
    ) -> Result<Response<v1::PollResponse>, Status> {
        let request = request.into_inner();
        let violations = validate(&request, &self.executor.poller.profiles.names());
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        let target = request.target.unwrap_or_default();
        let (sample, hints) = self
            .executor
            .poller
            .poll(request.address.trim(), "", &target, None)
            .await;
        self.executor.requests.add(sample.requests_sent);
        Ok(Response::new(v1::PollResponse {
            sample: Some(sample),
            hints: Some(hints),
        }))
    }
}

const REDACTED: &str = "[redacted]";

/// Every problem of an ad-hoc poll request, by field.
pub fn validate(request: &v1::PollRequest, profiles: &[&str]) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if request.address.trim().parse::<std::net::IpAddr>().is_err() {
        violations.push(FieldViolation::new(
            "address",
            &request.address,
            "not an IPv4 or IPv6 address (host names are not resolved)",
        ));
    }
    let Some(target) = &request.target else {
        violations.push(FieldViolation::new("target", "", "required"));
        return violations;
    };
    if target.port > 65_535 {
        violations.push(FieldViolation::new(
            "target.port",
            target.port,
            "1-65535, or 0 for 161",
        ));
    }
    if target.timeout_ms != 0 && !(100..=30_000).contains(&target.timeout_ms) {
        violations.push(FieldViolation::new(
            "target.timeout_ms",
            target.timeout_ms,
            "100-30000, or 0 for 2000",
        ));
    }
    if let Some(retries) = target.retries
        && retries > 5
    {
        violations.push(FieldViolation::new("target.retries", retries, "0-5"));
    }
    if target.device_budget_ms > 300_000 {
        violations.push(FieldViolation::new(
            "target.device_budget_ms",
            target.device_budget_ms,
            "at most 300000 (0 = 30 s for an ad-hoc poll)",
        ));
    }
    let profile = target.profile.trim();
    if !profile.is_empty() && profile != crate::profile::AUTO && !profiles.contains(&profile) {
        violations.push(FieldViolation::new(
            "target.profile",
            profile,
            format!("unknown profile; known: auto, {}", profiles.join(", ")),
        ));
    }
    if let Some(hints) = &target.hints
        && hints.max_repetitions > MAX_REPETITIONS
    {
        violations.push(FieldViolation::new(
            "target.hints.max_repetitions",
            hints.max_repetitions,
            format!("0-{MAX_REPETITIONS}"),
        ));
    }
    let Some(credential) = &target.credential else {
        violations.push(FieldViolation::new("target.credential", "", "required"));
        return violations;
    };
    use v1::SnmpVersion as V;
    let version = match (target.version(), credential.version()) {
        (V::Unspecified, V::Unspecified) => V::V2c,
        (V::Unspecified, other) | (other, V::Unspecified) => other,
        (a, b) if a == b => a,
        (a, b) => {
            violations.push(FieldViolation::new(
                "target.credential.version",
                b.as_str_name(),
                format!("does not match target.version {}", a.as_str_name()),
            ));
            return violations;
        }
    };
    if version == V::V3 {
        if credential.username.is_empty() {
            violations.push(FieldViolation::new(
                "target.credential.username",
                "",
                "required for SNMPv3",
            ));
        }
        let auth = !matches!(
            credential.auth_protocol(),
            v1::SnmpAuthProtocol::Unspecified | v1::SnmpAuthProtocol::None
        );
        let privacy = !matches!(
            credential.priv_protocol(),
            v1::SnmpPrivProtocol::Unspecified | v1::SnmpPrivProtocol::None
        );
        if auth && credential.auth_key.len() < 8 {
            violations.push(FieldViolation::new(
                "target.credential.auth_key",
                REDACTED,
                "at least 8 characters",
            ));
        }
        if privacy && !auth {
            violations.push(FieldViolation::new(
                "target.credential.priv_protocol",
                credential.priv_protocol().as_str_name(),
                "privacy requires an authentication protocol",
            ));
        }
        if privacy && credential.priv_key.len() < 8 {
            violations.push(FieldViolation::new(
                "target.credential.priv_key",
                REDACTED,
                "at least 8 characters",
            ));
        }
    } else if credential.community.is_empty() {
        violations.push(FieldViolation::new(
            "target.credential.community",
            "",
            "required for SNMPv1 and SNMPv2c",
        ));
    }
    violations
}
