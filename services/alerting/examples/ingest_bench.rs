//! Benchmark of alerting's ingest write path (not a test): the real service
//! in process on a fresh PostgreSQL database, fed over its gRPC `Ingest`
//! stream the way executors feed it — `ResultBatch`es of 500 results, a
//! few in flight — for whole cycles of N devices. Prints results/s from
//! first send to last ack (durably stored, rollups merged, states
//! evaluated), CPU time of this process (the service and the client), and
//! the same rows written by PostgreSQL's own `COPY` in 500-row transactions
//! (as many at once as ingest has in flight) into a plain table with the same columns and index, as the reference:
//! the netward/COPY ratio says how close ingest gets to the raw write speed.
//!
//! `cargo run --release -p netward-alerting --example ingest_bench -- --devices 100000 --cycles 3`
//! The database server comes from `NETWARD_TEST_DATABASE_URL` (default the
//! local server as user postgres); a database is created and dropped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use netward_shared::client::connect;
use netward_shared::config::{ConfigLoader, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::server::Listeners;
use netward_shared::testkit::TestDatabase;
use nix::sys::resource::{UsageWho, getrusage};
use sqlx::postgres::PgPoolCopyExt as _;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 500;
/// Unacked batches in flight on the stream.
const WINDOW: usize = 8;

fn cpu_seconds() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn args() -> anyhow::Result<(usize, u64, usize)> {
    let (mut devices, mut cycles, mut streams) = (100_000usize, 3u64, 2usize);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--devices" => devices = value()?.parse()?,
            "--cycles" => cycles = value()?.parse()?,
            "--streams" => streams = value()?.parse()?,
            other => bail!("unknown argument: {other} (try --devices N --cycles N --streams N)"),
        }
    }
    if devices == 0 || cycles == 0 || streams == 0 {
        bail!("--devices, --cycles and --streams must be at least 1");
    }
    Ok((devices, cycles, streams))
}

fn probe(device_id: &str, cycle: u64, i: usize, at: SystemTime) -> v1::ProbeResult {
    let rtt = 800 + (i as u32 * 37 + cycle as u32 * 11) % 4000;
    v1::ProbeResult {
        device_id: device_id.to_string(),
        address: "127.0.0.1".into(),
        cycle_id: cycle,
        batch_id: format!("bench-{cycle}-{}", i / BATCH),
        sent: 3,
        received: 3,
        loss_percent: 0.0,
        rtt_min_us: Some(rtt - 100),
        rtt_avg_us: Some(rtt),
        rtt_max_us: Some(rtt + 100),
        rtt_stddev_us: Some(40),
        outcome: v1::ProbeOutcome::Ok as i32,
        probed_at: Some(at.into()),
        duration_ms: 401,
        ..Default::default()
    }
}

/// Sends one cycle of results over `streams` Ingest streams at once (one
/// per executor) and waits for every ack.
async fn one_cycle(
    client: &AlertingServiceClient<netward_shared::client::PeerChannel>,
    devices: &[String],
    cycle: u64,
    streams: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let share = devices.len().div_ceil(streams);
    let sends = devices.chunks(share).map(|part| {
        let mut client = client.clone();
        async move { one_stream(&mut client, part, cycle).await }
    });
    for sent in futures::future::join_all(sends).await {
        sent?;
    }
    Ok(started.elapsed())
}

/// Sends results over one Ingest stream, `WINDOW` batches in flight.
async fn one_stream(
    client: &mut AlertingServiceClient<netward_shared::client::PeerChannel>,
    devices: &[String],
    cycle: u64,
) -> anyhow::Result<Duration> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(v1::IngestRequest {
        msg: Some(v1::ingest_request::Msg::Hello(v1::IngestHello {
            executor_id: "bench".into(),
            kind: v1::ExecutorKind::Ping as i32,
            version: String::new(),
        })),
    })?;
    let mut acks = client
        .ingest(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    let at = SystemTime::now();
    let batches: Vec<v1::ResultBatch> = devices
        .chunks(BATCH)
        .enumerate()
        .map(|(n, chunk)| v1::ResultBatch {
            executor_id: "bench".into(),
            kind: v1::ExecutorKind::Ping as i32,
            sequence: n as u64 + 1,
            batch_uid: uuid::Uuid::new_v4().to_string(),
            cycle_id: cycle,
            batch_id: format!("bench-{cycle}-{n}"),
            probes: chunk
                .iter()
                .enumerate()
                .map(|(i, id)| probe(id, cycle, n * BATCH + i, at))
                .collect(),
            ..Default::default()
        })
        .collect();
    let total = batches.len();
    let started = Instant::now();
    let mut pending = batches.into_iter();
    let (mut sent, mut acked) = (0usize, 0usize);
    while acked < total {
        while sent < total && sent - acked < WINDOW {
            let batch = pending.next().context("batches ran out")?;
            tx.send(v1::IngestRequest {
                msg: Some(v1::ingest_request::Msg::Batch(batch)),
            })?;
            sent += 1;
        }
        let reply = acks.message().await?.context("ingest stream ended")?;
        match reply.msg {
            Some(v1::ingest_response::Msg::Ack(_)) => acked += 1,
            other => bail!("batch not acked: {other:?}"),
        }
    }
    Ok(started.elapsed())
}

