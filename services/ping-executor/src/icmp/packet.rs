//! Packet building: the ICMP constants, the echo request we send (our
//! identifier, sequence, and a cookie and token in the payload), the payload
//! check of a reply, and the Internet checksum.

/// Payload after the 8-byte ICMP header: the engine's cookie and the send's
/// token, so a reply must echo both to count (guessing id and seq is not
/// enough to spoof a result).
pub(super) const PAYLOAD_LEN: usize = 16;
pub(super) const PACKET_LEN: usize = 8 + PAYLOAD_LEN;

pub(super) const ICMP4_ECHO_REPLY: u8 = 0;
pub(super) const ICMP4_DEST_UNREACHABLE: u8 = 3;
pub(super) const ICMP4_ECHO_REQUEST: u8 = 8;
pub(super) const ICMP4_TIME_EXCEEDED: u8 = 11;
pub(super) const ICMP6_DEST_UNREACHABLE: u8 = 1;
pub(super) const ICMP6_TIME_EXCEEDED: u8 = 3;
pub(super) const ICMP6_ECHO_REQUEST: u8 = 128;
pub(super) const ICMP6_ECHO_REPLY: u8 = 129;
pub(super) const IPPROTO_ICMP: u8 = 1;
pub(super) const IPPROTO_ICMPV6: u8 = 58;

pub(super) fn payload_token(payload: &[u8], cookie: u64) -> Option<u64> {
    let cookie_bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    let token_bytes: [u8; 8] = payload.get(8..16)?.try_into().ok()?;
    (u64::from_be_bytes(cookie_bytes) == cookie).then(|| u64::from_be_bytes(token_bytes))
}

pub(super) fn echo_request(
    v6: bool,
    identifier: u16,
    seq: u16,
    cookie: u64,
    token: u64,
) -> [u8; PACKET_LEN] {
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
pub(super) fn checksum(data: &[u8]) -> u16 {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn checksum_of_checksummed_packet_is_zero() {
        let p = echo_request(false, 0xbeef, 0x0102, 3, 4);
        assert_eq!(checksum(&p), 0);
    }
}
