//! The inventory service: sites, devices and SNMP credentials, the source of
//! truth every other service follows through `WatchDevices`.
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

/// Runs the inventory target on `listeners` until `shutdown` completes.
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    GrpcServer::new(
        Target::Inventory,
        ServerOptions::from_config(&config.common),
    )
    .serve(listeners, shutdown)
    .await?;
    Ok(())
}
