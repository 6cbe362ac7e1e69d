//! Tower middleware of the gRPC server bootstrap, one concern per file.
//! Timeouts and the concurrency limit are tonic's and tower's own layers.

mod auth;
mod trace;

pub use auth::{AuthLayer, AuthService};
pub use trace::{TraceLayer, TraceService};
