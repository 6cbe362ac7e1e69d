//! Silences and maintenance windows: when one is open and whom it covers.
//! A silence mutes notifications for the alerts it matches; a maintenance
//! window (a silence with `maintenance = true`) also sets the maintenance
//! flag of the devices it covers. Neither stops state tracking or history.
//!
//! They are few, so every one that can still open is kept in memory
//! ([`Silences`]) beside its row in the `silences` table; the window
//! arithmetic ([`Silence::is_active`], [`Silence::next_start`]) is pure.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Datelike as _, Duration, NaiveTime, TimeZone as _, Utc, Weekday};
use chrono_tz::Tz;
use netward_shared::inventory_copy::{CopiedDevice, InventoryCopy};
use netward_shared::proto::v1;
use netward_shared::status::{FieldViolation, Violations};
use uuid::Uuid;

use crate::scope;
use crate::store::{SilenceRow, SilenceStore};
use crate::{from_timestamp, timestamp as ts};

/// A weekly window: on `days`, from `start` local time in `zone`, for `length`.
#[derive(Debug, Clone)]
struct Weekly {
    days: Vec<Weekday>,
    start: NaiveTime,
    length: Duration,
    zone: Tz,
}

/// A checked silence: the stored message plus its parsed window.
#[derive(Debug, Clone)]
pub struct Silence {
    /// As stored: what the creator gave, normalised, with id and created_at.
    pub body: v1::Silence,
    pub id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    weekly: Option<Weekly>,
}

const MAX_WEEKLY_LENGTH: Duration = Duration::days(7);

impl Silence {
    /// Checks a silence given over gRPC (matchers against the inventory
    /// copy) and returns it with a new id, ready to store.
    pub fn create(
        input: &v1::Silence,
        copy: &InventoryCopy,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Violations::default();
        let mut body = v1::Silence {
            id: Uuid::new_v4().to_string(),
            rule_id: input.rule_id.trim().to_string(),
            starts_at: Some(input.starts_at.unwrap_or_else(|| ts(now))),
            ends_at: input.ends_at,
            recurrence: input.recurrence.clone(),
            maintenance: input.maintenance,
            created_by: input.created_by.clone(),
            comment: input.comment.clone(),
            created_at: Some(ts(now)),
            ..Default::default()
        };
        if input.matchers.is_empty() {
            v.add(
                "silence.matchers",
                "[]",
                "at least one matcher (GLOBAL covers every device)",
            );
        }
        for (i, matcher) in input.matchers.iter().enumerate() {
            match scope::normalize(&format!("silence.matchers[{i}]"), matcher, copy) {
                Ok(matcher) => body.matchers.push(matcher),
                Err(violation) => v.0.push(violation),
            }
        }
        if !body.rule_id.is_empty() && Uuid::parse_str(&body.rule_id).is_err() {
            v.add("silence.rule_id", &body.rule_id, "not a UUID");
        }
        v.name("silence.created_by", &input.created_by, 128);
        v.text("silence.comment", &input.comment, 1024);
        let parsed = Self::parse(body);
        if let Err(problems) = &parsed {
            v.0.extend(problems.iter().cloned());
        }
        match parsed {
            Ok(silence) if v.is_empty() => Ok(silence),
            _ => Err(v.0),
        }
    }

