//! A checker of what several `demo` instances said during a fault test: their `--json` events,
//! the moments the test stopped, resumed or killed them, the `GET /` and `GET /leader` answers
//! sampled from them, and the moments faults healed.
//!
//! It fails on:
//! - **two leaders at once**: an instance leads from its `leading` line to its `stopped_leading`
//!   line, or to the moment it was SIGSTOPped or killed, whichever comes first (a stopped
//!   process cannot act, and whatever it believes after SIGCONT is no longer a valid term);
//! - **a token that does not strictly increase** across terms taken in start order;
//! - **a stale answer**: an instance names itself in `GET /`, or says `is_leader: true` or
//!   names itself as `leader` in `GET /leader`, while none of its terms runs; or it names
//!   another instance that was not leading within the allowed staleness on either side (a
//!   standby may go on naming a leader until the lease it observed for it runs out, and may
//!   read a new leader's record before that leader prints its `leading` line; naming another
//!   is no claim, so this check is loose);
//! - **no leader within a bound** after a fault healed;
//! - **a resumed process whose first event claims its old term**;
//! - event lines out of order or not of the documented form.
//!
//! Every time is wall-clock UTC: the demo's `ts` and the test's `Utc::now()` come from the same
//! machine clock, and no test here steps it. An answer is judged over the whole window from
//! the request being sent to the reply arriving (it was made somewhere in it), so only answers
//! that are wrong at every moment of their window count.

use std::fmt::{self, Write as _};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::demo::DemoEvent;

/// How a heal is named among the faults.
const HEALED: &str = "healed";

/// How many stale answers of one instance a report shows (the count of all is given).
const STALE_SHOWN: usize = 3;

/// What the test did to an instance's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessAction {
    /// SIGSTOP: the process is frozen from this moment.
    Stopped,
    /// SIGCONT after a stop.
    Resumed,
    /// SIGKILL, or any end the process did not choose.
    Killed,
}

/// One answer of an instance's HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `GET /`: the name it gave (empty: nobody known to lead).
    Name(String),
    /// `GET /leader`: its `is_leader` and `leader` fields.
    Leader {
        /// Whether it said it leads.
        is_leader: bool,
        /// The holder it named.
        leader: Option<String>,
    },
}

impl Answer {
    /// True when the answer, given by `instance`, says that `instance` leads: `GET /` names it,
    /// or `GET /leader` says `is_leader` or names it as the leader (issue 11: everything that
    /// answers "who leads" names this instance only while its term is valid).
    pub fn claims(&self, instance: &str) -> bool {
        match self {
            Self::Name(name) => name == instance,
            Self::Leader { is_leader, leader } => *is_leader || leader.as_deref() == Some(instance),
        }
    }
}

/// One sampled answer, with the window in which it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The instance that answered.
    pub instance: String,
    /// When the request was sent.
    pub sent: DateTime<Utc>,
    /// When the reply arrived.
    pub received: DateTime<Utc>,
    /// What it said.
    pub answer: Answer,
}

/// One term as the checker counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The instance that led.
    pub instance: String,
    /// Its fencing token.
    pub token: Option<u64>,
    /// The `ts` of its `leading` line.
    pub start: DateTime<Utc>,
    /// The `ts` of its `stopped_leading` line, or when the process was stopped or killed,
    /// whichever came first; `None` while it runs.
    pub end: Option<DateTime<Utc>>,
    /// What ended it.
    pub ended_by: &'static str,
}

/// The precision of the demo's `ts`: milliseconds, truncated. A term whose `stopped_leading`
/// line says `01.004` may have run until `01.004999`, so an answer sent within that
/// millisecond may still have been true (the overlap check allows a handover within one
/// millisecond for the same reason).
const STAMP_PRECISION: TimeDelta = TimeDelta::milliseconds(1);

/// How much later than the term's start its `leading` line may be stamped: the demo stamps
/// the line in the elector's event callback, which (up to commit b0f26cf) ran just after the
/// term became visible to `GET /`, so an answer may name the instance a moment before the line
/// says its term began (seen in a campaign: 1 ms). A claim before a term's start is no stale
/// answer about a term that is over, which is what the check is for; the allowance is far
/// below any real staleness (a lease is seconds).
const START_STAMP_LAG: Duration = Duration::from_millis(20);

