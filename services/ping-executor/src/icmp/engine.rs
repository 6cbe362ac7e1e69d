//! The engine loop: one task per address family owns its socket, the send
//! queue, the requests waiting for a reply and their deadlines; it sends
//! when pacing allows, matches replies and ICMP errors, and times out the rest.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvfrom, recvmsg};
use rand::Rng;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::packet::{PACKET_LEN, echo_request, payload_token};
use super::parse::{IcmpMessage, Layout, parse};
use super::quote::{Quote, check};
use super::socket::{ExtendedErr, Queue, Refusal, refusal, refusal_detail, send_to, storage_ip};
use super::stats::{Counters, Metrics, RecentWindow, nanos};
use super::{PingerConfig, SocketKind};
use crate::pacing::{Pacer, Slot};

/// Large enough for an ICMP error quoting a full-size original packet.
const RECV_BUF_LEN: usize = 2048;
/// `sock_extended_err.ee_origin` values (linux/errqueue.h).
const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

// Each address family has one engine task that owns its socket's send and
// receive sides, the table of requests waiting for a reply, their deadlines
// and the send queue: like fping's single loop, so the hot path takes no
// lock, sends never contend for the socket lock, and the only timer is the
// task's own. Probes talk to it through a channel and a oneshot per packet.

pub(super) struct Family {
    /// The ICMP socket, registered with Tokio through `UdpSocket`: its
    /// readiness API is all we need, it is safe (`AsyncFd::new` is deprecated
    /// and `AsyncFd::register` is `unsafe`), and sends and receives go through
    /// nix on the raw fd, so nothing UDP-specific is ever called.
    pub(super) sock: UdpSocket,
    pub(super) kind: SocketKind,
    pub(super) v6: bool,
    pub(super) receive_buffer: usize,
    pub(super) queue: mpsc::UnboundedSender<SendRequest>,
    /// Requests waiting for a reply (published by the engine task).
    pub(super) in_flight: AtomicUsize,
}

