//! The production stack's files, checked against the binary and against
//! the tools that will read them: `docker-compose.yml` (docker-compose's own
//! validation with `.env.example`, then every netward service's command,
//! health check, ports and `NETWARD_*` variables against the real CLI and
//! config structs, and the resource limits against the 6-vCPU / 16 GB
//! host), Prometheus's config and rules (promtool, including the rules'
//! unit tests in deploy/prometheus/tests), Alertmanager's config
//! (amtool), and the Grafana dashboard (it parses, and queries only
//! `netward_*` metrics the code records). No Docker engine is needed; a
//! missing tool skips its check with a message (scripts/setup.sh installs
//! them all, so CI runs everything).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use netward_shared::config::{ConfigLoader, LoadedConfig, Target};
use serde_json::Value;

use crate::support::NETWARD;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The host the stack is sized for (DESIGN: one 6-vCPU / 16 GB machine).
const HOST_CPUS: f64 = 6.0;
const HOST_MEMORY: u64 = 16 << 30;

/// Every metric the dashboard queries, in the renamed `netward_*` form.
const DASHBOARD_METRICS: &[&str] = &[
    "netward_alerting_alerts_open",
    "netward_alerting_devices",
    "netward_alerting_ingest_lag_seconds_bucket",
    "netward_alerting_monitored_devices",
    "netward_alerting_outbox_pending",
    "netward_alerting_redis_up",
    "netward_alerting_results_skipped_total",
    "netward_alerting_results_stored_total",
    "netward_alerting_stale_devices",
    "netward_delivery_buffered_batches",
    "netward_delivery_connected",
    "netward_delivery_dropped_batches_total",
    "netward_executor_probes_total",
    "netward_executor_rtt_seconds_bucket",
    "netward_planner_cycles_total",
    "netward_planner_devices_planned_total",
    "netward_planner_executors_connected",
    "netward_planner_leader",
    "netward_planner_overruns_total",
    "netward_planner_skipped_total",
    "netward_planner_unserved_batches_total",
    "netward_snmp_polls_total",
];

/// Every metric the alert rules query (`up` is Prometheus's own).
const RULE_METRICS: &[&str] = &[
    "netward_alerting_ingest_lag_seconds_bucket",
    "netward_alerting_outbox_pending",
    "netward_alerting_redis_up",
    "netward_alerting_stale_devices",
    "netward_delivery_buffered_batches",
    "netward_delivery_connected",
    "netward_delivery_dropped_batches_total",
    "netward_planner_cycles_total",
    "netward_planner_executors_connected",
    "netward_planner_leader",
    "netward_planner_overruns_total",
    "netward_planner_unserved_batches_total",
    "up",
];

fn path(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

/// The tool's path, or `None` after saying why the check is skipped.
pub(crate) fn tool(name: &str, check: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        eprintln!("skipped {check}: {name} is not installed (scripts/setup.sh installs it)");
    }
    found
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `docker-compose … config` with `.env.example` as the settings, and the
/// observability profile on: the file as docker-compose resolves it (YAML
/// anchors merged, variables substituted).
fn resolved_compose(docker_compose: &Path) -> Value {
    let output = run(compose_command(docker_compose, ".env.example").args([
        "--profile",
        "observability",
        "config",
    ]));
    serde_yaml_ng::from_slice(&output.stdout).expect("docker-compose config prints YAML")
}

/// docker-compose in the repository with only `env_file` as settings: the
/// caller's own environment (a developer's NETWARD_TOKEN…) must not help.
fn compose_command(docker_compose: &Path, env_file: &str) -> Command {
    let mut command = Command::new(docker_compose);
    command
        .current_dir(ROOT)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["--env-file", env_file, "-f", "docker-compose.yml"]);
    command
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default()
}

/// A compose memory size (`512m`, `4g`, or bytes) in bytes.
fn bytes(value: &Value) -> u64 {
    let size = text(value).to_ascii_lowercase();
    let (number, unit) = size.split_at(size.trim_end_matches(char::is_alphabetic).len());
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("memory size {size:?}"));
    let scale: u64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        other => panic!("unit {other:?} of memory size {size:?}"),
    };
    (number * scale as f64) as u64
}

/// A netward service of the compose file: which target it runs and how.
struct NetwardService {
    name: String,
    target: Target,
    config: LoadedConfig,
    env: HashMap<String, String>,
}

