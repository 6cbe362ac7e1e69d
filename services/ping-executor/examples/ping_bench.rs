//! Benchmark of the ICMP engine against fping on N loopback addresses, in one
//! run: wall time, CPU time (getrusage) and answered count for both, and the
//! netward/fping ratios. Not a test; run as root (raw sockets) or in the lab.
//!
//! `cargo run --release -p netward-ping-executor --example ping_bench -- --targets 60000`
//! Runs the engine with its default packets-per-second budget, then with no
//! budget (what fping `-i0` does), then fping. Options: `--pps N` (the first
//! run's budget), `--socket auto|raw|datagram`, `--no-fping`, `--no-unpaced`.
//!
//! With the `surge-bench` feature it also runs surge-ping, the library the
//! engine replaced, on the same addresses: once shaped like the engine's
//! unpaced run (batches of 500, every probe of a batch at once), once with at
//! most `--surge-limit N` probes in flight (default 50, where it loses no
//! reply on loopback). `--no-surge` leaves it out.
//! `cargo run --release -p netward-ping-executor --features surge-bench --example ping_bench -- --targets 10000`

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use netward_ping_executor::icmp::{Pinger, PingerConfig, ProbeSpec, SocketMode};
use nix::sys::resource::{UsageWho, getrusage};

const BATCH: usize = 500;

struct Args {
    targets: usize,
    pps: Option<u32>,
    socket: SocketMode,
    fping: bool,
    unpaced: bool,
    #[cfg_attr(not(feature = "surge-bench"), allow(dead_code))]
    surge: bool,
    #[cfg_attr(not(feature = "surge-bench"), allow(dead_code))]
    surge_limit: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        targets: 10_000,
        pps: None,
        socket: SocketMode::Auto,
        fping: true,
        unpaced: true,
        surge: cfg!(feature = "surge-bench"),
        surge_limit: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--targets" => args.targets = value()?.parse()?,
            "--pps" => args.pps = Some(value()?.parse()?),
            "--socket" => {
                args.socket = match value()?.as_str() {
                    "auto" => SocketMode::Auto,
                    "raw" => SocketMode::Raw,
                    "datagram" | "dgram" => SocketMode::Datagram,
                    other => bail!("unknown socket mode: {other}"),
                }
            }
            "--no-fping" => args.fping = false,
            "--no-unpaced" => args.unpaced = false,
            "--no-surge" => args.surge = false,
            "--surge-limit" => args.surge_limit = value()?.parse()?,
            other => bail!("unknown argument: {other} (try --targets N)"),
        }
    }
    if args.surge_limit == 0 {
        bail!("--surge-limit must be at least 1");
    }
    if args.targets == 0 || args.targets > 250 * 254 * 254 {
        bail!("--targets must be between 1 and {}", 250 * 254 * 254);
    }
    Ok(args)
}

/// 127.1.0.1 upward, skipping .0 and .255 endings. Loopback only.
fn addresses(n: usize) -> Vec<Ipv4Addr> {
    (0u32..)
        .map(|i| Ipv4Addr::from(0x7f01_0000 + i))
        .filter(|a| !matches!(a.octets()[3], 0 | 255))
        .take(n)
        .collect()
}

fn cpu(who: UsageWho) -> anyhow::Result<Duration> {
    let usage = getrusage(who)?;
    let user = usage.user_time();
    let sys = usage.system_time();
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(micros(user) + micros(sys))
}

struct Run {
    answered: usize,
    wall: Duration,
    cpu: Duration,
}

