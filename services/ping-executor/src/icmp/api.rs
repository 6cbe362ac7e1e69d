//! The engine's public API types: how it is configured (`PingerConfig`,
//! `SocketMode`), what a probe asks (`ProbeSpec`) and what it yields
//! (`ProbeOutcome`, `ProbeFailure`), its health (`PingerStats`) and errors.

use std::io;
use std::time::Duration;

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
    /// The kernel refused every request because the path to the device is
    /// gone (no route, an unreachable or blackhole route, a filter on output,
    /// a lost source address): the errno, e.g. "sendto: EHOSTUNREACH (No
    /// route to host)". Each refused request counts as sent and lost.
    NoRoute(String),
    /// This host could not send for a reason of its own (the fault is here,
    /// not the device's): inconclusive.
    SendError(String),
    /// Not a unicast address, or no socket for its family.
    InvalidAddress,
}

impl ProbeFailure {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::NoRoute(_) => "no_route",
            Self::SendError(_) => "send_error",
            Self::InvalidAddress => "invalid_address",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeOutcome {
    /// Requests sent, retries included. A request the kernel refused because
    /// the path is gone counts as sent and lost (fping's count), so such a
    /// probe reports 100 % loss; one not sent for local trouble does not count.
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
    /// ICMP errors ignored: another identifier, no request waiting under
    /// the quoted destination and sequence, or a quoted payload not ours.
    pub errors_unmatched: u64,
    /// Packets that could not be parsed.
    pub malformed: u64,
    /// Sends that failed for this host's own trouble (inconclusive).
    pub send_errors: u64,
    /// Sends the kernel refused because the path is gone (counted as lost).
    pub no_route: u64,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
