//! The operator verbs (`netward devices …`, `netward sites …`, `netward
//! sizing`, `netward planner status`, `netward status`, `netward alerts …`,
//! `netward interfaces DEVICE`, `netward audit`, `netward credentials|rules|silences …`,
//! `netward probe|poll DEVICE`): clients of the inventory's, the planner's
//! and alerting's gRPC APIs that print tables, JSON lines or CSV; and
//! `netward health`, the gRPC health check container probes run. The flags
//! and the dispatch live here, each verb in its own module.

mod alerting;
mod audit;
mod availability;
mod credentials;
mod csv_format;
mod devices;
mod generate;
mod health;
mod interfaces;
mod planner;
mod probe;
mod rules;
mod selectors;
mod services;
mod silences;
mod sites;
mod table;
mod token;
mod when;
mod words;

use std::io;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use netward_shared::client::{ClientOptions, PeerChannel};
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::secret::Secret;
use netward_shared::tls::TlsConfig;
use netward_shared::tonic::Status;

pub use token::TokenCommand;

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Import devices from a CSV file (upsert by name) and report every bad line
    Import(devices::ImportArgs),
    /// List devices as a table, or as JSON lines with --json
    List(devices::ListArgs),
    /// Write devices as CSV (the import format) to standard output
    Export(devices::ExportArgs),
    /// Write a synthetic fleet, or the example inventory, as CSV to standard output
    Generate(generate::GenerateArgs),
    /// Follow the inventory's changes as the planner and alerting do (WatchDevices)
    Watch(devices::WatchArgs),
}

#[derive(Debug, Subcommand)]
pub enum SitesCommand {
    /// List sites as a table, or as JSON lines with --json
    List(sites::ListArgs),
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Create an SNMP credential; secrets from NETWARD_SNMP_* variables, a prompt, or standard input, never arguments
    Create(credentials::CreateArgs),
    /// List credentials (never their secrets) as a table, or as JSON lines with --json
    List(credentials::ListArgs),
    /// Delete a credential by name or id (refused while devices use it)
    Delete(credentials::DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List rules as a table, or as JSON lines with --json
    List(rules::ListArgs),
    /// Create a rule
    Create(rules::CreateArgs),
    /// Change the fields given of a rule (by id, id prefix or name)
    Update(rules::UpdateArgs),
    /// Enable a rule
    Enable(rules::ToggleArgs),
    /// Disable a rule (built-in rules too; its open alerts resolve)
    Disable(rules::ToggleArgs),
}

#[derive(Debug, Subcommand)]
pub enum SilencesCommand {
    /// Create a silence or maintenance window, one-off or weekly, by site, type, tag or device
    Create(Box<silences::CreateArgs>),
    /// List current silences (--all: expired too) as a table, or as JSON lines with --json
    List(silences::ListArgs),
    /// End a silence now (by id or id prefix)
    Delete(silences::DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub enum PlannerCommand {
    /// Show the leader, the connected executors and the last cycles as tables, or as JSON with --json
    Status(planner::StatusArgs),
}

/// `netward alerts` lists; `netward alerts ack ID` acknowledges: the
/// listing's flags and the verb exclude each other.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsArgs {
    #[command(subcommand)]
    verb: Option<AlertsCommand>,
    #[command(flatten)]
    list: alerting::ListArgs,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Acknowledge an open alert (AckAlert) by its id or an unambiguous prefix of it
    Ack(alerting::AckArgs),
}

pub use alerting::StatusArgs;
pub use audit::AuditArgs;
pub use availability::AvailabilityArgs;
pub use devices::import_csv;
pub use health::HealthArgs;
pub use interfaces::InterfacesArgs;
pub use planner::SizingArgs;
pub use probe::ProbeArgs;

pub async fn devices(command: DevicesCommand) -> anyhow::Result<()> {
    match command {
        DevicesCommand::Import(args) => devices::import(args).await,
        DevicesCommand::List(args) => devices::list(args).await,
        DevicesCommand::Export(args) => devices::export(args).await,
        DevicesCommand::Generate(args) => generate::run(&args),
        DevicesCommand::Watch(args) => devices::watch(args).await,
    }
}

pub async fn sites(command: SitesCommand) -> anyhow::Result<()> {
    match command {
        SitesCommand::List(args) => sites::list(args).await,
    }
}

pub async fn credentials(command: CredentialsCommand) -> anyhow::Result<()> {
    match command {
        CredentialsCommand::Create(args) => credentials::create(args).await,
        CredentialsCommand::List(args) => credentials::list(args).await,
        CredentialsCommand::Delete(args) => credentials::delete(args).await,
    }
}

pub async fn rules(command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::List(args) => rules::list(args).await,
        RulesCommand::Create(args) => rules::create(args).await,
        RulesCommand::Update(args) => rules::update(args).await,
        RulesCommand::Enable(args) => rules::set_enabled(args, true).await,
        RulesCommand::Disable(args) => rules::set_enabled(args, false).await,
    }
}

pub async fn silences(command: SilencesCommand) -> anyhow::Result<()> {
    match command {
        SilencesCommand::Create(args) => silences::create(*args).await,
        SilencesCommand::List(args) => silences::list(args).await,
        SilencesCommand::Delete(args) => silences::delete(args).await,
    }
}

pub async fn planner(command: PlannerCommand) -> anyhow::Result<()> {
    match command {
        PlannerCommand::Status(args) => planner::status(args).await,
    }
}

pub async fn sizing(args: SizingArgs) -> anyhow::Result<()> {
    planner::sizing(args).await
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    alerting::status(args).await
}

pub async fn alerts(args: AlertsArgs) -> anyhow::Result<()> {
    match args.verb {
        Some(AlertsCommand::Ack(args)) => alerting::ack(args).await,
        None => alerting::list(args.list).await,
    }
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    audit::run(args).await
}

pub async fn availability(args: AvailabilityArgs) -> anyhow::Result<()> {
    availability::run(args).await
}

pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    health::run(args).await
}