fn netward_services(compose: &Value) -> Vec<NetwardService> {
    let services = compose["services"].as_object().expect("services");
    let mut found = Vec::new();
    for (name, service) in services {
        if service.get("build").is_none() {
            continue;
        }
        let command = strings(&service["command"]);
        let target = Target::from_str(&command[0])
            .unwrap_or_else(|error| panic!("service {name}: command {command:?}: {error}"));
        let env: HashMap<String, String> = service["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("service {name} has no environment"))
            .iter()
            .map(|(key, value)| (key.clone(), text(value)))
            .collect();
        let config = ConfigLoader::new(target)
            .env(env.clone())
            .load()
            .unwrap_or_else(|error| {
                panic!("service {name}: its environment does not load: {error}")
            });
        // It listens on 0.0.0.0 inside its container: the safe default lets
        // it start only because a token protects it.
        config
            .common
            .check_exposure()
            .unwrap_or_else(|error| panic!("service {name} would refuse to start: {error}"));
        found.push(NetwardService {
            name: name.clone(),
            target,
            config,
            env,
        });
    }
    found
}

/// `netward ARGS… --help` must succeed: the words are a real subcommand
/// with real flags.
fn assert_parses(service: &str, args: &[String]) {
    let output = Command::new(NETWARD)
        .args(args)
        .arg("--help")
        .output()
        .expect("run netward");
    assert!(
        output.status.success(),
        "service {service}: `netward {}` is not a valid command line: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Checks one `NETWARD_*` variable is a real setting and took effect.
fn assert_known_setting(service: &NetwardService, key: &str, value: &str) {
    let common = &service.config.common;
    let applied = match key {
        "NETWARD_GRPC_ADDR" => common.grpc_addr.to_string() == value,
        "NETWARD_METRICS_ADDR" => common.metrics_addr.to_string() == value,
        "NETWARD_DATABASE_URL" => {
            common.database_url.as_ref().map(|s| s.expose().as_str()) == Some(value)
        }
        "NETWARD_REDIS_URL" => {
            common.redis_url.as_ref().map(|s| s.expose().as_str()) == Some(value)
        }
        "NETWARD_TOKEN" => common.token.as_ref().map(|s| s.expose().as_str()) == Some(value),
        "NETWARD_INVENTORY_URL" => common.inventory_url == value,
        "NETWARD_PLANNER_URL" => common.planner_url == value,
        "NETWARD_ALERTING_URL" => common.alerting_url == value,
        "NETWARD_LOG__FORMAT" => format!("{:?}", common.log.format).eq_ignore_ascii_case(value),
        "NETWARD_LOG__FILTER" => common.log.filter == value,
        "NETWARD_SECRET_KEY" => {
            service.target == Target::Inventory
                && service
                    .config
                    .value::<String>("secret_key")
                    .unwrap()
                    .as_deref()
                    == Some(value)
        }
        "NETWARD_PING_EXECUTOR__EXECUTOR_ID" => {
            service.target == Target::PingExecutor
                && service
                    .config
                    .section::<netward_ping_executor::PingExecutorConfig>()
                    .unwrap()
                    .executor_id
                    == value
        }
        "NETWARD_SNMP_POLLER__EXECUTOR_ID" => {
            service.target == Target::SnmpPoller
                && service
                    .config
                    .section::<netward_snmp_poller::SnmpPollerConfig>()
                    .unwrap()
                    .executor_id
                    == value
        }
        other => panic!(
            "service {}: {other} is not a setting this test knows; add it here once it is checked against the config structs",
            service.name
        ),
    };
    assert!(
        applied,
        "service {}: {key}={value:?} did not take effect",
        service.name
    );
}

#[test]
fn compose_file_is_valid_with_the_example_settings_and_needs_the_secrets() {
    let Some(docker_compose) = tool("docker-compose", "the compose file checks") else {
        return;
    };
    run(compose_command(&docker_compose, ".env.example").args(["config", "-q"]));
    run(compose_command(&docker_compose, ".env.example").args([
        "--profile",
        "observability",
        "config",
        "-q",
    ]));

    // Without the settings, the required secrets stop docker-compose.
    let empty = std::env::temp_dir().join(format!("netward-empty-{}.env", uuid::Uuid::new_v4()));
    std::fs::write(&empty, "").unwrap();
    let output = compose_command(&docker_compose, empty.to_str().unwrap())
        .args(["config", "-q"])
        .output()
        .unwrap();
    std::fs::remove_file(&empty).unwrap();
    assert!(
        !output.status.success(),
        "the stack must refuse to start without its secrets"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in .env"), "unexpected error: {stderr}");

    // No secret literal in the file: the example values live only in .env.example.
    let file = std::fs::read_to_string(path("docker-compose.yml")).unwrap();
    let example = std::fs::read_to_string(path(".env.example")).unwrap();
    for line in example.lines().filter(|line| !line.starts_with('#')) {
        if let Some((key, value)) = line.split_once('=')
            && (key.contains("PASSWORD") || key.contains("TOKEN") || key.contains("SECRET"))
        {
            assert!(
                !file.contains(value),
                "{key}'s value is written in docker-compose.yml"
            );
        }
    }
}

#[test]
fn compose_services_match_the_binary_ports_and_host() {
    let Some(docker_compose) = tool("docker-compose", "the compose file checks") else {
        return;
    };
    let compose = resolved_compose(&docker_compose);
    let services = netward_services(&compose);
    let by_name: HashMap<&str, &NetwardService> =
        services.iter().map(|s| (s.name.as_str(), s)).collect();

    // Every target runs, the planner and ping executor twice.
    let count = |target: Target| services.iter().filter(|s| s.target == target).count();
    for target in Target::ALL {
        assert!(count(target) >= 1, "no service runs {target}");
    }
    assert_eq!(count(Target::Planner), 2, "a leader and a standby planner");
    assert_eq!(count(Target::PingExecutor), 2, "two ping executors");

    let mut executor_ids = BTreeSet::new();
    for service in &services {
        let spec = &compose["services"][&service.name];
        let common = &service.config.common;
        assert_parses(&service.name, &strings(&spec["command"]));

        // Listens on the stack's network, on the target's ports.
        assert!(
            common.grpc_addr.ip().is_unspecified(),
            "{}: gRPC on loopback only",
            service.name
        );
        assert!(
            common.metrics_addr.ip().is_unspecified(),
            "{}: metrics on loopback only",
            service.name
        );
        assert_eq!(
            common.grpc_addr.port(),
            service.target.default_grpc_port(),
            "{}",
            service.name
        );
        assert_eq!(
            common.metrics_addr.port(),
            service.target.default_metrics_port(),
            "{}",
            service.name
        );

        // The health check is `netward health` on that port.
        let check = strings(&spec["healthcheck"]["test"]);
        assert_eq!(
            check[..3],
            ["CMD", "netward", "health"],
            "{}: {check:?}",
            service.name
        );
        assert_parses(&service.name, &check[2..]);
        let addr = check
            .iter()
            .position(|word| word == "--addr")
            .map(|at| &check[at + 1]);
        assert_eq!(
            addr.map(String::as_str),
            Some(format!("127.0.0.1:{}", common.grpc_addr.port()).as_str()),
            "{}: health check address",
            service.name
        );

        for (key, value) in service
            .env
            .iter()
            .filter(|(key, _)| key.starts_with("NETWARD_"))
        {
            assert_known_setting(service, key, value);
        }
        assert!(
            common.token.is_some(),
            "{}: without a token, every call is open",
            service.name
        );
        assert_eq!(
            service
                .env
                .get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(String::as_str),
            Some("http://jaeger:4317")
        );
        match service.target {
            Target::Inventory | Target::Alerting => assert!(common.database_url.is_some()),
            _ => assert!(
                common.database_url.is_none(),
                "{}: needs no database",
                service.name
            ),
        }
        if matches!(service.target, Target::Planner | Target::Alerting) {
            assert!(common.redis_url.is_some(), "{}: needs Redis", service.name);
        }

        // The peers it dials are services of the file running that target on that port.
        let mut peers = vec![
            (Target::Inventory, common.inventory_url.clone()),
            (Target::Alerting, common.alerting_url.clone()),
        ];
        if matches!(service.target, Target::PingExecutor | Target::SnmpPoller) {
            let planners: Vec<&str> = common.planner_url.split(',').collect();
            assert_eq!(planners.len(), 2, "{}: dials both planners", service.name);
            peers.extend(
                planners
                    .into_iter()
                    .map(|url| (Target::Planner, url.to_string())),
            );
        }
        for (target, url) in peers {
            let (host, port) = url
                .strip_prefix("http://")
                .and_then(|rest| rest.split_once(':'))
                .unwrap_or_else(|| panic!("{}: peer url {url:?}", service.name));
            let peer = by_name
                .get(host)
                .unwrap_or_else(|| panic!("{}: {url} is no service of the file", service.name));
            assert_eq!(
                peer.target, target,
                "{}: {url} runs {}",
                service.name, peer.target
            );
            assert_eq!(
                port,
                peer.config.common.grpc_addr.port().to_string(),
                "{}: {url}",
                service.name
            );
        }

        // Restarts, waits for healthy dependencies, raw sockets only where ICMP is sent.
        assert_eq!(spec["restart"], "unless-stopped", "{}", service.name);
        for (dependency, condition) in spec["depends_on"].as_object().unwrap() {
            let wanted = if compose["services"][dependency].get("healthcheck").is_some() {
                "service_healthy"
            } else {
                "service_started"
            };
            assert_eq!(
                condition["condition"], wanted,
                "{} → {dependency}",
                service.name
            );
        }
        let caps = strings(&spec["cap_add"]);
        if service.target == Target::PingExecutor {
            assert_eq!(caps, ["NET_RAW"], "{}", service.name);
            let id = &service.env["NETWARD_PING_EXECUTOR__EXECUTOR_ID"];
            assert!(
                executor_ids.insert(id.clone()),
                "executor id {id} used twice"
            );
        } else {
            assert!(caps.is_empty(), "{}: capabilities {caps:?}", service.name);
        }
    }

    // Prometheus scrapes each target's metrics port, one job per target.
    let prometheus: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(path("deploy/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let mut scraped: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for job in prometheus["scrape_configs"].as_array().unwrap() {
        for config in job["static_configs"].as_array().unwrap() {
            scraped
                .entry(text(&job["job_name"]))
                .or_default()
                .extend(strings(&config["targets"]));
        }
    }
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for service in &services {
        expected
            .entry(service.target.name().to_string())
            .or_default()
            .insert(format!(
                "{}:{}",
                service.name,
                service.config.common.metrics_addr.port()
            ));
    }
    for (job, targets) in &expected {
        assert_eq!(scraped.get(job), Some(targets), "Prometheus job {job}");
    }

    // Limits on every service, adding up to less than the host.
    let mut cpus = 0.0;
    let mut memory = 0;
    let mut table = Vec::new();
    for (name, spec) in compose["services"].as_object().unwrap() {
        let cpu = spec["cpus"]
            .as_f64()
            .or_else(|| text(&spec["cpus"]).parse().ok())
            .unwrap_or_else(|| panic!("{name} has no cpus limit"));
        assert!(spec.get("mem_limit").is_some(), "{name} has no mem_limit");
        let mem = bytes(&spec["mem_limit"]);
        cpus += cpu;
        memory += mem;
        table.push(format!("{name}: {cpu} vCPU, {} MiB", mem >> 20));
    }
    println!(
        "limits, observability profile included:\n  {}",
        table.join("\n  ")
    );
    println!(
        "total: {cpus} vCPU, {:.1} GiB",
        memory as f64 / (1u64 << 30) as f64
    );
    assert!(
        cpus <= HOST_CPUS,
        "{cpus} vCPU of limits on a {HOST_CPUS}-vCPU host"
    );
    assert!(
        memory <= HOST_MEMORY,
        "{memory} bytes of limits on a 16 GB host"
    );
    assert!(
        cpus < HOST_CPUS && memory < HOST_MEMORY,
        "no room left for the OS"
    );
}

#[test]
fn prometheus_and_alertmanager_configs_pass_their_checkers() {
    if let Some(promtool) = tool("promtool", "the Prometheus config and rules checks") {
        // `check config` also loads the rule files the config names.
        let output = run(Command::new(&promtool)
            .args(["check", "config"])
            .arg(path("deploy/prometheus/prometheus.yml")));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("1 rule files found"),
            "prometheus.yml must load the rules: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        run(Command::new(&promtool)
            .args(["check", "rules"])
            .arg(path("deploy/prometheus/rules/netward.yml")));
        // The rules fire (and stay quiet) on recorded series as they should.
        run(Command::new(&promtool)
            .args(["test", "rules"])
            .arg(path("deploy/prometheus/tests/netward.test.yml")));
    }
    if let Some(amtool) = tool("amtool", "the Alertmanager config check") {
        run(Command::new(amtool)
            .arg("check-config")
            .arg(path("deploy/alertmanager/alertmanager.yml")));
    }
}

#[test]
fn rules_are_complete_and_query_recorded_metrics() {
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(path("deploy/prometheus/rules/netward.yml")).unwrap(),
    )
    .unwrap();
    let mut queried = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = text(&rule["alert"]);
            assert!(rule.get("for").is_some(), "{name}: no `for`");
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning")
                ),
                "{name}: severity"
            );
            for annotation in ["summary", "description"] {
                assert!(
                    rule["annotations"].get(annotation).is_some(),
                    "{name}: no {annotation}"
                );
            }
            queried.extend(metric_names(&text(&rule["expr"])));
        }
    }
    let listed: BTreeSet<String> = RULE_METRICS.iter().map(|m| m.to_string()).collect();
    assert_eq!(queried, listed, "the rules' metrics (update RULE_METRICS)");
    assert_recorded(RULE_METRICS.iter().filter(|m| **m != "up"));
}

