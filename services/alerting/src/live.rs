//! Live device state for watchers: one Redis hash per device
//! (`{prefix}:device:{device_id}`) and a pub/sub channel of state changes
//! (`{prefix}:state-changes`, one JSON [`LiveDevice`] per message), written
//! by alerting after its PostgreSQL commit.
//!
//! Redis is never the source of truth (PostgreSQL is), so Redis must never
//! hold alerting back: a call is bounded in time, failures are swallowed
//! (logged once per outage, counted in metrics), and what could not be
//! written is kept, latest per device, and written with the next call that
//! gets through. [`LiveState::rebuild`] rewrites everything from
//! PostgreSQL's view at start. With no Redis (the embedded default),
//! [`LiveState::memory`] keeps the same hashes in process and uses a
//! broadcast channel as the pub/sub.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{Stream, StreamExt as _};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_stream::wrappers::BroadcastStream;
use tracing::{debug, info, warn};

/// Key prefix unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "netward:alerting:live";
/// Bound on one `publish` round trip (dial included). Writes take turns, so
/// a call may also wait for the one before it: another `publish` (at most
/// this long again) or, at start, a `rebuild`.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Devices per pipeline in [`LiveState::rebuild`]: big enough for few round
/// trips, small enough not to stall Redis for other clients.
pub const REBUILD_CHUNK: usize = 1000;
/// Bound on one rebuild round trip (a chunk is a thousand hashes).
const CHUNK_TIMEOUT: Duration = Duration::from_secs(2);
/// While Redis is away, calls between attempts return at once instead of
/// each waiting for a timeout; the wait doubles up to `MAX_RETRY_GAP`.
const FIRST_RETRY_GAP: Duration = Duration::from_secs(1);
const MAX_RETRY_GAP: Duration = Duration::from_secs(30);
/// Changes a slow in-process watcher may fall behind before it skips some.
const MEMORY_CHANNEL_CAPACITY: usize = 4096;

/// One device as watchers see it; also the JSON of a state-change message.
/// In the hash every field is a string: an absent value is the empty
/// string, times are RFC 3339 (as in the JSON), booleans `true`/`false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveDevice {
    pub device_id: String,
    pub device_name: String,
    /// Site name (as shown to operators).
    pub site: String,
    /// `UP`, `DOWN`, `UNREACHABLE`, `FLAPPING` or `UNKNOWN`.
    pub state: String,
    /// Since when the device is in `state`.
    pub since: DateTime<Utc>,
    /// Why it entered `state`, e.g. "3 failed probes (100% loss)".
    pub reason: String,
    pub maintenance: bool,
    /// None until the first result.
    pub last_probe_at: Option<DateTime<Utc>>,
    pub last_loss_percent: Option<f64>,
    /// None when nothing answered (100% loss) or before the first result.
    pub last_rtt_avg_us: Option<u64>,
    /// Cycle of the result behind the last change; 0 when none.
    pub cycle_id: u64,
}

