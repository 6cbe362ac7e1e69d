//! `netward`: one binary for every target (`netward inventory`, `netward
//! planner`, …), like Loki's `-target`, and the operator verbs that talk to
//! them (`netward devices import`, see `cli`). Errors are reported here, at
//! the edge, with anyhow.

mod cli;
mod up;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use netward_shared::config::{ConfigLoader, Exposure, LoadedConfig, Target};
use netward_shared::server::Listeners;

/// mimalloc rather than glibc's malloc: freed memory goes back to the OS,
/// so a service's RSS follows what it holds, not the peak of its largest
/// snapshot or import (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Monitors a fleet of network devices: pings every device every 10 s, polls
/// SNMP every 60 s, stores the results, and raises alerts a network team can
/// trust.
#[derive(Debug, Parser)]
#[command(name = "netward", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process on the embedded default (SQLite under --data-dir, the example inventory on first start)
    Up(up::UpArgs),
    /// Run the inventory service: sites, devices, SNMP credentials (gRPC :50051, metrics :9551)
    Inventory(ServeArgs),
    /// Run the planner: batch sizing, cycles, assignments to executors (gRPC :50052, metrics :9552); `planner status` asks a running one
    Planner(PlannerArgs),
    /// Run alerting: result storage, device state, rules, alerts, notifications, the live status page (gRPC :50053, metrics :9553, page :8080)
    Alerting(AlertingArgs),
    /// Run a ping executor: ICMP probing of assigned devices (gRPC :50054, metrics :9554)
    PingExecutor(ServeArgs),
    /// Run an SNMP poller: SNMP polling of assigned devices (gRPC :50055, metrics :9555)
    SnmpPoller(ServeArgs),
    /// Devices in the inventory: import, list, export, generate CSV
    #[command(subcommand)]
    Devices(cli::DevicesCommand),
    /// Sites in the inventory: list
    #[command(subcommand)]
    Sites(cli::SitesCommand),
    /// SNMP credentials in the inventory: create (secrets never as arguments), list, delete
    #[command(subcommand)]
    Credentials(cli::CredentialsCommand),
    /// Alerting rules: list, create, update, enable, disable
    #[command(subcommand)]
    Rules(cli::RulesCommand),
    /// Silences and maintenance windows (one-off or weekly): create, list, delete
    #[command(subcommand)]
    Silences(cli::SilencesCommand),
    /// Batch size and count for a device count, as the planner decides them (GetSizing)
    Sizing(cli::SizingArgs),
    /// Device counts per state and the devices not UP, as alerting holds them (ListDeviceStatuses)
    Status(cli::StatusArgs),
    /// Open alerts (--all: resolved too) as a table or JSON lines; `alerts ack ID` acknowledges one
    Alerts(cli::AlertsArgs),
    /// A device's SNMP interfaces with status, ISP, rates and open alerts, as alerting holds them (ListInterfaces)
    Interfaces(cli::InterfacesArgs),
    /// Ping a device now on an executor its selector allows, through the planner (ProbeDevice); not stored
    Probe(cli::ProbeArgs),
    /// Poll a device's SNMP agent now on a poller its selector allows, through the planner (PollDevice); not stored
    Poll(cli::ProbeArgs),
    /// Recorded changes (who, what, when) of inventory, alerting and the planner, newest first (ListAuditEvents)
    Audit(cli::AuditArgs),
    /// Availability, downtime, incidents and MTTR per region, site, type or device over a period, as a table, CSV or JSON (GetAvailabilityReport)
    Availability(cli::AvailabilityArgs),
    /// Ask a target's gRPC health service (grpc.health.v1) whether it serves: exit 0 if SERVING, 1 otherwise (container health checks)
    Health(cli::HealthArgs),
    /// Tokens with a role and scope: create one (printed once, with its config entry), hash one, make a grant key
    #[command(subcommand)]
    Token(cli::TokenCommand),
}

