//! Typed, layered configuration: defaults → TOML file → `NETWARD_*`
//! environment → command-line flags, the later winning.
//!
//! One process runs one target, and one file configures one process. Settings
//! every target shares sit at the top level of the file; a target's own
//! settings sit in a section named after it (`[planner]`, `[alerting]`…).
//! Environment variables are the keys in upper case behind `NETWARD_`, with
//! `__` between a section and its key: `NETWARD_GRPC_ADDR`,
//! `NETWARD_LOG__FORMAT`, `NETWARD_PLANNER__PING_INTERVAL`. The environment is
//! passed in as a map, so tests never touch the process environment.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{AuthConfig, Authenticator};
use crate::secret::Secret;
use crate::tls::TlsConfig;

/// The five services the `netward` binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Inventory,
    Planner,
    Alerting,
    PingExecutor,
    SnmpPoller,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Inventory,
        Target::Planner,
        Target::Alerting,
        Target::PingExecutor,
        Target::SnmpPoller,
    ];

    /// The target's name on the command line, in logs, metrics and traces.
    pub fn name(self) -> &'static str {
        match self {
            Target::Inventory => "inventory",
            Target::Planner => "planner",
            Target::Alerting => "alerting",
            Target::PingExecutor => "ping-executor",
            Target::SnmpPoller => "snmp-poller",
        }
    }

    /// The config section of the target's own settings (`[ping_executor]`).
    pub fn section(self) -> &'static str {
        match self {
            Target::Inventory => "inventory",
            Target::Planner => "planner",
            Target::Alerting => "alerting",
            Target::PingExecutor => "ping_executor",
            Target::SnmpPoller => "snmp_poller",
        }
    }

    /// Default gRPC port: inventory 50051, planner 50052, alerting 50053,
    /// ping-executor 50054, snmp-poller 50055.
    pub fn default_grpc_port(self) -> u16 {
        50051 + self.offset()
    }

    /// Default metrics port, 9551–9555 in the same order as the gRPC ports.
    pub fn default_metrics_port(self) -> u16 {
        9551 + self.offset()
    }

    fn offset(self) -> u16 {
        match self {
            Target::Inventory => 0,
            Target::Planner => 1,
            Target::Alerting => 2,
            Target::PingExecutor => 3,
            Target::SnmpPoller => 4,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|target| target.name() == name)
            .ok_or_else(|| format!("unknown target {name:?}"))
    }
}

/// Settings every target shares.
#[derive(Debug, Clone, Deserialize)]
pub struct CommonConfig {
    /// Where the gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// Where the Prometheus `/metrics` endpoint listens.
    pub metrics_addr: SocketAddr,
    /// PostgreSQL (or SQLite) URL, for the targets that store something.
    /// A secret: it may carry a password.
    #[serde(default)]
    pub database_url: Option<Secret<String>>,
    /// Redis URL, for the targets that use Redis.
    #[serde(default)]
    pub redis_url: Option<Secret<String>>,
    /// The peers a target dials.
    pub inventory_url: String,
    pub planner_url: String,
    pub alerting_url: String,
    /// Bearer token required on every call (health excepted) and sent on
    /// every call to peers. Unset: no authentication.
    #[serde(default)]
    pub token: Option<Secret<String>>,
    /// Role tokens, the peer token and the batch grant key (`[auth]`).
    #[serde(default)]
    pub auth: AuthConfig,
    /// The accepted tokens, built from `token` and `auth` at load time
    /// (which refuses a malformed `[[auth.tokens]]`).
    #[serde(skip)]
    pub authenticator: Authenticator,
    /// TLS of the gRPC server and of the clients dialing `https://` peers.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Allows a gRPC listener beyond loopback with neither TLS nor a token
    /// (see [`CommonConfig::check_exposure`]).
    #[serde(default)]
    pub insecure: bool,
    pub log: LogConfig,
    pub server: ServerConfig,
}

impl CommonConfig {
    /// The token sent to peers: `auth.peer_token`, else `token`.
    pub fn peer_token(&self) -> Option<&Secret<String>> {
        self.auth.peer_token.as_ref().or(self.token.as_ref())
    }

