//! `netward audit`: the changes inventory, alerting and the planner
//! recorded (`ListAuditEvents` on each), merged newest first, as a table or
//! JSON lines. A service that cannot be asked is named on stderr and makes
//! the exit code non-zero; the others' events are still printed.

use std::io::{self, Write as _};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Args;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::proto::v1::{AuditEvent, ListAuditEventsRequest, ListAuditEventsResponse};
use netward_shared::tonic::{Request, Status};
use prost_types::Timestamp;
use serde::Serialize;

use super::table::Table;
use super::{TlsArgs, describe_status};

/// Events asked of a service per call.
const PAGE: u32 = 1000;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only changes since this long ago (30m, 12h, 7d) or this instant (RFC 3339)
    #[arg(long, value_name = "DURATION|RFC3339", value_parser = parse_since)]
    since: Option<SystemTime>,
    /// Only changes made by this token name
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only changes of this object id
    #[arg(long = "object", value_name = "ID")]
    object_id: Option<String>,
    /// At most this many events (the newest)
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// JSON lines instead of a table
    #[arg(long)]
    json: bool,
    /// Inventory service to ask
    #[arg(
        long,
        env = "NETWARD_INVENTORY_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    inventory_url: String,
    /// Planner service to ask
    #[arg(
        long,
        env = "NETWARD_PLANNER_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50052"
    )]
    planner_url: String,
    /// Alerting service to ask
    #[arg(
        long,
        env = "NETWARD_ALERTING_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50053"
    )]
    alerting_url: String,
    /// Bearer token sent with every call
    #[arg(
        long,
        env = "NETWARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// `30m`, `12h`, `7d` ago, or an RFC 3339 instant.
pub(super) fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return SystemTime::try_from(at).map_err(|e| format!("{text:?}: {e}"));
    }
    let ago = parse_duration(text)?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("{text:?} reaches before the epoch"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let count: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is neither a duration (30m, 12h, 7d) nor an RFC 3339 instant")
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    Ok(Duration::from_secs(count.saturating_mul(seconds)))
}

/// One service's answer: its events, or why it could not give them.
type Answer = Result<Vec<AuditEvent>, String>;

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let options = args.tls.client_options(args.token.as_ref());
    let connect = |url: &str| {
        netward_shared::client::connect(url, &options)
            .with_context(|| format!("cannot set up a client for {url}"))
    };
    let inventory = InventoryServiceClient::new(connect(&args.inventory_url)?);
    let alerting = AlertingServiceClient::new(connect(&args.alerting_url)?);
    let planner = PlannerServiceClient::new(connect(&args.planner_url)?);
    let ask = |url: &str| {
        let url = url.to_string();
        move |status: Status| format!("ListAuditEvents at {url}: {}", describe_status(&status))
    };
    let (from_inventory, from_alerting, from_planner) = tokio::join!(
        collect(&args, ask(&args.inventory_url), |request| {
            let mut client = inventory.clone();
            async move { client.list_audit_events(request).await }
        }),
        collect(&args, ask(&args.alerting_url), |request| {
            let mut client = alerting.clone();
            async move { client.list_audit_events(request).await }
        }),
        collect(&args, ask(&args.planner_url), |request| {
            let mut client = planner.clone();
            async move { client.list_audit_events(request).await }
        }),
    );

    let mut events = Vec::new();
    let mut failed = Vec::new();
    for answer in [from_inventory, from_alerting, from_planner] {
        match answer {
            Ok(mut more) => events.append(&mut more),
            Err(error) => failed.push(error),
        }
    }
    events.sort_by(newest_first);
    events.truncate(args.limit);

    let mut out = io::stdout().lock();
    if args.json {
        for event in &events {
            serde_json::to_writer(&mut out, &EventJson::from(event))?;
            writeln!(out)?;
        }
    } else {
        let mut table = Table::new(vec![
            "at", "actor", "role", "service", "action", "kind", "object", "detail",
        ]);
        for event in &events {
            table.push(vec![
                time_text(event.at.as_ref()),
                event.actor.clone(),
                event.actor_role.clone(),
                event.service.clone(),
                event.action.clone(),
                event.object_kind.clone(),
                event.object_id.clone(),
                event.detail.clone(),
            ]);
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    if failed.is_empty() {
        Ok(())
    } else {
        // Never silently partial: every unreachable service is named.
        for error in &failed {
            eprintln!("netward audit: {error}");
        }
        anyhow::bail!(
            "{} of 3 services could not be asked; the events above are the others'",
            failed.len()
        )
    }
}

/// Newest first; ties (same microsecond) by service and id, newest id first.
fn newest_first(a: &AuditEvent, b: &AuditEvent) -> std::cmp::Ordering {
    let at = |e: &AuditEvent| e.at.map(|t| (t.seconds, t.nanos)).unwrap_or_default();
    at(b)
        .cmp(&at(a))
        .then_with(|| a.service.cmp(&b.service))
        .then_with(|| b.id.cmp(&a.id))
}

/// Pages through one service until `args.limit` events or the last page.
async fn collect<F, Fut>(args: &AuditArgs, failed: impl Fn(Status) -> String, mut call: F) -> Answer
where
    F: FnMut(Request<ListAuditEventsRequest>) -> Fut,
    Fut: Future<Output = Result<netward_shared::tonic::Response<ListAuditEventsResponse>, Status>>,
{
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListAuditEventsRequest {
            since: args.since.map(Timestamp::from),
            until: None,
            actor: args.actor.clone().unwrap_or_default(),
            object_id: args.object_id.clone().unwrap_or_default(),
            page_size: PAGE.min(u32::try_from(args.limit.max(1)).unwrap_or(PAGE)),
            page_token,
        };
        let page = call(Request::new(request)).await.map_err(&failed)?;
        let page = page.into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() || events.len() >= args.limit {
            return Ok(events);
        }
        page_token = page.next_page_token;
    }
}