impl LiveDevice {
    /// The hash's fields, in a fixed order.
    fn fields(&self) -> [(&'static str, String); 11] {
        [
            ("device_id", self.device_id.clone()),
            ("device_name", self.device_name.clone()),
            ("site", self.site.clone()),
            ("state", self.state.clone()),
            ("since", rfc3339(self.since)),
            ("reason", self.reason.clone()),
            ("maintenance", self.maintenance.to_string()),
            (
                "last_probe_at",
                self.last_probe_at.map(rfc3339).unwrap_or_default(),
            ),
            (
                "last_loss_percent",
                self.last_loss_percent
                    .map(|loss| loss.to_string())
                    .unwrap_or_default(),
            ),
            (
                "last_rtt_avg_us",
                self.last_rtt_avg_us
                    .map(|rtt| rtt.to_string())
                    .unwrap_or_default(),
            ),
            ("cycle_id", self.cycle_id.to_string()),
        ]
    }

    /// Reads a hash written by [`LiveDevice::fields`].
    fn from_fields(fields: &HashMap<String, String>) -> Result<Self, LiveError> {
        let text = |name: &'static str| {
            fields
                .get(name)
                .cloned()
                .ok_or(LiveError::Malformed { field: name })
        };
        let optional =
            |name: &'static str| text(name).map(|value| Some(value).filter(|v| !v.is_empty()));
        let time = |name: &'static str, value: &str| {
            DateTime::parse_from_rfc3339(value)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| LiveError::Malformed { field: name })
        };
        let number = |name: &'static str, value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| LiveError::Malformed { field: name })
        };
        Ok(Self {
            device_id: text("device_id")?,
            device_name: text("device_name")?,
            site: text("site")?,
            state: text("state")?,
            since: time("since", &text("since")?)?,
            reason: text("reason")?,
            maintenance: match text("maintenance")?.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(LiveError::Malformed {
                        field: "maintenance",
                    });
                }
            },
            last_probe_at: optional("last_probe_at")?
                .map(|value| time("last_probe_at", &value))
                .transpose()?,
            last_loss_percent: optional("last_loss_percent")?
                .map(|value| {
                    value.parse::<f64>().map_err(|_| LiveError::Malformed {
                        field: "last_loss_percent",
                    })
                })
                .transpose()?,
            last_rtt_avg_us: optional("last_rtt_avg_us")?
                .map(|value| number("last_rtt_avg_us", &value))
                .transpose()?,
            cycle_id: number("cycle_id", &text("cycle_id")?)?,
        })
    }
}

/// Same format as chrono's serde, so the hash and the JSON agree.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("live state key prefix is empty")]
    EmptyPrefix,
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("live device hash has a missing or malformed field {field:?}")]
    Malformed { field: &'static str },
}

/// The live-state publisher: Redis, or the in-process stand-in. Share it
/// behind an `Arc`; every method takes `&self`.
pub struct LiveState {
    backend: Backend,
}

enum Backend {
    // Boxed: the Redis side is several times the size of the memory side.
    Redis(Box<RedisLive>),
    Memory(MemoryLive),
}

impl fmt::Debug for LiveState {
    // The Redis client is left out: it would print the URL, password included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Redis(redis) => f
                .debug_struct("LiveState::Redis")
                .field("prefix", &redis.prefix)
                .field("down", &redis.down.load(Ordering::Relaxed))
                .finish_non_exhaustive(),
            Backend::Memory(_) => f.debug_struct("LiveState::Memory").finish_non_exhaustive(),
        }
    }
}

impl LiveState {
    /// Live state in Redis at `url` (`redis://host:6379`) under `prefix`.
    /// Nothing is dialled here (alerting starts while Redis is away); the
    /// first call connects.
    pub fn redis(url: &str, prefix: &str) -> Result<Self, LiveError> {
        if prefix.is_empty() {
            return Err(LiveError::EmptyPrefix);
        }
        let client = redis::Client::open(url)?;
        Ok(Self {
            backend: Backend::Redis(Box::new(RedisLive {
                client,
                connection: Mutex::new(None),
                prefix: prefix.to_string(),
                channel: format!("{prefix}:state-changes"),
                down: AtomicBool::new(false),
                writes: tokio::sync::Mutex::new(Writes::default()),
            })),
        })
    }

