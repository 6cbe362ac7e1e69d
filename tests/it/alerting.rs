//! Alerting's device state through its real gRPC API, with the inventory
//! (in-process, on PostgreSQL) giving names and parents: results in, states
//! and transitions out — a branch router's outage makes its devices
//! UNREACHABLE, not DOWN.

use std::collections::HashMap;
use std::time::Duration;

use netward_shared::client::PeerChannel;
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::testkit::cluster::Cluster;
use netward_shared::testkit::{TestDatabase, eventually};

/// Inventory and alerting in this process (the test kit's cluster), with
/// `devices` imported: (name, site, parent) on 127.40.0.x.
pub(crate) struct Stack {
    cluster: Cluster,
    pub(crate) alerting: AlertingServiceClient<PeerChannel>,
    pub(crate) ids: HashMap<String, String>,
}

impl Stack {
    pub(crate) fn database(&self) -> &TestDatabase {
        self.cluster.postgres()
    }
}

async fn start(devices: &[(&str, &str, &str)]) -> Stack {
    start_with(devices, None).await
}

/// A webhook receiver on a free port: every body it gets, as JSON.
pub(crate) async fn webhook() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    webhook_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
}

/// A webhook receiver on `listener`: every body it gets, as JSON.
pub(crate) fn webhook_on(
    listener: tokio::net::TcpListener,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let recorded = recorded.clone();
            async move {
                recorded
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null));
                "ok"
            }
        }),
    );
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, bodies)
}

pub(crate) async fn start_with(devices: &[(&str, &str, &str)], webhook_url: Option<&str>) -> Stack {
    let rows: Vec<v1::ImportRow> = devices
        .iter()
        .enumerate()
        .map(|(i, (name, site, parent))| v1::ImportRow {
            line: i as u32 + 2,
            name: name.to_string(),
            ip: format!("127.40.0.{}", i + 1),
            site: site.to_string(),
            parent: parent.to_string(),
            ..Default::default()
        })
        .collect();
    let mut builder = crate::support::cluster()
        .in_process(Target::Inventory)
        .in_process(Target::Alerting)
        .alerting()
        .devices(rows);
    if let Some(url) = webhook_url {
        builder = builder.config(
            Target::Alerting,
            &format!("[[alerting.notify.webhooks]]\nname = \"noc\"\nurl = \"{url}\"\n"),
        );
    }
    let cluster = builder.start().await;
    Stack {
        alerting: cluster.alerting_client(),
        ids: cluster.ids.clone(),
        cluster,
    }
}

/// Results sent as executors send them: probes on a stream whose hello
/// says PING; SNMP samples on a second stream, saying SNMP, opened at the
/// first samples (alerting holds every batch to its stream's kind).
pub(crate) struct Ingest {
    client: AlertingServiceClient<PeerChannel>,
    tx: tokio::sync::mpsc::UnboundedSender<v1::IngestRequest>,
    rx: tonic::Streaming<v1::IngestResponse>,
    sequence: u64,
    snmp: Option<Box<Ingest>>,
}

impl Ingest {
    pub(crate) async fn open(stack: &Stack) -> Ingest {
        Self::over(stack.alerting.clone()).await
    }

    /// An Ingest stream on any alerting client.
    pub(crate) async fn over(client: AlertingServiceClient<PeerChannel>) -> Ingest {
        Self::of(client, v1::ExecutorKind::Ping).await
    }

    async fn of(mut client: AlertingServiceClient<PeerChannel>, kind: v1::ExecutorKind) -> Ingest {
        let (tx, out) = tokio::sync::mpsc::unbounded_channel();
        tx.send(v1::IngestRequest {
            msg: Some(v1::ingest_request::Msg::Hello(v1::IngestHello {
                executor_id: "test".into(),
                kind: kind as i32,
                version: String::new(),
            })),
        })
        .unwrap();
        let rx = client
            .ingest(tokio_stream::wrappers::UnboundedReceiverStream::new(out))
            .await
            .unwrap()
            .into_inner();
        Ingest {
            client,
            tx,
            rx,
            sequence: 0,
            snmp: None,
        }
    }

