//! The `Ingest` stream through a real gRPC client into real PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeDelta, Utc};
use netward_alerting::ingest::Ingestor;
use netward_alerting::store::{AlertingStore, PgStore, Tier};
use netward_shared::client::{PeerChannel, connect};
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::testkit::TestDatabase;
use netward_shared::testkit::cluster::Cluster;
use sqlx::Connection as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Alerting alone, in process, on a PostgreSQL database of its own.
struct Alerting {
    cluster: Cluster,
    addr: std::net::SocketAddr,
}

impl Alerting {
    async fn start() -> Alerting {
        let cluster = crate::alerting_alone().start().await;
        let addr = cluster.alerting.as_ref().unwrap().grpc_addr;
        Alerting { cluster, addr }
    }

    fn database(&self) -> &TestDatabase {
        self.cluster.postgres()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(self.database().pool())
            .await
            .unwrap()
    }
}

/// An open Ingest stream: send batches, read acks.
struct Stream {
    tx: mpsc::UnboundedSender<v1::IngestRequest>,
    rx: tonic::Streaming<v1::IngestResponse>,
    sequence: u64,
}

impl Stream {
    /// A stream of a ping executor.
    async fn open(addr: std::net::SocketAddr) -> Stream {
        Self::of(addr, v1::ExecutorKind::Ping).await
    }

    /// A stream whose hello says `kind`.
    async fn of(addr: std::net::SocketAddr, kind: v1::ExecutorKind) -> Stream {
        let mut client: AlertingServiceClient<PeerChannel> = AlertingServiceClient::new(
            connect(&format!("http://{addr}"), &Default::default()).unwrap(),
        );
        let (tx, out) = mpsc::unbounded_channel();
        tx.send(v1::IngestRequest {
            msg: Some(v1::ingest_request::Msg::Hello(v1::IngestHello {
                executor_id: "test".into(),
                kind: kind as i32,
                version: String::new(),
            })),
        })
        .unwrap();
        let rx = client
            .ingest(UnboundedReceiverStream::new(out))
            .await
            .unwrap()
            .into_inner();
        Stream {
            tx,
            rx,
            sequence: 0,
        }
    }

    fn send(&mut self, mut batch: v1::ResultBatch) -> u64 {
        self.sequence += 1;
        batch.sequence = self.sequence;
        self.tx
            .send(v1::IngestRequest {
                msg: Some(v1::ingest_request::Msg::Batch(batch)),
            })
            .unwrap();
        self.sequence
    }

    async fn next(&mut self, within: Duration) -> Option<v1::ingest_response::Msg> {
        tokio::time::timeout(within, self.rx.message())
            .await
            .ok()?
            .unwrap()?
            .msg
    }
}

