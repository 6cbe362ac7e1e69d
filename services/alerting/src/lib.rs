//! Alerting: stores results durably, owns each device's state, evaluates
//! rules, raises and resolves alerts, and delivers notifications.
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

/// Runs the alerting target on `listeners` until `shutdown` completes.
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    GrpcServer::new(Target::Alerting, ServerOptions::from_config(&config.common))
        .serve(listeners, shutdown)
        .await?;
    Ok(())
}
