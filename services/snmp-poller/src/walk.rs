//! Table walks: several columns side by side in one GETBULK per round
//! (GETNEXT for SNMPv1), with `max_repetitions` adapting to the agent, and
//! every way an agent can misbehave ending the walk cleanly — leaving the
//! column, endOfMibView, an OID that does not increase (a loop), an empty
//! answer, or a runaway table.

use tokio::time::Instant;

use crate::snmp::{AgentStatus, Oid, Session, SnmpError, Value, VarBind, Version};

/// Bounds of `max_repetitions` (as `SnmpHints` documents them).
pub const MIN_REPETITIONS: u32 = 1;
pub const MAX_REPETITIONS: u32 = 100;
/// Start value when nothing is known about the agent.
pub const DEFAULT_REPETITIONS: u32 = 10;
/// Variable bindings asked for in one GETBULK at most (columns × repetitions):
/// keeps answers near a few kilobytes, so they are not fragmented into many
/// IP packets on a WAN link.
const MAX_BINDINGS_PER_BULK: u32 = 256;
/// SNMP error-status genErr (RFC 3416).
const GEN_ERR: i32 = 5;
/// Rows taken from one column at most: a bound on an agent that keeps
/// inventing increasing OIDs.
pub const MAX_ROWS_PER_COLUMN: usize = 65_536;

/// GETBULK `max_repetitions` for one agent: halved on tooBig or a timeout,
/// grown back (doubled) after an answer that filled the request, never
/// above the value that last failed in this poll. The next poll starts from
/// [`Repetitions::for_next_poll`]: no more than the longest table seen needs,
/// so an agent with two interfaces is not asked for ten rows of each column
/// (agents spend CPU on every binding, wasted or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repetitions {
    current: u32,
    /// One below the smallest value that failed in this poll.
    ceiling: u32,
    /// Most rows of one column in a walk that ran to its end; None until one did.
    longest_table: Option<usize>,
}

impl Repetitions {
    /// Starts from a hint (0 = unknown → the default).
    pub fn new(hint: u32) -> Self {
        let start = if hint == 0 { DEFAULT_REPETITIONS } else { hint };
        Self {
            current: start.clamp(MIN_REPETITIONS, MAX_REPETITIONS),
            ceiling: MAX_REPETITIONS,
            longest_table: None,
        }
    }

    /// The start value for the next poll (reported in the hints): the
    /// current value, or one more than the longest table when that is less
    /// (one more, so the answer also shows the table's end).
    pub fn for_next_poll(&self) -> u32 {
        match self.longest_table {
            Some(rows) => {
                let fits = u32::try_from(rows + 1).unwrap_or(MAX_REPETITIONS);
                self.current.min(fits).max(MIN_REPETITIONS)
            }
            None => self.current,
        }
    }

    fn saw_table(&mut self, rows: usize) {
        self.longest_table = Some(self.longest_table.unwrap_or(0).max(rows));
    }

    pub fn current(&self) -> u32 {
        self.current
    }

    /// After tooBig or a timeout: halves. False when already at 1.
    pub fn shrink(&mut self) -> bool {
        if self.current <= MIN_REPETITIONS {
            return false;
        }
        self.ceiling = self.current - 1;
        self.current = (self.current / 2).max(MIN_REPETITIONS);
        true
    }

    /// After an answer: doubles when the answer was full and the walk goes
    /// on (the agent had more rows than were asked for), up to the ceiling.
    /// An answer that ended every column is no reason to ask for more.
    pub fn answered(&mut self, full_and_more: bool) {
        if full_and_more {
            self.current = (self.current * 2).min(self.ceiling).max(MIN_REPETITIONS);
        }
    }
}

/// One walked cell: the instance arcs after the column OID, and the value.
pub type Cell = (Vec<u32>, Value);

