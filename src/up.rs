//! `netward up`: the whole system in one process — inventory, planner,
//! alerting, a ping executor and an SNMP poller, each on its default port and
//! talking real gRPC over loopback, on the same service code as when they run
//! apart. Data lives in SQLite files under the data dir (or PostgreSQL with
//! `--database-url`); Redis's jobs (live state, the planner lease) are done
//! in process unless `--redis-url` is given.
//!
//! It prints where everything listens, then one line per ping cycle. Ctrl-C
//! (or SIGTERM) drains every service and exits; the next start resumes from
//! the data dir. A service that cannot start is said so at once: the ping
//! executor without ICMP privileges says what to do and the rest keep
//! running (alerting then reports the monitoring gap).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use netward_shared::client::{ClientOptions, PeerChannel};
use netward_shared::config::{ConfigLoader, LoadedConfig, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::server::Listeners;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The example inventory (854 devices in 127.0.0.0/8, which answer ping on
/// loopback), built in so `up` works from any directory.
const EXAMPLE_INVENTORY: &str = include_str!("../deploy/examples/inventory.csv");

/// How long a service has to come up before `up` gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the services have to drain after Ctrl-C.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where netward keeps its data: SQLite files, the secret key (created when missing)
    #[arg(
        long,
        env = "NETWARD_DATA_DIR",
        value_name = "DIR",
        default_value = "netward-data"
    )]
    data_dir: PathBuf,
    /// CSV inventory imported at start (upsert by name) [default: the example inventory, on first start only]
    #[arg(long, value_name = "FILE.csv")]
    inventory: Option<PathBuf>,
    /// Store in PostgreSQL instead of the embedded SQLite files (postgres://user@host/db)
    #[arg(
        long,
        env = "NETWARD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Keep live state and the planner lease in Redis instead of in process (redis://host:6379)
    #[arg(
        long,
        env = "NETWARD_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    redis_url: Option<String>,
    /// TOML config file: its top-level keys and every target's section apply
    #[arg(long, short = 'c', env = "NETWARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the live status page (docs/web.md), or `off` [default: 127.0.0.1:8080]
    #[arg(long, env = "NETWARD_ALERTING__WEB_ADDR", value_name = "ADDR|off")]
    web_addr: Option<String>,
}

/// Where each service stores, as `up` decides it.
struct Storage {
    inventory: String,
    alerting: String,
    /// What the banner says about it.
    describe: String,
}

