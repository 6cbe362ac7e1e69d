//! The ICMP probing engine: one socket per address family shared by every
//! probe of the process, a random identifier per engine, replies matched on
//! (identifier, sequence, source), pacing, and the parser for bytes off the wire.
//!
//! Own implementation on socket2 + tokio + nix (no `unsafe`), not surge-ping
//! 0.9.1, because of CPU. Loopback, one echo per target, 1 s timeout, 2 cores,
//! fping 5.1 `-c1 -r0 -i0 -t1000` in the same run (`examples/ping_bench.rs`;
//! surge-ping from VERSIONS.md, measured earlier on this machine):
//!
//! | targets | run | wall | CPU | ratio to fping (wall, CPU) |
//! |---|---|---|---|---|
//! | 10,000 | surge-ping, paced by concurrency 50 | 0.31 s | 0.43 s | 1.35, 1.95 |
//! | 10,000 | this engine, default budget 60,000 pps | 0.17 s | 0.08–0.11 s | 1.2–1.7, 0.5–1.1 |
//! | 10,000 | this engine, no budget | 0.08–0.09 s | 0.09 s | 0.4–0.95, 0.46–0.91 |
//! | 60,000 | surge-ping, paced by concurrency 50–100 | 1.62 s | 2.5 s | 1.25, 1.94 |
//! | 60,000 | this engine, default budget 60,000 pps | 1.03 s | 0.53–0.68 s | 1.2–1.4, 0.65–0.83 |
//! | 60,000 | this engine, no budget | 0.36–0.57 s | 0.42–0.60 s | 0.44–0.68, 0.52–0.74 |
//!
//! (fping took 0.10–0.15 s and 0.67–0.85 s; the host's speed drifts by
//! ±25 % between runs, hence the ranges.) With the budget, wall time is the
//! budget's doing by design: 60,000 packets at 60,000 pps take 1 s.
//!
//! Where the CPU went, and what took it back:
//! - One engine task per family owns the socket, the pending table, the
//!   deadlines and the send queue (fping's single loop): no lock on the hot
//!   path, no timer per packet (one per engine), sends never contend for the
//!   socket lock. Probes talk to it through a channel and a oneshot each.
//! - The engine runs on a thread of its own (see [`Pinger`]): on the caller's
//!   multi-thread runtime every reply woke the worker parked in epoll.
//! - Results are handed to probes once per engine turn, not one by one.
//! - A kernel BPF filter on raw sockets passes only echo replies and ICMP
//!   errors (a raw socket otherwise also gets every echo *request* on
//!   loopback, and all other ICMP of the host).
//! - Pacing is one atomic reservation (GCRA), and a budget-limited engine
//!   sleeps at least `PACING_TICK`, sending what accrued within the burst.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::join_all;
use metrics::{Counter, Histogram};
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage, recvfrom, recvmsg,
    sendto, setsockopt, sockopt,
};
use rand::Rng;
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::pacing::{Pacer, Slot};

/// Payload after the 8-byte ICMP header: the engine's cookie and the send's
/// token, so a reply must echo both to count (guessing id and seq is not
/// enough to spoof a result).
const PAYLOAD_LEN: usize = 16;
const PACKET_LEN: usize = 8 + PAYLOAD_LEN;
/// Large enough for an ICMP error quoting a full-size original packet.
const RECV_BUF_LEN: usize = 2048;

const ICMP4_ECHO_REPLY: u8 = 0;
const ICMP4_DEST_UNREACHABLE: u8 = 3;
const ICMP4_ECHO_REQUEST: u8 = 8;
const ICMP4_TIME_EXCEEDED: u8 = 11;
const ICMP6_DEST_UNREACHABLE: u8 = 1;
const ICMP6_TIME_EXCEEDED: u8 = 3;
const ICMP6_ECHO_REQUEST: u8 = 128;
const ICMP6_ECHO_REPLY: u8 = 129;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
/// `sock_extended_err.ee_origin` values (linux/errqueue.h).
const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

// ---------------------------------------------------------------------------
// Public API

/// How the engine opens its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketMode {
    /// Unprivileged ICMP (`SOCK_DGRAM`) where `ping_group_range` allows it,
    /// raw sockets otherwise.
    #[default]
    Auto,
    Datagram,
    Raw,
}

/// The kind of socket an address family ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_DGRAM` + `IPPROTO_ICMP`: the kernel owns the identifier (we bind
    /// it) and delivers only our own replies.
    Datagram,
    /// `SOCK_RAW`: needs `CAP_NET_RAW`; sees every ICMP packet of the host.
    Raw,
}

#[derive(Debug, Clone)]
pub struct PingerConfig {
    /// Send budget of the engine. The default covers 100,000 devices × 3
    /// echoes per 10 s twice over, room for retries.
    pub packets_per_second: u32,
    /// Requested `SO_RCVBUF` in bytes (forced past `rmem_max` when privileged):
    /// replies of a burst must wait in the socket, not be dropped.
    pub receive_buffer: usize,
    /// ICMP identifier; random when `None` (so two executors never mix).
    pub identifier: Option<u16>,
    pub socket: SocketMode,
}

impl Default for PingerConfig {
    fn default() -> Self {
        Self {
            packets_per_second: 60_000,
            receive_buffer: 8 << 20,
            identifier: None,
            socket: SocketMode::Auto,
        }
    }
}

/// One probe of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Echo requests sent `interval` apart.
    pub count: u32,
    pub interval: Duration,
    /// How long each request waits for its reply.
    pub timeout: Duration,
    /// Extra requests sent at once when none of `count` got a reply.
    pub retries: u32,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        Self {
            count: 3,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            retries: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// No reply at all, retries included.
    Timeout,
    /// An ICMP destination-unreachable (or time-exceeded) came back instead.
    Unreachable,
    /// The local stack refused to send (the fault is here, not the device's).
    SendError(String),
    /// Not a unicast address, or no socket for its family.
    InvalidAddress,
}

impl ProbeFailure {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::SendError(_) => "send_error",
            Self::InvalidAddress => "invalid_address",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeOutcome {
    /// Requests sent, retries included.
    pub sent: u32,
    pub received: u32,
    /// One per reply, in the order the requests were sent.
    pub rtts: Vec<Duration>,
    pub retries_sent: u32,
    /// `None` when at least one reply came back.
    pub failure: Option<ProbeFailure>,
}

impl ProbeOutcome {
    /// The outcome for an address that cannot be probed.
    pub fn invalid_address() -> Self {
        Self {
            failure: Some(ProbeFailure::InvalidAddress),
            ..Self::default()
        }
    }

    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        f64::from(self.sent - self.received.min(self.sent)) * 100.0 / f64::from(self.sent)
    }

    pub fn rtt_min(&self) -> Option<Duration> {
        self.rtts.iter().min().copied()
    }

    pub fn rtt_max(&self) -> Option<Duration> {
        self.rtts.iter().max().copied()
    }

    pub fn rtt_avg(&self) -> Option<Duration> {
        let n = u32::try_from(self.rtts.len()).ok().filter(|n| *n > 0)?;
        Some(self.rtts.iter().sum::<Duration>() / n)
    }

