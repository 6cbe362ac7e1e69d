//! The page's JSON API: each handler makes one gRPC call with the user's
//! token and turns the answer into the few fields the page shows.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use netward_shared::proto::v1;
use serde_json::{Value, json};

use super::{ApiError, TOKEN_COOKIE, User, Web, json_response};

type ApiResult = Result<Response, ApiError>;

fn ok(body: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, &body))
}

/// RFC 3339, or null.
pub(super) fn time(at: Option<&prost_types::Timestamp>) -> Value {
    at.and_then(crate::from_timestamp)
        .map_or(Value::Null, |at| Value::String(at.to_rfc3339()))
}

/// `DOWN` for `DEVICE_STATE_DOWN`: the names the page shows.
pub(super) fn state_name(state: i32) -> &'static str {
    v1::DeviceState::try_from(state)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("DEVICE_STATE_")
}

fn counts(c: Option<&v1::StateCounts>) -> Value {
    let c = c.copied().unwrap_or_default();
    json!({
        "total": c.total, "up": c.up, "down": c.down, "unreachable": c.unreachable,
        "flapping": c.flapping, "unknown": c.unknown, "maintenance": c.maintenance,
        "stale": c.stale,
    })
}

fn device(s: &v1::DeviceStatus) -> Value {
    json!({
        "id": s.device_id, "name": s.device_name, "ip": s.ip_address,
        "site_id": s.site_id, "site_name": s.site_name, "region": s.region,
        "state": state_name(s.state), "maintenance": s.maintenance, "stale": s.stale,
        "since": time(s.state_since.as_ref()), "reason": s.state_reason,
        "last_probe_at": time(s.last_probe_at.as_ref()),
        "rtt_us": s.last_rtt_avg_us, "loss_percent": s.last_loss_percent,
        "open_alerts": s.open_alerts,
    })
}

pub(super) fn alert(a: &v1::Alert) -> Value {
    json!({
        "id": a.id, "rule_name": a.rule_name,
        "kind": v1::RuleKind::try_from(a.rule_kind).unwrap_or_default().as_str_name()
            .trim_start_matches("RULE_KIND_"),
        "device_id": a.device_id, "device_name": a.device_name,
        "site_id": a.site_id, "site_name": a.site_name, "region": a.region,
        "severity": v1::Severity::try_from(a.severity).unwrap_or_default().as_str_name()
            .trim_start_matches("SEVERITY_"),
        "state": v1::AlertState::try_from(a.state).unwrap_or_default().as_str_name()
            .trim_start_matches("ALERT_STATE_"),
        "started_at": time(a.started_at.as_ref()),
        "acknowledged_at": time(a.acknowledged_at.as_ref()),
        "acknowledged_by": a.acknowledged_by, "summary": a.summary,
        "suppressed": a.suppressed, "value": a.value,
    })
}

pub(super) fn cycle(c: &v1::CycleSummary) -> Value {
    json!({
        "cycle_id": c.cycle_id,
        "kind": v1::ExecutorKind::try_from(c.kind).unwrap_or_default().as_str_name()
            .trim_start_matches("EXECUTOR_KIND_"),
        "started_at": time(c.started_at.as_ref()), "duration_ms": c.duration_ms,
        "device_count": c.device_count, "batch_size": c.batch_size,
        "batch_count": c.batch_count, "done_batches": c.done_batches,
        "skipped": c.skipped, "overruns": c.overruns, "unserved": c.unserved,
        "succeeded": c.succeeded, "failed": c.failed, "completed": c.completed,
    })
}

/// Whether the page must ask for a token, and who the current one is.
pub(super) async fn session(State(web): State<Arc<Web>>, headers: HeaderMap) -> ApiResult {
    let user = User::of(&headers);
    let caller = user
        .caller(&web.auth)
        .map(|c| json!({ "name": c.name, "role": c.role.name(), "scope": c.scope.to_string() }));
    ok(json!({ "auth": web.auth.is_enabled(), "caller": caller }))
}

/// Checks a token against the configured ones and keeps it in an
/// HttpOnly, SameSite=Strict cookie: the page's script never holds it.
pub(super) async fn login(State(web): State<Arc<Web>>, body: Bytes) -> ApiResult {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?;
    let token = body["token"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(ApiError::bad_request("token: required"));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::bad_request("token: printable ASCII only"));
    }
    let user = User {
        token: Some(netward_shared::secret::Secret::new(token.clone())),
    };
    let caller = match user.caller(&web.auth) {
        Some(caller) => caller,
        None if !web.auth.is_enabled() => {
            return Err(ApiError::bad_request(
                "no tokens are configured: the page needs no login",
            ));
        }
        None => {
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "unknown token".into(),
            });
        }
    };
    let mut response = json_response(
        StatusCode::OK,
        &json!({ "name": caller.name, "role": caller.role.name() }),
    );
    let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::bad_request("token: invalid"))?,
    );
    Ok(response)
}

