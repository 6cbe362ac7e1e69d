//! A follower of `WatchDevices` sees a snapshot, then every change once, in
//! order — also across a disconnect, when it resumes from its last revision.

use std::time::Duration;

use netward_shared::proto::v1;
use netward_shared::proto::v1::watch_devices_response::Event;

use crate::support::{Backend, Client, TestInventory, create, device, on_both_backends, site};

on_both_backends!(
    resume_from_the_last_revision_sees_every_change_once_in_order,
    an_unknown_revision_gets_a_fresh_snapshot,
);

async fn next(stream: &mut tonic::Streaming<v1::WatchDevicesResponse>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch event within 10 s")
        .unwrap()
        .expect("the stream is open")
        .event
        .unwrap()
}

async fn watch(
    client: &mut Client,
    from_revision: u64,
) -> tonic::Streaming<v1::WatchDevicesResponse> {
    client
        .watch_devices(v1::WatchDevicesRequest {
            from_revision,
            chunk_size: 2,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Reads a whole snapshot: (revision, reason, device names).
async fn snapshot(
    stream: &mut tonic::Streaming<v1::WatchDevicesResponse>,
) -> (u64, i32, Vec<String>) {
    let Event::SnapshotBegin(begin) = next(stream).await else {
        panic!("expected a snapshot");
    };
    let mut names = Vec::new();
    loop {
        match next(stream).await {
            Event::SnapshotChunk(chunk) => names.extend(chunk.devices.into_iter().map(|d| d.name)),
            Event::SnapshotEnd(end) => {
                assert_eq!(end.revision, begin.revision);
                assert_eq!(names.len() as u64, begin.device_count);
                return (begin.revision, begin.reason, names);
            }
            other => panic!("unexpected {other:?} inside a snapshot"),
        }
    }
}

async fn change(stream: &mut tonic::Streaming<v1::WatchDevicesResponse>) -> v1::DeviceChange {
    match next(stream).await {
        Event::Change(change) => change,
        other => panic!("expected a change, got {other:?}"),
    }
}

async fn resume_from_the_last_revision_sees_every_change_once_in_order(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    site(&mut c, "telavi-01", "Telavi").await;
    for i in 1..=3 {
        create(
            &mut c,
            device(
                &format!("telavi-dev{i}"),
                &format!("127.5.0.{i}"),
                "telavi-01",
            ),
        )
        .await
        .unwrap();
    }

    let mut stream = watch(&mut c, 0).await;
    let (revision, reason, names) = snapshot(&mut stream).await;
    assert_eq!(reason, v1::SnapshotReason::Initial as i32);
    assert_eq!(names, ["telavi-dev1", "telavi-dev2", "telavi-dev3"]);

    // Live changes arrive in order with increasing revisions.
    let d4 = create(&mut c, device("telavi-dev4", "127.5.0.4", "telavi-01"))
        .await
        .unwrap();
    let first = change(&mut stream).await;
    assert_eq!(first.kind, v1::ChangeKind::Created as i32);
    assert_eq!(first.device.as_ref().unwrap().name, "telavi-dev4");
    assert!(first.revision > revision);
    let mut last = first.revision;

    // The follower goes away; meanwhile the inventory changes a lot.
    drop(stream);
    let mut expected = Vec::new();
    for i in 5..=14 {
        create(
            &mut c,
            device(
                &format!("telavi-dev{i}"),
                &format!("127.5.0.{i}"),
                "telavi-01",
            ),
        )
        .await
        .unwrap();
        expected.push((v1::ChangeKind::Created as i32, format!("telavi-dev{i}")));
    }
    c.delete_device(v1::DeleteDeviceRequest { id: d4.id.clone() })
        .await
        .unwrap();
    expected.push((v1::ChangeKind::Deleted as i32, "telavi-dev4".to_string()));
    // Renaming the site changes every device that echoes it.
    let site_id = d4.site_id.clone();
    c.update_site(v1::UpdateSiteRequest {
        site: Some(v1::Site {
            id: site_id,
            name: "telavi-main".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["name".into()],
        }),
    })
    .await
    .unwrap();
    let mut renamed: Vec<String> = (1..=3)
        .chain(5..=14)
        .map(|i| format!("telavi-dev{i}"))
        .collect();
    renamed.sort();
    for name in renamed {
        expected.push((v1::ChangeKind::Updated as i32, name));
    }

    // Resume: exactly the missed changes, once each, in order, no snapshot.
    let mut stream = watch(&mut c, last).await;
    for (kind, name) in &expected {
        let change = change(&mut stream).await;
        assert_eq!(change.revision, last + 1, "revisions are consecutive");
        last = change.revision;
        let device = change.device.unwrap();
        assert_eq!((&change.kind, &device.name), (kind, name));
        if *kind == v1::ChangeKind::Updated as i32 {
            assert_eq!(device.site_name, "telavi-main");
        }
    }
    // And nothing more until the next change.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), stream.message()).await;
    assert!(quiet.is_err(), "an unexpected event: {quiet:?}");
    inv.stop().await;
}

async fn an_unknown_revision_gets_a_fresh_snapshot(backend: Backend) {
    let inv = TestInventory::start_on(backend).await;
    let mut c = inv.client.clone();
    site(&mut c, "zugdidi-01", "Zugdidi").await;
    create(&mut c, device("zugdidi-rtr", "127.6.0.1", "zugdidi-01"))
        .await
        .unwrap();
    let mut stream = watch(&mut c, 1_000_000).await;
    let (revision, reason, names) = snapshot(&mut stream).await;
    assert_eq!(reason, v1::SnapshotReason::RevisionTooOld as i32);
    assert_eq!(names, ["zugdidi-rtr"]);
    assert_eq!(revision, 1);
    inv.stop().await;
}