    /// Sends one batch of results for `(device id, answered)` and waits for its ack.
    pub(crate) async fn results(&mut self, cycle: u64, results: &[(&str, bool)]) {
        let probes = results
            .iter()
            .map(|(id, ok)| v1::ProbeResult {
                device_id: id.to_string(),
                cycle_id: cycle,
                sent: if *ok { 3 } else { 5 },
                received: if *ok { 3 } else { 0 },
                loss_percent: if *ok { 0.0 } else { 100.0 },
                rtt_avg_us: ok.then_some(120),
                outcome: if *ok {
                    v1::ProbeOutcome::Ok
                } else {
                    v1::ProbeOutcome::Timeout
                } as i32,
                ..Default::default()
            })
            .collect();
        self.batch(cycle, probes).await;
    }

    /// Sends one result per device, all answered or all silent.
    pub(crate) async fn all(&mut self, cycle: u64, devices: &[String], answered: bool) {
        let results: Vec<(&str, bool)> = devices.iter().map(|d| (d.as_str(), answered)).collect();
        self.results(cycle, &results).await;
    }

    /// Sends a batch of results and waits for its ack, and for its evaluation
    /// (which follows the ack on the same stream) by a round trip of an
    /// empty batch.
    pub(crate) async fn batch(&mut self, cycle: u64, probes: Vec<v1::ProbeResult>) {
        for probes in [probes, Vec::new()] {
            self.send(cycle, probes).await;
        }
    }

    async fn send(&mut self, cycle: u64, probes: Vec<v1::ProbeResult>) {
        self.send_batch(v1::ResultBatch {
            cycle_id: cycle,
            probes,
            ..Default::default()
        })
        .await;
    }

    /// Sends a batch of SNMP samples and waits for its ack and evaluation
    /// (as [`Ingest::batch`]).
    pub(crate) async fn samples(&mut self, cycle: u64, samples: Vec<v1::SnmpSample>) {
        if self.snmp.is_none() {
            let stream = Self::of(self.client.clone(), v1::ExecutorKind::Snmp).await;
            self.snmp = Some(Box::new(stream));
        }
        let snmp = self.snmp.as_mut().expect("opened above");
        snmp.send_batch(v1::ResultBatch {
            kind: v1::ExecutorKind::Snmp as i32,
            cycle_id: cycle,
            samples,
            ..Default::default()
        })
        .await;
        snmp.send(cycle, Vec::new()).await;
    }

    async fn send_batch(&mut self, batch: v1::ResultBatch) {
        self.sequence += 1;
        let batch = v1::ResultBatch {
            sequence: self.sequence,
            batch_uid: uuid::Uuid::new_v4().to_string(),
            ..batch
        };
        self.tx
            .send(v1::IngestRequest {
                msg: Some(v1::ingest_request::Msg::Batch(batch)),
            })
            .unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            matches!(ack.msg, Some(v1::ingest_response::Msg::Ack(_))),
            "{ack:?}"
        );
    }
}