impl Storage {
    fn new(args: &UpArgs, data_dir: &Path) -> Self {
        match &args.database_url {
            // One database: inventory and alerting keep their own schemas.
            Some(url) => Self {
                inventory: url.clone(),
                alerting: url.clone(),
                describe: "PostgreSQL (--database-url)".into(),
            },
            None => Self {
                inventory: sqlite_url(&data_dir.join("inventory.db")),
                alerting: sqlite_url(&data_dir.join("alerting.db")),
                describe: format!(
                    "SQLite: {} and {}",
                    data_dir.join("inventory.db").display(),
                    data_dir.join("alerting.db").display()
                ),
            },
        }
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The secret key that encrypts SNMP secrets at rest: from
/// `NETWARD_SECRET_KEY`, else `DIR/secret.key`, made on first start (32
/// random bytes in hex, readable by the owner only).
fn secret_key(data_dir: &Path, env: &HashMap<String, String>) -> anyhow::Result<String> {
    if let Some(key) = env.get("NETWARD_SECRET_KEY").filter(|k| !k.is_empty()) {
        return Ok(key.clone());
    }
    let path = data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(key) => return Ok(key.trim().to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    let key: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{key}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

/// One target's configuration: the shared layers (file, `NETWARD_*`), then
/// what `up` decides (storage, Redis, the secret key).
fn target_config(
    target: Target,
    args: &UpArgs,
    env: &HashMap<String, String>,
    storage: &Storage,
    secret_key: &str,
) -> anyhow::Result<LoadedConfig> {
    let mut loader = ConfigLoader::new(target).env(env.clone());
    if let Some(path) = &args.config {
        loader = loader.file(path);
    }
    match target {
        Target::Inventory => {
            loader = loader
                .set("database_url", &storage.inventory)
                .set("secret_key", secret_key);
        }
        Target::Alerting => {
            loader = loader.set("database_url", &storage.alerting);
            if let Some(addr) = &args.web_addr {
                loader = loader.set("alerting.web_addr", addr);
            }
        }
        _ => {}
    }
    if let Some(url) = &args.redis_url {
        loader = loader.set("redis_url", url);
    }
    loader
        .load()
        .with_context(|| format!("invalid configuration for {target}"))
}

/// A running service's outcome, named.
type Outcome = (Target, anyhow::Result<()>);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    // One process, five servers: an address meant for one target would make
    // the others collide on it.
    for key in ["NETWARD_GRPC_ADDR", "NETWARD_METRICS_ADDR"] {
        if env.remove(key).is_some() {
            eprintln!("netward up: {key} ignored (each service listens on its own default port)");
        }
    }
    // Quiet by default: the console is for the cycle lines; warnings and
    // errors still show. RUST_LOG or NETWARD_LOG__FILTER say otherwise.
    env.entry("NETWARD_LOG__FILTER".into())
        .or_insert_with(|| "warn".into());
    env.entry("NETWARD_LOG__FORMAT".into())
        .or_insert_with(|| "text".into());

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let storage = Storage::new(&args, &data_dir);
    let key = secret_key(&data_dir, &env)?;

    let mut configs = HashMap::new();
    for target in Target::ALL {
        let config = target_config(target, &args, &env, &storage, &key)?;
        config.common.check_exposure()?;
        configs.insert(target, config);
    }
    let common = &configs[&Target::Inventory].common;
    let _telemetry = netward_shared::telemetry::init("up", &common.log, &env)?;
    let (inventory_url, planner_url, alerting_url) = (
        common.inventory_url.clone(),
        common.planner_url.clone(),
        common.alerting_url.clone(),
    );
    let client = ClientOptions::from_config(common);

    // Every port first: a clash is reported before anything starts.
    let mut listeners = HashMap::new();
    for target in Target::ALL {
        let config = &configs[&target].common;
        let mut bound = Listeners::bind(config).await.with_context(|| {
            format!(
                "{target} cannot listen on {} / {} (is another netward running?)",
                config.grpc_addr, config.metrics_addr
            )
        })?;
        if target == Target::Alerting {
            bound.web = netward_alerting::web::bind(&configs[&target]).await?;
        }
        listeners.insert(target, bound);
    }
    let web_addr = listeners[&Target::Alerting]
        .web
        .as_ref()
        .and_then(|l| l.local_addr().ok());
    let addresses: Vec<(Target, SocketAddr, SocketAddr)> = Target::ALL
        .iter()
        .map(|t| (*t, listeners[t].grpc_addr(), listeners[t].metrics_addr()))
        .collect();

    // Stopping goes in stages, so nothing in flight is lost: the probers
    // first (they finish their batches and deliver them while the planner
    // and alerting still listen), then the planner and alerting, then the
    // inventory they follow.
    let stop = CancellationToken::new();
    let stages = Stages::new();
    let mut services: JoinSet<Outcome> = JoinSet::new();
    let mut start = |target: Target, services: &mut JoinSet<Outcome>| {
        let config = configs.remove(&target).expect("configured once");
        let listeners = listeners.remove(&target).expect("bound once");
        let shutdown = stages.token(target).cancelled_owned();
        services.spawn(async move {
            let outcome = crate::run_target(target, &config, listeners, shutdown).await;
            (target, outcome)
        });
    };

    println!(
        "netward up: data in {} ({})",
        data_dir.display(),
        storage.describe
    );
    // The inventory first: the rest follow it, and the example is loaded
    // into it before the planner plans its first cycle.
    start(Target::Inventory, &mut services);
    let inventory =
        InventoryServiceClient::new(netward_shared::client::connect(&inventory_url, &client)?)
            .max_decoding_message_size(64 * 1024 * 1024);
    tokio::select! {
        ready = wait_for_inventory(inventory.clone()) => ready?,
        Some(ended) = services.join_next() => return Err(failed(ended)),
    }
    load_inventory(inventory.clone(), args.inventory.as_deref()).await?;

    for target in [
        Target::Alerting,
        Target::Planner,
        Target::SnmpPoller,
        Target::PingExecutor,
    ] {
        start(target, &mut services);
    }
    for (target, grpc, metrics) in &addresses {
        println!(
            "  {:<14} gRPC {grpc:<17} metrics http://{metrics}/metrics",
            target.name()
        );
    }
    if let Some(addr) = web_addr {
        println!("  {:<14} http://{addr}/", "status page");
    }
    println!(
        "  try: netward status · netward alerts · netward planner status · \
         grpcurl -plaintext {} list",
        addresses[1].1
    );
    println!("Ctrl-C stops (drains every service); a second start resumes from the data dir.");

    let planner =
        PlannerServiceClient::new(netward_shared::client::connect(&planner_url, &client)?);
    let alerting =
        AlertingServiceClient::new(netward_shared::client::connect(&alerting_url, &client)?);
    let reporter = tokio::spawn(report_cycles(planner, alerting, stop.clone()));

    let shutdown = netward_shared::shutdown::signal();
    tokio::pin!(shutdown);
    let mut error = None;
    let mut live: Vec<Target> = Target::ALL.to_vec();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(ended) = services.join_next() => match ended {
                // The ping executor without ICMP privileges: said, and the
                // rest go on (alerting raises the monitoring gap).
                Ok((Target::PingExecutor, Err(cause))) => {
                    live.retain(|t| *t != Target::PingExecutor);
                    eprintln!(
                        "netward up: ping executor not running: {}",
                        crate::describe(&cause)
                    );
                    eprintln!(
                        "netward up: the other services keep running; alerting reports every \
                         device as a monitoring gap until probes flow"
                    );
                }
                ended => {
                    if let Ok((target, _)) = &ended {
                        live.retain(|t| t != target);
                    }
                    error = Some(failed(ended));
                    break;
                }
            },
        }
    }
    println!("netward up: stopping (draining every service)…");
    stop.cancel();
    reporter.abort();
    let drained = tokio::time::timeout(STOP_TIMEOUT, stages.stop(&mut services, live)).await;
    if drained.is_err() {
        eprintln!(
            "netward up: services still draining after {}s; exiting anyway",
            STOP_TIMEOUT.as_secs()
        );
    }
    match error {
        Some(error) => Err(error),
        None => {
            println!("netward up: stopped");
            Ok(())
        }
    }
}

/// The shutdown tokens of the three stages of stopping.
struct Stages {
    probers: CancellationToken,
    core: CancellationToken,
    inventory: CancellationToken,
}

impl Stages {
    fn new() -> Self {
        Self {
            probers: CancellationToken::new(),
            core: CancellationToken::new(),
            inventory: CancellationToken::new(),
        }
    }

