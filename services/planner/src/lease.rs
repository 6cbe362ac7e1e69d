//! The planner's leadership lease, so only one planner plans at a time: a Redis
//! key (`SET NX PX`, compare-and-renew) with a fencing epoch, or in-process
//! (always leader) with no Redis; `spawn` drives either and publishes the state.
//!
//! The epoch must only grow as executors see it, even when Redis loses its
//! data (a restart without persistence, FLUSHALL) and its counter starts
//! again at 1: [`EpochFloor`] holds the highest epoch anyone reported, and a
//! lease is always taken (or, while held, bumped) above it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Where the lease keys live unless configured: `{prefix}:leader`, `{prefix}:epoch`.
pub const DEFAULT_KEY_PREFIX: &str = "netward:planner";
/// How long a lease lives without renewal unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// The shortest TTL accepted: the driver ticks every TTL / 3, and a tick
/// needs a Redis round trip.
pub const MIN_TTL: Duration = Duration::from_millis(30);
/// Longest instance id accepted (it is stored in the leader key and logged).
const MAX_INSTANCE_ID_LEN: usize = 256;

/// The `lease` section of the planner's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LeaseConfig {
    /// Prefix of the Redis keys (`{prefix}:leader`, `{prefix}:epoch`).
    pub key_prefix: String,
    /// Lease lifetime without renewal; the leader renews every `ttl / 3`.
    /// A standby takes over at most this long after a leader dies.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// This planner's name in the leader key and in `GetLeader`; no spaces.
    pub instance_id: String,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            ttl: DEFAULT_TTL,
            instance_id: default_instance_id(),
        }
    }
}

impl LeaseConfig {
    /// Checks what would make the lease misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), LeaseError> {
        if self.key_prefix.is_empty() {
            return Err(LeaseError::Config("lease.key_prefix is empty".into()));
        }
        if self.ttl < MIN_TTL {
            return Err(LeaseError::Config(format!(
                "lease.ttl is {:?}, less than the minimum {MIN_TTL:?}",
                self.ttl
            )));
        }
        let id = &self.instance_id;
        // The leader key's value is "{id} {epoch}": a space would make it ambiguous.
        if id.is_empty()
            || id.len() > MAX_INSTANCE_ID_LEN
            || id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(LeaseError::Config(format!(
                "lease.instance_id {id:?} must be 1-{MAX_INSTANCE_ID_LEN} characters without spaces"
            )));
        }
        Ok(())
    }

    fn ttl_millis(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// `{hostname}-{pid}-{random}`: unique per process, so a restarted planner
/// never mistakes its predecessor's lease for its own.
fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "planner".to_string());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("invalid lease config: {0}")]
    Config(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected lease value in redis: {0:?}")]
    Unexpected(String),
}

/// What this planner may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// This planner holds the lease with `epoch` (the fencing token every
    /// assignment carries) until `expires_at` unless it renews it.
    Leader { epoch: u64, expires_at: Instant },
    /// Another planner, or none, holds it; `leader` is the holder's
    /// `"{instance_id} {epoch}"` when known (see `parse_holder`).
    Standby { leader: Option<String> },
}

impl LeaseState {
    pub fn is_leader(&self) -> bool {
        matches!(self, Self::Leader { .. })
    }

    /// This planner's epoch while it leads.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Self::Leader { epoch, .. } => Some(*epoch),
            Self::Standby { .. } => None,
        }
    }

    /// Same role and same holder: what a watcher cares about. Only the
    /// expiry differs between two renewals.
    fn same_role(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Leader { epoch: a, .. }, Self::Leader { epoch: b, .. }) => a == b,
            (Self::Standby { leader: a }, Self::Standby { leader: b }) => a == b,
            _ => false,
        }
    }
}

/// Splits a leader key value `"{instance_id} {epoch}"`.
pub fn parse_holder(value: &str) -> Option<(&str, u64)> {
    let (id, epoch) = value.rsplit_once(' ')?;
    let epoch = epoch.parse().ok()?;
    (!id.is_empty()).then_some((id, epoch))
}

/// The highest leader epoch known to have been handed out: this planner's
/// own, holders' seen in the leader key, and what executors report
/// (`Register`, `Heartbeat`, a stale-epoch `AssignmentAck`). Shared by the
/// scheduler, which reports, and the lease, which stays above it.
#[derive(Debug, Default)]
pub struct EpochFloor {
    highest: AtomicU64,
    /// Wakes the lease driver when an epoch at or above the held one is
    /// reported, so the leader bumps at once rather than at its next tick.
    raised: Notify,
}

