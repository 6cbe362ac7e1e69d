//! Evaluation of what ingest stored: device state, then alerts, in the
//! order the results were stored, each result once, retried until it
//! commits — never dropped on a database error.
//!
//! Why a queue after the ack, and not "ack after evaluating": a batch is
//! acked once its rows commit, which is what "stored exactly once" rests
//! on (a replay of an acked batch is a duplicate and carries no rows, so
//! evaluation could not be redone from a replay). The rows that still need
//! evaluating wait here instead, and each step swaps memory in only after
//! its own commit (`evaluate.rs`, `alerts.rs`), so retrying a step is
//! evaluating the same input against the same memory again: no transition
//! is lost and none is counted twice. The queue is bounded by results:
//! while it is full, ingest stops acking (the stream ends unavailable and
//! executors keep and replay their batches), so memory stays bounded and
//! nothing is dropped. What a crash loses is this queue: results stored
//! but not yet evaluated are judged again only by the next cycle's results.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use uuid::Uuid;

use crate::alerts::{AlertEngine, Observation};
use crate::evaluate::Evaluator;
use crate::state::Event;
use crate::store::ProbeRow;

/// Results waiting for evaluation beyond which ingest stops acking.
pub const DEFAULT_CAPACITY: usize = 200_000;

/// Work left for one group of stored results; each step done is recorded
/// so a retry resumes after it.
enum Work {
    /// Probe results: the state machine, then its alert events, then the
    /// latency and loss windows.
    Probes {
        rows: Vec<ProbeRow>,
        /// The state machine's alert events, once its step committed.
        events: Option<Vec<(Uuid, Event)>>,
        events_written: bool,
    },
    /// Alert events of holds released by the clock (their state committed).
    Released(Vec<(Uuid, Event)>),
    /// SNMP observations for the measurement rules.
    Snmp(Vec<Observation>),
}

impl Work {
    fn results(&self) -> usize {
        match self {
            Work::Probes { rows, .. } => rows.len(),
            Work::Released(events) => events.len(),
            Work::Snmp(observations) => observations.len(),
        }
    }
}

pub struct Backlog {
    evaluator: Arc<Evaluator>,
    alerts: Arc<AlertEngine>,
    /// Drained under this lock, head first: one evaluation at a time, in
    /// the order work arrived.
    queue: tokio::sync::Mutex<VecDeque<Work>>,
    /// Results queued (read without the lock, by ingest before it stores).
    queued: AtomicUsize,
    capacity: usize,
}

impl Backlog {
    pub fn new(evaluator: Arc<Evaluator>, alerts: Arc<AlertEngine>, capacity: usize) -> Self {
        Self {
            evaluator,
            alerts,
            queue: tokio::sync::Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    /// Results waiting for evaluation.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether ingest should stop acking until evaluation catches up.
    pub fn is_full(&self) -> bool {
        self.queued() >= self.capacity
    }

    /// Queues stored probe results and evaluates what is queued. An error
    /// leaves the work queued for [`Backlog::drain`].
    pub async fn probes(&self, rows: Vec<ProbeRow>) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return self.drain().await;
        }
        self.push_and_drain(Work::Probes {
            rows,
            events: None,
            events_written: false,
        })
        .await
    }

    /// Queues SNMP observations and evaluates what is queued.
    pub async fn snmp(&self, observations: Vec<Observation>) -> Result<(), sqlx::Error> {
        if observations.is_empty() {
            return self.drain().await;
        }
        self.push_and_drain(Work::Snmp(observations)).await
    }

    /// Releases holds whose time ran out, once everything queued before is
    /// evaluated (a release judges a child on its parent's latest state).
    pub async fn release_expired(&self, now: SystemTime) -> Result<(), sqlx::Error> {
        let mut queue = self.queue.lock().await;
        self.drain_locked(&mut queue).await?;
        let events = self.evaluator.release_expired(now).await?;
        if !events.is_empty() {
            self.push(&mut queue, Work::Released(events));
        }
        self.drain_locked(&mut queue).await
    }

    /// Evaluates what is queued, head first, until it is empty or a step fails.
    pub async fn drain(&self) -> Result<(), sqlx::Error> {
        let mut queue = self.queue.lock().await;
        self.drain_locked(&mut queue).await
    }

    async fn push_and_drain(&self, work: Work) -> Result<(), sqlx::Error> {
        let mut queue = self.queue.lock().await;
        self.push(&mut queue, work);
        self.drain_locked(&mut queue).await
    }

    fn push(&self, queue: &mut VecDeque<Work>, work: Work) {
        self.queued.fetch_add(work.results(), Ordering::Relaxed);
        queue.push_back(work);
        metrics::gauge!("netward_alerting_evaluation_backlog").set(self.queued() as f64);
    }

    async fn drain_locked(&self, queue: &mut VecDeque<Work>) -> Result<(), sqlx::Error> {
        while let Some(work) = queue.front_mut() {
            if let Err(error) = self.step(work).await {
                metrics::counter!("netward_alerting_evaluation_retries_total").increment(1);
                tracing::warn!(%error, queued = self.queued(), "evaluation failed; kept for a retry");
                return Err(error);
            }
            if let Some(done) = queue.pop_front() {
                self.queued.fetch_sub(done.results(), Ordering::Relaxed);
            }
        }
        metrics::gauge!("netward_alerting_evaluation_backlog").set(self.queued() as f64);
        Ok(())
    }

    /// Runs what is left of one piece of work; each step's commit is
    /// recorded in `work` before the next is tried.
    async fn step(&self, work: &mut Work) -> Result<(), sqlx::Error> {
        match work {
            Work::Probes {
                rows,
                events,
                events_written,
            } => {
                let events = match events {
                    Some(events) => events,
                    None => events.insert(self.evaluator.evaluate(rows, SystemTime::now()).await?),
                };
                if !*events_written {
                    self.alerts.on_events(events, rows).await?;
                    *events_written = true;
                }
                self.alerts.on_probes(rows).await
            }
            Work::Released(events) => self.alerts.on_events(events, &[]).await,
            Work::Snmp(observations) => self.alerts.observe(observations).await,
        }
    }
}
