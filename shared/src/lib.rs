//! netward-shared sits at the bottom of the workspace: the generated gRPC code
//! every service and the CLI speak, and the runtime they all start the same way
//! (config, telemetry, the gRPC server bootstrap, metrics, error mapping, and
//! the test kit). Services never depend on each other, only on this crate.

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod delivery;
pub mod inventory_copy;
pub mod layers;
pub mod metrics;
pub mod proto;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod trace_context;
pub mod work;

pub use prost;
pub use tonic;
