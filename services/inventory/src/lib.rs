//! The inventory service: sites, devices and SNMP credentials, the source of
//! truth every other service follows through `WatchDevices`.
//!
//! `service.rs` holds the domain (validation, references, secrets),
//! `import.rs` plans imports, `watch.rs` streams changes, `store/` persists
//! (PostgreSQL schema `inventory`, or a SQLite file, by the database URL's
//! scheme), and `grpc.rs` adapts it all to `netward.v1.InventoryService`.

mod access;
mod crypto;
mod error;
mod grpc;
// Public, but not API: the device CSV fuzz target (fuzz/) drives `plan` on
// the rows the CLI's CSV reader produces.
#[doc(hidden)]
pub mod import;
mod metrics_help;
mod service;
pub mod store;
mod validate;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use netward_shared::config::{ConfigError, LoadedConfig, Target};
use netward_shared::proto::v1::inventory_service_server::InventoryServiceServer;
use netward_shared::secret::Secret;
use netward_shared::server::{GrpcServer, Listeners, ServerError, ServerOptions};
use serde::Deserialize;

pub use crate::error::Error as InventoryError;
pub use crate::service::Inventory;
pub use crate::store::{InventoryStore, PgStore, SqliteStore};

/// The `[inventory]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct InventoryConfig {
    /// How long device changes stay in the log for watchers to resume from;
    /// a watcher further behind gets a fresh snapshot.
    #[serde(with = "humantime_serde")]
    pub change_retention: Duration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            change_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the inventory needs a database URL, sqlite:PATH or postgres://… \
         (--database-url or NETWARD_DATABASE_URL)"
    )]
    NoDatabase,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Runs the inventory target on `listeners` until `shutdown` completes.
pub async fn run(
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let section: InventoryConfig = config.section()?;
    metrics_help::describe();
    let url = config
        .common
        .database_url
        .as_ref()
        .ok_or(Error::NoDatabase)?;
    let store = store::open(url.expose()).await?;
    let secret_key: Option<Secret<String>> = config.value("secret_key")?;
    let inventory =
        Arc::new(Inventory::new(store, secret_key.as_ref(), config.common.token.is_some()).await?);

    let server = GrpcServer::new(
        Target::Inventory,
        ServerOptions::from_config(&config.common),
    );
    let stop = server.shutdown_token();
    tokio::spawn(
        inventory
            .clone()
            .prune_loop(section.change_retention, stop.clone()),
    );
    let service = InventoryServiceServer::new(grpc::InventoryGrpc::new(inventory, stop))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    server
        .add_service(service)
        .serve(listeners, shutdown)
        .await?;
    Ok(())
}