impl EpochFloor {
    /// Records `epoch` as seen; true when it raised the floor.
    pub fn observe(&self, epoch: u64) -> bool {
        let raised = self.highest.fetch_max(epoch, Ordering::AcqRel) < epoch;
        if raised {
            self.raised.notify_one();
        }
        raised
    }

    /// The highest epoch seen so far (0: none).
    pub fn get(&self) -> u64 {
        self.highest.load(Ordering::Acquire)
    }
}

/// The lease, chosen at start: Redis when a Redis URL is configured, the
/// in-process one otherwise.
#[derive(Debug)]
pub enum Lease {
    Redis(RedisLease),
    Local(LocalLease),
}

impl Lease {
    /// A Redis lease at `url` (`redis://host:6379`); nothing is dialled until
    /// the first tick, so a planner starts (as standby) while Redis is down.
    pub fn redis(url: &str, config: &LeaseConfig) -> Result<Self, LeaseError> {
        Ok(Self::Redis(RedisLease::connect(url, config)?))
    }

    /// The in-process lease: always leader, epoch 1.
    pub fn local(config: &LeaseConfig) -> Self {
        Self::Local(LocalLease::new(config))
    }

    pub fn instance_id(&self) -> &str {
        match self {
            Self::Redis(lease) => &lease.instance_id,
            Self::Local(lease) => &lease.instance_id,
        }
    }

    /// Keeps the epoch above `floor`, which the scheduler feeds with what
    /// executors report.
    pub fn with_floor(mut self, floor: Arc<EpochFloor>) -> Self {
        match &mut self {
            Self::Redis(lease) => lease.floor = floor,
            Self::Local(lease) => lease.floor = floor,
        }
        self
    }

    fn floor(&self) -> Arc<EpochFloor> {
        match self {
            Self::Redis(lease) => lease.floor.clone(),
            Self::Local(lease) => lease.floor.clone(),
        }
    }

    /// Renews the lease while held, tries to take it otherwise. An error
    /// leaves what is held untouched: `state` says whether it still counts.
    pub async fn tick(&mut self) -> Result<LeaseState, LeaseError> {
        match self {
            Self::Redis(lease) => lease.tick().await,
            Self::Local(lease) => Ok(lease.state()),
        }
    }

    /// What may be claimed now without asking Redis: leader until the expiry
    /// of the last successful renewal, standby after it.
    pub fn state(&mut self) -> LeaseState {
        match self {
            Self::Redis(lease) => lease.state(),
            Self::Local(lease) => lease.state(),
        }
    }

    /// Gives the lease up (shutdown), so a standby takes over at once
    /// instead of after the TTL. True when a held lease was deleted.
    pub async fn release(&mut self) -> Result<bool, LeaseError> {
        match self {
            Self::Redis(lease) => lease.release().await,
            Self::Local(_) => Ok(true),
        }
    }
}

/// Always leader, with epoch 1 unless executors report a higher one (they
/// followed a Redis-leased planner before): one process, nobody to fence
/// against but the executors' memory.
#[derive(Debug)]
pub struct LocalLease {
    instance_id: String,
    ttl: Duration,
    epoch: u64,
    floor: Arc<EpochFloor>,
}

impl LocalLease {
    pub fn new(config: &LeaseConfig) -> Self {
        Self {
            instance_id: config.instance_id.clone(),
            ttl: config.ttl,
            epoch: 1,
            floor: Arc::default(),
        }
    }

    fn state(&mut self) -> LeaseState {
        let floor = self.floor.get();
        if floor > self.epoch {
            warn!(
                epoch = self.epoch,
                seen = floor,
                "an executor saw a higher leader epoch: leading with the next one"
            );
            self.epoch = floor + 1;
        }
        self.floor.observe(self.epoch);
        // An expiry like a Redis lease's, so `GetLeader` reads the same either way.
        LeaseState::Leader {
            epoch: self.epoch,
            expires_at: now() + self.ttl,
        }
    }
}

/// Takes the leader key if absent: a new epoch from the counter, above the
/// floor ARGV[3] (the highest epoch the planner knows was handed out: a
/// counter lost with Redis's data starts again at 1), then the key with a
/// TTL, in one step so no two planners get the same epoch.
/// Returns {1, value} when taken, {0, current value} when held by someone.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then
  return {0, current}
