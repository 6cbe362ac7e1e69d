//! The planner's audit trail: `SetPolicy` changes. The planner has no
//! database; with Redis configured the events go to a sorted set shared by
//! every planner instance (`<lease.key_prefix>:audit`, score = id from
//! `<lease.key_prefix>:audit:id`, capped at [`CAPACITY`] newest), else to an
//! in-memory ring of this process (lost on restart; see docs/audit.md).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use netward_shared::audit::{AuditEvent, AuditQuery, MemoryLog, matches};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::json;

/// Events kept: the oldest go beyond this many.
pub const CAPACITY: usize = 100_000;
/// Events read from Redis per round trip while filtering.
const CHUNK: usize = 1000;

pub enum PolicyAudit {
    Redis {
        connection: ConnectionManager,
        events_key: String,
        id_key: String,
    },
    Memory(Mutex<MemoryLog>),
}

impl PolicyAudit {
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(MemoryLog::new(CAPACITY)))
    }

    /// Events in Redis at `url` under `key_prefix`; nothing is dialled
    /// until the first event or listing.
    pub fn redis(url: &str, key_prefix: &str) -> Result<Self, redis::RedisError> {
        let connection = ConnectionManager::new_lazy_with_config(
            redis::Client::open(url)?,
            ConnectionManagerConfig::new(),
        )?;
        Ok(Self::Redis {
            connection,
            events_key: format!("{key_prefix}:audit"),
            id_key: format!("{key_prefix}:audit:id"),
        })
    }

    /// Records `event`; called right after the change succeeded.
    pub async fn record(&self, mut event: AuditEvent) -> Result<(), redis::RedisError> {
        match self {
            Self::Memory(log) => {
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(event);
                Ok(())
            }
            Self::Redis {
                connection,
                events_key,
                id_key,
            } => {
                let mut connection = connection.clone();
                event.id = redis::cmd("INCR")
                    .arg(id_key)
                    .query_async(&mut connection)
                    .await?;
                redis::pipe()
                    .atomic()
                    .cmd("ZADD")
                    .arg(events_key)
                    .arg(event.id)
                    .arg(encode(&event))
                    .ignore()
                    .cmd("ZREMRANGEBYRANK")
                    .arg(events_key)
                    .arg(0)
                    .arg(-(CAPACITY as i64) - 1)
                    .ignore()
                    .query_async::<()>(&mut connection)
                    .await
            }
        }
    }

    /// At most `query.size + 1` matching events, newest first.
    pub async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, redis::RedisError> {
        let wanted = query.size.max(1) as usize + 1;
        match self {
            Self::Memory(log) => Ok(log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .list(query)),
            Self::Redis {
                connection,
                events_key,
                ..
            } => {
                let mut connection = connection.clone();
                let mut found = Vec::new();
                let mut below = query
                    .before_id
                    .map_or("+inf".to_string(), |id| format!("({id}"));
                // Newest first, a chunk at a time, filtered here: policy
                // changes are few, so a scan is cheap.
                loop {
                    let chunk: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
                        .arg(events_key)
                        .arg(&below)
                        .arg("-inf")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(CHUNK)
                        .query_async(&mut connection)
                        .await?;
                    let len = chunk.len();
                    let mut last_id = None;
                    for event in chunk.iter().filter_map(|text| decode(text)) {
                        last_id = Some(event.id);
                        if matches(&event, query) {
                            found.push(event);
                            if found.len() == wanted {
                                return Ok(found);
                            }
                        }
                    }
                    match last_id {
                        Some(id) if len == CHUNK => below = format!("({id}"),
                        _ => return Ok(found),
                    }
                }
            }
        }
    }
}

fn encode(event: &AuditEvent) -> String {
    let at = event
        .at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    json!({
        "id": event.id,
        "at_us": at.as_micros() as u64,
        "actor": event.actor,
        "actor_role": event.actor_role,
        "service": event.service,
        "action": event.action,
        "object_kind": event.object_kind,
        "object_id": event.object_id,
        "detail": event.detail,
    })
    .to_string()
}

fn decode(text: &str) -> Option<AuditEvent> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let text = |field: &str| value[field].as_str().map(str::to_string);
    Some(AuditEvent {
        id: value["id"].as_u64()?,
        at: SystemTime::UNIX_EPOCH + Duration::from_micros(value["at_us"].as_u64()?),
        actor: text("actor")?,
        actor_role: text("actor_role")?,
        service: text("service")?,
        action: text("action")?,
        object_kind: text("object_kind")?,
        object_id: text("object_id")?,
        detail: text("detail")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netward_shared::auth::Caller;

    #[test]
    fn events_survive_the_redis_encoding() {
        let mut event = AuditEvent::new(
            &Caller::anonymous(),
            "planner",
            "SetPolicy",
            "policy",
            "",
            json!({ "target_batches": 4 }),
        );
        event.id = 7;
        let back = decode(&encode(&event)).unwrap();
        // Microseconds survive; finer precision does not.
        assert_eq!(back.id, 7);
        assert_eq!(back.detail, event.detail);
        assert!(event.at.duration_since(back.at).unwrap() < Duration::from_micros(1));
    }
}
