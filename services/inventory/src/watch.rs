//! `WatchDevices`: a snapshot, then every change in revision order. A
//! follower that resumes from the last revision it applied sees each change
//! exactly once; one that fell behind the change log's retention gets a
//! fresh snapshot (REVISION_TOO_OLD) instead of a silent gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use netward_shared::proto::v1;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, from_store};
use crate::service::Inventory;

use v1::watch_devices_response::Event;

/// Changes fetched per read of the log.
const CHANGE_BATCH: u32 = 1000;
/// A watcher also polls the log, for changes other inventory instances make.
const POLL: Duration = Duration::from_secs(1);
/// An idle stream sends its revision this often, so a follower can tell a
/// quiet stream from a dead one.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

impl Inventory {
    /// Starts a watch; events arrive on the returned channel until the
    /// receiver is dropped, the token is cancelled, or an error (sent last).
    pub fn watch(
        self: &Arc<Self>,
        from_revision: u64,
        chunk_size: u32,
        shutdown: CancellationToken,
    ) -> mpsc::Receiver<Result<v1::WatchDevicesResponse>> {
        let (tx, rx) = mpsc::channel(4);
        let inventory = self.clone();
        tokio::spawn(async move {
            metrics::gauge!("netward_inventory_watchers").increment(1.0);
            if let Err(error) = inventory
                .run_watch(from_revision, chunk_size, &tx, shutdown)
                .await
            {
                tracing::warn!(%error, "watch ended with an error");
                let _ = tx.send(Err(error)).await;
            }
            metrics::gauge!("netward_inventory_watchers").decrement(1.0);
        });
        rx
    }

    async fn run_watch(
        &self,
        from_revision: u64,
        chunk_size: u32,
        tx: &mpsc::Sender<Result<v1::WatchDevicesResponse>>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let chunk = match chunk_size {
            0 => 1000,
            n => n.min(10_000) as usize,
        };
        let mut revision_rx = self.revision_tx.subscribe();
        let mut last = from_revision;
        let mut snapshot = if from_revision == 0 {
            Some(v1::SnapshotReason::Initial)
        } else {
            let log = self
                .store
                .changes_since(0, 0)
                .await
                .map_err(|e| from_store(e, ""))?;
            (from_revision < log.pruned_through || from_revision > log.current)
                .then_some(v1::SnapshotReason::RevisionTooOld)
        };
        let mut last_sent = Instant::now();
        let send = |event: Event| async move {
            tx.send(Ok(v1::WatchDevicesResponse { event: Some(event) }))
                .await
                .is_ok()
        };

        loop {
            if let Some(reason) = snapshot.take() {
                let log = self
                    .store
                    .changes_since(0, 0)
                    .await
                    .map_err(|e| from_store(e, ""))?;
                let (revision, devices) =
                    self.store.snapshot().await.map_err(|e| from_store(e, ""))?;
                let begin = Event::SnapshotBegin(v1::SnapshotBegin {
                    revision,
                    reason: reason as i32,
                    device_count: devices.len() as u64,
                    oldest_revision: log.pruned_through,
                });
                if !send(begin).await {
                    return Ok(());
                }
                // Moved out chunk by chunk, not copied: the snapshot is the
                // one copy of the fleet this watcher costs.
                let mut devices = devices.into_iter();
                loop {
                    let part: Vec<v1::Device> = devices.by_ref().take(chunk).collect();
                    if part.is_empty() {
                        break;
                    }
                    if !send(Event::SnapshotChunk(v1::DeviceChunk { devices: part })).await {
                        return Ok(());
                    }
                }
                if !send(Event::SnapshotEnd(v1::SnapshotEnd { revision })).await {
                    return Ok(());
                }
                last = revision;
                last_sent = Instant::now();
            }

            let log = self
                .store
                .changes_since(last, CHANGE_BATCH)
                .await
                .map_err(|e| from_store(e, ""))?;
            if last < log.pruned_through {
                // Fell behind the retention while sending: start over.
                snapshot = Some(v1::SnapshotReason::RevisionTooOld);
                continue;
            }
            let full = log.changes.len() == CHANGE_BATCH as usize;
            for change in log.changes {
                last = change.revision;
                if !send(Event::Change(change)).await {
                    return Ok(());
                }
                last_sent = Instant::now();
            }
            if full {
                continue;
            }
            if last_sent.elapsed() >= PROGRESS_EVERY {
                if !send(Event::Progress(v1::WatchProgress {
                    revision: last.max(log.current),
                }))
                .await
                {
                    return Ok(());
                }
                last_sent = Instant::now();
            }
            tokio::select! {
                _ = revision_rx.changed() => {}
                () = tokio::time::sleep(POLL) => {}
                () = tx.closed() => return Ok(()),
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}
