//! Standing by: watch the lock, judge expiry on the local clock, take the lock when it is free.

use std::collections::VecDeque;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::{Hints, LeaderElector};
use crate::{Hint, Leadership, LockError, Version, Versioned};

/// What this candidate knows about the lock: the record (or its absence) and when this
/// candidate first saw that version.
struct Observation {
    current: Option<Versioned>,
    since: Instant,
    /// A hint or a failed write said the lock may have changed: read before acting.
    stale: bool,
    /// Versions seen before `current`: a hint that carries one of them is late or repeated
    /// (for backends whose versions have no order; ordered ones are compared directly).
    superseded: VecDeque<Version>,
}

/// How many superseded versions a standby remembers to recognise late hints.
const REMEMBERED_VERSIONS: usize = 16;

impl Observation {
    /// When the observed lease ends; `None` when there is no lease to wait for (no record, or a
    /// free one).
    fn expires_at(&self) -> Option<Instant> {
        let record = &self.current.as_ref()?.record;
        (!record.is_free()).then(|| self.since + record.lease_duration())
    }

    fn takeable(&self, now: Instant) -> bool {
        !self.stale && self.expires_at().is_none_or(|expiry| now >= expiry)
    }
}

/// The result of one look at the lock.
enum Step {
    Won(Leadership, Versioned),
    Again,
    WaitUntil(Instant),
}

impl LeaderElector {
    /// Stands by until this candidate starts a term (`Some`) or `cancel` is cancelled (`None`).
    pub(super) async fn stand_by(
        &self,
        hints: &mut Hints,
        cancel: &CancellationToken,
    ) -> Option<(Leadership, Versioned)> {
        let mut observed: Option<Observation> = None;
        let mut lost_races = 0u32;
        loop {
            hints.resubscribe_if_due();
            let step = tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                step = self.look(&mut observed, &mut lost_races, hints.active()) => step,
            };
            let wake_at = match step {
                Step::Won(term, written) => return Some((term, written)),
                Step::Again => continue,
                Step::WaitUntil(at) => at,
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                hint = hints.next() => self.apply_hint(&mut observed, hint),
                _ = sleep_until(wake_at) => {}
            }
        }
    }

    /// Reads the lock if needed, and takes it if it is free or its lease ran out.
    async fn look(
        &self,
        observed: &mut Option<Observation>,
        lost_races: &mut u32,
        hints_active: bool,
    ) -> Step {
        // With hints, a fresh observation (from a read or from a hint's record) is enough to
        // wait on; without them, every wake-up that cannot act on the observation polls.
        let must_read = observed
            .as_ref()
            .is_none_or(|seen| seen.stale || (!hints_active && !seen.takeable(Instant::now())));
        if must_read {
            match self.bounded(self.call_deadline(), self.lock.get()).await {
                Ok(current) => self.observe(observed, current),
                Err(err) => {
                    report(&err);
                    return Step::WaitUntil(self.next_poll());
                }
            }
        }
        let Some(seen) = observed.as_mut() else {
            return Step::WaitUntil(self.next_poll());
        };
        if let Some(expiry) = seen.expires_at().filter(|at| Instant::now() < *at) {
            *lost_races = 0;
            let wake_at = if hints_active {
                expiry
            } else {
                expiry.min(self.next_poll())
            };
            return Step::WaitUntil(wake_at);
        }
        match self.take(seen.current.as_ref()).await {
            Ok(won) => Step::Won(won.0, won.1),
            Err(err) => {
                seen.stale = true;
                let lost_race = matches!(
                    err,
                    LockError::Conflict { .. } | LockError::AlreadyExists { .. }
                );
                if lost_race {
                    tracing::debug!(error = %err, "another candidate wrote first");
                    *lost_races += 1;
                    if *lost_races == 1 {
                        return Step::Again;
                    }
                } else {
                    report(&err);
                }
                Step::WaitUntil(self.next_poll())
            }
        }
    }

    /// Writes a record that starts a new term over `current` (creating it if there is none).
    async fn take(
        &self,
        current: Option<&Versioned>,
    ) -> Result<(Leadership, Versioned), LockError> {
        let previous = current.map(|seen| &seen.record);
        let transitions = match previous {
            None => 0,
            Some(record) => record.leader_transitions.saturating_add(1).max(1),
        };
        let record = self.record_for_term(previous, transitions);
        let sent_at = Instant::now();
        let deadline = self.call_deadline();
        let version = match current {
            None => self.bounded(deadline, self.lock.create(&record)).await?,
            Some(seen) => {
                self.bounded(deadline, self.lock.update(&record, &seen.version))
                    .await?
            }
        };
        let term = Leadership::new(
            self.config.identity.clone(),
            Self::token_of(&record),
            sent_at,
            self.config.renew_deadline,
        );
        tracing::info!(fencing_token = term.fencing_token(), "started leading");
        Ok((term, Versioned { record, version }))
    }

    /// Takes in a read of the lock: a new version restarts the lease clock.
    fn observe(&self, observed: &mut Option<Observation>, current: Option<Versioned>) {
        let holder = current
            .as_ref()
            .and_then(|seen| seen.record.holder())
            .map(str::to_owned);
        match observed {
            Some(seen)
                if seen.current.as_ref().map(|v| &v.version)
                    == current.as_ref().map(|v| &v.version) =>
            {
                seen.stale = false;
            }
            Some(seen) => {
                if let Some(old) = seen.current.take() {
                    if seen.superseded.len() == REMEMBERED_VERSIONS {
                        seen.superseded.pop_front();
                    }
                    seen.superseded.push_back(old.version);
                }
                seen.current = current;
                seen.since = Instant::now();
                seen.stale = false;
            }
            None => {
                *observed = Some(Observation {
                    current,
                    since: Instant::now(),
                    stale: false,
                    superseded: VecDeque::new(),
                });
            }
        }
        self.shared.observed_leader(holder.as_deref());
    }

    fn apply_hint(&self, observed: &mut Option<Observation>, hint: Hint) {
        match hint {
            Hint::Record(current) => {
                let late = observed.as_ref().is_some_and(|seen| {
                    seen.superseded.contains(&current.version)
                        || seen
                            .current
                            .as_ref()
                            .is_some_and(|known| current.version.is_older_than(&known.version))
                });
                if !late {
                    self.observe(observed, Some(current));
                }
            }
            Hint::Changed => {
                if let Some(seen) = observed {
                    seen.stale = true;
                }
            }
        }
    }
}

fn report(err: &LockError) {
    match err {
        LockError::Unavailable { .. } => tracing::warn!(error = %err, "lock call failed; retrying"),
        _ => tracing::error!(error = %err, "lock call failed; retrying"),
    }
}
