//! The reply parser: what an ICMP socket hands us, from a raw IPv4 socket
//! (IP header first) or a datagram/ICMPv6 one, turned into an `IcmpMessage`.
//! Every path returns an error on bad input, none panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::packet::{
    ICMP4_DEST_UNREACHABLE, ICMP4_ECHO_REPLY, ICMP4_ECHO_REQUEST, ICMP4_TIME_EXCEEDED,
    ICMP6_DEST_UNREACHABLE, ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, ICMP6_TIME_EXCEEDED,
    IPPROTO_ICMP, IPPROTO_ICMPV6, checksum,
};

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
        payload: &'a [u8],
    },
    /// An ICMP error quoting one of someone's echo requests.
    Error {
        kind: ErrorKind,
        original_destination: Option<IpAddr>,
        identifier: u16,
        sequence: u16,
        /// The quoted request's payload, as much as the error quotes.
        payload: &'a [u8],
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
            payload: &icmp[8..],
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
        payload: &inner[8..],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rand::Rng;

    use super::*;
    use crate::icmp::packet::{echo_request, payload_token};

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
                payload: &echo_request(false, 42, 77, 1, 2)[8..],
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
}