pub fn token(command: TokenCommand) -> anyhow::Result<()> {
    token::run(command)
}

pub async fn interfaces(args: InterfacesArgs) -> anyhow::Result<()> {
    interfaces::run(args).await
}

pub async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    probe::probe(args).await
}

pub async fn poll(args: ProbeArgs) -> anyhow::Result<()> {
    probe::poll(args).await
}

/// Where the inventory is and how to authenticate: every verb that calls it takes these.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Inventory service to call
    #[arg(
        long,
        env = "NETWARD_INVENTORY_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    inventory_url: String,
    /// Bearer token sent with every call
    #[arg(
        long,
        env = "NETWARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// How the verbs reach `https://` services: the CA that verifies them and,
/// for services that demand one, a client certificate.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) that verifies https:// services [default: the system's roots]
    #[arg(long, env = "NETWARD_TLS__CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for services that require one (with --tls-key)
    #[arg(
        long,
        env = "NETWARD_TLS__CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(
        long,
        env = "NETWARD_TLS__KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn config(&self) -> TlsConfig {
        TlsConfig {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            require_client_cert: false,
        }
    }

    /// True when any TLS setting is given.
    fn any(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some()
    }

    /// The token and TLS settings a verb's client dials with.
    fn client_options(&self, token: Option<&String>) -> ClientOptions {
        ClientOptions {
            token: token.cloned().map(Secret::new),
            tls: self.config(),
        }
    }
}

pub type InventoryClient = InventoryServiceClient<PeerChannel>;

impl InventoryArgs {
    /// A client on a lazy channel: nothing is dialled until the first call.
    fn client(&self) -> anyhow::Result<InventoryClient> {
        let options = self.tls.client_options(self.token.as_ref());
        let channel = netward_shared::client::connect(&self.inventory_url, &options)
            .context("cannot set up the inventory client")?;
        Ok(InventoryServiceClient::new(channel))
    }

    fn call_failed(&self, rpc: &str, status: &Status) -> anyhow::Error {
        call_failed(rpc, &self.inventory_url, status)
    }
}

/// An error for a failed call, naming the RPC, the service's URL, and the
/// status code and message the operator can act on
/// (`GetDevice at http://127.0.0.1:50051: UNAVAILABLE: …`).
fn call_failed(rpc: &str, url: &str, status: &Status) -> anyhow::Error {
    anyhow::anyhow!("{rpc} at {url}: {}", describe_status(status))
}

/// `NOT_FOUND: unknown site "x"`. Transport failures put the useful part
/// (e.g. "connection refused") in the error source, so it is added.
fn describe_status(status: &Status) -> String {
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        let message = error.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = error.source();
    }
    text
}

/// The canonical gRPC name of a code (`INVALID_ARGUMENT`), as grpcurl and the proto comments spell it.
fn code_name(code: netward_shared::tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// True when the error comes from writing into a closed pipe
/// (`netward devices export | head`), which is not worth an error message.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use netward_shared::tonic::Code;

    use super::*;

    #[test]
    fn codes_are_named_as_in_the_grpc_spec() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(
            describe_status(&Status::new(Code::Unauthenticated, "missing token")),
            "UNAUTHENTICATED: missing token"
        );
    }

    #[test]
    fn a_closed_pipe_is_recognised_through_context() {
        let error = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("cannot write the csv");
        assert!(is_broken_pipe(&error));
        assert!(!is_broken_pipe(&anyhow::anyhow!("something else")));
    }
}