end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if epoch <= floor then
  epoch = floor + 1
  redis.call('SET', KEYS[2], epoch)
end
local value = string.format('%s %d', ARGV[1], epoch)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
",
    )
});

/// While the leader key holds ARGV[1] (ours), takes a new epoch above the
/// floor ARGV[3] and stores it in the key with a fresh TTL: the leader
/// learnt its epoch is not the highest executors have seen.
/// Returns {1, new value} when bumped, {0, current value or ''} when lost.
static BUMP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  return {0, current or ''}
end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if epoch <= floor then
  epoch = floor + 1
  redis.call('SET', KEYS[2], epoch)
end
local value = string.format('%s %d', ARGV[4], epoch)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
",
    )
});

/// Extends the leader key only while it still holds our value.
/// Returns {1, value} when renewed, {0, current value or ''} when lost.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, current}
end
return {0, current or ''}
",
    )
});

/// Deletes the leader key only while it still holds our value (a lapsed
/// lease taken by another planner must stay theirs). Returns keys deleted.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The lease in Redis. Independent of PostgreSQL, so a database outage
/// does not cost the leader its lease.
pub struct RedisLease {
    connection: ConnectionManager,
    leader_key: String,
    epoch_key: String,
    instance_id: String,
    ttl: Duration,
    ttl_ms: u64,
    /// Bound on one Redis call, so a hung server cannot stall a tick past
    /// the lease's expiry.
    call_timeout: Duration,
    held: Option<Held>,
    floor: Arc<EpochFloor>,
}

#[derive(Debug)]
struct Held {
    epoch: u64,
    value: String,
    expires_at: Instant,
}