fn time_text(at: Option<&Timestamp>) -> String {
    at.map(|t| {
        // Whole milliseconds are enough to read; JSON keeps microseconds.
        let mut t = *t;
        t.nanos -= t.nanos % 1_000_000;
        t.to_string()
    })
    .unwrap_or_default()
}

/// One `--json` line.
#[derive(Debug, Serialize)]
struct EventJson {
    at: String,
    actor: String,
    actor_role: String,
    service: String,
    action: String,
    object_kind: String,
    object_id: String,
    id: u64,
    /// The event's detail as JSON (text when it does not parse).
    detail: serde_json::Value,
}

impl From<&AuditEvent> for EventJson {
    fn from(event: &AuditEvent) -> Self {
        Self {
            at: event.at.map(|t| t.to_string()).unwrap_or_default(),
            actor: event.actor.clone(),
            actor_role: event.actor_role.clone(),
            service: event.service.clone(),
            action: event.action.clone(),
            object_kind: event.object_kind.clone(),
            object_id: event.object_id.clone(),
            id: event.id,
            detail: serde_json::from_str(&event.detail)
                .unwrap_or_else(|_| serde_json::Value::String(event.detail.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_instants() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("7x").is_err());
        assert!(parse_duration("soon").is_err());
        let at = parse_since("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_767_323_045
        );
    }

    #[test]
    fn events_merge_newest_first() {
        let event = |service: &str, id: u64, seconds: i64| AuditEvent {
            id,
            service: service.into(),
            at: Some(Timestamp { seconds, nanos: 0 }),
            ..AuditEvent::default()
        };
        let mut events = [
            event("inventory", 1, 10),
            event("planner", 1, 30),
            event("alerting", 1, 20),
            event("inventory", 2, 30),
        ];
        events.sort_by(newest_first);
        let order: Vec<_> = events.iter().map(|e| (e.service.as_str(), e.id)).collect();
        assert_eq!(
            order,
            [
                ("inventory", 2),
                ("planner", 1),
                ("alerting", 1),
                ("inventory", 1)
            ]
        );
    }
}
