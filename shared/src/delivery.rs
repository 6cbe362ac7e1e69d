//! At-least-once delivery of result batches to `AlertingService.Ingest`,
//! shared by the ping executor and the SNMP poller. Every batch is kept
//! until alerting acks it (which it does only after committing it); after a
//! reconnect the unacked ones are sent again, with their original
//! `batch_uid`, so alerting stores each exactly once. The buffer is bounded:
//! when alerting is away for too long, the oldest batches are dropped and
//! counted — never silently, and never without bound.
//!
//! Memory is bounded by the buffer: a batch is put on the ingest stream only
//! while fewer than `IN_FLIGHT_WINDOW` sent batches wait for their ack, and
//! the stream's channel holds no more than that window. A slow but
//! connected alerting therefore holds back sending, the buffer fills, and
//! its oldest batches are dropped (counted) instead of piling up in the
//! stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, ClientOptions, connect};
use crate::proto::v1;
use crate::proto::v1::alerting_service_client::AlertingServiceClient;

/// Batches sent on the ingest stream and not acked yet, at most (fewer when
/// the buffer is smaller). Alerting commits what arrives together in one
/// transaction, so this is also how much it can group.
pub const IN_FLIGHT_WINDOW: usize = 64;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub executor_id: String,
    pub kind: v1::ExecutorKind,
    pub alerting_url: String,
    /// Token and TLS settings for dialing alerting.
    pub client: ClientOptions,
    /// Unacked batches kept at most; past it the oldest are dropped.
    pub buffer_batches: usize,
}

/// What the sender has done, for status RPCs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Batches waiting for an ack now.
    pub buffered: usize,
    pub acked: u64,
    /// Of the acked, those alerting had already stored (replays).
    pub duplicates: u64,
    pub rejected: u64,
    /// Batches dropped because the buffer was full.
    pub dropped: u64,
    /// Sends of a batch after its first.
    pub replayed: u64,
    /// Batches on the current ingest stream waiting for their ack (at most
    /// the window), some possibly dropped from the buffer meanwhile.
    pub in_flight: usize,
    pub connected: bool,
    pub reconnects: u64,
}

/// What a sender still holds unacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unacked {
    pub batches: usize,
    /// Probe results and SNMP samples in those batches.
    pub results: usize,
}

struct Entry {
    uid: String,
    batch: v1::ResultBatch,
    /// The stream generation it was last sent on.
    sent_on: Option<u64>,
}

#[derive(Default)]
struct Buffer {
    entries: VecDeque<Entry>,
    stats: DeliveryStats,
    generation: u64,
}

struct Shared {
    config: DeliveryConfig,
    buffer: Mutex<Buffer>,
    /// Wakes the stream loop when a batch is queued.
    queued: Notify,
    /// Wakes `drain` when the buffer empties.
    emptied: Notify,
    /// Wakes the shutdown drain when the ingest stream is lost: from then on
    /// nobody can ack, so waiting longer would only delay the exit.
    disconnected: Notify,
}

/// The sending half: cheap to clone, `send` never blocks.
#[derive(Clone)]
pub struct ResultSender {
    shared: Arc<Shared>,
}

