//! A real netward process on free ports, for tests: started from the binary
//! the test names, ready when it logs "serving" (which names the ports it
//! got, so no port is ever raced for), its log kept for assertions, killed
//! if dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `netward <target>` process. Killed if dropped without `stop`.
pub struct Process {
    child: Child,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Alerting's status page, when it serves one.
    pub web_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `log`; ends when the process closes it (at exit).
    reader: tokio::task::JoinHandle<()>,
}

/// What to start: `binary target --grpc-addr … --metrics-addr 127.0.0.1:0
/// args…` with `env` on top of an environment without the developer's own
/// `NETWARD_*` settings.
#[derive(Debug, Clone)]
pub struct Spawn<'a> {
    pub binary: &'a Path,
    pub target: &'a str,
    pub grpc_addr: &'a str,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Process {
    /// Starts the process and waits (up to 30 s) for its "serving" line.
    pub async fn start(spawn: Spawn<'_>) -> Process {
        let Spawn {
            binary,
            target,
            grpc_addr,
            args,
            env,
        } = spawn;
        let mut command = Command::new(binary);
        command
            .arg(target)
            .args(["--grpc-addr", grpc_addr, "--metrics-addr", "127.0.0.1:0"])
            .args(args)
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
        let web_set = args.contains(&"--web-addr")
            || env.iter().any(|(k, _)| *k == "NETWARD_ALERTING__WEB_ADDR");
        if target == "alerting" && !web_set {
            command.args(["--web-addr", "127.0.0.1:0"]);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");

        let log = Arc::new(Mutex::new(Vec::new()));
        let (serving_tx, serving_rx) = tokio::sync::oneshot::channel();
        let lines = log.clone();
        let reader = tokio::spawn(async move {
            let mut serving_tx = Some(serving_tx);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "serving"
                    && let Some(tx) = serving_tx.take()
                {
                    let _ = tx.send(event);
                }
                lines.lock().expect("log lock").push(line);
            }
        });

        let event = match tokio::time::timeout(Duration::from_secs(30), serving_rx).await {
            Ok(Ok(event)) => event,
            _ => panic!(
                "netward {target} did not start serving; its log:\n{}",
                log.lock().expect("log lock").join("\n")
            ),
        };
        let addr = |field: &str| -> SocketAddr {
            event[field]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{field} missing in {event}"))
        };
        // Logged before "serving": already read.
        let web_addr = log.lock().expect("log lock").iter().find_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["message"] == "status page serving").then_some(())?;
            event["web_addr"].as_str()?.parse().ok()
        });
        Process {
            grpc_addr: addr("grpc_addr"),
            metrics_addr: addr("metrics_addr"),
            web_addr,
            child,
            log,
            reader,
        }
    }

    /// `http://` and the gRPC address.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
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
        let pid = self.pid();
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
        // The reader takes the last lines until stderr closes (at exit; a
        // child the process left behind may hold it open: not for long).
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        (status, self.log())
    }

    /// The process id (for signals such as SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Every line the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}
