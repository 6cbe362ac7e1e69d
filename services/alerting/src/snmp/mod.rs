//! The pure core of SNMP monitoring in alerting: counter rates between two
//! polls of an interface (`rates`) and what an interface is for — ISP uplink,
//! trunk, access, server link — (`classify`). No database, no gRPC: storage,
//! rules and RPCs build on these. `book` stores samples and keeps the
//! current interface view; `evaluate` turns it into rule conditions.

pub mod book;
pub mod classify;
pub mod evaluate;
pub mod rates;
