//! `netward up` as a process, for the tests that run it: here, the one
//! without ICMP privileges (it says what to do and keeps the rest running,
//! and alerting reports the monitoring gap); `lab_up.rs` runs the example
//! fleet in the network lab.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::support::NETWARD;

/// A running `netward up`, its standard output collected line by line.
pub struct Up {
    pub child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    /// The tasks reading stdout and stderr: done once both are closed.
    readers: [JoinHandle<()>; 2],
    pub started: Instant,
}

impl Up {
    pub fn start(data_dir: &std::path::Path) -> Up {
        Self::start_as(data_dir, None)
    }

    /// As [`Up::start`], as another user (`setpriv --reuid`), without
    /// the root's ICMP privileges.
    pub fn start_as(data_dir: &std::path::Path, user: Option<&str>) -> Up {
        let mut command = match user {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command.args([
                    &format!("--reuid={user}"),
                    "--regid=nogroup",
                    "--clear-groups",
                    NETWARD,
                ]);
                command
            }
            None => Command::new(NETWARD),
        };
        command
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("NETWARD_")) {
            command.env_remove(key);
        }
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn netward up");
        let (out, out_reader) = collect(child.stdout.take().expect("stdout is piped"));
        let (err, err_reader) = collect(child.stderr.take().expect("stderr is piped"));
        Up {
            child,
            out,
            err,
            readers: [out_reader, err_reader],
            started,
        }
    }

    pub fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.out.lock().unwrap().join("\n"),
            self.err.lock().unwrap().join("\n")
        )
    }

    pub fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// Sends SIGINT (Ctrl-C) and waits for a clean exit.
    pub async fn interrupt(mut self) -> String {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("netward up did not exit after Ctrl-C:\n{}", self.output()))
            .unwrap();
        // Its last lines: read once its output closes (at its exit; a child
        // it left behind may hold it open, not for long).
        for reader in &mut self.readers {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        assert!(status.success(), "exit {status}:\n{}", self.output());
        self.output()
    }
}

/// Every line `reader` gives, collected as it comes, and the task reading
/// them (done at the end of the output).
fn collect<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let task = tokio::spawn(async move {
        let mut reader = BufReader::new(reader).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, task)
}

/// Polls `check` until it gives a value; on timeout fails with `what` and
/// everything `up` has printed.
pub async fn wait_for<T, F, Fut>(up: &Up, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "not within {timeout:?}: {what}\n{}",
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A CLI verb against the default ports, its standard output.
pub async fn cli(args: &[&str]) -> String {
    let out = Command::new(NETWARD)
        .args(args)
        .env_remove("NETWARD_ALERTING_URL")
        .env_remove("NETWARD_PLANNER_URL")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "netward {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a process of group `gid` may open unprivileged ICMP sockets.
fn ping_group_allows(gid: u32) -> bool {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let bounds: Vec<u32> = range
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    matches!(bounds[..], [low, high] if low <= gid && gid <= high)
}

#[tokio::test]
async fn netward_up_without_icmp_privileges_says_what_to_do_and_reports_the_gap() {
    // As `nobody`, with no CAP_NET_RAW and (where ping_group_range leaves
    // nogroup out) no unprivileged ICMP either. Needs root to switch user.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().next() == Some("0"));
    if !root || ping_group_allows(65534) || std::env::var("NETWARD_LAB").is_ok() {
        eprintln!("skipped: needs root, outside the lab, with nogroup outside ping_group_range");
        return;
    }
    let dir = std::env::temp_dir().join(format!("netward-up-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    std::process::Command::new("chown")
        .args(["nobody"])
        .arg(&dir)
        .status()
        .unwrap();
    let up = Up::start_as(&dir, Some("nobody"));
    wait_for(&up, "the ICMP hint", Duration::from_secs(60), || {
        let output = up.output();
        async move {
            (output.contains("ping executor not running")
                && output.contains("setcap cap_net_raw+ep")
                && output.contains("ping_group_range"))
            .then_some(())
        }
    })
    .await;
    // A second `netward up` with the same defaults is refused before it
    // starts anything (its ports are taken), naming what to check; the first
    // runs on undisturbed.
    let second_dir = dir.join("second");
    let second = Command::new(NETWARD)
        .args(["up", "--data-dir"])
        .arg(&second_dir)
        .env_remove("NETWARD_DATABASE_URL")
        .output();
    let second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("a second netward up exits at once")
        .unwrap();
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{refusal}");
    assert!(
        refusal.contains("cannot listen on 127.0.0.1:50051")
            && refusal.contains("is another netward running?"),
        "{refusal}"
    );
    assert!(
        !second_dir.join("inventory.db").exists(),
        "the refused start touched no store"
    );
    // The rest runs, and says it cannot see: a monitoring-gap alert.
    let gap = wait_for(
        &up,
        "a monitoring-gap alert",
        Duration::from_secs(90),
        || async {
            cli(&["alerts", "--json"])
                .await
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|a| a["rule_kind"] == "monitoring_gap")
        },
    )
    .await;
    assert!(
        gap["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("854 of 854"),
        "the gap covers the fleet: {gap}"
    );
    let stopped = up.interrupt().await;
    assert!(stopped.contains("netward up: stopped"), "{stopped}");
    std::fs::remove_dir_all(&dir).ok();
}
