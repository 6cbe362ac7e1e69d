//! Where the services are and how to authenticate, for the verbs that call
//! more than one of them (`netward audit`, `netward rules`, `netward
//! silences`): one set of URLs, one token, one TLS setting, so the flags
//! are spelled once and never conflict when flattened.

use anyhow::Context as _;
use clap::Args;
use netward_shared::client::PeerChannel;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::tonic::Status;

use super::{TlsArgs, describe_status};

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Inventory service to call
    #[arg(
        long,
        env = "NETWARD_INVENTORY_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub inventory_url: String,
    /// Planner service to call
    #[arg(
        long,
        env = "NETWARD_PLANNER_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub planner_url: String,
    /// Alerting service to call
    #[arg(
        long,
        env = "NETWARD_ALERTING_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub alerting_url: String,
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

/// Which service a call went to, for its error message.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Inventory,
    Alerting,
}

impl ServicesArgs {
    fn channel(&self, url: &str, what: &str) -> anyhow::Result<PeerChannel> {
        let options = self.tls.client_options(self.token.as_ref());
        netward_shared::client::connect(url, &options)
            .with_context(|| format!("cannot set up the {what} client for {url}"))
    }

    /// Clients on lazy channels: nothing is dialled until the first call.
    pub fn inventory(&self) -> anyhow::Result<InventoryServiceClient<PeerChannel>> {
        Ok(InventoryServiceClient::new(
            self.channel(&self.inventory_url, "inventory")?,
        ))
    }

    pub fn planner(&self) -> anyhow::Result<PlannerServiceClient<PeerChannel>> {
        Ok(PlannerServiceClient::new(
            self.channel(&self.planner_url, "planner")?,
        ))
    }

    pub fn alerting(&self) -> anyhow::Result<AlertingServiceClient<PeerChannel>> {
        Ok(AlertingServiceClient::new(
            self.channel(&self.alerting_url, "alerting")?,
        ))
    }

    pub fn url(&self, service: Service) -> &str {
        match service {
            Service::Inventory => &self.inventory_url,
            Service::Alerting => &self.alerting_url,
        }
    }

    /// `CreateRule at http://127.0.0.1:50053: INVALID_ARGUMENT: …`.
    pub fn call_failed(&self, service: Service, rpc: &str, status: &Status) -> anyhow::Error {
        anyhow::anyhow!(
            "{rpc} at {}: {}",
            self.url(service),
            describe_status(status)
        )
    }
}
