//! `netward sizing <n>` and `netward planner status`: clients of the
//! planner's operator RPCs (`GetSizing`, `GetLeader`, `ListExecutors`,
//! `ListCycles`) that print the seed's AUTO-SCALING line, tables, or JSON.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Args;
use netward_shared::client::PeerChannel;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::proto::v1::{
    CycleSummary, ExecutorInfo, ExecutorKind, GetLeaderRequest, GetLeaderResponse,
    GetSizingRequest, GetSizingResponse, ListCyclesRequest, ListExecutorsRequest, SizingPolicy,
};
use netward_shared::tonic::Status;
use prost_types::Timestamp;
use serde::Serialize;

use super::table::Table;
use super::{TlsArgs, describe_status};

/// Where the planner is and how to authenticate: every planner verb takes these.
#[derive(Debug, Args)]
pub struct PlannerArgs {
    /// Planner service to call
    #[arg(
        long,
        env = "NETWARD_PLANNER_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:50052"
    )]
    planner_url: String,
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

type PlannerClient = PlannerServiceClient<PeerChannel>;

impl PlannerArgs {
    /// A client on a lazy channel: nothing is dialled until the first call.
    pub(super) fn client(&self) -> anyhow::Result<PlannerClient> {
        let options = self.tls.client_options(self.token.as_ref());
        let channel = netward_shared::client::connect(&self.planner_url, &options)
            .context("cannot set up the planner client")?;
        Ok(PlannerServiceClient::new(channel))
    }

    /// An error for a failed call, naming the RPC, the planner, and the
    /// status code and message the operator can act on.
    pub(super) fn call_failed(&self, rpc: &str, status: &Status) -> anyhow::Error {
        anyhow::anyhow!("{rpc} at {}: {}", self.planner_url, describe_status(status))
    }
}

#[derive(Debug, Args)]
pub struct SizingArgs {
    /// Device count to size for
    #[arg(value_name = "DEVICES")]
    devices: u64,
    /// What if: batches to aim for per cycle, instead of the planner's policy
    #[arg(long, value_name = "N")]
    target_batches: Option<u32>,
    /// What if: round batch sizes to the nearest multiple of N
    #[arg(long, value_name = "N")]
    rounding_step: Option<u32>,
    /// What if: smallest batch size
    #[arg(long, value_name = "N")]
    min: Option<u32>,
    /// What if: largest batch size
    #[arg(long, value_name = "N")]
    max: Option<u32>,
    /// One JSON object instead of the AUTO-SCALING line
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    planner: PlannerArgs,
}

/// `sizing --json`: the decision and the policy it was made under.
#[derive(Debug, Serialize)]
struct SizingJson {
    device_count: u64,
    batch_size: u32,
    batch_count: u32,
    clamped: bool,
    unclamped_batch_size: u32,
    explanation: String,
    policy: PolicyJson,
}

#[derive(Debug, Serialize)]
struct PolicyJson {
    target_batches: u32,
    rounding_step: u32,
    min_batch_size: u32,
    max_batch_size: u32,
}

impl From<GetSizingResponse> for SizingJson {
    fn from(sizing: GetSizingResponse) -> Self {
        let policy = sizing.policy.unwrap_or_default();
        Self {
            device_count: sizing.device_count,
            batch_size: sizing.batch_size,
            batch_count: sizing.batch_count,
            clamped: sizing.clamped,
            unclamped_batch_size: sizing.unclamped_batch_size,
            explanation: sizing.explanation,
            policy: PolicyJson::from(policy),
        }
    }
}

impl From<SizingPolicy> for PolicyJson {
    fn from(policy: SizingPolicy) -> Self {
        Self {
            target_batches: policy.target_batches,
            rounding_step: policy.rounding_step,
            min_batch_size: policy.min_batch_size,
            max_batch_size: policy.max_batch_size,
        }
    }
}

