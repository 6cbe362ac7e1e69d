//! Ingest: a `ResultBatch` becomes rows (durably, once), and only then is it
//! acked. Partitions for the rows' days are made on demand and ahead of
//! time; results older than the retention are not stored (their partition
//! is gone), results from the future are stamped with the time received.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use netward_shared::proto::v1;

use crate::snmp::book::{SnmpBook, SnmpStored};
use crate::store::{AlertingStore, BatchRows, ProbeRow, Stored};

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
    rollup_retention: Duration,
    /// Days known to have a partition (creation is idempotent; this saves
    /// a round trip per batch).
    known_days: Mutex<BTreeSet<NaiveDate>>,
    /// Where SNMP samples go; without it SNMP batches are rejected.
    snmp: Option<Arc<SnmpBook>>,
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn AlertingStore>,
        retention: Duration,
        rollup_retention: Duration,
    ) -> Self {
        Self {
            store,
            retention,
            rollup_retention,
            known_days: Mutex::new(BTreeSet::new()),
            snmp: None,
        }
    }

    /// Stores SNMP samples in `book` too.
    pub fn with_snmp(mut self, book: Arc<SnmpBook>) -> Self {
        self.snmp = Some(book);
        self
    }

    /// How long raw rows are kept.
    pub fn retention(&self) -> Duration {
        self.retention
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
    /// place); a storage failure fails the call, so none is acked and the
    /// sender replays them all.
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
            if batch.batch_uid.is_empty() || batch.batch_uid.len() > 128 {
                outcomes.push(Err("batch_uid must be 1-128 characters".into()));
                continue;
            }
            if !batch.samples.is_empty() {
                outcomes.push(self.ingest_samples(batch, oldest, &when).await?);
                continue;
            }
            let mut rows = Vec::with_capacity(batch.probes.len());
            let mut skipped = 0;
            for result in &batch.probes {
                let Ok(device_id) = uuid::Uuid::parse_str(&result.device_id) else {
                    skipped += 1;
                    continue;
                };
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
                metrics::counter!("alerting_results_skipped_total").increment(u64::from(skipped));
                tracing::warn!(batch_uid = %batch.batch_uid, skipped, "results not stored: bad device id or older than the retention");
            }
            pending.push((outcomes.len(), batch, rows, skipped));
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
        let stored = self.store.store_probe_batches(&group).await?;
        metrics::histogram!("alerting_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("alerting_write_batches").record(pending.len() as f64);
        for ((index, batch, mut rows, skipped), stored) in pending.into_iter().zip(stored) {
            if stored.duplicate {
                metrics::counter!("alerting_duplicate_batches_total").increment(1);
                rows.clear();
            } else {
                metrics::counter!("alerting_results_stored_total")
                    .increment(u64::from(stored.rows));
            }
            if let Some(sent_at) = batch
                .sent_at
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
            {
                let lag = (now - sent_at).to_std().unwrap_or_default();
                metrics::histogram!("alerting_ingest_lag_seconds").record(lag.as_secs_f64());
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
        let samples: Vec<_> = batch
            .samples
            .iter()
            .filter_map(|sample| {
                let id = uuid::Uuid::parse_str(&sample.device_id).ok();
                let at = when(sample.polled_at.as_ref());
                let kept = id.filter(|_| at >= oldest).map(|id| (id, at, sample));
                skipped += u32::from(kept.is_none());
                kept
            })
            .collect();
        if skipped > 0 {
            metrics::counter!("alerting_results_skipped_total").increment(u64::from(skipped));
            tracing::warn!(batch_uid = %batch.batch_uid, skipped, "samples not stored: bad device id or older than the retention");
        }
        let days: BTreeSet<NaiveDate> = samples.iter().map(|(_, at, _)| at.date_naive()).collect();
        self.ensure_days(&days).await?;
        let started = std::time::Instant::now();
        let snmp = book
            .store(&batch.batch_uid, &batch.executor_id, &samples)
            .await?;
        metrics::histogram!("alerting_snmp_write_seconds").record(started.elapsed().as_secs_f64());
        if snmp.duplicate {
            metrics::counter!("alerting_duplicate_batches_total").increment(1);
        } else {
            metrics::counter!("alerting_samples_stored_total").increment(u64::from(snmp.samples));
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

    /// Creates the partitions of yesterday to two days ahead, and drops raw
    /// partitions past the retention and rollups past theirs. Run at start
    /// and then hourly.
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<Vec<NaiveDate>, sqlx::Error> {
        let today = now.date_naive();
        let ahead: BTreeSet<NaiveDate> = (-1..=2)
            .filter_map(|d| today.checked_add_signed(TimeDelta::days(d)))
            .collect();
        self.ensure_days(&ahead).await?;
        let keep_days = i64::try_from(self.retention.as_secs().div_ceil(86_400)).unwrap_or(7);
        let before = today - TimeDelta::days(keep_days);
        let rollups_before =
            now - TimeDelta::from_std(self.rollup_retention).unwrap_or(TimeDelta::days(400));
        let dropped = self.store.expire(before, rollups_before).await?;
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
