//! A recorder of leadership intervals, built from the candidates' events, that finds overlaps.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::{ElectionEvent, LeaderElector, Leadership};
use tokio::time::Instant;

/// One term as the log saw it.
#[derive(Clone, Debug)]
pub struct Interval {
    /// The leader's identity.
    pub identity: String,
    /// The term's fencing token.
    pub fencing_token: u64,
    /// When the elector announced the term (after its taking write succeeded).
    pub started: Instant,
    /// When the elector announced the end of the term (before any release was written);
    /// `None` while it has not (a leader that was killed never does).
    pub stopped: Option<Instant>,
    term: Leadership,
}

impl Interval {
    /// The last instant the term was leader: when it was announced over, or earlier when its
    /// renew deadline passed first; `None` while the term may still lead.
    pub fn end(&self) -> Option<Instant> {
        let valid_until = self.term.valid_until();
        match self.stopped {
            Some(stopped) => Some(stopped.min(valid_until)),
            // A term that no elector ends any more (its task was killed) is over on the clock.
            None => (!self.term.is_leader()).then_some(valid_until),
        }
    }
}

/// Collects the leadership intervals of several candidates and checks that they never overlap.
///
/// The log hears events through [`LeaderElector::on_event`], which the elector calls inline, in
/// order, before its next lock call: a `StoppedLeading` is recorded before the release that
/// lets another candidate in is written, and a `StartedLeading` after the write that took the
/// lock. So the recorded intervals of a correct election never overlap, whatever the scheduling
/// delays, and any overlap is a real one.
#[derive(Clone, Debug, Default)]
pub struct LeadershipLog {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    intervals: Vec<Interval>,
    problems: Vec<String>,
}

impl LeadershipLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the terms of `elector` (call before its run starts).
    pub fn follow(&self, elector: &LeaderElector) {
        let log = self.clone();
        let identity = elector.config().identity.clone();
        elector.on_event(move |event| log.record(&identity, event));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, identity: &str, event: &ElectionEvent) {
        let now = Instant::now();
        let mut state = self.state();
        match event {
            ElectionEvent::StartedLeading(term) => state.intervals.push(Interval {
                identity: identity.to_owned(),
                fencing_token: term.fencing_token(),
                started: now,
                stopped: None,
                term: term.clone(),
            }),
            ElectionEvent::StoppedLeading { fencing_token, .. } => {
                let open = state.intervals.iter_mut().find(|interval| {
                    interval.identity == identity
                        && interval.fencing_token == *fencing_token
                        && interval.stopped.is_none()
                });
                match open {
                    Some(interval) => interval.stopped = Some(now),
                    None => state.problems.push(format!(
                        "{identity} stopped leading term {fencing_token}, which it never started"
                    )),
                }
            }
            ElectionEvent::NewLeader(_)
            | ElectionEvent::Released { .. }
            | ElectionEvent::HandedBack { .. } => {}
        }
    }

    /// The intervals recorded so far, in the order their terms started.
    pub fn intervals(&self) -> Vec<Interval> {
        let mut intervals = self.state().intervals.clone();
        intervals.sort_by_key(|interval| interval.started);
        intervals
    }

    /// Panics if two terms overlapped (one started before the one before it ended, or while it
    /// may still lead) or if events did not pair up.
    pub fn assert_no_overlap(&self) {
        let intervals = self.intervals();
        let mut problems = self.state().problems.clone();
        for pair in intervals.windows(2) {
            let (earlier, later) = (&pair[0], &pair[1]);
            match earlier.end() {
                Some(end) if end <= later.started => {}
                Some(end) => problems.push(format!(
                    "{} (token {}) led until {:?} after {} (token {}) had started",
                    earlier.identity,
                    earlier.fencing_token,
                    end - later.started,
                    later.identity,
                    later.fencing_token
                )),
                None => problems.push(format!(
                    "{} (token {}) still leads, and {} (token {}) started after it",
                    earlier.identity, earlier.fencing_token, later.identity, later.fencing_token
                )),
            }
        }
        assert!(
            problems.is_empty(),
            "leadership intervals overlap: {problems:#?}\nintervals: {intervals:#?}"
        );
    }
}