    /// Population standard deviation of the RTTs (the jitter).
    pub fn rtt_stddev(&self) -> Option<Duration> {
        let avg = self.rtt_avg()?.as_secs_f64();
        let var = self
            .rtts
            .iter()
            .map(|r| (r.as_secs_f64() - avg).powi(2))
            .sum::<f64>()
            / self.rtts.len() as f64;
        Some(Duration::from_secs_f64(var.sqrt()))
    }
}

/// The engine's own health, so local trouble is never blamed on targets.
#[derive(Debug, Clone, PartialEq)]
pub struct PingerStats {
    pub identifier: u16,
    pub ipv4: Option<SocketKind>,
    pub ipv6: Option<SocketKind>,
    /// True when either family fell back to (or was set to) a raw socket.
    pub raw_socket: bool,
    /// Receive buffer the kernel granted (IPv4 socket, else IPv6), in bytes.
    pub receive_buffer: usize,
    /// The packets-per-second budget.
    pub packets_per_second: u32,
    /// Packets per second actually sent, averaged over the last 10 s.
    pub pps_used: f64,
    pub sent: u64,
    /// Replies matched to a waiting request.
    pub received: u64,
    /// ICMP errors (unreachable, time exceeded) matched to a request.
    pub unreachable: u64,
    /// Replies ignored: another identifier, no such request (late or
    /// spoofed), or a payload that is not ours.
    pub stray: u64,
    /// Packets that could not be parsed.
    pub malformed: u64,
    pub send_errors: u64,
    /// Sends that had to wait for the packets-per-second budget.
    pub budget_waits: u64,
    pub budget_wait_total: Duration,
    /// How late sends went out against their planned time (after pacing).
    pub scheduler_lag_total: Duration,
    pub scheduler_lag_max: Duration,
    /// Worst scheduler lag over the last 10 s.
    pub scheduler_lag: Duration,
    /// Requests waiting for a reply right now.
    pub in_flight: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PingerError {
    #[error(
        "cannot open an icmp socket (datagram: {datagram}; raw: {raw}): grant CAP_NET_RAW \
         (e.g. `setcap cap_net_raw+ep <binary>`) or widen net.ipv4.ping_group_range \
         (e.g. `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)"
    )]
    NoSocket { datagram: String, raw: String },
    #[error("icmp identifier in use by another socket: identifier={identifier}")]
    IdentifierInUse { identifier: u16 },
    #[error("icmp socket setup failed: {0}")]
    Io(#[from] io::Error),
}

/// The ICMP engine. Create one per process with [`Pinger::new`] and share
/// the `Arc`; dropping it stops its engine thread.
///
/// The sockets are served by a thread of its own (a current-thread Tokio
/// runtime), not by the caller's runtime: while that thread is busy sending,
/// nobody sleeps in its epoll, so the kernel's per-packet readiness callbacks
/// wake no other thread. Served from a multi-thread runtime, every reply woke
/// the parked worker that held the I/O driver (about 10,000 context switches
/// and a third more CPU for 60,000 probes).
pub struct Pinger {
    shared: Arc<Shared>,
    /// Dropping it ends the engine thread.
    _stop: oneshot::Sender<()>,
}

impl fmt::Debug for Pinger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinger")
            .field("identifier", &self.shared.identifier)
            .finish_non_exhaustive()
    }
}

