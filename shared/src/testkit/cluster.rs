//! One way for every test to start netward: a [`ClusterBuilder`] says
//! which targets run (each as the real binary or in the test's process), on
//! what database, with or without Redis, with which devices and how many
//! executors; [`ClusterBuilder::start`] starts them in dependency order and
//! returns only once the cluster is ready — devices imported, the
//! planner's and alerting's copies of the inventory holding them, every
//! executor registered with the planner — by waiting on those conditions,
//! never on a guessed time.
//!
//! ```text
//! let cluster = support::cluster()          // binary + in-process runners
//!     .planner().alerting().ping_executors(2)
//!     .devices(fleet("br", [127, 52], 50, 25))
//!     .ping_interval(Duration::from_secs(2))
//!     .start().await;
//! let mut alerting = cluster.alerting_client();
//! ```
//!
//! Settings are `NETWARD_*` variables, given to a binary as its environment
//! and to an in-process target through [`ConfigLoader::env`], so both run
//! on the same configuration. The inventory runs unless the test says
//! [`ClusterBuilder::no_inventory`] (every other target follows it); a
//! fresh PostgreSQL database is made when the inventory or alerting runs and
//! dropped with the cluster (or SQLite files, [`ClusterBuilder::sqlite`]).
//! A service crate's own tests, which cannot run the others, start their
//! target alone: `ClusterBuilder::new().runner(T, run).in_process(T)
//! .no_inventory()`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::process::{Process, Spawn};
use super::{TestDatabase, eventually};
use crate::client::{ClientOptions, PeerChannel, connect};
use crate::config::{ConfigLoader, LoadedConfig, Target};
use crate::proto::v1;
use crate::proto::v1::alerting_service_client::AlertingServiceClient;
use crate::proto::v1::executor_service_client::ExecutorServiceClient;
use crate::proto::v1::import_devices_request::Item;
use crate::proto::v1::inventory_service_client::InventoryServiceClient;
use crate::proto::v1::planner_service_client::PlannerServiceClient;
use crate::secret::Secret;
use crate::server::Listeners;

/// A target's `run(config, listeners, shutdown)`, for running it in the
/// test's process: the crate that can name the service crates registers
/// them ([`ClusterBuilder::runner`]).
pub type Runner = Arc<
    dyn Fn(LoadedConfig, Listeners, CancellationToken) -> BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

/// A [`Runner`] from a service crate's `run`:
/// `runner(|config, listeners, stop| async move {
///     netward_x::run(&config, listeners, stop.cancelled_owned()).await })`.
pub fn runner<F, Fut, E>(run: F) -> Runner
where
    F: Fn(LoadedConfig, Listeners, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    Arc::new(move |config, listeners, stop| {
        let ran = run(config, listeners, stop);
        Box::pin(async move { ran.await.map_err(|error| error.to_string()) })
    })
}

/// An address nobody serves (port 1 on loopback): a peer URL for a target
/// whose peer the test does not run (its calls fail and are retried).
pub const NOBODY: &str = "http://127.0.0.1:1";

/// How long a cluster may take to become ready.
const READY: Duration = Duration::from_secs(60);

/// A `NETWARD_*` variable for every target, every target of a kind, or
/// the `index`th of a kind.
#[derive(Clone)]
struct Setting {
    target: Option<Target>,
    index: Option<usize>,
    key: String,
    value: String,
}

impl Setting {
    fn new(target: Option<Target>, index: Option<usize>, key: &str, value: &str) -> Self {
        Self {
            target,
            index,
            key: key.to_string(),
            value: value.to_string(),
        }
    }
}

