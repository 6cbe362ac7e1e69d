//! Ingest: a `ResultBatch` becomes rows (durably, once), and only then is it
//! acked. Partitions for the rows' days are made on demand and ahead of
//! time; results older than the retention are not stored (their partition
//! is gone), results from the future are stamped with the time received.
//!
//! Poison never blocks a stream: a batch is checked at the edge
//! ([`check`]: field lengths, NUL bytes, ranges, size), results for devices
//! the inventory does not have are dropped and counted, and a batch
//! PostgreSQL still refuses for its data (see
//! `netward_shared::status::data_rejection`) is rejected alone while the
//! rest of its group is stored. Only storage trouble fails a group: then
//! nothing is acked and the sender replays it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use netward_shared::inventory_copy::SharedCopy;
use netward_shared::proto::v1;
use netward_shared::status::data_rejection;
use prost::Message as _;

use crate::rollup::GRACE;
use crate::snmp::book::{SnmpBook, SnmpStored};
use crate::store::packed::block_of;
use crate::store::{AlertingStore, BatchRows, Cutoffs, ProbeRow, Stored, Tier};

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch is invalid for good: reject it (the sender drops it).
    #[error("{0}")]
    Reject(String),
    /// Storage is away: do not ack; the sender keeps and replays the batch.
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

/// What ingesting a batch did.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub stored: Stored,
    /// Rows ready for state evaluation (empty for a duplicate).
    pub rows: Vec<ProbeRow>,
    /// Results not stored: an unparsable device id, or older than the retention.
    pub skipped: u32,
    /// What an SNMP batch changed (interfaces, devices), for the rules.
    pub snmp: SnmpStored,
}

pub struct Ingestor {
    store: Arc<dyn AlertingStore>,
    retention: Duration,
    /// How long the one-minute and the hourly rollup tiers are kept.
    rollup_retention: (Duration, Duration),
    /// Days known to have a partition (creation is idempotent; this saves
    /// a round trip per batch).
    known_days: Mutex<BTreeSet<NaiveDate>>,
    /// Where SNMP samples go; without it SNMP batches are rejected.
    snmp: Option<Arc<SnmpBook>>,
    /// The inventory copy: once synced, results for devices it does not
    /// have (deleted meanwhile, or never there) are not stored.
    copy: Option<SharedCopy>,
}

/// Longest text accepted in an identifier field (uids, ids, names).
pub const MAX_ID_LEN: usize = 128;
/// Longest `error_detail` accepted.
pub const MAX_ERROR_DETAIL_LEN: usize = 1024;
/// Largest encoded batch accepted.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Most results (probes or samples) in one batch.
pub const MAX_BATCH_RESULTS: usize = 100_000;

