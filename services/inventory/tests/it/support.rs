//! Starts the inventory in-process through the test kit's cluster, on a
//! fresh database (PostgreSQL, or a SQLite file in a temporary directory),
//! captures every log line the process writes (for the secrets test), and
//! runs a test case on both backends.

use std::sync::{Arc, Mutex, OnceLock};

use netward_shared::client::PeerChannel;
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
pub use netward_shared::testkit::cluster::Storage;
use netward_shared::testkit::cluster::{Cluster, ClusterBuilder, runner};

pub type Client = InventoryServiceClient<PeerChannel>;

pub const SECRET_KEY: &str = "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";

/// Every log line written by any inventory in this test binary.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install_log_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let buffer = LOGS.get_or_init(Default::default).clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(buffer.clone()))
            .try_init();
    });
}

/// The storage backends the inventory runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs each `async fn case(backend: Backend)` as two tests,
/// `postgres::case` and `sqlite::case` (`cargo test sqlite` runs one side).
macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::Backend::Postgres).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::Backend::Sqlite).await
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;

impl Backend {
    /// A fresh database of this backend (for a store without the service).
    pub async fn storage(self) -> Storage {
        match self {
            Backend::Postgres => Storage::postgres().await,
            Backend::Sqlite => Storage::sqlite(),
        }
    }
}

/// The test kit's cluster with the inventory alone, in this process, on
/// `backend`.
pub fn inventory_alone(backend: Backend) -> ClusterBuilder {
    install_log_capture();
    let builder = ClusterBuilder::new()
        .runner(
            Target::Inventory,
            runner(|config, listeners, stop| async move {
                netward_inventory::run(&config, listeners, stop.cancelled_owned()).await
            }),
        )
        .in_process(Target::Inventory);
    match backend {
        Backend::Postgres => builder,
        Backend::Sqlite => builder.sqlite(),
    }
}

/// The inventory alone with a secret key, and a client of it.
pub struct TestInventory {
    pub client: Client,
    pub cluster: Cluster,
}

impl TestInventory {
    pub async fn start_on(backend: Backend) -> TestInventory {
        let cluster = inventory_alone(backend)
            .set("NETWARD_SECRET_KEY", SECRET_KEY)
            .start()
            .await;
        let client = cluster
            .inventory_client()
            .max_decoding_message_size(64 * 1024 * 1024);
        TestInventory { client, cluster }
    }

    pub fn storage(&self) -> &Storage {
        &self.cluster.database
    }

    pub async fn stop(mut self) {
        let stopped = self.cluster.inventory.take().unwrap().stop().await;
        assert!(stopped.clean(), "{stopped:?}");
    }
}

pub async fn site(client: &mut Client, name: &str, region: &str) -> v1::Site {
    client
        .create_site(v1::CreateSiteRequest {
            site: Some(v1::Site {
                name: name.into(),
                region: region.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .site
        .unwrap()
}

pub fn device(name: &str, ip: &str, site: &str) -> v1::Device {
    v1::Device {
        name: name.into(),
        ip_address: ip.into(),
        site_name: site.into(),
        device_type: v1::DeviceType::Router as i32,
        ..Default::default()
    }
}

pub async fn create(client: &mut Client, device: v1::Device) -> Result<v1::Device, tonic::Status> {
    client
        .create_device(v1::CreateDeviceRequest {
            device: Some(device),
        })
        .await
        .map(|r| r.into_inner().device.unwrap())
}

/// The field violations of an INVALID_ARGUMENT, as (field, description).
pub fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}