pub(super) async fn logout() -> ApiResult {
    let mut response = json_response(StatusCode::OK, &json!({}));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("netward_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// Per-site counts, stale devices and gap alerts (GetStatusSummary).
pub(super) async fn summary(State(web): State<Arc<Web>>, headers: HeaderMap) -> ApiResult {
    let user = User::of(&headers);
    let s = web
        .alerting(&user)?
        .get_status_summary(v1::GetStatusSummaryRequest {
            region: String::new(),
            stale_limit: 50,
        })
        .await?
        .into_inner();
    let sites: Vec<Value> = s
        .sites
        .iter()
        .map(|site| {
            json!({
                "site_id": site.site_id, "site_name": site.site_name, "region": site.region,
                "worst": state_name(site.worst_state), "counts": counts(site.counts.as_ref()),
            })
        })
        .collect();
    ok(json!({
        "sites": sites,
        "totals": counts(s.totals.as_ref()),
        "stale_devices": s.stale_devices.iter().map(device).collect::<Vec<_>>(),
        "gap_alerts": s.gap_alerts.iter().map(alert).collect::<Vec<_>>(),
        "inventory_synced": s.inventory_synced,
        "generated_at": time(s.generated_at.as_ref()),
    }))
}

/// One site's devices, worst first (ListDeviceStatuses, up to 1000).
pub(super) async fn site_devices(
    State(web): State<Arc<Web>>,
    Path(site_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let user = User::of(&headers);
    let listed = web
        .alerting(&user)?
        .list_device_statuses(v1::ListDeviceStatusesRequest {
            site_id,
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    ok(json!({
        "devices": listed.statuses.iter().map(device).collect::<Vec<_>>(),
        "total_count": listed.total_count,
    }))
}

/// A device's last hour in one-minute rollups, for its sparkline
/// (GetDeviceHistory).
pub(super) async fn history(
    State(web): State<Arc<Web>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let user = User::of(&headers);
    let history = web
        .alerting(&user)?
        .get_device_history(v1::GetDeviceHistoryRequest {
            device_id,
            step: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let points: Vec<Value> = history
        .points
        .iter()
        .map(|p| {
            json!({ "time": time(p.time.as_ref()), "rtt_us": p.rtt_avg_us, "loss_percent": p.loss_percent })
        })
        .collect();
    ok(json!({ "points": points }))
}

/// Open alerts, newest first (ListAlerts, up to 200).
pub(super) async fn alerts(State(web): State<Arc<Web>>, headers: HeaderMap) -> ApiResult {
    let user = User::of(&headers);
    let listed = web
        .alerting(&user)?
        .list_alerts(v1::ListAlertsRequest {
            page_size: 200,
            ..Default::default()
        })
        .await?
        .into_inner();
    ok(json!({
        "alerts": listed.alerts.iter().map(alert).collect::<Vec<_>>(),
        "total_count": listed.total_count,
    }))
}

/// Acknowledges an alert (AckAlert) in the name of the token's owner; a
/// read-only token gets the auth layer's PERMISSION_DENIED as a 403.
pub(super) async fn ack(
    State(web): State<Arc<Web>>,
    Path(alert_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let user = User::of(&headers);
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body must be JSON: {e}")))?
    };
    let by = user.caller(&web.auth).map_or_else(
        || "status page".to_string(),
        |c| format!("{} (status page)", c.name),
    );
    let acked = web
        .alerting(&user)?
        .ack_alert(v1::AckAlertRequest {
            id: alert_id,
            acknowledged_by: by,
            comment: body["comment"].as_str().unwrap_or_default().to_string(),
        })
        .await?
        .into_inner();
    ok(json!({ "alert": acked.alert.as_ref().map(alert) }))
}

/// The last ping cycles of the first planner that answers (ListCycles);
/// 503 naming every planner tried when none does.
pub(super) async fn cycles(State(web): State<Arc<Web>>, headers: HeaderMap) -> ApiResult {
    let user = User::of(&headers);
    let mut errors = Vec::new();
    for (url, mut planner) in web.planners(&user)? {
        let listed = planner
            .list_cycles(v1::ListCyclesRequest {
                kind: v1::ExecutorKind::Ping as i32,
                page_size: 10,
                page_token: String::new(),
            })
            .await;
        match listed {
            // A standby has no cycles: another planner may be leading.
            Ok(listed) if listed.get_ref().cycles.is_empty() => {
                errors.push(format!("{url}: no cycles"))
            }
            Ok(listed) => {
                let cycles: Vec<Value> = listed.get_ref().cycles.iter().map(cycle).collect();
                return ok(json!({ "planner": url, "cycles": cycles }));
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                errors.push(format!("{url}: unreachable ({})", status.message()))
            }
            Err(status) => return Err(status.into()),
        }
    }
    if errors.iter().all(|e| e.ends_with("no cycles")) && !errors.is_empty() {
        return ok(json!({ "planner": web.planners[0].0, "cycles": [] }));
    }
    Err(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("planner unreachable: {}", errors.join("; ")),
    })
}