impl Term {
    /// True when the term may run at some moment of `[from, to]`, given the precision of the
    /// stamps.
    fn runs_during(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.start <= to && self.end.is_none_or(|end| end + STAMP_PRECISION > from)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self
            .token
            .map_or_else(|| "?".to_owned(), |token| token.to_string());
        write!(
            f,
            "{} term {token} from {}",
            self.instance,
            time(self.start)
        )?;
        match self.end {
            Some(end) => write!(f, " to {} ({})", time(end), self.ended_by),
            None => write!(f, " (still running)"),
        }
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two terms of different instances ran at once.
    TwoLeaders {
        /// The earlier term.
        first: Term,
        /// The later one.
        second: Term,
        /// How long they overlapped (to the end of the observation for a running term).
        overlap: Duration,
    },
    /// A term's token is not above the token of the term that started before it.
    TokenNotIncreasing {
        /// The earlier term.
        before: Term,
        /// The later one.
        after: Term,
    },
    /// An answer named a leader that was not leading when it was made.
    StaleAnswer {
        /// The sample.
        sample: Sample,
        /// Why it is stale.
        reason: String,
    },
    /// No term ran within the bound after a fault healed.
    NoLeaderAfterHeal {
        /// When the fault healed.
        healed: DateTime<Utc>,
        /// The bound.
        within: Duration,
    },
    /// A resumed process's first event claimed the term it held when stopped.
    ClaimAfterResume {
        /// The instance.
        instance: String,
        /// The event.
        event: String,
    },
    /// An instance's event lines are not in time order, or not of the documented form.
    BadEvents {
        /// The instance.
        instance: String,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TwoLeaders {
                first,
                second,
                overlap,
            } => write!(f, "TWO LEADERS for {overlap:?}: {first} | {second}"),
            Self::TokenNotIncreasing { before, after } => {
                write!(f, "TOKEN NOT INCREASING: {before}, then {after}")
            }
            Self::StaleAnswer { sample, reason } => write!(
                f,
                "STALE ANSWER from {} between {} and {}: {:?}: {reason}",
                sample.instance,
                time(sample.sent),
                time(sample.received),
                sample.answer
            ),
            Self::NoLeaderAfterHeal { healed, within } => write!(
                f,
                "NO LEADER within {within:?} after the fault healed at {}",
                time(*healed)
            ),
            Self::ClaimAfterResume { instance, event } => write!(
                f,
                "CLAIM AFTER RESUME: {instance}'s first event after SIGCONT: {event}"
            ),
            Self::BadEvents { instance, reason } => write!(f, "BAD EVENTS of {instance}: {reason}"),
        }
    }
}

/// Everything one instance said and what was done to it.
#[derive(Clone, Debug, Default)]
struct Instance {
    name: String,
    events: Vec<DemoEvent>,
    unparsed: Vec<String>,
    actions: Vec<(DateTime<Utc>, ProcessAction)>,
}

/// The history of one fault test, filled in as it runs and checked at its end.
#[derive(Clone, Debug, Default)]
pub struct History {
    instances: Vec<Instance>,
    samples: Vec<Sample>,
    /// When faults healed, and how soon after each some instance must lead.
    heals: Vec<(DateTime<Utc>, Duration)>,
    faults: Vec<(DateTime<Utc>, String)>,
    /// Records written from outside: when, the holder they name (empty for a free record) and
    /// its lease (see [`outside_write`](Self::outside_write)).
    outside: Vec<(DateTime<Utc>, String, Duration)>,
    /// How long a leader may go on after an outside write it could not see at once: its renew
    /// deadline (see [`outside_write`](Self::outside_write)).
    outside_grace: Duration,
    /// When the record was deleted from outside: a candidate that creates it again holds it
    /// for a lease before it leads, and meanwhile the others name it (see
    /// [`record_deleted`](Self::record_deleted)).
    deletions: Vec<DateTime<Utc>>,
    /// When an instance's held bytes reached the server late (a cut or a slow network healed):
    /// a write it sent before its term ended may land then (see
    /// [`late_delivery`](Self::late_delivery)): the earliest and latest moment it may have
    /// landed, and the instance.
    late_deliveries: Vec<(DateTime<Utc>, DateTime<Utc>, String)>,
    other_staleness: Duration,
    leader_within: Duration,
    observed_until: Option<DateTime<Utc>>,
}

impl History {
    /// An empty history. `other_staleness`: how long after a leader's term ended another
    /// instance may still name it (the lease duration); `leader_within`: how soon after a heal
    /// some instance must lead (lease + 2 s in the acceptance).
    pub fn new(other_staleness: Duration, leader_within: Duration) -> Self {
        Self {
            other_staleness,
            leader_within,
            ..Self::default()
        }
    }

    fn instance(&mut self, name: &str) -> &mut Instance {
        if let Some(index) = self.instances.iter().position(|i| i.name == name) {
            return &mut self.instances[index];
        }
        self.instances.push(Instance {
            name: name.to_owned(),
            ..Instance::default()
        });
        self.instances.last_mut().expect("just pushed")
    }

    /// Records that the test did `action` to `instance`'s process at `at`.
    pub fn action(&mut self, instance: &str, at: DateTime<Utc>, action: ProcessAction) {
        self.instance(instance).actions.push((at, action));
    }

    /// Records a fault and when it was injected: for the report, and as the end of the
    /// previous heal's watch (from a heal to the next fault, no stretch without a leader may
    /// last longer than the heal's bound).
    pub fn fault(&mut self, at: DateTime<Utc>, what: impl Into<String>) {
        self.faults.push((at, what.into()));
    }

    /// Records that the record was deleted on the server at `at`. After a deletion the
    /// elector waits a lease, then the candidate that creates the record again holds it for
    /// another lease before its term starts (the record may have come and gone unseen): for
    /// that long the others may name an instance that does not lead yet, as the record does.
    pub fn record_deleted(&mut self, at: DateTime<Utc>) {
        self.deletions.push(at);
        self.fault(at, "record deleted on the server");
    }

    /// Records that `instance`'s writes may first reach the others at `at`: its bytes held by a
    /// network fault were delivered (a renew it sent before its term ended, a compare-and-swap
    /// that still matches since nobody wrote, lands then), or the server came back with its
    /// data after an outage in which nobody could read its last renew. Either is a fresh write
    /// for everyone who reads it then: the others rightly name it for a lease from when they
    /// see it, although its process stopped leading. No instance can tell such a write from a
    /// live leader's; it delays a takeover, never hastens one. The same holds for a write to
    /// start a term whose answer was lost or not confirmed durable (its writer logs it): if
    /// it landed, the others name the writer for a lease while it hands the record back.
    pub fn late_delivery(&mut self, instance: &str, at: DateTime<Utc>) {
        self.late_deliveries.push((at, at, instance.to_owned()));
    }