    /// The safe default: a gRPC listener reachable beyond loopback must be
    /// protected by TLS or a token, unless `insecure` says the risk is
    /// accepted. Checked before binding, so the process exits at once.
    pub fn check_exposure(&self) -> Result<Exposure, ConfigError> {
        if self.grpc_addr.ip().is_loopback() {
            return Ok(Exposure::Loopback);
        }
        let token = self
            .token
            .as_ref()
            .is_some_and(|token| !token.expose().is_empty())
            || !self.auth.tokens.is_empty();
        if token || self.tls.enabled() {
            Ok(Exposure::Protected)
        } else if self.insecure {
            Ok(Exposure::Insecure)
        } else {
            Err(ConfigError::Exposed {
                addr: self.grpc_addr,
            })
        }
    }
}

/// How far the gRPC listener is reachable, and what protects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Only this host can connect.
    Loopback,
    /// Beyond loopback, with TLS or a token.
    Protected,
    /// Beyond loopback with neither, because `insecure` is set: worth a warning.
    Insecure,
}

/// How logs are written (to standard error).
#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    /// `auto` (text on a terminal, JSON otherwise), `text` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG`, when set, wins.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// Limits applied by the gRPC server bootstrap to every service.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// Deadline of a unary call (and of a stream's opening); a shorter
    /// `grpc-timeout` from the client wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Calls handled at once by the whole server; more wait.
    pub concurrency_limit: usize,
    /// After a shutdown signal, how long open calls and streams may take to
    /// finish before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    File {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Auth(#[from] crate::auth::AuthConfigError),
    #[error(
        "refusing to listen on {addr}: it is not a loopback address and neither TLS \
         (--tls-cert and --tls-key) nor a token (NETWARD_TOKEN) is configured, so anyone \
         who reaches it could call every RPC in clear text; configure TLS or a token, \
         listen on 127.0.0.1, or pass --insecure (NETWARD_INSECURE=true) to accept the risk"
    )]
    Exposed { addr: SocketAddr },
}

/// Builds a [`LoadedConfig`] from the layers, lowest first.
#[derive(Debug)]
pub struct ConfigLoader {
    target: Target,
    file: Option<PathBuf>,
    /// TOML text standing in for a file (see [`ConfigLoader::toml`]).
    text: Option<String>,
    env: HashMap<String, String>,
    overrides: Vec<(String, String)>,
}

impl ConfigLoader {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            file: None,
            text: None,
            env: HashMap::new(),
            overrides: Vec::new(),
        }
    }

    /// A TOML file; it must exist when given.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.file = Some(path.as_ref().to_path_buf());
        self
    }

    /// TOML text read as the file would be (a file, when also given, wins):
    /// the entry point of the config fuzz target (fuzz/), which has no file
    /// to write per input.
    #[doc(hidden)]
    pub fn toml(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// The environment, as a map (`std::env::vars().collect()` in the binary);
    /// only `NETWARD_*` variables are read.
    pub fn env(mut self, env: HashMap<String, String>) -> Self {
        self.env = env;
        self
    }

    /// A value from a command-line flag; beats every other layer. `key` is
    /// the config key (`grpc_addr`, `planner.ping_interval`).
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }

    pub fn load(self) -> Result<LoadedConfig, ConfigError> {
        let target = self.target;
        let mut builder = config::Config::builder()
            .set_default(
                "grpc_addr",
                format!("127.0.0.1:{}", target.default_grpc_port()),
            )?
            .set_default(
                "metrics_addr",
                format!("127.0.0.1:{}", target.default_metrics_port()),
            )?
            .set_default(
                "inventory_url",
                format!("http://127.0.0.1:{}", Target::Inventory.default_grpc_port()),
            )?
            .set_default(
                "planner_url",
                format!("http://127.0.0.1:{}", Target::Planner.default_grpc_port()),
            )?
            .set_default(
                "alerting_url",
                format!("http://127.0.0.1:{}", Target::Alerting.default_grpc_port()),
            )?
            .set_default("log.format", "auto")?
            .set_default("log.filter", "info")?
            .set_default("server.request_timeout", "30s")?
            .set_default("server.concurrency_limit", 1024)?
            .set_default("server.shutdown_grace", "10s")?;

        let file = match (&self.file, self.text) {
            (Some(path), _) => {
                // Read the file ourselves so that its errors name it.
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
                    path: path.clone(),
                    source: config::ConfigError::Foreign(Box::new(error)),
                })?;
                Some((path.clone(), text))
            }
            (None, Some(text)) => Some((PathBuf::from("<text>"), text)),
            (None, None) => None,
        };
        if let Some((path, text)) = file {
            let source = config::File::from_str(&text, config::FileFormat::Toml);
            config::Config::builder()
                .add_source(source.clone())
                .build()
                .map_err(|source| ConfigError::File { path, source })?;
            builder = builder.add_source(source);
        }

        let env: config::Map<String, String> = self
            .env
            .into_iter()
            .filter(|(key, _)| key.starts_with("NETWARD_"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("NETWARD")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        for (key, value) in self.overrides {
            builder = builder.set_override(key, value)?;
        }
        let raw = builder.build()?;
        let mut common: CommonConfig = raw.clone().try_deserialize()?;
        common.authenticator = Authenticator::new(common.token.as_ref(), &common.auth)?;
        Ok(LoadedConfig {
            target,
            raw,
            common,
        })
    }
}