/// What a walk gathered, column by column (in the order asked).
#[derive(Debug, Default)]
pub struct Walked {
    pub columns: Vec<Vec<Cell>>,
    /// At least one request was answered.
    pub answered: bool,
    /// The deadline stopped the walk before every column ended.
    pub cut: bool,
    /// Columns that ended on agent misbehaviour or an agent error (said in
    /// the sample's error_detail; the cells before it are kept).
    pub notes: Vec<String>,
    /// The agent error-status that ended columns (genErr, noAccess…), the
    /// first one: the poll is then not complete, and says so.
    pub refused: Option<SnmpError>,
    /// A failure that ends the whole poll (security, timeout, send).
    pub fatal: Option<SnmpError>,
    /// The answers to the riders (one each, in order), when they were read.
    pub riders: Option<Vec<VarBind>>,
}

struct Column {
    root: Oid,
    cursor: Oid,
    done: bool,
}

/// Walks `columns` of `session` until each has ended or `deadline` passes.
///
/// `riders` ride along in the first GETBULK as non-repeaters (one GETNEXT
/// each, answered in `Walked::riders`), so a device's scalars and its table
/// cost one request, not two. They stay in the request until it is
/// answered (tooBig only shrinks the repetitions); an agent error, or an
/// answer too short to hold them, drops them and the walk asks again
/// without them (the caller then reads them its own way). SNMPv1 has no
/// GETBULK: riders are left unread.
pub async fn walk<S: Session>(
    session: &S,
    riders: &[Oid],
    columns: &[Oid],
    repetitions: &mut Repetitions,
    deadline: Instant,
) -> Walked {
    let mut walked = Walked {
        columns: vec![Vec::new(); columns.len()],
        ..Walked::default()
    };
    let mut state: Vec<Column> = columns
        .iter()
        .map(|root| Column {
            root: root.clone(),
            cursor: root.clone(),
            done: false,
        })
        .collect();
    // A timeout after earlier answers is retried once with fewer
    // repetitions (a big answer may have been lost); twice in a row is fatal.
    let mut timeouts_in_a_row = 0;
    let bulk = session.version() != Version::V1;
    let mut riders = if bulk { riders } else { &[] };
    loop {
        let active: Vec<usize> = (0..state.len()).filter(|&i| !state[i].done).collect();
        if active.is_empty() {
            let longest = walked.columns.iter().map(Vec::len).max().unwrap_or(0);
            repetitions.saw_table(longest);
            return walked;
        }
        if Instant::now() >= deadline {
            walked.cut = true;
            return walked;
        }
        let oids: Vec<Oid> = active.iter().map(|&i| state[i].cursor.clone()).collect();
        let asked = if bulk {
            let room = MAX_BINDINGS_PER_BULK.saturating_sub(riders.len() as u32);
            let cap = (room / oids.len() as u32).max(1);
            repetitions.current().min(cap)
        } else {
            1
        };
        let request = async {
            if bulk {
                session.get_bulk(riders, &oids, asked).await
            } else {
                session.get_next(&oids).await
            }
        };
        let answer = match tokio::time::timeout_at(deadline, request).await {
            Ok(answer) => answer,
            Err(_) => {
                walked.cut = true;
                return walked;
            }
        };
        let varbinds = match answer {
            Ok(mut varbinds) => {
                timeouts_in_a_row = 0;
                walked.answered = true;
                if !riders.is_empty() {
                    if varbinds.len() < riders.len() {
                        // Not even the non-repeaters: ask again without them.
                        riders = &[];
                        continue;
                    }
                    let repeaters = varbinds.split_off(riders.len());
                    walked.riders = Some(varbinds);
                    riders = &[];
                    repeaters
                } else {
                    varbinds
                }
            }
            Err(error) if error.is_too_big() && bulk && repetitions.shrink() => continue,
            // genErr for the request as a whole (index 0) to a GETBULK of
            // several rows: how net-snmp answers when the response it built
            // does not fit the message size (see snmp.rs, V3_MSG_MAX_SIZE),
            // and what other agents do when an answer outgrows their own
            // buffer. Fewer rows, as on tooBig; at one row it is the agent's
            // error.
            Err(SnmpError::Agent {
                status: AgentStatus::Other(GEN_ERR),
                index: 0,
            }) if bulk && asked > 1 && repetitions.shrink() => continue,
            Err(error)
                if error.is_timeout()
                    && bulk
                    && walked.answered
                    && timeouts_in_a_row == 0
                    && repetitions.shrink() =>
            {
                timeouts_in_a_row += 1;
                continue;
            }
            // SNMPv1 ends a GETNEXT walk with noSuchName on the column past
            // its end (error_index is 1-based); the other columns go on.
            Err(SnmpError::Agent {
                status: AgentStatus::NoSuchName,
                index,
            }) if !bulk && index >= 1 && (index as usize) <= active.len() => {
                state[active[index as usize - 1]].done = true;
                continue;
            }
            Err(SnmpError::Agent { .. }) if !riders.is_empty() => {
                // Perhaps a rider is what the agent refuses: the columns
                // are asked again on their own.
                riders = &[];
                continue;
            }
            Err(error @ SnmpError::Agent { .. }) => {
                // The agent refuses these columns (genErr, noAccess, a
                // tooBig even at one repetition): keep what was read.
                for &i in &active {
                    state[i].done = true;
                }
                walked
                    .notes
                    .push(format!("walk of {} ended: {error}", list(&oids)));
                walked.refused.get_or_insert(error);
                continue;
            }
            Err(error) => {
                walked.fatal = Some(error);
                return walked;
            }
        };
        let full = bulk && varbinds.len() >= oids.len() * asked as usize;
        if varbinds.is_empty() {
            // An empty answer would repeat forever: the columns end here.
            for &i in &active {
                state[i].done = true;
            }
            walked
                .notes
                .push(format!("empty answer walking {}", list(&oids)));
            continue;
        }
        // Bindings come row by row: binding k belongs to active[k % n].
        for (k, varbind) in varbinds.into_iter().enumerate() {
            let i = active[k % active.len()];
            let column = &mut state[i];
            if column.done {
                continue;
            }
            if varbind.value == Value::EndOfMibView {
                column.done = true;
                continue;
            }
            let Some(instance) = varbind.oid.suffix_after(&column.root) else {
                // Left the column: its end.
                column.done = true;
                continue;
            };
            if varbind.oid <= column.cursor {
                column.done = true;
                walked.notes.push(format!(
                    "walk of {} ended: the agent returned {} after {} (not increasing)",
                    column.root, varbind.oid, column.cursor
                ));
                continue;
            }
            let instance = instance.to_vec();
            column.cursor = varbind.oid;
            walked.columns[i].push((instance, varbind.value));
            if walked.columns[i].len() >= MAX_ROWS_PER_COLUMN {
                column.done = true;
                walked.notes.push(format!(
                    "walk of {} stopped after {MAX_ROWS_PER_COLUMN} rows",
                    column.root
                ));
            }
        }
        repetitions.answered(full && state.iter().any(|c| !c.done));
    }
}