/// The reference: the same rows by `COPY`, one 500-row transaction each,
/// `WINDOW` at a time (as many as one ingest stream has in flight).
async fn copy_reference(
    pool: &sqlx::PgPool,
    devices: &[String],
    cycle: u64,
) -> anyhow::Result<Duration> {
    use futures::StreamExt as _;
    let at = chrono::Utc::now().to_rfc3339();
    let texts: Vec<String> = devices
        .chunks(BATCH)
        .enumerate()
        .map(|(n, chunk)| {
            let mut text = String::with_capacity(chunk.len() * 160);
            for (i, id) in chunk.iter().enumerate() {
                let rtt = 800 + ((n * BATCH + i) as u32 * 37 + cycle as u32 * 11) % 4000;
                let _ = writeln!(
                    text,
                    "{id}\t{at}\t{cycle}\tbench-{cycle}-{n}\tbench\t3\t3\t0\t{}\t{rtt}\t{}\t40\t1\t0",
                    rtt - 100,
                    rtt + 100
                );
            }
            text
        })
        .collect();
    let started = Instant::now();
    let copies = futures::stream::iter(texts.into_iter().map(|text| async move {
        let mut copy = pool
            .copy_in_raw(
                "COPY public.bench_copy (device_id, probed_at, cycle_id, batch_id, executor_id, \
                 sent, received, loss_percent, rtt_min_us, rtt_avg_us, rtt_max_us, \
                 rtt_stddev_us, outcome, retries_sent) FROM STDIN",
            )
            .await?;
        copy.send(text.into_bytes()).await?;
        copy.finish().await?;
        anyhow::Ok(())
    }))
    .buffer_unordered(WINDOW)
    .collect::<Vec<_>>()
    .await;
    for copied in copies {
        copied?;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (count, cycles, streams) = args()?;
    let database = TestDatabase::create().await?;
    let listeners = Listeners::local().await?;
    let url = format!("http://{}", listeners.grpc_addr());
    let config = ConfigLoader::new(Target::Alerting)
        .env(HashMap::from([(
            "NETWARD_DATABASE_URL".to_string(),
            database.url().to_string(),
        )]))
        .load()?;
    let stop = CancellationToken::new();
    let service_stop = stop.clone();
    let service = tokio::spawn(async move {
        netward_alerting::run(&config, listeners, service_stop.cancelled_owned()).await
    });
    let client = AlertingServiceClient::new(connect(&url, &Default::default())?)
        .max_decoding_message_size(64 * 1024 * 1024);
    let devices: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();

    println!(
        "ingest bench: {count} devices, {cycles} cycles, {streams} streams, {BATCH} results per batch, {WINDOW} in flight per stream"
    );
    let mut ingest_rates = Vec::new();
    for cycle in 1..=cycles {
        // Wait out the service's start (migrations, partitions) on the first call.
        let cpu = cpu_seconds();
        let took = loop {
            match one_cycle(&client, &devices, cycle, streams).await {
                Ok(took) => break took,
                Err(error) if cycle == 1 && service.is_finished() => return Err(error),
                Err(_) if cycle == 1 => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(error) => return Err(error),
            }
        };
        let rate = count as f64 / took.as_secs_f64();
        ingest_rates.push(rate);
        println!(
            "  netward cycle {cycle}: {:.2} s, {rate:.0} results/s, CPU {:.2} s (service + client)",
            took.as_secs_f64(),
            cpu_seconds() - cpu
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM alerting.probe_results")
        .fetch_one(database.pool())
        .await?;
    if stored as u64 != count as u64 * cycles {
        bail!("stored {stored} results, sent {}", count as u64 * cycles);
    }

    sqlx::raw_sql(
        "CREATE TABLE public.bench_copy (LIKE alerting.probe_results); \
         CREATE INDEX ON public.bench_copy (device_id, probed_at);",
    )
    .execute(database.pool())
    .await?;
    let mut copy_rates = Vec::new();
    for cycle in 1..=cycles {
        let took = copy_reference(database.pool(), &devices, cycle).await?;
        let rate = count as f64 / took.as_secs_f64();
        copy_rates.push(rate);
        println!(
            "  COPY    cycle {cycle}: {:.2} s, {rate:.0} rows/s",
            took.as_secs_f64()
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (netward, copy) = (median(&mut ingest_rates), median(&mut copy_rates));
    println!(
        "ingest bench: median {netward:.0} results/s vs COPY {copy:.0} rows/s: ratio {:.2}; \
         a 100,000-device fleet at one probe per 10 s needs 10,000/s ({:.1}x headroom)",
        netward / copy,
        netward / 10_000.0
    );
    stop.cancel();
    let _ = service.await;
    Ok(())
}