    /// Records that `instance` logged at `logged` that a write to start a term went unanswered
    /// or unconfirmed, from a lock call that lasts at most `call`: the write may have landed
    /// any time from `logged - call` (a Redis write lands, then waits out WAIT's timeout for a
    /// replica) to `logged` (see [`late_delivery`](Self::late_delivery)).
    pub fn unconfirmed_write(&mut self, instance: &str, logged: DateTime<Utc>, call: Duration) {
        let call = TimeDelta::from_std(call).unwrap_or(TimeDelta::MAX);
        self.late_deliveries
            .push((logged - call, logged, instance.to_owned()));
    }

    /// Records that the faults healed at `at`: some instance must lead within the bound.
    pub fn healed(&mut self, at: DateTime<Utc>) {
        self.healed_within(at, self.leader_within);
    }

    /// Records that the faults healed at `at`, after which some instance must lead within
    /// `within` (longer than the default after a deletion: the vanished record's wait and the
    /// new record's hold come first).
    pub fn healed_within(&mut self, at: DateTime<Utc>, within: Duration) {
        self.heals.push((at, within));
        self.fault(at, format!("{HEALED} (a leader due within {within:?})"));
    }

    /// Records that a record naming `holder` (empty: a free record) with lease `lease` was
    /// written from outside at `at`, by a hand or another program, not through an instance.
    ///
    /// What that allows: answers may name `holder` from `at` until its lease and the
    /// staleness ran out; and the leader of the moment, which learns of the write from a hint
    /// or its next renew, may still lead for up to `renew_deadline` after `at` while the
    /// record says otherwise: an overlap that starts after `at` and ends within that grace is
    /// counted in [`forced_overlaps`](Self::forced_overlaps), not as two leaders. Writing the
    /// record by hand is an operator's forced handover, which no elector can make atomic.
    pub fn outside_write(
        &mut self,
        at: DateTime<Utc>,
        holder: &str,
        lease: Duration,
        renew_deadline: Duration,
    ) {
        self.outside.push((at, holder.to_owned(), lease));
        self.outside_grace = self.outside_grace.max(renew_deadline);
        let what = if holder.is_empty() {
            "a free record written from outside".to_owned()
        } else {
            format!("a record of {holder} written from outside")
        };
        self.fault(at, what);
    }

