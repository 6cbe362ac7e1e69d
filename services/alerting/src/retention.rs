//! Retention of the tables that grow row by row: state changes, resolved
//! alerts, settled notifications and ended silences. The hourly maintenance
//! prunes each in small batches (the raw tables go by partition, and
//! idempotency keys and rollups with them, in `Ingestor::maintain`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::{AlertingStore, PRUNE_BATCH, Prunable, Pruned};

/// How long each row-pruned table keeps its rows (`[alerting]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retentions {
    /// `state_change_retention`: transitions (each device keeps its last one
    /// before the cutoff, so the state at any later instant is known).
    pub state_changes: Duration,
    /// `alert_retention`: resolved alerts, and ended silences with them (a
    /// kept alert can still say why it was muted).
    pub alerts: Duration,
    /// `notification_retention`: delivered or given-up notifications of
    /// resolved alerts.
    pub notifications: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("[alerting] {field} = {value:?}: must be at least a day")]
pub struct InvalidRetention {
    pub field: &'static str,
    pub value: Duration,
}

impl Retentions {
    /// Every retention is at least a day: a shorter one would prune what is
    /// still being written about (an alert resolved a minute ago, a
    /// notification just sent).
    pub fn validate(&self) -> Result<(), InvalidRetention> {
        for (field, value) in [
            ("state_change_retention", self.state_changes),
            ("alert_retention", self.alerts),
            ("notification_retention", self.notifications),
        ] {
            if value < Duration::from_secs(86_400) {
                return Err(InvalidRetention { field, value });
            }
        }
        Ok(())
    }

    /// The tables and their cutoffs at `now`.
    fn cutoffs(&self, now: DateTime<Utc>) -> [(Prunable, DateTime<Utc>); 4] {
        let before = |keep: Duration| now - TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX);
        [
            (Prunable::StateChanges, before(self.state_changes)),
            (Prunable::Alerts, before(self.alerts)),
            (Prunable::Notifications, before(self.notifications)),
            (Prunable::Silences, before(self.alerts)),
        ]
    }
}

/// Prunes the row-by-row tables; one call is one pass over all of them.
pub struct Pruner {
    store: Arc<dyn AlertingStore>,
    retentions: Retentions,
    batch: u32,
}

impl Pruner {
    pub fn new(store: Arc<dyn AlertingStore>, retentions: Retentions) -> Self {
        Self {
            store,
            retentions,
            batch: PRUNE_BATCH,
        }
    }

    /// Deletes `batch` rows per statement instead of [`PRUNE_BATCH`].
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Deletes what is past its retention at `now`, table by table, and
    /// says what went. Run at start and then hourly; a failure leaves the
    /// rest for the next pass.
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<Vec<(Prunable, Pruned)>, sqlx::Error> {
        let mut done = Vec::new();
        for (what, cutoff) in self.retentions.cutoffs(now) {
            let pruned = self.store.prune(what, cutoff, self.batch).await?;
            if pruned.rows > 0 {
                tracing::info!(
                    table = what.table(),
                    rows = pruned.rows,
                    batches = pruned.batches,
                    %cutoff,
                    "pruned rows past the retention"
                );
            }
            done.push((what, pruned));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * 86_400)
    }

    #[test]
    fn retentions_shorter_than_a_day_are_refused() {
        let ok = Retentions {
            state_changes: days(400),
            alerts: days(400),
            notifications: days(30),
        };
        assert!(ok.validate().is_ok());
        let short = Retentions {
            notifications: Duration::from_secs(3600),
            ..ok
        };
        let error = short.validate().unwrap_err();
        assert_eq!(error.field, "notification_retention");
        assert!(error.to_string().contains("notification_retention"));
    }

    #[test]
    fn silences_go_with_alerts() {
        let now = Utc::now();
        let cutoffs = Retentions {
            state_changes: days(400),
            alerts: days(100),
            notifications: days(30),
        }
        .cutoffs(now);
        let of = |what| cutoffs.iter().find(|(w, _)| *w == what).unwrap().1;
        assert_eq!(of(Prunable::StateChanges), now - TimeDelta::days(400));
        assert_eq!(of(Prunable::Silences), of(Prunable::Alerts));
        assert_eq!(of(Prunable::Notifications), now - TimeDelta::days(30));
    }
}
