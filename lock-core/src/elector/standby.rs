//! Standing by: watch the lock, judge expiry on the local clock, take the lock when it is free.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::memory::{Memory, TermMark};
use super::{Hints, LeaderElector};
use crate::{Hint, Leadership, LockError, Version, Versioned};

/// However quiet the hints, a standby that waits on them reads the lock at least this often.
/// A hint stream can lie by omission (a Redis `DEL` sends no message; a subscription can die
/// without the stream noticing) or by commission (anyone who may publish on the channel can
/// forge a record with a huge lease): hints may make a standby act sooner, never wait without
/// bound. Once a minute keeps an idle standby far below one request a second.
pub(crate) const CONFIRM_INTERVAL: Duration = Duration::from_secs(60);

/// What this candidate knows about the lock: the record (or its absence) and when this
/// candidate first saw it.
struct Observation {
    current: Option<Versioned>,
    since: Instant,
    /// When this candidate last read the lock itself (hints do not count).
    read_at: Instant,
    /// The record vanished after this candidate had seen one: the absence is a lease of its
    /// own, since a leader cut off from the store may still be working.
    vanished: bool,
    /// For an absence: the backend's token floor read when it was first seen. A create is
    /// only trusted if the counter moved by nothing but that create since (no record came and
    /// went while this candidate waited).
    floor: Option<u64>,
    /// A hint or a failed write said the lock may have changed: read before acting.
    stale: bool,
    /// Versions seen before `current`: a hint that carries one of them is late or repeated
    /// (for backends whose versions have no order; ordered ones are compared directly).
    superseded: VecDeque<Version>,
}

/// How many superseded versions a standby remembers to recognise late hints.
const REMEMBERED_VERSIONS: usize = 16;

impl Observation {
    /// When the observed lease ends; `None` when there is no lease to wait for (a free record,
    /// or no record where this candidate never saw one). `own_lease` is what a vanished record
    /// is waited for.
    fn expires_at(&self, own_lease: Duration) -> Option<Instant> {
        match &self.current {
            None => self.vanished.then(|| self.since + own_lease),
            Some(seen) if seen.record.is_free() => None,
            Some(seen) => Some(self.since + seen.record.lease_duration()),
        }
    }

    fn takeable(&self, now: Instant, own_lease: Duration) -> bool {
        !self.stale
            && self
                .expires_at(own_lease)
                .is_none_or(|expiry| now >= expiry)
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
    mark: TermMark,
    sent_at: Instant,
    /// A create on a backend with a token floor: if it landed, the store may have moved
    /// meanwhile, which only the check after an answered create can rule out.
    unchecked_create: bool,
}

/// The state of one stand-by.
struct Standby<'m> {
    observed: Option<Observation>,
    memory: &'m mut Memory,
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

/// What a write that was to start a term did.
enum Taken {
    /// The term started.
    Term(Leadership, Versioned),
    /// The record was created, but the store moved meanwhile: no term yet. Also the backend's
    /// counter now, above every token written meanwhile.
    HeldBack(Versioned, u64),
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
        memory: &mut Memory,
        cancel: &CancellationToken,
    ) -> StandbyEnd {
        let mut standby = Standby {
            observed: None,
            memory,
            quick_retries: 0,
            unanswered: None,
        };
        loop {
            if hints.resubscribe_if_due() {
                // Changes between the last read and the new subscription were missed.
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
            }
            let wake_at = match self.look(&mut standby, hints.active(), cancel).await {
                Step::Won(term, written) => {
                    standby.memory.started(&written.record);
                    return StandbyEnd::Won(term, written);
                }
                Step::Again => continue,
                Step::WaitUntil(at) => at,
                Step::Cancelled => break,
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                hint = hints.next() => self.apply_hint(&mut standby, hint),
                _ = sleep_until(wake_at) => {}
            }
        }
        // The last write may have made this candidate the holder: hand that back.
        let released = match standby.unanswered {
            Some(unanswered) => self.release_if_ours(&unanswered.mark).await,
            None => false,
        };
        StandbyEnd::Cancelled { released }
    }

