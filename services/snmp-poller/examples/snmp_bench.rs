//! Benchmark of the poller against simulated agents, in one run: N agents
//! (snmpsim endpoints on 127.0.0.1, each serving the recorded Linux full
//! walk) polled with the `interfaces` profile as one cycle would; then the
//! same agents scraped by Prometheus snmp_exporter (Debian's
//! `prometheus-snmp-exporter`) with an `if_mib` module, at the same
//! concurrency; then net-snmp (`snmpget` + `snmpbulkwalk` of ifTable and
//! ifXTable) on a sample of them. Prints wall time, CPU (getrusage for the
//! poller, /proc/<pid>/stat for the exporter) and requests/s, and the
//! netward/exporter and per-agent netward/net-snmp ratios. Not a test; see
//! README.md.
//!
//! `cargo run --release -p netward-snmp-poller --example snmp_bench -- --agents 1000,5000`
//! Options: `--simulators N` (snmpsim processes, default 4), `--sample N`
//! (agents read with net-snmp, default 50), `--concurrency N` (devices polled
//! or scraped at once, default 100: snmpsim, a Python process per few
//! thousand agents, is the bottleneck here, and a queue of thousands of
//! requests in front of it only turns into timeouts; real agents answer
//! independently).

use std::fmt::Write as _;
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
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;

const COMMUNITY: &str = "bench";
// Below the kernel's ephemeral range (32768 and up here), so no client socket
// of another process holds one of them.
const FIRST_PORT: u16 = 20_000;
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
        self.children
            .iter()
            .filter_map(|child| process_cpu(child.id()))
            .sum()
    }
}

/// CPU seconds (user + system) a process has used so far, from
/// /proc/<pid>/stat.
fn process_cpu(pid: u32) -> Option<f64> {
    // /proc reports clock ticks of USER_HZ, 100 on Linux.
    let ticks = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / ticks)
}

fn installed(name: &str) -> bool {
    Command::new("which")
        .arg(name)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn simulator() -> &'static str {
    if installed("snmpsim-command-responder") {
        "snmpsim-command-responder"
    } else {
        "snmpsimd"
    }
}

