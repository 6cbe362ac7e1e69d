//! What an ICMP socket hands the ping engine, through the reply parser in
//! every layout (raw IPv4, datagram IPv4, ICMPv6), and every ICMP error it
//! yields through the check that matches an error to a waiting request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netward_ping_executor::icmp::{IcmpMessage, Layout, Quote, check_quote, parse};

// The seeds' engine: identifier 42, cookie 1, the request's token 2.
const IDENTIFIER: u16 = 42;
const COOKIE: u64 = 1;

fuzz_target!(|packet: &[u8]| {
    for layout in [Layout::Ipv4Raw, Layout::Icmpv4, Layout::Icmpv6] {
        let quote = match parse(packet, layout) {
            Ok(IcmpMessage::Error {
                original_destination: Some(destination),
                identifier,
                sequence,
                payload,
                ..
            }) => Quote {
                destination,
                identifier,
                sequence,
                payload,
            },
            // What a datagram socket's error queue holds: the quoted request.
            Ok(IcmpMessage::EchoRequest {
                identifier,
                sequence,
                payload,
            }) => Quote {
                destination: [127, 9, 9, 9].into(),
                identifier,
                sequence,
                payload,
            },
            _ => continue,
        };
        for waiting in [None, Some(2)] {
            let _ = check_quote(&quote, IDENTIFIER, COOKIE, waiting);
        }
    }
});
