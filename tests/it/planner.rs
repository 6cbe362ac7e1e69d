//! The planner with real parts: inventory on real PostgreSQL (in-process),
//! the planner's gRPC service, and test executors holding real `Work`
//! streams. Cycles are driven step by step with chosen instants, so the
//! tests never sleep through intervals.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netward_planner::cycle::BatchState;
use netward_planner::lease::LeaseState;
use netward_planner::{Planner, PlannerConfig, PlannerGrpc};
use netward_shared::client::{PeerChannel, connect};
use netward_shared::config::{ConfigLoader, Target};
use netward_shared::proto::v1;
use netward_shared::proto::v1::executor_service_client::ExecutorServiceClient;
use netward_shared::proto::v1::inventory_service_client::InventoryServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::proto::v1::planner_service_server::PlannerServiceServer;
use netward_shared::server::{GrpcServer, Listeners, ServerOptions};
use netward_shared::testkit::cluster::{Cluster, ClusterBuilder, Node};
use netward_shared::testkit::eventually;
use netward_shared::testkit::ingest::RecordingIngest;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Inventory (on a fresh database: the test kit's cluster) + planner, in
/// this process.
pub(crate) struct Lab {
    pub(crate) planner: Arc<Planner>,
    pub(crate) addr: std::net::SocketAddr,
    /// The inventory, and the executors a test adds ([`Lab::add_ping_executor`]).
    pub(crate) cluster: Cluster,
    stop: CancellationToken,
}

impl Lab {
    /// `sites` sites, each a router and `per_site - 1` devices behind it;
    /// `selector(site)` pins a site's devices to executors with that label.
    pub(crate) async fn start(
        sites: usize,
        per_site: usize,
        selector: impl Fn(usize) -> Option<(&'static str, String)>,
    ) -> Lab {
        Self::on(crate::support::cluster(), sites, per_site, selector).await
    }

    /// As [`Lab::start`], on `builder`'s cluster (which says how the
    /// executors a test adds run: the binary, or in process).
    pub(crate) async fn on(
        builder: ClusterBuilder,
        sites: usize,
        per_site: usize,
        selector: impl Fn(usize) -> Option<(&'static str, String)>,
    ) -> Lab {
        let mut rows = Vec::new();
        for s in 0..sites {
            for k in 0..per_site {
                let site = format!("site-{s:03}");
                let router = format!("{site}-rtr");
                rows.push(v1::ImportRow {
                    line: rows.len() as u32 + 2,
                    name: if k == 0 {
                        router.clone()
                    } else {
                        format!("{site}-d{k:03}")
                    },
                    ip: format!("127.30.{s}.{}", k + 1),
                    site,
                    parent: if k == 0 { String::new() } else { router },
                    executor_selector: selector(s)
                        .map(|(k, v)| format!("{k}={v}"))
                        .unwrap_or_default(),
                    ..Default::default()
                });
            }
        }
        let cluster = builder
            .in_process(Target::Inventory)
            .devices(rows)
            .start()
            .await;
        let stop = CancellationToken::new();

        let config = PlannerConfig {
            ping_interval: INTERVAL,
            // Tests jump instants far ahead: heartbeats must not time out.
            heartbeat_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let planner = Arc::new(Planner::new(&config, cluster.inventory_client()).unwrap());
        planner.spawn_follower(stop.clone());
        let devices = sites * per_site;
        let copy = planner.copy.clone();
        eventually(
            "the planner's inventory copy is synced",
            Duration::from_secs(20),
            || {
                let copy = copy.clone();
                async move {
                    copy.read()
                        .ok()
                        .filter(|c| c.synced && c.devices.len() == devices)
                        .map(|_| ())
                }
            },
        )
        .await;
        planner.scheduler.set_leadership(true, 1);

        let (_lease_tx, lease_rx) = watch::channel(LeaseState::Standby { leader: None });
        let listeners = Listeners::local().await.unwrap();
        let addr = listeners.grpc_addr();
        let server = GrpcServer::new(
            Target::Planner,
            ServerOptions::from_config(&ConfigLoader::new(Target::Planner).load().unwrap().common),
        );
        let service = PlannerServiceServer::new(PlannerGrpc::new(
            planner.scheduler.clone(),
            lease_rx,
            "test".into(),
            server.shutdown_token(),
        ));
        let server_stop = stop.clone();
        tokio::spawn(async move {
            server
                .add_service(service)
                .serve(listeners, server_stop.cancelled_owned())
                .await
                .unwrap();
        });
        Lab {
            planner,
            addr,
            cluster,
            stop,
        }
    }

    /// Starts a ping executor of the lab's cluster that dials this
    /// planner, and returns once it runs; `settings` on top (where its
    /// results go, say). [`registered`] waits for its session.
    pub(crate) async fn add_ping_executor(&mut self, settings: &[(&str, &str)]) -> &Node {
        let planner_url = format!("http://{}", self.addr);
        let mut all = vec![("NETWARD_PLANNER_URL", planner_url.as_str())];
        all.extend_from_slice(settings);
        self.cluster.add_ping_executor(&all).await
    }

    pub(crate) fn cycle_summary(&self, id: u64) -> v1::CycleSummary {
        let state = self.planner.scheduler.lock();
        let cycle = state.cycles.iter().find(|c| c.id == id).unwrap();
        self.planner.scheduler.summary(cycle)
    }

    fn in_flight(&self) -> usize {
        self.planner.scheduler.lock().in_flight.len()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An executor as the planner sees one: a real `Work` stream.
struct TestExecutor {
    id: String,
    requests: mpsc::UnboundedSender<v1::WorkRequest>,
    assignments: Arc<Mutex<Vec<v1::Assignment>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestExecutor {
    async fn connect(
        addr: std::net::SocketAddr,
        id: &str,
        labels: &[(&str, &str)],
    ) -> TestExecutor {
        Self::connect_many(&[addr], id, labels, 100_000).await
    }

    /// Holds a stream to each planner, as an executor configured with all of
    /// them does; remembers the highest leader epoch seen and refuses older.
    async fn connect_many(
        addrs: &[std::net::SocketAddr],
        id: &str,
        labels: &[(&str, &str)],
        capacity: u32,
    ) -> TestExecutor {
        let (requests, requests_rx) = mpsc::unbounded_channel::<v1::WorkRequest>();
        let assignments = Arc::new(Mutex::new(Vec::new()));
        let register = v1::WorkRequest {
            msg: Some(v1::work_request::Msg::Register(v1::Register {
                executor_id: id.into(),
                kind: v1::ExecutorKind::Ping as i32,
                capacity,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            })),
        };
        let requests_rx = Arc::new(tokio::sync::Mutex::new(requests_rx));
        let max_epoch = Arc::new(Mutex::new(0u64));
        let mut tasks = Vec::new();
        for addr in addrs {
            let mut client: PlannerServiceClient<PeerChannel> = PlannerServiceClient::new(
                connect(&format!("http://{addr}"), &Default::default()).unwrap(),
            );
            let (out_tx, out_rx) = mpsc::unbounded_channel();
            out_tx.send(register.clone()).unwrap();
            let mut inbound = client
                .work(tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx))
                .await
                .unwrap()
                .into_inner();
            let assignments = assignments.clone();
            let max_epoch = max_epoch.clone();
            let requests_rx = requests_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        message = inbound.message() => {
                            let Ok(Some(message)) = message else { return };
                            if let Some(v1::work_response::Msg::Assignment(a)) = message.msg {
                                let mut max = max_epoch.lock().unwrap();
                                if a.leader_epoch >= *max {
                                    *max = a.leader_epoch;
                                    assignments.lock().unwrap().push(a);
                                }
                            }
                        }
                        request = async { requests_rx.lock().await.recv().await } => {
                            let Some(request) = request else { return };
                            if out_tx.send(request).is_err() { return }
                        }
                    }
                }
            }));
        }
        let task = tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
        });
        TestExecutor {
            id: id.into(),
            requests,
            assignments,
            task,
        }
    }

    fn assignments(&self) -> Vec<v1::Assignment> {
        self.assignments.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<v1::Assignment> {
        let assignments = self.assignments.clone();
        eventually(
            &format!("{} gets {count} assignments", self.id),
            Duration::from_secs(10),
            || {
                let assignments = assignments.clone();
                async move {
                    let got = assignments.lock().unwrap().clone();
                    (got.len() >= count).then_some(got)
                }
            },
        )
        .await
    }

    fn done(&self, assignment: &v1::Assignment) {
        let _ = self.requests.send(v1::WorkRequest {
            msg: Some(v1::work_request::Msg::BatchDone(v1::BatchDone {
                cycle_id: assignment.cycle_id,
                batch_id: assignment.batch_id.clone(),
                leader_epoch: assignment.leader_epoch,
                devices: assignment.targets.len() as u32,
                succeeded: assignment.targets.len() as u32,
                ..Default::default()
            })),
        });
    }

    /// Drops the streams, as a crashed executor would.
    fn drop_streams(self) {
        self.task.abort();
    }
}

