//! `ExecutorService` on the ping executor: its status, and ad-hoc probes
//! for an operator ("ping this device now", with grpcurl).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use netward_shared::proto::v1;
use netward_shared::proto::v1::executor_service_server::ExecutorService;
use netward_shared::status::{FieldViolation, invalid_argument};
use tonic::{Request, Response, Status};

use crate::work::{Executor, probe_target, timestamp};

pub struct ExecutorGrpc {
    executor: Arc<Executor>,
    buffer_capacity: u32,
}

impl ExecutorGrpc {
    pub fn new(executor: Arc<Executor>, buffer_capacity: u32) -> Self {
        Self {
            executor,
            buffer_capacity,
        }
    }
}

#[tonic::async_trait]
impl ExecutorService for ExecutorGrpc {
    async fn get_executor_status(
        &self,
        _request: Request<v1::GetExecutorStatusRequest>,
    ) -> Result<Response<v1::GetExecutorStatusResponse>, Status> {
        let e = &self.executor.state;
        let pinger = self.executor.pinger.stats();
        let delivery = e.sender.stats();
        let (planner_connected, planner_session_id) = e.planner_session();
        Ok(Response::new(v1::GetExecutorStatusResponse {
            executor_id: e.identity.executor_id.clone(),
            kind: v1::ExecutorKind::Ping as i32,
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
            pps_budget: pinger.packets_per_second,
            pps_used: pinger.pps_used,
            budget_waits: pinger.budget_waits,
            send_errors: pinger.send_errors,
            scheduler_lag_ms: pinger.scheduler_lag.as_millis().min(u128::from(u32::MAX)) as u32,
            stray_replies: pinger.stray,
            socket_mode: if pinger.raw_socket {
                v1::IcmpSocketMode::Raw as i32
            } else {
                v1::IcmpSocketMode::Dgram as i32
            },
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
        request: Request<v1::ProbeRequest>,
    ) -> Result<Response<v1::ProbeResponse>, Status> {
        let request = request.into_inner();
        let address: std::net::IpAddr = request.address.trim().parse().map_err(|_| {
            invalid_argument(&[FieldViolation::new(
                "address",
                &request.address,
                "not an IPv4 or IPv6 address",
            )])
        })?;
        let settings = request.settings.unwrap_or_default();
        let mut violations = Vec::new();
        if settings.count > 100 {
            violations.push(FieldViolation::new(
                "settings.count",
                settings.count,
                "at most 100",
            ));
        }
        if settings.interval_ms != 0 && !(10..=5_000).contains(&settings.interval_ms) {
            violations.push(FieldViolation::new(
                "settings.interval_ms",
                settings.interval_ms,
                "10-5000, or 0 for 200",
            ));
        }
        if settings.timeout_ms != 0 && !(50..=30_000).contains(&settings.timeout_ms) {
            violations.push(FieldViolation::new(
                "settings.timeout_ms",
                settings.timeout_ms,
                "50-30000, or 0 for 1000",
            ));
        }
        if let Some(retries) = settings.retries
            && retries > 10
        {
            violations.push(FieldViolation::new("settings.retries", retries, "0-10"));
        }
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        let target = v1::Target {
            address: address.to_string(),
            ..Default::default()
        };
        Ok(Response::new(v1::ProbeResponse {
            result: Some(probe_target(&self.executor.pinger, &target, &settings).await),
        }))
    }

    async fn poll(
        &self,
        _request: Request<v1::PollRequest>,
    ) -> Result<Response<v1::PollResponse>, Status> {
        // As executor.proto promises: the method exists, this executor is
        // the wrong kind for it.
        Err(Status::failed_precondition(
            "this is a ping executor: SNMP polls are served by snmp-poller",
        ))
    }
}
