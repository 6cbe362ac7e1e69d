//! Helpers for tests across the workspace: one way to start a cluster
//! ([`cluster`]: real binaries or in process), a fresh PostgreSQL database per
//! test (migrated, dropped afterwards), and polling with a deadline for
//! effects that cross services (never a bare sleep).
//!
//! The server is reached through `NETWARD_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the network lab, where the
//! host's 127.0.0.1 is out of reach, points it at the unix socket
//! (`postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres`).

pub mod cluster;
pub mod ingest;
pub mod lab;
pub mod process;

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};

/// Environment variable naming the PostgreSQL server tests use.
pub const TEST_DATABASE_URL: &str = "NETWARD_TEST_DATABASE_URL";
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, thiserror::Error)]
pub enum TestKitError {
    #[error("{TEST_DATABASE_URL} is not a usable URL: {0}")]
    Url(String),
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The admin URL of the test server (a database that always exists).
pub fn admin_url() -> String {
    std::env::var(TEST_DATABASE_URL).unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

/// A database that exists for one test. Dropped (with `FORCE`, so open
/// connections do not keep it alive) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    pool: PgPool,
}

impl TestDatabase {
    /// A new, empty database with a random name.
    pub async fn create() -> Result<Self, TestKitError> {
        let admin_url = admin_url();
        let name = format!("netward_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await?;
        admin.close().await?;

        let mut url = url::Url::parse(&admin_url).map_err(|e| TestKitError::Url(e.to_string()))?;
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let options = PgConnectOptions::from_str(&url)?.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self {
            name,
            url,
            admin_url,
            pool,
        })
    }

    /// A new database with `migrator`'s migrations applied.
    pub async fn migrated(migrator: &Migrator) -> Result<Self, TestKitError> {
        let database = Self::create().await?;
        migrator.run(&database.pool).await?;
        Ok(database)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL, for a service under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether a database of that name exists on the test server.
    pub async fn exists(name: &str) -> Result<bool, TestKitError> {
        let mut admin = PgConnection::connect(&admin_url()).await?;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut admin)
            .await?;
        admin.close().await?;
        Ok(found.is_some())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be single-threaded
        // and already shutting down: drop the database from a thread with a
        // runtime of its own, and wait for it.
        let name = std::mem::take(&mut self.name);
        let admin_url = std::mem::take(&mut self.admin_url);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::query(AssertSqlSafe(format!(
                    r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("testkit: dropping test database failed: {error}"),
            Err(_) => eprintln!("testkit: the thread dropping the test database panicked"),
        }
    }
}

/// A plain HTTP/1.1 GET (`/metrics`, a status page): the status line and
/// the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
    })?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `timeout`. For effects that cross tasks, processes or services.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("not within {timeout:?}: {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