/// What to start; see the module documentation.
#[derive(Default)]
pub struct ClusterBuilder {
    /// A database the test prepared before the cluster starts.
    database: Option<TestDatabase>,
    binary: Option<PathBuf>,
    runners: HashMap<Target, Runner>,
    in_process: Vec<Target>,
    no_inventory: bool,
    sqlite: bool,
    planner: bool,
    alerting: bool,
    ping_executors: usize,
    snmp_pollers: usize,
    redis: bool,
    devices: Vec<v1::ImportRow>,
    settings: Vec<Setting>,
    /// TOML for one target, written to a file it is started with.
    configs: Vec<(Target, String)>,
    token: Option<String>,
}

impl ClusterBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `netward` binary, for the targets not run in process.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// How to run `target` in process, when the test asks for that.
    pub fn runner(mut self, target: Target, runner: Runner) -> Self {
        self.runners.insert(target, runner);
        self
    }

    /// Runs `target` in the test's process rather than as the binary (the
    /// test can then reach its internals; no process boundary to fault).
    pub fn in_process(mut self, target: Target) -> Self {
        self.in_process.push(target);
        self
    }

    /// No inventory: the other targets are given [`NOBODY`] as its URL (a
    /// service's own tests, of a target that runs without it).
    pub fn no_inventory(mut self) -> Self {
        self.no_inventory = true;
        self
    }

    /// The inventory and alerting on a SQLite file of the cluster's own
    /// (the embedded default) rather than a PostgreSQL database.
    pub fn sqlite(mut self) -> Self {
        self.sqlite = true;
        self
    }

    /// Runs on `database`, which the test filled before the start (the
    /// cluster drops it).
    pub fn database(mut self, database: TestDatabase) -> Self {
        self.database = Some(database);
        self
    }

    pub fn planner(mut self) -> Self {
        self.planner = true;
        self
    }

    pub fn alerting(mut self) -> Self {
        self.alerting = true;
        self
    }

    /// `count` ping executors, dialling the planner and alerting (or
    /// [`NOBODY`] for the one the cluster does not run). Each picks its own
    /// id, as in production, unless the test sets one per executor with
    /// [`ClusterBuilder::executor_ids`].
    pub fn ping_executors(mut self, count: usize) -> Self {
        self.ping_executors = count;
        self
    }

    pub fn snmp_pollers(mut self, count: usize) -> Self {
        self.snmp_pollers = count;
        self
    }

    /// The test Redis (`NETWARD_TEST_REDIS_URL`, default
    /// `redis://127.0.0.1:6379`) for the planner and alerting, with a lease
    /// key prefix of this cluster's own so parallel tests never share a
    /// leader.
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// Devices imported through `ImportDevices` before the planner starts.
    pub fn devices(mut self, rows: Vec<v1::ImportRow>) -> Self {
        self.devices = rows;
        self
    }

    /// The planner's ping interval.
    pub fn ping_interval(self, interval: Duration) -> Self {
        self.set_for(
            Target::Planner,
            "NETWARD_PLANNER__PING_INTERVAL",
            &format!("{}ms", interval.as_millis()),
        )
    }

    /// The bearer token every target requires and sends to its peers; the
    /// cluster's clients send it too.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self.set("NETWARD_TOKEN", token)
    }

    /// The token the cluster's own clients send (its import, its readiness
    /// checks, its `*_client()`s) when the targets take their tokens from
    /// an `[auth]` configuration rather than [`ClusterBuilder::token`]'s
    /// `NETWARD_TOKEN`.
    pub fn client_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// A `NETWARD_*` setting for every target.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.push(Setting::new(None, None, key, value));
        self
    }

    /// A `NETWARD_*` setting for one target (for every executor of a kind).
    pub fn set_for(mut self, target: Target, key: &str, value: &str) -> Self {
        self.settings
            .push(Setting::new(Some(target), None, key, value));
        self
    }

    /// A TOML configuration file for `target` (sections such as
    /// `[alerting.rates]` or `[ping_executor.labels]`).
    pub fn config(mut self, target: Target, toml: &str) -> Self {
        self.configs.push((target, toml.to_string()));
        self
    }

    /// A TOML configuration file for every target (what they all share,
    /// such as `[auth]`), as [`ClusterBuilder::config`] for each.
    pub fn config_all(mut self, toml: &str) -> Self {
        for target in Target::ALL {
            self.configs.push((target, toml.to_string()));
        }
        self
    }

    /// Executor `i` of its kind gets the id `ids[i]` (the rest pick theirs).
    pub fn executor_ids(mut self, target: Target, ids: &[&str]) -> Self {
        let key = format!("NETWARD_{}__EXECUTOR_ID", target.section().to_uppercase());
        for (i, id) in ids.iter().enumerate() {
            self.settings
                .push(Setting::new(Some(target), Some(i), &key, id));
        }
        self
    }

    /// Starts the cluster and waits until it is ready (see the module docs).
    pub async fn start(self) -> Cluster {
        self.try_start()
            .await
            .unwrap_or_else(|error| panic!("the cluster did not start: {error}"))
    }

    /// As [`ClusterBuilder::start`], but an in-process target that fails to
    /// start is an `Err` with its error, for tests of start-up refusals (a
    /// binary that fails to start panics with its log).
    pub async fn try_start(mut self) -> Result<Cluster, String> {
        let scratch = ScratchDir::new("cluster");
        let stores = !self.no_inventory || self.alerting;
        // Nothing stores (a lone executor): no PostgreSQL database to make.
        let database = if let Some(database) = self.database.take() {
            Storage::Postgres(database)
        } else if self.sqlite || !stores {
            Storage::sqlite()
        } else {
            Storage::postgres().await
        };
        let mut cluster = Cluster {
            builder: self,
            database,
            scratch,
            inventory: None,
            planner: None,
            alerting: None,
            ping_executors: Vec::new(),
            snmp_pollers: Vec::new(),
            ids: HashMap::new(),
            imported: None,
            redis_prefix: format!("netward-test-{}", uuid::Uuid::new_v4().simple()),
        };
        if !cluster.builder.no_inventory {
            cluster.inventory = Some(cluster.launch(Target::Inventory, 0).await?);
            let rows = std::mem::take(&mut cluster.builder.devices);
            if !rows.is_empty() {
                cluster.import(&rows).await;
            }
        }
        if cluster.builder.planner {
            cluster.planner = Some(cluster.launch(Target::Planner, 0).await?);
        }
        if cluster.builder.alerting {
            cluster.alerting = Some(cluster.launch(Target::Alerting, 0).await?);
        }
        for i in 0..cluster.builder.ping_executors {
            let node = cluster.launch(Target::PingExecutor, i).await?;
            cluster.ping_executors.push(node);
        }
        for i in 0..cluster.builder.snmp_pollers {
            let node = cluster.launch(Target::SnmpPoller, i).await?;
            cluster.snmp_pollers.push(node);
        }
        cluster.ready().await;
        Ok(cluster)
    }
}

