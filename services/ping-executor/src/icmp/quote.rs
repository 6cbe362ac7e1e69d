//! Matching an ICMP error (destination unreachable, time exceeded) to the
//! request it quotes, as tightly as the quote allows: our identifier, a
//! request waiting under the quoted destination and sequence, and as much of
//! that request's payload (cookie, then token) as the error carries.

use std::net::IpAddr;

/// What an ICMP error tells of the request it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote<'a> {
    /// The destination of the quoted request: from the quoted IP header (raw
    /// sockets), or the address the kernel names for a datagram socket's
    /// queued error, which it reads from that same quoted header.
    pub destination: IpAddr,
    pub identifier: u16,
    pub sequence: u16,
    /// The quoted request's payload, as much as was quoted: RFC 792 asks
    /// routers for none of it, RFC 1812 routers and Linux quote it all.
    pub payload: &'a [u8],
}

/// Why an ICMP error matched no waiting request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// It quotes another identifier: another process's request.
    Identifier,
    /// No request to the quoted destination with the quoted sequence is
    /// waiting (a wrong destination, a late error, or a forgery).
    NoRequest,
    /// The quoted payload is not the waiting request's: another cookie (not
    /// this engine's) or another token (an earlier send).
    Payload,
}

impl Unmatched {
    /// In declaration order: `unmatched as usize` indexes it.
    pub const ALL: [Unmatched; 3] = [
        Unmatched::Identifier,
        Unmatched::NoRequest,
        Unmatched::Payload,
    ];

    /// The metric's `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Unmatched::Identifier => "identifier",
            Unmatched::NoRequest => "no_request",
            Unmatched::Payload => "payload",
        }
    }
}

/// Whether `quote` is about the request waiting under its (destination,
/// sequence), whose token is `waiting` (`None`: nothing waits there, or what
/// waits never went out). `identifier` and `cookie` are the engine's.
pub fn check(
    quote: &Quote<'_>,
    identifier: u16,
    cookie: u64,
    waiting: Option<u64>,
) -> Result<(), Unmatched> {
    if quote.identifier != identifier {
        return Err(Unmatched::Identifier);
    }
    let Some(token) = waiting else {
        return Err(Unmatched::NoRequest);
    };
    // The payload is the cookie then the token (packet.rs): each part the
    // error quotes must be ours; a part cut off by the quote is not checked.
    let cookie_quoted = quote.payload.get(..8);
    let token_quoted = quote.payload.get(8..16);
    if cookie_quoted.is_some_and(|c| c != cookie.to_be_bytes())
        || token_quoted.is_some_and(|t| t != token.to_be_bytes())
    {
        return Err(Unmatched::Payload);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::icmp::packet::echo_request;

    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 9, 9, 9));

    #[test]
    fn identifier_token_and_cookie_decide() {
        let request = echo_request(false, 42, 77, 5, 6);
        let quote = Quote {
            destination: TARGET,
            identifier: 42,
            sequence: 77,
            payload: &request[8..],
        };
        assert_eq!(check(&quote, 42, 5, Some(6)), Ok(()));
        assert_eq!(check(&quote, 43, 5, Some(6)), Err(Unmatched::Identifier));
        assert_eq!(check(&quote, 42, 5, None), Err(Unmatched::NoRequest));
        assert_eq!(check(&quote, 42, 4, Some(6)), Err(Unmatched::Payload));
        assert_eq!(check(&quote, 42, 5, Some(7)), Err(Unmatched::Payload));
        // Only the cookie quoted: the token cannot be checked.
        let short = Quote {
            payload: &request[8..16],
            ..quote
        };
        assert_eq!(check(&short, 42, 5, Some(7)), Ok(()));
        assert_eq!(check(&short, 42, 4, Some(6)), Err(Unmatched::Payload));
        // The 8 bytes RFC 792 asks for: identifier and sequence only.
        let bare = Quote {
            payload: &[],
            ..quote
        };
        assert_eq!(check(&bare, 42, 4, Some(7)), Ok(()));
    }

    #[test]
    fn all_is_in_declaration_order() {
        for (index, unmatched) in Unmatched::ALL.into_iter().enumerate() {
            assert_eq!(unmatched as usize, index, "{unmatched:?}");
        }
    }
}