impl Pinger {
    pub fn new(config: PingerConfig) -> Result<Arc<Self>, PingerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shared, queues) = {
            // The sockets register with the engine's own I/O driver.
            let _enter = runtime.enter();
            Self::open(&config)?
        };
        let engines: Vec<Engine> = queues
            .into_iter()
            .map(|(v6, queue)| Engine::new(Arc::clone(&shared), v6, queue))
            .collect();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("netward-icmp".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    for engine in engines {
                        tokio::spawn(engine.run());
                    }
                    // Resolves when the Pinger is dropped.
                    let _ = stopped.await;
                });
            })?;
        tracing::info!(
            identifier = shared.identifier,
            ipv4 = ?shared.v4.as_ref().map(|f| f.kind),
            ipv6 = ?shared.v6.as_ref().map(|f| f.kind),
            receive_buffer = shared.receive_buffer(),
            packets_per_second = config.packets_per_second,
            "icmp engine ready"
        );
        Ok(Arc::new(Self {
            shared,
            _stop: stop,
        }))
    }

    /// Opens the sockets under an identifier of our own.
    fn open(config: &PingerConfig) -> Result<(Arc<Shared>, Vec<EngineQueue>), PingerError> {
        // A random identifier may collide with another datagram socket's
        // (the kernel refuses the bind); draw again a few times.
        let attempts = if config.identifier.is_some() { 1 } else { 16 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let identifier = config
                .identifier
                .unwrap_or_else(|| rand::rng().random_range(1..=u16::MAX));
            match Self::open_families(config, identifier) {
                Ok((v4, v6)) => {
                    let (v4, queue4) = v4.unzip();
                    let (v6, queue6) = v6.unzip();
                    let shared = Arc::new(Shared::new(config, identifier, v4, v6));
                    let queues = [(false, queue4), (true, queue6)]
                        .into_iter()
                        .filter_map(|(v6, queue)| queue.map(|q| (v6, q)))
                        .collect();
                    return Ok((shared, queues));
                }
                Err(PingerError::IdentifierInUse { .. }) if attempt < attempts => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn open_families(
        config: &PingerConfig,
        identifier: u16,
    ) -> Result<(Option<Opened>, Option<Opened>), PingerError> {
        let v4 = open_socket(false, config, identifier);
        let v6 = open_socket(true, config, identifier);
        match (v4, v6) {
            (Err(e @ PingerError::IdentifierInUse { .. }), _)
            | (_, Err(e @ PingerError::IdentifierInUse { .. })) => Err(e),
            (Ok(v4), Ok(v6)) => Ok((Some(v4), Some(v6))),
            (Ok(v4), Err(e)) => {
                // Hosts without IPv6 still probe IPv4; IPv6 probes then fail
                // with InvalidAddress.
                tracing::warn!(error = %e, "no icmpv6 socket, ipv6 probes will fail");
                Ok((Some(v4), None))
            }
            (Err(e), Ok(v6)) => {
                tracing::warn!(error = %e, "no icmpv4 socket, ipv4 probes will fail");
                Ok((None, Some(v6)))
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Probes `addr` as `spec` says. Never panics on anything the network
    /// sends; every problem ends in `failure`.
    pub async fn probe(&self, addr: IpAddr, spec: &ProbeSpec) -> ProbeOutcome {
        let shared = &*self.shared;
        let addr = addr.to_canonical();
        let family = match shared.family(addr.is_ipv6()) {
            Some(family) if is_probeable(addr) => family,
            _ => {
                shared.metrics.probe_invalid.increment(1);
                return ProbeOutcome::invalid_address();
            }
        };
        let mut tally = Tally::default();
        let start = Instant::now();
        let count = spec.count.max(1);
        let packets = (0..count).map(|i| {
            let planned = start + spec.interval.saturating_mul(i);
            family.submit(addr, planned, spec.timeout)
        });
        tally.add(join_all(packets).await);
        let mut retries_sent = 0;
        if tally.received == 0 && spec.retries > 0 {
            // Nothing came back: retry at once (still paced) before calling
            // the device down, so one lost packet is never an outage.
            let start = Instant::now();
            let packets = (0..spec.retries).map(|_| family.submit(addr, start, spec.timeout));
            let before = tally.sent;
            tally.add(join_all(packets).await);
            retries_sent = tally.sent - before;
        }
        let failure = if tally.received > 0 {
            None
        } else if tally.unreachable > 0 {
            Some(ProbeFailure::Unreachable)
        } else if tally.sent == 0 {
            Some(ProbeFailure::SendError(
                tally.send_error.unwrap_or_else(|| "not sent".to_owned()),
            ))
        } else {
            Some(ProbeFailure::Timeout)
        };
        let counter = match &failure {
            None => &shared.metrics.probe_ok,
            Some(ProbeFailure::Timeout) => &shared.metrics.probe_timeout,
            Some(ProbeFailure::Unreachable) => &shared.metrics.probe_unreachable,
            Some(ProbeFailure::SendError(_)) => &shared.metrics.probe_send_error,
            Some(ProbeFailure::InvalidAddress) => &shared.metrics.probe_invalid,
        };
        counter.increment(1);
        ProbeOutcome {
            sent: tally.sent,
            received: tally.received,
            rtts: tally.rtts,
            retries_sent,
            failure,
        }
    }

    pub fn stats(&self) -> PingerStats {
        let s = &*self.shared;
        let c = &s.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PingerStats {
            identifier: s.identifier,
            ipv4: s.v4.as_ref().map(|f| f.kind),
            ipv6: s.v6.as_ref().map(|f| f.kind),
            raw_socket: [&s.v4, &s.v6]
                .into_iter()
                .flatten()
                .any(|f| f.kind == SocketKind::Raw),
            receive_buffer: s.receive_buffer(),
            packets_per_second: s.packets_per_second,
            pps_used: s.window.pps(Instant::now()),
            sent: load(&c.sent),
            received: load(&c.received),
            unreachable: load(&c.unreachable),
            stray: load(&c.stray),
            malformed: load(&c.malformed),
            send_errors: load(&c.send_errors),
            budget_waits: load(&c.budget_waits),
            budget_wait_total: Duration::from_nanos(load(&c.budget_wait_ns)),
            scheduler_lag_total: Duration::from_nanos(load(&c.lag_ns)),
            scheduler_lag_max: Duration::from_nanos(load(&c.lag_max_ns)),
            scheduler_lag: s.window.lag_max(Instant::now()),
            in_flight: [&s.v4, &s.v6]
                .into_iter()
                .flatten()
                .map(|f| f.in_flight.load(Ordering::Relaxed))
                .sum(),
        }
    }

    pub fn identifier(&self) -> u16 {
        self.shared.identifier
    }
}

/// Only unicast addresses are probed: a broadcast or multicast echo would
/// be answered by many hosts and prove nothing about one device.
fn is_probeable(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

// ---------------------------------------------------------------------------
// Engine internals
//
// Each address family has one engine task that owns its socket's send and
// receive sides, the table of requests waiting for a reply, their deadlines
// and the send queue: like fping's single loop, so the hot path takes no
// lock, sends never contend for the socket lock, and the only timer is the
// task's own. Probes talk to it through a channel and a oneshot per packet.

struct Family {
    /// The ICMP socket, registered with Tokio through `UdpSocket`: its
    /// readiness API is all we need, it is safe (`AsyncFd::new` is deprecated
    /// and `AsyncFd::register` is `unsafe`), and sends and receives go through
    /// nix on the raw fd, so nothing UDP-specific is ever called.
    sock: UdpSocket,
    kind: SocketKind,
    v6: bool,
    receive_buffer: usize,
    queue: mpsc::UnboundedSender<SendRequest>,
    /// Requests waiting for a reply (published by the engine task).
    in_flight: AtomicUsize,
}

impl Family {
    /// Queues one echo request; the receiver yields what became of it.
    fn submit(
        &self,
        target: IpAddr,
        planned: Instant,
        timeout: Duration,
    ) -> impl Future<Output = PacketResult> + use<> {
        let (tx, rx) = oneshot::channel();
        let request = SendRequest {
            target,
            planned,
            timeout,
            tx,
        };
        // Fails only once the engine task is gone (the Pinger was dropped).
        let queued = self.queue.send(request).is_ok();
        async move {
            if !queued {
                return PacketResult::SendError("icmp engine stopped".to_owned());
            }
            rx.await
                .unwrap_or_else(|_| PacketResult::SendError("icmp engine stopped".to_owned()))
        }
    }
}

struct SendRequest {
    target: IpAddr,
    /// Not before this instant (`interval` spacing within a probe).
    planned: Instant,
    timeout: Duration,
    tx: oneshot::Sender<PacketResult>,
}

/// A request planned for later, ordered by its planned time (then by
/// arrival, so equal times keep their order).
struct Later {
    planned: Instant,
    order: u64,
    request: SendRequest,
}

impl PartialEq for Later {
    fn eq(&self, other: &Self) -> bool {
        (self.planned, self.order) == (other.planned, other.order)
    }
}
impl Eq for Later {}
impl PartialOrd for Later {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Later {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.planned, other.order).cmp(&(self.planned, self.order))
    }
}

struct Pending {
    token: u64,
    sent_at: Instant,
    tx: oneshot::Sender<PacketResult>,
}

#[derive(Debug)]
enum PacketResult {
    Reply(Duration),
    Unreachable,
    Timeout,
    SendError(String),
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    unreachable: AtomicU64,
    stray: AtomicU64,
    malformed: AtomicU64,
    send_errors: AtomicU64,
    budget_waits: AtomicU64,
    budget_wait_ns: AtomicU64,
    lag_ns: AtomicU64,
    lag_max_ns: AtomicU64,
}

/// Metric handles resolved once (the recorder must be installed before the
/// engine is created), so the per-packet path does no key lookups.
struct Metrics {
    probe_ok: Counter,
    probe_timeout: Counter,
    probe_unreachable: Counter,
    probe_send_error: Counter,
    probe_invalid: Counter,
    packets_sent: Counter,
    replies: Counter,
    stray: Counter,
    send_errors: Counter,
    rtt: Histogram,
    pacing_wait: Histogram,
    scheduler_lag: Histogram,
}

impl Metrics {
    fn new() -> Self {
        let probes = |outcome: &'static str| metrics::counter!("executor_probes_total", "outcome" => outcome);
        Self {
            probe_ok: probes("ok"),
            probe_timeout: probes("timeout"),
            probe_unreachable: probes("unreachable"),
            probe_send_error: probes("send_error"),
            probe_invalid: probes("invalid_address"),
            packets_sent: metrics::counter!("executor_packets_sent_total"),
            replies: metrics::counter!("executor_replies_total"),
            stray: metrics::counter!("executor_stray_replies_total"),
            send_errors: metrics::counter!("executor_send_errors_total"),
            rtt: metrics::histogram!("executor_rtt_seconds"),
            pacing_wait: metrics::histogram!("executor_pacing_wait_seconds"),
            scheduler_lag: metrics::histogram!("executor_scheduler_lag_seconds"),
        }
    }
}

struct Shared {
    identifier: u16,
    packets_per_second: u32,
    window: RecentWindow,
    cookie: u64,
    v4: Option<Family>,
    v6: Option<Family>,
    pacer: Pacer,
    counters: Counters,
    metrics: Metrics,
}

/// Sends and worst lag per second over the last `WINDOW_SECS` seconds, for
/// the heartbeat's "recent" figures.
const WINDOW_SECS: u64 = 10;

struct RecentWindow {
    epoch: Instant,
    /// (second since epoch, packets sent, worst lag in ns) per slot.
    slots: Mutex<[(u64, u64, u64); WINDOW_SECS as usize]>,
}

impl RecentWindow {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            slots: Mutex::new([(u64::MAX, 0, 0); WINDOW_SECS as usize]),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    /// Adds `sent` packets whose worst lag was `lag`, sent around `at`.
    fn record(&self, at: Instant, sent: u64, lag: Duration) {
        let second = self.second(at);
        let mut slots = lock(&self.slots);
        let slot = &mut slots[(second % WINDOW_SECS) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot.1 += sent;
        slot.2 = slot.2.max(nanos(lag));
    }

    /// Slots of the last `WINDOW_SECS` seconds, the current one included.
    fn recent(&self, now: Instant) -> Vec<(u64, u64, u64)> {
        let second = self.second(now);
        lock(&self.slots)
            .iter()
            .filter(|s| s.0 != u64::MAX && s.0 + WINDOW_SECS > second && s.0 <= second)
            .copied()
            .collect()
    }

    fn pps(&self, now: Instant) -> f64 {
        let sent: u64 = self.recent(now).iter().map(|s| s.1).sum();
        // Early in the engine's life the window is shorter than 10 s.
        let span = now
            .saturating_duration_since(self.epoch)
            .as_secs_f64()
            .clamp(1.0, WINDOW_SECS as f64);
        sent as f64 / span
    }

    fn lag_max(&self, now: Instant) -> Duration {
        Duration::from_nanos(self.recent(now).iter().map(|s| s.2).max().unwrap_or(0))
    }
}

/// What the packets of one probe added up to.
#[derive(Default)]
struct Tally {
    sent: u32,
    received: u32,
    unreachable: u32,
    rtts: Vec<Duration>,
    send_error: Option<String>,
}

impl Tally {
    fn add(&mut self, results: Vec<PacketResult>) {
        for result in results {
            match result {
                PacketResult::Reply(rtt) => {
                    self.sent += 1;
                    self.received += 1;
                    self.rtts.push(rtt);
                }
                PacketResult::Unreachable => {
                    self.sent += 1;
                    self.unreachable += 1;
                }
                PacketResult::Timeout => self.sent += 1,
                PacketResult::SendError(e) => self.send_error = Some(e),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only plain counters live behind these locks; a poisoned one is still
    // consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn new(config: &PingerConfig, identifier: u16, v4: Option<Family>, v6: Option<Family>) -> Self {
        Self {
            identifier,
            packets_per_second: config.packets_per_second,
            window: RecentWindow::new(),
            cookie: rand::rng().random(),
            v4,
            v6,
            // 20 ms worth of budget may go back to back after an idle spell.
            pacer: Pacer::new(config.packets_per_second, config.packets_per_second / 50),
            counters: Counters::default(),
            metrics: Metrics::new(),
        }
    }

    fn family(&self, v6: bool) -> Option<&Family> {
        if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }

    fn receive_buffer(&self) -> usize {
        self.v4
            .as_ref()
            .or(self.v6.as_ref())
            .map_or(0, |f| f.receive_buffer)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn payload_token(payload: &[u8], cookie: u64) -> Option<u64> {
    let cookie_bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    let token_bytes: [u8; 8] = payload.get(8..16)?.try_into().ok()?;
    (u64::from_be_bytes(cookie_bytes) == cookie).then(|| u64::from_be_bytes(token_bytes))
}

fn echo_request(v6: bool, identifier: u16, seq: u16, cookie: u64, token: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = if v6 {
        ICMP6_ECHO_REQUEST
    } else {
        ICMP4_ECHO_REQUEST
    };
    p[4..6].copy_from_slice(&identifier.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(&cookie.to_be_bytes());
    p[16..24].copy_from_slice(&token.to_be_bytes());
    if !v6 {
        // ICMPv6 checksums are filled by the kernel (they cover a
        // pseudo-header with the source address we do not choose).
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The engine task of one family. Runs until the `Pinger` is dropped.
struct Engine {
    shared: Arc<Shared>,
    v6: bool,
    queue: mpsc::UnboundedReceiver<SendRequest>,
    /// Requests due now, in arrival order.
    due: VecDeque<SendRequest>,
    /// Requests planned for later.
    later: BinaryHeap<Later>,
    order: u64,
    /// The pacing slot reserved for the head of `due`, if it had to wait.
    slot: Option<Slot>,
    /// Requests waiting for a reply, by (target, sequence). Keying on the
    /// target too lets sequences wrap under load without mixing targets.
    pending: HashMap<(IpAddr, u16), Pending>,
    /// (deadline, token, target, sequence), earliest first.
    deadlines: BinaryHeap<Reverse<(Instant, u64, IpAddr, u16)>>,
    next_seq: u16,
    next_token: u64,
    buf: Vec<u8>,
    /// Finished packets not yet handed to their probes (see `deliver`).
    done: Vec<(oneshot::Sender<PacketResult>, PacketResult)>,
}

/// Shortest pause of the engine when the budget is exhausted.
const PACING_TICK: Duration = Duration::from_millis(10);

/// Sends per engine turn before replies are read again, so a long queue
/// never starves the receive side (the socket buffer must not overflow).
const SENDS_PER_TURN: usize = 256;

impl Engine {
    fn new(shared: Arc<Shared>, v6: bool, queue: Queue) -> Self {
        let mut rng = rand::rng();
        Self {
            shared,
            v6,
            queue,
            due: VecDeque::new(),
            later: BinaryHeap::new(),
            order: 0,
            slot: None,
            pending: HashMap::with_capacity(1024),
            deadlines: BinaryHeap::with_capacity(1024),
            next_seq: rng.random(),
            next_token: rng.random(),
            buf: vec![0u8; RECV_BUF_LEN],
            done: Vec::with_capacity(1024),
        }
    }

    async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let Some(family) = shared.family(self.v6) else {
            return;
        };
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            while let Ok(request) = self.queue.try_recv() {
                self.enqueue(request, now);
            }
            self.promote(now);
            if self.deadlines.peek().is_some_and(|d| d.0.0 <= now) {
                // A reply may be waiting in the socket: read it before
                // declaring its request timed out.
                self.receive(family);
                self.expire(Instant::now());
            }
            let wake = self.send_due(family);
            let wake = [
                wake,
                self.later.peek().map(|l| l.planned),
                self.deadlines.peek().map(|d| d.0.0),
            ]
            .into_iter()
            .flatten()
            .min();
            self.deliver();
            if wake.is_some_and(|w| w <= Instant::now()) {
                self.receive(family);
                tokio::task::yield_now().await;
                continue;
            }
            sleep.as_mut().reset(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
                    .into(),
            );
            tokio::select! {
                biased;
                ready = family.sock.ready(Interest::READABLE | Interest::ERROR) => match ready {
                    Ok(ready) => {
                        if ready.is_error() {
                            // Clears the error readiness once the queue reads empty.
                            let _ = family
                                .sock
                                .try_io(Interest::ERROR, || self.drain_error_queue(family));
                        }
                        if ready.is_readable() {
                            self.receive(family);
                        }
                    }
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            ipv6 = self.v6,
                            "icmp socket failed, engine stops"
                        );
                        return;
                    }
                },
                request = self.queue.recv() => match request {
                    Some(request) => self.enqueue(request, Instant::now()),
                    None => return,
                },
                () = &mut sleep => {}
            }
        }
    }

    /// Hands finished packets to their probes, all at once: woken one by one
    /// between our syscalls, the caller's runtime would park and wake again
    /// for every reply. The stats are updated first, so a caller that sees
    /// its outcome sees it counted.
    fn deliver(&mut self) {
        if let Some(family) = self.shared.family(self.v6) {
            family
                .in_flight
                .store(self.pending.len(), Ordering::Relaxed);
        }
        for (tx, result) in self.done.drain(..) {
            let _ = tx.send(result);
        }
    }

    fn enqueue(&mut self, request: SendRequest, now: Instant) {
        if request.planned <= now {
            self.due.push_back(request);
        } else {
            self.order += 1;
            self.later.push(Later {
                planned: request.planned,
                order: self.order,
                request,
            });
        }
    }

    fn promote(&mut self, now: Instant) {
        while self.later.peek().is_some_and(|l| l.planned <= now) {
            if let Some(later) = self.later.pop() {
                self.due.push_back(later.request);
            }
        }
    }

    /// Sends what is due as far as the budget allows. Returns when to come
    /// back for the next pacing slot, if the budget made us stop.
    fn send_due(&mut self, family: &Family) -> Option<Instant> {
        let shared = Arc::clone(&self.shared);
        let fd = family.sock.as_raw_fd();
        let (mut sent, mut worst_lag, mut last) = (0u64, Duration::ZERO, None);
        let mut turn = 0;
        let mut wake = None;
        while turn < SENDS_PER_TURN {
            let Some(head) = self.due.front() else { break };
            if head.tx.is_closed() {
                // The probe was dropped: nobody waits for this packet.
                self.due.pop_front();
                continue;
            }
            let now = Instant::now();
            let slot = *self.slot.get_or_insert_with(|| shared.pacer.reserve(now));
            if slot.at > now {
                // Come back no sooner than PACING_TICK: the bucket's burst
                // allowance covers what accrues meanwhile, and waking for
                // every few packets would cost more than the packets.
                wake = Some(slot.at.max(now + PACING_TICK));
                break;
            }
            self.slot = None;
            let Some(request) = self.due.pop_front() else {
                break;
            };
            turn += 1;
            if !slot.wait.is_zero() {
                shared.counters.budget_waits.fetch_add(1, Ordering::Relaxed);
                shared
                    .counters
                    .budget_wait_ns
                    .fetch_add(nanos(slot.wait), Ordering::Relaxed);
                shared.metrics.pacing_wait.record(slot.wait.as_secs_f64());
            }
            let mut seq = self.next_seq;
            while self.pending.contains_key(&(request.target, seq)) {
                // 65,536 requests to one target inside one timeout: skip on.
                seq = seq.wrapping_add(1);
            }
            self.next_seq = seq.wrapping_add(1);
            let token = self.next_token;
            self.next_token = self.next_token.wrapping_add(1);
            let packet = echo_request(self.v6, shared.identifier, seq, shared.cookie, token);

            let sent_at = Instant::now();
            let lag = sent_at.saturating_duration_since(request.planned.max(slot.at));
            match send_to(fd, request.target, &packet) {
                Ok(()) => {
                    sent += 1;
                    worst_lag = worst_lag.max(lag);
                    last = Some(sent_at);
                    shared
                        .counters
                        .lag_ns
                        .fetch_add(nanos(lag), Ordering::Relaxed);
                    shared.metrics.scheduler_lag.record(lag.as_secs_f64());
                    self.deadlines.push(Reverse((
                        sent_at + request.timeout,
                        token,
                        request.target,
                        seq,
                    )));
                    self.pending.insert(
                        (request.target, seq),
                        Pending {
                            token,
                            sent_at,
                            tx: request.tx,
                        },
                    );
                }
                Err(Errno::EAGAIN | Errno::ENOBUFS) => {
                    // The socket (or the device queue) is full: keep the
                    // request and try again shortly, after reading replies.
                    self.due.push_front(request);
                    wake = Some(Instant::now() + Duration::from_millis(1));
                    break;
                }
                Err(e) => {
                    shared.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.send_errors.increment(1);
                    tracing::debug!(target_addr = %request.target, error = %e, "icmp send failed");
                    self.done
                        .push((request.tx, PacketResult::SendError(e.to_string())));
                }
            }
        }
        if turn >= SENDS_PER_TURN && !self.due.is_empty() {
            // More is due: go on right after reading replies.
            wake = Some(Instant::now());
        }
        if let Some(at) = last {
            let c = &shared.counters;
            c.sent.fetch_add(sent, Ordering::Relaxed);
            c.lag_max_ns.fetch_max(nanos(worst_lag), Ordering::Relaxed);
            shared.metrics.packets_sent.increment(sent);
            shared.window.record(at, sent, worst_lag);
        }
        wake
    }

    /// Times out requests whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((deadline, token, target, seq))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let key = (target, seq);
            if self.pending.get(&key).is_some_and(|p| p.token == token)
                && let Some(entry) = self.pending.remove(&key)
            {
                self.done.push((entry.tx, PacketResult::Timeout));
            }
        }
    }

    /// Reads every datagram waiting in the socket.
    fn receive(&mut self, family: &Family) {
        let fd = family.sock.as_raw_fd();
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let received = family.sock.try_io(Interest::READABLE, || {
                recvfrom::<SockaddrStorage>(fd, &mut buf).map_err(io::Error::from)
            });
            match received {
                Ok((n, from)) => {
                    let at = Instant::now();
                    let from = from.as_ref().and_then(storage_ip);
                    let packet = buf.get(..n).unwrap_or(&buf);
                    self.accept(family, packet, from, at);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A pending socket error (an ICMP error on a datagram
                    // socket) is reported once by recv; its detail waits on
                    // the error queue.
                    tracing::debug!(error = %e, "icmp recv error");
                    self.buf = buf;
                    let _ = self.drain_error_queue(family);
                    buf = std::mem::take(&mut self.buf);
                }
            }
        }
        self.buf = buf;
    }

    /// Matches one datagram against the waiting requests.
    fn accept(&mut self, family: &Family, packet: &[u8], from: Option<IpAddr>, at: Instant) {
        let layout = match (family.v6, family.kind) {
            (false, SocketKind::Raw) => Layout::Ipv4Raw,
            (false, SocketKind::Datagram) => Layout::Icmpv4,
            (true, _) => Layout::Icmpv6,
        };
        let shared = &*self.shared;
        match parse(packet, layout) {
            Ok(IcmpMessage::EchoReply {
                identifier,
                sequence,
                payload,
            }) => {
                // Ours only if identifier, source, sequence and the token in
                // the payload all match one waiting request.
                let token = (identifier == shared.identifier)
                    .then(|| payload_token(payload, shared.cookie))
                    .flatten();
                let entry = match (token, from) {
                    (Some(token), Some(from)) => {
                        let key = (from.to_canonical(), sequence);
                        if self.pending.get(&key).is_some_and(|p| p.token == token) {
                            self.pending.remove(&key)
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                let Some(entry) = entry else {
                    // Another engine's reply, a late one, or a forgery.
                    shared.counters.stray.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.stray.increment(1);
                    return;
                };
                let rtt = at.saturating_duration_since(entry.sent_at);
                // Counted before the probe learns of it, so a caller that
                // sees its outcome also sees it in the stats.
                shared.counters.received.fetch_add(1, Ordering::Relaxed);
                shared.metrics.replies.increment(1);
                shared.metrics.rtt.record(rtt.as_secs_f64());
                self.done.push((entry.tx, PacketResult::Reply(rtt)));
            }
            Ok(IcmpMessage::Error {
                original_destination: Some(target),
                identifier,
                sequence,
                ..
            }) if identifier == shared.identifier => self.unreachable(target, sequence),
            Ok(_) => {}
            Err(_) => {
                shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An ICMP error quoting one of our requests: it quotes too little to
    /// check the token, so (target, sequence) decides.
    fn unreachable(&mut self, target: IpAddr, sequence: u16) {
        if let Some(entry) = self.pending.remove(&(target.to_canonical(), sequence)) {
            self.shared
                .counters
                .unreachable
                .fetch_add(1, Ordering::Relaxed);
            self.done.push((entry.tx, PacketResult::Unreachable));
        }
    }

    /// Reads ICMP errors that datagram sockets queue for our requests: the
    /// quoted request gives the sequence, the message name the target. Ends
    /// with `WouldBlock` once the queue is empty.
    fn drain_error_queue(&mut self, family: &Family) -> io::Result<()> {
        let fd = family.sock.as_raw_fd();
        let layout = if family.v6 {
            Layout::Icmpv6
        } else {
            Layout::Icmpv4
        };
        let mut cmsg = nix::cmsg_space!(ExtendedErr);
        let mut buf = std::mem::take(&mut self.buf);
        let mut result = Ok(());
        let mut errors = Vec::new();
        // Bounded, so a flood of errors cannot starve the replies.
        for _ in 0..1024 {
            let mut iov = [io::IoSliceMut::new(&mut buf)];
            let (bytes, target, from_icmp) = match recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE,
            ) {
                Ok(msg) => {
                    let from_icmp = msg.cmsgs().is_ok_and(|mut cmsgs| {
                        cmsgs.any(|c| match c {
                            ControlMessageOwned::Ipv4RecvErr(e, _) => {
                                e.ee_origin == SO_EE_ORIGIN_ICMP
                            }
                            ControlMessageOwned::Ipv6RecvErr(e, _) => {
                                e.ee_origin == SO_EE_ORIGIN_ICMP6
                            }
                            _ => false,
                        })
                    });
                    (
                        msg.bytes,
                        msg.address.as_ref().and_then(storage_ip),
                        from_icmp,
                    )
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    result = Err(io::Error::from(e));
                    break;
                }
            };
            let (Some(target), true) = (target, from_icmp) else {
                continue;
            };
            // The queued payload is our own request, header and payload.
            let Some(quoted) = iov[0].get(..bytes.min(PACKET_LEN)) else {
                continue;
            };
            if let Ok(IcmpMessage::EchoRequest { sequence, .. }) = parse(quoted, layout) {
                errors.push((target, sequence));
            }
        }
        self.buf = buf;
        for (target, sequence) in errors {
            self.unreachable(target, sequence);
        }
        result
    }
}

fn send_to(fd: i32, target: IpAddr, packet: &[u8]) -> Result<(), Errno> {
    loop {
        let result = match target {
            IpAddr::V4(a) => sendto(
                fd,
                packet,
                &SockaddrIn::from(SocketAddrV4::new(a, 0)),
                MsgFlags::empty(),
            ),
            IpAddr::V6(a) => sendto(
                fd,
                packet,
                &SockaddrIn6::from(SocketAddrV6::new(a, 0, 0, 0)),
                MsgFlags::empty(),
            ),
        };
        match result {
            Err(Errno::EINTR) => continue,
            other => return other.map(|_| ()),
        }
    }
}

/// Room in the control buffer for one `sock_extended_err` (16 bytes) and
/// the offender's address that follows it (up to a `sockaddr_in6`).
type ExtendedErr = [u8; 48];

fn storage_ip(s: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

// ---------------------------------------------------------------------------
// Sockets

type Queue = mpsc::UnboundedReceiver<SendRequest>;
/// A family's socket and the receiving end of its send queue.
type Opened = (Family, Queue);
/// An engine to start: its family (`true` for IPv6) and send queue.
type EngineQueue = (bool, Queue);

fn open_socket(v6: bool, config: &PingerConfig, identifier: u16) -> Result<Opened, PingerError> {
    let (domain, protocol) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let mut datagram_error = "not tried".to_owned();
    if config.socket != SocketMode::Raw {
        match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(socket) => {
                // The kernel owns the identifier of a ping socket: it is the
                // bound "port", so bind to choose ours.
                let local: std::net::SocketAddr = if v6 {
                    SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, identifier, 0, 0).into()
                } else {
                    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, identifier).into()
                };
                if let Err(e) = socket.bind(&local.into()) {
                    if e.kind() == io::ErrorKind::AddrInUse {
                        return Err(PingerError::IdentifierInUse { identifier });
                    }
                    return Err(e.into());
                }
                // ICMP errors about our requests arrive on the error queue.
                let recverr = if v6 {
                    setsockopt(&socket, sockopt::Ipv6RecvErr, &true)
                } else {
                    setsockopt(&socket, sockopt::Ipv4RecvErr, &true)
                };
                recverr.map_err(io::Error::from)?;
                return finish_socket(socket, v6, SocketKind::Datagram, config);
            }
            Err(e) => datagram_error = e.to_string(),
        }
        if config.socket == SocketMode::Datagram {
            return Err(PingerError::NoSocket {
                datagram: datagram_error,
                raw: "not tried".to_owned(),
            });
        }
    }
    match Socket::new(domain, Type::RAW, Some(protocol)) {
        Ok(socket) => {
            socket.attach_filter(&reply_filter(v6))?;
            finish_socket(socket, v6, SocketKind::Raw, config)
        }
        Err(e) => Err(PingerError::NoSocket {
            datagram: datagram_error,
            raw: e.to_string(),
        }),
    }
}

fn finish_socket(
    socket: Socket,
    v6: bool,
    kind: SocketKind,
    config: &PingerConfig,
) -> Result<Opened, PingerError> {
    socket.set_nonblocking(true)?;
    // SO_RCVBUFFORCE passes rmem_max when privileged; otherwise SO_RCVBUF
    // gets what rmem_max allows.
    let size = config.receive_buffer.min(i32::MAX as usize);
    if setsockopt(&socket, sockopt::RcvBufForce, &size).is_err() {
        socket.set_recv_buffer_size(size)?;
    }
    let receive_buffer = socket.recv_buffer_size()?;
    if receive_buffer < config.receive_buffer {
        tracing::warn!(
            requested = config.receive_buffer,
            granted = receive_buffer,
            "icmp receive buffer smaller than requested, raise net.core.rmem_max"
        );
    }
    let (queue, requests) = mpsc::unbounded_channel();
    let family = Family {
        sock: UdpSocket::from_std(std::net::UdpSocket::from(socket))?,
        kind,
        v6,
        receive_buffer,
        queue,
        in_flight: AtomicUsize::new(0),
    };
    Ok((family, requests))
}

/// Kernel-side filter for raw sockets: only echo replies and ICMP errors
/// reach us. On loopback a raw socket would otherwise also receive every
/// echo request it sends (twice the wake-ups), and on a busy host all ICMP.
fn reply_filter(v6: bool) -> Vec<SockFilter> {
    const LD_B_ABS: u16 = 0x30;
    const LDX_B_MSH: u16 = 0xb1;
    const LD_B_IND: u16 = 0x50;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let (mut prog, types) = if v6 {
        // Raw ICMPv6 sockets see the packet from the ICMPv6 header on.
        (
            vec![SockFilter::new(LD_B_ABS, 0, 0, 0)],
            [
                ICMP6_ECHO_REPLY,
                ICMP6_DEST_UNREACHABLE,
                ICMP6_TIME_EXCEEDED,
            ],
        )
    } else {
        // Raw IPv4 sockets see the IP header: X = its length, A = ICMP type.
        (
            vec![
                SockFilter::new(LDX_B_MSH, 0, 0, 0),
                SockFilter::new(LD_B_IND, 0, 0, 0),
            ],
            [
                ICMP4_ECHO_REPLY,
                ICMP4_DEST_UNREACHABLE,
                ICMP4_TIME_EXCEEDED,
            ],
        )
    };
    let n = types.len() as u8;
    for (i, t) in types.iter().enumerate() {
        // Jump to "accept" (after the "drop") when the type matches.
        prog.push(SockFilter::new(JEQ_K, n - i as u8, 0, u32::from(*t)));
    }
    prog.push(SockFilter::new(RET_K, 0, 0, 0));
    prog.push(SockFilter::new(RET_K, 0, 0, u32::MAX));
    prog
}

// ---------------------------------------------------------------------------
// Parsing bytes from the network: every path returns an error, none panics.

/// Where an ICMP message starts in what the socket hands us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Raw IPv4 socket: an IPv4 header first.
    Ipv4Raw,
    /// Datagram IPv4 socket: the ICMP header first.
    Icmpv4,
    /// Raw or datagram ICMPv6 socket: the ICMPv6 header first.
    Icmpv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unreachable,
    TimeExceeded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpMessage<'a> {
    EchoReply {
        identifier: u16,
        sequence: u16,
        payload: &'a [u8],
    },
    EchoRequest {
        identifier: u16,
        sequence: u16,
    },
    /// An ICMP error quoting one of someone's echo requests.
    Error {
        kind: ErrorKind,
        original_destination: Option<IpAddr>,
        identifier: u16,
        sequence: u16,
    },
    Other {
        icmp_type: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet truncated: needed={needed} got={got}")]
    Truncated { needed: usize, got: usize },
    #[error("not an ipv4 header: version={version}")]
    NotIpv4 { version: u8 },
    #[error("bad ipv4 header length: ihl={ihl}")]
    BadHeaderLength { ihl: usize },
    #[error("not icmp: protocol={protocol}")]
    NotIcmp { protocol: u8 },
    #[error("bad icmp checksum")]
    BadChecksum,
    #[error("icmp error quotes something other than an echo request")]
    NotOurQuote,
}

fn need(packet: &[u8], needed: usize) -> Result<(), ParseError> {
    if packet.len() < needed {
        Err(ParseError::Truncated {
            needed,
            got: packet.len(),
        })
    } else {
        Ok(())
    }
}

fn be16(b: &[u8], at: usize) -> Result<u16, ParseError> {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(ParseError::Truncated {
            needed: at + 2,
            got: b.len(),
        }),
    }
}

/// Splits an IPv4 packet into (header fields, payload).
fn ipv4(packet: &[u8]) -> Result<(u8, Ipv4Addr, &[u8]), ParseError> {
    need(packet, 20)?;
    let version = packet[0] >> 4;
    if version != 4 {
        return Err(ParseError::NotIpv4 { version });
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(ParseError::BadHeaderLength { ihl });
    }
    need(packet, ihl)?;
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Ok((packet[9], dst, &packet[ihl..]))
}

/// Parses what an ICMP socket returned. Total: any input yields a value or
/// an error.
pub fn parse(packet: &[u8], layout: Layout) -> Result<IcmpMessage<'_>, ParseError> {
    let (v6, icmp) = match layout {
        Layout::Ipv4Raw => {
            let (protocol, _, icmp) = ipv4(packet)?;
            if protocol != IPPROTO_ICMP {
                return Err(ParseError::NotIcmp { protocol });
            }
            need(icmp, 8)?;
            // Raw sockets see packets before ICMP validates them.
            if checksum(icmp) != 0 {
                return Err(ParseError::BadChecksum);
            }
            (false, icmp)
        }
        Layout::Icmpv4 => (false, packet),
        Layout::Icmpv6 => (true, packet),
    };
    need(icmp, 8)?;
    let icmp_type = icmp[0];
    let identifier = be16(icmp, 4)?;
    let sequence = be16(icmp, 6)?;
    let (echo_reply, echo_request) = if v6 {
        (ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST)
    } else {
        (ICMP4_ECHO_REPLY, ICMP4_ECHO_REQUEST)
    };
    let error_kind = match (v6, icmp_type) {
        (false, ICMP4_DEST_UNREACHABLE) | (true, ICMP6_DEST_UNREACHABLE) => {
            Some(ErrorKind::Unreachable)
        }
        (false, ICMP4_TIME_EXCEEDED) | (true, ICMP6_TIME_EXCEEDED) => Some(ErrorKind::TimeExceeded),
        _ => None,
    };
    if icmp_type == echo_reply {
        return Ok(IcmpMessage::EchoReply {
            identifier,
            sequence,
            payload: &icmp[8..],
        });
    }
    if icmp_type == echo_request {
        return Ok(IcmpMessage::EchoRequest {
            identifier,
            sequence,
        });
    }
    let Some(kind) = error_kind else {
        return Ok(IcmpMessage::Other { icmp_type });
    };
    // An error quotes the offending packet's IP header and at least the
    // first 8 bytes of its ICMP header.
    let quoted = &icmp[8..];
    let (destination, inner) = if v6 {
        need(quoted, 40)?;
        if quoted[0] >> 4 != 6 || quoted[6] != IPPROTO_ICMPV6 {
            return Err(ParseError::NotOurQuote);
        }
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&quoted[24..40]);
        (IpAddr::V6(Ipv6Addr::from(dst)), &quoted[40..])
    } else {
        let (protocol, dst, inner) = ipv4(quoted)?;
        if protocol != IPPROTO_ICMP {
            return Err(ParseError::NotOurQuote);
        }
        (IpAddr::V4(dst), inner)
    };
    need(inner, 8)?;
    if inner[0] != echo_request {
        return Err(ParseError::NotOurQuote);
    }
    Ok(IcmpMessage::Error {
        kind,
        original_destination: Some(destination),
        identifier: be16(inner, 4)?,
        sequence: be16(inner, 6)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_ICMP, 0, 0];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(icmp);
        p
    }

    fn echo_reply_v4(id: u16, seq: u16) -> Vec<u8> {
        let mut icmp = echo_request(false, id, seq, 7, 9).to_vec();
        icmp[0] = ICMP4_ECHO_REPLY;
        icmp[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        icmp
    }

    #[test]
    fn parses_raw_echo_reply() {
        let p = ipv4_packet(
            Ipv4Addr::new(127, 0, 0, 2),
            Ipv4Addr::LOCALHOST,
            &echo_reply_v4(0x1234, 5),
        );
        match parse(&p, Layout::Ipv4Raw).unwrap() {
            IcmpMessage::EchoReply {
                identifier,
                sequence,
                payload,
            } => {
                assert_eq!((identifier, sequence), (0x1234, 5));
                assert_eq!(payload_token(payload, 7), Some(9));
                assert_eq!(payload_token(payload, 8), None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_checksum() {
        let mut icmp = echo_reply_v4(1, 1);
        icmp[10] ^= 0xff;
        let p = ipv4_packet(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &icmp);
        assert_eq!(parse(&p, Layout::Ipv4Raw), Err(ParseError::BadChecksum));
    }

    #[test]
    fn parses_unreachable_quoting_our_request() {
        let target = Ipv4Addr::new(127, 9, 9, 9);
        let inner = ipv4_packet(
            Ipv4Addr::LOCALHOST,
            target,
            &echo_request(false, 42, 77, 1, 2),
        );
        let mut icmp = vec![ICMP4_DEST_UNREACHABLE, 1, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner);
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let p = ipv4_packet(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &icmp);
        assert_eq!(
            parse(&p, Layout::Ipv4Raw).unwrap(),
            IcmpMessage::Error {
                kind: ErrorKind::Unreachable,
                original_destination: Some(IpAddr::V4(target)),
                identifier: 42,
                sequence: 77,
            }
        );
    }

    #[test]
    fn parses_v6_echo_reply() {
        let mut icmp = echo_request(true, 3, 4, 5, 6);
        icmp[0] = ICMP6_ECHO_REPLY;
        assert!(matches!(
            parse(&icmp, Layout::Icmpv6).unwrap(),
            IcmpMessage::EchoReply {
                identifier: 3,
                sequence: 4,
                ..
            }
        ));
    }

    #[test]
    fn garbage_and_truncated_packets_never_panic() {
        let mut rng = rand::rng();
        let layouts = [Layout::Ipv4Raw, Layout::Icmpv4, Layout::Icmpv6];
        // Every prefix of valid packets of each kind.
        let target = Ipv4Addr::new(127, 9, 9, 9);
        let inner = ipv4_packet(
            Ipv4Addr::LOCALHOST,
            target,
            &echo_request(false, 42, 77, 1, 2),
        );
        let mut unreachable = vec![ICMP4_DEST_UNREACHABLE, 1, 0, 0, 0, 0, 0, 0];
        unreachable.extend_from_slice(&inner);
        let mut v6_unreachable = vec![ICMP6_DEST_UNREACHABLE, 0, 0, 0, 0, 0, 0, 0];
        v6_unreachable.extend_from_slice(&[0x60, 0, 0, 0, 0, 24, IPPROTO_ICMPV6, 64]);
        v6_unreachable.extend_from_slice(&[0u8; 32]);
        v6_unreachable.extend_from_slice(&echo_request(true, 1, 2, 3, 4));
        let samples = [
            ipv4_packet(
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST,
                &echo_reply_v4(1, 2),
            ),
            ipv4_packet(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &unreachable),
            unreachable.clone(),
            v6_unreachable,
        ];
        for sample in &samples {
            for len in 0..=sample.len() {
                for layout in layouts {
                    let _ = parse(&sample[..len], layout);
                }
            }
        }
        // Random bytes, with the first byte often a plausible header.
        for i in 0..20_000 {
            let len = rng.random_range(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(first) = bytes.first_mut() {
                *first = match i % 3 {
                    0 => 0x40 | (*first & 0x0f),
                    1 => ICMP4_DEST_UNREACHABLE,
                    _ => *first,
                };
            }
            for layout in layouts {
                let _ = parse(&bytes, layout);
            }
        }
        assert!(matches!(
            parse(&[0x45; 3], Layout::Ipv4Raw),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&[0x4f; 40], Layout::Ipv4Raw),
            Err(ParseError::NotIcmp { .. } | ParseError::Truncated { .. })
        ));
        assert!(parse(&[], Layout::Icmpv6).is_err());
    }

    #[test]
    fn no_socket_error_says_how_to_fix_it() {
        let e = PingerError::NoSocket {
            datagram: "Permission denied (os error 13)".to_owned(),
            raw: "Operation not permitted (os error 1)".to_owned(),
        }
        .to_string();
        assert!(
            e.contains("CAP_NET_RAW") && e.contains("setcap cap_net_raw+ep"),
            "{e}"
        );
        assert!(e.contains("net.ipv4.ping_group_range"), "{e}");
    }

    #[test]
    fn probe_spec_defaults_match_the_design() {
        let spec = ProbeSpec::default();
        assert_eq!(spec.count, 3);
        assert_eq!(spec.interval, Duration::from_millis(200));
        assert_eq!(spec.timeout, Duration::from_secs(1));
        assert_eq!(spec.retries, 2);
    }

    #[test]
    fn checksum_of_checksummed_packet_is_zero() {
        let p = echo_request(false, 0xbeef, 0x0102, 3, 4);
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn outcome_statistics() {
        let outcome = ProbeOutcome {
            sent: 4,
            received: 2,
            rtts: vec![Duration::from_millis(10), Duration::from_millis(30)],
            retries_sent: 0,
            failure: None,
        };
        assert!((outcome.loss_percent() - 50.0).abs() < 1e-9);
        assert_eq!(outcome.rtt_min(), Some(Duration::from_millis(10)));
        assert_eq!(outcome.rtt_max(), Some(Duration::from_millis(30)));
        assert_eq!(outcome.rtt_avg(), Some(Duration::from_millis(20)));
        assert_eq!(outcome.rtt_stddev(), Some(Duration::from_millis(10)));
        assert_eq!(ProbeOutcome::default().rtt_avg(), None);
    }
}