/// `netward planner` runs the target; `netward planner status` is a client
/// verb, so the target's flags and the verbs exclude each other.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct PlannerArgs {
    #[command(subcommand)]
    verb: Option<cli::PlannerCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// `netward alerting`: the flags every target takes, and the status page's.
#[derive(Debug, Args)]
struct AlertingArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Address of the live status page (docs/web.md), or `off` [default: 127.0.0.1:8080]
    #[arg(long, env = "NETWARD_ALERTING__WEB_ADDR", value_name = "ADDR|off")]
    web_addr: Option<String>,
}

/// The flags every target takes. Each has an environment variable; a flag
/// beats its variable, which beats the config file, which beats the default.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file (shared keys at the top, the target's own in its section)
    #[arg(long, short = 'c', env = "NETWARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the gRPC server [default: 127.0.0.1:<the target's port>]
    #[arg(long, env = "NETWARD_GRPC_ADDR", value_name = "ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// Address of the Prometheus /metrics endpoint [default: 127.0.0.1:<the target's metrics port>]
    #[arg(long, env = "NETWARD_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Database URL, for targets that store data (postgres://user@host/db)
    #[arg(
        long,
        env = "NETWARD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Redis URL, for targets that use Redis (redis://host:6379)
    #[arg(
        long,
        env = "NETWARD_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    redis_url: Option<String>,
    /// Inventory service to dial [default: http://127.0.0.1:50051]
    #[arg(long, env = "NETWARD_INVENTORY_URL", value_name = "URL")]
    inventory_url: Option<String>,
    /// Planner to dial [default: http://127.0.0.1:50052]
    #[arg(long, env = "NETWARD_PLANNER_URL", value_name = "URL")]
    planner_url: Option<String>,
    /// Alerting service to dial [default: http://127.0.0.1:50053]
    #[arg(long, env = "NETWARD_ALERTING_URL", value_name = "URL")]
    alerting_url: Option<String>,
    /// Bearer token: required on every incoming call but health checks, and sent to peers (prefer the variable: a flag shows in `ps`)
    #[arg(
        long,
        env = "NETWARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Certificate chain (PEM): serve gRPC over TLS, and present it to https:// peers as client certificate
    #[arg(long, env = "NETWARD_TLS__CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, env = "NETWARD_TLS__KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that verifies https:// peers (and client certificates, with tls.require_client_cert) [default: the system's roots]
    #[arg(long, env = "NETWARD_TLS__CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Listen beyond loopback with neither TLS nor a token (config `insecure = true`, NETWARD_INSECURE=true)
    #[arg(long)]
    insecure: bool,
}