async fn netward(
    args: &Args,
    pps: Option<u32>,
    targets: &[Ipv4Addr],
) -> anyhow::Result<(Run, String)> {
    let spec = ProbeSpec {
        count: 1,
        interval: Duration::ZERO,
        timeout: Duration::from_secs(1),
        retries: 0,
    };
    let cpu_before = cpu(UsageWho::RUSAGE_SELF)?;
    let start = Instant::now();
    let mut config = PingerConfig {
        socket: args.socket,
        ..PingerConfig::default()
    };
    if let Some(pps) = pps {
        config.packets_per_second = pps;
    }
    let pinger = Pinger::new(config)?;
    // Like the executor: batches of up to 500 targets (the planner's largest
    // batch), each one task probing its targets concurrently.
    let mut tasks = tokio::task::JoinSet::new();
    for batch in targets.chunks(BATCH) {
        let pinger = Arc::clone(&pinger);
        let spec = spec.clone();
        let batch = batch.to_vec();
        tasks.spawn(async move {
            let mut probes: FuturesUnordered<_> = batch
                .iter()
                .map(|&addr| pinger.probe(IpAddr::V4(addr), &spec))
                .collect();
            let mut answered = 0;
            while let Some(outcome) = probes.next().await {
                answered += usize::from(outcome.received > 0);
            }
            answered
        });
    }
    let mut answered = 0;
    while let Some(batch_answered) = tasks.join_next().await {
        answered += batch_answered?;
    }
    let wall = start.elapsed();
    let cpu = cpu(UsageWho::RUSAGE_SELF)? - cpu_before;
    let stats = pinger.stats();
    let detail = format!(
        "engine (budget {}): identifier={} socket={:?} rcvbuf={} sent={} received={} stray={} \
         malformed={} send_errors={} budget_waits={} lag_max={:?}",
        match stats.packets_per_second {
            0 => "none".to_owned(),
            pps => format!("{pps} pps"),
        },
        stats.identifier,
        stats.ipv4,
        stats.receive_buffer,
        stats.sent,
        stats.received,
        stats.stray,
        stats.malformed,
        stats.send_errors,
        stats.budget_waits,
        stats.scheduler_lag_max,
    );
    drop(pinger);
    Ok((
        Run {
            answered,
            wall,
            cpu,
        },
        detail,
    ))
}

/// surge-ping over the same targets with the same probe (one echo, 1 s
/// timeout, the engine's 16-byte payload), through one shared `Client` (one
/// socket and its receive task, as surge-ping is meant to be used). `limit`:
/// at most that many probes in flight; `None`: batches of 500, each probing
/// all its targets at once, like the engine's unpaced run.
#[cfg(feature = "surge-bench")]
async fn surge(targets: &[Ipv4Addr], limit: Option<usize>) -> anyhow::Result<Run> {
    use surge_ping::{Client, Config, PingIdentifier, PingSequence};

    async fn probe(client: Client, addr: Ipv4Addr) -> bool {
        let mut pinger = client
            .pinger(IpAddr::V4(addr), PingIdentifier(rand::random()))
            .await;
        pinger.timeout(Duration::from_secs(1));
        pinger.ping(PingSequence(0), &[0; 16]).await.is_ok()
    }

    let cpu_before = cpu(UsageWho::RUSAGE_SELF)?;
    let start = Instant::now();
    let client = Client::new(&Config::default())
        .context("surge-ping client (needs root or ping_group_range)")?;
    let answered = match limit {
        Some(limit) => {
            futures::stream::iter(targets.iter().map(|&addr| probe(client.clone(), addr)))
                .buffer_unordered(limit)
                .filter(|ok| std::future::ready(*ok))
                .count()
                .await
        }
        None => {
            let mut tasks = tokio::task::JoinSet::new();
            for batch in targets.chunks(BATCH) {
                let client = client.clone();
                let batch = batch.to_vec();
                tasks.spawn(async move {
                    let probes: FuturesUnordered<_> = batch
                        .iter()
                        .map(|&addr| probe(client.clone(), addr))
                        .collect();
                    probes.filter(|ok| std::future::ready(*ok)).count().await
                });
            }
            let mut answered = 0;
            while let Some(batch_answered) = tasks.join_next().await {
                answered += batch_answered?;
            }
            answered
        }
    };
    let wall = start.elapsed();
    let cpu = cpu(UsageWho::RUSAGE_SELF)? - cpu_before;
    drop(client);
    Ok(Run {
        answered,
        wall,
        cpu,
    })
}