/// Checks a batch before it goes near SQL; `Err` names the field, the
/// value's problem and the limit. A sender's bug, so the batch is rejected
/// (the executor drops and counts it).
pub fn check(batch: &v1::ResultBatch) -> Result<(), String> {
    let text = |field: String, value: &str, max: usize| -> Result<(), String> {
        if value.contains('\0') {
            return Err(format!("{field}: contains a NUL byte"));
        }
        if value.len() > max {
            return Err(format!(
                "{field}: {} bytes, at most {max} allowed",
                value.len()
            ));
        }
        Ok(())
    };
    if batch.batch_uid.is_empty() {
        return Err("batch_uid: must be 1-128 characters".into());
    }
    text("batch_uid".into(), &batch.batch_uid, MAX_ID_LEN)?;
    text("executor_id".into(), &batch.executor_id, MAX_ID_LEN)?;
    text("batch_id".into(), &batch.batch_id, MAX_ID_LEN)?;
    let size = batch.encoded_len();
    if size > MAX_BATCH_BYTES {
        return Err(format!(
            "batch: {size} bytes encoded, at most {MAX_BATCH_BYTES} allowed"
        ));
    }
    let results = batch.probes.len() + batch.samples.len();
    if results > MAX_BATCH_RESULTS {
        return Err(format!(
            "batch: {results} results, at most {MAX_BATCH_RESULTS} allowed"
        ));
    }
    for (i, probe) in batch.probes.iter().enumerate() {
        text(
            format!("probes[{i}].device_id"),
            &probe.device_id,
            MAX_ID_LEN,
        )?;
        text(format!("probes[{i}].address"), &probe.address, MAX_ID_LEN)?;
        text(format!("probes[{i}].batch_id"), &probe.batch_id, MAX_ID_LEN)?;
        text(
            format!("probes[{i}].error_detail"),
            &probe.error_detail,
            MAX_ERROR_DETAIL_LEN,
        )?;
        let loss = probe.loss_percent;
        if !loss.is_finite() || !(0.0..=100.0).contains(&loss) {
            return Err(format!(
                "probes[{i}].loss_percent: {loss} is not within 0..=100"
            ));
        }
        if probe.received > probe.sent {
            return Err(format!(
                "probes[{i}].received: {} is more than sent ({})",
                probe.received, probe.sent
            ));
        }
        // Without an outcome the state machine cannot tell a reply from a
        // loss: executor.proto says a conforming executor never sends it.
        if probe.outcome == v1::ProbeOutcome::Unspecified as i32 {
            return Err(format!("probes[{i}].outcome: unspecified"));
        }
    }
    for (i, sample) in batch.samples.iter().enumerate() {
        text(
            format!("samples[{i}].device_id"),
            &sample.device_id,
            MAX_ID_LEN,
        )?;
        text(format!("samples[{i}].address"), &sample.address, MAX_ID_LEN)?;
        text(
            format!("samples[{i}].batch_id"),
            &sample.batch_id,
            MAX_ID_LEN,
        )?;
        text(format!("samples[{i}].profile"), &sample.profile, MAX_ID_LEN)?;
        text(
            format!("samples[{i}].sys_object_id"),
            &sample.sys_object_id,
            MAX_ID_LEN,
        )?;
        text(
            format!("samples[{i}].error_detail"),
            &sample.error_detail,
            MAX_ERROR_DETAIL_LEN,
        )?;
        if sample.outcome == v1::SnmpOutcome::Unspecified as i32 {
            return Err(format!("samples[{i}].outcome: unspecified"));
        }
    }
    Ok(())
}

/// Checks a batch against its stream's `IngestHello.kind`, every batch's
/// kind (alerting.proto): a batch of the other kind, or one without a kind
/// whose content is the other kind's, is refused naming the field.
pub fn check_stream_kind(stream: v1::ExecutorKind, batch: &v1::ResultBatch) -> Result<(), String> {
    let kind = match v1::ExecutorKind::try_from(batch.kind) {
        Ok(v1::ExecutorKind::Unspecified) => stream,
        Ok(kind) => kind,
        Err(_) => return Err(format!("kind: {} is not an ExecutorKind", batch.kind)),
    };
    let word = |kind: v1::ExecutorKind| kind.as_str_name().trim_start_matches("EXECUTOR_KIND_");
    if kind != stream {
        return Err(format!(
            "kind: a {} batch on a {} stream (IngestHello.kind)",
            word(kind),
            word(stream)
        ));
    }
    match kind {
        v1::ExecutorKind::Ping if !batch.samples.is_empty() => {
            Err("samples: a PING batch carries probes only".into())
        }
        v1::ExecutorKind::Snmp if !batch.probes.is_empty() => {
            Err("probes: an SNMP batch carries samples only".into())
        }
        _ => Ok(()),
    }
}

/// Checks the first message of an Ingest stream: alerting.proto requires
/// who sends and what kind of results; `Err` names the field.
pub fn check_hello(hello: &v1::IngestHello) -> Result<(), String> {
    if hello.executor_id.is_empty() {
        return Err("hello.executor_id: required".into());
    }
    if hello.executor_id.len() > MAX_ID_LEN || hello.executor_id.contains('\0') {
        return Err(format!(
            "hello.executor_id: must be 1-{MAX_ID_LEN} bytes without NUL bytes"
        ));
    }
    match v1::ExecutorKind::try_from(hello.kind) {
        Ok(v1::ExecutorKind::Ping | v1::ExecutorKind::Snmp) => Ok(()),
        Ok(v1::ExecutorKind::Unspecified) => Err("hello.kind: required (PING or SNMP)".into()),
        Err(_) => Err(format!("hello.kind: {} is not an ExecutorKind", hello.kind)),
    }
}