pub(crate) async fn registered(lab: &Lab, count: usize) {
    let scheduler = lab.planner.scheduler.clone();
    eventually("executors register", Duration::from_secs(10), || {
        let scheduler = scheduler.clone();
        async move { (scheduler.lock().executors.len() >= count).then_some(()) }
    })
    .await;
}

fn seconds(ts: &prost_types::Timestamp) -> f64 {
    ts.seconds as f64 + f64::from(ts.nanos) / 1e9
}

#[tokio::test]
async fn batches_are_staggered_over_the_interval_parents_first() {
    // 875 devices: the seed's 9 batches of 100.
    let lab = Lab::start(35, 25, |_| None).await;
    let executor = TestExecutor::connect(lab.addr, "solo", &[]).await;
    registered(&lab, 1).await;
    let t0 = Instant::now();
    let scheduler = &lab.planner.scheduler;
    let cycle = scheduler.open_cycle(v1::ExecutorKind::Ping, t0).unwrap();
    let summary = lab.cycle_summary(cycle);
    assert_eq!(
        (
            summary.device_count,
            summary.batch_size,
            summary.batch_count
        ),
        (875, 100, 9)
    );

    // Only what is due goes out: batch 0 at t0, batches 0..=4 by t0 + 5 s.
    scheduler.dispatch_due(t0);
    executor.wait_for(1).await;
    scheduler.dispatch_due(t0 + Duration::from_secs(5));
    executor.wait_for(5).await;
    assert_eq!(executor.assignments().len(), 5);
    scheduler.dispatch_due(t0 + INTERVAL);
    let assignments = executor.wait_for(9).await;
    let starts: Vec<f64> = assignments
        .iter()
        .map(|a| seconds(a.start_at.as_ref().unwrap()))
        .collect();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (gap - 10.0 / 9.0).abs() < 0.01,
            "uneven spacing: {starts:?}"
        );
    }
    // Every device's parent is probed in the same or an earlier batch.
    let batch_of: HashMap<&str, u32> = assignments
        .iter()
        .flat_map(|a| {
            a.targets
                .iter()
                .map(move |t| (t.device_id.as_str(), a.batch_index))
        })
        .collect();
    assert_eq!(batch_of.len(), 875);
    for a in &assignments {
        for t in &a.targets {
            if !t.parent_device_id.is_empty() {
                assert!(
                    batch_of[t.parent_device_id.as_str()] <= a.batch_index,
                    "{} before its parent",
                    t.device_name
                );
            }
        }
    }
    assert_eq!(assignments[0].probe.unwrap().count, 3);
}

