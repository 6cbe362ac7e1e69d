//! The audit trail's common part: the event a service records for every
//! change it accepts (who, what, when), the validated `ListAuditEvents`
//! query, and the SQL that inventory and alerting share to keep events in
//! their own `audit_events` table (PostgreSQL or SQLite; see docs/audit.md).

use std::time::{Duration, SystemTime};

use sqlx::{AssertSqlSafe, PgExecutor, Row, SqliteExecutor};

use crate::auth::Caller;
use crate::proto::v1;
use crate::status::FieldViolation;
use crate::work::{system_time, timestamp};

/// Events per page when the request leaves `page_size` at 0.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest `page_size` accepted.
pub const MAX_PAGE: u32 = 1000;

/// One recorded change. `detail` is a JSON object built by the service from
/// the change's public fields; it must never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Assigned by the store; 0 until recorded.
    pub id: u64,
    pub at: SystemTime,
    pub actor: String,
    pub actor_role: String,
    pub service: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub detail: String,
}

impl AuditEvent {
    /// A change made now by `caller` through `service`'s RPC `action`.
    pub fn new(
        caller: &Caller,
        service: &str,
        action: &str,
        object_kind: &str,
        object_id: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            id: 0,
            // Microseconds, as every backend keeps them.
            at: from_micros(micros(SystemTime::now())),
            actor: caller.name.clone(),
            actor_role: caller.role.name().to_string(),
            service: service.to_string(),
            action: action.to_string(),
            object_kind: object_kind.to_string(),
            object_id: object_id.into(),
            detail: detail.to_string(),
        }
    }

    pub fn to_proto(&self) -> v1::AuditEvent {
        v1::AuditEvent {
            id: self.id,
            at: Some(timestamp(self.at)),
            actor: self.actor.clone(),
            actor_role: self.actor_role.clone(),
            service: self.service.clone(),
            action: self.action.clone(),
            object_kind: self.object_kind.clone(),
            object_id: self.object_id.clone(),
            detail: self.detail.clone(),
        }
    }

    /// Microseconds since the epoch: how both backends store `at`.
    fn at_us(&self) -> i64 {
        micros(self.at)
    }
}

fn micros(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_micros(us: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// A validated `ListAuditEventsRequest`: newest first, keyset-paged by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub actor: Option<String>,
    pub object_id: Option<String>,
    pub size: u32,
    /// Only events with a smaller id (the last id of the previous page).
    pub before_id: Option<u64>,
}

impl AuditQuery {
    pub fn from_request(request: &v1::ListAuditEventsRequest) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let size = match request.page_size {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                violations.push(FieldViolation::new(
                    "page_size",
                    n,
                    format!("at most {MAX_PAGE}"),
                ));
                MAX_PAGE
            }
            n => n,
        };
        let before_id = if request.page_token.is_empty() {
            None
        } else {
            match request.page_token.parse::<u64>() {
                Ok(id) => Some(id),
                Err(_) => {
                    violations.push(FieldViolation::new(
                        "page_token",
                        &request.page_token,
                        "not a token from a previous page",
                    ));
                    None
                }
            }
        };
        let mut instant = |field: &str, ts: &Option<prost_types::Timestamp>| {
            let ts = ts.as_ref()?;
            let at = system_time(ts);
            if at.is_none() {
                violations.push(FieldViolation::new(
                    field,
                    format!("{}s {}ns", ts.seconds, ts.nanos),
                    "not a valid instant after 1970",
                ));
            }
            at
        };
        let since = instant("since", &request.since);
        let until = instant("until", &request.until);
        if !violations.is_empty() {
            return Err(violations);
        }
        let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(Self {
            since,
            until,
            actor: text(&request.actor),
            object_id: text(&request.object_id),
            size,
            before_id,
        })
    }
}

