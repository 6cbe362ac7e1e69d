//! Benchmark of the poller against simulated agents, in one run: N agents
//! (snmpsim endpoints on 127.0.0.1, each serving the recorded Linux full
//! walk) polled with the `interfaces` profile as one cycle would, then
//! net-snmp (`snmpget` + `snmpbulkwalk` of ifTable and ifXTable) on a
//! sample of the same agents. Prints wall time, CPU (getrusage) and
//! requests/s, and the per-agent ratios. Not a test; see README.md.
//!
//! `cargo run --release -p netward-snmp-poller --example snmp_bench -- --agents 1000,5000`
//! Options: `--simulators N` (snmpsim processes, default 4), `--sample N`
//! (agents read with net-snmp, default 50), `--concurrency N` (devices polled
//! at once, default 100: snmpsim, a Python process per few thousand agents,
//! is the bottleneck here, and a queue of thousands of requests in front of
//! it only turns into timeouts; real agents answer independently).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use netward_shared::proto::v1;
use netward_snmp_poller::poll::Poller;
use netward_snmp_poller::profile::Profiles;
use netward_snmp_poller::snmp::SnmpEngine;
use nix::sys::resource::{UsageWho, getrusage};
use tokio::sync::Semaphore;

const COMMUNITY: &str = "bench";
const FIRST_PORT: u16 = 30_000;
const RECORD: &str = "/usr/share/doc/snmpsim/examples/data/recorded/linux-full-walk.snmprec.gz";

struct Args {
    agents: Vec<usize>,
    simulators: usize,
    sample: usize,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        agents: vec![1_000, 5_000],
        simulators: 4,
        sample: 50,
        concurrency: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--agents" => {
                args.agents = value
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()
                    .context("--agents N[,N…]")?
            }
            "--simulators" => args.simulators = value.parse().context("--simulators N")?,
            "--sample" => args.sample = value.parse().context("--sample N")?,
            "--concurrency" => args.concurrency = value.parse().context("--concurrency N")?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(args)
}

