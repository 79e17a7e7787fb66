//! What a campaign segment found, and the figures of RELIABILITY.md: faults by kind, the
//! violations by rule, and the time from a fault to a new leader.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::fault::FaultKind;
use super::target::TargetKind;
use crate::history::{History, Term, Violation};

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Injected {
    /// What.
    pub kind: FaultKind,
    /// When it was injected.
    pub at: DateTime<Utc>,
    /// A detail for the report (an outside write's error, the clock step, ...).
    pub detail: String,
}

/// Violations counted by rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Two leaders at once.
    pub overlaps: usize,
    /// A token that did not grow.
    pub token_regressions: usize,
    /// An answer naming a leader whose term was over.
    pub stale_answers: usize,
    /// No leader within the bound after a heal, or no settled leader before a fault.
    pub no_leader: usize,
    /// A resumed process claiming its old term.
    pub claims_after_resume: usize,
    /// Lost, reordered or malformed events.
    pub bad_events: usize,
    /// Beats of an exec command outside its instance's term.
    pub children_outside: usize,
    /// Overlaps forced by an outside write (an operator's handover; not violations).
    pub forced_overlaps: usize,
}

impl Counts {
    fn add(&mut self, other: &Self) {
        self.overlaps += other.overlaps;
        self.token_regressions += other.token_regressions;
        self.stale_answers += other.stale_answers;
        self.no_leader += other.no_leader;
        self.claims_after_resume += other.claims_after_resume;
        self.bad_events += other.bad_events;
        self.children_outside += other.children_outside;
        self.forced_overlaps += other.forced_overlaps;
    }
}

/// What one segment did and found.
#[derive(Clone, Debug)]
pub struct SegmentReport {
    /// The backend.
    pub target: TargetKind,
    /// The segment's number in its campaign.
    pub number: usize,
    /// The segment's own seed (derived from the campaign's).
    pub seed: u64,
    /// The faults, in order.
    pub injected: Vec<Injected>,
    /// Every violation, as text (empty: the segment passed).
    pub violations: Vec<String>,
    /// The violations by rule.
    pub counts: Counts,
    /// For each fault after which the term running at its injection ended before the next
    /// fault: the time from the injection to the start of the next term.
    pub takeovers: Vec<(FaultKind, Duration)>,
    /// How many terms ran.
    pub terms: usize,
    /// How many beats the exec commands wrote.
    pub beats: usize,
    /// The history's report and every process's output, kept when the segment failed (or
    /// always, with `CAMPAIGN_VERBOSE=1`).
    pub failure_report: Option<String>,
    /// How far the machine's wall clock moved against its monotonic clock while the segment
    /// ran, when it did (see `machine_clock`): such a segment is void and runs again.
    pub machine_clock_step: Option<chrono::TimeDelta>,
    /// How many earlier runs of this segment were void.
    pub voided: usize,
}

impl SegmentReport {
    /// Checks `history` and builds the report; `unsettled` are the rounds that found no
    /// settled leader (violations too), `processes` what every process printed.
    pub fn new(
        target: TargetKind,
        number: usize,
        seed: u64,
        injected: Vec<Injected>,
        history: &History,
        unsettled: Vec<String>,
        processes: String,
    ) -> Self {
        let found = history.violations();
        let mut counts = Counts {
            no_leader: unsettled.len(),
            forced_overlaps: history.forced_overlaps().len(),
            ..Counts::default()
        };
        for violation in &found {
            match violation {
                Violation::TwoLeaders { .. } => counts.overlaps += 1,
                Violation::TokenNotIncreasing { .. } => counts.token_regressions += 1,
                Violation::StaleAnswer { .. } => counts.stale_answers += 1,
                Violation::NoLeaderAfterHeal { .. } => counts.no_leader += 1,
                Violation::ClaimAfterResume { .. } => counts.claims_after_resume += 1,
                Violation::BadEvents { .. } => counts.bad_events += 1,
            }
        }
        let mut violations: Vec<String> = found.iter().map(ToString::to_string).collect();
        violations.extend(unsettled);
        let terms = history.terms();
        let takeovers = takeovers(&injected, &terms);
        let verbose = std::env::var_os("CAMPAIGN_VERBOSE").is_some();
        let failure_report = (!violations.is_empty() || verbose)
            .then(|| format!("{}\n{processes}", history.report(&found)));
        Self {
            target,
            number,
            seed,
            injected,
            violations,
            counts,
            takeovers,
            terms: terms.len(),
            beats: 0,
            failure_report,
            machine_clock_step: None,
            voided: 0,
        }
    }

    /// Adds what the exec commands did: `beats` in all, `outside` those outside their term.
    pub fn add_children(&mut self, beats: usize, outside: Vec<String>) {
        self.beats = beats;
        self.counts.children_outside = outside.len();
        if !outside.is_empty() && self.failure_report.is_none() {
            self.failure_report = Some(String::new());
        }
        if let Some(report) = &mut self.failure_report {
            for line in &outside {
                report.push_str(line);
                report.push('\n');
            }
        }
        self.violations.extend(outside);
    }