pub(crate) async fn statuses(stack: &Stack) -> (HashMap<String, (i32, String)>, v1::StateCounts) {
    let mut alerting = stack.alerting.clone();
    let listed = alerting
        .list_device_statuses(v1::ListDeviceStatusesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let by_name = listed
        .statuses
        .into_iter()
        .map(|s| (s.device_name, (s.state, s.state_reason)))
        .collect();
    (by_name, listed.counts.unwrap())
}

#[tokio::test]
async fn a_branch_outage_makes_its_devices_unreachable_not_down() {
    let (hook, bodies) = webhook().await;
    let stack = start_with(
        &[
            ("br1-rtr", "br1", ""),
            ("br1-atm", "br1", "br1-rtr"),
            ("br1-ap", "br1", "br1-rtr"),
            ("br2-rtr", "br2", ""),
        ],
        Some(&hook),
    )
    .await;
    let id = |name: &str| stack.ids[name].clone();
    let (_, counts) = statuses(&stack).await;
    assert_eq!(
        (counts.total, counts.unknown),
        (4, 4),
        "never probed: UNKNOWN"
    );

    let mut ingest = Ingest::open(&stack).await;
    let all = ["br1-rtr", "br1-atm", "br1-ap", "br2-rtr"].map(id);
    ingest.all(1, &all, true).await;
    let (_, counts) = statuses(&stack).await;
    assert_eq!(counts.up, 4, "{counts:?}");

    // Watchers see what follows as it happens.
    let mut watcher = stack.alerting.clone();
    let mut state_stream = watcher
        .watch_device_states(v1::WatchDeviceStatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut alert_stream = watcher
        .watch_alerts(v1::WatchAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();

    // Cycle 2: the branch router and everything behind it go silent; the
    // children's results arrive before the router's (they wait for it).
    ingest
        .results(2, &[(&id("br1-atm"), false), (&id("br1-ap"), false)])
        .await;
    ingest
        .results(2, &[(&id("br1-rtr"), false), (&id("br2-rtr"), false)])
        .await;
    let (states, counts) = eventually("the outage is judged", Duration::from_secs(10), || async {
        let (states, counts) = statuses(&stack).await;
        (counts.down == 2 && counts.unreachable == 2).then_some((states, counts))
    })
    .await;
    assert_eq!(states["br1-rtr"].0, v1::DeviceState::Down as i32);
    assert_eq!(states["br1-atm"].0, v1::DeviceState::Unreachable as i32);
    assert!(
        states["br1-atm"].1.contains("br1-rtr"),
        "the reason names the parent: {:?}",
        states["br1-atm"]
    );
    assert_eq!(states["br2-rtr"].0, v1::DeviceState::Down as i32);
    assert_eq!(counts.up, 0);
    // Worst first (DOWN before UNREACHABLE), then by name, in pages.
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = stack
            .alerting
            .clone()
            .list_device_statuses(v1::ListDeviceStatusesRequest {
                page_size: 3,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(
            page.statuses
                .into_iter()
                .map(|s| s.device_name)
                .collect::<Vec<_>>(),
        );
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(
        pages,
        [vec!["br1-rtr", "br2-rtr", "br1-ap"], vec!["br1-atm"]]
    );
    let mut watched = Vec::new();
    while watched.len() < 4 {
        let change = tokio::time::timeout(Duration::from_secs(10), state_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .change
            .unwrap();
        watched.push((change.device_name, change.to_state));
    }
    watched.sort();
    assert_eq!(
        watched,
        [
            ("br1-ap".to_string(), v1::DeviceState::Unreachable as i32),
            ("br1-atm".to_string(), v1::DeviceState::Unreachable as i32),
            ("br1-rtr".to_string(), v1::DeviceState::Down as i32),
            ("br2-rtr".to_string(), v1::DeviceState::Down as i32),
        ]
    );
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(10), alert_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.event, v1::AlertEventKind::Fired as i32);
        assert!(event.alert.unwrap().device_name.ends_with("-rtr"));
    }

    // Every transition is a row, with its reason and cycle.
    let changes: Vec<(i16, i16, i64)> = sqlx::query_as(
        "SELECT from_state, to_state, cycle_id FROM alerting.state_changes ORDER BY id",
    )
    .fetch_all(stack.database().pool())
    .await
    .unwrap();
    let to_down = changes
        .iter()
        .filter(|c| c.1 == v1::DeviceState::Down as i16)
        .count();
    let to_unreachable = changes
        .iter()
        .filter(|c| c.1 == v1::DeviceState::Unreachable as i16)
        .count();
    assert_eq!((to_down, to_unreachable), (2, 2), "{changes:?}");
    assert!(changes.iter().filter(|c| c.2 == 2).count() == 4);

    // One alert per outage: the two routers, none for the devices behind br1-rtr.
    let mut alerting = stack.alerting.clone();
    let open = alerting
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let mut alerted: Vec<&str> = open.iter().map(|a| a.device_name.as_str()).collect();
    alerted.sort();
    assert_eq!(alerted, ["br1-rtr", "br2-rtr"], "{open:?}");
    assert!(
        open.iter()
            .all(|a| a.rule_kind == v1::RuleKind::DeviceDown as i32
                && a.severity == v1::Severity::Critical as i32
                && a.state == v1::AlertState::Firing as i32
                && a.cycle_id == 2)
    );
    let router_alert = open
        .iter()
        .find(|a| a.device_name == "br1-rtr")
        .unwrap()
        .clone();
    let acked = alerting
        .ack_alert(v1::AckAlertRequest {
            id: router_alert.id.clone(),
            acknowledged_by: "noc-oncall".into(),
            comment: "ISP ticket 4711".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(
        (acked.state, acked.acknowledged_by.as_str()),
        (v1::AlertState::Acknowledged as i32, "noc-oncall")
    );
    let nobody = alerting
        .ack_alert(v1::AckAlertRequest {
            id: router_alert.id.clone(),
            acknowledged_by: String::new(),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), tonic::Code::InvalidArgument);

    // The router answers twice (up_after = 2), then so do its devices.
    ingest.all(3, &all, true).await;
    ingest.all(4, &all, true).await;
    eventually(
        "everything is UP again",
        Duration::from_secs(10),
        || async {
            let (_, counts) = statuses(&stack).await;
            (counts.up == 4).then_some(())
        },
    )
    .await;
    let mut alerting = stack.alerting.clone();
    let status = alerting
        .get_device_status(v1::GetDeviceStatusRequest {
            device_id: id("br1-rtr"),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        (status.state, status.last_cycle_id),
        (v1::DeviceState::Up as i32, 4)
    );
    assert_eq!(status.site_name, "br1");

    // The webhook got each firing, then each resolve, with the measurement.
    let delivered = eventually(
        "the webhook gets 4 notifications",
        Duration::from_secs(15),
        || {
            let bodies = bodies.lock().unwrap().clone();
            async move { (bodies.len() >= 4).then_some(bodies) }
        },
    )
    .await;
    let firing: Vec<&serde_json::Value> = delivered
        .iter()
        .filter(|b| b["state"] == "firing")
        .collect();
    assert_eq!(firing.len(), 2, "{delivered:?}");
    let router = firing
        .iter()
        .find(|b| b["device_name"] == "br1-rtr")
        .unwrap();
    assert_eq!(router["severity"], "critical");
    assert_eq!(router["rule_kind"], "DEVICE_DOWN");
    assert_eq!(router["site"], "br1");
    assert_eq!(router["measurement"]["loss_percent"], 100.0);
    assert_eq!(router["measurement"]["cycle_id"], 2);
    assert_eq!(
        delivered
            .iter()
            .filter(|b| b["state"] == "resolved")
            .count(),
        2
    );
    assert!(
        delivered
            .iter()
            .all(|b| b["device_name"] != "br1-atm" && b["device_name"] != "br1-ap")
    );

    // Recovery resolves the alerts (the acknowledged one too).
    let open = alerting
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.total_count, 0, "{open:?}");
    let resolved = alerting
        .get_alert(v1::GetAlertRequest {
            id: router_alert.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(resolved.state, v1::AlertState::Resolved as i32);
    assert!(resolved.resolved_at.is_some());

    // History: the router's rollups and transitions.
    let history = alerting
        .get_device_history(v1::GetDeviceHistoryRequest {
            device_id: id("br1-rtr"),
            step: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let probes: u32 = history.points.iter().map(|p| p.probe_count).sum();
    let sent: u64 = history.points.iter().map(|p| p.packets_sent).sum();
    let received: u64 = history.points.iter().map(|p| p.packets_received).sum();
    assert_eq!((probes, sent, received), (4, 14, 9), "{history:?}");
    let transitions: Vec<i32> = history.state_changes.iter().map(|c| c.to_state).collect();
    assert_eq!(
        transitions,
        [
            v1::DeviceState::Up as i32,
            v1::DeviceState::Down as i32,
            v1::DeviceState::Up as i32
        ]
    );
    let bad_step = alerting
        .get_device_history(v1::GetDeviceHistoryRequest {
            device_id: id("br1-rtr"),
            step: Some(prost_types::Duration {
                seconds: 90,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_step.code(), tonic::Code::InvalidArgument);

    // Availability from the transitions: one outage each, all recovered.
    let router = alerting
        .get_availability(v1::GetAvailabilityRequest {
            target: Some(v1::get_availability_request::Target::DeviceId(id(
                "br1-rtr",
            ))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((router.incidents, router.device_count), (1, 1));
    assert!(
        router.uptime_percent < 100.0 && router.uptime_percent > 0.0,
        "{router:?}"
    );
    assert!(router.mttr.unwrap().seconds >= 0);
    let site_id = status.site_id.clone();
    let site = alerting
        .get_availability(v1::GetAvailabilityRequest {
            target: Some(v1::get_availability_request::Target::SiteId(site_id)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (site.name.as_str(), site.device_count, site.incidents),
        ("br1", 3, 3),
        "{site:?}"
    );
    assert!(site.unreachable_time.unwrap().nanos > 0 || site.unreachable_time.unwrap().seconds > 0);
    assert_eq!(site.devices.len(), 3);
}

#[tokio::test]
async fn packet_loss_over_a_window_of_probes_alerts_once() {
    let stack = start(&[("lossy-ap", "br9", "")]).await;
    let id = stack.ids["lossy-ap"].clone();
    let mut ingest = Ingest::open(&stack).await;
    let mut alerting = stack.alerting.clone();
    let lossy = |cycle: u64| v1::ProbeResult {
        device_id: id.clone(),
        cycle_id: cycle,
        sent: 3,
        received: 2,
        loss_percent: 33.3,
        rtt_avg_us: Some(900),
        outcome: v1::ProbeOutcome::Ok as i32,
        ..Default::default()
    };
    let open_count = |mut alerting: AlertingServiceClient<PeerChannel>| async move {
        alerting
            .list_alerts(v1::ListAlertsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .total_count
    };
    // The window is judged from 30 packets (10 probes) on.
    for cycle in 1..=12 {
        ingest.batch(cycle, vec![lossy(cycle)]).await;
        let expected = if cycle >= 10 { 1 } else { 0 };
        let open = open_count(alerting.clone()).await;
        assert_eq!(open, expected, "after cycle {cycle}");
    }
    let open = alerting
        .list_alerts(v1::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(open[0].rule_kind, v1::RuleKind::PacketLoss as i32);
    assert!(
        open[0].summary.contains("33.3 %") && open[0].summary.contains("10/30"),
        "{}",
        open[0].summary
    );
    // Still UP: loss is not an outage.
    let status = alerting
        .get_device_status(v1::GetDeviceStatusRequest {
            device_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, v1::DeviceState::Up as i32);
    // Clean probes push the lossy ones out; it resolves once the window is
    // back at 10 % (3 of 30 lost), after 7 of them.
    for cycle in 13..=19 {
        let mut clean = lossy(cycle);
        clean.received = 3;
        clean.loss_percent = 0.0;
        ingest.batch(cycle, vec![clean]).await;
        let expected = if cycle < 19 { 1 } else { 0 };
        let open = open_count(alerting.clone()).await;
        assert_eq!(open, expected, "after clean cycle {cycle}");
    }
    let rules = alerting
        .list_rules(v1::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .rules;
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu-high",
            "device-down",
            "device-flapping",
            "device-rebooted",
            "high-latency",
            "interface-down",
            "interface-errors",
            "interface-utilisation",
            "isp-link-down",
            "isp-link-flapping",
            "memory-high",
            "monitoring-gap",
            "packet-loss"
        ]
    );
}
