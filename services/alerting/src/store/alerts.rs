//! Rules and alerts as stored: each a protobuf body beside the few columns
//! it is queried by. The alert engine decides; this trait persists.

use async_trait::async_trait;
use netward_shared::proto::v1;
use uuid::Uuid;

use super::StoreResult;
use super::notifications::NewNotification;

/// When the notification of an alert change is written: it depends on
/// whether the alert's firing was announced, which only the transaction
/// writing the change can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyWhen {
    /// A new alert: always.
    Always,
    /// A resolve: only when a firing notification of the alert is in the
    /// outbox (sent or due).
    FiringSent,
    /// A change of suppression: only when no firing notification is in the
    /// outbox yet (the firing is sent late, once).
    FiringNotSent,
}

/// The notification an alert change may write, in the change's transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNotification {
    pub when: NotifyWhen,
    pub notification: NewNotification,
}

/// One alert change to write.
#[derive(Debug, Clone)]
pub struct AlertWrite {
    /// The alert as it is now (its body, state, started and resolved times).
    pub alert: v1::Alert,
    /// A new alert (inserted) rather than a change of a stored one.
    pub new: bool,
    /// The third part of its open key (ifIndex, `metric/instance`, or empty
    /// for a device alert): the `interface` column.
    pub subject: String,
    pub notify: Option<AlertNotification>,
}

/// Rules and alerts.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// The (kind, name) of every built-in rule stored.
    async fn builtin_rules(&self) -> StoreResult<Vec<(i32, String)>>;
    /// Stores a built-in rule, enabled, unless a rule of its name exists.
    async fn seed_rule(&self, rule: &v1::Rule) -> StoreResult<()>;
    /// Every rule, by name.
    async fn rules(&self) -> StoreResult<Vec<v1::Rule>>;
    /// Stores a new rule (not built in); a name already taken is a unique
    /// violation.
    async fn insert_rule(&self, rule: &v1::Rule) -> StoreResult<()>;
    /// Stores a rule's name, enabled flag and body; a name already taken is
    /// a unique violation.
    async fn update_rule(&self, rule: &v1::Rule) -> StoreResult<()>;
    /// Replaces a rule's body alone (a built-in rule upgraded at start).
    async fn replace_rule_body(&self, rule: &v1::Rule) -> StoreResult<()>;
    async fn delete_rule(&self, id: Uuid) -> StoreResult<()>;
    /// Every alert not resolved.
    async fn open_alerts(&self) -> StoreResult<Vec<v1::Alert>>;
    /// Writes alert changes and their notifications in one transaction:
    /// all of them, or none.
    async fn write_alerts(&self, writes: &[AlertWrite]) -> StoreResult<()>;
    /// Stores the acknowledgement of an alert (state and body), unless it
    /// was resolved meanwhile.
    async fn acknowledge_alert(&self, alert: &v1::Alert) -> StoreResult<()>;
    /// Alerts, newest first: open ones, or all when `include_resolved`.
    async fn list_alerts(&self, include_resolved: bool, limit: i64) -> StoreResult<Vec<v1::Alert>>;
    async fn alert(&self, id: Uuid) -> StoreResult<Option<v1::Alert>>;
}