/// The merged layers of one process's configuration.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub target: Target,
    pub common: CommonConfig,
    raw: config::Config,
}

impl LoadedConfig {
    /// The target's own section, deserialized into its config type; absent
    /// keys take the type's `Default`s (use `#[serde(default)]` on it).
    pub fn section<T: DeserializeOwned + Default>(&self) -> Result<T, ConfigError> {
        match self.raw.get::<T>(self.target.section()) {
            Ok(section) => Ok(section),
            Err(config::ConfigError::NotFound(_)) => Ok(T::default()),
            Err(error) => Err(error.into()),
        }
    }

    /// One top-level key that is not part of [`CommonConfig`] (such as
    /// `secret_key`, from `NETWARD_SECRET_KEY`); `None` when unset.
    pub fn value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.raw.get::<T>(key) {
            Ok(value) => Ok(Some(value)),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_port_plan() {
        let ports: Vec<(u16, u16)> = Target::ALL
            .iter()
            .map(|t| (t.default_grpc_port(), t.default_metrics_port()))
            .collect();
        assert_eq!(
            ports,
            [
                (50051, 9551),
                (50052, 9552),
                (50053, 9553),
                (50054, 9554),
                (50055, 9555)
            ]
        );
        let config = ConfigLoader::new(Target::Alerting).load().unwrap();
        assert_eq!(config.common.grpc_addr.port(), 50053);
        assert_eq!(config.common.metrics_addr.port(), 9553);
        assert_eq!(config.common.planner_url, "http://127.0.0.1:50052");
        assert_eq!(
            config.common.server.request_timeout,
            Duration::from_secs(30)
        );
        assert!(config.common.token.is_none());
        assert_eq!(config.common.tls, TlsConfig::default());
        assert!(!config.common.insecure);
    }

    #[test]
    fn tls_from_file_env_and_flags() {
        let config = ConfigLoader::new(Target::Planner)
            .env(env(&[
                ("NETWARD_TLS__KEY", "/etc/netward/key.pem"),
                ("NETWARD_TLS__CA", "/etc/netward/ca.pem"),
                ("NETWARD_TLS__REQUIRE_CLIENT_CERT", "true"),
            ]))
            .set("tls.cert", "/etc/netward/cert.pem")
            .load()
            .unwrap();
        let tls = &config.common.tls;
        assert_eq!(
            tls.cert.as_deref(),
            Some(Path::new("/etc/netward/cert.pem"))
        );
        assert_eq!(tls.key.as_deref(), Some(Path::new("/etc/netward/key.pem")));
        assert_eq!(tls.ca.as_deref(), Some(Path::new("/etc/netward/ca.pem")));
        assert!(tls.require_client_cert);
        assert!(tls.enabled());
    }

    #[test]
    fn an_exposed_listener_needs_tls_a_token_or_insecure() {
        let load = |pairs: &[(&str, &str)]| {
            let mut all = vec![("NETWARD_GRPC_ADDR", "0.0.0.0:50052")];
            all.extend_from_slice(pairs);
            ConfigLoader::new(Target::Planner)
                .env(env(&all))
                .load()
                .unwrap()
                .common
        };
        let bare = load(&[]);
        let error = bare.check_exposure().unwrap_err().to_string();
        assert!(
            error.starts_with("refusing to listen on 0.0.0.0:50052"),
            "{error}"
        );
        assert!(error.contains("--insecure"), "{error}");
        assert_eq!(
            load(&[("NETWARD_TOKEN", "s")]).check_exposure().unwrap(),
            Exposure::Protected
        );
        assert_eq!(
            load(&[
                ("NETWARD_TLS__CERT", "/c.pem"),
                ("NETWARD_TLS__KEY", "/k.pem")
            ])
            .check_exposure()
            .unwrap(),
            Exposure::Protected
        );
        assert_eq!(
            load(&[("NETWARD_INSECURE", "true")])
                .check_exposure()
                .unwrap(),
            Exposure::Insecure
        );
        // An empty token protects nothing.
        assert!(load(&[("NETWARD_TOKEN", "")]).check_exposure().is_err());
        let local = ConfigLoader::new(Target::Planner).load().unwrap().common;
        assert_eq!(local.check_exposure().unwrap(), Exposure::Loopback);
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = std::env::temp_dir().join(format!("netward-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("netward.toml");
        std::fs::write(
            &path,
            r#"
grpc_addr = "0.0.0.0:6000"
metrics_addr = "0.0.0.0:6001"
token = "from-file"
[log]
format = "json"
[planner]
ping_interval = "5s"
"#,
        )
        .unwrap();

        let config = ConfigLoader::new(Target::Planner)
            .file(&path)
            .env(env(&[
                ("NETWARD_METRICS_ADDR", "127.0.0.2:7001"),
                ("NETWARD_SERVER__CONCURRENCY_LIMIT", "7"),
                ("NETWARD_PLANNER__TARGET_BATCHES", "12"),
                ("HOME", "/root"),
            ]))
            .set("token", "from-flag")
            .load()
            .unwrap();
        assert_eq!(config.common.grpc_addr, "0.0.0.0:6000".parse().unwrap());
        assert_eq!(
            config.common.metrics_addr,
            "127.0.0.2:7001".parse().unwrap()
        );
        assert_eq!(config.common.server.concurrency_limit, 7);
        assert_eq!(config.common.log.format, LogFormat::Json);
        assert_eq!(config.common.token.as_ref().unwrap().expose(), "from-flag");

        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        struct Planner {
            #[serde(with = "humantime_serde")]
            ping_interval: Option<Duration>,
            target_batches: u32,
        }
        let planner: Planner = config.section().unwrap();
        assert_eq!(planner.ping_interval, Some(Duration::from_secs(5)));
        assert_eq!(planner.target_batches, 12);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let missing = ConfigLoader::new(Target::Inventory)
            .file("/nonexistent/netward.toml")
            .load()
            .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/netward.toml"),
            "{missing}"
        );

        let bad = ConfigLoader::new(Target::Inventory)
            .env(env(&[("NETWARD_GRPC_ADDR", "not-an-address")]))
            .load()
            .unwrap_err();
        assert!(bad.to_string().contains("grpc_addr"), "{bad}");
    }

    #[test]
    fn text_reads_like_a_file() {
        let config = ConfigLoader::new(Target::Planner)
            .toml("grpc_addr = \"0.0.0.0:6000\"\n[log]\nformat = \"json\"\n")
            .load()
            .unwrap();
        assert_eq!(config.common.grpc_addr, "0.0.0.0:6000".parse().unwrap());
        assert_eq!(config.common.log.format, LogFormat::Json);
        let bad = ConfigLoader::new(Target::Planner)
            .toml("grpc_addr = ")
            .load()
            .unwrap_err();
        assert!(bad.to_string().contains("<text>"), "{bad}");
    }

    #[test]
    fn target_names_round_trip() {
        for target in Target::ALL {
            assert_eq!(target.name().parse::<Target>().unwrap(), target);
        }
        assert!("scheduler".parse::<Target>().is_err());
    }
}
