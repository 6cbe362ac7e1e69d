//! The pure core of SNMP monitoring in alerting: counter rates between two
//! polls of an interface (`rates`). No database, no gRPC: storage, rules and
//! RPCs build on it.

pub mod rates;