impl fmt::Debug for RedisLease {
    // The connection is left out: its client would print the URL, password included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLease")
            .field("leader_key", &self.leader_key)
            .field("instance_id", &self.instance_id)
            .field("ttl", &self.ttl)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl RedisLease {
    /// A lease through a new client for `url`; lazy, like `new`.
    pub fn connect(url: &str, config: &LeaseConfig) -> Result<Self, LeaseError> {
        Self::new(redis::Client::open(url)?, config)
    }

    /// A lease through `client`. Nothing is dialled until the first tick.
    pub fn new(client: redis::Client, config: &LeaseConfig) -> Result<Self, LeaseError> {
        config.validate()?;
        let call_timeout = tick_period(config.ttl);
        // Few, quick reconnection attempts: the next tick retries anyway, and
        // a tick must end well before the lease does.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(call_timeout))
            .set_response_timeout(Some(call_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(call_timeout);
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self {
            connection,
            leader_key: format!("{}:leader", config.key_prefix),
            epoch_key: format!("{}:epoch", config.key_prefix),
            instance_id: config.instance_id.clone(),
            ttl: config.ttl,
            ttl_ms: config.ttl_millis(),
            call_timeout,
            held: None,
            floor: Arc::default(),
        })
    }

    /// Renews while held, tries to acquire otherwise.
    pub async fn tick(&mut self) -> Result<LeaseState, LeaseError> {
        // Taken before the call: Redis starts the TTL when it runs the
        // script, later than this, so the expiry computed here is never late.
        let sent_at = now();
        if self
            .held
            .as_ref()
            .is_some_and(|held| sent_at >= held.expires_at)
        {
            // Stalled past the expiry: another planner may have led since,
            // so this epoch is over even if the key happens to still be ours.
            if let Some(held) = self.held.take() {
                debug!(epoch = held.epoch, "lease expired before its renewal");
            }
        }
        let floor = self.floor.get();
        if let Some(held) = self.held.as_ref().filter(|held| held.epoch < floor) {
            // Someone saw an epoch above ours (Redis lost its counter, or a
            // stale-epoch rejection told us): take one above it, or executors
            // refuse all we send.
            warn!(
                epoch = held.epoch,
                seen = floor,
                "an executor saw a higher leader epoch than this leader's: bumping the epoch"
            );
            let mut invocation = BUMP.key(&self.leader_key);
            invocation
                .key(&self.epoch_key)
                .arg(&held.value)
                .arg(self.ttl_ms)
                .arg(floor)
                .arg(&self.instance_id);
            let (bumped, value): (i64, String) = timed(
                self.call_timeout,
                invocation.invoke_async(&mut self.connection),
            )
            .await?;
            if bumped != 1 {
                self.held = None;
                return Ok(self.standby(value));
            }
            return self.took(value, sent_at);
        }
        if let Some(held) = &self.held {
            let mut invocation = RENEW.key(&self.leader_key);
            invocation.arg(&held.value).arg(self.ttl_ms);
            let (renewed, current): (i64, String) = timed(
                self.call_timeout,
                invocation.invoke_async(&mut self.connection),
            )
            .await?;
            if renewed == 1 {
                let epoch = held.epoch;
                let expires_at = sent_at + self.ttl;
                if let Some(held) = &mut self.held {
                    held.expires_at = expires_at;
                }
                return Ok(LeaseState::Leader { epoch, expires_at });
            }
            self.held = None;
            return Ok(self.standby(current));
        }
        let mut invocation = ACQUIRE.key(&self.leader_key);
        invocation
            .key(&self.epoch_key)
            .arg(&self.instance_id)
            .arg(self.ttl_ms)
            .arg(floor);
        let (acquired, value): (i64, String) = timed(
            self.call_timeout,
            invocation.invoke_async(&mut self.connection),
        )
        .await?;
        if acquired != 1 {
            return Ok(self.standby(value));
        }
        self.took(value, sent_at)
    }

    /// Following the holder `value` ('' for none); its epoch raises the floor.
    fn standby(&self, value: String) -> LeaseState {
        if let Some((_, epoch)) = parse_holder(&value) {
            self.floor.observe(epoch);
        }
        LeaseState::Standby {
            leader: Some(value).filter(|value| !value.is_empty()),
        }
    }

    /// Holding the leader key with `value`, from a call sent at `sent_at`.
    fn took(&mut self, value: String, sent_at: Instant) -> Result<LeaseState, LeaseError> {
        let epoch = parse_holder(&value)
            .map(|(_, epoch)| epoch)
            .ok_or_else(|| LeaseError::Unexpected(value.clone()))?;
        self.floor.observe(epoch);
        let expires_at = sent_at + self.ttl;
        self.held = Some(Held {
            epoch,
            value,
            expires_at,
        });
        Ok(LeaseState::Leader { epoch, expires_at })
    }

    /// Leader until the last renewal's expiry; a lease that cannot be
    /// proven held any more is dropped here.
    pub fn state(&mut self) -> LeaseState {
        match &self.held {
            Some(held) if now() < held.expires_at => LeaseState::Leader {
                epoch: held.epoch,
                expires_at: held.expires_at,
            },
            _ => {
                self.held = None;
                LeaseState::Standby { leader: None }
            }
        }
    }

    /// Compare-and-delete of a held lease. True when the key was deleted.
    pub async fn release(&mut self) -> Result<bool, LeaseError> {
        let Some(held) = self.held.take() else {
            return Ok(false);
        };
        let mut invocation = RELEASE.key(&self.leader_key);
        invocation.arg(&held.value);
        let deleted: i64 = timed(
            self.call_timeout,
            invocation.invoke_async(&mut self.connection),
        )
        .await?;
        Ok(deleted == 1)
    }
}

async fn timed<T>(
    limit: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(LeaseError::Timeout(limit)),
    }
}

/// Tokio's clock as a std `Instant`: the same as the system's, except under
/// paused test time, where timers and expiries then agree.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn tick_period(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(1))
}

