//! Tower middleware of the gRPC server bootstrap, one concern per file.
//! Timeouts and the concurrency limit are tonic's and tower's own layers.

mod auth;
mod metrics;
mod trace;

pub use auth::{AuthLayer, AuthService};
pub use metrics::{MetricsBody, MetricsLayer, MetricsService, REQUEST_DURATION, REQUESTS_TOTAL};
pub use trace::{TraceLayer, TraceService};