impl Family {
    /// Queues one echo request; the receiver yields what became of it.
    pub(super) fn submit(
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

pub(super) struct SendRequest {
    pub(super) target: IpAddr,
    /// Not before this instant (`interval` spacing within a probe).
    pub(super) planned: Instant,
    pub(super) timeout: Duration,
    pub(super) tx: oneshot::Sender<PacketResult>,
}

/// A request planned for later, ordered by its planned time (then by
/// arrival, so equal times keep their order).
pub(super) struct Later {
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

pub(super) struct Pending {
    pub(super) token: u64,
    pub(super) sent_at: Instant,
    pub(super) tx: oneshot::Sender<PacketResult>,
    /// Set when the kernel refused the send for a path error (its detail):
    /// the request waits out its timeout here all the same, then counts as
    /// lost with that detail. Its token never went out, so no reply matches.
    pub(super) refused: Option<String>,
}

#[derive(Debug)]
pub(super) enum PacketResult {
    Reply(Duration),
    Unreachable,
    Timeout,
    /// Refused by the kernel because the path is gone (the errno): sent and
    /// lost, reported when its timeout has passed.
    NoRoute(String),
    /// Not sent for a reason of this host's own (inconclusive).
    SendError(String),
}

pub(super) struct Shared {
    pub(super) identifier: u16,
    pub(super) packets_per_second: u32,
    pub(super) window: RecentWindow,
    pub(super) cookie: u64,
    pub(super) v4: Option<Family>,
    pub(super) v6: Option<Family>,
    pub(super) pacer: Pacer,
    pub(super) counters: Counters,
    pub(super) metrics: Metrics,
}

impl Shared {
    pub(super) fn new(
        config: &PingerConfig,
        identifier: u16,
        v4: Option<Family>,
        v6: Option<Family>,
    ) -> Self {
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

    pub(super) fn family(&self, v6: bool) -> Option<&Family> {
        if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }

    pub(super) fn receive_buffer(&self) -> usize {
        self.v4
            .as_ref()
            .or(self.v6.as_ref())
            .map_or(0, |f| f.receive_buffer)
    }
}

/// The engine task of one family. Runs until the `Pinger` is dropped.
pub(super) struct Engine {
    pub(super) shared: Arc<Shared>,
    pub(super) v6: bool,
    pub(super) queue: mpsc::UnboundedReceiver<SendRequest>,
    /// Requests due now, in arrival order.
    pub(super) due: VecDeque<SendRequest>,
    /// Requests planned for later.
    pub(super) later: BinaryHeap<Later>,
    pub(super) order: u64,
    /// The pacing slot reserved for the head of `due`, if it had to wait.
    pub(super) slot: Option<Slot>,
    /// Requests waiting for a reply, by (target, sequence). Keying on the
    /// target too lets sequences wrap under load without mixing targets.
    pub(super) pending: HashMap<(IpAddr, u16), Pending>,
    /// (deadline, token, target, sequence), earliest first.
    pub(super) deadlines: BinaryHeap<Reverse<(Instant, u64, IpAddr, u16)>>,
    pub(super) next_seq: u16,
    pub(super) next_token: u64,
    pub(super) buf: Vec<u8>,
    /// Finished packets not yet handed to their probes (see `deliver`).
    pub(super) done: Vec<(oneshot::Sender<PacketResult>, PacketResult)>,
}

/// Shortest pause of the engine when the budget is exhausted.
pub(super) const PACING_TICK: Duration = Duration::from_millis(10);

/// Sends per engine turn before replies are read again, so a long queue
/// never starves the receive side (the socket buffer must not overflow).
pub(super) const SENDS_PER_TURN: usize = 256;

impl Engine {
    pub(super) fn new(shared: Arc<Shared>, v6: bool, queue: Queue) -> Self {
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

    pub(super) async fn run(mut self) {
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
                            refused: None,
                        },
                    );
                }
                Err(e) => match refusal(e) {
                    Refusal::Full | Refusal::Interrupted => {
                        // The socket (or the device queue) is full: keep the
                        // request and try again shortly, after reading replies.
                        self.due.push_front(request);
                        wake = Some(Instant::now() + Duration::from_millis(1));
                        break;
                    }
                    Refusal::NoRoute => {
                        shared.counters.no_route.fetch_add(1, Ordering::Relaxed);
                        shared.metrics.no_route.increment(1);
                        tracing::debug!(target_addr = %request.target, error = %e, "icmp send refused: no path");
                        // Sent and lost, as fping counts it. The probe learns
                        // of it when the reply would have been due, so its
                        // retries go out when they would after a timeout and
                        // a route that comes back within the probe is seen.
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
                                refused: Some(refusal_detail(e)),
                            },
                        );
                    }
                    Refusal::Local => {
                        shared.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                        shared.metrics.send_errors.increment(1);
                        tracing::debug!(target_addr = %request.target, error = %e, "icmp send failed");
                        self.done
                            .push((request.tx, PacketResult::SendError(refusal_detail(e))));
                    }
                },
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
                let result = match entry.refused {
                    Some(detail) => PacketResult::NoRoute(detail),
                    None => PacketResult::Timeout,
                };
                self.done.push((entry.tx, result));
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
                original_destination: Some(destination),
                identifier,
                sequence,
                payload,
                ..
            }) => self.icmp_error(&Quote {
                destination,
                identifier,
                sequence,
                payload,
            }),
            Ok(_) => {}
            Err(_) => {
                shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An ICMP error quoting an echo request: it fails the probe it is about
    /// only if it names that probe's identifier, destination and sequence,
    /// and as much of its payload as it quotes (`quote.rs`). Others are
    /// counted by reason and dropped.
    fn icmp_error(&mut self, quote: &Quote<'_>) {
        let shared = &*self.shared;
        let key = (quote.destination.to_canonical(), quote.sequence);
        // A refused request never left: no error can be about it.
        let waiting = self
            .pending
            .get(&key)
            .filter(|p| p.refused.is_none())
            .map(|p| p.token);
        match check(quote, shared.identifier, shared.cookie, waiting) {
            Ok(()) => {
                if let Some(entry) = self.pending.remove(&key) {
                    shared.counters.unreachable.fetch_add(1, Ordering::Relaxed);
                    self.done.push((entry.tx, PacketResult::Unreachable));
                }
            }
            Err(unmatched) => {
                shared
                    .counters
                    .errors_unmatched
                    .fetch_add(1, Ordering::Relaxed);
                shared.metrics.errors_unmatched(unmatched).increment(1);
                tracing::trace!(
                    destination = %quote.destination,
                    identifier = quote.identifier,
                    sequence = quote.sequence,
                    reason = unmatched.reason(),
                    "icmp error matches no waiting request"
                );
            }
        }
    }

    /// Reads ICMP errors that datagram sockets queue for our requests. The
    /// kernel queues the quoted ICMP part (identifier, sequence, payload as
    /// far as quoted) and names the quoted IP header's destination as the
    /// message's address, so the same match as on raw sockets applies; it
    /// chose this socket by the quoted identifier already. Ends with
    /// `WouldBlock` once the queue is empty.
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
            // The queued bytes are the quoted request: its ICMP header and
            // as much of its payload as the error quoted.
            let Some(quoted) = iov[0].get(..bytes.min(PACKET_LEN)) else {
                continue;
            };
            // Matched once the buffer is back in place (`icmp_error` needs
            // `self`): errors are rare, a copy each costs nothing.
            errors.push((target, quoted.to_vec()));
        }
        self.buf = buf;
        for (destination, quoted) in errors {
            if let Ok(IcmpMessage::EchoRequest {
                identifier,
                sequence,
                payload,
            }) = parse(&quoted, layout)
            {
                self.icmp_error(&Quote {
                    destination,
                    identifier,
                    sequence,
                    payload,
                });
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::icmp::packet::{ICMP4_DEST_UNREACHABLE, IPPROTO_ICMP, checksum};

    const IDENTIFIER: u16 = 0x4242;
    const TARGET: Ipv4Addr = Ipv4Addr::new(127, 9, 9, 9);

    /// An engine whose raw IPv4 family has a UDP socket standing in for the
    /// ICMP one: `accept` reads only its kind and family.
    async fn engine() -> (Engine, Family) {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let family = Family {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            kind: SocketKind::Raw,
            v6: false,
            receive_buffer: 0,
            queue: queue_tx,
            in_flight: AtomicUsize::new(0),
        };
        let shared = Shared::new(&PingerConfig::default(), IDENTIFIER, None, None);
        (Engine::new(Arc::new(shared), false, queue_rx), family)
    }

    /// Registers a request as sent to `target` with `sequence`; the
    /// receiver yields its result.
    fn waiting(engine: &mut Engine, sequence: u16, token: u64) -> oneshot::Receiver<PacketResult> {
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            token,
            sent_at: Instant::now(),
            tx,
            refused: None,
        };
        engine
            .pending
            .insert((IpAddr::V4(TARGET), sequence), pending);
        rx
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_ICMP, 0, 0];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(icmp);
        p
    }

    /// A router's destination unreachable, as a raw socket reads it, quoting
    /// `request` sent to `destination`.
    fn unreachable(destination: Ipv4Addr, request: &[u8]) -> Vec<u8> {
        let mut icmp = vec![ICMP4_DEST_UNREACHABLE, 1, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&ipv4(Ipv4Addr::LOCALHOST, destination, request));
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        ipv4(Ipv4Addr::new(127, 0, 0, 254), Ipv4Addr::LOCALHOST, &icmp)
    }

    #[tokio::test]
    async fn error_quoting_our_request_fails_its_probe() {
        let (mut engine, family) = engine().await;
        let mut rx = waiting(&mut engine, 77, 9);
        let request = echo_request(false, IDENTIFIER, 77, engine.shared.cookie, 9);
        engine.accept(
            &family,
            &unreachable(TARGET, &request),
            None,
            Instant::now(),
        );
        engine.deliver();
        assert!(matches!(rx.try_recv(), Ok(PacketResult::Unreachable)));
        assert!(engine.pending.is_empty());
        let counters = &engine.shared.counters;
        assert_eq!(counters.unreachable.load(Ordering::Relaxed), 1);
        assert_eq!(counters.errors_unmatched.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn error_with_our_id_and_sequence_but_another_destination_is_ignored() {
        let (mut engine, family) = engine().await;
        let mut rx = waiting(&mut engine, 77, 9);
        let cookie = engine.shared.cookie;
        let request = echo_request(false, IDENTIFIER, 77, cookie, 9);
        let elsewhere = Ipv4Addr::new(127, 9, 9, 10);
        // Another destination; another identifier; another send's token.
        for packet in [
            unreachable(elsewhere, &request),
            unreachable(TARGET, &echo_request(false, IDENTIFIER + 1, 77, cookie, 9)),
            unreachable(TARGET, &echo_request(false, IDENTIFIER, 77, cookie, 8)),
        ] {
            engine.accept(&family, &packet, None, Instant::now());
        }
        engine.deliver();
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!(engine.pending.len(), 1);
        let counters = &engine.shared.counters;
        assert_eq!(counters.unreachable.load(Ordering::Relaxed), 0);
        assert_eq!(counters.errors_unmatched.load(Ordering::Relaxed), 3);
    }
}