#[test]
fn dashboard_parses_and_queries_recorded_metrics() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(path("deploy/grafana/dashboards/netward.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let datasources: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(path(
            "deploy/grafana/provisioning/datasources/prometheus.yml",
        ))
        .unwrap(),
    )
    .unwrap();
    let uid = &datasources["datasources"][0]["uid"];

    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(&panel["datasource"]["uid"], uid, "panel {}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(metric_names(&text(&target["expr"])));
        }
    }
    let listed: BTreeSet<String> = DASHBOARD_METRICS.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        queried, listed,
        "the dashboard's metrics (update DASHBOARD_METRICS)"
    );
    assert_recorded(DASHBOARD_METRICS.iter());
}

/// Each name is a metric the code records (under its `netward_` name), or a
/// histogram's `_bucket`/`_sum`/`_count` series of one.
fn assert_recorded<'a>(names: impl Iterator<Item = &'a &'a str>) {
    let recorded = recorded_metrics();
    for name in names {
        assert!(
            name.starts_with("netward_"),
            "{name} is not a netward_* metric"
        );
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| recorded.contains(*base))
            })
            .unwrap_or(name);
        assert!(
            recorded.contains(base),
            "{name} is not recorded by any service"
        );
    }
}

/// The names of every `counter!`, `gauge!` and `histogram!` call in the
/// workspace's code, as exported: `netward_` + the name (unless it has it).
fn recorded_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs: Vec<PathBuf> = ["services", "shared", "src"]
        .iter()
        .map(|d| path(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                dirs.push(entry);
            } else if entry.extension().is_some_and(|ext| ext == "rs") {
                let code = std::fs::read_to_string(&entry).unwrap();
                for macro_call in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in code.match_indices(macro_call) {
                        let rest = code[at + macro_call.len()..].trim_start();
                        if let Some(literal) = rest.strip_prefix('"')
                            && let Some(end) = literal.find('"')
                        {
                            let name = &literal[..end];
                            names.insert(if name.starts_with("netward_") {
                                name.to_string()
                            } else {
                                format!("netward_{name}")
                            });
                        }
                    }
                }
            }
        }
    }
    assert!(
        names.len() > 30,
        "found only {names:?}: has the code moved?"
    );
    names
}

