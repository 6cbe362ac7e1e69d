//! The README's commands, run against a running stack, so the README cannot
//! drift from the binary: every `netward …`, `grpcurl …` and `curl …` line
//! of its `sh` blocks, and every `$ command` of its output blocks, whose
//! shown output must be recognisable in what the command prints.
//!
//! The stack: inventory (the example inventory imported), planner and
//! alerting as processes on a fresh test database, a ping executor that is
//! given no work (so the results this test sends stay as sent), and results
//! sent to alerting so that devices are up and down and a device-down alert
//! is open. Commands run through `bash -c` in a scratch directory (with
//! `deploy/` linked in) with the binary under test first on `PATH`, the
//! default ports replaced by the stack's, and the verbs' `NETWARD_*_URL`
//! pointing at it.
//!
//! Rules, in order:
//! - a command starting with an entry of [`NOT_RUN`] is not run: each entry
//!   says why and what checks it instead (the README's "This README is
//!   tested" lists them too), and each must still match a README command;
//! - `netward <target> … &` (starting a target) runs with `--help`
//!   appended, so a renamed target or flag fails;
//! - a command of [`STREAMS`] must still be running, having printed
//!   something, after [`STREAM_FOR`];
//! - any other `netward`, `grpcurl` or `curl` command must exit 0 — or fail,
//!   when its shown output has a `netward: error:` line — and the words of
//!   its shown output's first line must appear in what it printed (except
//!   the commands of [`OUTPUT_NOT_CHECKED`]);
//! - any other command fails the test: add it to a list above or make it
//!   runnable.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use netward_shared::client::connect;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::testkit::{TestDatabase, eventually};
use tokio::process::Command;

use crate::alerting::Ingest;
use crate::support::{NETWARD, Netward};

const README: &str = include_str!("../../README.md");

/// Commands not run here (matched by prefix): why, and what checks them.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo run --release -- up",
        "runs until Ctrl-C and needs ICMP: tests/it/lab_up.rs runs `netward up` in the network lab; \
         its services are the ones this stack runs",
    ),
    ("scripts/test.sh", "the test command itself: CI runs it"),
    ("cargo build --release", "CI builds the workspace"),
    (
        "deploy/run-local.sh",
        "runs until Ctrl-C, as root, on the machine's PostgreSQL: run by hand",
    ),
    (
        "deploy/lab/lab.sh",
        "root and a network namespace: scripts/test.sh runs the lab tests",
    ),
    (
        "cargo run --release -p",
        "benchmarks, minutes long: run by hand; their figures are in the README and docs/",
    ),
    (
        "export ",
        "shell setup: this test sets PATH and the NETWARD_* variables itself",
    ),
    (
        "createdb ",
        "database setup: this test makes a fresh database per run",
    ),
    (
        "netward devices generate --sites 1000",
        "100,000 rows: the generator's unit tests cover it",
    ),
];

/// Commands that stream until interrupted (matched by prefix or, for
/// grpcurl, by the method at the end).
const STREAMS: &[&str] = &["netward devices watch", "InventoryService/WatchDevices"];

/// How long a streaming command must keep running.
const STREAM_FOR: Duration = Duration::from_secs(3);

/// Shown runs whose output this stack cannot reproduce (the command still
/// runs and must exit 0): why, and what checks it instead.
const OUTPUT_NOT_CHECKED: &[(&str, &str)] = &[(
    "netward interfaces tbilisi-001-rtr1",
    "needs SNMP polls of the device: tests/it/snmp_isp.rs checks the table against snmpd",
)];

/// The alert id the README's examples use; replaced by the open alert's.
const README_ALERT_ID: &str = "1f0c2a3b";

/// One command of the README.
#[derive(Debug, Clone, PartialEq)]
struct ReadmeCommand {
    /// 1-based line where it starts.
    line: usize,
    /// The command, continuation lines joined, comments and a trailing `&` kept.
    text: String,
    /// For a `$ command` of an output block: the output shown under it.
    shown: Option<Vec<String>>,
}