    /// One line: the segment, its faults, its terms and whether it passed.
    pub fn summary(&self) -> String {
        let verdict = if self.violations.is_empty() {
            "no violation".to_owned()
        } else {
            format!("{} VIOLATION(S)", self.violations.len())
        };
        format!(
            "campaign {} segment {} (seed {}): {} faults, {} terms, {} takeovers, {} command beats, {verdict}",
            self.target.name(),
            self.number,
            self.seed,
            self.injected.len(),
            self.terms,
            self.takeovers.len(),
            self.beats
        )
    }
}

/// For each fault that ended the term running when it was injected (before the next fault),
/// the time from the injection to the next term's start.
fn takeovers(injected: &[Injected], terms: &[Term]) -> Vec<(FaultKind, Duration)> {
    let mut found = Vec::new();
    for (index, fault) in injected.iter().enumerate() {
        let next_fault = injected.get(index + 1).map(|next| next.at);
        let running = terms
            .iter()
            .find(|term| term.start <= fault.at && term.end.is_none_or(|end| end > fault.at));
        let Some(running) = running else { continue };
        let Some(end) = running.end else { continue };
        if next_fault.is_some_and(|next| end >= next) {
            continue;
        }
        let next_term = terms
            .iter()
            .find(|term| term.start > fault.at && term.start >= end);
        if let Some(next_term) = next_term {
            if next_fault.is_none_or(|next| next_term.start < next) {
                let taken = (next_term.start - fault.at).to_std().unwrap_or_default();
                found.push((fault.kind, taken));
            }
        }
    }
    found
}

/// The `q`-quantile (0..=1) of `values`, nearest rank; `None` when empty.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    // Nearest rank: the smallest value with at least q of the values at or below it.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Whole-campaign figures of one backend.
#[derive(Clone, Debug, Default)]
pub struct BackendFigures {
    /// Faults injected, by kind.
    pub by_kind: BTreeMap<FaultKind, usize>,
    /// Takeover times, by kind.
    pub takeovers: BTreeMap<FaultKind, Vec<Duration>>,
    /// Violations by rule.
    pub counts: Counts,
    /// Terms in all.
    pub terms: usize,
    /// Exec command beats in all.
    pub beats: usize,
    /// Segments run.
    pub segments: usize,
    /// Seeds of the segments.
    pub seeds: Vec<u64>,
    /// Runs of segments voided by a step of the machine's clock, and run again.
    pub voided: usize,
}

impl BackendFigures {
    /// Sums `reports` (of one backend).
    pub fn of(reports: &[SegmentReport]) -> Self {
        let mut figures = Self::default();
        for report in reports {
            figures.segments += 1;
            figures.voided += report.voided;
            figures.terms += report.terms;
            figures.beats += report.beats;
            figures.seeds.push(report.seed);
            figures.counts.add(&report.counts);
            for fault in &report.injected {
                *figures.by_kind.entry(fault.kind).or_default() += 1;
            }
            for (kind, taken) in &report.takeovers {
                figures.takeovers.entry(*kind).or_default().push(*taken);
            }
        }
        figures
    }

    /// Faults in all.
    pub fn faults(&self) -> usize {
        self.by_kind.values().sum()
    }

    /// Every takeover time.
    pub fn all_takeovers(&self) -> Vec<Duration> {
        self.takeovers.values().flatten().copied().collect()
    }

    /// A markdown section: totals, then a table of faults by kind with their takeover times.
    pub fn markdown(&self, backend: &str) -> String {
        let seconds = |d: Option<Duration>| {
            d.map_or_else(|| "–".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        let all = self.all_takeovers();
        let c = &self.counts;
        let mut text = String::new();
        let _ = writeln!(text, "### {backend}\n");
        let _ = writeln!(
            text,
            "{} faults in {} segments, {} terms, {} exec command beats; overlaps {}, token \
             regressions {}, stale answers {}, no leader in time {}, claims after resume {}, \
             bad events {}, commands outside their term {}; overlaps forced by an outside \
             write {}. Fault to new leader: p50 {}, p99 {} ({} takeovers). Segment runs voided \
             by a step of the machine's own clock (a paused VM) and run again: {}.\n",
            self.faults(),
            self.segments,
            self.terms,
            self.beats,
            c.overlaps,
            c.token_regressions,
            c.stale_answers,
            c.no_leader,
            c.claims_after_resume,
            c.bad_events,
            c.children_outside,
            c.forced_overlaps,
            seconds(quantile(&all, 0.5)),
            seconds(quantile(&all, 0.99)),
            all.len(),
            self.voided
        );
        let _ = writeln!(
            text,
            "| fault | injected | took over | fault to new leader p50 | p99 |"
        );
        let _ = writeln!(text, "|---|---:|---:|---:|---:|");
        for (kind, count) in &self.by_kind {
            let times = self.takeovers.get(kind).cloned().unwrap_or_default();
            let _ = writeln!(
                text,
                "| {} | {count} | {} | {} | {} |",
                kind.name(),
                times.len(),
                seconds(quantile(&times, 0.5)),
                seconds(quantile(&times, 0.99))
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&values, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&values, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