#[tokio::test]
async fn batches_go_to_the_least_loaded_executor() {
    let lab = Lab::start(35, 25, |_| None).await;
    let executors = [
        TestExecutor::connect(lab.addr, "exec-a", &[]).await,
        TestExecutor::connect(lab.addr, "exec-b", &[]).await,
        TestExecutor::connect(lab.addr, "exec-c", &[]).await,
    ];
    registered(&lab, 3).await;
    let t0 = Instant::now();
    let scheduler = &lab.planner.scheduler;
    scheduler.open_cycle(v1::ExecutorKind::Ping, t0).unwrap();
    scheduler.dispatch_due(t0 + INTERVAL);
    let counts = eventually("all 9 batches arrive", Duration::from_secs(10), || {
        let counts: Vec<usize> = executors.iter().map(|e| e.assignments().len()).collect();
        async move { (counts.iter().sum::<usize>() == 9).then_some(counts) }
    })
    .await;
    assert_eq!(counts, [3, 3, 3]);

    // exec-a finishes its batches; the next cycle favours it.
    for a in executors[0].assignments() {
        executors[0].done(&a);
    }
    eventually(
        "exec-a's batches are done",
        Duration::from_secs(10),
        || async {
            let state = lab.planner.scheduler.lock();
            state
                .executors
                .values()
                .find(|e| e.id == "exec-a")
                .filter(|e| e.in_flight_devices == 0)
                .map(|_| ())
        },
    )
    .await;
    // b and c still hold their devices, so at their slots in the next cycle
    // those are skipped, and every device not in flight goes to a until it
    // holds as many.
    let t1 = t0 + INTERVAL;
    let cycle = scheduler.open_cycle(v1::ExecutorKind::Ping, t1).unwrap();
    assert_eq!(
        lab.cycle_summary(cycle).skipped,
        0,
        "skips happen at the slot"
    );
    scheduler.dispatch_due(t1 + INTERVAL);
    let held: usize = executors[1..]
        .iter()
        .flat_map(|e| e.assignments())
        .map(|a| a.targets.len())
        .sum();
    assert_eq!(
        lab.cycle_summary(cycle).skipped as usize,
        held,
        "b's and c's devices are in flight"
    );
    executors[0].wait_for(6).await;
    assert_eq!(executors[1].assignments().len(), 3);
    assert_eq!(executors[2].assignments().len(), 3);
}