/// Every command of `readme`: the lines of ```` ```sh ```` blocks (joined on a
/// trailing backslash, without comment lines), and the `$ ` lines of blocks
/// without a language with the output shown under each.
fn commands(readme: &str) -> Vec<ReadmeCommand> {
    let mut found = Vec::new();
    let mut block: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    // Whether the last command found is a shown run of the current block.
    let mut showing = false;
    for (index, line) in readme.lines().enumerate() {
        let number = index + 1;
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            // A command left open at the block's end is kept as it is (and
            // fails), never joined with the next block.
            if let Some((start, text)) = pending.take() {
                found.push(ReadmeCommand {
                    line: start,
                    text,
                    shown: None,
                });
            }
            block = match block {
                None => Some(rest.trim().to_string()),
                Some(_) => None,
            };
            showing = false;
            continue;
        }
        match block.as_deref() {
            Some("sh") => {
                let (start, text) = match pending.take() {
                    Some((start, text)) => (start, format!("{text} {}", line.trim())),
                    None => (number, line.trim().to_string()),
                };
                if let Some(head) = text.strip_suffix('\\') {
                    pending = Some((start, head.trim_end().to_string()));
                } else if open_quote(&text) {
                    // A quoted argument (JSON for grpcurl) spanning lines.
                    pending = Some((start, text));
                } else if !text.is_empty() && !text.starts_with('#') {
                    found.push(ReadmeCommand {
                        line: start,
                        text,
                        shown: None,
                    });
                }
            }
            Some("") => {
                if let Some(command) = line.strip_prefix("$ ") {
                    found.push(ReadmeCommand {
                        line: number,
                        text: command.trim().to_string(),
                        shown: Some(Vec::new()),
                    });
                    showing = true;
                } else if showing
                    && let Some(ReadmeCommand {
                        shown: Some(output),
                        ..
                    }) = found.last_mut()
                {
                    output.push(line.to_string());
                }
            }
            _ => {}
        }
    }
    // A shown output ends at its block's end: the last block's trailing
    // blank lines are not output.
    for command in &mut found {
        if let Some(output) = &mut command.shown {
            while output.last().is_some_and(|l| l.trim().is_empty()) {
                output.pop();
            }
        }
    }
    found
}

/// Where `text`'s trailing comment starts (a `#` after whitespace, outside
/// quotes), and whether the text before it ends inside a quoted string.
fn scan(text: &str) -> (Option<usize>, bool) {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return (Some(i), false),
            _ => {}
        }
        previous = c;
    }
    (None, quote.is_some())
}

/// Whether `text` (its comment aside) ends inside a quoted string.
fn open_quote(text: &str) -> bool {
    scan(text).1
}

/// The command without its trailing comment.
fn without_comment(text: &str) -> &str {
    match scan(text).0 {
        Some(i) => text[..i].trim_end(),
        None => text.trim_end(),
    }
}