/// A running cluster. Dropping it stops every target (processes are
/// killed, in-process targets cancelled) and drops the database.
pub struct Cluster {
    // Fields drop in this order: executors, then the services they feed,
    // then the database under them.
    pub ping_executors: Vec<Node>,
    pub snmp_pollers: Vec<Node>,
    pub alerting: Option<Node>,
    pub planner: Option<Node>,
    pub inventory: Option<Node>,
    pub database: Storage,
    builder: ClusterBuilder,
    scratch: ScratchDir,
    /// Every imported device's id, by name.
    pub ids: HashMap<String, String>,
    /// What the import answered.
    pub imported: Option<v1::ImportDevicesResponse>,
    redis_prefix: String,
}

impl Cluster {
    fn node(node: &Option<Node>, target: Target) -> &Node {
        node.as_ref()
            .unwrap_or_else(|| panic!("this cluster runs no {target}"))
    }

    pub fn inventory_url(&self) -> String {
        Self::node(&self.inventory, Target::Inventory).url()
    }

    pub fn planner_url(&self) -> String {
        Self::node(&self.planner, Target::Planner).url()
    }

    pub fn alerting_url(&self) -> String {
        Self::node(&self.alerting, Target::Alerting).url()
    }

    /// The database's URL (for a test's own connections): PostgreSQL's, or
    /// the inventory's SQLite file.
    pub fn database_url(&self) -> String {
        self.database.url(Target::Inventory)
    }