fn fping(targets: &[Ipv4Addr]) -> anyhow::Result<Run> {
    let mut list = tempfile()?;
    for addr in targets {
        writeln!(list.1, "{addr}")?;
    }
    list.1.flush()?;
    let cpu_before = cpu(UsageWho::RUSAGE_CHILDREN)?;
    let start = Instant::now();
    let output = Command::new("fping")
        .args(["-c1", "-r0", "-i0", "-t1000", "-q", "-f"])
        .arg(&list.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running fping (apt-get install fping)")?;
    let wall = start.elapsed();
    let cpu = cpu(UsageWho::RUSAGE_CHILDREN)? - cpu_before;
    let _ = std::fs::remove_file(&list.0);
    // With -q -c1 fping prints "addr : xmt/rcv/%loss = 1/1/0%, ..." per target.
    let answered = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("= 1/1/"))
        .count();
    Ok(Run {
        answered,
        wall,
        cpu,
    })
}

fn tempfile() -> anyhow::Result<(std::path::PathBuf, std::io::BufWriter<std::fs::File>)> {
    let path = std::env::temp_dir().join(format!("ping_bench_{}.txt", std::process::id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, std::io::BufWriter::new(file)))
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let targets = addresses(args.targets);
    // Two workers: one per core of the reference machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    let (paced, detail) = runtime.block_on(netward(&args, args.pps, &targets))?;
    println!("{detail}");
    let budget = args
        .pps
        .unwrap_or_else(|| PingerConfig::default().packets_per_second);
    runs.push((format!("netward (budget {budget} pps)"), paced));
    if args.unpaced {
        let (unpaced, detail) = runtime.block_on(netward(&args, Some(0), &targets))?;
        println!("{detail}");
        runs.push(("netward (no budget)".to_owned(), unpaced));
    }
    #[cfg(feature = "surge-bench")]
    if args.surge {
        let fan_out = runtime.block_on(surge(&targets, None))?;
        runs.push(("surge-ping (batches of 500)".to_owned(), fan_out));
        let limited = runtime.block_on(surge(&targets, Some(args.surge_limit)))?;
        runs.push((
            format!("surge-ping ({} in flight)", args.surge_limit),
            limited,
        ));
    }
    drop(runtime);
    let fping = if args.fping {
        Some(fping(&targets)?)
    } else {
        None
    };

    let n = targets.len();
    println!("targets: {n} (127.1.0.1 upward), count 1, retries 0, timeout 1 s");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>11}",
        "tool", "answered", "wall s", "cpu s", "probes/s"
    );
    let row = |name: &str, r: &Run| {
        println!(
            "{:<28} {:>9} {:>9.3} {:>9.3} {:>11.0}",
            name,
            r.answered,
            r.wall.as_secs_f64(),
            r.cpu.as_secs_f64(),
            n as f64 / r.wall.as_secs_f64()
        );
    };
    for (name, run) in &runs {
        row(name, run);
    }
    if let Some(theirs) = &fping {
        row("fping -c1 -r0 -i0 -t1000", theirs);
        for (name, ours) in &runs {
            println!(
                "ratio {name} / fping: wall {:.2}, cpu {:.2}",
                ours.wall.as_secs_f64() / theirs.wall.as_secs_f64(),
                ours.cpu.as_secs_f64() / theirs.cpu.as_secs_f64().max(1e-9)
            );
        }
    }
    for (name, run) in &runs {
        // surge-ping's lost replies are a result, not a failure of the run.
        if run.answered != n && !name.starts_with("surge-ping") {
            bail!("{name} answered {} of {n}", run.answered);
        }
    }
    Ok(())
}