    /// Records an answer.
    pub fn sample(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// Sets `instance`'s event lines (all of them, read at the end), and the lines that did
    /// not parse.
    pub fn events(&mut self, instance: &str, events: Vec<DemoEvent>, unparsed: Vec<String>) {
        let entry = self.instance(instance);
        entry.events = events;
        entry.unparsed = unparsed;
    }

    /// Sets the end of the observation (a running term counts until then).
    pub fn observed_until(&mut self, at: DateTime<Utc>) {
        self.observed_until = Some(at);
    }

    /// The terms of every instance, in start order.
    pub fn terms(&self) -> Vec<Term> {
        let mut terms: Vec<Term> = self.instances.iter().flat_map(terms_of).collect();
        terms.sort_by_key(|term| term.start);
        terms
    }

    /// Every broken rule, in the order of the checks.
    pub fn violations(&self) -> Vec<Violation> {
        let terms = self.terms();
        let mut found = Vec::new();
        self.check_events(&mut found);
        self.check_overlaps(&terms, &mut found);
        check_tokens(&terms, &mut found);
        self.check_answers(&terms, &mut found);
        self.check_heals(&terms, &mut found);
        self.check_resumes(&mut found);
        found
    }

    /// Panics with [`report`](Self::report) when any rule is broken.
    pub fn assert_safe(&self, context: &str) {
        let violations = self.violations();
        if !violations.is_empty() {
            // The violations before the context's long process logs: a CI log keeps only the
            // start and the end of a long failure message.
            let (title, details) = context.split_once('\n').unwrap_or((context, ""));
            panic!(
                "{title}: {} violation(s)\n{}--- context:\n{details}",
                violations.len(),
                self.report(&violations)
            );
        }
        eprintln!(
            "{context}: history checked, no violation\n{}",
            self.report(&[])
        );
    }

    /// The violations, then the terms, faults and actions in time order, and the answers.
    pub fn report(&self, violations: &[Violation]) -> String {
        let mut report = String::new();
        // Stale answers come in runs (the sampler asks every few hundred milliseconds): the
        // first few of each instance are shown, and how many there were.
        let mut stale_shown: Vec<(&str, usize)> = Vec::new();
        for violation in violations {
            if let Violation::StaleAnswer { sample, .. } = violation {
                let instance = sample.instance.as_str();
                let count = match stale_shown.iter_mut().find(|(name, _)| *name == instance) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        stale_shown.push((instance, 1));
                        1
                    }
                };
                if count > STALE_SHOWN {
                    continue;
                }
            }
            let _ = writeln!(report, "VIOLATION: {violation}");
        }
        for (instance, count) in stale_shown {
            let _ = writeln!(report, "{count} stale answers from {instance} in all");
        }
        let _ = writeln!(report, "--- terms in start order:");
        for term in self.terms() {
            let _ = writeln!(report, "  {term}");
        }
        let mut timeline: Vec<(DateTime<Utc>, String)> = self.faults.clone();
        for instance in &self.instances {
            for (at, action) in &instance.actions {
                timeline.push((*at, format!("{} {action:?}", instance.name)));
            }
        }
        timeline.sort_by_key(|(at, _)| *at);
        let _ = writeln!(report, "--- faults and signals:");
        for (at, what) in timeline {
            let _ = writeln!(report, "  {} {what}", time(at));
        }
        let _ = writeln!(report, "--- {} answers sampled", self.samples.len());
        report
    }

    fn check_events(&self, found: &mut Vec<Violation>) {
        for instance in &self.instances {
            for line in &instance.unparsed {
                found.push(Violation::BadEvents {
                    instance: instance.name.clone(),
                    reason: format!("unparsed line {line}"),
                });
            }
            for pair in instance.events.windows(2) {
                if pair[1].ts < pair[0].ts {
                    found.push(Violation::BadEvents {
                        instance: instance.name.clone(),
                        reason: format!("{:?} printed before {:?}", pair[1], pair[0]),
                    });
                }
            }
            if let Some(reason) = sequence_error(&instance.events) {
                found.push(Violation::BadEvents {
                    instance: instance.name.clone(),
                    reason,
                });
            }
            if let Some(stranger) = instance.events.iter().find(|e| e.instance != instance.name) {
                found.push(Violation::BadEvents {
                    instance: instance.name.clone(),
                    reason: format!("a line names another instance: {stranger:?}"),
                });
            }
        }
    }

    fn check_overlaps(&self, terms: &[Term], found: &mut Vec<Violation>) {
        let all = self.with_outside_holders(terms);
        for (first, second, overlap) in self.overlaps(&all) {
            if !self.forced(&first, &second) {
                found.push(Violation::TwoLeaders {
                    first,
                    second,
                    overlap,
                });
            }
        }
    }

    /// `terms` and, for every record written from outside that names a holder, a term of that
    /// holder for its lease from when the write began: no instance may start one inside it
    /// (the leader it replaced may run on within the grace, see `forced`). In start order.
    fn with_outside_holders(&self, terms: &[Term]) -> Vec<Term> {
        let mut all = terms.to_vec();
        for (at, holder, lease) in &self.outside {
            if holder.is_empty() {
                continue;
            }
            all.push(Term {
                instance: format!("{holder} (written from outside)"),
                token: None,
                start: *at,
                end: Some(*at + TimeDelta::from_std(*lease).unwrap_or(TimeDelta::MAX)),
                ended_by: "its lease",
            });
        }
        all.sort_by_key(|term| term.start);
        all
    }

    /// Every pair of terms of different instances that ran at once, with how long.
    fn overlaps(&self, terms: &[Term]) -> Vec<(Term, Term, Duration)> {
        let until = self.observed_until.unwrap_or_else(Utc::now);
        let mut pairs = Vec::new();
        for (index, first) in terms.iter().enumerate() {
            for second in &terms[index + 1..] {
                if first.instance == second.instance {
                    continue;
                }
                // Sorted by start: they overlap when the second starts before the first ends
                // (touching ends, a handover within one millisecond, do not count).
                let first_end = first.end.unwrap_or(until);
                if second.start < first_end {
                    let end = first_end.min(second.end.unwrap_or(until));
                    let overlap = (end - second.start).to_std().unwrap_or_default();
                    pairs.push((first.clone(), second.clone(), overlap));
                }
            }
        }
        pairs
    }

    /// True when `first` went on past an outside write that `second` followed: `second`
    /// started after the write and `first` ended within the grace after it (see
    /// [`outside_write`](Self::outside_write)).
    fn forced(&self, first: &Term, second: &Term) -> bool {
        let grace = TimeDelta::from_std(self.outside_grace).unwrap_or(TimeDelta::MAX);
        self.outside.iter().any(|(at, _, _)| {
            *at <= second.start
                && first.start <= *at
                && first.end.is_some_and(|end| end <= *at + grace)
        })
    }

    /// Overlaps after an outside write that the grace allows: a leader that learned of a hand
    /// edit of the record after the instance that took over from it. Reported, not failed.
    pub fn forced_overlaps(&self) -> Vec<(Term, Term, Duration)> {
        let terms = self.with_outside_holders(&self.terms());
        self.overlaps(&terms)
            .into_iter()
            .filter(|(first, second, _)| self.forced(first, second))
            .collect()
    }

    fn check_answers(&self, terms: &[Term], found: &mut Vec<Violation>) {
        for sample in &self.samples {
            // A request in flight across a stop of the answering process was answered after
            // the resume: judge it from then.
            let from = self
                .instances
                .iter()
                .find(|instance| instance.name == sample.instance)
                .and_then(|instance| {
                    instance
                        .actions
                        .iter()
                        .filter(|(at, action)| {
                            *action == ProcessAction::Resumed
                                && *at >= sample.sent
                                && *at <= sample.received
                        })
                        .map(|(at, _)| *at)
                        .max()
                })
                .unwrap_or(sample.sent);
            let leads = |name: &str, late: Duration, early: Duration| {
                let late = TimeDelta::from_std(late).unwrap_or(TimeDelta::MAX);
                let early = TimeDelta::from_std(early).unwrap_or(TimeDelta::MAX);
                terms.iter().any(|term| {
                    term.instance == name
                        && term.runs_during(
                            from.checked_sub_signed(late).unwrap_or(from),
                            sample
                                .received
                                .checked_add_signed(early)
                                .unwrap_or(sample.received),
                        )
                })
            };
            let claims_self = sample.answer.claims(&sample.instance);
            // A claim may come just before its term's `leading` line is stamped, never after
            // the term's end: see START_STAMP_LAG.
            if claims_self && !leads(&sample.instance, Duration::ZERO, START_STAMP_LAG) {
                found.push(Violation::StaleAnswer {
                    sample: sample.clone(),
                    reason: format!(
                        "{} claims to lead but none of its terms runs",
                        sample.instance
                    ),
                });
                continue;
            }
            let named = match &sample.answer {
                Answer::Name(name) => Some(name.as_str()),
                Answer::Leader { leader, .. } => leader.as_deref(),
            };
            if let Some(other) = named.filter(|n| !n.is_empty() && *n != sample.instance) {
                // A standby may read a new leader's record before that leader has printed its
                // `leading` line: naming another instance early is no claim, so it gets the
                // same allowance ahead as behind.
                // After a deletion: the wait for the vanished record, the hold of the record
                // made again, and the staleness of an answer.
                let held = self.other_staleness * 3 + Duration::from_secs(2);
                let holding = self.deletions.iter().any(|deleted| {
                    *deleted <= sample.received
                        && sample.received - *deleted
                            <= TimeDelta::from_std(held).unwrap_or(TimeDelta::MAX)
                });
                let outside = self.outside.iter().any(|(at, holder, lease)| {
                    let lasts = TimeDelta::from_std(*lease + self.other_staleness)
                        .unwrap_or(TimeDelta::MAX);
                    holder == other && *at <= sample.received && from <= *at + lasts
                });
                let landed_late = self.late_deliveries.iter().any(|(first, last, instance)| {
                    let lasts = TimeDelta::from_std(self.other_staleness).unwrap_or(TimeDelta::MAX);
                    instance == other && *first <= sample.received && from <= *last + lasts
                });
                let handed_back = self.handed_back_near(other, sample.received);
                if !holding
                    && !outside
                    && !landed_late
                    && !handed_back
                    && !leads(other, self.other_staleness, self.other_staleness)
                {
                    found.push(Violation::StaleAnswer {
                        sample: sample.clone(),
                        reason: format!(
                            "names {other}, which did not lead within {:?} before",
                            self.other_staleness
                        ),
                    });
                }
            }
        }
    }

    /// True when `instance` printed `handed_back` around `at`: it released a takeover of its
    /// own that could not start a term (found too late, or not confirmed durable). Until the
    /// release the record named it, so the others rightly named it although it never led
    /// under that record; the write went out at most a lease and a heal bound before the
    /// release (a cut may hide it that long), and the others see the release within a lease.
    fn handed_back_near(&self, instance: &str, at: DateTime<Utc>) -> bool {
        let before = TimeDelta::from_std(self.other_staleness + self.leader_within)
            .unwrap_or(TimeDelta::MAX);
        let after = TimeDelta::from_std(self.other_staleness).unwrap_or(TimeDelta::MAX);
        self.instances
            .iter()
            .filter(|candidate| candidate.name == instance)
            .flat_map(|candidate| &candidate.events)
            .filter(|event| event.event == "handed_back")
            .any(|event| event.ts - before <= at && at <= event.ts + after)
    }

    fn check_heals(&self, terms: &[Term], found: &mut Vec<Violation>) {
        let until = self.observed_until.unwrap_or_else(Utc::now);
        for (healed, within) in &self.heals {
            let bound = *healed + TimeDelta::from_std(*within).unwrap_or(TimeDelta::MAX);
            if !terms.iter().any(|term| term.runs_during(*healed, bound)) {
                found.push(Violation::NoLeaderAfterHeal {
                    healed: *healed,
                    within: *within,
                });
                continue;
            }
            // Until the next fault, every stretch without a leader is short too.
            let next = self
                .faults
                .iter()
                .filter(|(at, what)| at > healed && !what.starts_with(HEALED))
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(until);
            if let Some(gap) = longest_gap(terms, *healed, next) {
                if gap.1 - gap.0 > TimeDelta::from_std(*within).unwrap_or(TimeDelta::MAX) {
                    found.push(Violation::NoLeaderAfterHeal {
                        healed: gap.0,
                        within: *within,
                    });
                }
            }
        }
    }

    fn check_resumes(&self, found: &mut Vec<Violation>) {
        for instance in &self.instances {
            for (resumed, action) in &instance.actions {
                if *action != ProcessAction::Resumed {
                    continue;
                }
                let stopped = instance
                    .actions
                    .iter()
                    .filter(|(at, a)| *a == ProcessAction::Stopped && at <= resumed)
                    .map(|(at, _)| *at)
                    .max();
                let Some(stopped) = stopped else { continue };
                // The term this stop cut short: the latest one that started before it.
                let held = terms_of(instance)
                    .into_iter()
                    .filter(|term| term.start <= stopped && term.ended_by == "SIGSTOP")
                    .max_by_key(|term| term.start);
                let Some(held) = held else { continue };
                // Until the old term's end is printed, nothing may claim it (or an older one).
                let after = instance
                    .events
                    .iter()
                    .filter(|event| event.ts >= *resumed && !event.is_child())
                    .take_while(|event| {
                        !matches!(event.event.as_str(), "stopped_leading" | "released")
                    });
                for event in after {
                    let claims_old = event.event == "leading"
                        && event
                            .term
                            .is_some_and(|t| held.token.is_some_and(|h| t <= h));
                    if claims_old {
                        found.push(Violation::ClaimAfterResume {
                            instance: instance.name.clone(),
                            event: format!("{event:?}"),
                        });
                    }
                }
            }
        }
    }
}