/// Asks the planner, never computes locally: the planner owns the policy
/// (it may have been changed at run time), so a local answer could differ
/// from what the cycles really do.
pub async fn sizing(args: SizingArgs) -> anyhow::Result<()> {
    let mut client = args.planner.client()?;
    let response = client
        .get_sizing(GetSizingRequest {
            device_count: args.devices,
            target_batches: args.target_batches,
            rounding_step: args.rounding_step,
            min_batch_size: args.min,
            max_batch_size: args.max,
        })
        .await
        .map_err(|status| {
            let error = args.planner.call_failed("GetSizing", &status);
            if status.code() == netward_shared::tonic::Code::Unavailable {
                // Said outright, so nobody expects a local fallback.
                error.context("the planner owns the sizing policy and must be running to answer")
            } else {
                error
            }
        })?
        .into_inner();
    let mut out = io::stdout().lock();
    if args.json {
        // Through a String: serde_json hides an I/O error's kind, and a
        // closed pipe must stay recognisable.
        let line = serde_json::to_string(&SizingJson::from(response))?;
        writeln!(out, "{line}")?;
    } else {
        write_sizing(&mut out, &response)?;
    }
    out.flush()?;
    Ok(())
}

/// The seed's line, word for word as the planner logs it each cycle, then
/// the arithmetic behind it.
fn write_sizing(out: &mut impl io::Write, sizing: &GetSizingResponse) -> io::Result<()> {
    writeln!(out, "{}", auto_scaling_line(sizing))?;
    if !sizing.explanation.is_empty() {
        writeln!(out, "{}", sizing.explanation)?;
    }
    Ok(())
}

fn auto_scaling_line(sizing: &GetSizingResponse) -> String {
    format!(
        "AUTO-SCALING: {} devices → batch size {} → {} batches",
        sizing.device_count, sizing.batch_size, sizing.batch_count
    )
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Most recent cycles to show per kind (ping, SNMP)
    #[arg(long, value_name = "N", default_value_t = 10)]
    cycles: u32,
    /// One JSON object with the leader, the executors and the cycles, instead of tables
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    planner: PlannerArgs,
}

/// `planner status --json`: everything the tables show, and a little more.
#[derive(Debug, Serialize)]
struct StatusJson {
    leader: LeaderJson,
    executors: Vec<ExecutorJson>,
    cycles: Vec<CycleJson>,
}

#[derive(Debug, Serialize)]
struct LeaderJson {
    instance_id: Option<String>,
    epoch: u64,
    address: Option<String>,
    lease_expires_at: Option<String>,
    acquired_at: Option<String>,
    answered_by: String,
    answered_by_leader: bool,
}

#[derive(Debug, Serialize)]
struct ExecutorJson {
    id: String,
    kind: &'static str,
    labels: BTreeMap<String, String>,
    capacity: u32,
    in_flight_batches: u32,
    in_flight_devices: u32,
    last_heartbeat_at: Option<String>,
    connected_since: Option<String>,
    completed_batches: u64,
    overrun_batches: u64,
    reassigned_batches: u64,
    version: String,
    hostname: String,
    remote_address: String,
}

#[derive(Debug, Serialize)]
struct CycleJson {
    cycle_id: u64,
    kind: &'static str,
    started_at: Option<String>,
    completed: bool,
    duration_ms: u32,
    device_count: u32,
    batch_size: u32,
    batch_count: u32,
    skipped: u32,
    overruns: u32,
    reassigned: u32,
    unserved: u32,
    unserved_devices: u32,
    planning_time_us: u32,
    leader_epoch: u64,
}

impl From<GetLeaderResponse> for LeaderJson {
    fn from(leader: GetLeaderResponse) -> Self {
        Self {
            instance_id: Some(leader.leader_instance_id).filter(|id| !id.is_empty()),
            epoch: leader.leader_epoch,
            address: Some(leader.leader_address).filter(|address| !address.is_empty()),
            lease_expires_at: leader.lease_expires_at.map(|at| at.to_string()),
            acquired_at: leader.acquired_at.map(|at| at.to_string()),
            answered_by: leader.instance_id,
            answered_by_leader: leader.leading,
        }
    }
}

impl From<ExecutorInfo> for ExecutorJson {
    fn from(executor: ExecutorInfo) -> Self {
        Self {
            kind: kind_text(executor.kind),
            labels: executor.labels.into_iter().collect(),
            last_heartbeat_at: executor.last_heartbeat_at.map(|at| at.to_string()),
            connected_since: executor.connected_since.map(|at| at.to_string()),
            id: executor.executor_id,
            capacity: executor.capacity,
            in_flight_batches: executor.in_flight_batches,
            in_flight_devices: executor.in_flight_devices,
            completed_batches: executor.completed_batches,
            overrun_batches: executor.overrun_batches,
            reassigned_batches: executor.reassigned_batches,
            version: executor.version,
            hostname: executor.hostname,
            remote_address: executor.remote_address,
        }
    }
}

