//! The ping executor: holds a `Work` stream to the planner, probes each
//! assignment with ICMP, and streams results to alerting. Stateless.
//!
//! Today the target starts, serves health, reflection and `/metrics`, and
//! shuts down cleanly; its own gRPC API is mounted by the issue that builds it.

use std::future::Future;

use netward_shared::config::{LoadedConfig, Target};
use netward_shared::server::{GrpcServer, Listeners, ServerError, ServerOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Runs the ping-executor target on `listeners` until `shutdown` completes.
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    GrpcServer::new(
        Target::PingExecutor,
        ServerOptions::from_config(&config.common),
    )
    .serve(listeners, shutdown)
    .await?;
    Ok(())
}