    /// The PostgreSQL database; panics on SQLite.
    pub fn postgres(&self) -> &TestDatabase {
        match &self.database {
            Storage::Postgres(database) => database,
            Storage::Sqlite(_) => panic!("this cluster runs on SQLite"),
        }
    }

    /// What the cluster's clients send: its token, if it has one.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            token: self.builder.token.clone().map(Secret::new),
            ..Default::default()
        }
    }

    fn channel(&self, url: &str) -> PeerChannel {
        connect(url, &self.client_options()).expect("a client of the cluster")
    }

    pub fn inventory_client(&self) -> InventoryServiceClient<PeerChannel> {
        InventoryServiceClient::new(self.channel(&self.inventory_url()))
    }

    pub fn planner_client(&self) -> PlannerServiceClient<PeerChannel> {
        PlannerServiceClient::new(self.channel(&self.planner_url()))
    }

    pub fn alerting_client(&self) -> AlertingServiceClient<PeerChannel> {
        AlertingServiceClient::new(self.channel(&self.alerting_url()))
    }

    pub fn executor_client(&self, node: &Node) -> ExecutorServiceClient<PeerChannel> {
        ExecutorServiceClient::new(self.channel(&node.url()))
    }

    /// The id of an imported device, by name.
    pub fn id(&self, name: &str) -> &str {
        self.ids
            .get(name)
            .unwrap_or_else(|| panic!("no device {name} was imported"))
    }

    /// Starts one more ping executor (after a test killed one, say) and
    /// waits until the planner holds its session; `settings` on top of the
    /// cluster's.
    pub async fn add_ping_executor(&mut self, settings: &[(&str, &str)]) -> &Node {
        let before = self.sessions(v1::ExecutorKind::Ping).await;
        let index = usize::MAX;
        let node = self
            .launch_with(Target::PingExecutor, index, settings)
            .await
            .unwrap_or_else(|error| panic!("the ping executor did not start: {error}"));
        self.ping_executors.push(node);
        if self.planner.is_some() {
            self.wait_sessions(v1::ExecutorKind::Ping, before + 1).await;
        }
        self.ping_executors.last().expect("just pushed")
    }

    /// Starts one more node of `target` with the cluster's settings and
    /// `settings` on top (an empty value unsets a key), on ports of its own,
    /// and hands it to the test: a standby planner, or alerting again after
    /// the test killed the first (put it back in the cluster's field to use
    /// the cluster's client).
    pub async fn start_another(&self, target: Target, settings: &[(&str, &str)]) -> Node {
        self.try_start_another(target, settings)
            .await
            .unwrap_or_else(|error| panic!("{target} did not start: {error}"))
    }

    /// As [`Cluster::start_another`], with `Err` carrying the error of an
    /// in-process target that refuses to start.
    pub async fn try_start_another(
        &self,
        target: Target,
        settings: &[(&str, &str)],
    ) -> Result<Node, String> {
        self.launch_with(target, usize::MAX, settings).await
    }

    /// Waits until the planner holds `count` sessions of `kind`.
    pub async fn wait_sessions(&self, kind: v1::ExecutorKind, count: usize) {
        let client = self.planner_client();
        eventually(
            &format!("{count} {kind:?} executor sessions at the planner"),
            READY,
            || {
                let mut client = client.clone();
                async move {
                    let listed = client
                        .list_executors(v1::ListExecutorsRequest { kind: kind as i32 })
                        .await
                        .ok()?
                        .into_inner();
                    (listed.executors.len() == count).then_some(())
                }
            },
        )
        .await;
    }

    async fn sessions(&self, kind: v1::ExecutorKind) -> usize {
        if self.planner.is_none() {
            return 0;
        }
        self.planner_client()
            .list_executors(v1::ListExecutorsRequest { kind: kind as i32 })
            .await
            .map(|r| r.into_inner().executors.len())
            .unwrap_or(0)
    }

    async fn launch(&self, target: Target, index: usize) -> Result<Node, String> {
        self.launch_with(target, index, &[]).await
    }

    /// The environment of the `index`th target of its kind.
    fn environment(
        &self,
        target: Target,
        index: usize,
        extra: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            env.insert(key.to_string(), value);
        };
        if matches!(target, Target::Inventory | Target::Alerting) {
            put("NETWARD_DATABASE_URL", self.database.url(target));
        }
        let url = |node: &Option<Node>| node.as_ref().map_or(NOBODY.to_string(), Node::url);
        put("NETWARD_INVENTORY_URL", url(&self.inventory));
        put("NETWARD_PLANNER_URL", url(&self.planner));
        put("NETWARD_ALERTING_URL", url(&self.alerting));
        if self.builder.redis && matches!(target, Target::Planner | Target::Alerting) {
            put("NETWARD_REDIS_URL", redis_url());
            put(
                "NETWARD_PLANNER__LEASE__KEY_PREFIX",
                self.redis_prefix.clone(),
            );
        }
        for setting in &self.builder.settings {
            if setting.target.is_none_or(|t| t == target)
                && setting.index.is_none_or(|i| i == index)
            {
                put(&setting.key, setting.value.clone());
            }
        }
        for (key, value) in extra {
            put(key, value.to_string());
        }
        env.retain(|_, value| !value.is_empty());
        env
    }

    async fn launch_with(
        &self,
        target: Target,
        index: usize,
        extra: &[(&str, &str)],
    ) -> Result<Node, String> {
        let env = self.environment(target, index, extra);
        let config = self
            .builder
            .configs
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, toml)| toml.as_str())
            .collect::<Vec<_>>();
        let config_file = (!config.is_empty()).then(|| {
            let file = self.scratch.path().join(format!(
                "{}-{}.toml",
                target.name(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::write(&file, config.join("\n")).expect("write a config file");
            file
        });
        if self.builder.in_process.contains(&target) {
            let runner = self
                .builder
                .runners
                .get(&target)
                .unwrap_or_else(|| panic!("no in-process runner for {target} was registered"))
                .clone();
            Node::in_process(target, runner, env, config_file.as_deref()).await
        } else {
            let binary = self
                .builder
                .binary
                .as_deref()
                .unwrap_or_else(|| panic!("{target} runs as a binary, and none was given"));
            let mut args = Vec::new();
            if let Some(file) = &config_file {
                args.extend(["--config".to_string(), file.display().to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let process = Process::start(Spawn {
                binary,
                target: target.name(),
                grpc_addr: "127.0.0.1:0",
                args: &args,
                env: &env,
            })
            .await;
            Ok(Node {
                target,
                grpc_addr: process.grpc_addr,
                metrics_addr: process.metrics_addr,
                web_addr: process.web_addr,
                running: Running::Process(Box::new(process)),
            })
        }
    }

    /// Imports `rows`; their ids join [`Cluster::ids`], the answer is kept
    /// in [`Cluster::imported`].
    async fn import(&mut self, rows: &[v1::ImportRow]) {
        let mut messages = vec![v1::ImportDevicesRequest {
            item: Some(Item::Options(v1::ImportOptions::default())),
        }];
        messages.extend(rows.chunks(1000).map(|chunk| v1::ImportDevicesRequest {
            item: Some(Item::Rows(v1::ImportRows {
                rows: chunk.to_vec(),
            })),
        }));
        let client = self.inventory_client();
        let imported = eventually("the inventory imports the devices", READY, || {
            let mut client = client.clone();
            let messages = messages.clone();
            async move {
                client
                    .import_devices(futures::stream::iter(messages))
                    .await
                    .ok()
            }
        })
        .await
        .into_inner();
        assert_eq!(imported.failed, 0, "import errors: {:?}", imported.errors);
        let mut client = self.inventory_client();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_devices(v1::ListDevicesRequest {
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("list the imported devices")
                .into_inner();
            self.ids
                .extend(page.devices.into_iter().map(|d| (d.name, d.id)));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        self.imported = Some(imported);
    }

    /// Ready: the planner's and alerting's copies of the inventory hold
    /// every imported device, and every executor has its session at the
    /// planner.
    async fn ready(&self) {
        self.wait_copies().await;
        if self.planner.is_some() {
            self.wait_sessions(v1::ExecutorKind::Ping, self.ping_executors.len())
                .await;
            self.wait_sessions(v1::ExecutorKind::Snmp, self.snmp_pollers.len())
                .await;
        }
    }

    /// Waits until the planner's and alerting's copies of the inventory hold
    /// every imported device: a process's `netward_inventory_copy_devices`
    /// gauge; in process (where targets share the test's one recorder),
    /// alerting answering for a device.
    pub async fn wait_copies(&self) {
        let devices = self.ids.len();
        if devices == 0 {
            return;
        }
        for node in [&self.planner, &self.alerting].into_iter().flatten() {
            if node.process().is_some() {
                let metrics = node.metrics_addr;
                eventually(
                    &format!(
                        "{}'s copy of the inventory holds {devices} devices",
                        node.target
                    ),
                    READY,
                    || async move {
                        (scrape_gauge(metrics, "netward_inventory_copy_devices").await?
                            == devices as f64)
                            .then_some(())
                    },
                )
                .await;
            } else if node.target == Target::Alerting {
                let client = self.alerting_client();
                let ids: Vec<String> = self.ids.values().cloned().collect();
                eventually("alerting follows the inventory", READY, || {
                    let mut client = client.clone();
                    let ids = ids.clone();
                    async move {
                        for device_id in ids {
                            let request = v1::GetDeviceStatusRequest { device_id };
                            client.get_device_status(request).await.ok()?;
                        }
                        Some(())
                    }
                })
                .await;
            }
        }
    }

    /// Imports `rows` into the running cluster (devices that need something
    /// created in the inventory first, such as their SNMP credential); their
    /// ids join [`Cluster::ids`], and the planner's and alerting's copies
    /// hold them when it returns. Returns what the import answered.
    pub async fn import_devices(&mut self, rows: Vec<v1::ImportRow>) -> v1::ImportDevicesResponse {
        self.import(&rows).await;
        self.wait_copies().await;
        self.imported.clone().expect("the import's answer")
    }

    /// Takes the (last) node of `target` out of the cluster, for a test
    /// that stops or signals it while the rest runs on.
    pub fn take(&mut self, target: Target) -> Node {
        match target {
            Target::Inventory => self.inventory.take(),
            Target::Planner => self.planner.take(),
            Target::Alerting => self.alerting.take(),
            Target::PingExecutor => self.ping_executors.pop(),
            Target::SnmpPoller => self.snmp_pollers.pop(),
        }
        .unwrap_or_else(|| panic!("this cluster runs no {target}"))
    }

    /// Writes `text` to `name` in the cluster's scratch directory (removed
    /// with the cluster): a config file for a process the test starts itself.
    pub fn scratch_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.scratch.path().join(name);
        std::fs::write(&path, text).expect("write a scratch file");
        path
    }

    /// Stops every target with a clean shutdown, executors first, then the
    /// services they feed, and panics with the log of any that did not
    /// end cleanly (a test of a clean exit; dropping the cluster kills).
    pub async fn stop_all(mut self) {
        let mut nodes = std::mem::take(&mut self.ping_executors);
        nodes.append(&mut self.snmp_pollers);
        nodes.extend(
            [
                self.alerting.take(),
                self.planner.take(),
                self.inventory.take(),
            ]
            .into_iter()
            .flatten(),
        );
        for node in nodes {
            let target = node.target;
            let stopped = node.stop().await;
            assert!(
                stopped.clean(),
                "{target} did not stop cleanly: {stopped:?}"
            );
        }
    }
}

/// The value of an unlabelled gauge on a process's `/metrics`.
async fn scrape_gauge(metrics: SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = super::http_get(metrics, "/metrics").await.ok()?;
    body.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

fn redis_url() -> String {
    std::env::var("NETWARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Where a test stores: a PostgreSQL database of its own (dropped with
/// it), or a SQLite file per target in a directory of its own (removed with
/// it; one file per target, as `netward up` keeps them).
pub enum Storage {
    Postgres(TestDatabase),
    Sqlite(ScratchDir),
}

impl Storage {
    /// A fresh PostgreSQL database on the test server.
    pub async fn postgres() -> Storage {
        Storage::Postgres(TestDatabase::create().await.expect("a test database"))
    }

    /// A fresh directory for SQLite files.
    pub fn sqlite() -> Storage {
        Storage::Sqlite(ScratchDir::new("sqlite"))
    }

    /// The URL `target` is given.
    pub fn url(&self, target: Target) -> String {
        match self {
            Storage::Postgres(database) => database.url().to_string(),
            Storage::Sqlite(dir) => format!(
                "sqlite://{}",
                dir.path().join(format!("{}.db", target.name())).display()
            ),
        }
    }
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> ScratchDir {
        let path =
            std::env::temp_dir().join(format!("netward-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("a scratch directory");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One target of a cluster, as a process or a task of the test.
pub struct Node {
    pub target: Target,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Alerting's status page.
    pub web_addr: Option<SocketAddr>,
    running: Running,
}

enum Running {
    Process(Box<Process>),
    Task {
        /// Cancels the target's shutdown token when the node is dropped.
        stop: tokio_util::sync::DropGuard,
        task: tokio::task::JoinHandle<Result<(), String>>,
    },
}

impl Node {
    async fn in_process(
        target: Target,
        runner: Runner,
        env: BTreeMap<String, String>,
        config_file: Option<&Path>,
    ) -> Result<Node, String> {
        let mut loader = ConfigLoader::new(target).env(env.into_iter().collect());
        if let Some(file) = config_file {
            loader = loader.file(file);
        }
        let mut listeners = Listeners::local().await.expect("free ports");
        let web_addr = if target == Target::Alerting {
            let web = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a free port");
            let addr = web.local_addr().expect("a bound address");
            listeners.web = Some(web);
            loader = loader.set("alerting.web_addr", addr);
            Some(addr)
        } else {
            None
        };
        let config = loader
            .load()
            .map_err(|error| format!("{target}'s configuration: {error}"))?;
        let (grpc_addr, metrics_addr) = (listeners.grpc_addr(), listeners.metrics_addr());
        let stop = CancellationToken::new();
        let mut task = tokio::spawn(runner(config, listeners, stop.clone()));
        // Serving once its health service answers; or it failed at start.
        let channel = connect(&format!("http://{grpc_addr}"), &ClientOptions::default())
            .expect("a client of the target");
        let health = HealthClient::new(channel);
        let serving = eventually(&format!("{target} serves or fails"), READY, || {
            let mut health = health.clone();
            let finished = task.is_finished();
            async move {
                if finished {
                    return Some(false);
                }
                let check = health.check(HealthCheckRequest::default()).await;
                check.is_ok().then_some(true)
            }
        })
        .await;
        if !serving {
            let ended = (&mut task).await.map_err(|e| e.to_string()).and_then(|r| r);
            return Err(match ended {
                Ok(()) => format!("{target} stopped at once without an error"),
                Err(error) => format!("{target}: {error}"),
            });
        }
        Ok(Node {
            target,
            grpc_addr,
            metrics_addr,
            web_addr,
            running: Running::Task {
                stop: stop.drop_guard(),
                task,
            },
        })
    }

    /// `http://` and the gRPC address.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The process, when the node runs as one (for signals, its pid).
    pub fn process(&self) -> Option<&Process> {
        match &self.running {
            Running::Process(process) => Some(process),
            Running::Task { .. } => None,
        }
    }

    /// The process id; panics for an in-process node.
    pub fn pid(&self) -> u32 {
        self.process()
            .unwrap_or_else(|| panic!("{} runs in process: no pid", self.target))
            .pid()
    }

    /// What the process logged (empty in process: the test's subscriber
    /// has those lines).
    pub fn log(&self) -> String {
        self.process().map(Process::log).unwrap_or_default()
    }

    /// A clean shutdown (SIGTERM, or the shutdown signal in process), and
    /// how it ended: the exit status of a process, or the error `run`
    /// returned in process.
    pub async fn stop(self) -> Stopped {
        match self.running {
            Running::Process(process) => {
                let (status, log) = process.stop().await;
                Stopped::Process { status, log }
            }
            Running::Task { stop, task } => {
                stop.disarm().cancel();
                let ended = tokio::time::timeout(Duration::from_secs(20), task)
                    .await
                    .unwrap_or_else(|_| panic!("in-process target did not stop within 20 s"));
                Stopped::Task(ended.map_err(|e| e.to_string()).and_then(|r| r))
            }
        }
    }

    /// SIGKILL (a crash; in process: the task is aborted).
    pub async fn kill(self) -> Stopped {
        match self.running {
            Running::Process(process) => {
                let (status, log) = process.kill().await;
                Stopped::Process { status, log }
            }
            Running::Task { stop, task } => {
                task.abort();
                stop.disarm().cancel();
                Stopped::Task(Err("aborted".into()))
            }
        }
    }
}

/// How a node ended.
#[derive(Debug)]
pub enum Stopped {
    Process { status: ExitStatus, log: String },
    Task(Result<(), String>),
}

impl Stopped {
    /// A process's exit status and log; panics for an in-process node.
    pub fn exit(self) -> (ExitStatus, String) {
        match self {
            Stopped::Process { status, log } => (status, log),
            Stopped::Task(result) => panic!("an in-process node has no exit status: {result:?}"),
        }
    }

    /// Whether it ended cleanly (exit 0, or `run` returned `Ok`).
    pub fn clean(&self) -> bool {
        match self {
            Stopped::Process { status, .. } => status.success(),
            Stopped::Task(result) => result.is_ok(),
        }
    }
}

/// `count` devices named `{prefix}-{site}-{k}` on `{net[0]}.{net[1]}.x.y`
/// (x the site, y from 1), `per_site` to a site; each site's first device
/// is its router and the parent of the others.
pub fn fleet(prefix: &str, net: [u8; 2], count: usize, per_site: usize) -> Vec<v1::ImportRow> {
    assert!(per_site > 0 && per_site < 255, "1..255 devices to a site");
    (0..count)
        .map(|n| {
            let (site, k) = (n / per_site, n % per_site);
            let router = format!("{prefix}-{site:03}-rtr");
            v1::ImportRow {
                line: n as u32 + 2,
                name: if k == 0 {
                    router.clone()
                } else {
                    format!("{prefix}-{site:03}-{k:03}")
                },
                ip: format!("{}.{}.{site}.{}", net[0], net[1], k + 1),
                site: format!("{prefix}-{site:03}"),
                parent: if k == 0 { String::new() } else { router },
                ..Default::default()
            }
        })
        .collect()
}
