//! A copy of the inventory (the planner's and alerting's), kept current by `WatchDevices`: a
//! snapshot, then changes; after a disconnect it resumes from the last
//! revision applied (or takes the fresh snapshot the inventory sends).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::client::PeerChannel;
use crate::proto::v1;
use crate::proto::v1::inventory_service_client::InventoryServiceClient;
use crate::proto::v1::watch_devices_response::Event;
use tokio_util::sync::CancellationToken;

/// Devices by id at one revision.
#[derive(Debug, Default)]
pub struct InventoryCopy {
    pub devices: HashMap<String, v1::Device>,
    pub revision: u64,
    /// A complete snapshot has been applied at least once.
    pub synced: bool,
}

pub type SharedCopy = Arc<RwLock<InventoryCopy>>;

/// Follows the inventory until `shutdown`; `on_change` sees every device
/// change after it is applied (the planner drops cached credentials there).
pub async fn follow(
    mut client: InventoryServiceClient<PeerChannel>,
    copy: SharedCopy,
    on_change: impl Fn(&v1::Device) + Send,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let from_revision = copy.read().map(|c| c.revision).unwrap_or_default();
        let request = v1::WatchDevicesRequest {
            from_revision,
            chunk_size: 0,
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = async {
                let mut stream = client.watch_devices(request).await?.into_inner();
                apply_stream(&mut stream, &copy, &on_change, &mut backoff).await
            } => outcome,
        };
        match outcome {
            Ok(()) => tracing::warn!("inventory ended the watch; reconnecting"),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "inventory watch failed; reconnecting")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn apply_stream(
    stream: &mut tonic::Streaming<v1::WatchDevicesResponse>,
    copy: &SharedCopy,
    on_change: &impl Fn(&v1::Device),
    backoff: &mut Duration,
) -> Result<(), tonic::Status> {
    // A snapshot is collected aside and swapped in whole at its end, so
    // planning never sees half an inventory.
    let mut staging: Option<HashMap<String, v1::Device>> = None;
    while let Some(message) = stream.message().await? {
        let Some(event) = message.event else { continue };
        match event {
            Event::SnapshotBegin(begin) => {
                tracing::info!(
                    revision = begin.revision,
                    devices = begin.device_count,
                    "inventory snapshot begins"
                );
                staging = Some(HashMap::with_capacity(begin.device_count as usize));
            }
            Event::SnapshotChunk(chunk) => {
                if let Some(staging) = staging.as_mut() {
                    staging.extend(chunk.devices.into_iter().map(|d| (d.id.clone(), d)));
                }
            }
            Event::SnapshotEnd(end) => {
                if let Some(devices) = staging.take() {
                    let count = devices.len();
                    if let Ok(mut copy) = copy.write() {
                        copy.devices = devices;
                        copy.revision = end.revision;
                        copy.synced = true;
                    }
                    metrics::gauge!("inventory_copy_devices").set(count as f64);
                    tracing::info!(
                        revision = end.revision,
                        devices = count,
                        "inventory snapshot applied"
                    );
                }
                *backoff = Duration::from_millis(100);
            }
            Event::Change(change) => {
                let Some(device) = change.device else {
                    continue;
                };
                if let Ok(mut copy) = copy.write() {
                    if change.kind == v1::ChangeKind::Deleted as i32 {
                        copy.devices.remove(&device.id);
                    } else {
                        copy.devices.insert(device.id.clone(), device.clone());
                    }
                    copy.revision = change.revision;
                    metrics::gauge!("inventory_copy_devices").set(copy.devices.len() as f64);
                }
                on_change(&device);
                *backoff = Duration::from_millis(100);
            }
            Event::Progress(_) => {}
        }
    }
    Ok(())
}
