//! `netward silences create|list|delete`: silences and maintenance windows
//! in alerting, one-off (`--for 2h` or `--until T`) or weekly (`--weekly
//! sat,sun --at 02:00 --duration 4h --tz Asia/Tbilisi`), covering the
//! devices that match every selector given (`--site`, `--type`, `--tag`,
//! `--device`, or `--global`).

use std::io::{self, Write as _};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clap::Args;
use netward_shared::proto::v1::{
    CreateSilenceRequest, DeleteSilenceRequest, DeviceType, ListSilencesRequest, Recurrence,
    RecurrenceKind, Silence, Weekday,
};
use prost_types::Timestamp;
use serde::Serialize;

use super::credentials::uuid_like;
use super::selectors::{Names, Selector, parse_tag, parse_type};
use super::services::{Service, ServicesArgs};
use super::table::Table;
use super::when::{duration_text, parse_duration, parse_instant, proto_duration};
use super::words::enum_text;

/// Silences per page: the most alerting serves in one.
const PAGE_SIZE: u32 = 1000;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Devices of this site (name or id)
    #[arg(long, value_name = "NAME")]
    site: Option<String>,
    /// Devices of this type (atm, router, …)
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    device_type: Option<DeviceType>,
    /// Devices carrying this tag, KEY=VALUE; repeat for more (all must match)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<String>,
    /// One device (name or id)
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Every device (nothing else may be given)
    #[arg(long, conflicts_with_all = ["site", "device_type", "tags", "device"])]
    global: bool,
    /// Only alerts of this rule (id)
    #[arg(long, value_name = "RULE_ID")]
    rule: Option<String>,
    /// A maintenance window: devices are marked in maintenance and left out of availability
    #[arg(long)]
    maintenance: bool,
    /// One-off: how long from --from (2h, 30m)
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, conflicts_with = "weekly")]
    for_duration: Option<Duration>,
    /// One-off: when it starts (RFC 3339) [default: now]; weekly: the first possible window
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    from: Option<SystemTime>,
    /// One-off: when it ends (RFC 3339); weekly: the last possible window [default: no end]
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant, conflicts_with = "for_duration")]
    until: Option<SystemTime>,
    /// Weekly: the days it opens, e.g. sat,sun or mon-fri
    #[arg(long, value_name = "DAYS", value_parser = parse_weekdays, requires_all = ["at", "duration"])]
    weekly: Option<Weekdays>,
    /// Weekly: the local time it opens, HH:MM
    #[arg(long, value_name = "HH:MM", requires = "weekly")]
    at: Option<String>,
    /// Weekly: how long each window lasts (4h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "weekly")]
    duration: Option<Duration>,
    /// Weekly: IANA time zone of --at [default: UTC]
    #[arg(long = "tz", value_name = "ZONE", requires = "weekly")]
    timezone: Option<String>,
    /// Why (shown with the alerts it silences)
    #[arg(long, value_name = "TEXT")]
    comment: String,
    /// Who creates it [default: $USER]
    #[arg(long, value_name = "NAME", env = "USER", hide_env_values = true)]
    created_by: Option<String>,
    /// Print the created silence as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    services: ServicesArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Expired and deleted silences too
    #[arg(long)]
    all: bool,
    /// Only maintenance windows
    #[arg(long)]
    maintenance: bool,
    /// Only silences covering this device (name or id)
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// One JSON object per silence and line, instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    services: ServicesArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The silence: its id or an unambiguous prefix of it (it ends now)
    silence: String,
    #[command(flatten)]
    services: ServicesArgs,
}

/// The days of `--weekly` (one argument, so not a `Vec` to clap).
#[derive(Debug, Clone)]
struct Weekdays(Vec<Weekday>);

/// `sat,sun`, `mon-fri`, `monday`.
fn parse_weekdays(text: &str) -> Result<Weekdays, String> {
    const ORDER: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    let day = |word: &str| -> Result<usize, String> {
        let word = word.trim().to_ascii_lowercase();
        ORDER
            .iter()
            .position(|d| {
                let name = enum_text(d.as_str_name(), "WEEKDAY_");
                word.len() >= 3 && name.starts_with(&word)
            })
            .ok_or_else(|| format!("unknown day {word:?}: mon, tue, wed, thu, fri, sat, sun"))
    };
    let mut days = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                if first > last {
                    return Err(format!(
                        "{part:?}: a range runs Monday to Sunday (e.g. mon-fri)"
                    ));
                }
                days.extend(&ORDER[first..=last]);
            }
            None => days.push(ORDER[day(part)?]),
        }
    }
    days.dedup();
    Ok(Weekdays(days))
}

pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let mut selectors = Vec::new();
    if args.global {
        selectors.push(Selector::Global);
    }
    selectors.extend(args.site.clone().map(Selector::Site));
    selectors.extend(args.device_type.map(Selector::Type));
    selectors.extend(args.tags.iter().cloned().map(Selector::Tag));
    selectors.extend(args.device.clone().map(Selector::Device));
    if selectors.is_empty() {
        bail!("say which devices: --site, --type, --tag, --device (all must match), or --global");
    }
    let mut names = Names::new(&args.services)?;
    let mut matchers = Vec::new();
    for selector in &selectors {
        matchers.push(names.scope(selector).await?);
    }
    let starts = args.from.unwrap_or_else(SystemTime::now);
    let (ends, recurrence) = match &args.weekly {
        Some(Weekdays(weekdays)) => (
            args.until,
            Some(Recurrence {
                kind: RecurrenceKind::Weekly as i32,
                weekdays: weekdays.iter().map(|d| *d as i32).collect(),
                start_time: args.at.clone().unwrap_or_default(),
                duration: args.duration.map(proto_duration),
                timezone: args.timezone.clone().unwrap_or_default(),
            }),
        ),
        None => {
            let ends = match (args.for_duration, args.until) {
                (Some(length), _) => starts + length,
                (None, Some(until)) => until,
                (None, None) => {
                    bail!("a one-off silence needs --for or --until (or make it --weekly)")
                }
            };
            (Some(ends), None)
        }
    };
    let silence = Silence {
        matchers,
        rule_id: args.rule.clone().unwrap_or_default(),
        starts_at: Some(Timestamp::from(starts)),
        ends_at: ends.map(Timestamp::from),
        recurrence,
        maintenance: args.maintenance,
        created_by: args
            .created_by
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "netward-cli".into()),
        comment: args.comment.clone(),
        ..Silence::default()
    };
    let created = args
        .services
        .alerting()?
        .create_silence(CreateSilenceRequest {
            silence: Some(silence),
        })
        .await
        .map_err(|status| {
            args.services
                .call_failed(Service::Alerting, "CreateSilence", &status)
        })?
        .into_inner()
        .silence
        .context("CreateSilence answered without the silence")?;
    let mut out = io::stdout().lock();
    if args.json {
        let json = SilenceJson::of(&created, &mut names).await;
        writeln!(out, "{}", serde_json::to_string(&json)?)?;
    } else {
        writeln!(
            out,
            "created {} {} ({}), {}",
            if created.maintenance {
                "maintenance window"
            } else {
                "silence"
            },
            &created.id[..8.min(created.id.len())],
            created.id,
            when_text(&created)
        )?;
    }
    Ok(())
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut names = Names::new(&args.services)?;
    let device_id = match &args.device {
        Some(device) => {
            let scope = names.scope(&Selector::Device(device.clone())).await?;
            scope.value
        }
        None => String::new(),
    };
    let silences = fetch(
        &args.services,
        args.all,
        args.maintenance.then_some(true),
        &device_id,
    )
    .await?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if args.json {
        for silence in &silences {
            let json = SilenceJson::of(silence, &mut names).await;
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
        }
    } else if silences.is_empty() {
        eprintln!("no silences");
    } else {
        let mut table = Table::new(vec![
            "id", "kind", "status", "devices", "when", "by", "comment",
        ]);
        for silence in &silences {
            let mut covers = Vec::new();
            for matcher in &silence.matchers {
                covers.push(names.describe(matcher).await);
            }
            table.push(vec![
                silence.id.chars().take(8).collect(),
                if silence.maintenance {
                    "maintenance"
                } else {
                    "silence"
                }
                .into(),
                status_text(silence).into(),
                covers.join(" & "),
                when_text(silence),
                silence.created_by.clone(),
                silence.comment.clone(),
            ]);
        }
        table.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

async fn fetch(
    services: &ServicesArgs,
    include_expired: bool,
    maintenance: Option<bool>,
    device_id: &str,
) -> anyhow::Result<Vec<Silence>> {
    let mut client = services.alerting()?;
    let mut silences = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_silences(ListSilencesRequest {
                include_expired,
                maintenance,
                device_id: device_id.to_string(),
                page_size: PAGE_SIZE,
                page_token,
            })
            .await
            .map_err(|status| services.call_failed(Service::Alerting, "ListSilences", &status))?
            .into_inner();
        silences.extend(page.silences);
        if page.next_page_token.is_empty() {
            return Ok(silences);
        }
        page_token = page.next_page_token;
    }
}

pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let id = if uuid_like(&args.silence) {
        args.silence.clone()
    } else {
        let silences = fetch(&args.services, false, None, "").await?;
        let mut prefixed = silences
            .into_iter()
            .filter(|s| s.id.starts_with(&args.silence));
        match (prefixed.next(), prefixed.next()) {
            (Some(silence), None) => silence.id,
            (Some(_), Some(_)) => bail!(
                "{:?} is the start of more than one silence id: give more of it",
                args.silence
            ),
            (None, _) => bail!(
                "no current silence has an id starting {:?} (netward silences list shows them)",
                args.silence
            ),
        }
    };
    args.services
        .alerting()?
        .delete_silence(DeleteSilenceRequest { id: id.clone() })
        .await
        .map_err(|status| {
            args.services
                .call_failed(Service::Alerting, "DeleteSilence", &status)
        })?;
    println!("deleted silence {id}: it ends now");
    Ok(())
}

