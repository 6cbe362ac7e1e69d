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

mod device;

pub use device::{CopiedDevice, Interner, Labels};

/// Devices by id at one revision.
#[derive(Debug, Default)]
pub struct InventoryCopy {
    /// Shared, so a plan or a batch holds a device without copying it.
    pub devices: HashMap<String, Arc<CopiedDevice>>,
    /// The values the devices share, one allocation each.
    interner: Interner,
    /// Devices removed since the interner was last swept.
    removed: usize,
    pub revision: u64,
    /// A complete snapshot has been applied at least once.
    pub synced: bool,
}

impl InventoryCopy {
    /// A synced copy of `devices` at `revision` (tests and snapshots).
    pub fn of(devices: impl IntoIterator<Item = v1::Device>, revision: u64) -> Self {
        let mut copy = Self {
            revision,
            synced: true,
            ..Self::default()
        };
        for device in devices {
            copy.insert(device);
        }
        copy
    }

    /// Adds or replaces `device`.
    pub fn insert(&mut self, device: v1::Device) {
        let device = CopiedDevice::of(device, &mut self.interner);
        self.devices.insert(device.id.to_string(), Arc::new(device));
    }

    /// Removes the device with `id`; its interned values go at the next
    /// sweep.
    pub fn remove(&mut self, id: &str) -> Option<Arc<CopiedDevice>> {
        let removed = self.devices.remove(id);
        // Sweeping walks every distinct value: once per 1,024 removals.
        if removed.is_some() {
            self.removed += 1;
            if self.removed >= 1024 {
                self.interner.sweep();
                self.removed = 0;
            }
        }
        removed
    }
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
    let mut staging: Option<InventoryCopy> = None;
    while let Some(message) = stream.message().await? {
        let Some(event) = message.event else { continue };
        match event {
            Event::SnapshotBegin(begin) => {
                tracing::info!(
                    revision = begin.revision,
                    devices = begin.device_count,
                    "inventory snapshot begins"
                );
                staging = Some(InventoryCopy {
                    devices: HashMap::with_capacity(begin.device_count as usize),
                    ..InventoryCopy::default()
                });
            }
            Event::SnapshotChunk(chunk) => {
                if let Some(staging) = staging.as_mut() {
                    for device in chunk.devices {
                        staging.insert(device);
                    }
                }
            }
            Event::SnapshotEnd(end) => {
                if let Some(mut staged) = staging.take() {
                    let count = staged.devices.len();
                    staged.revision = end.revision;
                    staged.synced = true;
                    if let Ok(mut copy) = copy.write() {
                        *copy = staged;
                    }
                    metrics::gauge!("netward_inventory_copy_devices").set(count as f64);
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
                        copy.remove(&device.id);
                    } else {
                        copy.insert(device.clone());
                    }
                    copy.revision = change.revision;
                    metrics::gauge!("netward_inventory_copy_devices")
                        .set(copy.devices.len() as f64);
                }
                on_change(&device);
                *backoff = Duration::from_millis(100);
            }
            Event::Progress(_) => {}
        }
    }
    Ok(())
}