    /// Parses the window of a stored (or just built) silence.
    pub fn parse(body: v1::Silence) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Violations::default();
        let id = Uuid::parse_str(&body.id).unwrap_or_default();
        let starts_at = body.starts_at.as_ref().and_then(from_timestamp);
        if starts_at.is_none() {
            v.add("silence.starts_at", "", "not a valid timestamp");
        }
        let ends_at = match &body.ends_at {
            Some(t) => match from_timestamp(t) {
                Some(t) => Some(t),
                None => {
                    v.add("silence.ends_at", "", "not a valid timestamp");
                    None
                }
            },
            None => None,
        };
        let recurrence = body.recurrence.clone().unwrap_or_default();
        let weekly = match v1::RecurrenceKind::try_from(recurrence.kind) {
            Ok(v1::RecurrenceKind::Unspecified | v1::RecurrenceKind::None) => {
                if ends_at.is_none() {
                    v.add(
                        "silence.ends_at",
                        "",
                        "required for a one-off silence (weekly ones may run forever)",
                    );
                }
                None
            }
            Ok(v1::RecurrenceKind::Weekly) => weekly(&recurrence, &mut v),
            Err(_) => {
                v.add(
                    "silence.recurrence.kind",
                    recurrence.kind,
                    "unknown enum value",
                );
                None
            }
        };
        if let (Some(start), Some(end)) = (starts_at, ends_at)
            && end <= start
        {
            v.add(
                "silence.ends_at",
                end.to_rfc3339(),
                "must be after starts_at",
            );
        }
        match starts_at {
            Some(starts_at) if v.is_empty() => Ok(Self {
                body,
                id,
                starts_at,
                ends_at,
                weekly,
            }),
            _ => Err(v.0),
        }
    }

    pub fn maintenance(&self) -> bool {
        self.body.maintenance
    }

    /// The windows that touch [from - 8 days, from + 8 days], clipped to
    /// [starts_at, ends_at), in order. A weekly window is at most 7 days
    /// long, so any window open at `from`, and the next one after it, are
    /// among them.
    fn windows_near(&self, from: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let clip = |start: DateTime<Utc>, end: DateTime<Utc>| {
            let start = start.max(self.starts_at);
            let end = self.ends_at.map_or(end, |e| end.min(e));
            (start < end).then_some((start, end))
        };
        let Some(weekly) = &self.weekly else {
            let end = self.ends_at.unwrap_or(DateTime::<Utc>::MAX_UTC);
            return clip(self.starts_at, end).into_iter().collect();
        };
        let local_day = from.with_timezone(&weekly.zone).date_naive();
        let mut windows = Vec::new();
        for offset in -8..=8 {
            let Some(day) = local_day.checked_add_signed(Duration::days(offset)) else {
                continue;
            };
            if !weekly.days.contains(&day.weekday()) {
                continue;
            }
            let local = day.and_time(weekly.start);
            // In a DST gap the wall-clock start does not exist: the window
            // opens when the clocks have jumped (an hour later at most).
            let start = weekly
                .zone
                .from_local_datetime(&local)
                .earliest()
                .or_else(|| {
                    weekly
                        .zone
                        .from_local_datetime(&(local + Duration::hours(1)))
                        .earliest()
                });
            let Some(start) = start.map(|s| s.with_timezone(&Utc)) else {
                continue;
            };
            windows.extend(clip(start, start + weekly.length));
        }
        windows.sort();
        windows
    }

    /// True while one of its windows is open at `at`.
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        self.windows_near(at)
            .iter()
            .any(|(start, end)| *start <= at && at < *end)
    }

    /// `at` while a window is open, else the start of the next window;
    /// `None` when no window will open again (the silence has expired).
    pub fn next_start(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // A weekly silence that starts in a month has no window near now:
        // look from its first possible start instead.
        let from = at.max(self.starts_at);
        self.windows_near(from)
            .into_iter()
            .find(|(_, end)| *end > at)
            .map(|(start, _)| start.max(at))
    }

    pub fn expired(&self, at: DateTime<Utc>) -> bool {
        self.next_start(at).is_none()
    }

    /// True when the device matches every matcher.
    pub fn covers(&self, device: &CopiedDevice) -> bool {
        self.body
            .matchers
            .iter()
            .all(|m| scope::specificity(m, device).is_some())
    }

    /// The silence as the API shows it at `at` (with its output-only fields).
    pub fn view(&self, at: DateTime<Utc>) -> v1::Silence {
        let next = self.next_start(at);
        v1::Silence {
            active: self.is_active(at),
            expired: next.is_none(),
            next_start_at: next.map(ts),
            ..self.body.clone()
        }
    }

    /// What an alert's `suppression_reason` says about it.
    pub fn reason(&self) -> String {
        let what = if self.maintenance() {
            "maintenance window"
        } else {
            "silence"
        };
        if self.body.comment.is_empty() {
            format!("{what} {}", self.id)
        } else {
            format!("{what} {}: {}", self.id, self.body.comment)
        }
    }
}

