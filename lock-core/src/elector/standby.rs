//! Standing by: watch the lock, judge expiry on the local clock, take the lock when it is free.

use std::collections::VecDeque;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::{Hints, LeaderElector};
use crate::{Hint, Leadership, LockError, Version, Versioned};

/// What this candidate knows about the lock: the record (or its absence) and when this
/// candidate first saw it.
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

    /// True when a hint carries a version older than what this candidate already knows.
    fn is_late(&self, hinted: &Version) -> bool {
        self.superseded.contains(hinted)
            || self
                .current
                .as_ref()
                .is_some_and(|known| hinted.is_older_than(&known.version))
    }
}

/// A write that started a term but whose answer was lost (a timeout, a dropped connection): it
/// may have landed.
#[derive(Clone, Copy)]
struct Unanswered {
    token: u64,
    sent_at: Instant,
}

/// The state of one stand-by.
struct Standby {
    observed: Option<Observation>,
    /// Looks in a row that retried at once (after a lost race or an unanswered write).
    quick_retries: u32,
    unanswered: Option<Unanswered>,
}

/// How a stand-by ended.
pub(super) enum StandbyEnd {
    /// This candidate started a term: the term and the record it wrote.
    Won(Leadership, Versioned),
    /// Cancelled; `released` when a write of this candidate that went unanswered had landed
    /// and was handed back.
    Cancelled { released: bool },
}

/// The result of one look at the lock.
enum Step {
    Won(Leadership, Versioned),
    Again,
    WaitUntil(Instant),
    Cancelled,
}

impl LeaderElector {
    /// Stands by until this candidate starts a term or `cancel` is cancelled.
    ///
    /// Reads race with cancellation; writes do not: a write that started a term runs to its
    /// end, so that a cancelled candidate that won still ends its term properly (and releases
    /// the lock if so configured) instead of leaving a lease nobody renews or releases.
    pub(super) async fn stand_by(
        &self,
        hints: &mut Hints,
        cancel: &CancellationToken,
    ) -> StandbyEnd {
        let mut standby = Standby {
            observed: None,
            quick_retries: 0,
            unanswered: None,
        };
        loop {
            hints.resubscribe_if_due();
            let wake_at = match self.look(&mut standby, hints.active(), cancel).await {
                Step::Won(term, written) => return StandbyEnd::Won(term, written),
                Step::Again => continue,
                Step::WaitUntil(at) => at,
                Step::Cancelled => break,
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                hint = hints.next() => self.apply_hint(&mut standby.observed, hint),
                _ = sleep_until(wake_at) => {}
            }
        }
        // The last write may have made this candidate the holder: hand that back.
        let released = match standby.unanswered {
            Some(unanswered) => self.release_if_ours(unanswered.token).await,
            None => false,
        };
        StandbyEnd::Cancelled { released }
    }