impl From<CycleSummary> for CycleJson {
    fn from(cycle: CycleSummary) -> Self {
        Self {
            cycle_id: cycle.cycle_id,
            kind: kind_text(cycle.kind),
            started_at: cycle.started_at.map(|at| at.to_string()),
            completed: cycle.completed,
            duration_ms: cycle.duration_ms,
            device_count: cycle.device_count,
            batch_size: cycle.batch_size,
            batch_count: cycle.batch_count,
            skipped: cycle.skipped,
            overruns: cycle.overruns,
            reassigned: cycle.reassigned,
            unserved: cycle.unserved,
            unserved_devices: cycle.unserved_devices,
            planning_time_us: cycle.planning_time_us,
            leader_epoch: cycle.leader_epoch,
        }
    }
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = args.planner.client()?;
    // Any instance answers GetLeader; the lists need the leader, and a
    // standby refuses them naming it, so the leader is asked for first.
    let leader = client
        .get_leader(GetLeaderRequest {})
        .await
        .map_err(|status| args.planner.call_failed("GetLeader", &status))?
        .into_inner();
    let lists = async {
        let executors = client
            .list_executors(ListExecutorsRequest {
                kind: ExecutorKind::Unspecified as i32,
            })
            .await
            .map_err(|status| args.planner.call_failed("ListExecutors", &status))?
            .into_inner()
            .executors;
        let mut cycles = Vec::new();
        for kind in [ExecutorKind::Ping, ExecutorKind::Snmp] {
            let page = client
                .list_cycles(ListCyclesRequest {
                    kind: kind as i32,
                    page_size: args.cycles,
                    page_token: String::new(),
                })
                .await
                .map_err(|status| args.planner.call_failed("ListCycles", &status))?
                .into_inner();
            // page_size 0 means the planner's default; the flag means "at most".
            cycles.extend(page.cycles.into_iter().take(args.cycles as usize));
        }
        anyhow::Ok((executors, cycles))
    };
    let (executors, cycles) = match lists.await {
        Ok(lists) => lists,
        Err(error) => {
            // The leader line still helps: it says where to ask instead.
            if !args.json {
                println!("{}", leader_line(&leader));
            }
            return Err(error);
        }
    };

    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        let status = StatusJson {
            leader: LeaderJson::from(leader),
            executors: executors.into_iter().map(ExecutorJson::from).collect(),
            cycles: cycles.into_iter().map(CycleJson::from).collect(),
        };
        let line = serde_json::to_string(&status)?;
        writeln!(out, "{line}")?;
    } else {
        write_status(&mut out, &leader, &executors, &cycles, SystemTime::now())?;
    }
    out.flush()?;
    Ok(())
}

/// The leader line, the executors table and the cycles table, a blank line apart.
fn write_status(
    out: &mut impl io::Write,
    leader: &GetLeaderResponse,
    executors: &[ExecutorInfo],
    cycles: &[CycleSummary],
    now: SystemTime,
) -> io::Result<()> {
    writeln!(out, "{}", leader_line(leader))?;
    writeln!(out)?;
    if executors.is_empty() {
        writeln!(out, "no executors connected")?;
    } else {
        let mut table = Table::new(vec![
            "id",
            "kind",
            "labels",
            "capacity",
            "in-flight",
            "last heartbeat",
            "completed",
            "overruns",
        ]);
        for executor in executors {
            table.push(executor_row(executor, now));
        }
        table.write(out)?;
    }
    writeln!(out)?;
    if cycles.is_empty() {
        writeln!(out, "no cycles yet")?;
    } else {
        let mut table = Table::new(vec![
            "cycle",
            "kind",
            "started",
            "devices",
            "batch size",
            "batches",
            "skipped",
            "overruns",
            "unserved",
            "duration",
        ]);
        for cycle in cycles {
            table.push(cycle_row(cycle, now));
        }
        table.write(out)?;
    }
    Ok(())
}

fn leader_line(leader: &GetLeaderResponse) -> String {
    if leader.leader_instance_id.is_empty() {
        "leader: none (no planner holds the lease)".to_string()
    } else {
        format!(
            "leader: {} epoch {}",
            leader.leader_instance_id, leader.leader_epoch
        )
    }
}