fn batch(uid: &str, devices: &[uuid::Uuid], probed_at: chrono::DateTime<Utc>) -> v1::ResultBatch {
    v1::ResultBatch {
        executor_id: "test".into(),
        kind: v1::ExecutorKind::Ping as i32,
        batch_uid: uid.into(),
        cycle_id: 1,
        batch_id: "1-0".into(),
        probes: devices
            .iter()
            .map(|d| v1::ProbeResult {
                device_id: d.to_string(),
                sent: 3,
                received: 3,
                rtt_min_us: Some(100),
                rtt_avg_us: Some(150),
                rtt_max_us: Some(200),
                outcome: v1::ProbeOutcome::Ok as i32,
                probed_at: Some(prost_types::Timestamp {
                    seconds: probed_at.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn devices(n: usize) -> Vec<uuid::Uuid> {
    (0..n).map(|_| uuid::Uuid::new_v4()).collect()
}

#[tokio::test]
async fn a_replayed_batch_is_stored_once() {
    let alerting = Alerting::start().await;
    let devices = devices(5);
    let mut stream = Stream::open(alerting.addr).await;
    let first = stream.send(batch("replay-1", &devices, Utc::now()));
    let Some(v1::ingest_response::Msg::Ack(ack)) = stream.next(Duration::from_secs(10)).await
    else {
        panic!("no ack");
    };
    assert_eq!((ack.sequence, ack.stored, ack.duplicate), (first, 5, false));

    // The same batch again on the same stream, and on a new stream (what a
    // sender does after a reconnect): acked as duplicates, nothing written.
    let again = stream.send(batch("replay-1", &devices, Utc::now()));
    let Some(v1::ingest_response::Msg::Ack(ack)) = stream.next(Duration::from_secs(10)).await
    else {
        panic!("no ack");
    };
    assert_eq!((ack.sequence, ack.stored, ack.duplicate), (again, 0, true));
    let mut other = Stream::open(alerting.addr).await;
    other.send(batch("replay-1", &devices, Utc::now()));
    let Some(v1::ingest_response::Msg::Ack(ack)) = other.next(Duration::from_secs(10)).await else {
        panic!("no ack");
    };
    assert!(ack.duplicate);

    assert_eq!(
        alerting
            .count("SELECT coalesce(sum(results), 0)::int8 FROM alerting.probe_raw")
            .await,
        5
    );
    assert_eq!(
        alerting
            .count("SELECT count(*) FROM alerting.ingested_batches")
            .await,
        1
    );

    // A batch without a uid is rejected for good, naming its sequence.
    let bad = stream.send(batch("", &devices, Utc::now()));
    let Some(v1::ingest_response::Msg::Reject(reject)) = stream.next(Duration::from_secs(10)).await
    else {
        panic!("no reject");
    };
    assert_eq!(reject.sequence, bad);
    assert!(reject.reason.contains("batch_uid"), "{reject:?}");
}

#[tokio::test]
async fn acks_come_only_after_the_commit() {
    let alerting = Alerting::start().await;
    let mut stream = Stream::open(alerting.addr).await;
    // Warm up: the partition for today exists, the stream is open.
    stream.send(batch("warm", &devices(1), Utc::now()));
    assert!(matches!(
        stream.next(Duration::from_secs(10)).await,
        Some(v1::ingest_response::Msg::Ack(_))
    ));

    // Another session holds the idempotency table: the write cannot commit.
    let mut blocker = sqlx::PgConnection::connect(alerting.database().url())
        .await
        .unwrap();
    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE alerting.ingested_batches IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    stream.send(batch("held", &devices(4), Utc::now()));
    assert!(
        stream.next(Duration::from_millis(1500)).await.is_none(),
        "acked before the write could commit"
    );

    lock.rollback().await.unwrap();
    let Some(v1::ingest_response::Msg::Ack(ack)) = stream.next(Duration::from_secs(10)).await
    else {
        panic!("no ack after the lock was released");
    };
    assert_eq!(ack.stored, 4);
    // By the time the ack is read, the rows are visible to anyone.
    assert_eq!(
        alerting
            .count("SELECT coalesce(sum(results), 0)::int8 FROM alerting.probe_raw")
            .await,
        5
    );
}

#[tokio::test]
async fn partitions_are_made_ahead_and_dropped_past_the_retention() {
    let alerting = Alerting::start().await;
    let store = Arc::new(PgStore::connect(alerting.database().url()).await.unwrap());
    let today = Utc::now().date_naive();
    let day = |offset: i64| today + TimeDelta::days(offset);
    let partitions = store.partitions().await.unwrap();
    for offset in -1..=2 {
        assert!(
            partitions.contains(&day(offset)),
            "no partition for {}",
            day(offset)
        );
    }

    // Results five days old get their partition on demand; results older
    // than the retention are not stored.
    let ingestor = Ingestor::new(
        store.clone(),
        Duration::from_secs(7 * 86_400),
        (
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(400 * 86_400),
        ),
    );
    let now = Utc::now();
    let old = ingestor
        .ingest(&batch("old", &devices(3), now - TimeDelta::days(5)), now)
        .await
        .unwrap();
    assert_eq!((old.stored.rows, old.skipped), (3, 0));
    assert!(store.partitions().await.unwrap().contains(&day(-5)));
    let ancient = ingestor
        .ingest(
            &batch("ancient", &devices(2), now - TimeDelta::days(30)),
            now,
        )
        .await
        .unwrap();
    assert_eq!((ancient.stored.rows, ancient.skipped), (0, 2));

    // Three days later, the five-day-old partition is past the 7-day
    // retention: dropped with its rows; its rollups stay.
    let later = now + TimeDelta::days(3);
    netward_alerting::rollup::Roller::new(store.clone())
        .run(later)
        .await
        .unwrap();
    let dropped = ingestor.maintain(later).await.unwrap();
    assert!(dropped.contains(&day(-5)), "{dropped:?}");
    let partitions: Vec<NaiveDate> = store.partitions().await.unwrap();
    assert!(!partitions.contains(&day(-5)));
    assert!(
        partitions.contains(&day(5)),
        "partitions ahead of the new day: {partitions:?}"
    );
    assert_eq!(
        alerting
            .count("SELECT coalesce(sum(results), 0)::int8 FROM alerting.probe_raw")
            .await,
        0
    );
    let rolled: u32 = store
        .rollups(
            Tier::Minute,
            None,
            now - TimeDelta::days(6),
            later,
            None,
            100,
        )
        .await
        .unwrap()
        .iter()
        .flat_map(|r| r.entries.iter().map(|(_, a)| a.probes))
        .sum();
    assert_eq!(rolled, 3, "the rollups of the dropped day stay");
}

#[tokio::test]
async fn batches_sent_back_to_back_are_stored_together_and_acked_each() {
    let alerting = Alerting::start().await;
    let mut stream = Stream::open(alerting.addr).await;
    // Twenty batches of 50 without waiting, one of them sent twice and one
    // invalid: the ones that arrive together share a transaction, and each
    // still gets its own answer, in order.
    let mut sent = Vec::new();
    for n in 0..20 {
        sent.push(stream.send(batch(&format!("group-{n}"), &devices(50), Utc::now())));
    }
    let replay = stream.send(batch("group-7", &devices(50), Utc::now()));
    let invalid = stream.send(batch("", &devices(50), Utc::now()));
    let mut answers = Vec::new();
    while answers.len() < 22 {
        let answer = stream
            .next(Duration::from_secs(20))
            .await
            .expect("every batch is answered");
        answers.push(answer);
    }
    let sequence = |answer: &v1::ingest_response::Msg| match answer {
        v1::ingest_response::Msg::Ack(ack) => ack.sequence,
        v1::ingest_response::Msg::Reject(reject) => reject.sequence,
    };
    let order: Vec<u64> = answers.iter().map(sequence).collect();
    let expected: Vec<u64> = sent.iter().copied().chain([replay, invalid]).collect();
    assert_eq!(order, expected, "answers in the order sent");
    for answer in &answers[..20] {
        assert!(
            matches!(answer, v1::ingest_response::Msg::Ack(ack) if ack.stored == 50 && !ack.duplicate),
            "{answer:?}"
        );
    }
    assert!(
        matches!(&answers[20], v1::ingest_response::Msg::Ack(ack) if ack.duplicate && ack.stored == 0),
        "{:?}",
        answers[20]
    );
    assert!(
        matches!(&answers[21], v1::ingest_response::Msg::Reject(r) if r.reason.contains("batch_uid")),
        "{:?}",
        answers[21]
    );
    assert_eq!(
        alerting
            .count("SELECT coalesce(sum(results), 0)::int8 FROM alerting.probe_raw")
            .await,
        1000
    );
    assert_eq!(
        alerting
            .count("SELECT count(*) FROM alerting.ingested_batches")
            .await,
        20
    );
    // A batch's key is stamped with its transaction's start: fewer distinct
    // stamps than batches means some were written together.
    let transactions = alerting
        .count("SELECT count(DISTINCT received_at) FROM alerting.ingested_batches")
        .await;
    assert!(
        transactions < 20,
        "{transactions} transactions for 20 batches"
    );
}

/// The reason of a reject, or a panic naming what came instead.
fn rejected(msg: Option<v1::ingest_response::Msg>, uid: &str) -> String {
    match msg {
        Some(v1::ingest_response::Msg::Reject(reject)) if reject.batch_uid == uid => reject.reason,
        other => panic!("expected {uid} rejected, got {other:?}"),
    }
}

fn acked(msg: Option<v1::ingest_response::Msg>, uid: &str) -> u32 {
    match msg {
        Some(v1::ingest_response::Msg::Ack(ack)) if ack.batch_uid == uid => ack.stored,
        other => panic!("expected {uid} acked, got {other:?}"),
    }
}

#[tokio::test]
async fn poison_batches_are_rejected_alone_naming_the_field_and_the_stream_goes_on() {
    let alerting = Alerting::start().await;
    let mut stream = Stream::open(alerting.addr).await;
    let now = Utc::now();
    let wait = Duration::from_secs(10);

    // Caught at the edge: a NUL byte, a loss out of range.
    let mut nul = batch("nul", &devices(3), now);
    nul.probes[1].error_detail = "timeout\0after".into();
    let mut loss = batch("loss", &devices(3), now);
    loss.probes[2].loss_percent = 150.0;
    for b in [
        batch("good-1", &devices(4), now),
        nul,
        batch("good-2", &devices(5), now),
        loss,
    ] {
        stream.send(b);
    }
    assert_eq!(acked(stream.next(wait).await, "good-1"), 4);
    let reason = rejected(stream.next(wait).await, "nul");
    assert!(
        reason.contains("probes[1].error_detail") && reason.contains("NUL"),
        "{reason}"
    );
    assert_eq!(acked(stream.next(wait).await, "good-2"), 5);
    let reason = rejected(stream.next(wait).await, "loss");
    assert!(reason.contains("probes[2].loss_percent"), "{reason}");
    // Its kind is the stream's (a PING hello): an SNMP batch is refused,
    // and so is a PING batch carrying samples.
    let mut snmp = batch("snmp", &devices(2), now);
    snmp.kind = v1::ExecutorKind::Snmp as i32;
    stream.send(snmp);
    let reason = rejected(stream.next(wait).await, "snmp");
    assert_eq!(
        reason,
        "kind: a SNMP batch on a PING stream (IngestHello.kind)"
    );
    let mut mixed = batch("mixed", &devices(2), now);
    mixed.samples = vec![v1::SnmpSample {
        device_id: devices(1)[0].to_string(),
        outcome: v1::SnmpOutcome::Ok as i32,
        ..Default::default()
    }];
    stream.send(mixed);
    let reason = rejected(stream.next(wait).await, "mixed");
    assert_eq!(reason, "samples: a PING batch carries probes only");

    // Past the edge, PostgreSQL refuses it (a constraint the edge does not
    // know): rejected alone, the rest of its group stored.
    // (Here: a raw row of exactly two results.)
    sqlx::query("ALTER TABLE alerting.probe_raw ADD CONSTRAINT sent_sane CHECK (results <> 2)")
        .execute(alerting.database().pool())
        .await
        .unwrap();
    let mut refused = batch("refused", &devices(2), now);
    refused.probes[0].sent = 2000;
    for b in [
        batch("good-3", &devices(6), now),
        refused,
        batch("good-4", &devices(7), now),
    ] {
        stream.send(b);
    }
    assert_eq!(acked(stream.next(wait).await, "good-3"), 6);
    let reason = rejected(stream.next(wait).await, "refused");
    assert!(reason.contains("sent_sane"), "{reason}");
    assert_eq!(acked(stream.next(wait).await, "good-4"), 7);

    // The stream goes on.
    stream.send(batch("good-5", &devices(1), now));
    assert_eq!(acked(stream.next(wait).await, "good-5"), 1);
    assert_eq!(
        alerting
            .count("SELECT coalesce(sum(results), 0)::int8 FROM alerting.probe_raw")
            .await,
        4 + 5 + 6 + 7 + 1
    );
    assert_eq!(
        alerting
            .count("SELECT count(*) FROM alerting.ingested_batches WHERE batch_uid IN ('nul', 'loss', 'snmp', 'mixed', 'refused')")
            .await,
        0
    );
}

#[tokio::test]
async fn a_batch_met_by_a_database_outage_is_not_acked_and_is_stored_once_when_replayed() {
    let alerting = Alerting::start().await;
    let wait = Duration::from_secs(10);
    let mut stream = Stream::open(alerting.addr).await;
    let now = Utc::now();
    stream.send(batch("before", &devices(2), now));
    assert_eq!(acked(stream.next(wait).await, "before"), 2);

    crate::durable::cut(alerting.database()).await;
    let outage = batch("outage", &devices(3), now);
    stream.send(outage.clone());
    // Not acked, not rejected: the stream ends unavailable.
    let ended = tokio::time::timeout(Duration::from_secs(40), stream.rx.message())
        .await
        .unwrap();
    match ended {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        Ok(other) => panic!("expected the stream to end unacked, got {other:?}"),
    }
    crate::durable::restore(alerting.database()).await;

    // The sender reconnects and replays: stored once.
    let mut stream = Stream::open(alerting.addr).await;
    stream.send(outage.clone());
    assert_eq!(acked(stream.next(wait).await, "outage"), 3);
    stream.send(outage);
    match stream.next(wait).await {
        Some(v1::ingest_response::Msg::Ack(ack)) => assert!(ack.duplicate),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        alerting
            .count("SELECT coalesce(sum(results), 0)::int8 FROM alerting.probe_raw")
            .await,
        5
    );
}

/// `run` on a SQLite file (the embedded default): a batch is stored once,
/// acked, evaluated, and its device's state read back over gRPC and from
/// the file.
#[tokio::test]
async fn run_serves_on_a_sqlite_file() {
    let mut cluster = crate::alerting_alone().sqlite().start().await;
    let url = cluster.database.url(Target::Alerting);
    let addr = cluster.alerting.as_ref().unwrap().grpc_addr;
    let devices = devices(3);
    let mut stream = Stream::open(addr).await;
    for expected in [(3, false), (0, true)] {
        let sent = stream.send(batch("sqlite-1", &devices, Utc::now()));
        let Some(v1::ingest_response::Msg::Ack(ack)) = stream.next(Duration::from_secs(10)).await
        else {
            panic!("no ack");
        };
        assert_eq!(
            (ack.sequence, ack.stored, ack.duplicate),
            (sent, expected.0, expected.1)
        );
    }

    let mut client: AlertingServiceClient<PeerChannel> = AlertingServiceClient::new(
        connect(&format!("http://{addr}"), &Default::default()).unwrap(),
    );
    let device_id = devices[0].to_string();
    netward_shared::testkit::eventually("the device is evaluated", Duration::from_secs(10), || {
        let mut client = client.clone();
        let device_id = device_id.clone();
        async move {
            let status = client
                .get_device_status(v1::GetDeviceStatusRequest { device_id })
                .await
                .ok()?
                .into_inner()
                .status?;
            (status.state == v1::DeviceState::Up as i32).then_some(())
        }
    })
    .await;
    let rules = client
        .list_rules(v1::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert!(rules.iter().any(|r| r.builtin), "built-in rules seeded");
    let stopped = cluster.alerting.take().unwrap().stop().await;
    assert!(stopped.clean(), "{stopped:?}");

    let store = netward_alerting::store::SqliteStore::connect(&url)
        .await
        .unwrap();
    let states = store.states().await.unwrap();
    assert_eq!(states.len(), 3);
    let rows: i64 =
        sqlx::query_scalar("SELECT CAST(coalesce(sum(results), 0) AS BIGINT) FROM probe_raw")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(rows, 3);
}

/// A result without an outcome cannot be told from a reply or a loss:
/// executor.proto says alerting rejects it, and IngestReject's comment
/// gives "probes[3].outcome: unspecified" as its reason.
#[tokio::test]
async fn a_result_without_an_outcome_is_rejected_naming_it_and_nothing_is_stored() {
    let alerting = Alerting::start().await;
    let mut stream = Stream::open(alerting.addr).await;
    let now = Utc::now();
    let wait = Duration::from_secs(10);

    let mut probe = batch("no-outcome", &devices(4), now);
    probe.probes[3].outcome = v1::ProbeOutcome::Unspecified as i32;
    let sample = v1::ResultBatch {
        executor_id: "test".into(),
        kind: v1::ExecutorKind::Snmp as i32,
        batch_uid: "no-snmp-outcome".into(),
        cycle_id: 1,
        batch_id: "1-1".into(),
        samples: vec![v1::SnmpSample {
            device_id: uuid::Uuid::new_v4().to_string(),
            outcome: v1::SnmpOutcome::Unspecified as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    for b in [probe, batch("good", &devices(2), now)] {
        stream.send(b);
    }
    let reason = rejected(stream.next(wait).await, "no-outcome");
    assert_eq!(reason, "probes[3].outcome: unspecified");
    assert_eq!(acked(stream.next(wait).await, "good"), 2);
    let mut snmp = Stream::of(alerting.addr, v1::ExecutorKind::Snmp).await;
    snmp.send(sample);
    let reason = rejected(snmp.next(wait).await, "no-snmp-outcome");
    assert_eq!(reason, "samples[0].outcome: unspecified");

    assert_eq!(
        alerting
            .count("SELECT coalesce(sum(results), 0)::int8 FROM alerting.probe_raw")
            .await,
        2
    );
    assert_eq!(
        alerting
            .count("SELECT count(*) FROM alerting.ingested_batches WHERE batch_uid <> 'good'")
            .await,
        0
    );
}

/// The status an Ingest stream opened with `hello` ends with.
async fn refused_hello(addr: std::net::SocketAddr, hello: v1::IngestHello) -> tonic::Status {
    let mut client: AlertingServiceClient<PeerChannel> = AlertingServiceClient::new(
        connect(&format!("http://{addr}"), &Default::default()).unwrap(),
    );
    let (tx, out) = mpsc::unbounded_channel();
    tx.send(v1::IngestRequest {
        msg: Some(v1::ingest_request::Msg::Hello(hello)),
    })
    .unwrap();
    match client.ingest(UnboundedReceiverStream::new(out)).await {
        Ok(mut responses) => {
            let first = tokio::time::timeout(Duration::from_secs(5), responses.get_mut().message());
            match first.await {
                Ok(Err(status)) => status,
                Ok(Ok(message)) => panic!("the stream went on: {message:?}"),
                Err(_) => panic!("the stream stayed open"),
            }
        }
        Err(status) => status,
    }
}

#[tokio::test]
async fn a_hello_without_executor_id_or_kind_ends_the_stream_naming_the_field() {
    let alerting = Alerting::start().await;
    let hello = |executor_id: &str, kind: v1::ExecutorKind| v1::IngestHello {
        executor_id: executor_id.into(),
        kind: kind as i32,
        version: String::new(),
    };

    let status = refused_hello(alerting.addr, hello("", v1::ExecutorKind::Ping)).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "hello.executor_id: required");

    let status = refused_hello(alerting.addr, hello("test", v1::ExecutorKind::Unspecified)).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("hello.kind: required"),
        "{status:?}"
    );

    // A full hello opens the stream.
    let mut stream = Stream::open(alerting.addr).await;
    stream.send(batch("after-hello", &devices(1), Utc::now()));
    assert_eq!(
        acked(stream.next(Duration::from_secs(10)).await, "after-hello"),
        1
    );
}
