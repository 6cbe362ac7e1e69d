//! Sockets: opening a datagram (unprivileged) or raw ICMP socket per family
//! with our identifier and receive buffer, the kernel BPF filter for raw
//! sockets, and the send and address helpers on the raw fd.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::AtomicUsize;

use nix::errno::Errno;
use nix::sys::socket::{
    MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage, sendto, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::engine::{Family, SendRequest};
use super::packet::{
    ICMP4_DEST_UNREACHABLE, ICMP4_ECHO_REPLY, ICMP4_TIME_EXCEEDED, ICMP6_DEST_UNREACHABLE,
    ICMP6_ECHO_REPLY, ICMP6_TIME_EXCEEDED,
};
use super::{PingerConfig, PingerError, SocketKind, SocketMode};

pub(super) type Queue = mpsc::UnboundedReceiver<SendRequest>;
/// A family's socket and the receiving end of its send queue.
pub(super) type Opened = (Family, Queue);
/// An engine to start: its family (`true` for IPv6) and send queue.
pub(super) type EngineQueue = (bool, Queue);

pub(super) fn open_socket(
    v6: bool,
    config: &PingerConfig,
    identifier: u16,
) -> Result<Opened, PingerError> {
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

pub(super) fn finish_socket(
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
pub(super) fn reply_filter(v6: bool) -> Vec<SockFilter> {
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

/// What a `sendto` the kernel refused means for the packet and its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Interrupted by a signal before anything was sent: send again at once.
    Interrupted,
    /// Our socket or the device queue is full: keep the request and send it
    /// again shortly (never the device's fault).
    Full,
    /// The path to the device is gone: no route (`EHOSTUNREACH`,
    /// `ENETUNREACH`), an unreachable, blackhole or prohibit route or rule
    /// (`EINVAL`, `EACCES`), a local filter on output (`EPERM`), or a source
    /// address that disappeared (`EADDRNOTAVAIL`). The packet is sent and
    /// lost, as fping counts it: evidence against the device's reachability.
    NoRoute,
    /// Anything else is this host's own trouble: inconclusive for the device.
    Local,
}

/// Sorts a `sendto` errno into what the engine does with the packet.
pub(super) fn refusal(errno: Errno) -> Refusal {
    match errno {
        Errno::EINTR => Refusal::Interrupted,
        Errno::EAGAIN | Errno::ENOBUFS => Refusal::Full,
        Errno::EHOSTUNREACH
        | Errno::ENETUNREACH
        | Errno::EINVAL
        | Errno::EPERM
        | Errno::EACCES
        | Errno::EADDRNOTAVAIL => Refusal::NoRoute,
        _ => Refusal::Local,
    }
}

/// How a refused send reads in a probe's `error_detail`, e.g.
/// "sendto: EHOSTUNREACH (No route to host)".
pub(super) fn refusal_detail(errno: Errno) -> String {
    format!("sendto: {errno:?} ({})", errno.desc())
}

/// Sends one packet; a send interrupted by a signal is sent again.
pub(super) fn send_to(fd: i32, target: IpAddr, packet: &[u8]) -> Result<(), Errno> {
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
            Err(e) if refusal(e) == Refusal::Interrupted => continue,
            other => return other.map(|_| ()),
        }
    }
}

/// Room in the control buffer for one `sock_extended_err` (16 bytes) and
/// the offender's address that follows it (up to a `sockaddr_in6`).
pub(super) type ExtendedErr = [u8; 48];

pub(super) fn storage_ip(s: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_errors_are_no_route_and_local_trouble_is_not() {
        for errno in [
            Errno::EHOSTUNREACH,
            Errno::ENETUNREACH,
            Errno::EINVAL,
            Errno::EPERM,
            Errno::EACCES,
            Errno::EADDRNOTAVAIL,
        ] {
            assert_eq!(refusal(errno), Refusal::NoRoute, "{errno:?}");
        }
        assert_eq!(refusal(Errno::EINTR), Refusal::Interrupted);
        assert_eq!(refusal(Errno::EAGAIN), Refusal::Full);
        assert_eq!(refusal(Errno::ENOBUFS), Refusal::Full);
        for errno in [Errno::EBADF, Errno::EMSGSIZE, Errno::ENOMEM, Errno::EFAULT] {
            assert_eq!(refusal(errno), Refusal::Local, "{errno:?}");
        }
        assert_eq!(
            refusal_detail(Errno::EHOSTUNREACH),
            "sendto: EHOSTUNREACH (No route to host)"
        );
    }
}