fn executor_row(executor: &ExecutorInfo, now: SystemTime) -> Vec<String> {
    // Sorted: the proto map has no order, and the table should not reshuffle between runs.
    let labels: BTreeMap<_, _> = executor.labels.iter().collect();
    let labels = labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        executor.executor_id.clone(),
        kind_text(executor.kind).to_string(),
        if labels.is_empty() {
            "-".to_string()
        } else {
            labels
        },
        executor.capacity.to_string(),
        // Devices, like the capacity beside it.
        executor.in_flight_devices.to_string(),
        age(executor.last_heartbeat_at.as_ref(), now),
        executor.completed_batches.to_string(),
        executor.overrun_batches.to_string(),
    ]
}

fn cycle_row(cycle: &CycleSummary, now: SystemTime) -> Vec<String> {
    let unserved = if cycle.unserved == 0 {
        "0".to_string()
    } else {
        format!("{} ({} devices)", cycle.unserved, cycle.unserved_devices)
    };
    vec![
        cycle.cycle_id.to_string(),
        kind_text(cycle.kind).to_string(),
        age(cycle.started_at.as_ref(), now),
        cycle.device_count.to_string(),
        cycle.batch_size.to_string(),
        cycle.batch_count.to_string(),
        cycle.skipped.to_string(),
        cycle.overruns.to_string(),
        unserved,
        if cycle.completed {
            duration_text(Duration::from_millis(u64::from(cycle.duration_ms)))
        } else {
            "running".to_string()
        },
    ]
}

/// `ping`, `snmp`, as the config and the docs spell the kinds.
fn kind_text(kind: i32) -> &'static str {
    match ExecutorKind::try_from(kind) {
        Ok(ExecutorKind::Ping) => "ping",
        Ok(ExecutorKind::Snmp) => "snmp",
        Ok(ExecutorKind::Unspecified) | Err(_) => "?",
    }
}

/// How long ago `at` was, in the largest whole unit: `2s ago`, `5m ago`.
/// Also the alerting verbs' SINCE and STARTED columns.
pub(super) fn age(at: Option<&Timestamp>, now: SystemTime) -> String {
    let Some(at) = at.and_then(|at| SystemTime::try_from(*at).ok()) else {
        return "never".to_string();
    };
    // A planner clock slightly ahead of ours is not "in the future" to a reader.
    let elapsed = now.duration_since(at).unwrap_or_default().as_secs();
    match elapsed {
        0..60 => format!("{elapsed}s ago"),
        60..3600 => format!("{}m ago", elapsed / 60),
        3600..86_400 => format!("{}h ago", elapsed / 3600),
        _ => format!("{}d ago", elapsed / 86_400),
    }
}