    /// Reads the lock if needed, and takes it if it is free or its lease ran out.
    async fn look(
        &self,
        standby: &mut Standby<'_>,
        hints_active: bool,
        cancel: &CancellationToken,
    ) -> Step {
        let own_lease = self.config.lease_duration;
        // With hints, a fresh observation (from a read or from a hint's record) is enough to
        // wait on, for up to CONFIRM_INTERVAL; without them, every wake-up that cannot act on
        // the observation polls.
        let now = Instant::now();
        let must_read = standby.observed.as_ref().is_none_or(|seen| {
            seen.stale
                || (!hints_active && !seen.takeable(now, own_lease))
                || now >= seen.read_at + CONFIRM_INTERVAL
        });
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
                    self.observe(&mut standby.observed, standby.memory, current);
                    if let Some(seen) = standby.observed.as_mut() {
                        seen.read_at = Instant::now();
                    }
                    self.note_floor_of_absence(standby).await;
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
        if let Some(expiry) = seen.expires_at(own_lease).filter(|at| Instant::now() < *at) {
            standby.quick_retries = 0;
            let wake_at = if hints_active {
                expiry.min(seen.read_at + CONFIRM_INTERVAL)
            } else {
                expiry.min(self.next_poll())
            };
            return Step::WaitUntil(wake_at);
        }
        let current = seen.current.clone();
        let floor_seen = seen.floor;
        let (token, floor) = match self
            .next_token(current.as_ref(), floor_seen, standby.memory)
            .await
        {
            Ok(Some(chosen)) => chosen,
            Ok(None) => {
                report(&LockError::Corrupt {
                    lock: self.shared.lock_name.clone(),
                    reason: format!(
                        "no new term can get a fencing token above {}, the highest this \
                         candidate saw on the lock (leaderTransitions is a 32-bit number): \
                         delete the record and restart every candidate, since each one \
                         remembers the highest token it saw",
                        standby.memory.highest_token().unwrap_or(0)
                    ),
                });
                return Step::WaitUntil(self.next_poll());
            }
            Err(err) => {
                report(&err);
                return Step::WaitUntil(self.next_poll());
            }
        };
        let sent_at = Instant::now();
        let record = self.record_for_term(
            current.as_ref().map(|seen| &seen.record),
            i32::try_from(token).expect("next_token stays within i32"),
        );
        let mark = TermMark::of(&record);
        match self.take(current.as_ref(), record, floor, sent_at).await {
            Ok(Taken::Term(term, written)) => Step::Won(term, written),
            Ok(Taken::HeldBack(written, counter)) => {
                // Our own record, but no term: wait for its lease like everyone else, and
                // take it over then above every token that may have been written meanwhile.
                standby.memory.started(&written.record);
                standby.memory.saw_token(counter);
                self.observe(&mut standby.observed, standby.memory, Some(written));
                Step::Again
            }
            Err(err) => {
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
                match err {
                    LockError::Conflict { .. } | LockError::AlreadyExists { .. } => {
                        tracing::debug!(error = %err, "another candidate wrote first");
                    }
                    _ => {
                        report(&err);
                        if err.is_retryable() {
                            standby.unanswered = Some(Unanswered {
                                mark,
                                sent_at,
                                unchecked_create: current.is_none() && floor > 0,
                            });
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
    /// landed: if the record is exactly the one this process sent (holder, token and the
    /// acquireTime mark), the term started when that write was sent, and it is taken up if it is
    /// still valid. A record with this identity and token but another mark is a twin's.
    fn adopt_unanswered(
        &self,
        standby: &mut Standby<'_>,
        current: Option<&Versioned>,
    ) -> Option<Step> {
        let unanswered = standby.unanswered.take()?;
        let current = current?;
        let valid_until = unanswered.sent_at + self.config.renew_deadline;
        if !self.holds(current, &unanswered.mark) {
            return None;
        }
        // Ours, whether adopted or not: never a twin's.
        standby.memory.started(&current.record);
        if unanswered.unchecked_create || Instant::now() >= valid_until {
            // Held back like an answered create whose store moved: its lease is waited for.
            return None;
        }
        tracing::info!(
            fencing_token = unanswered.mark.token,
            "started leading: an unanswered write had landed"
        );
        let term = Leadership::new(
            self.config.identity.clone(),
            unanswered.mark.token,
            unanswered.sent_at,
            self.config.renew_deadline,
        );
        Some(Step::Won(term, current.clone()))
    }

    /// The fencing token of a new term over `current`: above the record's
    /// `leaderTransitions`, above every token this candidate saw on the lock, and, for a new
    /// record, at least the backend's [`token_floor`](crate::Lock::token_floor). `None` when
    /// no such token fits the record's 32-bit field. Also returns, for a new record, the
    /// counter when the absence was first seen, against which the create is checked.
    async fn next_token(
        &self,
        current: Option<&Versioned>,
        floor_seen: Option<u64>,
        memory: &Memory,
    ) -> Result<Option<(u64, u64)>, LockError> {
        let above_record = match current {
            None => Some(0),
            Some(seen) => u64::try_from(seen.record.leader_transitions.max(0))
                .ok()
                .map(|token| token + 1),
        };
        let above_seen = memory.highest_token().map_or(0, |token| token + 1);
        // A new record's token is above the counter now; whether anything came and went is
        // judged against the counter when the absence was first seen.
        let (floor, since) = match current {
            None => {
                let now = self
                    .bounded(self.call_deadline(), self.lock.token_floor())
                    .await?;
                (now, floor_seen.map_or(now, |seen| seen.min(now)))
            }
            Some(_) => (0, 0),
        };
        let token = above_record.map(|token| token.max(above_seen).max(floor));
        Ok(token
            .filter(|token| i32::try_from(*token).is_ok())
            .map(|token| (token, since)))
    }

    /// Writes `record`, which starts a term, over `current` (creating it if there is none, at
    /// or above the token `floor` read before); `sent_at` is when this call started.
    async fn take(
        &self,
        current: Option<&Versioned>,
        record: crate::LeaderElectionRecord,
        floor: u64,
        sent_at: Instant,
    ) -> Result<Taken, LockError> {
        let deadline = self.call_deadline();
        let version = match current {
            None => self.bounded(deadline, self.lock.create(&record)).await?,
            Some(seen) => {
                self.bounded(deadline, self.lock.update(&record, &seen.version))
                    .await?
            }
        };
        let moved = match current {
            None if floor > 0 => self.store_moved_during_create(floor).await?,
            _ => None,
        };
        if let Some(now_floor) = moved {
            // Whoever led in between is valid until at most a renew deadline after its record
            // was deleted, which is before now: holding the record for a lease of our own (as
            // every standby does for it) and taking it over then is safe; leading now is not.
            tracing::warn!(
                "the store moved while this candidate created the record, so another term may \
                 have run meanwhile: holding the record for one lease before leading"
            );
            return Ok(Taken::HeldBack(Versioned { record, version }, now_floor));
        }
        let token = TermMark::of(&record).token;
        let term = Leadership::new(
            self.config.identity.clone(),
            token,
            sent_at,
            self.config.renew_deadline,
        );
        tracing::info!(fencing_token = token, "started leading");
        Ok(Taken::Term(term, Versioned { record, version }))
    }

    /// True when the backend's counter moved by more than this candidate's create since the
    /// floor was read before it: another record may have come and gone meanwhile (created by
    /// another candidate that may still lead, then deleted from outside), and the create landed
    /// on the absence that deletion left (an A-B-A that "create if absent" cannot see).
    /// Returns the counter now when it moved.
    async fn store_moved_during_create(&self, floor: u64) -> Result<Option<u64>, LockError> {
        let now_floor = self
            .bounded(self.call_deadline(), self.lock.token_floor())
            .await?;
        Ok((now_floor > floor + 1).then_some(now_floor))
    }

    /// When a read showed the record absent, reads the backend's token floor once for that
    /// absence (see [`Observation::floor`]). A failure leaves it unknown: the create then uses
    /// a floor read just before it, which guards a shorter span.
    async fn note_floor_of_absence(&self, standby: &mut Standby<'_>) {
        let Some(seen) = standby.observed.as_mut() else {
            return;
        };
        if !seen.vanished || seen.floor.is_some() {
            return;
        }
        match self
            .bounded(self.call_deadline(), self.lock.token_floor())
            .await
        {
            Ok(floor) => seen.floor = Some(floor),
            Err(err) => tracing::debug!(error = %err, "could not read the token floor"),
        }
    }

    /// Takes in a read of the lock: anything new (another version, or the same version with
    /// other content, as after a record was deleted and made again) restarts the lease clock.
    fn observe(
        &self,
        observed: &mut Option<Observation>,
        memory: &mut Memory,
        current: Option<Versioned>,
    ) {
        let now = Instant::now();
        let vanished = current.is_none() && memory.saw_record();
        if let Some(seen) = &current {
            memory.saw(&seen.record);
            self.warn_of_twin(memory, seen);
        }
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
                seen.since = now;
                seen.vanished = vanished;
                seen.floor = None;
                seen.stale = false;
                if vanished {
                    self.warn_vanished();
                }
            }
            None => {
                if vanished {
                    self.warn_vanished();
                }
                *observed = Some(Observation {
                    current,
                    since: now,
                    read_at: now,
                    vanished,
                    floor: None,
                    stale: false,
                    superseded: VecDeque::new(),
                });
            }
        }
        if let Some(seen) = observed.as_ref() {
            let holder = seen
                .current
                .as_ref()
                .and_then(|seen| seen.record.holder())
                .map(str::to_owned);
            let until = seen
                .current
                .as_ref()
                .and_then(|_| seen.expires_at(self.config.lease_duration));
            self.shared.observed_leader(holder.as_deref(), until);
        }
    }

    fn warn_vanished(&self) {
        tracing::warn!(
            lease = ?self.config.lease_duration,
            "the record vanished: waiting a full lease before creating it again, since a leader \
             cut off from the store may still be working"
        );
    }

    /// Says loudly, once per record, that the lock names this identity in a record this process
    /// did not write: another process uses the same identity (or an earlier run of this one
    /// held the lock). Such a record is waited for like anyone else's.
    fn warn_of_twin(&self, memory: &mut Memory, seen: &Versioned) {
        let identity = &self.config.identity;
        if seen.record.holder_identity != *identity || memory.is_own(&seen.record, identity) {
            return;
        }
        if memory.first_sight_of_twin(&seen.version) {
            tracing::error!(
                "another process uses the identity {identity} on {}: it holds a record this \
                 process did not write (or an earlier run of this process held it); waiting for \
                 its lease to run out. Give every instance a unique identity",
                self.shared.lock_name
            );
        }
    }

    fn apply_hint(&self, standby: &mut Standby<'_>, hint: Hint) {
        match hint {
            Hint::Record(current) => {
                let late = standby
                    .observed
                    .as_ref()
                    .is_some_and(|seen| seen.is_late(&current.version));
                if late {
                    // Late, repeated, or a record made again at a lower version (a backend
                    // whose counter restarted): a read tells which, instead of guessing.
                    if let Some(seen) = standby.observed.as_mut() {
                        seen.stale |= seen.current.as_ref() != Some(&current);
                    }
                } else {
                    self.observe(&mut standby.observed, standby.memory, Some(current));
                }
            }
            Hint::Changed => {
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
            }
        }
    }
}

pub(super) fn report(err: &LockError) {
    match err {
        LockError::Unavailable { .. } => tracing::warn!(error = %err, "lock call failed; retrying"),
        _ => tracing::error!(error = %err, "lock call failed; retrying"),
    }
}