/// Drives `lease` until `shutdown`: ticks every `config.ttl / 3` (renewing
/// while leader, trying to acquire while standby), steps down at the expiry
/// of the last successful renewal when Redis cannot be reached, and releases
/// the lease on shutdown.
///
/// The receiver always holds the current state (fresh expiry included) but
/// is woken only on transitions: leadership won or lost, or a new holder
/// seen. Once the lease is released the task ends and `changed()` returns
/// an error, so a caller can wait for the release before exiting.
pub fn spawn(
    mut lease: Lease,
    config: &LeaseConfig,
    shutdown: CancellationToken,
) -> watch::Receiver<LeaseState> {
    let period = tick_period(config.ttl);
    let (sender, receiver) = watch::channel(LeaseState::Standby { leader: None });
    metrics::gauge!("netward_planner_leader").set(0.0);
    let floor = lease.floor();
    tokio::spawn(async move {
        let instance_id = lease.instance_id().to_string();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Whether the last tick failed: an outage is logged once, not per tick.
        let mut failing = false;
        loop {
            let expires_at = match &*sender.borrow() {
                LeaseState::Leader { expires_at, .. } => Some(*expires_at),
                LeaseState::Standby { .. } => None,
            };
            let mut expiry = std::pin::pin!(tokio::time::sleep_until(
                expires_at.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
            ));
            let leading = expires_at.is_some();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // Without this, a leader whose renewals fail would go on
                // claiming the lease until the next tick, past its expiry.
                () = &mut expiry, if leading => {
                    let state = lease.state();
                    publish(&sender, &instance_id, state, StepDown::NotRenewed);
                    continue;
                }
                // An epoch above ours was reported: bump now, not at the
                // next tick (executors refuse what we send until then).
                () = floor.raised.notified() => {}
                _ = ticks.tick() => {}
            }
            // A renewal still under way at the expiry is abandoned: the claim
            // ends at the expiry, not when a slow Redis call gives up.
            let outcome = tokio::select! {
                biased;
                () = &mut expiry, if leading => None,
                outcome = lease.tick() => Some(outcome),
            };
            let (state, step_down) = match outcome {
                None => (lease.state(), StepDown::NotRenewed),
                Some(Ok(state)) => {
                    if failing {
                        info!("redis reachable again for the planner lease");
                        failing = false;
                    }
                    (state, StepDown::Lost)
                }
                Some(Err(error)) => {
                    if failing {
                        debug!(%error, "planner lease tick failed");
                    } else {
                        warn!(%error, "planner lease tick failed, leading at most until the lease expires");
                        failing = true;
                    }
                    (lease.state(), StepDown::NotRenewed)
                }
            };
            publish(&sender, &instance_id, state, step_down);
        }
        // Read apart from the await below: a watch guard must not be held across it.
        let held = sender.borrow().epoch();
        if let Some(epoch) = held {
            match lease.release().await {
                Ok(true) => info!(epoch, "released the planner lease"),
                Ok(false) => info!(epoch, "the planner lease was no longer ours to release"),
                Err(error) => {
                    warn!(epoch, %error, "cannot release the planner lease, it lapses by itself")
                }
            }
        }
        publish(
            &sender,
            &instance_id,
            LeaseState::Standby { leader: None },
            StepDown::Shutdown,
        );
    });
    receiver
}

/// Why a leader would stop leading at this publication.
#[derive(Debug, Clone, Copy)]
enum StepDown {
    /// Renewals failed until the lease's expiry.
    NotRenewed,
    /// The key lapsed or holds another planner's value.
    Lost,
    /// Released on purpose.
    Shutdown,
}

impl StepDown {
    fn reason(self) -> &'static str {
        match self {
            Self::NotRenewed => "the lease could not be renewed in time",
            Self::Lost => "the lease lapsed or another planner holds it",
            Self::Shutdown => "shutting down",
        }
    }
}