/// `850ms`, `1.2s`, `61.0s`: cycles run for seconds, so no larger unit.
fn duration_text(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: SystemTime, ago: Duration) -> Option<Timestamp> {
        Some(Timestamp::from(now - ago))
    }

    #[test]
    fn the_auto_scaling_line_is_the_seeds() {
        let sizing = GetSizingResponse {
            device_count: 875,
            batch_size: 100,
            batch_count: 9,
            policy: Some(SizingPolicy {
                target_batches: 10,
                rounding_step: 50,
                min_batch_size: 50,
                max_batch_size: 500,
            }),
            explanation: "875 devices / 10 target batches = 87.5 -> nearest 50 = 100 -> \
                          clamp [50, 500] = 100 -> ceil(875 / 100) = 9 batches"
                .into(),
            clamped: false,
            unclamped_batch_size: 100,
        };
        let mut out = Vec::new();
        write_sizing(&mut out, &sizing).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "AUTO-SCALING: 875 devices → batch size 100 → 9 batches\n\
             875 devices / 10 target batches = 87.5 -> nearest 50 = 100 -> \
             clamp [50, 500] = 100 -> ceil(875 / 100) = 9 batches\n"
        );
        let json = serde_json::to_value(SizingJson::from(sizing)).unwrap();
        assert_eq!(json["batch_size"], 100);
        assert_eq!(json["batch_count"], 9);
        assert_eq!(json["clamped"], false);
        assert_eq!(json["policy"]["max_batch_size"], 500);
    }

    #[test]
    fn the_status_shows_the_leader_executors_and_cycles() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let leader = GetLeaderResponse {
            leader_instance_id: "planner-a".into(),
            leader_epoch: 3,
            instance_id: "planner-a".into(),
            leading: true,
            ..GetLeaderResponse::default()
        };
        let executors = [
            ExecutorInfo {
                executor_id: "ping-1".into(),
                kind: ExecutorKind::Ping as i32,
                labels: [
                    ("zone".to_string(), "dc1".to_string()),
                    ("site".to_string(), "tbilisi-01".to_string()),
                ]
                .into(),
                capacity: 1000,
                in_flight_devices: 100,
                last_heartbeat_at: at(now, Duration::from_secs(2)),
                completed_batches: 42,
                overrun_batches: 1,
                ..ExecutorInfo::default()
            },
            ExecutorInfo {
                executor_id: "snmp-1".into(),
                kind: ExecutorKind::Snmp as i32,
                capacity: 500,
                ..ExecutorInfo::default()
            },
        ];
        let cycles = [
            CycleSummary {
                cycle_id: 12,
                kind: ExecutorKind::Ping as i32,
                started_at: at(now, Duration::from_secs(3)),
                device_count: 875,
                batch_size: 100,
                batch_count: 9,
                completed: false,
                ..CycleSummary::default()
            },
            CycleSummary {
                cycle_id: 2,
                kind: ExecutorKind::Snmp as i32,
                started_at: at(now, Duration::from_secs(150)),
                device_count: 120,
                batch_size: 50,
                batch_count: 3,
                skipped: 4,
                overruns: 1,
                unserved: 1,
                unserved_devices: 20,
                duration_ms: 58_400,
                completed: true,
                ..CycleSummary::default()
            },
        ];
        let mut out = Vec::new();
        write_status(&mut out, &leader, &executors, &cycles, now).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "leader: planner-a epoch 3\n\
             \n\
             ID      KIND  LABELS                    CAPACITY  IN-FLIGHT  LAST HEARTBEAT  COMPLETED  OVERRUNS\n\
             ping-1  ping  site=tbilisi-01,zone=dc1  1000      100        2s ago          42         1\n\
             snmp-1  snmp  -                         500       0          never           0          0\n\
             \n\
             CYCLE  KIND  STARTED  DEVICES  BATCH SIZE  BATCHES  SKIPPED  OVERRUNS  UNSERVED        DURATION\n\
             12     ping  3s ago   875      100         9        0        0         0               running\n\
             2      snmp  2m ago   120      50          3        4        1         1 (20 devices)  58.4s\n"
        );
    }

    #[test]
    fn an_idle_planner_says_so() {
        let mut out = Vec::new();
        write_status(
            &mut out,
            &GetLeaderResponse::default(),
            &[],
            &[],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "leader: none (no planner holds the lease)\n\nno executors connected\n\nno cycles yet\n"
        );
    }

    #[test]
    fn ages_and_durations_read_at_a_glance() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ago = |seconds| age(at(now, Duration::from_secs(seconds)).as_ref(), now);
        assert_eq!(ago(0), "0s ago");
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(60), "1m ago");
        assert_eq!(ago(7200), "2h ago");
        assert_eq!(ago(200_000), "2d ago");
        // A planner clock ahead of ours.
        let ahead = Timestamp::from(now + Duration::from_secs(5));
        assert_eq!(age(Some(&ahead), now), "0s ago");
        assert_eq!(age(None, now), "never");
        assert_eq!(duration_text(Duration::from_millis(850)), "850ms");
        assert_eq!(duration_text(Duration::from_millis(1234)), "1.2s");
    }

    #[test]
    fn status_json_names_kinds_and_keeps_timestamps() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let executor = ExecutorInfo {
            executor_id: "ping-1".into(),
            kind: ExecutorKind::Ping as i32,
            last_heartbeat_at: at(now, Duration::ZERO),
            ..ExecutorInfo::default()
        };
        let json = serde_json::to_value(ExecutorJson::from(executor)).unwrap();
        assert_eq!(json["kind"], "ping");
        assert_eq!(json["last_heartbeat_at"], "2027-01-15T08:00:00Z");
        let leader = serde_json::to_value(LeaderJson::from(GetLeaderResponse::default())).unwrap();
        assert_eq!(leader["instance_id"], serde_json::Value::Null);
    }
}