/// The words a shown output is recognised by: the purely alphabetic words
/// (punctuation around them trimmed) of its first line that has any.
fn recognisable_words(shown: &[String]) -> Vec<String> {
    shown
        .iter()
        .map(|line| {
            line.split_whitespace()
                .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|word| word.len() > 1 && word.chars().all(|c| c.is_ascii_alphabetic()))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find(|words| !words.is_empty())
        .unwrap_or_default()
}

/// The JSON keys a shown output names (`"key":` opening a line): each must
/// be in what the command prints, as grpcurl prints only fields that are set.
fn shown_json_keys(shown: &[String]) -> Vec<String> {
    shown
        .iter()
        .filter_map(|line| {
            let (key, _) = line.trim_start().strip_prefix('"')?.split_once("\":")?;
            Some(format!("\"{key}\""))
        })
        .collect()
}

/// What the test does with a command.
#[derive(Debug, PartialEq)]
enum Plan {
    NotRun(&'static str),
    Help,
    Stream,
    Run,
}

fn plan(text: &str) -> Option<Plan> {
    if let Some((_, why)) = NOT_RUN.iter().find(|(prefix, _)| text.starts_with(prefix)) {
        return Some(Plan::NotRun(why));
    }
    let program = text.split_whitespace().next()?;
    if !matches!(program, "netward" | "grpcurl" | "curl") {
        return None;
    }
    if program == "netward" && text.ends_with('&') {
        return Some(Plan::Help);
    }
    if STREAMS
        .iter()
        .any(|s| text.starts_with(s) || text.ends_with(s))
    {
        return Some(Plan::Stream);
    }
    Some(Plan::Run)
}

/// The running stack and what the commands need to reach it.
struct Stack {
    _database: TestDatabase,
    _processes: Vec<Netward>,
    /// Default address (as the README writes it) → the stack's.
    addresses: Vec<(String, String)>,
    env: Vec<(String, String)>,
    alert_id: String,
    executor: bool,
}

impl Stack {
    async fn start(workdir: &Path) -> Stack {
        let database = TestDatabase::create().await.unwrap();
        // `credentials create` in the README stores secrets: a key to seal them.
        let key = "ef".repeat(32);
        let inventory = Netward::start_with_env(
            "inventory",
            &["--database-url", database.url()],
            &[("NETWARD_SECRET_KEY", key.as_str())],
        )
        .await;
        let inventory_url = format!("http://{}", inventory.grpc_addr);
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/inventory.csv");
        let imported = Command::new(NETWARD)
            .args(["devices", "import"])
            .arg(&example)
            .args(["--inventory-url", &inventory_url])
            .env_remove("NETWARD_TOKEN")
            .output()
            .await
            .unwrap();
        assert!(imported.status.success(), "{imported:?}");

        let planner = Netward::start("planner", &["--inventory-url", &inventory_url]).await;
        let planner_url = format!("http://{}", planner.grpc_addr);
        // CreateRule in the README pages channel "noc": it must be configured.
        // Its webhook is never answered (the discard port), which only
        // leaves notifications pending.
        let config = workdir.join("alerting.toml");
        std::fs::write(
            &config,
            "[[alerting.notify.webhooks]]\nname = \"noc\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        )
        .unwrap();
        let alerting = Netward::start(
            "alerting",
            &[
                "--database-url",
                database.url(),
                "--inventory-url",
                &inventory_url,
                "--planner-url",
                &planner_url,
                "--config",
                config.to_str().unwrap(),
            ],
        )
        .await;
        let alerting_url = format!("http://{}", alerting.grpc_addr);

        let mut addresses = vec![
            (
                "127.0.0.1:50051".to_string(),
                inventory.grpc_addr.to_string(),
            ),
            ("127.0.0.1:50052".to_string(), planner.grpc_addr.to_string()),
            (
                "127.0.0.1:50053".to_string(),
                alerting.grpc_addr.to_string(),
            ),
            (
                "127.0.0.1:9551".to_string(),
                inventory.metrics_addr.to_string(),
            ),
            (
                "127.0.0.1:9552".to_string(),
                planner.metrics_addr.to_string(),
            ),
            (
                "127.0.0.1:9553".to_string(),
                alerting.metrics_addr.to_string(),
            ),
        ];
        let mut processes = vec![inventory, planner, alerting];
        // The executor dials a planner that is not there: it serves its own
        // API (status, ad-hoc probes) but is given no work.
        let executor = crate::executor::can_ping();
        if executor {
            let executor = Netward::start(
                "ping-executor",
                &[
                    "--planner-url",
                    "http://127.0.0.1:9",
                    "--alerting-url",
                    &alerting_url,
                ],
            )
            .await;
            addresses.push((
                "127.0.0.1:50054".to_string(),
                executor.grpc_addr.to_string(),
            ));
            addresses.push((
                "127.0.0.1:9554".to_string(),
                executor.metrics_addr.to_string(),
            ));
            processes.push(executor);
        }

        let alert_id = Self::results(&inventory_url, &planner_url, &alerting_url).await;
        Stack {
            _database: database,
            _processes: processes,
            addresses,
            env: vec![
                ("NETWARD_INVENTORY_URL".into(), inventory_url),
                ("NETWARD_PLANNER_URL".into(), planner_url),
                ("NETWARD_ALERTING_URL".into(), alerting_url),
                // `alerts ack` records $USER: the README's example shows alice.
                ("USER".into(), "alice".into()),
                // `credentials create` reads its secrets from these (or a prompt).
                ("NETWARD_SNMP_COMMUNITY".into(), "readme-community".into()),
                (
                    "NETWARD_SNMP_AUTH_KEY".into(),
                    "readme-auth-passphrase".into(),
                ),
                (
                    "NETWARD_SNMP_PRIV_KEY".into(),
                    "readme-priv-passphrase".into(),
                ),
            ],
            alert_id,
            executor,
        }
    }

    /// Waits for the planner's first ping cycle and alerting's copy of the
    /// inventory, then sends results: the data-centre core routers and a
    /// branch's devices answer, the branch's router does not (DOWN, with a
    /// device-down alert). Returns that alert's id.
    async fn results(inventory_url: &str, planner_url: &str, alerting_url: &str) -> String {
        let mut inventory =
            InventoryServiceClient::new(connect(inventory_url, &Default::default()).unwrap());
        let ids: HashMap<String, String> = inventory
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
        assert_eq!(ids.len(), 854, "the example inventory is imported");

        let planner = PlannerServiceClient::new(connect(planner_url, &Default::default()).unwrap());
        eventually(
            "the planner opens a ping cycle",
            Duration::from_secs(30),
            || {
                let mut planner = planner.clone();
                async move {
                    let current = planner
                        .get_current_cycle(v1::GetCurrentCycleRequest {
                            kind: v1::ExecutorKind::Ping as i32,
                        })
                        .await
                        .ok()?
                        .into_inner();
                    current.cycle.map(|_| ())
                }
            },
        )
        .await;

        let alerting =
            AlertingServiceClient::new(connect(alerting_url, &Default::default()).unwrap());
        let router = ids["gori-001-rtr1"].clone();
        eventually(
            "alerting follows the inventory",
            Duration::from_secs(30),
            || {
                let mut alerting = alerting.clone();
                let router = router.clone();
                async move {
                    let request = v1::GetDeviceStatusRequest { device_id: router };
                    alerting.get_device_status(request).await.ok().map(|_| ())
                }
            },
        )
        .await;
        let answering: Vec<&str> = ids
            .iter()
            .filter(|(name, _)| name.contains("-dc1-core") || name.starts_with("tbilisi-001-"))
            .map(|(_, id)| id.as_str())
            .collect();
        let mut results: Vec<(&str, bool)> = answering.iter().map(|id| (*id, true)).collect();
        results.push((&router, false));
        Ingest::over(alerting.clone())
            .await
            .results(1, &results)
            .await;

        eventually(
            "the router's device-down alert fires",
            Duration::from_secs(30),
            || {
                let mut alerting = alerting.clone();
                let router = router.clone();
                async move {
                    let alerts = alerting
                        .list_alerts(v1::ListAlertsRequest::default())
                        .await
                        .ok()?
                        .into_inner()
                        .alerts;
                    alerts
                        .into_iter()
                        .find(|a| a.device_id == router)
                        .map(|a| a.id)
                }
            },
        )
        .await
    }

    /// The command as it runs against this stack.
    fn substitute(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (readme, ours) in &self.addresses {
            text = text.replace(readme, ours);
        }
        text.replace(README_ALERT_ID, &self.alert_id[..8])
            .replace(r#""id": "…""#, &format!(r#""id": "{}""#, self.alert_id))
    }

    fn command(&self, text: &str, workdir: &Path, bin: &Path) -> Command {
        let mut command = Command::new("bash");
        command
            .args(["-c", text])
            .current_dir(workdir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("NETWARD_")) {
            command.env_remove(key);
        }
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", bin.display()));
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

/// Files the README's commands read, as an operator would have them.
fn prepare(workdir: &Path) -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(repo.join("deploy"), workdir.join("deploy")).unwrap();
    // `netward devices import devices.csv`: a fleet file (the example's).
    std::fs::copy(
        repo.join("deploy/examples/inventory.csv"),
        workdir.join("devices.csv"),
    )
    .unwrap();
    // `$ netward devices import branches.csv`: a file with a bad row.
    std::fs::write(
        workdir.join("branches.csv"),
        "name,ip,site,region,type\n\
         gori-101-rtr1,127.9.1.1,gori-101,Gori,router\n\
         gori-101-atm1,127.9.1.300,gori-101,Gori,atm\n",
    )
    .unwrap();
    let bin = workdir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(NETWARD, bin.join("netward")).unwrap();
    bin
}

#[tokio::test]
async fn the_readme_commands_run() {
    let workdir = std::env::temp_dir().join(format!("netward-readme-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&workdir).unwrap();
    let bin = prepare(&workdir);
    let stack = Stack::start(&workdir).await;

    let all = commands(README);
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for command in &all {
        let at = format!("README.md:{} `{}`", command.line, command.text);
        let Some(plan) = plan(without_comment(&command.text)) else {
            failures.push(format!(
                "{at}: neither run by this test nor in its NOT_RUN list"
            ));
            continue;
        };
        if let Plan::NotRun(why) = plan {
            println!("not run: {at}: {why}");
            continue;
        }
        if !stack.executor && command.text.contains("127.0.0.1:50054") {
            println!("skipped: {at}: no ICMP socket here for the ping executor");
            continue;
        }
        let text = stack.substitute(without_comment(&command.text));
        let text = match plan {
            Plan::Help => format!("{} --help", text.trim_end_matches('&').trim_end()),
            _ => text,
        };
        let mut process = stack.command(&text, &workdir, &bin);
        if plan == Plan::Stream {
            let mut child = process
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut first = [0u8; 1];
            let read = tokio::time::timeout(
                STREAM_FOR,
                tokio::io::AsyncReadExt::read(&mut stdout, &mut first),
            )
            .await;
            tokio::time::sleep(STREAM_FOR).await;
            let running = child.try_wait().unwrap().is_none();
            let _ = child.kill().await;
            if !matches!(read, Ok(Ok(1))) || !running {
                failures.push(format!(
                    "{at}: should stream (printed: {read:?}, still running: {running})"
                ));
            }
            ran.push(command.text.clone());
            continue;
        }
        let output = match tokio::time::timeout(Duration::from_secs(60), process.output()).await {
            Ok(output) => output.unwrap(),
            Err(_) => {
                failures.push(format!("{at}: still running after 60 s"));
                continue;
            }
        };
        ran.push(command.text.clone());
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let shown = command.shown.as_deref().unwrap_or_default();
        let must_fail = shown.iter().any(|l| l.starts_with("netward: error:"));
        if output.status.success() == must_fail {
            failures.push(format!(
                "{at}: {} ({}), printed:\n{printed}",
                if must_fail {
                    "the README shows it failing, it succeeded"
                } else {
                    "failed"
                },
                output.status
            ));
            continue;
        }
        if OUTPUT_NOT_CHECKED
            .iter()
            .any(|(prefix, _)| command.text.starts_with(prefix))
        {
            continue;
        }
        let missing: Vec<String> = recognisable_words(shown)
            .into_iter()
            .chain(shown_json_keys(shown))
            .filter(|word| !printed.contains(word.as_str()))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{at}: the output shown in the README is not recognisable (missing {missing:?}); printed:\n{printed}"
            ));
        }
    }

    for (prefix, _) in NOT_RUN.iter().chain(OUTPUT_NOT_CHECKED) {
        if !all.iter().any(|c| c.text.starts_with(prefix)) {
            failures.push(format!(
                "`{prefix}` is listed in the test but no README command starts with it"
            ));
        }
    }
    // The first screen's commands, at least, must be among those run.
    for first_screen in [
        "netward status",
        "netward alerts",
        "netward.v1.PlannerService/GetCurrentCycle",
    ] {
        if !ran.iter().any(|c| c.contains(first_screen)) {
            failures.push(format!("no README command with `{first_screen}` was run"));
        }
    }
    println!("ran {} README commands", ran.len());
    let _ = std::fs::remove_dir_all(&workdir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn commands_are_read_from_sh_blocks_and_shown_runs() {
    let readme = "intro\n\
        ```sh\n\
        netward status   # counts\n\
        # a comment line\n\
        grpcurl -d '{\"a\": 1}' \\\n\
          127.0.0.1:50052 list\n\
        grpcurl -d '{\"a\": 1,\n\
          \"b\": 2}' 127.0.0.1:50052 Call\n\
        netward sizing 875   # the seed's line\n\
        netward planner status\n\
        ```\n\
        ```\n\
        $ netward sizing 875\n\
        AUTO-SCALING: 875 devices → batch size 100 → 9 batches\n\
        \n\
        $ netward alerts\n\
        ID  SEVERITY\n\
        ```\n\
        ```toml\n\
        $ not = \"a command\"\n\
        ```\n";
    let found = commands(readme);
    let texts: Vec<&str> = found.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "netward status   # counts",
            "grpcurl -d '{\"a\": 1}' 127.0.0.1:50052 list",
            "grpcurl -d '{\"a\": 1, \"b\": 2}' 127.0.0.1:50052 Call",
            "netward sizing 875   # the seed's line",
            "netward planner status",
            "netward sizing 875",
            "netward alerts",
        ]
    );
    assert_eq!(found[1].line, 5);
    assert_eq!(
        recognisable_words(found[5].shown.as_ref().unwrap()),
        ["devices", "batch", "size", "batches"]
    );
    assert_eq!(without_comment(&found[0].text), "netward status");
    assert_eq!(
        shown_json_keys(&[
            "{".into(),
            "  \"cycle\": {".into(),
            "    \"batchSize\": 100,".into()
        ]),
        ["\"cycle\"", "\"batchSize\""]
    );
    assert_eq!(
        without_comment("grpcurl -d '{\"x\": \"# not a comment\"}' list  # a comment"),
        "grpcurl -d '{\"x\": \"# not a comment\"}' list"
    );
    assert_eq!(plan("netward planner --token s3cret &"), Some(Plan::Help));
    assert_eq!(plan("netward devices watch"), Some(Plan::Stream));
    assert_eq!(plan("rm -rf /"), None);
}
