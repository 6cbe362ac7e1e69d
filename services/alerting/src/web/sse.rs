//! `GET /api/events`: server-sent events fed by alerting's own watch
//! streams (WatchDeviceStates, WatchAlerts) and the planners' WatchCycles,
//! each opened with the user's token, so a scoped token hears only its
//! regions. Events: `hello` (the stream is up: the page reloads what it
//! shows, to catch up on what it missed), `state`, `alert`, `cycle`, and
//! `planner` (a planner's stream is up or lost).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use netward_shared::client::PeerChannel;
use netward_shared::proto::v1;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use serde_json::json;
use tokio::sync::mpsc;

use super::api::{alert, cycle, state_name, time};
use super::{ApiError, User, Web};

/// How long a lost planner stream waits before it is opened again.
const PLANNER_RETRY: Duration = Duration::from_secs(3);

/// Events buffered for a slow browser before its stream is ended (it
/// reconnects and reloads, rather than showing a silently stale page).
const BUFFER: usize = 1024;

pub(super) async fn events(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = User::of(&headers);
    let mut alerting = web.alerting(&user)?;
    // Opened before the response: a refused token is a 401/403 the page
    // can show, not an event stream that ends at once.
    let mut states = alerting
        .watch_device_states(v1::WatchDeviceStatesRequest::default())
        .await?
        .into_inner();
    let mut alerts = alerting
        .watch_alerts(v1::WatchAlertsRequest::default())
        .await?
        .into_inner();
    let (tx, rx) = mpsc::channel::<Event>(BUFFER);
    // The planner streams end with the browser's (their sender closes).
    let (planner_tx, mut planner_rx) = mpsc::channel::<Event>(64);
    for (url, planner) in web.planners(&user)? {
        tokio::spawn(follow_planner(url, planner, planner_tx.clone()));
    }
    drop(planner_tx);
    let stop = web.stop.clone();
    tokio::spawn(async move {
        let hello = json!({ "at": chrono::Utc::now().to_rfc3339() });
        if !send(&tx, "hello", &hello) {
            return;
        }
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                message = states.message() => match message {
                    Ok(Some(response)) => {
                        let Some(c) = response.change else { continue };
                        let payload = json!({
                            "device_id": c.device_id, "device_name": c.device_name,
                            "site_id": c.site_id, "site_name": c.site_name,
                            "from": state_name(c.from_state), "to": state_name(c.to_state),
                            "maintenance": c.maintenance, "reason": c.reason,
                            "at": time(c.changed_at.as_ref()),
                        });
                        ("state", payload)
                    }
                    // Alerting is stopping, or this watcher fell behind: the
                    // browser's stream ends, it says so and reconnects.
                    Ok(None) | Err(_) => return,
                },
                message = alerts.message() => match message {
                    Ok(Some(response)) => {
                        let Some(a) = response.alert else { continue };
                        let kind = v1::AlertEventKind::try_from(response.event)
                            .unwrap_or_default()
                            .as_str_name()
                            .trim_start_matches("ALERT_EVENT_KIND_");
                        ("alert", json!({ "event": kind, "alert": alert(&a) }))
                    }
                    Ok(None) | Err(_) => return,
                },
                Some(event) = planner_rx.recv() => {
                    if tx.try_send(event).is_err() {
                        return;
                    }
                    continue;
                }
            };
            if !send(&tx, event.0, &event.1) {
                return;
            }
        }
    });
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |e| {
        Ok::<_, Infallible>(e)
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Queues one event; false when the browser is gone or too slow (its
/// buffer is full), which ends its stream.
fn send(tx: &mpsc::Sender<Event>, name: &str, payload: &serde_json::Value) -> bool {
    tx.try_send(Event::default().event(name).data(payload.to_string()))
        .is_ok()
}

/// One planner's cycles, for as long as the browser listens: each loss of
/// the stream is said (`planner` event, `ok: false`) and it is opened again.
async fn follow_planner(
    url: String,
    mut planner: PlannerServiceClient<PeerChannel>,
    tx: mpsc::Sender<Event>,
) {
    loop {
        let opened = planner
            .watch_cycles(v1::WatchCyclesRequest {
                kind: v1::ExecutorKind::Ping as i32,
            })
            .await;
        let error = match opened {
            Ok(stream) => {
                if !send(&tx, "planner", &json!({ "url": url, "ok": true })) {
                    return;
                }
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        () = tx.closed() => return,
                        message = stream.message() => message,
                    };
                    match message {
                        Ok(Some(event)) => {
                            let Some(c) = event.cycle else { continue };
                            let kind = v1::CycleEventKind::try_from(event.event)
                                .unwrap_or_default()
                                .as_str_name()
                                .trim_start_matches("CYCLE_EVENT_KIND_");
                            if !send(&tx, "cycle", &json!({ "event": kind, "cycle": cycle(&c) })) {
                                return;
                            }
                        }
                        Ok(None) => break "the planner ended the stream".to_string(),
                        Err(status) => break status.message().to_string(),
                    }
                }
            }
            Err(status) => status.message().to_string(),
        };
        let lost = json!({ "url": url, "ok": false, "error": error });
        if !send(&tx, "planner", &lost) {
            return;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(PLANNER_RETRY) => {}
        }
    }
}