/// Stores `state`, logs a transition and wakes watchers only then.
fn publish(
    sender: &watch::Sender<LeaseState>,
    instance_id: &str,
    state: LeaseState,
    step_down: StepDown,
) {
    // Set at every tick, not only on transitions: the first ones may come
    // before the process installs its metrics recorder.
    match &state {
        LeaseState::Leader { epoch, .. } => {
            metrics::gauge!("netward_planner_leader").set(1.0);
            metrics::gauge!("netward_planner_leader_epoch").set(*epoch as f64);
        }
        LeaseState::Standby { leader } => {
            metrics::gauge!("netward_planner_leader").set(0.0);
            // The epoch seen last, ours or the holder's.
            if let Some((_, epoch)) = leader.as_deref().and_then(parse_holder) {
                metrics::gauge!("netward_planner_leader_epoch").set(epoch as f64);
            }
        }
    }
    sender.send_if_modified(|current| {
        let transition = !current.same_role(&state);
        if transition {
            if let LeaseState::Leader { epoch, .. } = current {
                let epoch = *epoch;
                match step_down {
                    StepDown::Shutdown => info!(epoch, "stopped leading for shutdown"),
                    StepDown::NotRenewed | StepDown::Lost => {
                        warn!(epoch, reason = step_down.reason(), "stopped leading");
                    }
                }
            }
            match &state {
                LeaseState::Leader { epoch, .. } => info!(epoch, instance_id, "became leader"),
                LeaseState::Standby {
                    leader: Some(leader),
                } => info!(leader = %leader, "following leader"),
                LeaseState::Standby { leader: None } => {}
            }
        }
        *current = state;
        transition
    });
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use redis::AsyncCommands as _;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinSet;

    use super::*;

    /// Environment variable naming the Redis server tests use.
    const TEST_REDIS_URL: &str = "NETWARD_TEST_REDIS_URL";
    const TTL: Duration = Duration::from_millis(300);
    /// Generous: CI has two cores shared with other tests.
    const PATIENCE: Duration = Duration::from_secs(5);

    fn redis_url() -> String {
        std::env::var(TEST_REDIS_URL).unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
    }

    /// The test's own keys, deleted when it ends (also when it fails).
    struct Keys {
        client: redis::Client,
        prefix: String,
    }

    impl Keys {
        fn leader(&self) -> String {
            format!("{}:leader", self.prefix)
        }

        fn config(&self, instance_id: &str) -> LeaseConfig {
            LeaseConfig {
                key_prefix: self.prefix.clone(),
                ttl: TTL,
                instance_id: instance_id.to_string(),
            }
        }

        fn lease(&self, instance_id: &str) -> RedisLease {
            self.lease_with(&self.config(instance_id))
        }

        fn lease_with(&self, config: &LeaseConfig) -> RedisLease {
            RedisLease::new(self.client.clone(), config).unwrap()
        }

        async fn connection(&self) -> redis::aio::MultiplexedConnection {
            self.client
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }
    }

    impl Drop for Keys {
        fn drop(&mut self) {
            // Blocking is fine here: a test is ending, and Redis is local.
            if let Ok(mut connection) = self.client.get_connection() {
                let _: Result<i64, _> = redis::cmd("DEL")
                    .arg(format!("{}:leader", self.prefix))
                    .arg(format!("{}:epoch", self.prefix))
                    .query(&mut connection);
            }
        }
    }

    /// Fresh keys on the test server, or None (with a note) when there is none.
    async fn keys() -> Option<Keys> {
        let url = redis_url();
        let client = redis::Client::open(url.as_str()).unwrap();
        let ping = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                eprintln!(
                    "skipping: no redis at {url} ({error}); set {TEST_REDIS_URL} (CI has one)"
                );
                return None;
            }
            Err(_) => {
                eprintln!(
                    "skipping: no answer from redis at {url}; set {TEST_REDIS_URL} (CI has one)"
                );
                return None;
            }
        }
        let prefix = format!("netward:test:lease:{:016x}", rand::random::<u64>());
        Some(Keys { client, prefix })
    }

    fn standby_naming(leader: &str) -> LeaseState {
        LeaseState::Standby {
            leader: Some(leader.to_string()),
        }
    }

    #[tokio::test]
    async fn two_leases_on_one_prefix_elect_exactly_one_leader() {
        let Some(keys) = keys().await else { return };
        let mut a = keys.lease("planner-a");
        let mut b = keys.lease("planner-b");
        let first = a.tick().await.unwrap();
        let second = b.tick().await.unwrap();
        assert_eq!(first.epoch(), Some(1), "{first:?}");
        assert_eq!(second, standby_naming("planner-a 1"));
        // Renewing keeps the epoch; the standby keeps naming the holder.
        assert_eq!(a.tick().await.unwrap().epoch(), Some(1));
        assert_eq!(b.tick().await.unwrap(), standby_naming("planner-a 1"));
        let value: String = keys.connection().await.get(keys.leader()).await.unwrap();
        assert_eq!(value, "planner-a 1");
    }

    #[tokio::test]
    async fn a_released_lease_goes_to_the_standby_with_the_next_epoch() {
        let Some(keys) = keys().await else { return };
        let mut a = keys.lease("planner-a");
        let mut b = keys.lease("planner-b");
        assert_eq!(a.tick().await.unwrap().epoch(), Some(1));
        assert!(!b.tick().await.unwrap().is_leader());
        assert!(a.release().await.unwrap());
        assert!(!a.state().is_leader());
        // At once, not after the TTL.
        assert_eq!(b.tick().await.unwrap().epoch(), Some(2));
        assert_eq!(a.tick().await.unwrap(), standby_naming("planner-b 2"));
        // Releasing a lease one does not hold deletes nothing.
        assert!(!a.release().await.unwrap());
        let value: String = keys.connection().await.get(keys.leader()).await.unwrap();
        assert_eq!(value, "planner-b 2");
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_taken_over_and_never_claimed_again_by_its_old_holder() {
        let Some(keys) = keys().await else { return };
        let mut a = keys.lease("planner-a");
        let mut b = keys.lease("planner-b");
        assert_eq!(a.tick().await.unwrap().epoch(), Some(1));
        // `a` stops renewing (a stalled process); `b` keeps trying.
        let deadline = Instant::now() + PATIENCE;
        let taken = loop {
            if let Some(epoch) = b.tick().await.unwrap().epoch() {
                break epoch;
            }
            assert!(
                Instant::now() < deadline,
                "the standby never took the lapsed lease"
            );
            tokio::time::sleep(TTL / 6).await;
        };
        assert!(taken > 1, "epoch {taken}");
        assert!(!a.state().is_leader());
        assert_eq!(
            a.tick().await.unwrap(),
            standby_naming(&format!("planner-b {taken}"))
        );
    }

    #[tokio::test]
    async fn a_renewal_that_finds_another_holder_steps_down() {
        let Some(keys) = keys().await else { return };
        let mut a = keys.lease("planner-a");
        assert!(a.tick().await.unwrap().is_leader());
        // Someone else's value, as after a lapse and a takeover between two ticks.
        let _: () = keys
            .connection()
            .await
            .set(keys.leader(), "planner-z 9")
            .await
            .unwrap();
        assert_eq!(a.tick().await.unwrap(), standby_naming("planner-z 9"));
        assert!(!a.state().is_leader());
        // The release is a compare-and-delete: the other holder's key stays.
        assert!(!a.release().await.unwrap());
        let value: String = keys.connection().await.get(keys.leader()).await.unwrap();
        assert_eq!(value, "planner-z 9");
    }

    #[tokio::test]
    async fn the_driver_releases_on_shutdown_so_the_standby_takes_over_at_once() {
        let Some(keys) = keys().await else { return };
        let stop_a = CancellationToken::new();
        let stop_b = CancellationToken::new();
        // The holder's key lives a minute: a takeover within PATIENCE can
        // only come from the release. The standby ticks every 100 ms.
        let config_a = LeaseConfig {
            ttl: Duration::from_secs(60),
            ..keys.config("planner-a")
        };
        let config_b = keys.config("planner-b");
        let mut a = spawn(
            Lease::Redis(keys.lease_with(&config_a)),
            &config_a,
            stop_a.clone(),
        );
        wait_for(&mut a, |state| state.epoch() == Some(1)).await;
        let mut b = spawn(
            Lease::Redis(keys.lease_with(&config_b)),
            &config_b,
            stop_b.clone(),
        );
        wait_for(&mut b, |state| *state == standby_naming("planner-a 1")).await;

        stop_a.cancel();
        // The driver ends after the release, dropping its sender.
        wait_until_ended(&mut a).await;
        assert_eq!(*a.borrow(), LeaseState::Standby { leader: None });
        wait_for(&mut b, |state| state.epoch() == Some(2)).await;
        stop_b.cancel();
        wait_until_ended(&mut b).await;
        let value: Option<String> = keys.connection().await.get(keys.leader()).await.unwrap();
        assert_eq!(value, None, "both released");
    }

    #[tokio::test]
    async fn the_driver_never_leads_without_redis() {
        // Port 1: nothing listens there, the connection is refused.
        let config = LeaseConfig {
            key_prefix: format!("netward:test:lease:{:016x}", rand::random::<u64>()),
            ttl: TTL,
            instance_id: "planner-a".into(),
        };
        let lease = Lease::redis("redis://127.0.0.1:1", &config).unwrap();
        let shutdown = CancellationToken::new();
        let mut state = spawn(lease, &config, shutdown.clone());
        // Several TTLs' worth of failing ticks.
        let watched = tokio::time::timeout(TTL * 5, state.changed()).await;
        assert!(
            watched.is_err(),
            "no transition expected: {:?}",
            *state.borrow()
        );
        assert_eq!(*state.borrow(), LeaseState::Standby { leader: None });
        shutdown.cancel();
    }

    #[tokio::test]
    async fn the_driver_steps_down_when_redis_becomes_unreachable() {
        let Some(keys) = keys().await else { return };
        let proxy = Proxy::start(&redis_url()).await;
        let config = keys.config("planner-a");
        let lease = Lease::redis(&format!("redis://{}", proxy.address), &config).unwrap();
        let shutdown = CancellationToken::new();
        let mut state = spawn(lease, &config, shutdown.clone());
        wait_for(&mut state, |state| state.epoch() == Some(1)).await;

        proxy.cut().await;
        let cut_at = Instant::now();
        // The claim never outlives the last renewal, sent before the cut, by more than the TTL.
        let last_expiry = match &*state.borrow() {
            LeaseState::Leader { expires_at, .. } => *expires_at,
            LeaseState::Standby { .. } => panic!("stepped down before the cut"),
        };
        assert!(last_expiry <= cut_at + TTL);
        wait_for(&mut state, |state| !state.is_leader()).await;
        assert_eq!(*state.borrow(), LeaseState::Standby { leader: None });
        shutdown.cancel();
    }

    #[tokio::test]
    async fn the_local_lease_always_leads_with_epoch_1() {
        let config = LeaseConfig {
            ttl: TTL,
            ..LeaseConfig::default()
        };
        let mut lease = Lease::local(&config);
        assert_eq!(lease.tick().await.unwrap().epoch(), Some(1));
        assert_eq!(lease.state().epoch(), Some(1));
        let shutdown = CancellationToken::new();
        let mut state = spawn(lease, &config, shutdown.clone());
        wait_for(&mut state, |state| state.epoch() == Some(1)).await;
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(state.borrow().epoch(), Some(1));
        shutdown.cancel();
        wait_until_ended(&mut state).await;
        assert!(!state.borrow().is_leader());
    }

    #[test]
    fn config_defaults_and_validation() {
        let config = LeaseConfig::default();
        assert_eq!(config.key_prefix, "netward:planner");
        assert_eq!(config.ttl, Duration::from_secs(5));
        assert!(!config.instance_id.contains(' '), "{}", config.instance_id);
        config.validate().unwrap();
        assert_ne!(config.instance_id, LeaseConfig::default().instance_id);

        let parsed: LeaseConfig =
            serde_json::from_str(r#"{"ttl": "300ms", "instance_id": "planner-1"}"#).unwrap();
        assert_eq!(parsed.ttl, Duration::from_millis(300));
        assert_eq!(parsed.instance_id, "planner-1");
        assert_eq!(parsed.key_prefix, "netward:planner");

        for bad in [
            LeaseConfig {
                instance_id: "two words".into(),
                ..LeaseConfig::default()
            },
            LeaseConfig {
                ttl: Duration::from_millis(5),
                ..LeaseConfig::default()
            },
            LeaseConfig {
                key_prefix: String::new(),
                ..LeaseConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn holder_values_split_into_id_and_epoch() {
        assert_eq!(parse_holder("planner-a 12"), Some(("planner-a", 12)));
        assert_eq!(parse_holder("host-1-2-ab 1"), Some(("host-1-2-ab", 1)));
        assert_eq!(parse_holder("planner-a"), None);
        assert_eq!(parse_holder(" 3"), None);
        assert_eq!(parse_holder("planner-a x"), None);
    }

    /// Waits (with a deadline) until the watched state satisfies `check`.
    async fn wait_for(
        receiver: &mut watch::Receiver<LeaseState>,
        check: impl Fn(&LeaseState) -> bool,
    ) {
        let waited = tokio::time::timeout(PATIENCE, receiver.wait_for(|state| check(state)))
            .await
            .map(|result| result.map(|_| ()));
        match waited {
            Ok(result) => result.unwrap(),
            Err(_) => panic!("not within {PATIENCE:?}: {:?}", *receiver.borrow()),
        }
    }

    /// Waits (with a deadline) until the driver has ended.
    async fn wait_until_ended(receiver: &mut watch::Receiver<LeaseState>) {
        tokio::time::timeout(PATIENCE, async {
            while receiver.changed().await.is_ok() {}
        })
        .await
        .unwrap_or_else(|_| panic!("the lease driver still runs after {PATIENCE:?}"));
    }

    /// A TCP proxy to Redis that can be cut: connections dropped and the
    /// port closed, as when Redis or the network goes away.
    struct Proxy {
        address: SocketAddr,
        task: tokio::task::JoinHandle<()>,
    }

    impl Proxy {
        async fn start(redis_url: &str) -> Self {
            let upstream = redis::Client::open(redis_url)
                .unwrap()
                .get_connection_info()
                .addr()
                .to_string();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                // Dropped with the task on `cut`: every connection goes with it.
                let mut connections = JoinSet::new();
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    connections.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            Self { address, task }
        }

        /// Returns once the listener and the connections are gone.
        async fn cut(self) {
            self.task.abort();
            let _ = self.task.await;
        }
    }
}