fn list(oids: &[Oid]) -> String {
    oids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::snmp::VarBind;

    /// An in-memory agent for the walk logic: a sorted MIB, a limit on
    /// bindings per answer (past it: tooBig), and scripted misbehaviour.
    pub struct FakeAgent {
        pub version: Version,
        pub mib: BTreeMap<Oid, Value>,
        /// Answers with more bindings than this are tooBig.
        pub max_bindings: usize,
        /// GETNEXT of an OID in this map answers the mapped OID instead
        /// (loops, going backwards).
        pub twists: BTreeMap<Oid, Oid>,
        /// Requests that time out, by request number (1-based).
        pub timeouts: Mutex<Vec<u32>>,
        pub sent: AtomicU32,
        pub asked_repetitions: Mutex<Vec<u32>>,
        /// Non-repeaters per GETBULK, in order.
        pub asked_non_repeaters: Mutex<Vec<usize>>,
        /// Non-repeaters a GETBULK answers genErr for.
        pub refused: Vec<Oid>,
        /// The error-status of an answer over `max_bindings`: tooBig, or
        /// genErr at index 0 as net-snmp answers one that outgrew the
        /// request's msgMaxSize.
        pub over_size: AgentStatus,
        /// Columns (prefixes) whose GETBULK always fails, genErr at index 0.
        pub broken: Vec<Oid>,
    }

    impl FakeAgent {
        pub fn new(version: Version) -> Self {
            Self {
                version,
                mib: BTreeMap::new(),
                max_bindings: usize::MAX,
                twists: BTreeMap::new(),
                timeouts: Mutex::new(Vec::new()),
                sent: AtomicU32::new(0),
                asked_repetitions: Mutex::new(Vec::new()),
                asked_non_repeaters: Mutex::new(Vec::new()),
                refused: Vec::new(),
                over_size: AgentStatus::TooBig,
                broken: Vec::new(),
            }
        }

        pub fn set(&mut self, oid: &str, value: Value) {
            self.mib.insert(Oid::parse(oid).unwrap_or_default(), value);
        }

        fn next(&self, oid: &Oid) -> VarBind {
            if let Some(twisted) = self.twists.get(oid) {
                let value = self.mib.get(twisted).cloned().unwrap_or(Value::Integer(0));
                return VarBind {
                    oid: twisted.clone(),
                    value,
                };
            }
            match self
                .mib
                .range((
                    std::ops::Bound::Excluded(oid.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
            {
                Some((next, value)) => VarBind {
                    oid: next.clone(),
                    value: value.clone(),
                },
                None => VarBind {
                    oid: oid.clone(),
                    value: Value::EndOfMibView,
                },
            }
        }

        fn count(&self) -> Result<(), SnmpError> {
            let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
            if self
                .timeouts
                .lock()
                .map(|t| t.contains(&n))
                .unwrap_or(false)
            {
                return Err(SnmpError::Timeout {
                    timeout_ms: 10,
                    attempts: 1,
                });
            }
            Ok(())
        }
    }

    impl Session for FakeAgent {
        fn version(&self) -> Version {
            self.version
        }

        async fn get(&self, oids: &[Oid]) -> Result<Vec<VarBind>, SnmpError> {
            self.count()?;
            Ok(oids
                .iter()
                .map(|oid| VarBind {
                    oid: oid.clone(),
                    value: self.mib.get(oid).cloned().unwrap_or(Value::NoSuchObject),
                })
                .collect())
        }

        async fn get_next(&self, oids: &[Oid]) -> Result<Vec<VarBind>, SnmpError> {
            self.count()?;
            let mut out = Vec::new();
            for (i, oid) in oids.iter().enumerate() {
                let next = self.next(oid);
                if next.value == Value::EndOfMibView {
                    return Err(SnmpError::Agent {
                        status: AgentStatus::NoSuchName,
                        index: i as u32 + 1,
                    });
                }
                out.push(next);
            }
            Ok(out)
        }

        async fn get_bulk(
            &self,
            non_repeaters: &[Oid],
            oids: &[Oid],
            max_repetitions: u32,
        ) -> Result<Vec<VarBind>, SnmpError> {
            if let Ok(mut asked) = self.asked_repetitions.lock() {
                asked.push(max_repetitions);
            }
            if let Ok(mut riders) = self.asked_non_repeaters.lock() {
                riders.push(non_repeaters.len());
            }
            self.count()?;
            if non_repeaters.len() + oids.len() * max_repetitions as usize > self.max_bindings {
                return Err(SnmpError::Agent {
                    status: self.over_size,
                    index: 0,
                });
            }
            if oids
                .iter()
                .any(|oid| self.broken.iter().any(|b| oid.starts_with(b)))
            {
                return Err(SnmpError::Agent {
                    status: AgentStatus::Other(GEN_ERR),
                    index: 0,
                });
            }
            if let Some(i) = non_repeaters.iter().position(|o| self.refused.contains(o)) {
                return Err(SnmpError::Agent {
                    status: AgentStatus::Other(5),
                    index: i as u32 + 1,
                });
            }
            let mut out: Vec<VarBind> = non_repeaters.iter().map(|o| self.next(o)).collect();
            let mut cursors = oids.to_vec();
            for _ in 0..max_repetitions {
                for cursor in &mut cursors {
                    let next = self.next(cursor);
                    *cursor = next.oid.clone();
                    out.push(next);
                }
            }
            Ok(out)
        }

        fn requests_sent(&self) -> u32 {
            self.sent.load(Ordering::Relaxed)
        }

        async fn engine_answers(&self, _timeout: Duration) -> bool {
            false
        }

        async fn answers_without_privacy(&self, _timeout: Duration) -> bool {
            false
        }
    }

    fn oid(text: &str) -> Oid {
        Oid::parse(text).unwrap_or_default()
    }

    fn table(agent: &mut FakeAgent, column: &str, rows: u32) {
        for row in 1..=rows {
            agent.set(&format!("{column}.{row}"), Value::Integer(i64::from(row)));
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn columns_are_walked_side_by_side_to_their_ends() {
        for version in [Version::V2c, Version::V1] {
            let mut agent = FakeAgent::new(version);
            table(&mut agent, "1.3.6.1.2.1.2.2.1.7", 25);
            table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 25);
            agent.set("1.3.6.1.2.1.2.2.1.9.1", Value::TimeTicks(5));
            let mut reps = Repetitions::new(10);
            let walked = walk(
                &agent,
                &[],
                &[oid("1.3.6.1.2.1.2.2.1.7"), oid("1.3.6.1.2.1.2.2.1.8")],
                &mut reps,
                later(),
            )
            .await;
            assert!(
                walked.fatal.is_none() && !walked.cut && walked.notes.is_empty(),
                "{walked:?}"
            );
            assert_eq!(walked.columns[0].len(), 25);
            assert_eq!(walked.columns[1].len(), 25);
            assert_eq!(walked.columns[1][24], (vec![25], Value::Integer(25)));
            if version == Version::V2c {
                // 10 rows, then 20 (grown after a full answer): 2 requests.
                assert_eq!(agent.requests_sent(), 2);
            } else {
                assert_eq!(agent.requests_sent(), 26);
            }
        }
    }

    #[tokio::test]
    async fn loops_and_backward_oids_end_the_walk_cleanly() {
        for version in [Version::V2c, Version::V1] {
            let mut agent = FakeAgent::new(version);
            table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 6);
            // After row 3 the agent answers row 2 again (a loop), forever.
            agent
                .twists
                .insert(oid("1.3.6.1.2.1.2.2.1.8.3"), oid("1.3.6.1.2.1.2.2.1.8.2"));
            let mut reps = Repetitions::new(4);
            let walked = walk(
                &agent,
                &[],
                &[oid("1.3.6.1.2.1.2.2.1.8")],
                &mut reps,
                later(),
            )
            .await;
            let rows: Vec<u32> = walked.columns[0].iter().map(|(i, _)| i[0]).collect();
            assert_eq!(rows, [1, 2, 3]);
            assert!(walked.fatal.is_none() && !walked.cut);
            assert!(
                walked.notes[0].contains("not increasing"),
                "{:?}",
                walked.notes
            );
            assert!(
                agent.requests_sent() <= 4,
                "{version:?}: {}",
                agent.requests_sent()
            );
        }
        // The same OID over and over.
        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.4.1.9.9.109.1.1.1.1.8", 2);
        agent.twists.insert(
            oid("1.3.6.1.4.1.9.9.109.1.1.1.1.8.1"),
            oid("1.3.6.1.4.1.9.9.109.1.1.1.1.8.1"),
        );
        let mut reps = Repetitions::new(10);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.4.1.9.9.109.1.1.1.1.8")],
            &mut reps,
            later(),
        )
        .await;
        assert_eq!(walked.columns[0].len(), 1);
        assert_eq!(agent.requests_sent(), 1);
    }

    #[tokio::test]
    async fn end_of_mib_view_and_empty_tables_end_the_walk() {
        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.2.1.31.1.1.1.18", 3);
        let mut reps = Repetitions::new(10);
        let walked = walk(
            &agent,
            &[],
            &[
                oid("1.3.6.1.2.1.31.1.1.1.18"),
                oid("1.3.6.1.2.1.31.1.1.1.6"),
            ],
            &mut reps,
            later(),
        )
        .await;
        assert_eq!(walked.columns[0].len(), 3);
        assert!(walked.columns[1].is_empty());
        assert_eq!(agent.requests_sent(), 1);
    }

    #[test]
    fn repetitions_halve_on_failure_and_grow_back_below_the_failure() {
        let mut reps = Repetitions::new(0);
        assert_eq!(reps.current(), DEFAULT_REPETITIONS);
        reps.answered(true);
        assert_eq!(reps.current(), 20);
        assert!(reps.shrink());
        assert_eq!(reps.current(), 10);
        reps.answered(true);
        assert_eq!(reps.current(), 19, "never back to the value that failed");
        reps.answered(false);
        assert_eq!(reps.current(), 19, "a short answer does not grow it");
        // The next poll asks for no more rows than the longest table had.
        reps.saw_table(2);
        assert_eq!(reps.for_next_poll(), 3);
        reps.saw_table(48);
        assert_eq!(reps.for_next_poll(), 19);
        let mut low = Repetitions::new(1);
        assert!(!low.shrink());
        assert_eq!(Repetitions::new(500).current(), MAX_REPETITIONS);
    }

    #[tokio::test]
    async fn too_big_halves_repetitions_and_the_walk_completes() {
        let mut agent = FakeAgent::new(Version::V2c);
        agent.max_bindings = 12;
        table(&mut agent, "1.3.6.1.2.1.2.2.1.10", 40);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.16", 40);
        let mut reps = Repetitions::new(40);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.2.1.2.2.1.10"), oid("1.3.6.1.2.1.2.2.1.16")],
            &mut reps,
            later(),
        )
        .await;
        assert!(
            walked.fatal.is_none() && walked.notes.is_empty(),
            "{walked:?}"
        );
        assert_eq!((walked.columns[0].len(), walked.columns[1].len()), (40, 40));
        let asked = agent
            .asked_repetitions
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        // 40, 20 and 10 are too big for 2 columns × 12 bindings; 5 fits.
        // Growing back probes below the last failure each time, so it
        // settles at the largest value that fits within a few tries.
        assert_eq!(&asked[..4], &[40, 20, 10, 5]);
        let failures = asked.iter().filter(|&&r| r * 2 > 12).count();
        assert!(failures <= 7, "{asked:?}");
        assert_eq!(reps.current(), 6, "{asked:?}");
    }

    #[tokio::test]
    async fn gen_err_for_a_whole_bulk_halves_repetitions_like_too_big() {
        // net-snmp under SNMPv3: an answer outgrowing msgMaxSize is genErr
        // at index 0, not tooBig.
        let mut agent = FakeAgent::new(Version::V3);
        agent.max_bindings = 12;
        agent.over_size = AgentStatus::Other(GEN_ERR);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.10", 40);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.16", 40);
        let mut reps = Repetitions::new(10);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.2.1.2.2.1.10"), oid("1.3.6.1.2.1.2.2.1.16")],
            &mut reps,
            later(),
        )
        .await;
        assert!(
            walked.fatal.is_none() && walked.refused.is_none() && walked.notes.is_empty(),
            "{walked:?}"
        );
        assert_eq!((walked.columns[0].len(), walked.columns[1].len()), (40, 40));
        let asked = agent
            .asked_repetitions
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        assert_eq!(&asked[..2], &[10, 5]);
        assert!(reps.for_next_poll() <= 6, "{asked:?}");
    }

    #[tokio::test]
    async fn gen_err_at_one_row_ends_the_walk_as_refused() {
        let mut agent = FakeAgent::new(Version::V3);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 3);
        agent.broken = vec![oid("1.3.6.1.2.1.2.2.1.8")];
        let mut reps = Repetitions::new(4);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.2.1.2.2.1.8")],
            &mut reps,
            later(),
        )
        .await;
        assert!(walked.fatal.is_none());
        assert!(walked.columns[0].is_empty());
        assert!(
            matches!(
                walked.refused,
                Some(SnmpError::Agent {
                    status: AgentStatus::Other(GEN_ERR),
                    index: 0
                })
            ),
            "{walked:?}"
        );
        assert!(walked.notes[0].contains("ended"), "{:?}", walked.notes);
        // 4, 2, 1 rows: halved down to one before giving up.
        assert_eq!(agent.requests_sent(), 3);
    }

    #[tokio::test]
    async fn a_timeout_after_answers_is_retried_smaller_then_fatal() {
        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 30);
        agent.timeouts = Mutex::new(vec![2]);
        let mut reps = Repetitions::new(8);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.2.1.2.2.1.8")],
            &mut reps,
            later(),
        )
        .await;
        assert!(walked.fatal.is_none(), "{walked:?}");
        assert_eq!(walked.columns[0].len(), 30);
        let asked = agent
            .asked_repetitions
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        assert_eq!(&asked[..3], &[8, 16, 8], "halved after the timeout");

        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 30);
        agent.timeouts = Mutex::new(vec![2, 3]);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.2.1.2.2.1.8")],
            &mut Repetitions::new(8),
            later(),
        )
        .await;
        assert!(matches!(walked.fatal, Some(SnmpError::Timeout { .. })));
        assert_eq!(walked.columns[0].len(), 8, "what came before is kept");

        // A first request that times out is not retried: the agent is away.
        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 3);
        agent.timeouts = Mutex::new(vec![1]);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.2.1.2.2.1.8")],
            &mut Repetitions::new(8),
            later(),
        )
        .await;
        assert!(matches!(walked.fatal, Some(SnmpError::Timeout { .. })));
        assert_eq!(agent.requests_sent(), 1);
    }

    #[tokio::test]
    async fn riders_go_as_non_repeaters_of_the_first_request_only() {
        let mut agent = FakeAgent::new(Version::V2c);
        agent.set("1.3.6.1.2.1.1.3.0", Value::TimeTicks(42));
        agent.set("1.3.6.1.2.1.1.5.0", Value::OctetString(b"sw".to_vec()));
        table(&mut agent, "1.3.6.1.2.1.2.2.1.7", 12);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 12);
        let mut reps = Repetitions::new(5);
        let walked = walk(
            &agent,
            &[oid("1.3.6.1.2.1.1.3"), oid("1.3.6.1.2.1.1.5")],
            &[oid("1.3.6.1.2.1.2.2.1.7"), oid("1.3.6.1.2.1.2.2.1.8")],
            &mut reps,
            later(),
        )
        .await;
        assert!(
            walked.fatal.is_none() && walked.notes.is_empty(),
            "{walked:?}"
        );
        let riders = walked.riders.unwrap_or_default();
        assert_eq!(
            riders,
            [
                VarBind {
                    oid: oid("1.3.6.1.2.1.1.3.0"),
                    value: Value::TimeTicks(42)
                },
                VarBind {
                    oid: oid("1.3.6.1.2.1.1.5.0"),
                    value: Value::OctetString(b"sw".to_vec())
                },
            ]
        );
        // The rows are the repeaters' alone: the riders are not rows.
        assert_eq!((walked.columns[0].len(), walked.columns[1].len()), (12, 12));
        assert_eq!(walked.columns[0][0], (vec![1], Value::Integer(1)));
        let riders = agent
            .asked_non_repeaters
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        assert_eq!(riders, [2, 0], "5 rows with the riders, then 10 without");
    }

    #[tokio::test]
    async fn riders_count_against_the_bindings_of_a_request() {
        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.7", 300);
        let riders: Vec<Oid> = (1..=6)
            .map(|i| oid(&format!("1.3.6.1.2.1.1.{i}")))
            .collect();
        let mut reps = Repetitions::new(MAX_REPETITIONS);
        // 128 columns: 256 bindings leave room for 2 rows, less 6 riders: 1.
        let columns: Vec<Oid> = (1..=128)
            .map(|c| oid(&format!("1.3.6.1.2.1.2.2.1.7.{c}")))
            .collect();
        let _ = walk(&agent, &riders, &columns, &mut reps, later()).await;
        let asked = agent
            .asked_repetitions
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        assert_eq!(asked[0], 1, "{asked:?}");
    }

    #[tokio::test]
    async fn a_refused_rider_is_dropped_and_too_big_keeps_the_riders() {
        // genErr on the combined request: the columns are asked again
        // alone, the riders are left to the caller.
        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 3);
        agent.refused = vec![oid("1.3.6.1.4.1.9.2.1.58")];
        let mut reps = Repetitions::new(4);
        let walked = walk(
            &agent,
            &[oid("1.3.6.1.2.1.1.3"), oid("1.3.6.1.4.1.9.2.1.58")],
            &[oid("1.3.6.1.2.1.2.2.1.8")],
            &mut reps,
            later(),
        )
        .await;
        assert!(walked.riders.is_none());
        assert!(
            walked.fatal.is_none() && walked.notes.is_empty(),
            "{walked:?}"
        );
        assert_eq!(walked.columns[0].len(), 3);
        assert_eq!(agent.requests_sent(), 2);

        // tooBig: fewer repetitions, the riders still aboard.
        let mut agent = FakeAgent::new(Version::V2c);
        agent.max_bindings = 6;
        agent.set("1.3.6.1.2.1.1.3.0", Value::TimeTicks(7));
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 3);
        let mut reps = Repetitions::new(8);
        let walked = walk(
            &agent,
            &[oid("1.3.6.1.2.1.1.3")],
            &[oid("1.3.6.1.2.1.2.2.1.8")],
            &mut reps,
            later(),
        )
        .await;
        assert_eq!(
            walked.riders.map(|r| r.len()),
            Some(1),
            "answered after the halving"
        );
        assert_eq!(walked.columns[0].len(), 3);
        let riders = agent
            .asked_non_repeaters
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        assert_eq!(riders, [1, 1]);

        // SNMPv1 has no GETBULK: riders are left unread.
        let mut agent = FakeAgent::new(Version::V1);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 2);
        let walked = walk(
            &agent,
            &[oid("1.3.6.1.2.1.1.3")],
            &[oid("1.3.6.1.2.1.2.2.1.8")],
            &mut Repetitions::new(4),
            later(),
        )
        .await;
        assert!(walked.riders.is_none());
        assert_eq!(walked.columns[0].len(), 2);
    }

    #[tokio::test]
    async fn a_walk_sized_from_the_hint_is_one_request_and_does_not_grow() {
        // The previous poll saw 2 rows: 3 repetitions show both and the
        // end; the full answer ended every column, so nothing doubles.
        let mut agent = FakeAgent::new(Version::V2c);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.7", 2);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.8", 2);
        table(&mut agent, "1.3.6.1.2.1.2.2.1.9", 2);
        let mut reps = Repetitions::new(3);
        let walked = walk(
            &agent,
            &[],
            &[oid("1.3.6.1.2.1.2.2.1.7"), oid("1.3.6.1.2.1.2.2.1.8")],
            &mut reps,
            later(),
        )
        .await;
        assert_eq!((walked.columns[0].len(), walked.columns[1].len()), (2, 2));
        assert_eq!(agent.requests_sent(), 1);
        assert_eq!(reps.current(), 3);
        assert_eq!(reps.for_next_poll(), 3);
    }
}