#[tokio::test]
async fn a_dropped_executor_has_its_batches_reassigned_within_the_cycle() {
    let lab = Lab::start(35, 25, |_| None).await;
    let a = TestExecutor::connect(lab.addr, "exec-a", &[]).await;
    let b = TestExecutor::connect(lab.addr, "exec-b", &[]).await;
    let c = TestExecutor::connect(lab.addr, "exec-c", &[]).await;
    registered(&lab, 3).await;
    let t0 = Instant::now();
    let scheduler = &lab.planner.scheduler;
    let cycle = scheduler.open_cycle(v1::ExecutorKind::Ping, t0).unwrap();
    scheduler.dispatch_due(t0 + Duration::from_secs(5));
    // Batches 0..=4 are out: wait until all five have arrived.
    eventually("five batches arrive", Duration::from_secs(10), || {
        let n = a.assignments().len() + b.assignments().len() + c.assignments().len();
        async move { (n == 5).then_some(()) }
    })
    .await;
    let orphans: Vec<String> = a.assignments().iter().map(|x| x.batch_id.clone()).collect();
    assert!(!orphans.is_empty());
    let before = b.assignments().len() + c.assignments().len();

    a.drop_streams();
    let reassigned = eventually("a's batches reach b and c", Duration::from_secs(10), || {
        let got: Vec<v1::Assignment> = b.assignments().into_iter().chain(c.assignments()).collect();
        let orphans = orphans.clone();
        async move {
            let moved: Vec<v1::Assignment> = got.into_iter().filter(|x| x.reassigned).collect();
            (moved.len() == orphans.len()).then_some(moved)
        }
    })
    .await;
    let mut moved: Vec<String> = reassigned.iter().map(|x| x.batch_id.clone()).collect();
    moved.sort();
    let mut expected = orphans.clone();
    expected.sort();
    assert_eq!(moved, expected, "the same batches, in the same cycle");
    assert!(reassigned.iter().all(|x| x.cycle_id == cycle));
    assert_eq!(
        b.assignments().len() + c.assignments().len(),
        before + orphans.len()
    );
    assert_eq!(lab.cycle_summary(cycle).reassigned as usize, orphans.len());
    // The rest of the cycle still goes out, to the two that are left.
    scheduler.dispatch_due(t0 + INTERVAL);
    eventually("the whole cycle is out", Duration::from_secs(10), || {
        let n = b.assignments().len() + c.assignments().len();
        async move { (n == 9).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_stalled_executor_causes_skips_and_overruns_never_a_growing_backlog() {
    let lab = Lab::start(10, 50, |_| None).await;
    let stalled = TestExecutor::connect(lab.addr, "stalled", &[]).await;
    registered(&lab, 1).await;
    let scheduler = &lab.planner.scheduler;
    let t0 = Instant::now();
    let mut skipped = Vec::new();
    let mut overruns = 0;
    for k in 0..20u32 {
        let now = t0 + INTERVAL * k;
        scheduler.check_timers(now);
        let cycle = scheduler.open_cycle(v1::ExecutorKind::Ping, now).unwrap();
        scheduler.dispatch_due(now + INTERVAL - Duration::from_millis(1));
        assert!(
            lab.in_flight() <= 500,
            "cycle {k}: {} devices in flight",
            lab.in_flight()
        );
        skipped.push(lab.cycle_summary(cycle).skipped);
        scheduler.check_timers(now + INTERVAL);
        overruns += lab.cycle_summary(cycle).overruns;
    }
    // Nothing is ever done: the first cycle hands out everything, the next
    // skips everything at its slots, and batches abandoned two intervals late
    // free their devices for a later cycle — which hands them out again.
    assert_eq!(skipped[0], 0);
    assert_eq!(skipped[1], 500, "{skipped:?}");
    assert!(overruns >= 10, "{overruns} overruns");
    let assigned = stalled.wait_for(10).await.len();
    assert!((10..=10 * 10).contains(&assigned), "{assigned} assignments");
    let state = scheduler.lock();
    let executor = state.executors.values().next().unwrap();
    assert!(executor.overruns >= 10);
    assert!(executor.in_flight_devices <= 500);
}

#[tokio::test]
async fn site_labels_are_respected() {
    // Sites 0-4 pinned to site=north, 5-9 to site=south, 10-14 unpinned.
    let lab = Lab::start(15, 20, |s| match s {
        0..=4 => Some(("site", "north".to_string())),
        5..=9 => Some(("site", "south".to_string())),
        _ => None,
    })
    .await;
    let north = TestExecutor::connect(lab.addr, "in-north", &[("site", "north")]).await;
    let anywhere = TestExecutor::connect(lab.addr, "central", &[]).await;
    registered(&lab, 2).await;
    let scheduler = &lab.planner.scheduler;
    let t0 = Instant::now();
    let cycle = scheduler.open_cycle(v1::ExecutorKind::Ping, t0).unwrap();
    scheduler.dispatch_due(t0 + INTERVAL);
    let site_of = |t: &v1::Target| t.site[5..].parse::<usize>().unwrap();
    let got_north = eventually("north's batches", Duration::from_secs(10), || {
        let got = north.assignments();
        async move { (!got.is_empty()).then_some(got) }
    })
    .await;
    for a in &got_north {
        for t in &a.targets {
            assert!(
                site_of(t) <= 4 || site_of(t) >= 10,
                "{} went north",
                t.device_name
            );
        }
    }
    // Everything the planner gave the central executor has reached it.
    let to_central = scheduler
        .lock()
        .cycles
        .iter()
        .find(|c| c.id == cycle)
        .unwrap()
        .batches
        .iter()
        .filter(|b| b.executor_id == "central")
        .count();
    let central = anywhere.wait_for(to_central).await;
    for a in central {
        for t in &a.targets {
            assert!(
                !(0..=4).contains(&site_of(t)),
                "a north device went to the central executor"
            );
            assert!(
                !(5..=9).contains(&site_of(t)),
                "a south device was assigned"
            );
        }
    }
    // No executor carries site=south: those batches are unserved, not queued.
    let summary = lab.cycle_summary(cycle);
    assert_eq!(summary.unserved_devices, 100);
    let state = scheduler.lock();
    let unserved: BTreeMap<usize, BatchState> = state
        .cycles
        .iter()
        .find(|c| c.id == cycle)
        .unwrap()
        .batches
        .iter()
        .map(|b| (b.index, b.state))
        .filter(|(_, s)| *s == BatchState::Unserved)
        .collect();
    assert!(!unserved.is_empty());
    assert!(
        state.in_flight.len() <= 200,
        "unserved devices are not in flight"
    );
}

/// The real binary, asked with grpcurl (reflection), answers the seed's
/// sizing questions.
#[tokio::test]
async fn grpcurl_get_sizing_answers_the_seed_table() {
    let mut cluster = crate::support::cluster()
        .no_inventory()
        .planner()
        .start()
        .await;
    let planner = cluster.planner.take().unwrap();
    for (devices, size, batches) in [(875, 100, 9), (10_000, 500, 20)] {
        let body = format!(r#"{{"device_count": {devices}}}"#);
        let out = crate::support::grpcurl(
            planner.grpc_addr,
            &["-d", &body, "netward.v1.PlannerService/GetSizing"],
        )
        .await;
        assert!(out.success, "{}", out.stderr);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            (json["batchSize"].as_u64(), json["batchCount"].as_u64()),
            (Some(size), Some(batches)),
            "{}",
            out.stdout
        );
        assert!(
            json["explanation"]
                .as_str()
                .unwrap()
                .contains(&format!("= {batches} batches"))
        );
    }
    let bad = crate::support::grpcurl(
        planner.grpc_addr,
        &[
            "-d",
            r#"{"device_count": 5, "min_batch_size": 600}"#,
            "netward.v1.PlannerService/GetSizing",
        ],
    )
    .await;
    assert!(!bad.success);
    assert!(
        bad.stderr.contains("InvalidArgument") && bad.stderr.contains("min_batch_size"),
        "{}",
        bad.stderr
    );
    let stopped = planner.stop().await;
    assert!(stopped.clean(), "{stopped:?}");
}

async fn leader_of(addr: std::net::SocketAddr) -> v1::GetLeaderResponse {
    let mut client: PlannerServiceClient<PeerChannel> =
        PlannerServiceClient::new(connect(&format!("http://{addr}"), &Default::default()).unwrap());
    client
        .get_leader(v1::GetLeaderRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Two planner processes on real Redis: the leader is killed (no clean
/// release), the standby takes over within two intervals, and the executor
/// acts on nothing of the old epoch once it has seen the new one.
#[tokio::test]
async fn the_standby_takes_over_when_the_leader_dies() {
    let rows: Vec<v1::ImportRow> = (0..20)
        .map(|i| v1::ImportRow {
            line: i + 2,
            name: format!("failover-{i:02}"),
            ip: format!("127.31.0.{}", i + 1),
            site: "failover".into(),
            ..Default::default()
        })
        .collect();
    let interval = Duration::from_secs(2);
    let instance = "NETWARD_PLANNER__LEASE__INSTANCE_ID";
    let mut cluster = crate::support::cluster()
        .planner()
        .redis()
        .devices(rows)
        .ping_interval(interval)
        .set_for(Target::Planner, "NETWARD_PLANNER__LEASE__TTL", "1s")
        .set_for(Target::Planner, instance, "planner-a")
        .start()
        .await;
    let second = cluster
        .start_another(Target::Planner, &[(instance, "planner-b")])
        .await;
    let first = cluster.planner.take().unwrap();
    let executor = TestExecutor::connect_many(
        &[first.grpc_addr, second.grpc_addr],
        "exec-failover",
        &[],
        1000,
    )
    .await;

    let old = executor.wait_for(1).await[0].leader_epoch;
    let (leader, standby) = if leader_of(first.grpc_addr).await.leading {
        (first, second)
    } else {
        (second, first)
    };
    let standby_view = leader_of(standby.grpc_addr).await;
    assert!(!standby_view.leading);
    assert_eq!(standby_view.leader_epoch, old);

    let seen_before = executor.assignments().len();
    let killed_at = std::time::Instant::now();
    leader.kill().await;
    let assignments = executor.assignments.clone();
    let took_over = eventually("the standby plans", Duration::from_secs(20), || {
        let assignments = assignments.clone();
        async move {
            let got = assignments.lock().unwrap().clone();
            got[seen_before..]
                .iter()
                .any(|a| a.leader_epoch > old)
                .then(std::time::Instant::now)
        }
    })
    .await;
    let takeover = took_over - killed_at;
    assert!(
        takeover < interval * 2,
        "the standby took {takeover:?} to plan"
    );
    let now_leader = leader_of(standby.grpc_addr).await;
    assert!(now_leader.leading && now_leader.leader_epoch > old);
    // Once the new epoch was seen, every accepted assignment carries it.
    let accepted = executor.assignments();
    let first_new = accepted.iter().position(|a| a.leader_epoch > old).unwrap();
    assert!(
        accepted[first_new..]
            .iter()
            .all(|a| a.leader_epoch == now_leader.leader_epoch)
    );
    println!("failover: the standby planned {takeover:?} after the leader was killed");

    let stopped = standby.stop().await;
    assert!(stopped.clean(), "{stopped:?}");
}

/// The operator RPCs through a real client: policy, cycles, executors,
/// the cycle stream, the leader.
#[tokio::test]
async fn operator_rpcs_show_policy_cycles_and_executors() {
    let lab = Lab::start(10, 10, |_| None).await;
    let executor = TestExecutor::connect(lab.addr, "exec-ops", &[("site", "lab")]).await;
    registered(&lab, 1).await;
    let mut client: PlannerServiceClient<PeerChannel> = PlannerServiceClient::new(
        connect(&format!("http://{}", lab.addr), &Default::default()).unwrap(),
    );

    let policy = client
        .get_policy(v1::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy.sizing.unwrap().target_batches, 10);
    assert_eq!(policy.ping_interval.unwrap().seconds, 10);
    let bad = client
        .set_policy(v1::SetPolicyRequest {
            min_batch_size: Some(900),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let set = client
        .set_policy(v1::SetPolicyRequest {
            min_batch_size: Some(10),
            rounding_step: Some(10),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.sizing.unwrap().min_batch_size, 10);

    let none = client
        .get_current_cycle(v1::GetCurrentCycleRequest {
            kind: v1::ExecutorKind::Ping as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), tonic::Code::NotFound);

    let mut events = client
        .watch_cycles(v1::WatchCyclesRequest {
            kind: v1::ExecutorKind::Ping as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let scheduler = &lab.planner.scheduler;
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for k in 0..3u32 {
        let now = t0 + INTERVAL * k;
        ids.push(scheduler.open_cycle(v1::ExecutorKind::Ping, now).unwrap());
        scheduler.dispatch_due(now + INTERVAL);
    }
    // 100 devices / 10 = 10 → the new policy's step of 10 gives 10 batches of 10.
    let started = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(started.event, v1::CycleEventKind::Started as i32);
    let first = started.cycle.unwrap();
    assert_eq!(
        (first.cycle_id, first.batch_size, first.batch_count),
        (ids[0], 10, 10)
    );

    let assignments = executor.wait_for(10).await;
    for a in &assignments {
        executor.done(a);
    }
    eventually("the first cycle completes", Duration::from_secs(10), || {
        // Before any deadline: completion, not overruns, is what is checked.
        scheduler.check_timers(t0 + Duration::from_secs(9));
        let done = lab.cycle_summary(ids[0]).completed;
        async move { done.then_some(()) }
    })
    .await;
    let current = client
        .get_current_cycle(v1::GetCurrentCycleRequest { kind: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.cycle.unwrap().cycle_id, ids[2]);
    // Every device of cycle 3 was still in flight at its slot: each batch is
    // done with all its devices skipped, none sent.
    assert_eq!(current.batches.len(), 10);
    for batch in &current.batches {
        assert_eq!(
            (batch.state, batch.skipped, batch.device_count),
            (v1::BatchState::Done as i32, 10, 0),
            "{batch:?}"
        );
    }

    let executors = client
        .list_executors(v1::ListExecutorsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .executors;
    assert_eq!(executors.len(), 1);
    assert_eq!(executors[0].executor_id, "exec-ops");
    assert_eq!(
        executors[0].labels.get("site").map(String::as_str),
        Some("lab")
    );
    assert_eq!(executors[0].capacity, 100_000);

    let page = client
        .list_cycles(v1::ListCyclesRequest {
            kind: v1::ExecutorKind::Ping as i32,
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.cycles.iter().map(|c| c.cycle_id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let rest = client
        .list_cycles(v1::ListCyclesRequest {
            kind: v1::ExecutorKind::Ping as i32,
            page_size: 2,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.cycles.iter().map(|c| c.cycle_id).collect::<Vec<_>>(),
        [ids[0]]
    );
    let done = &rest.cycles[0];
    assert!(done.completed, "{done:?}");
    assert_eq!((done.done_batches, done.succeeded), (10, 100));
    assert_eq!(page.cycles[0].skipped, 100);

    let leader = client
        .get_leader(v1::GetLeaderRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(leader.instance_id, "test");
}

/// A `redis-server` of the test's own on a free port, without persistence
/// (a FLUSHALL or restart loses everything), stopped when dropped: a test
/// that flushes must not flush the Redis other tests share.
struct OwnRedis {
    child: tokio::process::Child,
    url: String,
}

impl OwnRedis {
    /// None (with a note) when there is no `redis-server` to run.
    async fn start() -> Option<OwnRedis> {
        let port = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(child) = child else {
            println!("skipped: no redis-server to start");
            return None;
        };
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str()).unwrap();
        eventually("redis-server answers", Duration::from_secs(10), || {
            let client = client.clone();
            async move {
                let mut connection = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .ok()
            }
        })
        .await;
        Some(OwnRedis { child, url })
    }

    async fn command(&self, args: &[&str]) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let _: redis::Value = command.query_async(&mut connection).await.unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn executor_status(addr: std::net::SocketAddr) -> v1::GetExecutorStatusResponse {
    let mut client = ExecutorServiceClient::new(
        connect(&format!("http://{addr}"), &Default::default()).unwrap(),
    );
    client
        .get_executor_status(v1::GetExecutorStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The newest ping cycle of `epoch` or above that `planner` has completed
/// with every device probed, if any.
async fn completed_cycle_of_epoch(
    planner: std::net::SocketAddr,
    epoch: u64,
    devices: u32,
) -> Option<v1::CycleSummary> {
    let mut client: PlannerServiceClient<PeerChannel> =
        PlannerServiceClient::new(connect(&format!("http://{planner}"), &Default::default()).ok()?);
    let cycles = client
        .list_cycles(v1::ListCyclesRequest {
            kind: v1::ExecutorKind::Ping as i32,
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .cycles;
    cycles
        .into_iter()
        .find(|c| c.leader_epoch >= epoch && c.completed && c.succeeded + c.failed == devices)
}

/// The fencing recovers on a running stack of real processes (two planners
/// on a Redis of the test's own, a real ping executor probing loopback,
/// results to a recording Ingest server): Redis loses its data (FLUSHALL,
/// its epoch counter with it), and monitoring goes on within two intervals
/// at an epoch above everything the executor saw; then the leader is
/// SIGKILLed and the standby plans within two intervals. The executor never
/// refuses a stale-epoch assignment, and never runs one.
#[tokio::test]
async fn fencing_recovers_when_redis_loses_its_data_and_when_the_leader_dies() {
    if !crate::executor::can_ping() {
        return;
    }
    let Some(redis) = OwnRedis::start().await else {
        return;
    };
    const DEVICES: u32 = 20;
    let interval = Duration::from_secs(2);
    let prefix = "netward-fence";
    // Epochs 1-4 were handed out before: the executor will see 5.
    redis
        .command(&["SET", &format!("{prefix}:epoch"), "4"])
        .await;

    let rows: Vec<v1::ImportRow> = (0..DEVICES)
        .map(|i| v1::ImportRow {
            line: i + 2,
            name: format!("fence-{i:02}"),
            ip: format!("127.33.0.{}", i + 1),
            site: "fence".into(),
            ..Default::default()
        })
        .collect();
    let instance = "NETWARD_PLANNER__LEASE__INSTANCE_ID";
    let mut cluster = crate::support::cluster()
        .planner()
        .devices(rows)
        .ping_interval(interval)
        .set_for(Target::Planner, "NETWARD_REDIS_URL", &redis.url)
        .set_for(
            Target::Planner,
            "NETWARD_PLANNER__LEASE__KEY_PREFIX",
            prefix,
        )
        .set_for(Target::Planner, "NETWARD_PLANNER__LEASE__TTL", "1s")
        .set_for(Target::Planner, instance, "planner-a")
        .start()
        .await;
    let second = cluster
        .start_another(Target::Planner, &[(instance, "planner-b")])
        .await;

    let ingest = RecordingIngest::default();
    let ingest_addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let _ingest_server = ingest.serve(ingest_addr).await;
    let planner_urls = format!("{},{}", cluster.planner_url(), second.url());
    let alerting_url = format!("http://{ingest_addr}");
    let executor = cluster
        .add_ping_executor(&[
            ("NETWARD_PLANNER_URL", &planner_urls),
            ("NETWARD_ALERTING_URL", &alerting_url),
            ("NETWARD_PING_EXECUTOR__EXECUTOR_ID", "exec-fence"),
        ])
        .await
        .grpc_addr;
    let first = cluster.planner.take().unwrap();
    let probes = || ingest.store.lock().unwrap().probes.len();

    // Monitoring at epoch 5.
    let leader = |addr| async move { leader_of(addr).await };
    let running = eventually(
        "a cycle of epoch 5 completes",
        Duration::from_secs(30),
        || {
            let (a, b) = (first.grpc_addr, second.grpc_addr);
            async move {
                match completed_cycle_of_epoch(a, 5, DEVICES).await {
                    Some(cycle) => Some(cycle),
                    None => completed_cycle_of_epoch(b, 5, DEVICES).await,
                }
            }
        },
    )
    .await;
    assert_eq!(running.leader_epoch, 5, "{running:?}");
    assert_eq!(executor_status(executor).await.leader_epoch, 5);

    // Redis loses everything: its counter would start again at 1.
    let stored_before = probes();
    let flushed_at = std::time::Instant::now();
    redis.command(&["FLUSHALL"]).await;
    let (recovered, epoch) = eventually(
        "a cycle above epoch 5 completes after the flush",
        Duration::from_secs(30),
        || {
            let (a, b) = (first.grpc_addr, second.grpc_addr);
            async move {
                let cycle = match completed_cycle_of_epoch(a, 6, DEVICES).await {
                    Some(cycle) => Some(cycle),
                    None => completed_cycle_of_epoch(b, 6, DEVICES).await,
                }?;
                Some((std::time::Instant::now(), cycle.leader_epoch))
            }
        },
    )
    .await;
    let recovery = recovered - flushed_at;
    let store = ingest.store.clone();
    eventually(
        "results of the new epoch are stored",
        Duration::from_secs(10),
        || {
            let stored = store.lock().unwrap().probes.len();
            async move { (stored >= stored_before + DEVICES as usize).then_some(()) }
        },
    )
    .await;
    println!("fencing: after FLUSHALL, a whole cycle of epoch {epoch} was done {recovery:?} later");
    assert!(
        recovery < interval * 2,
        "monitoring resumed {recovery:?} after the flush"
    );
    let status = executor_status(executor).await;
    assert!(status.leader_epoch > 5, "{status:?}");
    assert_eq!(status.stale_assignments, 0, "{status:?}");

    // The leader dies: the standby plans within two intervals.
    let (a_leads, b_leads) = (
        leader(first.grpc_addr).await.leading,
        leader(second.grpc_addr).await.leading,
    );
    assert!(a_leads != b_leads, "exactly one leader");
    let (dead, standby) = if a_leads {
        (first, second)
    } else {
        (second, first)
    };
    let before_kill = leader_of(standby.grpc_addr).await.leader_epoch;
    let killed_at = std::time::Instant::now();
    dead.kill().await;
    let took_over = eventually(
        "the standby completes a cycle",
        Duration::from_secs(30),
        || {
            let standby = standby.grpc_addr;
            async move {
                completed_cycle_of_epoch(standby, before_kill + 1, DEVICES)
                    .await
                    .map(|_| std::time::Instant::now())
            }
        },
    )
    .await;
    let takeover = took_over - killed_at;
    println!("fencing: the standby completed a cycle {takeover:?} after the leader was killed");
    assert!(takeover < interval * 2, "took {takeover:?}");
    let status = executor_status(executor).await;
    assert_eq!(status.stale_assignments, 0, "{status:?}");
    assert!(status.leader_epoch > before_kill, "{status:?}");

    let stopped = standby.stop().await;
    assert!(stopped.clean(), "{stopped:?}");
}

/// A hung inventory (a listener that accepts and never answers) as the
/// source of SNMP credentials: ping cycles keep opening on time, the SNMP
/// cycle opens after its short grace without the device whose credential
/// is missing (counted as skipped), and nothing waits on the inventory.
#[tokio::test]
async fn a_hung_inventory_never_holds_up_ping_cycles() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    // Accepts and holds every connection without a byte in answer.
    let _hung_task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    let config = PlannerConfig {
        ping_interval: Duration::from_millis(500),
        snmp_interval: Duration::from_secs(60),
        ..Default::default()
    };
    let client = InventoryServiceClient::new(
        connect(&format!("http://{hung_addr}"), &Default::default()).unwrap(),
    );
    let planner = Arc::new(Planner::new(&config, client).unwrap());
    {
        let mut copy = planner.copy.write().unwrap();
        for (id, snmp) in [("ping-only", None), ("snmp-v3", Some("cred-hung"))] {
            copy.insert(v1::Device {
                id: id.into(),
                name: id.into(),
                ip_address: "127.34.0.1".into(),
                snmp: snmp.map(|credential| v1::SnmpSettings {
                    enabled: true,
                    credential_id: credential.into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        copy.revision = 1;
        copy.synced = true;
    }
    let stop = CancellationToken::new();
    let (_lease_tx, lease_rx) = watch::channel(LeaseState::Leader {
        epoch: 1,
        expires_at: std::time::Instant::now() + Duration::from_secs(3600),
    });
    planner.spawn_credential_resolver(stop.clone());
    let started = Instant::now();
    tokio::spawn(planner.clone().run_loop(lease_rx, stop.clone()));

    // Seven ping cycles (at 0, 0.5, ... 3 s), whatever the inventory does.
    let (ping, snmp_cycles) = eventually("seven ping cycles open", Duration::from_secs(10), || {
        let state = planner.scheduler.lock();
        let ping: Vec<Instant> = state
            .cycles
            .iter()
            .filter(|c| c.kind == v1::ExecutorKind::Ping)
            .map(|c| c.started)
            .collect();
        let snmp = state
            .cycles
            .iter()
            .filter(|c| c.kind == v1::ExecutorKind::Snmp)
            .count();
        let opened = (ping.len() >= 7).then_some((ping, snmp));
        async move { opened }
    })
    .await;
    for (k, at) in ping.iter().enumerate() {
        let late = at.saturating_duration_since(started + config.ping_interval * k as u32);
        assert!(
            late < Duration::from_millis(250),
            "ping cycle {k} opened {late:?} late"
        );
    }
    // The SNMP cycle waits its grace for the credential's first try.
    assert_eq!(snmp_cycles, 0, "the grace has not passed yet");
    let (opened_after, skipped, planned) = eventually(
        "the SNMP cycle opens without the device",
        Duration::from_secs(10),
        || {
            let found = planner
                .scheduler
                .lock()
                .cycles
                .iter()
                .find(|c| c.kind == v1::ExecutorKind::Snmp)
                .map(|c| {
                    (
                        c.started.saturating_duration_since(started),
                        c.skipped,
                        c.sizing.device_count,
                    )
                });
            async move { found }
        },
    )
    .await;
    assert!(
        opened_after >= netward_planner::CREDENTIAL_GRACE
            && opened_after < netward_planner::CREDENTIAL_GRACE + Duration::from_secs(1),
        "{opened_after:?}"
    );
    assert_eq!((skipped, planned), (1, 0));
    assert!(planner.scheduler.credentials.lock().unwrap().is_empty());
    stop.cancel();
}
