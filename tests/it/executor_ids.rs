//! Executor ids with the real binary, in the network lab (the ping executor
//! needs an ICMP socket to start): two executors on one host with default
//! settings register with ids of their own and keep their sessions; two
//! forced onto one id do not take turns — the second is refused with
//! ALREADY_EXISTS until the first is gone; the same process reconnects at
//! once after a planner restart, and a restarted executor gets its id back.

use std::collections::BTreeMap;
use std::time::Duration;

use netward_shared::client::{PeerChannel, connect};
use netward_shared::proto::v1;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::testkit::{TestDatabase, eventually, lab};

use crate::support::Netward;

/// Planner settings that make a silent session dead within 3 s.
const PLANNER_ENV: [(&str, &str); 2] = [
    ("NETWARD_PLANNER__PING_INTERVAL", "2s"),
    ("NETWARD_PLANNER__HEARTBEAT_INTERVAL", "1s"),
];

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// A port nothing listens on now, for a process restarted on it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Executor id → session id, as the planner lists them.
async fn sessions(planner: &Netward) -> BTreeMap<String, v1::ExecutorInfo> {
    let mut client: PlannerServiceClient<PeerChannel> = PlannerServiceClient::new(
        connect(
            &format!("http://{}", planner.grpc_addr),
            &Default::default(),
        )
        .unwrap(),
    );
    client
        .list_executors(v1::ListExecutorsRequest::default())
        .await
        .map(|r| r.into_inner().executors)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.executor_id.clone(), e))
        .collect()
}

async fn registered(planner: &Netward, ids: &[&str]) -> BTreeMap<String, v1::ExecutorInfo> {
    eventually(
        &format!("{ids:?} are registered"),
        Duration::from_secs(20),
        || async {
            let now = sessions(planner).await;
            ids.iter().all(|id| now.contains_key(*id)).then_some(now)
        },
    )
    .await
}

async fn ping_executor(planner: &Netward, grpc_addr: &str, env: &[(&str, &str)]) -> Netward {
    let planner_url = format!("http://{}", planner.grpc_addr);
    Netward::start_on(
        grpc_addr,
        "ping-executor",
        &["--planner-url", &planner_url],
        env,
    )
    .await
}