/// What is wrong with the order of one process's events, if anything: a lost or reordered line
/// shows as a `leading` while a term is open, an end of a term with none open or with another
/// token, or `following` while leading. A process's last term may be left open (it was killed).
fn sequence_error(events: &[DemoEvent]) -> Option<String> {
    let mut open: Option<u64> = None;
    let mut closed: Option<u64> = None;
    for event in events {
        match (event.event.as_str(), open) {
            // The hand-over after a cancelled term follows its stopped_leading line.
            ("released", None) if event.term.is_some() && event.term == closed => {}
            ("leading", None) => open = event.term,
            // A standby released a takeover of its own that started no term.
            ("handed_back", None) => {}
            ("handed_back", Some(token)) => {
                return Some(format!(
                    "handed_back (token {:?}) while term {token} is open",
                    event.term
                ))
            }
            ("leading", Some(token)) => {
                return Some(format!(
                    "leading (term {:?}) while term {token} is open: an end was lost",
                    event.term
                ))
            }
            ("stopped_leading" | "released", Some(token)) if event.term == Some(token) => {
                open = None;
                closed = Some(token);
            }
            ("stopped_leading" | "released", _) => {
                return Some(format!(
                    "{} of term {:?} while the open term is {open:?}",
                    event.event, event.term
                ))
            }
            ("following", Some(token)) => {
                return Some(format!(
                    "following while term {token} is open: its end was lost"
                ))
            }
            // Exec mode starts a term's command only while the term is open.
            ("child_started", open) if event.term != open => {
                return Some(format!(
                    "child_started of term {:?} while the open term is {open:?}",
                    event.term
                ))
            }
            _ => {}
        }
    }
    None
}