impl ResultSender {
    /// Starts delivering; runs until `stop` is cancelled. Cancel it only after
    /// `drain`, or unacked batches are lost with the process.
    pub fn start(config: DeliveryConfig, stop: CancellationToken) -> Result<Self, ClientError> {
        let client = AlertingServiceClient::new(connect(&config.alerting_url, &config.client)?)
            .max_encoding_message_size(64 * 1024 * 1024);
        let shared = Arc::new(Shared {
            config,
            buffer: Mutex::new(Buffer::default()),
            queued: Notify::new(),
            emptied: Notify::new(),
            disconnected: Notify::new(),
        });
        tokio::spawn(deliver(shared.clone(), client, stop));
        Ok(Self { shared })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.shared.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a batch (a `batch_uid` is chosen if it has none).
    pub fn send(&self, mut batch: v1::ResultBatch) {
        if batch.batch_uid.is_empty() {
            batch.batch_uid = uuid::Uuid::new_v4().to_string();
        }
        if batch.executor_id.is_empty() {
            batch.executor_id = self.shared.config.executor_id.clone();
        }
        batch.kind = self.shared.config.kind as i32;
        if batch.sent_at.is_none() {
            batch.sent_at = Some(now_timestamp());
        }
        {
            let mut buffer = self.lock();
            buffer.entries.push_back(Entry {
                uid: batch.batch_uid.clone(),
                batch,
                sent_on: None,
            });
            while buffer.entries.len() > self.shared.config.buffer_batches.max(1) {
                if let Some(oldest) = buffer.entries.pop_front() {
                    buffer.stats.dropped += 1;
                    metrics::counter!("netward_delivery_dropped_batches_total").increment(1);
                    tracing::warn!(batch_uid = %oldest.uid, "delivery buffer full: oldest result batch dropped");
                }
            }
            buffer.stats.buffered = buffer.entries.len();
            metrics::gauge!("netward_delivery_buffered_batches").set(buffer.entries.len() as f64);
        }
        self.shared.queued.notify_one();
    }

    pub fn stats(&self) -> DeliveryStats {
        self.lock().stats.clone()
    }

    /// Batches and results not acked yet.
    pub fn unacked(&self) -> Unacked {
        let buffer = self.lock();
        Unacked {
            batches: buffer.entries.len(),
            results: buffer
                .entries
                .iter()
                .map(|e| e.batch.probes.len() + e.batch.samples.len())
                .sum(),
        }
    }

    /// The wait for acks at shutdown: while an ingest stream is connected
    /// and alerting acks, waits until the buffer is empty, at most `timeout`.
    /// Gives up at once when no stream is connected, or as soon as it is
    /// lost: a replay needs a reconnect, which is no shutdown's business.
    /// Returns what is left unacked (lost with the process).
    pub async fn drain_while_connected(&self, timeout: Duration) -> Unacked {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the checks, so no wake-up falls between.
            let emptied = self.shared.emptied.notified();
            let disconnected = self.shared.disconnected.notified();
            {
                let buffer = self.lock();
                if buffer.entries.is_empty() || !buffer.stats.connected {
                    break;
                }
            }
            tokio::select! {
                () = emptied => {}
                () = disconnected => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.unacked()
    }

    /// Waits until every queued batch is acked, at most `timeout`, through
    /// reconnects; true when nothing is left.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let emptied = self.shared.emptied.notified();
            if self.lock().entries.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, emptied).await.is_err() {
                return self.lock().entries.is_empty();
            }
        }
    }
}

