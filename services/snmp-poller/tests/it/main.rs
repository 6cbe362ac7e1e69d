//! Integration tests of the SNMP poller against real agents started by the
//! tests: net-snmp's `snmpd` and `snmpsim` (recorded real devices), on
//! 127.0.0.1 with free ports. Without the tools they print why and pass,
//! except in CI (`CI` set), where a missing tool fails.
#![allow(clippy::unwrap_used)]

mod agents;
mod batch;
mod grpc;
mod snmpd;
mod snmpsim;