/// The case: two executors on one host, default settings, used to
/// both register as `ping-<hostname>` and take turns (28 swaps in 200 s).
#[tokio::test]
async fn lab_two_executors_with_default_ids_on_one_host_keep_their_own_sessions() {
    if !lab::inside() {
        return;
    }
    let database = TestDatabase::create().await.unwrap();
    let inventory = Netward::start("inventory", &["--database-url", database.url()]).await;
    let inventory_url = format!("http://{}", inventory.grpc_addr);
    let rows: Vec<v1::ImportRow> = (0..40)
        .map(|i| v1::ImportRow {
            line: i + 2,
            name: format!("ids-{i:02}"),
            ip: format!("127.60.0.{}", i + 1),
            site: "ids".into(),
            ..Default::default()
        })
        .collect();
    crate::support::import(&inventory_url, rows).await;
    let planner = Netward::start_with_env(
        "planner",
        &["--inventory-url", &inventory_url],
        &PLANNER_ENV,
    )
    .await;
    let first = ping_executor(&planner, "127.0.0.1:0", &[]).await;
    let second = ping_executor(&planner, "127.0.0.1:0", &[]).await;
    let host = hostname();
    let ids = [
        format!("ping-{host}-{}", first.grpc_addr.port()),
        format!("ping-{host}-{}", second.grpc_addr.port()),
    ];
    let before = registered(&planner, &[&ids[0], &ids[1]]).await;
    assert_eq!(before.len(), 2, "{before:?}");

    // 20 s (10 cycles): the same two sessions throughout.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sessions(&planner).await;
        let session_of = |m: &BTreeMap<String, v1::ExecutorInfo>, id: &str| {
            m.get(id).map(|e| e.session_id.clone())
        };
        for id in &ids {
            assert_eq!(
                session_of(&now, id),
                session_of(&before, id),
                "{id}'s session changed; planner log:\n{}",
                planner.log()
            );
        }
    }
    // Both served batches, and no batch went unserved or was reassigned.
    let after = sessions(&planner).await;
    for id in &ids {
        assert!(after[id].completed_batches > 0, "{:?}", after[id]);
    }
    let mut client: PlannerServiceClient<PeerChannel> = PlannerServiceClient::new(
        connect(
            &format!("http://{}", planner.grpc_addr),
            &Default::default(),
        )
        .unwrap(),
    );
    let cycles = client
        .list_cycles(v1::ListCyclesRequest {
            kind: v1::ExecutorKind::Ping as i32,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .cycles;
    assert!(cycles.len() >= 8, "{} cycles", cycles.len());
    // Cycles opened before both executors were there may be unserved.
    let both_in = before
        .values()
        .filter_map(|e| e.connected_since.as_ref().map(|t| (t.seconds, t.nanos)))
        .max()
        .unwrap();
    let later = cycles.iter().filter(|c| {
        c.completed
            && c.started_at
                .as_ref()
                .is_some_and(|t| (t.seconds, t.nanos) > both_in)
    });
    assert!(later.clone().count() >= 8);
    for cycle in later {
        assert_eq!(
            (cycle.unserved, cycle.reassigned, cycle.skipped),
            (0, 0, 0),
            "{cycle:?}"
        );
    }
    let log = planner.log();
    for trouble in [
        "registration refused",
        "taken over",
        "takes over",
        "executor left",
    ] {
        assert!(
            !log.contains(trouble),
            "planner log has {trouble:?}:\n{log}"
        );
    }
    // Killed: with no alerting to ack their results, a clean stop would
    // wait out the drain timeout (issue 11 item 6, not this test's subject).
    first.kill().await;
    second.kill().await;
    planner.stop().await;
    inventory.stop().await;
}

/// Two processes forced onto one id: the second is refused, retries after
/// the planner's hint (not sooner), and gets the id once the first is gone.
#[tokio::test]
async fn lab_a_second_process_claiming_a_held_executor_id_is_refused() {
    if !lab::inside() {
        return;
    }
    let planner = Netward::start_with_env("planner", &[], &PLANNER_ENV).await;
    let env = [("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "ping-shared")];
    let holder = ping_executor(&planner, "127.0.0.1:0", &env).await;
    let held = registered(&planner, &["ping-shared"]).await["ping-shared"].clone();

    let claimant = ping_executor(&planner, "127.0.0.1:0", &env).await;
    let refusals = |log: &str| -> Vec<serde_json::Value> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("is held by another live process"))
            })
            .collect()
    };
    let first = eventually("the claimant is refused", Duration::from_secs(10), || {
        let refused = refusals(&claimant.log());
        async move { refused.into_iter().next() }
    })
    .await;
    assert_eq!(first["level"], "ERROR", "{first}");
    let message = first["message"].as_str().unwrap();
    assert!(
        message.contains("ping-shared")
            && message.contains(&format!("on host \"{}\"", hostname()))
            && message.contains(&held.remote_address)
            && message.contains("set a unique executor_id"),
        "{message}"
    );
    // The hint is the planner's (RetryInfo): about three 1 s heartbeat
    // intervals, not the 15 s fallback.
    let retry = first["retry_in_s"].as_u64().unwrap();
    assert!((1..=4).contains(&retry), "{first}");

    // 8 s more: the holder keeps its session; the claimant retried at the
    // hinted pace, never swapped in.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let now = sessions(&planner).await;
    assert_eq!(now["ping-shared"].session_id, held.session_id);
    let count = refusals(&claimant.log()).len();
    assert!((2..=6).contains(&count), "{count} refusals in ~9 s");
    assert!(planner.log().contains("registration refused"));

    // The holder dies: the claimant gets the id within its next retry.
    holder.kill().await;
    let taken = eventually(
        "the claimant registers once the holder is gone",
        Duration::from_secs(10),
        || async {
            sessions(&planner)
                .await
                .remove("ping-shared")
                .filter(|e| e.session_id != held.session_id)
        },
    )
    .await;
    assert_ne!(taken.remote_address, held.remote_address);
    claimant.kill().await;
    planner.stop().await;
}

/// The same process reconnects to a restarted planner at once; an executor
/// restarted on its port registers with the same default id again.
#[tokio::test]
async fn lab_an_executor_keeps_its_id_across_planner_and_executor_restarts() {
    if !lab::inside() {
        return;
    }
    let planner_addr = format!("127.0.0.1:{}", free_port());
    let planner = Netward::start_on(&planner_addr, "planner", &[], &PLANNER_ENV).await;
    let executor_addr = format!("127.0.0.1:{}", free_port());
    let executor = ping_executor(&planner, &executor_addr, &[]).await;
    let id = format!("ping-{}-{}", hostname(), executor.grpc_addr.port());
    registered(&planner, &[&id]).await;

    planner.stop().await;
    let planner = Netward::start_on(&planner_addr, "planner", &[], &PLANNER_ENV).await;
    let started = std::time::Instant::now();
    registered(&planner, &[&id]).await;
    // The executor's reconnect backoff is 5 s at most.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );

    // A crash and a restart on the same port: the same id, not refused
    // (the old stream closed with the process).
    let old = sessions(&planner).await[&id].session_id.clone();
    executor.kill().await;
    let executor = ping_executor(&planner, &executor_addr, &[]).await;
    let again = eventually(
        "the restarted executor registers",
        Duration::from_secs(15),
        || async {
            sessions(&planner)
                .await
                .remove(&id)
                .filter(|e| e.session_id != old)
        },
    )
    .await;
    assert_eq!(again.executor_id, id);
    executor.kill().await;
    planner.stop().await;
}
