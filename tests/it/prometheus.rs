//! The real Prometheus and Alertmanager against netward's processes, both
//! configured from the shipped files (deploy/prometheus, deploy/alertmanager):
//! every target is scraped without error, the self-monitoring rules load and
//! evaluate, and a killed ping executor raises `NetwardTargetDown`, which
//! Prometheus delivers to Alertmanager. Skips, saying why, without the
//! binaries or an ICMP socket (scripts/setup.sh installs them; CI has both).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use netward_shared::config::Target;
use netward_shared::testkit::cluster::Node;
use netward_shared::testkit::eventually;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Scrape and rule evaluation every second instead of every 10 s.
const INTERVAL: &str = "1s";

/// `NetwardTargetDown` waits 1 m in the shipped rules; the test's copy waits
/// 2 s, the only change to the rules.
const TARGET_DOWN_FOR: &str = "2s";

/// A scratch directory, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("netward-prometheus-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Prometheus or Alertmanager process, killed when dropped; its output
/// goes to a file, shown when it does not become ready.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts `binary` with `args` and `--web.listen-address` on a free
    /// port, and waits for `/-/ready`. The port is picked by binding and
    /// releasing it: these Go servers cannot report a port they chose, and
    /// the Prometheus config must name its own address before it starts.
    async fn start(binary: &Path, args: &[String], addr: SocketAddr, log: PathBuf) -> Server {
        let output = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(binary)
            .args(args)
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(status);
                }
                if get(addr, "/-/ready").await.is_some() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if !matches!(ready, Ok(Ok(()))) {
            panic!(
                "{} is not ready on {addr} ({ready:?}); its log:\n{}",
                binary.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Server { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stop it before the scratch directory it writes to is removed.
        let _ = self.child.start_kill();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The body of a 200 response to `GET path`, or `None`. HTTP/1.0, so Go
/// answers without chunked encoding and closes the connection.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// A Prometheus API response's `data`.
async fn api(addr: SocketAddr, path: &str) -> Option<Value> {
    let body: Value = serde_json::from_str(&get(addr, path).await?).ok()?;
    (body["status"] == "success").then(|| body["data"].clone())
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn write_yaml(path: &Path, value: &Value) {
    std::fs::write(path, serde_yaml_ng::to_string(value).unwrap()).unwrap();
}

/// The shipped rule files (deploy/prometheus/rules/*.yml) by file name.
fn shipped_rules() -> BTreeMap<String, Value> {
    let dir = Path::new(ROOT).join("deploy/prometheus/rules");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, yaml(&path))
        })
        .collect()
}

/// The shipped Prometheus config with the test's addresses: the same
/// global settings (intervals shortened), rule files (the test's copies,
/// by absolute path) and job names, each job scraping `targets[job]` and
/// alerts going to `alertmanager`.
fn prometheus_config(
    scratch: &Path,
    targets: &BTreeMap<&str, Vec<SocketAddr>>,
    alertmanager: SocketAddr,
) -> Value {
    let mut config = yaml(&Path::new(ROOT).join("deploy/prometheus/prometheus.yml"));
    let global = &mut config["global"];
    global["scrape_interval"] = json!(INTERVAL);
    global["scrape_timeout"] = json!(INTERVAL);
    global["evaluation_interval"] = json!(INTERVAL);
    let rule_files: Vec<Value> = config["rule_files"]
        .as_array()
        .expect("rule_files")
        .iter()
        .map(|pattern| json!(scratch.join(pattern.as_str().unwrap()).to_str().unwrap()))
        .collect();
    config["rule_files"] = json!(rule_files);
    for alertmanagers in config["alerting"]["alertmanagers"].as_array_mut().unwrap() {
        alertmanagers["static_configs"] = json!([{ "targets": [alertmanager.to_string()] }]);
    }
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        let name = job["job_name"].as_str().unwrap();
        let addrs = targets
            .get(name)
            .unwrap_or_else(|| panic!("job {name} of prometheus.yml has no process in this test"));
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        job["static_configs"] = json!([{ "targets": addrs }]);
    }
    config
}