    /// The in-process stand-in for the embedded default (no Redis).
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(MemoryLive {
                hashes: Mutex::new(HashMap::new()),
                changes: broadcast::channel(MEMORY_CHANNEL_CAPACITY).0,
            }),
        }
    }

    /// Writes each device's hash and announces each on the channel, in one
    /// round trip; devices left over from failed calls are written too
    /// (hash only: they are not news). Call after the PostgreSQL commit,
    /// with the devices whose state changed; an empty slice just retries
    /// what is left over. Never fails and never waits much longer than
    /// [`CALL_TIMEOUT`]: true when everything was written.
    pub async fn publish(&self, changes: &[LiveDevice]) -> bool {
        match &self.backend {
            Backend::Redis(redis) => redis.publish(changes).await,
            Backend::Memory(memory) => {
                memory.publish(changes);
                true
            }
        }
    }

    /// Rewrites every device's hash from `all` (PostgreSQL's view, at
    /// start) and deletes hashes of devices not in it, in pipelines of
    /// [`REBUILD_CHUNK`]. Nothing is announced. Like `publish`, it never
    /// fails: what could not be written is written by the next call that
    /// gets through. True when everything was written.
    pub async fn rebuild(&self, all: &[LiveDevice]) -> bool {
        match &self.backend {
            Backend::Redis(redis) => redis.rebuild(all).await,
            Backend::Memory(memory) => {
                memory.rebuild(all);
                true
            }
        }
    }

    /// The device's hash as last written; None when there is none.
    pub async fn get(&self, device_id: &str) -> Result<Option<LiveDevice>, LiveError> {
        match &self.backend {
            Backend::Redis(redis) => redis.get(device_id).await,
            Backend::Memory(memory) => memory.get(device_id),
        }
    }

    /// State changes from now on, for watchers. Redis pub/sub is
    /// fire-and-forget: the stream ends when the connection drops, and a
    /// watcher that resubscribes should read the hashes for what it missed.
    pub async fn subscribe(
        &self,
    ) -> Result<impl Stream<Item = LiveDevice> + Send + Unpin + 'static, LiveError> {
        match &self.backend {
            Backend::Redis(redis) => redis.subscribe().await,
            Backend::Memory(memory) => Ok(memory.subscribe()),
        }
    }
}

struct MemoryLive {
    /// Device id → the same fields as the Redis hash, so both read alike.
    hashes: Mutex<HashMap<String, HashMap<String, String>>>,
    changes: broadcast::Sender<LiveDevice>,
}

fn as_hash(device: &LiveDevice) -> HashMap<String, String> {
    device
        .fields()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

impl MemoryLive {
    fn publish(&self, changes: &[LiveDevice]) {
        {
            let mut hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
            for device in changes {
                hashes.insert(device.device_id.clone(), as_hash(device));
            }
        }
        for device in changes {
            // An error only means nobody is watching.
            let _ = self.changes.send(device.clone());
        }
    }

    fn rebuild(&self, all: &[LiveDevice]) {
        let rebuilt = all
            .iter()
            .map(|device| (device.device_id.clone(), as_hash(device)))
            .collect();
        *self.hashes.lock().unwrap_or_else(PoisonError::into_inner) = rebuilt;
    }

    fn get(&self, device_id: &str) -> Result<Option<LiveDevice>, LiveError> {
        let hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
        hashes
            .get(device_id)
            .map(LiveDevice::from_fields)
            .transpose()
    }

    fn subscribe(&self) -> futures::stream::BoxStream<'static, LiveDevice> {
        BroadcastStream::new(self.changes.subscribe())
            .filter_map(|received| async move {
                match received {
                    Ok(device) => Some(device),
                    Err(error) => {
                        warn!(%error, "live state watcher fell behind; changes skipped");
                        None
                    }
                }
            })
            .boxed()
    }
}

struct RedisLive {
    client: redis::Client,
    /// Dialled on first use, dropped on error so the next attempt dials
    /// afresh (a `ConnectionManager` would reconnect in the background and
    /// hand the next call the failed attempt, delaying recovery a retry).
    connection: Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    channel: String,
    /// Set from the first failure to the next success, so an outage is
    /// logged once, not once per call.
    down: AtomicBool,
    /// Held across each write so writes reach Redis in call order: a
    /// left-over device must never overwrite a newer state of itself.
    writes: tokio::sync::Mutex<Writes>,
}

#[derive(Default)]
struct Writes {
    /// Latest unwritten state per device (so at most one per device).
    pending: HashMap<String, LiveDevice>,
    /// While Redis is away: no attempt before this.
    retry_at: Option<Instant>,
    gap: Duration,
}