impl ServeArgs {
    fn loader(&self, target: Target, env: HashMap<String, String>) -> ConfigLoader {
        let mut loader = ConfigLoader::new(target).env(env);
        if let Some(path) = &self.config {
            loader = loader.file(path);
        }
        let path = |path: &Option<PathBuf>| path.as_ref().map(|p| p.display().to_string());
        let flags: [(&str, Option<String>); 12] = [
            ("grpc_addr", self.grpc_addr.map(|a| a.to_string())),
            ("metrics_addr", self.metrics_addr.map(|a| a.to_string())),
            ("database_url", self.database_url.clone()),
            ("redis_url", self.redis_url.clone()),
            ("inventory_url", self.inventory_url.clone()),
            ("planner_url", self.planner_url.clone()),
            ("alerting_url", self.alerting_url.clone()),
            ("token", self.token.clone()),
            ("tls.cert", path(&self.tls_cert)),
            ("tls.key", path(&self.tls_key)),
            ("tls.ca", path(&self.tls_ca)),
            // Only when given: `insecure = true` from the file or variable stays.
            ("insecure", self.insecure.then(|| "true".to_string())),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                loader = loader.set(key, value);
            }
        }
        loader
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything dials or serves TLS (docs/security.md, "TLS").
    netward_shared::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("netward: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // `netward devices export | head`: the reader has all it wants.
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netward: error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, as `{:#}` writes them, but without
/// a cause its parent already spelled out (an error that shows its source in
/// its own message would otherwise print it twice).
pub(crate) fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Inventory(args) => serve(Target::Inventory, args).await,
        Command::Planner(PlannerArgs {
            verb: Some(verb), ..
        }) => cli::planner(verb).await,
        Command::Planner(PlannerArgs {
            verb: None,
            serve: args,
        }) => serve(Target::Planner, args).await,
        Command::Alerting(AlertingArgs {
            serve: args,
            web_addr,
        }) => {
            let extra: Vec<(&str, String)> = web_addr
                .map(|addr| ("alerting.web_addr", addr))
                .into_iter()
                .collect();
            serve_with(Target::Alerting, args, &extra).await
        }
        Command::PingExecutor(args) => serve(Target::PingExecutor, args).await,
        Command::SnmpPoller(args) => serve(Target::SnmpPoller, args).await,
        Command::Devices(command) => cli::devices(command).await,
        Command::Sites(command) => cli::sites(command).await,
        Command::Credentials(command) => cli::credentials(command).await,
        Command::Rules(command) => cli::rules(command).await,
        Command::Silences(command) => cli::silences(command).await,
        Command::Sizing(args) => cli::sizing(args).await,
        Command::Status(args) => cli::status(args).await,
        Command::Alerts(args) => cli::alerts(args).await,
        Command::Interfaces(args) => cli::interfaces(args).await,
        Command::Probe(args) => cli::probe(args).await,
        Command::Poll(args) => cli::poll(args).await,
        Command::Audit(args) => cli::audit(args).await,
        Command::Availability(args) => cli::availability(args).await,
        Command::Health(args) => cli::health(args).await,
        Command::Token(command) => cli::token(command),
    }
}

/// Loads the configuration, starts telemetry, binds, and runs one target
/// until SIGTERM or Ctrl-C.
async fn serve(target: Target, args: ServeArgs) -> anyhow::Result<()> {
    serve_with(target, args, &[]).await
}

/// [`serve`] with settings of the target's own flags (`alerting.web_addr`).
async fn serve_with(
    target: Target,
    args: ServeArgs,
    extra: &[(&str, String)],
) -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut loader = args.loader(target, env.clone());
    for (key, value) in extra {
        loader = loader.set(key, value);
    }
    let config = loader.load()?;
    config.common.tls.validate()?;
    let exposure = config.common.check_exposure()?;
    let _telemetry = netward_shared::telemetry::init(target.name(), &config.common.log, &env)?;
    if exposure == Exposure::Insecure {
        tracing::warn!(
            grpc_addr = %config.common.grpc_addr,
            "--insecure: listening beyond loopback with neither TLS nor a token; \
             anyone who reaches this address can call every RPC"
        );
    }
    let mut listeners = Listeners::bind(&config.common).await?;
    if target == Target::Alerting {
        listeners.web = netward_alerting::web::bind(&config).await?;
    }
    let shutdown = netward_shared::shutdown::signal();
    run_target(target, &config, listeners, shutdown)
        .await
        .with_context(|| format!("{target} stopped with an error"))
}

/// One target's service code until `shutdown`: what `netward <target>`
/// runs, and each of the five `netward up` runs.
async fn run_target(
    target: Target,
    config: &LoadedConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    match target {
        Target::Inventory => Ok(netward_inventory::run(config, listeners, shutdown).await?),
        Target::Planner => Ok(netward_planner::run(config, listeners, shutdown).await?),
        Target::Alerting => Ok(netward_alerting::run(config, listeners, shutdown).await?),
        Target::PingExecutor => Ok(netward_ping_executor::run(config, listeners, shutdown).await?),
        Target::SnmpPoller => Ok(netward_snmp_poller::run(config, listeners, shutdown).await?),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Every verb's flags are consistent (no two named alike, every
    /// `requires` names a flag that exists): clap checks them here, not at
    /// an operator's first use of the verb.
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