/// Writes the shipped rule files into `scratch/rules` with
/// `NetwardTargetDown`'s `for:` shortened; returns them.
fn test_rules(scratch: &Path) -> BTreeMap<String, Value> {
    let mut files = shipped_rules();
    assert!(!files.is_empty(), "no deploy/prometheus/rules/*.yml");
    for (name, rules) in &mut files {
        for group in rules["groups"].as_array_mut().unwrap() {
            for rule in group["rules"].as_array_mut().unwrap() {
                if rule["alert"] == "NetwardTargetDown" {
                    rule["for"] = json!(TARGET_DOWN_FOR);
                }
            }
        }
        write_yaml(&scratch.join("rules").join(name), rules);
    }
    files
}

fn tool(name: &str) -> Option<PathBuf> {
    crate::stack::tool(name, "the Prometheus and Alertmanager test")
}

#[tokio::test]
async fn prometheus_scrapes_every_target_evaluates_the_rules_and_alerts_alertmanager() {
    let (Some(prometheus), Some(alertmanager)) =
        (tool("prometheus"), tool("prometheus-alertmanager"))
    else {
        return;
    };
    if !crate::executor::can_ping() {
        return;
    }
    let scratch = ScratchDir::new();

    let mut cluster = crate::support::cluster()
        .planner()
        .alerting()
        .ping_executors(1)
        .snmp_pollers(1)
        .executor_ids(Target::PingExecutor, &["prom-ping"])
        .executor_ids(Target::SnmpPoller, &["prom-snmp"])
        .start()
        .await;
    let metrics = |node: &Option<Node>| node.as_ref().unwrap().metrics_addr;

    // Alertmanager with the shipped file as it is: its receiver has no
    // destination, which loads; an empty cluster address disables gossip.
    let alertmanager_addr = free_addr();
    let alertmanager = Server::start(
        &alertmanager,
        &[
            format!("--config.file={ROOT}/deploy/alertmanager/alertmanager.yml"),
            format!(
                "--storage.path={}",
                scratch.0.join("alertmanager").display()
            ),
            "--cluster.listen-address=".to_string(),
        ],
        alertmanager_addr,
        scratch.0.join("alertmanager.log"),
    )
    .await;

    let prometheus_addr = free_addr();
    let targets = BTreeMap::from([
        ("inventory", vec![metrics(&cluster.inventory)]),
        ("planner", vec![metrics(&cluster.planner)]),
        ("alerting", vec![metrics(&cluster.alerting)]),
        (
            "ping-executor",
            vec![cluster.ping_executors[0].metrics_addr],
        ),
        ("snmp-poller", vec![cluster.snmp_pollers[0].metrics_addr]),
        ("prometheus", vec![prometheus_addr]),
        ("alertmanager", vec![alertmanager_addr]),
    ]);
    let rules = test_rules(&scratch.0);
    let config_file = scratch.0.join("prometheus.yml");
    write_yaml(
        &config_file,
        &prometheus_config(&scratch.0, &targets, alertmanager_addr),
    );
    let prometheus = Server::start(
        &prometheus,
        &[
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", scratch.0.join("data").display()),
        ],
        prometheus_addr,
        scratch.0.join("prometheus.log"),
    )
    .await;

    // Every target of every shipped job is up, with no scrape error.
    let expected: BTreeSet<(String, String)> = targets
        .iter()
        .flat_map(|(job, addrs)| addrs.iter().map(|addr| (job.to_string(), addr.to_string())))
        .collect();
    let mut last = Value::Null;
    let all_up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(data) = api(prometheus.addr, "/api/v1/targets?state=active").await {
                let active = data["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let up: BTreeSet<(String, String)> = active
                    .iter()
                    .filter(|t| t["health"] == "up" && t["lastError"] == "")
                    .map(|t| {
                        let job = t["labels"]["job"].as_str().unwrap_or_default();
                        let instance = t["labels"]["instance"].as_str().unwrap_or_default();
                        (job.to_string(), instance.to_string())
                    })
                    .collect();
                if up == expected && active.len() == expected.len() {
                    return;
                }
                last = data;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        all_up.is_ok(),
        "not every target is up without error within 30 s: expected {expected:?}, \
         last /api/v1/targets: {last:#}\nprometheus log:\n{}",
        prometheus.log()
    );

    // Every shipped group and rule is loaded and evaluated without error.
    let shipped_groups: BTreeMap<String, Vec<String>> = rules
        .values()
        .flat_map(|file| file["groups"].as_array().unwrap().clone())
        .map(|group| {
            let names = group["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|rule| {
                    rule["alert"]
                        .as_str()
                        .or(rule["record"].as_str())
                        .unwrap()
                        .to_string()
                })
                .collect();
            (group["name"].as_str().unwrap().to_string(), names)
        })
        .collect();
    let evaluated = |rule: &Value| {
        rule["health"] == "ok"
            && rule["lastError"].as_str().unwrap_or_default().is_empty()
            && rule["lastEvaluation"]
                .as_str()
                .is_some_and(|at| !at.starts_with("0001-"))
    };
    let loaded = eventually(
        "the shipped rules are loaded and evaluated without error",
        Duration::from_secs(20),
        || async {
            let data = api(prometheus.addr, "/api/v1/rules").await?;
            let groups = data["groups"].as_array()?;
            let loaded: BTreeMap<String, Vec<String>> = groups
                .iter()
                .map(|group| {
                    let names = group["rules"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|rule| evaluated(rule))
                        .map(|rule| rule["name"].as_str().unwrap_or_default().to_string())
                        .collect();
                    (
                        group["name"].as_str().unwrap_or_default().to_string(),
                        names,
                    )
                })
                .collect();
            (loaded == shipped_groups).then_some(loaded)
        },
    )
    .await;
    assert!(loaded.values().map(Vec::len).sum::<usize>() >= 10);

    // A crashed ping executor: `up` is 0, NetwardTargetDown fires with the
    // rule's labels, and Prometheus delivers it to Alertmanager.
    let executor = cluster.ping_executors.pop().unwrap();
    let instance = executor.metrics_addr.to_string();
    executor.kill().await;
    let is_target_down = |labels: &Value| {
        labels["alertname"] == "NetwardTargetDown"
            && labels["job"] == "ping-executor"
            && labels["instance"] == instance.as_str()
    };
    eventually(
        "Prometheus reports NetwardTargetDown firing for the ping executor",
        Duration::from_secs(20),
        || async {
            let data = api(prometheus.addr, "/api/v1/alerts").await?;
            data["alerts"]
                .as_array()?
                .iter()
                .any(|alert| is_target_down(&alert["labels"]) && alert["state"] == "firing")
                .then_some(())
        },
    )
    .await;
    let delivered = eventually(
        "Alertmanager lists NetwardTargetDown for the ping executor",
        Duration::from_secs(20),
        || async {
            let body = get(alertmanager.addr, "/api/v2/alerts").await?;
            let alerts: Value = serde_json::from_str(&body).ok()?;
            alerts
                .as_array()?
                .iter()
                .find(|alert| is_target_down(&alert["labels"]))
                .cloned()
        },
    )
    .await;
    let rule = rules
        .values()
        .flat_map(|file| file["groups"].as_array().unwrap().clone())
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .find(|rule| rule["alert"] == "NetwardTargetDown")
        .unwrap();
    let labels = &delivered["labels"];
    for (name, value) in rule["labels"].as_object().unwrap() {
        assert_eq!(&labels[name], value, "label {name} of {delivered:#}");
    }
    // Prometheus's external labels travel with the alert.
    assert_eq!(labels["stack"], "netward", "{delivered:#}");
    assert_eq!(delivered["status"]["state"], "active", "{delivered:#}");
    assert!(
        delivered["annotations"]["summary"]
            .as_str()
            .is_some_and(|summary| summary.contains(&instance)),
        "{delivered:#}"
    );
}
