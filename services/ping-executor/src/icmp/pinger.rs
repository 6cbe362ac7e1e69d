//! The `Pinger` handle: opens the sockets and starts the engine thread, and
//! runs one probe (its packets, the retries when nothing came back, and the
//! verdict) on top of the engines.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;
use tokio::sync::oneshot;

use super::engine::{Engine, Shared};
use super::socket::{EngineQueue, Opened, open_socket};
use super::stats::Tally;
use super::{
    PingerConfig, PingerError, PingerStats, ProbeFailure, ProbeOutcome, ProbeSpec, SocketKind,
};

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
        let opened = {
            // The sockets register with the engine's own I/O driver.
            let _enter = runtime.enter();
            Self::open(&config)
        };
        let (shared, queues) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                // Dropping a runtime blocks, which panics when `new` runs
                // inside another runtime (every caller does): let it go in
                // the background instead, so the error is what surfaces.
                runtime.shutdown_background();
                return Err(error);
            }
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
        let failure = tally.verdict();
        let counter = match &failure {
            None => &shared.metrics.probe_ok,
            Some(ProbeFailure::Timeout) => &shared.metrics.probe_timeout,
            Some(ProbeFailure::Unreachable) => &shared.metrics.probe_unreachable,
            Some(ProbeFailure::NoRoute(_)) => &shared.metrics.probe_no_route,
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
            errors_unmatched: load(&c.errors_unmatched),
            malformed: load(&c.malformed),
            send_errors: load(&c.send_errors),
            no_route: load(&c.no_route),
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
