//! One datagram as an agent's answer: async-snmp's message decoders (every
//! version, strict and compatible mode, the SNMPv3 envelope and USM
//! parameters) and the poller's conversion of the varbinds it yields.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netward_snmp_poller::snmp::decode_response;

fuzz_target!(|datagram: &[u8]| {
    if let Some(varbinds) = decode_response(datagram) {
        for varbind in varbinds {
            let _ = (varbind.oid.to_string(), varbind.value.as_u64());
            let _ = (varbind.value.as_text(), varbind.value.is_exception());
        }
    }
});