/// The response for `query` from the rows a store read (at most
/// `query.size + 1`, newest first: one more than a page tells whether
/// another follows).
pub fn response(mut events: Vec<AuditEvent>, query: &AuditQuery) -> v1::ListAuditEventsResponse {
    let size = query.size.max(1) as usize;
    let next_page_token = if events.len() > size {
        events.truncate(size);
        events.last().map(|e| e.id.to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    v1::ListAuditEventsResponse {
        events: events.iter().map(AuditEvent::to_proto).collect(),
        next_page_token,
    }
}

const COLUMNS: &str =
    "id, at_us, actor, actor_role, service, action, object_kind, object_id, detail";

/// The `SELECT` for `query` with its binds in order: the same text serves
/// both backends (`$n` placeholders are understood by SQLite too).
fn select(query: &AuditQuery) -> (String, Vec<Bind>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let mut add = |condition: &str, bind: Bind| {
        binds.push(bind);
        conditions.push(condition.replace('?', &format!("${}", binds.len())));
    };
    if let Some(since) = query.since {
        add("at_us >= ?", Bind::Int(micros(since)));
    }
    if let Some(until) = query.until {
        add("at_us < ?", Bind::Int(micros(until)));
    }
    if let Some(actor) = &query.actor {
        add("actor = ?", Bind::Text(actor.clone()));
    }
    if let Some(object_id) = &query.object_id {
        add("object_id = ?", Bind::Text(object_id.clone()));
    }
    if let Some(before) = query.before_id {
        add(
            "id < ?",
            Bind::Int(i64::try_from(before).unwrap_or(i64::MAX)),
        );
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    binds.push(Bind::Int(i64::from(query.size.max(1)) + 1));
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events{filter} ORDER BY id DESC LIMIT ${}",
        binds.len()
    );
    (sql, binds)
}

enum Bind {
    Int(i64),
    Text(String),
}

const INSERT: &str = "INSERT INTO audit_events \
     (at_us, actor, actor_role, service, action, object_kind, object_id, detail) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

fn event_of<R: Row>(row: &R) -> Result<AuditEvent, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(AuditEvent {
        id: u64::try_from(row.try_get::<i64, _>("id")?).unwrap_or(0),
        at: from_micros(row.try_get("at_us")?),
        actor: row.try_get("actor")?,
        actor_role: row.try_get("actor_role")?,
        service: row.try_get("service")?,
        action: row.try_get("action")?,
        object_kind: row.try_get("object_kind")?,
        object_id: row.try_get("object_id")?,
        detail: row.try_get("detail")?,
    })
}

/// `insert` and `list` for one backend: the statements and binds are the
/// same, only the executor trait differs.
macro_rules! backend {
    ($executor:ident) => {
        pub async fn insert(executor: impl $executor<'_>, event: &AuditEvent) -> sqlx::Result<()> {
            sqlx::query(INSERT)
                .bind(event.at_us())
                .bind(&event.actor)
                .bind(&event.actor_role)
                .bind(&event.service)
                .bind(&event.action)
                .bind(&event.object_kind)
                .bind(&event.object_id)
                .bind(&event.detail)
                .execute(executor)
                .await?;
            Ok(())
        }

        pub async fn list(
            executor: impl $executor<'_>,
            query: &AuditQuery,
        ) -> sqlx::Result<Vec<AuditEvent>> {
            let (sql, binds) = select(query);
            // Built from literals only; every value is a bind.
            let mut statement = sqlx::query(AssertSqlSafe(sql));
            for bind in binds {
                statement = match bind {
                    Bind::Int(value) => statement.bind(value),
                    Bind::Text(value) => statement.bind(value),
                };
            }
            let rows = statement.fetch_all(executor).await?;
            rows.iter().map(event_of).collect()
        }
    };
}

/// PostgreSQL: the table `audit_events` on the connection's search path.
pub mod pg {
    use super::*;

    backend!(PgExecutor);
}

/// SQLite: the same table and statements.
pub mod sqlite {
    use super::*;

    backend!(SqliteExecutor);
}

/// Keeps events in memory, newest last, up to a bound: for a process
/// without a database (the planner without Redis).
#[derive(Debug)]
pub struct MemoryLog {
    capacity: usize,
    next_id: u64,
    events: std::collections::VecDeque<AuditEvent>,
}

impl MemoryLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_id: 1,
            events: std::collections::VecDeque::new(),
        }
    }

    pub fn record(&mut self, mut event: AuditEvent) {
        event.id = self.next_id;
        self.next_id += 1;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// At most `query.size + 1` matching events, newest first, as a store
    /// returns them for [`response`].
    pub fn list(&self, query: &AuditQuery) -> Vec<AuditEvent> {
        self.events
            .iter()
            .rev()
            .filter(|e| matches(e, query))
            .take(query.size.max(1) as usize + 1)
            .cloned()
            .collect()
    }
}

/// Whether `event` passes the filters of `query` (for stores without SQL).
pub fn matches(event: &AuditEvent, query: &AuditQuery) -> bool {
    query.since.is_none_or(|since| event.at >= since)
        && query.until.is_none_or(|until| event.at < until)
        && query.actor.as_ref().is_none_or(|a| *a == event.actor)
        && query
            .object_id
            .as_ref()
            .is_none_or(|o| *o == event.object_id)
        && query.before_id.is_none_or(|before| event.id < before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str, object_id: &str) -> AuditEvent {
        AuditEvent::new(
            &Caller {
                name: actor.into(),
                ..Caller::anonymous()
            },
            "planner",
            "SetPolicy",
            "policy",
            object_id,
            serde_json::json!({}),
        )
    }

    #[test]
    fn page_size_above_the_maximum_is_refused() {
        let request = v1::ListAuditEventsRequest {
            page_size: MAX_PAGE + 1,
            page_token: "x".into(),
            ..Default::default()
        };
        let violations = AuditQuery::from_request(&request).unwrap_err();
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["page_size", "page_token"]);
    }

    #[test]
    fn memory_log_pages_newest_first_with_filters() {
        let mut log = MemoryLog::new(3);
        for (actor, object) in [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")] {
            log.record(event(actor, object));
        }
        let mut query = AuditQuery {
            size: 1,
            actor: Some("a".into()),
            ..AuditQuery::default()
        };
        let first = response(log.list(&query), &query);
        assert_eq!(first.events[0].object_id, "4");
        query.before_id = Some(first.next_page_token.parse().unwrap());
        let second = response(log.list(&query), &query);
        assert_eq!(second.events[0].object_id, "3");
        // The oldest ("1") fell out of the ring.
        assert!(second.next_page_token.is_empty());
    }

    #[test]
    fn select_numbers_its_binds() {
        let (sql, binds) = select(&AuditQuery {
            actor: Some("alice".into()),
            before_id: Some(9),
            size: 10,
            ..AuditQuery::default()
        });
        assert_eq!(
            sql,
            format!(
                "SELECT {COLUMNS} FROM audit_events WHERE actor = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            )
        );
        assert_eq!(binds.len(), 3);
    }
}