/// The longest stretch of `[from, to]` in which no term runs, as its start and end.
fn longest_gap(
    terms: &[Term],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = terms
        .iter()
        .map(|term| (term.start, term.end.unwrap_or(to)))
        .filter(|(start, end)| *end > from && *start < to)
        .collect();
    spans.sort();
    let mut cursor = from;
    let mut longest: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    let mut consider = |gap: (DateTime<Utc>, DateTime<Utc>)| {
        if gap.1 > gap.0 && longest.is_none_or(|l| gap.1 - gap.0 > l.1 - l.0) {
            longest = Some(gap);
        }
    };
    for (start, end) in spans {
        if start > cursor {
            consider((cursor, start));
        }
        cursor = cursor.max(end);
    }
    if to > cursor {
        consider((cursor, to));
    }
    longest
}

fn check_tokens(terms: &[Term], found: &mut Vec<Violation>) {
    for pair in terms.windows(2) {
        let increasing = match (pair[0].token, pair[1].token) {
            (Some(before), Some(after)) => after > before,
            _ => false,
        };
        if !increasing {
            found.push(Violation::TokenNotIncreasing {
                before: pair[0].clone(),
                after: pair[1].clone(),
            });
        }
    }
}

/// An instance's terms: from each `leading` line to its `stopped_leading` line, cut short by a
/// stop or a kill of the process.
fn terms_of(instance: &Instance) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    for event in &instance.events {
        match event.event.as_str() {
            "leading" => terms.push(Term {
                instance: instance.name.clone(),
                token: event.term,
                start: event.ts,
                end: None,
                ended_by: "running",
            }),
            "stopped_leading" | "released" | "exiting" => {
                if let Some(open) = terms.last_mut().filter(|term| term.end.is_none()) {
                    open.end = Some(event.ts);
                    open.ended_by = "stopped_leading";
                }
            }
            _ => {}
        }
    }
    for term in &mut terms {
        let cut_short = instance
            .actions
            .iter()
            .filter(|(at, action)| {
                *action != ProcessAction::Resumed
                    && *at >= term.start
                    && term.end.is_none_or(|end| *at < end)
            })
            .min_by_key(|(at, _)| *at);
        if let Some((at, action)) = cut_short {
            term.end = Some(*at);
            term.ended_by = match action {
                ProcessAction::Stopped => "SIGSTOP",
                _ => "killed",
            };
        }
    }
    terms
}