    /// Reads the lock if needed, and takes it if it is free or its lease ran out.
    async fn look(
        &self,
        standby: &mut Standby,
        hints_active: bool,
        cancel: &CancellationToken,
    ) -> Step {
        // With hints, a fresh observation (from a read or from a hint's record) is enough to
        // wait on; without them, every wake-up that cannot act on the observation polls.
        let must_read = standby
            .observed
            .as_ref()
            .is_none_or(|seen| seen.stale || (!hints_active && !seen.takeable(Instant::now())));
        if must_read {
            let read = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Step::Cancelled,
                read = self.bounded(self.call_deadline(), self.lock.get()) => read,
            };
            match read {
                Ok(current) => {
                    if let Some(won) = self.adopt_unanswered(standby, current.as_ref()) {
                        return won;
                    }
                    self.observe(&mut standby.observed, current);
                }
                Err(err) => {
                    report(&err);
                    return Step::WaitUntil(self.next_poll());
                }
            }
        }
        let Some(seen) = standby.observed.as_mut() else {
            return Step::WaitUntil(self.next_poll());
        };
        if let Some(expiry) = seen.expires_at().filter(|at| Instant::now() < *at) {
            standby.quick_retries = 0;
            let wake_at = if hints_active {
                expiry
            } else {
                expiry.min(self.next_poll())
            };
            return Step::WaitUntil(wake_at);
        }
        let Some(token) = self.next_token(seen.current.as_ref()) else {
            report(&LockError::Corrupt {
                lock: self.shared.lock_name.clone(),
                reason: "leaderTransitions is at its maximum, so no new term could get a \
                         greater fencing token; delete the record to start the count again"
                    .to_owned(),
            });
            return Step::WaitUntil(self.next_poll());
        };
        let sent_at = Instant::now();
        match self.take(seen.current.as_ref(), token, sent_at).await {
            Ok((term, written)) => Step::Won(term, written),
            Err(err) => {
                seen.stale = true;
                match err {
                    LockError::Conflict { .. } | LockError::AlreadyExists { .. } => {
                        tracing::debug!(error = %err, "another candidate wrote first");
                    }
                    _ => {
                        report(&err);
                        if err.is_retryable() {
                            standby.unanswered = Some(Unanswered { token, sent_at });
                        }
                    }
                }
                standby.quick_retries += 1;
                if standby.quick_retries == 1 {
                    Step::Again
                } else {
                    Step::WaitUntil(self.next_poll())
                }
            }
        }
    }

    /// After a write that started a term went unanswered, the next read tells whether it
    /// landed: if the record names this candidate with that term's token, the term started when
    /// that write was sent, and it is taken up if it is still valid.
    fn adopt_unanswered(&self, standby: &mut Standby, current: Option<&Versioned>) -> Option<Step> {
        let unanswered = standby.unanswered.take()?;
        let current = current?;
        let ours = current.record.holder_identity == self.config.identity
            && Self::token_of(&current.record) == unanswered.token;
        let valid_until = unanswered.sent_at + self.config.renew_deadline;
        if !ours || Instant::now() >= valid_until {
            return None;
        }
        tracing::info!(
            fencing_token = unanswered.token,
            "started leading: an unanswered write had landed"
        );
        let term = Leadership::new(
            self.config.identity.clone(),
            unanswered.token,
            unanswered.sent_at,
            self.config.renew_deadline,
        );
        Some(Step::Won(term, current.clone()))
    }

    /// The fencing token of a new term over `current`: 0 for a new record, else one more than
    /// the record's `leaderTransitions`; `None` when that cannot grow any more.
    fn next_token(&self, current: Option<&Versioned>) -> Option<u64> {
        match current {
            None => Some(0),
            Some(seen) => {
                let next = seen.record.leader_transitions.max(0).checked_add(1)?;
                u64::try_from(next).ok()
            }
        }
    }

    /// Writes a record that starts a term with `token` over `current` (creating it if there is
    /// none); `sent_at` is when this call started.
    async fn take(
        &self,
        current: Option<&Versioned>,
        token: u64,
        sent_at: Instant,
    ) -> Result<(Leadership, Versioned), LockError> {
        let transitions = i32::try_from(token).expect("next_token stays within i32");
        let record = self.record_for_term(current.map(|seen| &seen.record), transitions);
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
            token,
            sent_at,
            self.config.renew_deadline,
        );
        tracing::info!(fencing_token = token, "started leading");
        Ok((term, Versioned { record, version }))
    }

    /// Takes in a read of the lock: anything new (another version, or the same version with
    /// other content, as after a record was deleted and made again) restarts the lease clock.
    fn observe(&self, observed: &mut Option<Observation>, current: Option<Versioned>) {
        let holder = current
            .as_ref()
            .and_then(|seen| seen.record.holder())
            .map(str::to_owned);
        match observed {
            Some(seen) if seen.current == current => {
                seen.stale = false;
            }
            Some(seen) => {
                let replaced = seen
                    .current
                    .take()
                    .filter(|old| current.as_ref().map(|new| &new.version) != Some(&old.version));
                if let Some(old) = replaced {
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
                let late = observed
                    .as_ref()
                    .is_some_and(|seen| seen.is_late(&current.version));
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
