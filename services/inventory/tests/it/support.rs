//! Starts the inventory in-process on a fresh database (PostgreSQL, or a
//! SQLite file in a temporary directory) and a free port, captures every log
//! line the process writes (for the secrets test), and runs a test case on
//! both backends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use netward_shared::client::{PeerChannel, connect};
use netward_shared::config::{ConfigLoader, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::server::Listeners;
use netward_shared::testkit::TestDatabase;
use tokio::sync::oneshot;

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

/// A database that exists for one test: a fresh PostgreSQL database, or a
/// SQLite file in a temporary directory (removed on drop).
pub enum Storage {
    Postgres(TestDatabase),
    Sqlite(TempDir),
}

impl Storage {
    pub async fn create(backend: Backend) -> Storage {
        match backend {
            Backend::Postgres => Storage::Postgres(TestDatabase::create().await.unwrap()),
            Backend::Sqlite => Storage::Sqlite(TempDir::new()),
        }
    }

    /// The URL the inventory is given.
    pub fn url(&self) -> String {
        match self {
            Storage::Postgres(database) => database.url().to_string(),
            Storage::Sqlite(dir) => format!("sqlite://{}", dir.0.join("inventory.db").display()),
        }
    }
}

/// A directory of its own under the system's temporary directory.
pub struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "netward-inventory-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestInventory {
    pub client: Client,
    pub storage: Storage,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestInventory {
    pub async fn start_on(backend: Backend) -> TestInventory {
        Self::start_with(backend, &[("NETWARD_SECRET_KEY", SECRET_KEY)]).await
    }

    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> TestInventory {
        let storage = Storage::create(backend).await;
        let (addr, stop, task) = Self::serve(&storage, env).await.unwrap();
        let client = InventoryServiceClient::new(
            connect(&format!("http://{addr}"), &Default::default()).unwrap(),
        )
        .max_decoding_message_size(64 * 1024 * 1024);
        TestInventory {
            client,
            storage,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts an inventory on `storage`; `Err` carries the start-up error.
    pub async fn serve(
        storage: &Storage,
        env: &[(&str, &str)],
    ) -> Result<
        (
            std::net::SocketAddr,
            oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        ),
        String,
    > {
        install_log_capture();
        let mut vars: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        vars.insert("NETWARD_DATABASE_URL".into(), storage.url());
        let config = ConfigLoader::new(Target::Inventory)
            .env(vars)
            .load()
            .unwrap();
        let listeners = Listeners::local().await.unwrap();
        let addr = listeners.grpc_addr();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel::<Result<(), String>>();
        let task = tokio::spawn(async move {
            let outcome = netward_inventory::run(&config, listeners, async {
                let _ = stop_rx.await;
            })
            .await;
            let _ = started_tx.send(outcome.map_err(|e| e.to_string()));
        });
        // The service either serves (health answers) or fails at start.
        let channel = connect(&format!("http://{addr}"), &Default::default()).unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut started_rx = started_rx;
        for _ in 0..200 {
            if let Ok(outcome) = started_rx.try_recv() {
                return Err(outcome.err().unwrap_or_else(|| "stopped".into()));
            }
            let check = health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await;
            if check.is_ok() {
                return Ok((addr, stop_tx, task));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err("the inventory did not start within 10 s".into())
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
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