fn status_text(silence: &Silence) -> &'static str {
    if silence.expired {
        "expired"
    } else if silence.active {
        "active"
    } else {
        "pending"
    }
}

/// `2026-12-04T10:00:00Z → 2026-12-04T12:00:00Z`, or `weekly sat,sun 02:00 for 4h (Asia/Tbilisi)`.
fn when_text(silence: &Silence) -> String {
    let at = |t: Option<&Timestamp>| t.map_or("…".to_string(), |t| t.to_string());
    match &silence.recurrence {
        Some(r) if r.kind() == RecurrenceKind::Weekly => {
            let days: Vec<String> = r
                .weekdays()
                .map(|d| enum_text(d.as_str_name(), "WEEKDAY_")[..3].to_string())
                .collect();
            let zone = if r.timezone.is_empty() {
                "UTC"
            } else {
                &r.timezone
            };
            format!(
                "weekly {} {} for {} ({zone})",
                days.join(","),
                r.start_time,
                duration_text(r.duration.as_ref())
            )
        }
        _ => format!(
            "{} → {}",
            at(silence.starts_at.as_ref()),
            at(silence.ends_at.as_ref())
        ),
    }
}

/// A silence as `--json` prints it: matchers in words, times in RFC 3339.
#[derive(Debug, Serialize)]
struct SilenceJson {
    id: String,
    maintenance: bool,
    matchers: Vec<String>,
    rule_id: String,
    starts_at: Option<String>,
    ends_at: Option<String>,
    weekly: Option<WeeklyJson>,
    created_by: String,
    comment: String,
    created_at: Option<String>,
    active: bool,
    expired: bool,
    next_start_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct WeeklyJson {
    weekdays: Vec<String>,
    start_time: String,
    duration_seconds: i64,
    timezone: String,
}

impl SilenceJson {
    async fn of(silence: &Silence, names: &mut Names<'_>) -> Self {
        let mut matchers = Vec::new();
        for matcher in &silence.matchers {
            matchers.push(names.describe(matcher).await);
        }
        let weekly = silence
            .recurrence
            .as_ref()
            .filter(|r| r.kind() == RecurrenceKind::Weekly)
            .map(|r| WeeklyJson {
                weekdays: r
                    .weekdays()
                    .map(|d| enum_text(d.as_str_name(), "WEEKDAY_"))
                    .collect(),
                start_time: r.start_time.clone(),
                duration_seconds: r.duration.map_or(0, |d| d.seconds),
                timezone: r.timezone.clone(),
            });
        Self {
            id: silence.id.clone(),
            maintenance: silence.maintenance,
            matchers,
            rule_id: silence.rule_id.clone(),
            starts_at: silence.starts_at.map(|t| t.to_string()),
            ends_at: silence.ends_at.map(|t| t.to_string()),
            weekly,
            created_by: silence.created_by.clone(),
            comment: silence.comment.clone(),
            created_at: silence.created_at.map(|t| t.to_string()),
            active: silence.active,
            expired: silence.expired,
            next_start_at: silence.next_start_at.map(|t| t.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_take_lists_and_ranges() {
        assert_eq!(
            parse_weekdays("sat,sun").unwrap().0,
            [Weekday::Saturday, Weekday::Sunday]
        );
        assert_eq!(parse_weekdays("mon-fri").unwrap().0.len(), 5);
        assert_eq!(parse_weekdays("Tuesday").unwrap().0, [Weekday::Tuesday]);
        assert!(parse_weekdays("fri-mon").unwrap_err().contains("mon-fri"));
        assert!(parse_weekdays("xyz").is_err());
        assert!(parse_weekdays("t").is_err());
    }

    #[test]
    fn windows_read_at_a_glance() {
        let weekly = Silence {
            recurrence: Some(Recurrence {
                kind: RecurrenceKind::Weekly as i32,
                weekdays: vec![Weekday::Saturday as i32, Weekday::Sunday as i32],
                start_time: "02:00".into(),
                duration: Some(prost_types::Duration {
                    seconds: 4 * 3600,
                    nanos: 0,
                }),
                timezone: "Asia/Tbilisi".into(),
            }),
            ..Silence::default()
        };
        assert_eq!(
            when_text(&weekly),
            "weekly sat,sun 02:00 for 4h (Asia/Tbilisi)"
        );
        assert_eq!(
            status_text(&Silence {
                active: true,
                ..Silence::default()
            }),
            "active"
        );
    }
}