/// Strips NUL bytes from the text an SNMP agent chose (interface names and
/// aliases, string values): an agent may send them, PostgreSQL text cannot
/// hold them, and the rest of the poll is worth keeping. Returns how many
/// fields were changed.
pub fn strip_agent_nuls(batch: &mut v1::ResultBatch) -> usize {
    let mut stripped = 0;
    let mut strip = |text: &mut String| {
        if text.contains('\0') {
            text.retain(|c| c != '\0');
            stripped += 1;
        }
    };
    for sample in &mut batch.samples {
        for interface in &mut sample.interfaces {
            strip(&mut interface.if_name);
            strip(&mut interface.if_alias);
            strip(&mut interface.if_descr);
        }
        for value in &mut sample.values {
            strip(&mut value.oid);
            strip(&mut value.name);
            strip(&mut value.instance);
            if let Some(
                v1::scalar_value::Value::Text(text)
                | v1::scalar_value::Value::ObjectId(text)
                | v1::scalar_value::Value::IpAddress(text),
            ) = &mut value.value
            {
                strip(text);
            }
        }
    }
    stripped
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn AlertingStore>,
        retention: Duration,
        rollup_retention: (Duration, Duration),
    ) -> Self {
        Self {
            store,
            retention,
            rollup_retention,
            known_days: Mutex::new(BTreeSet::new()),
            snmp: None,
            copy: None,
        }
    }

    /// Stores only results of devices the inventory copy has (once synced).
    pub fn with_inventory(mut self, copy: SharedCopy) -> Self {
        self.copy = Some(copy);
        self
    }

    /// Whether results for `device_id` are stored: yes unless a synced
    /// inventory copy does not have it.
    fn known(&self, device_id: &str) -> bool {
        let Some(copy) = &self.copy else {
            return true;
        };
        let copy = copy.read().unwrap_or_else(|p| p.into_inner());
        !copy.synced || copy.devices.contains_key(device_id)
    }

    /// Counts and logs results dropped for a device the inventory does not have.
    fn unknown_devices(batch_uid: &str, dropped: u32) {
        if dropped > 0 {
            metrics::counter!("netward_alerting_results_rejected_total", "reason" => "unknown_device")
                .increment(u64::from(dropped));
            tracing::warn!(%batch_uid, dropped, "results not stored: device not in the inventory (deleted meanwhile?)");
        }
    }

    /// Stores SNMP samples in `book` too.
    pub fn with_snmp(mut self, book: Arc<SnmpBook>) -> Self {
        self.snmp = Some(book);
        self
    }

    /// The store it writes to (queries read it too).
    pub fn store(&self) -> &Arc<dyn AlertingStore> {
        &self.store
    }

    /// Stores one batch once; see [`Ingestor::ingest_all`].
    pub async fn ingest(
        &self,
        batch: &v1::ResultBatch,
        now: DateTime<Utc>,
    ) -> Result<Ingested, IngestError> {
        let mut outcomes = self.ingest_all(std::slice::from_ref(batch), now).await?;
        match outcomes.pop() {
            Some(Ok(ingested)) => Ok(ingested),
            Some(Err(reason)) => Err(IngestError::Reject(reason)),
            None => Err(IngestError::Reject("no batch".into())),
        }
    }

    /// Stores batches received together on one stream, each at most once:
    /// the probe results of all of them in one transaction (one commit
    /// for the lot is what keeps a busy stream fast), SNMP batches each in
    /// its own. An invalid batch is rejected alone (`Err(reason)` in its
    /// place): by [`check`], or by PostgreSQL for its data, in which case
    /// the group is written again batch by batch so the others are stored.
    /// Storage trouble fails the call, so none is acked and the sender
    /// replays them all.
    pub async fn ingest_all(
        &self,
        batches: &[v1::ResultBatch],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Ingested, String>>, sqlx::Error> {
        let oldest = now - TimeDelta::from_std(self.retention).unwrap_or(TimeDelta::days(7));
        // Timestamps from the future are the sender's clock: stamp them now.
        let when = |t: Option<&prost_types::Timestamp>| {
            t.and_then(crate::from_timestamp)
                .filter(|t| *t <= now + TimeDelta::minutes(5))
                .unwrap_or(now)
        };
        let mut outcomes: Vec<Result<Ingested, String>> = Vec::with_capacity(batches.len());
        // Probe batches wait for the group write: (outcome index, batch, rows, skipped).
        let mut pending: Vec<(usize, &v1::ResultBatch, Vec<ProbeRow>, u32)> = Vec::new();
        for batch in batches {
            if let Err(reason) = check(batch) {
                metrics::counter!("netward_alerting_results_rejected_total", "reason" => "invalid")
                    .increment((batch.probes.len() + batch.samples.len()) as u64);
                outcomes.push(Err(reason));
                continue;
            }
            if !batch.samples.is_empty() {
                outcomes.push(self.ingest_samples(batch, oldest, &when).await?);
                continue;
            }
            let mut rows = Vec::with_capacity(batch.probes.len());
            let mut skipped = 0;
            let mut unknown = 0;
            for result in &batch.probes {
                let Ok(device_id) = uuid::Uuid::parse_str(&result.device_id) else {
                    skipped += 1;
                    continue;
                };
                if !self.known(&result.device_id) {
                    unknown += 1;
                    continue;
                }
                let probed_at = when(result.probed_at.as_ref());
                if probed_at < oldest {
                    skipped += 1;
                    continue;
                }
                rows.push(ProbeRow {
                    device_id,
                    probed_at,
                    result: result.clone(),
                });
            }
            if skipped > 0 {
                metrics::counter!("netward_alerting_results_skipped_total")
                    .increment(u64::from(skipped));
                tracing::warn!(batch_uid = %batch.batch_uid, skipped, "results not stored: bad device id or older than the retention");
            }
            Self::unknown_devices(&batch.batch_uid, unknown);
            pending.push((outcomes.len(), batch, rows, skipped + unknown));
            outcomes.push(Err(String::new()));
        }
        if pending.is_empty() {
            return Ok(outcomes);
        }
        let days: BTreeSet<NaiveDate> = pending
            .iter()
            .flat_map(|(_, _, rows, _)| rows.iter().map(|r| r.probed_at.date_naive()))
            .collect();
        self.ensure_days(&days).await?;
        let started = std::time::Instant::now();
        let group: Vec<BatchRows<'_>> = pending
            .iter()
            .map(|(_, batch, rows, _)| BatchRows {
                batch_uid: &batch.batch_uid,
                executor_id: &batch.executor_id,
                rows,
            })
            .collect();
        let stored: Vec<Result<Stored, String>> = match self.store.store_probe_batches(&group).await
        {
            Ok(stored) => stored.into_iter().map(Ok).collect(),
            // Refused for its data: one batch of the group is poison.
            // Alone, each is stored or refused on its own (the group's
            // transaction rolled back, so nothing is stored twice).
            Err(error) if data_rejection(&error).is_some() => {
                let mut each = Vec::with_capacity(group.len());
                for one in &group {
                    let alone = self.store.store_probe_batches(std::slice::from_ref(one));
                    each.push(match alone.await {
                        Ok(mut stored) => Ok(stored.pop().unwrap_or_default()),
                        Err(error) => match data_rejection(&error) {
                            Some(reason) => Err(format!("refused by storage: {reason}")),
                            None => return Err(error),
                        },
                    });
                }
                each
            }
            Err(error) => return Err(error),
        };
        metrics::histogram!("netward_alerting_write_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("netward_alerting_write_batches").record(pending.len() as f64);
        self.note_late(&pending, &stored, now).await;
        for ((index, batch, mut rows, skipped), stored) in pending.into_iter().zip(stored) {
            let stored = match stored {
                Ok(stored) => stored,
                Err(reason) => {
                    outcomes[index] = Err(reason);
                    continue;
                }
            };
            if stored.duplicate {
                metrics::counter!("netward_alerting_duplicate_batches_total").increment(1);
                rows.clear();
            } else {
                metrics::counter!("netward_alerting_results_stored_total")
                    .increment(u64::from(stored.rows));
            }
            if let Some(sent_at) = batch
                .sent_at
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
            {
                let lag = (now - sent_at).to_std().unwrap_or_default();
                metrics::histogram!("netward_alerting_ingest_lag_seconds")
                    .record(lag.as_secs_f64());
            }
            outcomes[index] = Ok(Ingested {
                stored,
                rows,
                skipped,
                snmp: SnmpStored::default(),
            });
        }
        Ok(outcomes)
    }

    /// Notes stored results whose block the rollup may already have read
    /// (see `rollup.rs`): only results of blocks that closed more than the
    /// grace ago are checked, against the mark read after the commit. A
    /// failure is logged and counted: the results are stored, only their
    /// one-minute rollup would miss them.
    async fn note_late(
        &self,
        pending: &[(usize, &v1::ResultBatch, Vec<ProbeRow>, u32)],
        stored: &[Result<Stored, String>],
        now: DateTime<Utc>,
    ) {
        let due = |at: DateTime<Utc>| block_of(at) + Tier::Minute.row() + GRACE <= now;
        let candidates: BTreeSet<(DateTime<Utc>, uuid::Uuid)> = pending
            .iter()
            .zip(stored)
            .filter(|(_, s)| s.as_ref().is_ok_and(|s| !s.duplicate))
            .flat_map(|((_, _, rows, _), _)| rows.iter())
            .filter(|row| due(row.probed_at))
            .map(|row| (block_of(row.probed_at), row.device_id))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let noted = async {
            let Some(mark) = self.store.rollup_mark(Tier::Minute).await? else {
                return Ok(0);
            };
            let late: Vec<_> = candidates.into_iter().filter(|(b, _)| *b < mark).collect();
            if !late.is_empty() {
                self.store.mark_late(&late).await?;
            }
            Ok::<_, sqlx::Error>(late.len())
        };
        match noted.await {
            Ok(0) => {}
            Ok(late) => {
                metrics::counter!("netward_alerting_results_late_total").increment(late as u64);
                tracing::info!(
                    late,
                    "results stored into blocks already rolled up: rolling them again"
                );
            }
            Err(error) => {
                metrics::counter!("netward_alerting_late_unnoted_total").increment(1);
                tracing::warn!(%error, "could not note late results: their one-minute rollups miss them");
            }
        }
    }

    /// One SNMP batch, in its own transaction.
    async fn ingest_samples(
        &self,
        batch: &v1::ResultBatch,
        oldest: DateTime<Utc>,
        when: &impl Fn(Option<&prost_types::Timestamp>) -> DateTime<Utc>,
    ) -> Result<Result<Ingested, String>, sqlx::Error> {
        if !batch.probes.is_empty() {
            return Ok(Err("a batch carries probes or samples, not both".into()));
        }
        let Some(book) = &self.snmp else {
            return Ok(Err(
                "SNMP samples are not stored by this alerting instance".into()
            ));
        };
        let mut skipped = 0;
        let mut unknown = 0;
        let samples: Vec<_> = batch
            .samples
            .iter()
            .filter(|sample| {
                let known = self.known(&sample.device_id);
                unknown += u32::from(!known);
                known
            })
            .filter_map(|sample| {
                let id = uuid::Uuid::parse_str(&sample.device_id).ok();
                let at = when(sample.polled_at.as_ref());
                let kept = id.filter(|_| at >= oldest).map(|id| (id, at, sample));
                skipped += u32::from(kept.is_none());
                kept
            })
            .collect();
        if skipped > 0 {
            metrics::counter!("netward_alerting_results_skipped_total")
                .increment(u64::from(skipped));
            tracing::warn!(batch_uid = %batch.batch_uid, skipped, "samples not stored: bad device id or older than the retention");
        }
        Self::unknown_devices(&batch.batch_uid, unknown);
        let skipped = skipped + unknown;
        let days: BTreeSet<NaiveDate> = samples.iter().map(|(_, at, _)| at.date_naive()).collect();
        self.ensure_days(&days).await?;
        let started = std::time::Instant::now();
        let snmp = match book
            .store(&batch.batch_uid, &batch.executor_id, &samples)
            .await
        {
            Ok(snmp) => snmp,
            Err(error) => {
                return match data_rejection(&error) {
                    Some(reason) => Ok(Err(format!("refused by storage: {reason}"))),
                    None => Err(error),
                };
            }
        };
        metrics::histogram!("netward_alerting_snmp_write_seconds")
            .record(started.elapsed().as_secs_f64());
        if snmp.duplicate {
            metrics::counter!("netward_alerting_duplicate_batches_total").increment(1);
        } else {
            metrics::counter!("netward_alerting_samples_stored_total")
                .increment(u64::from(snmp.samples));
        }
        Ok(Ok(Ingested {
            stored: Stored {
                rows: snmp.samples,
                duplicate: snmp.duplicate,
            },
            rows: Vec::new(),
            skipped,
            snmp,
        }))
    }

    async fn ensure_days(&self, days: &BTreeSet<NaiveDate>) -> Result<(), sqlx::Error> {
        let missing: Vec<NaiveDate> = {
            let known = self.known_days.lock().unwrap_or_else(|p| p.into_inner());
            days.iter()
                .filter(|d| !known.contains(d))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.store.ensure_partitions(&missing).await?;
        self.known_days
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(missing);
        Ok(())
    }

    /// Creates the partitions of yesterday to two days ahead, and drops
    /// what lies past each retention: raw partitions (probe results and
    /// SNMP polls), one-minute and hourly rollup partitions. Nothing the
    /// tier above has not rolled up yet is dropped (rollups that lag hold
    /// their source back, with a warning).
    /// Run at start and then hourly.
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<Vec<NaiveDate>, sqlx::Error> {
        let today = now.date_naive();
        let ahead: BTreeSet<NaiveDate> = (-1..=2)
            .filter_map(|d| today.checked_add_signed(TimeDelta::days(d)))
            .collect();
        self.ensure_days(&ahead).await?;
        let days = |retention: Duration, default: i64| {
            let keep = i64::try_from(retention.as_secs().div_ceil(86_400)).unwrap_or(default);
            today - TimeDelta::days(keep)
        };
        let rolled = |mark: Option<DateTime<Utc>>| mark.map_or(NaiveDate::MIN, |m| m.date_naive());
        let hold = |wanted: NaiveDate, mark: Option<DateTime<Utc>>, what: &str| {
            let allowed = wanted.min(rolled(mark));
            // No mark: the rollup has not run yet (a fresh store), nothing
            // to say. A mark behind the retention is a rollup that lags.
            if allowed < wanted && mark.is_some() {
                tracing::warn!(%wanted, %allowed, what, "keeping data past its retention: the rollup above has not reached it yet");
            }
            allowed
        };
        let minute_mark = self.store.rollup_mark(Tier::Minute).await?;
        let hour_mark = self.store.rollup_mark(Tier::Hour).await?;
        let mut raw_before = hold(days(self.retention, 7), minute_mark, "raw results");
        // SNMP polls share the raw days: held back by the hourly interface
        // tier too.
        if let Some(book) = &self.snmp {
            let interface_mark = book.rolled_until().await?;
            raw_before = raw_before.min(hold(
                days(self.retention, 7),
                interface_mark,
                "raw SNMP polls",
            ));
        }
        let cutoffs = Cutoffs {
            raw_before,
            // Keys a day longer than the rows: the day covers the whole-day
            // rounding and the few minutes a result may be stamped ahead
            // of its arrival.
            keys_before: raw_before
                .pred_opt()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map_or(now, |t| t.and_utc()),
            minute_before: hold(
                days(self.rollup_retention.0, 30),
                hour_mark,
                "one-minute rollups",
            ),
            hour_before: days(self.rollup_retention.1, 400),
        };
        let dropped = self.store.expire(cutoffs).await?;
        if !dropped.is_empty() {
            let mut known = self.known_days.lock().unwrap_or_else(|p| p.into_inner());
            for day in &dropped {
                known.remove(day);
            }
            tracing::info!(days = ?dropped, "dropped raw result partitions past the retention");
        }
        Ok(dropped)
    }
}