/// The metric names a PromQL expression selects: identifiers outside label
/// matchers, ranges, strings and label lists that are not functions,
/// aggregations or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations too: `sum by (kind) (…)` is not followed by its parenthesis.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut at = 0;
    // Skips from an opening bracket to just after its closing one.
    let skip = |mut at: usize, open: char, close: char| {
        let mut depth = 0;
        while at < chars.len() {
            if chars[at] == open {
                depth += 1;
            } else if chars[at] == close {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            } else if chars[at] == '"' {
                at += 1;
                while at < chars.len() && chars[at] != '"' {
                    at += 1;
                }
            }
            at += 1;
        }
        at
    };
    while at < chars.len() {
        let c = chars[at];
        if c == '{' {
            at = skip(at, '{', '}');
        } else if c == '[' {
            at = skip(at, '[', ']');
        } else if c == '"' {
            at = skip(at, '"', '"');
        } else if c.is_ascii_digit() || c == '.' {
            while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '.') {
                at += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = at;
            while at < chars.len()
                && (chars[at].is_ascii_alphanumeric() || matches!(chars[at], '_' | ':'))
            {
                at += 1;
            }
            let word: String = chars[start..at].iter().collect();
            let mut next = at;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    at = skip(next, '(', ')');
                }
            } else if !called && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            at += 1;
        }
    }
    names
}

#[test]
fn promql_metric_names_are_found() {
    let names = metric_names(
        r#"sum by (kind) (rate(a_total{kind="ping", x=~"b|c"}[5m])) / on (kind) group_left b_total offset 1m and scalar(count(up{job="y"})) > 0.5"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_total".into(), "b_total".into(), "up".into()])
    );
}