/// Prometheus snmp_exporter on a free loopback port, configured with
/// [`if_mib_module`] only; killed on drop.
struct Exporter {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// What the scrape URL adds after the module: from 0.23 on the
    /// community is an `auth` of its own, named in the URL.
    auth_parameter: &'static str,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Exporter {
    fn start() -> anyhow::Result<Self> {
        let binary = ["prometheus-snmp-exporter", "snmp_exporter"]
            .into_iter()
            .find(|name| installed(name))
            .context("snmp_exporter not found (apt-get install prometheus-snmp-exporter)")?;
        let dir = std::env::temp_dir().join(format!(
            "netward-snmp-bench-{}-exporter",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let split_auth = exporter_version(binary) >= (0, 23);
        let config = dir.join("snmp.yml");
        std::fs::write(&config, if_mib_module(COMMUNITY, split_auth))?;
        let log = dir.join("exporter.log");
        // A free port: bound by the kernel's choice, released, then taken
        // by the exporter (nothing else here is after loopback TCP ports).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {binary}"))?;
        let mut exporter = Self {
            child,
            port,
            dir,
            auth_parameter: if split_auth { "&auth=bench_v2" } else { "" },
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = exporter.child.try_wait()? {
                bail!("{binary} exited ({status}): {}", log());
            }
            if Instant::now() > deadline {
                bail!("{binary} did not listen on 127.0.0.1:{port}: {}", log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(exporter)
    }

    /// CPU seconds the exporter used so far.
    fn cpu(&self) -> f64 {
        process_cpu(self.child.id()).unwrap_or(0.0)
    }
}

/// The exporter's (major, minor) version, from `--version`; (0, 0) when it
/// does not say.
fn exporter_version(binary: &str) -> (u32, u32) {
    let Ok(output) = Command::new(binary).arg("--version").output() else {
        return (0, 0);
    };
    // kingpin prints it on stderr: "snmp_exporter, version 0.21.0 (…)".
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|word| *word != "version")
        .nth(1)
        .unwrap_or_default();
    let mut numbers = version.split('.').map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

/// The exporter's `if_mib` module, as its generator renders the `if_mib` of
/// the generator.yml Debian ships (walk `interfaces` and `ifXTable`, get
/// sysUpTime; ifAlias, ifDescr and ifName become labels of every interface
/// metric; ifType as an info metric), with the exporter's walk defaults
/// (max_repetitions 25, timeout 5 s, 3 retries). Up to 0.22 the community
/// and version are the module's; from 0.23 on they are an `auth` of their
/// own (`split_auth`), under `auths:`, and the modules under `modules:`.
/// Written out here because Debian's snmp.yml is empty and Debian ships no
/// IF-MIB to generate it from.
fn if_mib_module(community: &str, split_auth: bool) -> String {
    const IF_TABLE: &str = "1.3.6.1.2.1.2.2.1";
    const IF_X_TABLE: &str = "1.3.6.1.2.1.31.1.1.1";
    // (name, column, type); ifDescr, ifName and ifAlias are the lookups.
    let if_table = [
        ("ifIndex", 1, "gauge"),
        ("ifType", 3, "EnumAsInfo"),
        ("ifMtu", 4, "gauge"),
        ("ifSpeed", 5, "gauge"),
        ("ifPhysAddress", 6, "PhysAddress48"),
        ("ifAdminStatus", 7, "gauge"),
        ("ifOperStatus", 8, "gauge"),
        ("ifLastChange", 9, "gauge"),
        ("ifInOctets", 10, "counter"),
        ("ifInUcastPkts", 11, "counter"),
        ("ifInNUcastPkts", 12, "counter"),
        ("ifInDiscards", 13, "counter"),
        ("ifInErrors", 14, "counter"),
        ("ifInUnknownProtos", 15, "counter"),
        ("ifOutOctets", 16, "counter"),
        ("ifOutUcastPkts", 17, "counter"),
        ("ifOutNUcastPkts", 18, "counter"),
        ("ifOutDiscards", 19, "counter"),
        ("ifOutErrors", 20, "counter"),
        ("ifOutQLen", 21, "gauge"),
    ];
    let if_x_table = [
        ("ifInMulticastPkts", 2, "counter"),
        ("ifInBroadcastPkts", 3, "counter"),
        ("ifOutMulticastPkts", 4, "counter"),
        ("ifOutBroadcastPkts", 5, "counter"),
        ("ifHCInOctets", 6, "counter"),
        ("ifHCInUcastPkts", 7, "counter"),
        ("ifHCInMulticastPkts", 8, "counter"),
        ("ifHCInBroadcastPkts", 9, "counter"),
        ("ifHCOutOctets", 10, "counter"),
        ("ifHCOutUcastPkts", 11, "counter"),
        ("ifHCOutMulticastPkts", 12, "counter"),
        ("ifHCOutBroadcastPkts", 13, "counter"),
        ("ifLinkUpDownTrapEnable", 14, "gauge"),
        ("ifHighSpeed", 15, "gauge"),
        ("ifPromiscuousMode", 16, "gauge"),
        ("ifConnectorPresent", 17, "gauge"),
        ("ifCounterDiscontinuityTime", 19, "gauge"),
    ];
    let mut yaml = String::from(
        "if_mib:\n  \
         walk:\n  - 1.3.6.1.2.1.2\n  - 1.3.6.1.2.1.31.1.1\n  \
         get:\n  - 1.3.6.1.2.1.1.3.0\n  metrics:\n\
         \x20 - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge, help: sysUpTime}\n\
         \x20 - {name: ifNumber, oid: 1.3.6.1.2.1.2.1, type: gauge, help: ifNumber}\n",
    );
    let columns = if_table
        .iter()
        .map(|&(name, column, kind)| (name, format!("{IF_TABLE}.{column}"), kind))
        .chain(
            if_x_table
                .iter()
                .map(|&(name, column, kind)| (name, format!("{IF_X_TABLE}.{column}"), kind)),
        );
    for (name, oid, kind) in columns {
        let _ = write!(
            yaml,
            "  - name: {name}\n    oid: {oid}\n    type: {kind}\n    help: {name} - {oid}\n    \
             indexes:\n    - {{labelname: ifIndex, type: gauge}}\n    lookups:\n"
        );
        for (label, lookup) in [
            ("ifAlias", format!("{IF_X_TABLE}.18")),
            ("ifDescr", format!("{IF_TABLE}.2")),
            ("ifName", format!("{IF_X_TABLE}.1")),
        ] {
            let _ = writeln!(
                yaml,
                "    - {{labels: [ifIndex], labelname: {label}, oid: {lookup}, type: DisplayString}}"
            );
        }
        if kind == "EnumAsInfo" {
            // The IANAifType values of the recorded device, and the first.
            yaml.push_str("    enum_values: {1: other, 6: ethernetCsmacd, 24: softwareLoopback}\n");
        }
    }
    if split_auth {
        let modules: String = yaml.lines().map(|line| format!("  {line}\n")).collect();
        format!(
            "auths:\n  bench_v2:\n    community: {community}\n    version: 2\nmodules:\n{modules}"
        )
    } else {
        yaml + &format!("  version: 2\n  auth:\n    community: {community}\n")
    }
}

/// One `GET` of the exporter: its status and body. HTTP/1.0, so the body
/// ends with the connection and is never chunked.
async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of the HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status")?;
    Ok((status, body.to_string()))
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

fn print_row(run: &Run, agent_cpu: f64, label: &str) {
    println!(
        "{:>6} {:>10} {:>9.2} {:>9.2} {:>10} {:>12.0} {:>12.2}  ({label})",
        run.agents,
        run.ok,
        run.wall,
        run.cpu,
        run.requests,
        run.requests as f64 / run.wall,
        agent_cpu,
    );
}

struct Run {
    wall: f64,
    cpu: f64,
    requests: u64,
    ok: usize,
    agents: usize,
}

type Hints = Arc<std::sync::Mutex<std::collections::HashMap<usize, v1::SnmpHints>>>;

async fn poll_all(
    poller: &Arc<Poller>,
    hints: &Hints,
    agents: usize,
    concurrency: usize,
    refresh_labels: bool,
) -> Run {
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
                    refresh_labels,
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

/// The exporter scraping every agent with `if_mib`, `concurrency` scrapes
/// at once, as Prometheus would: one HTTP request per target. The CPU is the
/// exporter process's; requests are its `snmp_scrape_packets_sent`.
async fn scrape_all(exporter: &Exporter, agents: usize, concurrency: usize) -> Run {
    let permits = Arc::new(Semaphore::new(concurrency));
    let exporter_port = exporter.port;
    let auth = exporter.auth_parameter;
    let cpu_before = exporter.cpu();
    let started = Instant::now();
    let mut scrapes: FuturesUnordered<_> = (0..agents)
        .map(|agent| {
            let permits = permits.clone();
            async move {
                let _permit = permits.acquire_owned().await?;
                let target = format!("127.0.0.1:{}", port(agent));
                let path = format!("/snmp?module=if_mib{auth}&target={target}");
                tokio::time::timeout(Duration::from_secs(120), http_get(exporter_port, &path))
                    .await
                    .context("no answer within 120 s")?
            }
        })
        .collect();
    let (mut requests, mut ok) = (0u64, 0usize);
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    while let Some(scrape) = scrapes.next().await {
        let key = match scrape {
            Ok((200, body)) => {
                let interfaces = body
                    .lines()
                    .filter(|line| line.starts_with("ifHCInOctets{"))
                    .count();
                requests += body
                    .lines()
                    .find_map(|line| line.strip_prefix("snmp_scrape_packets_sent "))
                    .and_then(|value| value.trim().parse::<f64>().ok())
                    .unwrap_or(0.0) as u64;
                ok += usize::from(interfaces == 2);
                format!("HTTP 200 {interfaces} interfaces")
            }
            Ok((status, body)) => format!(
                "HTTP {status} ({})",
                body.trim().chars().take(80).collect::<String>()
            ),
            Err(error) => format!("{error:#}"),
        };
        *outcomes.entry(key).or_default() += 1;
    }
    for (outcome, count) in outcomes {
        println!("  {count:>6} × {outcome}");
    }
    Run {
        wall: started.elapsed().as_secs_f64(),
        cpu: exporter.cpu() - cpu_before,
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
    let exporter = Exporter::start()?;
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>10} {:>12} {:>12}",
        "agents", "answered", "wall s", "cpu s", "requests", "requests/s", "agent cpu s"
    );
    for &agents in &args.agents {
        let simulators = Simulators::start(agents, args.simulators.max(1))?;
        // The first cycle decides HC per interface; the second is the steady
        // state with a label refresh (ifName, ifAlias, ifDescr, speed: what
        // the exporter reads on every scrape); the third the steady state
        // between label refreshes, the poller's usual cycle.
        let hints = Hints::default();
        let mut cycles = Vec::new();
        for (label, refresh_labels) in [
            ("first cycle", true),
            ("steady cycle", true),
            ("steady cycle, no label refresh", false),
        ] {
            let sim_before = simulators.cpu();
            let run = poll_all(&poller, &hints, agents, args.concurrency, refresh_labels).await;
            print_row(&run, simulators.cpu() - sim_before, label);
            cycles.push((label, run));
        }
        // snmp_exporter on the same agents, at the same concurrency.
        let sim_before = simulators.cpu();
        let scraped = scrape_all(&exporter, agents, args.concurrency).await;
        print_row(
            &scraped,
            simulators.cpu() - sim_before,
            "snmp_exporter, if_mib",
        );
        for (label, run) in &cycles {
            println!(
                "ratio netward/snmp_exporter ({label}): wall {:.3}, cpu {:.3}",
                run.wall / scraped.wall,
                run.cpu / scraped.cpu,
            );
        }
        let run = &cycles[1].1;
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
