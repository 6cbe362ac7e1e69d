//! The SNMP poller: holds a `Work` stream to the planner (kind SNMP), polls
//! each assignment's agents, and streams samples to alerting. Stateless.
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

/// Runs the snmp-poller target on `listeners` until `shutdown` completes.
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    GrpcServer::new(
        Target::SnmpPoller,
        ServerOptions::from_config(&config.common),
    )
    .serve(listeners, shutdown)
    .await?;
    Ok(())
}