impl Writes {
    fn keep(&mut self, devices: &[LiveDevice]) {
        for device in devices {
            self.pending
                .insert(device.device_id.clone(), device.clone());
        }
        metrics::gauge!("netward_alerting_live_pending").set(self.pending.len() as f64);
    }

    fn waiting(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
    }

    fn failed(&mut self) {
        self.gap = if self.gap.is_zero() {
            FIRST_RETRY_GAP
        } else {
            (self.gap * 2).min(MAX_RETRY_GAP)
        };
        self.retry_at = Some(Instant::now() + self.gap);
    }

    fn succeeded(&mut self) {
        self.retry_at = None;
        self.gap = Duration::ZERO;
        metrics::gauge!("netward_alerting_live_pending").set(self.pending.len() as f64);
    }
}

impl RedisLive {
    fn key(&self, device_id: &str) -> String {
        format!("{}:device:{device_id}", self.prefix)
    }

    async fn publish(&self, changes: &[LiveDevice]) -> bool {
        let mut writes = self.writes.lock().await;
        if writes.waiting() {
            writes.keep(changes);
            self.not_written(None);
            return false;
        }
        let mut pipe = redis::pipe();
        let changed: HashSet<&str> = changes.iter().map(|d| d.device_id.as_str()).collect();
        for device in writes.pending.values() {
            if !changed.contains(device.device_id.as_str()) {
                pipe.hset_multiple(self.key(&device.device_id), &device.fields())
                    .ignore();
            }
        }
        for device in changes {
            pipe.hset_multiple(self.key(&device.device_id), &device.fields())
                .ignore();
            match serde_json::to_string(device) {
                Ok(json) => {
                    pipe.publish(&self.channel, json).ignore();
                }
                // Not expected (no maps, no custom serialisers); the hash still goes.
                Err(error) => {
                    warn!(%error, device_id = %device.device_id, "live state change not serialisable; not announced")
                }
            }
        }
        if pipe.is_empty() {
            return true;
        }
        match self.exec(&pipe, CALL_TIMEOUT).await {
            Ok(()) => {
                writes.pending.clear();
                writes.succeeded();
                self.written();
                true
            }
            Err(error) => {
                writes.keep(changes);
                writes.failed();
                self.not_written(Some(&error));
                false
            }
        }
    }

    async fn rebuild(&self, all: &[LiveDevice]) -> bool {
        let mut writes = self.writes.lock().await;
        // `all` is the whole truth: older left-overs are superseded.
        writes.pending.clear();
        if writes.waiting() {
            writes.keep(all);
            self.not_written(None);
            return false;
        }
        for (index, chunk) in all.chunks(REBUILD_CHUNK).enumerate() {
            let mut pipe = redis::pipe();
            for device in chunk {
                let key = self.key(&device.device_id);
                // DEL first: "rewrite" drops fields an older version wrote.
                pipe.del(&key).ignore();
                pipe.hset_multiple(&key, &device.fields()).ignore();
            }
            if let Err(error) = self.exec(&pipe, CHUNK_TIMEOUT).await {
                writes.keep(&all[index * REBUILD_CHUNK..]);
                writes.failed();
                self.not_written(Some(&error));
                return false;
            }
        }
        let wanted: HashSet<String> = all.iter().map(|d| self.key(&d.device_id)).collect();
        if let Err(error) = self.delete_others(&wanted).await {
            // The hashes are right; only departed devices linger until the
            // next rebuild.
            writes.failed();
            self.not_written(Some(&error));
            return false;
        }
        writes.succeeded();
        self.written();
        debug!(devices = all.len(), "live state rebuilt");
        true
    }