/// Checks the weekly part of a recurrence.
fn weekly(recurrence: &v1::Recurrence, v: &mut Violations) -> Option<Weekly> {
    let mut days = Vec::new();
    for day in &recurrence.weekdays {
        let weekday = match v1::Weekday::try_from(*day) {
            Ok(v1::Weekday::Monday) => Weekday::Mon,
            Ok(v1::Weekday::Tuesday) => Weekday::Tue,
            Ok(v1::Weekday::Wednesday) => Weekday::Wed,
            Ok(v1::Weekday::Thursday) => Weekday::Thu,
            Ok(v1::Weekday::Friday) => Weekday::Fri,
            Ok(v1::Weekday::Saturday) => Weekday::Sat,
            Ok(v1::Weekday::Sunday) => Weekday::Sun,
            _ => {
                v.add(
                    "silence.recurrence.weekdays",
                    day,
                    "WEEKDAY_MONDAY..WEEKDAY_SUNDAY",
                );
                continue;
            }
        };
        days.push(weekday);
    }
    if recurrence.weekdays.is_empty() {
        v.add(
            "silence.recurrence.weekdays",
            "[]",
            "at least one day for a weekly window",
        );
    }
    let start = NaiveTime::parse_from_str(&recurrence.start_time, "%H:%M").ok();
    if start.is_none() || recurrence.start_time.len() != 5 {
        v.add(
            "silence.recurrence.start_time",
            &recurrence.start_time,
            "local time as HH:MM (24-hour), e.g. 02:00",
        );
    }
    let length = recurrence
        .duration
        .as_ref()
        .map(|d| Duration::seconds(d.seconds) + Duration::nanoseconds(i64::from(d.nanos)));
    let length = length.filter(|l| *l >= Duration::minutes(1) && *l <= MAX_WEEKLY_LENGTH);
    if length.is_none() {
        v.add(
            "silence.recurrence.duration",
            recurrence
                .duration
                .as_ref()
                .map_or("unset".to_string(), |d| format!("{}s", d.seconds)),
            "from 1 min to 7 days",
        );
    }
    let zone_name = if recurrence.timezone.is_empty() {
        "UTC"
    } else {
        recurrence.timezone.as_str()
    };
    let zone = zone_name.parse::<Tz>().ok();
    if zone.is_none() {
        v.add(
            "silence.recurrence.timezone",
            &recurrence.timezone,
            "an IANA time zone, e.g. Asia/Tbilisi",
        );
    }
    Some(Weekly {
        days,
        start: start?,
        length: length?,
        zone: zone?,
    })
}

/// Every silence that can still open, in memory, backed by the store.
pub struct Silences {
    store: Arc<dyn SilenceStore>,
    current: RwLock<HashMap<Uuid, Silence>>,
}

/// Filters of [`Silences::list`].
#[derive(Debug, Default)]
pub struct ListFilter {
    pub include_expired: bool,
    pub maintenance: Option<bool>,
}

impl Silences {
    /// Loads the silences that have not ended.
    pub async fn load(store: Arc<dyn SilenceStore>) -> Result<Self, sqlx::Error> {
        let current = store
            .unended_silences()
            .await?
            .into_iter()
            .filter_map(|body| Silence::parse(body).ok())
            .map(|s| (s.id, s))
            .collect();
        Ok(Self {
            store,
            current: RwLock::new(current),
        })
    }