/// snmpsim processes serving `agents` endpoints between them; killed on drop.
struct Simulators {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Simulators {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Simulators {
    fn start(agents: usize, processes: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("netward-snmp-bench-{}", std::process::id()));
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let record = Command::new("zcat").arg(RECORD).output()?;
        if !record.status.success() {
            bail!("cannot read {RECORD} (apt-get install snmpsim)");
        }
        std::fs::write(data.join(format!("{COMMUNITY}.snmprec")), record.stdout)?;
        Command::new("chmod")
            .arg("-R")
            .arg("a+rwX")
            .arg(&dir)
            .status()?;
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut children = Vec::new();
        let per = agents.div_ceil(processes);
        for p in 0..processes {
            let ports = (p * per..((p + 1) * per).min(agents)).map(port);
            let endpoints: Vec<String> = ports
                .map(|port| format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
                .collect();
            if endpoints.is_empty() {
                continue;
            }
            // Thousands of endpoints go through an args file, not argv.
            let args_file = dir.join(format!("args-{p}"));
            std::fs::write(&args_file, endpoints.join("\n"))?;
            let mut command = Command::new(simulator());
            command
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!(
                    "--cache-dir={}",
                    dir.join(format!("cache-{p}")).display()
                ))
                .arg("--logging-method=null")
                .arg(format!("--args-from-file={}", args_file.display()));
            if root {
                command.args(["--process-user=nobody", "--process-group=nogroup"]);
            }
            children.push(
                command
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
        }
        let simulators = Self { children, dir };
        // Every process answers on its last endpoint once it is ready.
        let deadline = Instant::now() + Duration::from_secs(300);
        for p in 0..processes {
            let last = ((p + 1) * per).min(agents);
            if last <= p * per {
                continue;
            }
            while !answers(port(last - 1)) {
                if Instant::now() > deadline {
                    bail!("snmpsim did not answer on port {}", port(last - 1));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Ok(simulators)
    }

    /// CPU seconds the simulators used so far.
    fn cpu(&self) -> f64 {
        // /proc reports clock ticks of USER_HZ, 100 on Linux.
        let ticks = 100.0;
        self.children
            .iter()
            .filter_map(|child| std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok())
            .filter_map(|stat| {
                // Fields after the command name: utime and stime are 14 and 15.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let user: f64 = fields.get(11)?.parse().ok()?;
                let system: f64 = fields.get(12)?.parse().ok()?;
                Some((user + system) / ticks)
            })
            .sum()
    }
}

fn simulator() -> &'static str {
    let found = |name: &str| {
        Command::new("which")
            .arg(name)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found("snmpsim-command-responder") {
        "snmpsim-command-responder"
    } else {
        "snmpsimd"
    }
}

fn port(agent: usize) -> u16 {
    FIRST_PORT + agent as u16
}

fn answers(port: u16) -> bool {
    Command::new("snmpget")
        .args(["-v2c", "-c", COMMUNITY, "-t", "1", "-r", "0", "-On"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("1.3.6.1.2.1.1.3.0")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn cpu_seconds(who: UsageWho) -> f64 {
    getrusage(who)
        .map(|u| {
            let t = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

struct Run {
    wall: f64,
    cpu: f64,
    requests: u64,
    ok: usize,
    agents: usize,
}

type Hints = Arc<std::sync::Mutex<std::collections::HashMap<usize, v1::SnmpHints>>>;

async fn poll_all(poller: &Arc<Poller>, hints: &Hints, agents: usize, concurrency: usize) -> Run {
    let permits = Arc::new(Semaphore::new(concurrency));
    let cpu_before = cpu_seconds(UsageWho::RUSAGE_SELF);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut polls: FuturesUnordered<_> = (0..agents)
        .map(|agent| {
            let poller = poller.clone();
            let permits = permits.clone();
            let hints = hints.clone();
            async move {
                let _permit = permits.acquire_owned().await.ok()?;
                let target = v1::SnmpTarget {
                    version: v1::SnmpVersion::V2c as i32,
                    port: u32::from(port(agent)),
                    credential: Some(v1::ResolvedCredential {
                        version: v1::SnmpVersion::V2c as i32,
                        community: COMMUNITY.into(),
                        ..Default::default()
                    }),
                    profile: "interfaces".into(),
                    refresh_labels: true,
                    ..Default::default()
                };
                let id = format!("agent-{agent}");
                let mut target = target;
                // As the planner does: the hints of the last poll come back.
                target.hints = hints.lock().ok().and_then(|h| h.get(&agent).cloned());
                let (sample, learned) =
                    poller.poll("127.0.0.1", &id, &target, Some(deadline)).await;
                if let Ok(mut hints) = hints.lock() {
                    hints.insert(agent, learned);
                }
                Some(sample)
            }
        })
        .collect();
    let (mut requests, mut ok) = (0u64, 0usize);
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    while let Some(sample) = polls.next().await {
        let Some(sample) = sample else { continue };
        requests += u64::from(sample.requests_sent);
        let key = format!(
            "{}{} {} interfaces{}",
            sample.outcome().as_str_name(),
            if sample.partial { " partial" } else { "" },
            sample.interfaces.len(),
            if sample.error_detail.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    sample.error_detail.chars().take(80).collect::<String>()
                )
            }
        );
        *outcomes.entry(key).or_default() += 1;
        if sample.outcome() == v1::SnmpOutcome::Ok
            && !sample.partial
            && sample.interfaces.len() == 2
        {
            ok += 1;
        }
    }
    for (outcome, count) in outcomes {
        println!("  {count:>6} × {outcome}");
    }
    Run {
        wall: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(UsageWho::RUSAGE_SELF) - cpu_before,
        requests,
        ok,
        agents,
    }
}

/// net-snmp reading the same objects from `sample` agents, one after another.
fn netsnmp(sample: usize) -> anyhow::Result<Run> {
    let cpu_before = cpu_seconds(UsageWho::RUSAGE_CHILDREN);
    let started = Instant::now();
    let mut ok = 0;
    for agent in 0..sample {
        let address = format!("127.0.0.1:{}", port(agent));
        let mut fine = Command::new("snmpget")
            .args([
                "-v2c", "-c", COMMUNITY, "-On", "-t", "2", "-r", "1", &address,
            ])
            .args([
                "1.3.6.1.2.1.1.1.0",
                "1.3.6.1.2.1.1.2.0",
                "1.3.6.1.2.1.1.3.0",
                "1.3.6.1.2.1.1.5.0",
            ])
            .stdout(Stdio::null())
            .status()?
            .success();
        for table in ["1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1"] {
            fine &= Command::new("snmpbulkwalk")
                .args([
                    "-v2c", "-c", COMMUNITY, "-On", "-t", "2", "-r", "1", &address, table,
                ])
                .stdout(Stdio::null())
                .status()?
                .success();
        }
        ok += usize::from(fine);
    }
    Ok(Run {
        wall: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(UsageWho::RUSAGE_CHILDREN) - cpu_before,
        requests: 0,
        ok,
        agents: sample,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let poller = Arc::new(Poller::new(SnmpEngine::new().await?, Profiles::built_in()?));
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>10} {:>12} {:>12}",
        "agents", "answered", "wall s", "cpu s", "requests", "requests/s", "agent cpu s"
    );
    for &agents in &args.agents {
        let simulators = Simulators::start(agents, args.simulators.max(1))?;
        // The first cycle decides HC per interface; the second is steady state.
        let hints = Hints::default();
        let first = poll_all(&poller, &hints, agents, args.concurrency).await;
        let sim_before = simulators.cpu();
        let run = poll_all(&poller, &hints, agents, args.concurrency).await;
        let sim_cpu = simulators.cpu() - sim_before;
        for (label, run) in [("first", &first), ("steady", &run)] {
            println!(
                "{:>6} {:>10} {:>9.2} {:>9.2} {:>10} {:>12.0} {:>12}  ({label} cycle)",
                run.agents,
                run.ok,
                run.wall,
                run.cpu,
                run.requests,
                run.requests as f64 / run.wall,
                if label == "steady" {
                    format!("{sim_cpu:.2}")
                } else {
                    "-".into()
                },
            );
        }
        let sample = args.sample.min(agents);
        let reference = netsnmp(sample)?;
        println!(
            "net-snmp (snmpget + 2 × snmpbulkwalk) on {sample} of them, one after another: \
             {} answered, wall {:.2} s, cpu {:.2} s",
            reference.ok, reference.wall, reference.cpu
        );
        let per = |x: f64, n: usize| x / n.max(1) as f64;
        println!(
            "per agent: netward wall {:.2} ms, cpu {:.3} ms; net-snmp wall {:.2} ms, cpu {:.3} ms; \
             ratio netward/net-snmp: wall {:.3}, cpu {:.3}",
            per(run.wall * 1e3, agents),
            per(run.cpu * 1e3, agents),
            per(reference.wall * 1e3, sample),
            per(reference.cpu * 1e3, sample),
            per(run.wall, agents) / per(reference.wall, sample),
            per(run.cpu, agents) / per(reference.cpu, sample),
        );
        drop(simulators);
    }
    Ok(())
}