    /// Deletes the device hashes under the prefix that are not `wanted`.
    async fn delete_others(&self, wanted: &HashSet<String>) -> Result<(), LiveError> {
        let pattern = format!("{}:device:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        loop {
            let mut connection = self.connection().await?.0;
            let (next, keys): (u64, Vec<String>) = timed(
                CALL_TIMEOUT,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(REBUILD_CHUNK)
                    .query_async(&mut connection),
            )
            .await
            .inspect_err(|_| self.forget())?;
            let departed: Vec<String> = keys.into_iter().filter(|k| !wanted.contains(k)).collect();
            if !departed.is_empty() {
                timed(
                    CALL_TIMEOUT,
                    redis::cmd("DEL")
                        .arg(&departed)
                        .query_async::<i64>(&mut connection),
                )
                .await
                .inspect_err(|_| self.forget())?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn get(&self, device_id: &str) -> Result<Option<LiveDevice>, LiveError> {
        let mut connection = self.connection().await?.0;
        let fields: HashMap<String, String> = timed(
            CALL_TIMEOUT,
            redis::cmd("HGETALL")
                .arg(self.key(device_id))
                .query_async(&mut connection),
        )
        .await
        .inspect_err(|_| self.forget())?;
        if fields.is_empty() {
            return Ok(None);
        }
        LiveDevice::from_fields(&fields).map(Some)
    }

    async fn subscribe(
        &self,
    ) -> Result<futures::stream::BoxStream<'static, LiveDevice>, LiveError> {
        // A connection of its own: a subscribed connection takes no other commands.
        let mut pubsub = timed(CALL_TIMEOUT, self.client.get_async_pubsub()).await?;
        timed(CALL_TIMEOUT, pubsub.subscribe(&self.channel)).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| async move {
                let payload = message.get_payload_bytes();
                match serde_json::from_slice::<LiveDevice>(payload) {
                    Ok(device) => Some(device),
                    Err(error) => {
                        // Someone else's message on our channel; not ours to judge.
                        debug!(%error, "skipping a malformed live state change");
                        None
                    }
                }
            })
            .boxed())
    }

    /// Runs `pipe` within `limit`, dialling if needed. A cached connection
    /// that turns out dead (Redis restarted) is replaced once within the
    /// same limit, so a restart between two calls goes unnoticed.
    async fn exec(&self, pipe: &redis::Pipeline, limit: Duration) -> Result<(), LiveError> {
        let attempt = async {
            let (mut connection, fresh) = self.connection().await?;
            match pipe.exec_async(&mut connection).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    self.forget();
                    if fresh || !(error.is_connection_dropped() || error.is_io_error()) {
                        return Err(LiveError::from(error));
                    }
                    let (mut connection, _) = self.connection().await?;
                    pipe.exec_async(&mut connection)
                        .await
                        .inspect_err(|_| self.forget())
                        .map_err(LiveError::from)
                }
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // Whatever hangs is not to be trusted with the next call.
                self.forget();
                Err(LiveError::Timeout(limit))
            }
        }
    }

    /// The cached connection, or a new one; true when new.
    async fn connection(&self) -> Result<(MultiplexedConnection, bool), LiveError> {
        let cached = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(connection) = cached {
            return Ok((connection, false));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CHUNK_TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok((connection, true))
    }

    fn forget(&self) {
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn written(&self) {
        metrics::gauge!("netward_alerting_redis_up").set(1.0);
        if self.down.swap(false, Ordering::Relaxed) {
            info!(prefix = %self.prefix, "redis back");
        }
    }

    /// `error` is None when no attempt was made (waiting to retry).
    fn not_written(&self, error: Option<&LiveError>) {
        metrics::gauge!("netward_alerting_redis_up").set(0.0);
        metrics::counter!("netward_alerting_live_publish_failures_total").increment(1);
        if !self.down.swap(true, Ordering::Relaxed) {
            match error {
                Some(error) => {
                    warn!(%error, prefix = %self.prefix, "redis unavailable; live state not published");
                }
                None => warn!(prefix = %self.prefix, "redis unavailable; live state not published"),
            }
        }
    }
}

/// `future` within `limit`, its error and the timeout as [`LiveError`].
async fn timed<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, LiveError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| LiveError::Timeout(limit))?
        .map_err(LiveError::from)
}

/// Escapes Redis glob characters so a prefix matches only itself.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