    fn token(&self, target: Target) -> CancellationToken {
        match target {
            Target::PingExecutor | Target::SnmpPoller => self.probers.clone(),
            Target::Planner | Target::Alerting => self.core.clone(),
            Target::Inventory => self.inventory.clone(),
        }
    }

    /// Stops each stage and waits for its services before the next.
    /// `live`: the services started and not ended yet.
    async fn stop(&self, services: &mut JoinSet<Outcome>, mut live: Vec<Target>) {
        let stages = [
            (
                &self.probers,
                &[Target::PingExecutor, Target::SnmpPoller][..],
            ),
            (&self.core, &[Target::Planner, Target::Alerting][..]),
            (&self.inventory, &[Target::Inventory][..]),
        ];
        for (token, targets) in stages {
            token.cancel();
            while targets.iter().any(|t| live.contains(t)) {
                match services.join_next().await {
                    Some(Ok((target, outcome))) => {
                        if let Err(cause) = outcome {
                            eprintln!(
                                "netward up: {target} stopped with an error: {}",
                                crate::describe(&cause)
                            );
                        }
                        live.retain(|t| *t != target);
                    }
                    Some(Err(join)) => eprintln!("netward up: a service panicked: {join}"),
                    None => return,
                }
            }
        }
    }
}

/// A service that ended while the others run: an error either way.
fn failed(ended: Result<Outcome, tokio::task::JoinError>) -> anyhow::Error {
    match ended {
        Ok((target, Err(cause))) => cause.context(format!("{target} failed")),
        Ok((target, Ok(()))) => anyhow::anyhow!("{target} stopped unexpectedly"),
        Err(join) => anyhow::anyhow!("a service panicked: {join}"),
    }
}

type InventoryClient = InventoryServiceClient<PeerChannel>;

/// Until the inventory answers (its store is open and migrated).
async fn wait_for_inventory(mut client: InventoryClient) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let call = client
            .list_devices(v1::ListDevicesRequest {
                page_size: 1,
                ..Default::default()
            })
            .await;
        match call {
            Ok(_) => return Ok(()),
            Err(status) if tokio::time::Instant::now() >= deadline => {
                bail!("the inventory did not come up: {}", status.message())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Imports `file` (upsert by name), or the example inventory when none is
/// given and the inventory is empty (a first start).
async fn load_inventory(mut client: InventoryClient, file: Option<&Path>) -> anyhow::Result<()> {
    let (text, source) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let existing = client
                .list_devices(v1::ListDevicesRequest {
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .context("cannot list the inventory")?
                .into_inner();
            if existing.total_count > 0 {
                println!(
                    "inventory: {} devices (from the data dir)",
                    existing.total_count
                );
                return Ok(());
            }
            (
                EXAMPLE_INVENTORY.to_string(),
                "the example inventory".to_string(),
            )
        }
    };
    let response = crate::cli::import_csv(&mut client, text.as_bytes(), &source).await?;
    println!(
        "inventory: {source}: {} created, {} updated, {} unchanged, {} failed",
        response.created, response.updated, response.unchanged, response.failed
    );
    if response.failed > 0 {
        bail!(
            "{} of {} rows of {source} failed (see `netward devices import {source} --dry-run`)",
            response.failed,
            response.total_rows
        );
    }
    Ok(())
}

/// One line per completed ping cycle: the devices per state as alerting
/// holds them, and the cycle's own figures. Polls `ListCycles` each second
/// rather than following `WatchCycles`, so a line is never lost to a stream
/// that ended or lagged (every completed cycle since the last line prints).
async fn report_cycles(
    mut planner: PlannerServiceClient<PeerChannel>,
    mut alerting: AlertingServiceClient<PeerChannel>,
    stop: CancellationToken,
) {
    let mut printed = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(listed) = planner
            .list_cycles(v1::ListCyclesRequest {
                kind: v1::ExecutorKind::Ping as i32,
                page_size: 20,
                page_token: String::new(),
            })
            .await
        else {
            continue;
        };
        let mut completed: Vec<v1::CycleSummary> = listed
            .into_inner()
            .cycles
            .into_iter()
            .filter(|c| c.completed && c.cycle_id > printed)
            .collect();
        if completed.is_empty() {
            continue;
        }
        completed.sort_by_key(|c| c.cycle_id);
        let counts = alerting
            .list_device_statuses(v1::ListDeviceStatusesRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().counts);
        for cycle in &completed {
            println!("{}", cycle_line(cycle, counts.as_ref()));
        }
        printed = completed.last().map_or(printed, |c| c.cycle_id);
    }
}

/// `cycle 12  854 devices: 850 up, 4 down, … · 9 batches, 0 skipped, 0 overruns · cycle 1.31 s`
fn cycle_line(cycle: &v1::CycleSummary, counts: Option<&v1::StateCounts>) -> String {
    let states = match counts {
        Some(c) => format!(
            "{} up, {} down, {} unreachable, {} flapping, {} unknown, {} stale",
            c.up, c.down, c.unreachable, c.flapping, c.unknown, c.stale
        ),
        None => "states not available yet".to_string(),
    };
    let mut line = format!(
        "cycle {:<5} {} devices: {states} · {} batches, {} skipped, {} overruns",
        cycle.cycle_id, cycle.device_count, cycle.batch_count, cycle.skipped, cycle.overruns
    );
    if cycle.unserved_devices > 0 {
        line.push_str(&format!(
            ", {} devices unserved (no executor)",
            cycle.unserved_devices
        ));
    }
    line.push_str(&format!(
        " · cycle {:.2} s",
        f64::from(cycle.duration_ms) / 1000.0
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_line_names_states_and_figures() {
        let cycle = v1::CycleSummary {
            cycle_id: 12,
            device_count: 854,
            batch_count: 9,
            duration_ms: 1310,
            ..Default::default()
        };
        let counts = v1::StateCounts {
            total: 854,
            up: 850,
            down: 4,
            ..Default::default()
        };
        assert_eq!(
            cycle_line(&cycle, Some(&counts)),
            "cycle 12    854 devices: 850 up, 4 down, 0 unreachable, 0 flapping, 0 unknown, \
             0 stale · 9 batches, 0 skipped, 0 overruns · cycle 1.31 s"
        );
    }

    #[test]
    fn the_secret_key_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("netward-up-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = HashMap::new();
        let first = secret_key(&dir, &env).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(secret_key(&dir, &env).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn uuid_like() -> String {
        format!("{:016x}", rand::random::<u64>())
    }
}