    pub async fn insert(&self, silence: Silence) -> Result<Silence, sqlx::Error> {
        self.store
            .insert_silence(&SilenceRow {
                id: silence.id,
                maintenance: silence.maintenance(),
                starts_at: silence.starts_at,
                ends_at: silence.ends_at,
                body: silence.body.clone(),
            })
            .await?;
        if let Ok(mut current) = self.current.write() {
            current.insert(silence.id, silence.clone());
        }
        Ok(silence)
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Silence>, sqlx::Error> {
        let body = self.store.silence(id).await?;
        Ok(body.and_then(|b| Silence::parse(b).ok()))
    }

    /// Ends a silence now (it stays listed as expired).
    pub async fn expire(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, sqlx::Error> {
        let Some(silence) = self.get(id).await? else {
            return Ok(None);
        };
        let mut body = silence.body.clone();
        let end = silence.ends_at.map_or(now, |e| e.min(now));
        // A silence ended before it began keeps a one-microsecond window,
        // so it still reads back as a valid (expired) silence.
        let end = end.max(silence.starts_at + Duration::microseconds(1));
        body.ends_at = Some(ts(end));
        let Ok(ended) = Silence::parse(body) else {
            return Ok(Some(silence));
        };
        self.store.end_silence(id, end, &ended.body).await?;
        if let Ok(mut current) = self.current.write() {
            current.remove(&id);
        }
        Ok(Some(ended))
    }

    /// Silences, newest first; expired ones only when asked for.
    pub async fn list(
        &self,
        filter: &ListFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<Silence>, sqlx::Error> {
        let bodies = self
            .store
            .list_silences(filter.include_expired, filter.maintenance, now)
            .await?;
        Ok(bodies
            .into_iter()
            .filter_map(|b| Silence::parse(b).ok())
            .filter(|s| filter.include_expired || !s.expired(now))
            .collect())
    }

    /// The silence that mutes an alert of `rule_id` on `device` at `at`, if
    /// any (a maintenance window also mutes).
    pub fn muting(
        &self,
        device: &CopiedDevice,
        rule_id: &str,
        at: DateTime<Utc>,
    ) -> Option<Silence> {
        let current = self.current.read().ok()?;
        current
            .values()
            .filter(|s| s.body.rule_id.is_empty() || s.body.rule_id == rule_id)
            .filter(|s| s.is_active(at) && s.covers(device))
            .min_by_key(|s| (!s.maintenance(), s.starts_at))
            .cloned()
    }

    /// Devices under an open maintenance window at `at`, each with the
    /// window's reason.
    pub fn in_maintenance(&self, copy: &InventoryCopy, at: DateTime<Utc>) -> HashMap<Uuid, String> {
        let Ok(current) = self.current.read() else {
            return HashMap::new();
        };
        let open: Vec<&Silence> = current
            .values()
            .filter(|s| s.maintenance() && s.body.rule_id.is_empty() && s.is_active(at))
            .collect();
        if open.is_empty() {
            return HashMap::new();
        }
        copy.devices
            .values()
            .filter_map(|device| {
                let window = open.iter().find(|s| s.covers(device))?;
                Some((Uuid::parse_str(&device.id).ok()?, window.reason()))
            })
            .collect()
    }

    /// Forgets silences that can no longer open (their rows stay).
    pub fn prune(&self, at: DateTime<Utc>) {
        if let Ok(mut current) = self.current.write() {
            current.retain(|_, s| !s.expired(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn weekly_silence(days: &[v1::Weekday], start: &str, minutes: i64, zone: &str) -> Silence {
        Silence::parse(v1::Silence {
            id: Uuid::new_v4().to_string(),
            matchers: vec![v1::Scope {
                kind: v1::ScopeKind::Global as i32,
                value: String::new(),
            }],
            starts_at: Some(ts(at("2026-11-01T00:00:00Z"))),
            recurrence: Some(v1::Recurrence {
                kind: v1::RecurrenceKind::Weekly as i32,
                weekdays: days.iter().map(|d| *d as i32).collect(),
                start_time: start.into(),
                duration: Some(prost_types::Duration {
                    seconds: minutes * 60,
                    nanos: 0,
                }),
                timezone: zone.into(),
            }),
            maintenance: true,
            created_by: "noc".into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn one_off_window() {
        let s = Silence::parse(v1::Silence {
            starts_at: Some(ts(at("2026-11-27T10:00:00Z"))),
            ends_at: Some(ts(at("2026-11-27T12:00:00Z"))),
            ..Default::default()
        })
        .unwrap();
        let cases = [
            ("2026-11-27T09:59:59Z", false, Some("2026-11-27T10:00:00Z")),
            ("2026-11-27T10:00:00Z", true, Some("2026-11-27T10:00:00Z")),
            ("2026-11-27T11:30:00Z", true, Some("2026-11-27T11:30:00Z")),
            ("2026-11-27T12:00:00Z", false, None),
        ];
        for (now, active, next) in cases {
            assert_eq!(s.is_active(at(now)), active, "{now}");
            assert_eq!(s.next_start(at(now)), next.map(at), "{now}");
        }
    }

    #[test]
    fn weekly_window_in_a_time_zone_crossing_midnight() {
        // Saturdays 23:00 Tbilisi time (UTC+4) for 3 hours: 19:00-22:00 UTC.
        // 2026-11-28 is a Saturday.
        let s = weekly_silence(&[v1::Weekday::Saturday], "23:00", 180, "Asia/Tbilisi");
        let cases = [
            ("2026-11-28T18:59:00Z", false, Some("2026-11-28T19:00:00Z")),
            ("2026-11-28T19:00:00Z", true, Some("2026-11-28T19:00:00Z")),
            ("2026-11-28T21:59:00Z", true, Some("2026-11-28T21:59:00Z")),
            ("2026-11-28T22:00:00Z", false, Some("2026-12-05T19:00:00Z")),
            ("2026-11-30T12:00:00Z", false, Some("2026-12-05T19:00:00Z")),
        ];
        for (now, active, next) in cases {
            assert_eq!(s.is_active(at(now)), active, "{now}");
            assert_eq!(s.next_start(at(now)), next.map(at), "{now}");
        }
    }

    #[test]
    fn weekly_window_follows_daylight_saving_time() {
        // Sundays 02:30 Berlin time: CET (UTC+1) in winter, CEST (UTC+2) in
        // summer; on 2026-03-29 02:30 does not exist (clocks jump 02:00 → 03:00).
        let mut s = weekly_silence(&[v1::Weekday::Sunday], "02:30", 60, "Europe/Berlin");
        s.starts_at = at("2026-01-01T00:00:00Z");
        assert!(s.is_active(at("2026-11-29T01:45:00Z")));
        assert!(!s.is_active(at("2026-11-29T00:45:00Z")));
        assert!(s.is_active(at("2026-06-07T00:45:00Z")));
        // The gap: the window opens at 03:30 CEST (01:30 UTC) instead.
        assert!(!s.is_active(at("2026-03-29T01:15:00Z")));
        assert!(s.is_active(at("2026-03-29T01:45:00Z")));
    }

    #[test]
    fn weekly_starts_and_ends_clip_the_windows() {
        let mut s = weekly_silence(&[v1::Weekday::Monday], "00:00", 7 * 24 * 60, "UTC");
        assert!(s.is_active(at("2026-11-27T00:00:00Z")));
        s.ends_at = Some(at("2026-11-27T06:00:00Z"));
        assert!(!s.is_active(at("2026-11-27T06:00:00Z")));
        assert!(s.expired(at("2026-11-27T06:00:00Z")));
        // A weekly silence whose first window is weeks away is not expired.
        let mut later = weekly_silence(&[v1::Weekday::Monday], "08:00", 60, "UTC");
        later.starts_at = at("2027-01-01T00:00:00Z");
        assert_eq!(
            later.next_start(at("2026-11-27T00:00:00Z")),
            Some(at("2027-01-04T08:00:00Z"))
        );
    }

    #[test]
    fn bad_windows_name_their_fields() {
        let fields = |s: v1::Silence| {
            Silence::parse(s)
                .unwrap_err()
                .into_iter()
                .map(|v| v.field)
                .collect::<Vec<_>>()
        };
        let start = Some(ts(at("2026-11-27T10:00:00Z")));
        assert_eq!(
            fields(v1::Silence {
                starts_at: start,
                ..Default::default()
            }),
            ["silence.ends_at"]
        );
        assert_eq!(
            fields(v1::Silence {
                starts_at: start,
                ends_at: start,
                ..Default::default()
            }),
            ["silence.ends_at"]
        );
        let weekly = fields(v1::Silence {
            starts_at: start,
            recurrence: Some(v1::Recurrence {
                kind: v1::RecurrenceKind::Weekly as i32,
                weekdays: vec![0],
                start_time: "25:00".into(),
                duration: Some(prost_types::Duration {
                    seconds: 8 * 86_400,
                    nanos: 0,
                }),
                timezone: "Mars/Olympus".into(),
            }),
            ..Default::default()
        });
        assert_eq!(
            weekly,
            [
                "silence.recurrence.weekdays",
                "silence.recurrence.start_time",
                "silence.recurrence.duration",
                "silence.recurrence.timezone"
            ]
        );
    }
}