/// A time of day with milliseconds, for reports.
fn time(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S%.3f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn event(instance: &str, event: &str, ms: i64, term: Option<u64>) -> DemoEvent {
        DemoEvent {
            arrived: Instant::now(),
            ts: at(ms),
            instance: instance.into(),
            event: event.into(),
            leader: Some(instance.into()),
            term,
            reason: None,
            exit_code: None,
        }
    }

    /// A history in which `a` led from `start` to `end` (ms).
    fn a_led(start: i64, end: i64) -> History {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", start, Some(1)),
                event("a", "stopped_leading", end, Some(1)),
            ],
            vec![],
        );
        history
    }

    /// `b` naming `a`, asked at `ms`.
    fn b_names_a(ms: i64) -> Sample {
        Sample {
            instance: "b".into(),
            sent: at(ms),
            received: at(ms + 5),
            answer: Answer::Name("a".into()),
        }
    }

    fn history() -> History {
        let mut history = History::new(Duration::from_secs(3), Duration::from_secs(5));
        history.observed_until(at(100_000));
        history
    }

    fn kinds(history: &History) -> Vec<&'static str> {
        history
            .violations()
            .iter()
            .map(|violation| match violation {
                Violation::TwoLeaders { .. } => "two",
                Violation::TokenNotIncreasing { .. } => "token",
                Violation::StaleAnswer { .. } => "stale",
                Violation::NoLeaderAfterHeal { .. } => "none",
                Violation::ClaimAfterResume { .. } => "claim",
                Violation::BadEvents { .. } => "events",
            })
            .collect()
    }

    #[test]
    fn a_clean_handover_passes() {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "stopped_leading", 1000, Some(1)),
            ],
            vec![],
        );
        history.events("b", vec![event("b", "leading", 1000, Some(2))], vec![]);
        history.healed(at(500));
        assert_eq!(kinds(&history), Vec::<&str>::new());
    }

    /// a leads until 1.1 s; a record of "outsider" with a 3 s lease is written at 1 s; b
    /// starts leading at `b_starts` (ms).
    fn after_a_foreign_write(b_starts: i64) -> History {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "stopped_leading", 1100, Some(1)),
            ],
            vec![],
        );
        history.events("b", vec![event("b", "leading", b_starts, Some(3))], vec![]);
        history.outside_write(
            at(1000),
            "outsider",
            Duration::from_secs(3),
            Duration::from_secs(2),
        );
        history
    }

    #[test]
    fn a_term_inside_a_foreign_lease_is_two_leaders_and_the_replaced_leader_is_forced() {
        // b starts inside the foreign lease; a, past the write within its grace, is forced.
        let inside = after_a_foreign_write(2000);
        assert_eq!(kinds(&inside), ["two"]);
        assert_eq!(
            inside.forced_overlaps().len(),
            1,
            "a past the write is forced"
        );
        // Starting after the foreign lease ran out is fine.
        assert_eq!(kinds(&after_a_foreign_write(4100)), Vec::<&str>::new());
    }

    #[test]
    fn a_leaderless_stretch_after_the_heal_is_found_even_when_a_term_ran_at_the_heal() {
        let mut history = history();
        // a's term runs at the heal (1 s) and ends 1 ms later; b leads only 8 s after that,
        // before the next fault at 20 s: a gap longer than the bound (5 s).
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "stopped_leading", 1001, Some(1)),
            ],
            vec![],
        );
        history.events("b", vec![event("b", "leading", 9001, Some(2))], vec![]);
        history.fault(at(0), "a cut off");
        history.healed(at(1000));
        history.fault(at(20_000), "b cut off");
        assert_eq!(kinds(&history), ["none"]);
    }

    #[test]
    fn overlaps_and_token_regressions_are_found() {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "stopped_leading", 3000, Some(1)),
            ],
            vec![],
        );
        history.events("b", vec![event("b", "leading", 200, Some(0))], vec![]);
        assert_eq!(kinds(&history), ["two", "token"]);
    }

    #[test]
    fn a_stop_ends_a_term_and_a_claim_after_the_resume_is_found() {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "stopped_leading", 9000, Some(1)),
            ],
            vec![],
        );
        history.action("a", at(1000), ProcessAction::Stopped);
        history.action("a", at(8000), ProcessAction::Resumed);
        history.events("b", vec![event("b", "leading", 5000, Some(2))], vec![]);
        assert_eq!(
            kinds(&history),
            Vec::<&str>::new(),
            "the stop ended a's term"
        );
        history.sample(Sample {
            instance: "a".into(),
            sent: at(7900),
            received: at(8010),
            answer: Answer::Name("a".into()),
        });
        history.sample(Sample {
            instance: "a".into(),
            sent: at(8020),
            received: at(8030),
            answer: Answer::Leader {
                is_leader: true,
                leader: Some("a".into()),
            },
        });
        assert_eq!(kinds(&history), ["stale", "stale"]);
    }

    /// A term stamped as ending at 3000 ms may have run until 3000.999 ms (stamps are truncated
    /// to the millisecond): a claim sent within that millisecond is no stale answer, one sent
    /// at 3001 ms is. Seen in a campaign: a record deleted while the sampler asked the leader.
    #[test]
    fn a_claim_within_the_millisecond_of_the_stamped_end_is_not_stale() {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "stopped_leading", 3000, Some(1)),
            ],
            vec![],
        );
        let claim = |sent: DateTime<Utc>| Sample {
            instance: "a".into(),
            sent,
            received: sent + TimeDelta::microseconds(400),
            answer: Answer::Name("a".into()),
        };
        history.sample(claim(at(3000) + TimeDelta::microseconds(500)));
        assert_eq!(kinds(&history), Vec::<&str>::new());
        history.sample(claim(at(3001)));
        assert_eq!(kinds(&history), ["stale"]);
    }

    /// A claim a millisecond before the term's `leading` line is stamped is the start of that
    /// term (the line is stamped after the term became visible), not a stale answer; one well
    /// before it is. Seen in a campaign on a Lease.
    #[test]
    fn a_claim_just_before_the_stamped_start_is_not_stale() {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 5000, Some(1)),
                event("a", "stopped_leading", 8000, Some(1)),
            ],
            vec![],
        );
        let claim = |sent: DateTime<Utc>| Sample {
            instance: "a".into(),
            sent,
            received: sent + TimeDelta::microseconds(300),
            answer: Answer::Leader {
                is_leader: true,
                leader: Some("a".into()),
            },
        };
        history.sample(claim(at(4999)));
        assert_eq!(kinds(&history), Vec::<&str>::new());
        history.sample(claim(at(4500)));
        assert_eq!(kinds(&history), ["stale"]);
    }

    /// A deposed leader's renew held by a cut lands when the cut heals: the others may name it
    /// for a lease from then, not from its term's end. Seen in a campaign on etcd.
    #[test]
    fn a_late_delivered_renew_may_be_named_for_a_lease_from_its_delivery() {
        let mut history = a_led(0, 2000);
        history.sample(b_names_a(7000));
        assert_eq!(
            kinds(&history),
            ["stale"],
            "past a's term and the allowance"
        );
        let mut history = a_led(0, 2000);
        history.late_delivery("a", at(4000));
        history.sample(b_names_a(6900));
        assert_eq!(kinds(&history), Vec::<&str>::new());
        history.sample(b_names_a(7100));
        assert_eq!(
            kinds(&history),
            ["stale"],
            "past the allowance after the delivery"
        );
    }

    /// A Redis takeover lands, then waits 500 ms for a replica (WAIT) and fails as not
    /// confirmed durable: the others name its writer before the writer logs the failure.
    /// Seen in CI behind sentinels (b named a 300 ms before a's log line).
    #[test]
    fn an_unconfirmed_takeover_may_be_named_from_a_call_before_its_log_line() {
        let mut history = a_led(0, 2000);
        history.unconfirmed_write("a", at(20_000), Duration::from_secs(2));
        history.sample(b_names_a(18_100));
        history.sample(b_names_a(19_700));
        history.sample(b_names_a(22_900));
        assert_eq!(kinds(&history), Vec::<&str>::new());
        history.sample(b_names_a(17_900));
        assert_eq!(
            kinds(&history),
            ["stale"],
            "before the call that wrote it began"
        );
        let mut history = a_led(0, 2000);
        history.unconfirmed_write("a", at(20_000), Duration::from_secs(2));
        history.sample(b_names_a(23_100));
        assert_eq!(
            kinds(&history),
            ["stale"],
            "past a lease after the latest landing"
        );
    }

    #[test]
    fn a_standby_that_hands_back_a_takeover_may_be_named_around_the_hand_back() {
        // a led until 2 s, then (as a standby) took over at about 20 s, unconfirmed, and
        // handed that takeover back at 21 s: b named a meanwhile.
        let handed_back = |samples: &[i64]| {
            let mut history = history();
            history.events(
                "a",
                vec![
                    event("a", "leading", 0, Some(1)),
                    event("a", "stopped_leading", 2000, Some(1)),
                    event("a", "handed_back", 21_000, Some(2)),
                ],
                vec![],
            );
            for ms in samples {
                history.sample(b_names_a(*ms));
            }
            kinds(&history)
        };
        // Within a lease and a heal bound before (3 s + 5 s), or a lease after.
        assert_eq!(handed_back(&[13_500, 20_500, 23_900]), Vec::<&str>::new());
        assert_eq!(handed_back(&[12_000]), ["stale"], "too long before");
        assert_eq!(handed_back(&[24_100]), ["stale"], "too long after");
        // Without the hand-back, naming a then is stale.
        let mut history = a_led(0, 2000);
        history.sample(b_names_a(20_500));
        assert_eq!(kinds(&history), ["stale"]);
    }

    #[test]
    fn a_hand_back_while_leading_is_a_bad_sequence() {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "handed_back", 500, Some(2)),
            ],
            vec![],
        );
        assert_eq!(kinds(&history), ["events"]);
    }

    #[test]
    fn standbys_may_name_a_leader_until_its_lease_ran_out() {
        let mut history = a_led(0, 1000);
        history.sample(b_names_a(3500));
        assert_eq!(kinds(&history), Vec::<&str>::new());
        history.sample(b_names_a(4500));
        assert_eq!(kinds(&history), ["stale"]);
    }

    #[test]
    fn after_a_deletion_the_record_made_again_may_be_named_while_it_is_held() {
        let mut history = history();
        history.events("a", vec![event("a", "leading", 0, Some(1))], vec![]);
        history.record_deleted(at(20_000));
        let named_c = |ms| Sample {
            instance: "b".into(),
            sent: at(ms),
            received: at(ms + 5),
            answer: Answer::Name("c".into()),
        };
        // c holds the record it made again, without a term yet: within wait + hold + lease.
        history.sample(named_c(29_000));
        assert_eq!(kinds(&history), Vec::<&str>::new());
        history.sample(named_c(32_000));
        assert_eq!(kinds(&history), ["stale"]);
    }

    #[test]
    fn naming_itself_as_leader_in_the_leader_endpoint_is_a_claim() {
        let claim = Answer::Leader {
            is_leader: false,
            leader: Some("a".into()),
        };
        assert!(claim.claims("a"));
        assert!(!claim.claims("b"));
        assert!(Answer::Name("a".into()).claims("a"));
        assert!(!Answer::Name(String::new()).claims("a"));
    }

    #[test]
    fn no_leader_after_a_heal_is_found() {
        let mut history = history();
        history.events(
            "a",
            vec![
                event("a", "leading", 0, Some(1)),
                event("a", "stopped_leading", 1000, Some(1)),
            ],
            vec![],
        );
        history.healed(at(2000));
        assert_eq!(kinds(&history), ["none"]);
    }
}