async fn deliver(
    shared: Arc<Shared>,
    mut client: AlertingServiceClient<crate::client::PeerChannel>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let generation = {
            let mut buffer = lock(&shared);
            buffer.generation += 1;
            buffer.generation
        };
        let window = shared.config.buffer_batches.clamp(1, IN_FLIGHT_WINDOW);
        // The hello and a full window fit: sending never waits on the channel.
        let (out_tx, out_rx) = mpsc::channel(window + 1);
        let hello = v1::IngestRequest {
            msg: Some(v1::ingest_request::Msg::Hello(v1::IngestHello {
                executor_id: shared.config.executor_id.clone(),
                kind: shared.config.kind as i32,
                version: env!("CARGO_PKG_VERSION").to_string(),
            })),
        };
        let _ = out_tx.try_send(hello);
        let opened = tokio::select! {
            () = stop.cancelled() => return,
            opened = client.ingest(ReceiverStream::new(out_rx)) => opened,
        };
        let mut inbound = match opened {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "cannot open the ingest stream; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        {
            let mut buffer = lock(&shared);
            buffer.stats.connected = true;
            buffer.stats.reconnects += u64::from(generation > 1);
        }
        metrics::gauge!("netward_delivery_connected").set(1.0);
        backoff = Duration::from_millis(100);
        let mut sequence = 0u64;
        let mut in_flight: HashMap<u64, String> = HashMap::new();

        let outcome: Result<(), String> = loop {
            // Send what this stream has not carried yet, oldest first, while
            // the window has room: new batches, and after a reconnect every
            // unacked one (a replay).
            {
                let mut buffer = lock(&shared);
                let mut replayed = 0;
                for entry in buffer
                    .entries
                    .iter_mut()
                    .filter(|e| e.sent_on != Some(generation))
                {
                    if in_flight.len() >= window {
                        break;
                    }
                    sequence += 1;
                    if entry.sent_on.is_some() {
                        replayed += 1;
                    }
                    entry.sent_on = Some(generation);
                    entry.batch.sequence = sequence;
                    entry.batch.attempt += 1;
                    in_flight.insert(sequence, entry.uid.clone());
                    let request = v1::IngestRequest {
                        msg: Some(v1::ingest_request::Msg::Batch(entry.batch.clone())),
                    };
                    if out_tx.try_send(request).is_err() {
                        // Closed (the stream is ending; the loop below sees
                        // it) — never full: the window is the capacity.
                        break;
                    }
                }
                buffer.stats.replayed += replayed;
                buffer.stats.in_flight = in_flight.len();
                metrics::counter!("netward_delivery_replayed_batches_total").increment(replayed);
            }
            let queued = shared.queued.notified();
            tokio::select! {
                () = stop.cancelled() => return,
                () = queued => {}
                message = inbound.message() => match message {
                    Ok(Some(response)) => settle(&shared, &mut in_flight, response),
                    Ok(None) => break Err("alerting ended the ingest stream".into()),
                    Err(status) => break Err(format!("{:?}: {}", status.code(), status.message())),
                }
            }
        };
        if let Err(reason) = outcome {
            tracing::warn!(%reason, "ingest stream lost; unacked batches will be replayed");
        }
        {
            let mut buffer = lock(&shared);
            buffer.stats.connected = false;
            buffer.stats.in_flight = 0;
        }
        shared.disconnected.notify_waiters();
        metrics::gauge!("netward_delivery_connected").set(0.0);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// An ack or reject frees its batch from the buffer.
fn settle(shared: &Shared, in_flight: &mut HashMap<u64, String>, response: v1::IngestResponse) {
    let (sequence, acked, duplicate) = match response.msg {
        Some(v1::ingest_response::Msg::Ack(ack)) => (ack.sequence, true, ack.duplicate),
        Some(v1::ingest_response::Msg::Reject(reject)) => {
            tracing::warn!(sequence = reject.sequence, reason = %reject.reason, "alerting rejected a result batch");
            (reject.sequence, false, false)
        }
        None => return,
    };
    let Some(uid) = in_flight.remove(&sequence) else {
        return;
    };
    let mut buffer = shared.buffer.lock().unwrap_or_else(|p| p.into_inner());
    buffer.stats.in_flight = in_flight.len();
    // Usually the oldest; a dropped batch is simply not found.
    if let Some(position) = buffer.entries.iter().position(|e| e.uid == uid) {
        buffer.entries.remove(position);
    }
    if acked {
        buffer.stats.acked += 1;
        buffer.stats.duplicates += u64::from(duplicate);
        metrics::counter!("netward_delivery_acked_batches_total").increment(1);
    } else {
        buffer.stats.rejected += 1;
        metrics::counter!("netward_delivery_rejected_batches_total").increment(1);
    }
    buffer.stats.buffered = buffer.entries.len();
    metrics::gauge!("netward_delivery_buffered_batches").set(buffer.entries.len() as f64);
    if buffer.entries.is_empty() {
        shared.emptied.notify_waiters();
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Buffer> {
    shared.buffer.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_timestamp() -> prost_types::Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}
