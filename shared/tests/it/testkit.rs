//! The test kit's database really exists on the PostgreSQL server, really
//! runs migrations, and is really gone afterwards.

use std::path::Path;

use netward_shared::testkit::TestDatabase;
use sqlx::migrate::Migrator;

#[tokio::test]
async fn creates_migrates_and_drops_a_fresh_database() {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/migrations");
    let migrator = Migrator::new(migrations).await.unwrap();
    let database = TestDatabase::migrated(&migrator).await.unwrap();
    let name = database.name().to_string();
    assert!(TestDatabase::exists(&name).await.unwrap());

    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(current, name);

    // The migration ran: its table and row are there, and sqlx recorded it.
    let probes: i64 = sqlx::query_scalar("SELECT count(*) FROM testkit_probe")
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(probes, 1);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(applied, 1);

    drop(database);
    assert!(
        !TestDatabase::exists(&name).await.unwrap(),
        "{name} still exists"
    );
}

#[tokio::test]
async fn two_databases_never_share_a_name() {
    let a = TestDatabase::create().await.unwrap();
    let b = TestDatabase::create().await.unwrap();
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
}
