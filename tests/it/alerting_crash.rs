//! A crash between an alert change and its delivery loses nothing and
//! sends nothing twice: the real alerting process commits a DOWN alert and
//! its webhook notification (the outbox), cannot deliver it (nothing
//! listens yet), is killed with SIGKILL, and once restarted delivers the
//! notification exactly once to a real HTTP server.

use std::time::Duration;

use netward_shared::client::PeerChannel;
use netward_shared::config::Target;
use netward_shared::proto::v1;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::testkit::eventually;

#[tokio::test]
async fn a_notification_survives_a_kill_between_commit_and_delivery() {
    // The webhook's port is free (connections refused) until after the kill.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cluster = crate::support::cluster()
        .alerting()
        .devices(vec![v1::ImportRow {
            line: 2,
            name: "br7-rtr".into(),
            ip: "127.41.0.1".into(),
            site: "br7".into(),
            ..Default::default()
        }])
        .config(
            Target::Alerting,
            &format!(
                "[alerting.notify]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\nmax_attempts = 100\n\n\
                 [[alerting.notify.webhooks]]\nname = \"noc\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"
            ),
        )
        .start()
        .await;
    assert_eq!(cluster.imported.as_ref().unwrap().created, 1);
    let device_id = cluster.id("br7-rtr").to_string();
    let client = cluster.alerting_client();
    let status = client
        .clone()
        .get_device_status(v1::GetDeviceStatusRequest {
            device_id: device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.device_name, "br7-rtr");

    crate::alerting::Ingest::over(client.clone())
        .await
        .batch(
            1,
            vec![v1::ProbeResult {
                device_id: device_id.clone(),
                cycle_id: 1,
                sent: 5,
                received: 0,
                loss_percent: 100.0,
                outcome: v1::ProbeOutcome::Timeout as i32,
                ..Default::default()
            }],
        )
        .await;
    // Evaluation follows the ack.
    let alert = eventually("the DOWN alert opens", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            client
                .list_alerts(v1::ListAlertsRequest::default())
                .await
                .ok()?
                .into_inner()
                .alerts
                .pop()
        }
    })
    .await;
    // The notification is committed and has failed at least once.
    let tried = eventually("a delivery attempt fails", Duration::from_secs(15), || {
        let mut client = client.clone();
        let alert_id = alert.id.clone();
        async move {
            let listed = client
                .list_notifications(v1::ListNotificationsRequest {
                    alert_id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            let row = listed.notifications.into_iter().next()?;
            (row.attempts >= 1).then_some(row)
        }
    })
    .await;
    assert_eq!(
        tried.state,
        v1::NotificationState::Retrying as i32,
        "{tried:?}"
    );
    assert!(!tried.last_error.is_empty(), "{tried:?}");
    cluster.alerting.take().unwrap().kill().await;

    // Now the receiver is up; a new alerting process takes over the outbox.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (_, bodies) = crate::alerting::webhook_on(listener);
    cluster.alerting = Some(cluster.start_another(Target::Alerting, &[]).await);
    let client = cluster.alerting_client();
    let notifications = |client: &AlertingServiceClient<PeerChannel>| {
        let mut client = client.clone();
        let alert_id = alert.id.clone();
        async move {
            client
                .list_notifications(v1::ListNotificationsRequest {
                    alert_id,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().notifications)
        }
    };
    let delivered = v1::NotificationState::Delivered as i32;
    eventually(
        "the notification is delivered",
        Duration::from_secs(20),
        || {
            let listed = notifications(&client);
            async move {
                let rows = listed.await.ok()?;
                rows.iter().any(|r| r.state == delivered).then_some(())
            }
        },
    )
    .await;
    // Several retry periods (at most 1 s each) later it has still arrived
    // only once: the wait is the scenario, a second delivery would show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["alert_id"], alert.id.as_str());
    assert_eq!(bodies[0]["state"], "firing");
    assert_eq!(bodies[0]["device_name"], "br7-rtr");
    let row = notifications(&client).await.unwrap();
    assert_eq!(row.len(), 1);
    assert_eq!(row[0].state, delivered, "{row:?}");
}
