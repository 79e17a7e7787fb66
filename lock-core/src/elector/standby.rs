//! Standing by: watch the lock, judge expiry on the local clock, take the lock when it is free.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::give_up::{GaveUp, PermanentFailures};
use super::memory::{LostWrite, Memory, TermMark};
use super::pending::{PendingWrites, Unanswered};
use super::readiness::Readiness;
use super::term_writes::TermWrites;
use super::{Hints, LeaderElector};
use crate::leadership::Stamp;
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
    /// `current` came from a hint, not a read: a hint can be forged, so a takeover that it
    /// would allow is confirmed by a read first.
    from_hint: bool,
    /// The last record (or absence) a read showed, and when a read first showed it: a
    /// confirming read of the same record keeps that time, so hints in between (forged ones
    /// too) can never push a lease further out.
    last_read: Option<(Option<Versioned>, Instant)>,
    /// How long a vanished record is waited for besides this candidate's own lease: the lease
    /// of the last held record a read showed (its holder may use longer timings, as during a
    /// rolling change), at most [`VANISHED_LEASE_CAP`] times this candidate's own.
    vanished_lease: Duration,
    /// Versions seen before `current`: a hint that carries one of them is late or repeated
    /// (for backends whose versions have no order; ordered ones are compared directly).
    superseded: VecDeque<Version>,
}

/// How many superseded versions a standby remembers to recognise late hints.
const REMEMBERED_VERSIONS: usize = 16;

/// A vanished record is waited for with at most this many of this candidate's own leases, even
/// when its last holder claimed a longer one: the bound that keeps a deleted ghost record with
/// a lease of decades from stopping the election, while a holder with somewhat longer timings
/// (a rolling change) is still waited for.
const VANISHED_LEASE_CAP: u32 = 4;

impl Observation {
    /// When the observed lease ends; `None` when there is no lease to wait for (a free record,
    /// or no record where this candidate never saw one). `own_lease` is what a vanished record
    /// is waited for.
    fn expires_at(&self, own_lease: Duration) -> Option<Instant> {
        match &self.current {
            None => self
                .vanished
                .then(|| self.since + own_lease.max(self.vanished_lease)),
            Some(seen) if seen.record.is_free() => None,
            Some(seen) => Some(self.since + seen.record.lease_duration()),
        }
    }

    /// True when the observation allows a takeover now, as far as its lease goes.
    fn expired(&self, now: Instant, own_lease: Duration) -> bool {
        self.expires_at(own_lease)
            .is_none_or(|expiry| now >= expiry)
    }

    fn takeable(&self, now: Instant, own_lease: Duration) -> bool {
        !self.stale && !self.from_hint && self.expired(now, own_lease)
    }

    /// Remembers `version` as replaced, so that a late hint carrying it is known as late; the
    /// oldest is forgotten past [`REMEMBERED_VERSIONS`].
    fn supersede(&mut self, version: Version) {
        if self.superseded.len() == REMEMBERED_VERSIONS {
            self.superseded.pop_front();
        }
        self.superseded.push_back(version);
    }

    /// True when a hint carries a version older than what this candidate already knows.
    fn is_late(&self, hinted: &Version) -> bool {
        self.superseded.contains(hinted)
            || self
                .current
                .as_ref()
                .is_some_and(|known| hinted.is_older_than(&known.version))
    }

    /// True when a hint shows the known term (same holder, token and acquireTime) at a renew
    /// that is not later than the known one's: a late hint on a backend with opaque versions.
    /// A wall-clock step back only makes a genuine renew take a read.
    fn is_older_renew(&self, hinted: &Versioned) -> bool {
        self.current.as_ref().is_some_and(|known| {
            known.version != hinted.version
                && known.record.holder_identity == hinted.record.holder_identity
                && known.record.leader_transitions == hinted.record.leader_transitions
                && known.record.acquire_time == hinted.record.acquire_time
                && hinted.record.renew_time <= known.record.renew_time
        })
    }
}

/// The state of one stand-by.
struct Standby<'m> {
    observed: Option<Observation>,
    memory: &'m mut Memory,
    /// Looks in a row that retried at once (after a lost race or an unanswered write).
    quick_retries: u32,
    /// This stand-by's writes whose answers were lost (see `pending.rs`).
    unanswered: PendingWrites,
    /// A held-back write of this candidate was found in place: before its next take, the
    /// backend's token floor is read and remembered, as after an answered create whose store
    /// moved (terms may have come and gone while that write was on its way).
    floor_due: bool,
    /// A held-back create of this candidate (this mark) whose token is still to be raised to
    /// the store's counter (see `held_create.rs`): tried after each read until it is answered
    /// or the record is no longer that one.
    held_create: Option<TermMark>,
    /// The run of permanent failures this stand-by is in, if any.
    failures: PermanentFailures,
    /// The term this candidate led before this stand-by, until the first read after it: if
    /// that read finds the term's record in place, it is released.
    ended: Option<TermWrites>,
    /// After releasing the record of its ended term: this candidate takes nothing before then.
    yield_until: Option<Instant>,
    /// A takeover of this candidate that landed but cannot start a term (see [`Found`]), whose
    /// release failed: tried again at the reads that still show exactly that record, a poll
    /// apart, until it is released or the record is another. Leaving it to expire would keep
    /// every candidate naming a leader that is not there for a whole lease.
    hand_back: Option<HandBack>,
}

/// A hand-back still to do.
struct HandBack {
    mark: TermMark,
    /// The record as the read that found it showed it: only that is released. A renew since
    /// (a client-go twin keeps the mark when it adopts a record naming its identity) is
    /// someone's running term.
    found: Versioned,
    /// Not tried again before then: a release is a write, and hints (forged ones too) must not
    /// make writes.
    retry_at: Instant,
    /// The marks of the releases written so far: one whose answer was lost may have landed,
    /// and a later read showing it tells that the hand-back is done.
    sent: Vec<chrono::DateTime<chrono::Utc>>,
}

/// What the read after an unanswered write made of it.
enum Found {
    /// It landed in time: the term it started.
    Won(Step),
    /// It landed, but too late or not durably enough to lead under, and nobody acts under it:
    /// hand it back at once.
    HandBack(TermMark),
}

/// How a stand-by ended.
pub(super) enum StandbyEnd {
    /// This candidate started a term: the term and the record it wrote.
    Won(Leadership, Versioned),
    /// Cancelled; `released` when a write of this candidate that went unanswered had landed
    /// and was handed back.
    Cancelled { released: bool },
    /// Every lock call failed with a permanent error for the time the elector was given.
    GaveUp(GaveUp),
}

/// How a create that starts a term is checked for an A-B-A: a record that came and went
/// (created by another candidate that may still lead, then deleted) while this candidate saw
/// only the absence, which "create if absent" cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CreateCheck {
    /// A takeover by compare-and-swap on a version, or a first create on a backend without a
    /// token floor by a candidate that never saw a record: nothing to check.
    None,
    /// The backend's counter must have moved by nothing but the create since this value.
    MovedSince(u64),
    /// The backend cannot tell (no floor, or the floor when the absence began is unknown):
    /// hold the created record for a lease before leading.
    HoldBack,
}

impl CreateCheck {
    fn for_create(takeover: bool, vanished: bool, floor: u64, floor_seen: Option<u64>) -> Self {
        match (takeover, vanished, floor_seen) {
            (true, _, _) => Self::None,
            (false, false, _) if floor == 0 => Self::None,
            (false, false, _) => Self::MovedSince(floor),
            (false, true, Some(seen)) if floor > 0 => Self::MovedSince(seen.min(floor)),
            (false, true, _) => Self::HoldBack,
        }
    }
}

/// What a write that was to start a term did.
enum Taken {
    /// The term started.
    Term(Leadership, Versioned),
    /// The record was created, but the store moved meanwhile (or may have): no term yet. Also
    /// the backend's counter read after the create, above every token written before it landed.
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
        readiness: &mut Readiness,
        ended: Option<TermWrites>,
        cancel: &CancellationToken,
    ) -> StandbyEnd {
        let mut standby = Standby {
            observed: None,
            memory,
            quick_retries: 0,
            unanswered: PendingWrites::default(),
            floor_due: false,
            held_create: None,
            failures: PermanentFailures::default(),
            ended,
            yield_until: None,
            hand_back: None,
        };
        let mut gave_up = None;
        loop {
            if hints.resubscribe_if_due() {
                // Changes between the last read and the new subscription were missed.
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
            }
            let wake_at = match self
                .look(&mut standby, hints.active(), readiness, cancel)
                .await
            {
                Step::Won(term, written) => {
                    standby.memory.started(&written.record);
                    return StandbyEnd::Won(term, written);
                }
                Step::Again => continue,
                Step::WaitUntil(at) => at,
                Step::Cancelled => break,
            };
            if let Some(report) = self.gave_up(&mut standby.failures) {
                gave_up = Some(report);
                break;
            }
            let wake_at = self
                .gives_up_at(&standby.failures)
                .map_or(wake_at, |at| wake_at.min(at));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                hint = hints.next() => self.apply_hint(&mut standby, hint),
                _ = readiness.changed() => {}
                _ = sleep_until(wake_at) => {}
            }
        }
        // A lost write may have made this candidate the holder: hand that back.
        let released = match self.lost_write_in_place(&mut standby.unanswered).await {
            // A create that may not start a term at once must stay held for its lease: freeing
            // it would let a standby in under a term that came and went unseen. Its token is
            // raised instead, if it landed (see `held_create.rs`), as is that of a held create
            // this stand-by already had (only one of the two can be in place; each raise
            // checks its own mark).
            Some(unanswered) if unanswered.hold_back => {
                if let Some(held) = standby
                    .held_create
                    .replace(unanswered.mark)
                    .filter(|held| *held != unanswered.mark)
                {
                    self.raise_held_before_leaving(standby.memory, held).await;
                }
                false
            }
            Some(unanswered) => self
                .release_marked(
                    &unanswered.mark,
                    &|fresh| !unanswered.renewed_by_another(fresh),
                    &mut Vec::new(),
                )
                .await
                .unwrap_or(false),
            None => false,
        };
        // A hand-back still to do: the stand-by found it in place (only one record is).
        let released = match standby.hand_back.take() {
            Some(mut hand_back) if !released => {
                let found = hand_back.found;
                let handed = self
                    .release_marked(
                        &hand_back.mark,
                        &|fresh| *fresh == found,
                        &mut hand_back.sent,
                    )
                    .await
                    .unwrap_or(false);
                if handed {
                    self.shared.handed_back(hand_back.mark.token);
                }
                handed
            }
            _ => released,
        };
        if let Some(mark) = standby.held_create {
            self.raise_held_before_leaving(standby.memory, mark).await;
        }
        match gave_up {
            Some(report) => StandbyEnd::GaveUp(report),
            None => StandbyEnd::Cancelled { released },
        }
    }

    /// Reads the lock if needed, and takes it if it is free or its lease ran out.
    async fn look(
        &self,
        standby: &mut Standby<'_>,
        hints_active: bool,
        readiness: &Readiness,
        cancel: &CancellationToken,
    ) -> Step {
        let own_lease = self.config.lease_duration;
        // With hints, a fresh observation (from a read or from a hint's record) is enough to
        // wait on, for up to CONFIRM_INTERVAL; without them, every wake-up that cannot act on
        // the observation polls.
        let now = Instant::now();
        let hand_back_due = standby
            .hand_back
            .as_ref()
            .is_some_and(|hand_back| now >= hand_back.retry_at);
        let must_read = hand_back_due
            || standby.observed.as_ref().is_none_or(|seen| {
                seen.stale
                    || (seen.from_hint && seen.expired(now, own_lease))
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
                    // An answer alone does not end a run of permanent failures: a read may
                    // answer where every write is refused (a Kubernetes namespace that does
                    // not exist reads as "no record"). The run ends when there is nothing to
                    // write (a valid lease, not ready) or a write is answered.
                    match self.adopt_unanswered(standby, current.as_ref()) {
                        Some(Found::Won(won)) => return won,
                        Some(Found::HandBack(mark)) => {
                            tracing::warn!(
                                fencing_token = mark.token,
                                "a takeover of this candidate whose reply was lost (or that was \
                                 not confirmed durable) landed, but it cannot start a term: \
                                 releasing it"
                            );
                            standby.hand_back = current.clone().map(|found| HandBack {
                                mark,
                                found,
                                retry_at: Instant::now(),
                                sent: Vec::new(),
                            });
                        }
                        None => {}
                    }
                    if let Some(step) = self.hand_back(standby, current.as_ref()).await {
                        return step;
                    }
                    self.hold_forgotten_write(standby, current.as_ref());
                    if let Some(step) = self.release_ended_term(standby, current.as_ref()).await {
                        return step;
                    }
                    self.observe(&mut standby.observed, standby.memory, current, false);
                    if let Some(seen) = standby.observed.as_mut() {
                        seen.read_at = Instant::now();
                    }
                    self.note_floor_of_absence(standby).await;
                    self.note_floor_of_held_back_write(standby).await;
                    self.raise_held_create(standby).await;
                }
                Err(err) => {
                    report(&err);
                    standby.failures.failed(err);
                    return Step::WaitUntil(self.next_poll());
                }
            }
        }
        let Some(seen) = standby.observed.as_mut() else {
            return Step::WaitUntil(self.next_poll());
        };
        if let Some(expiry) = seen.expires_at(own_lease).filter(|at| Instant::now() < *at) {
            standby.quick_retries = 0;
            standby.failures.answered();
            let wake_at = if hints_active {
                expiry.min(seen.read_at + CONFIRM_INTERVAL)
            } else {
                expiry.min(self.next_poll())
            };
            let wake_at = standby
                .hand_back
                .as_ref()
                .map_or(wake_at, |hand_back| wake_at.min(hand_back.retry_at));
            return Step::WaitUntil(wake_at);
        }
        let yields_until = self.yields_until(seen).max(standby.yield_until);
        if let Some(until) = yields_until.filter(|at| Instant::now() < *at) {
            return Step::WaitUntil(until);
        }
        // Readiness as it is now, not as it was when this look began: the reads above may
        // have taken long (and so may the token floor's below).
        let unready_wait = if hints_active {
            seen.read_at + CONFIRM_INTERVAL
        } else {
            self.next_poll()
        };
        if !readiness.is_ready() {
            // Not ready: follow the lock as usual, never take it (a change of readiness wakes
            // the loop at once). Nothing to write, so no failure to count.
            standby.failures.answered();
            return Step::WaitUntil(unready_wait);
        }
        let current = seen.current.clone();
        let (floor_seen, vanished) = (seen.floor, seen.vanished);
        let (token, floor) = match self.next_token(current.as_ref(), standby.memory).await {
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
                standby.failures.failed(err);
                return Step::WaitUntil(self.next_poll());
            }
        };
        if !readiness.is_ready() {
            return Step::WaitUntil(unready_wait);
        }
        let sent = Stamp::now();
        let record = self.record_for_term(
            current.as_ref().map(|seen| &seen.record),
            i32::try_from(token).expect("next_token stays within i32"),
        );
        let mark = TermMark::of(&record);
        let renew_time = record.renew_time;
        let takeover = current.is_some();
        let check = CreateCheck::for_create(takeover, vanished, floor, floor_seen);
        match self
            .take(current.as_ref(), record, check, floor, sent)
            .await
        {
            Ok(Taken::Term(term, written)) => Step::Won(term, written),
            Ok(Taken::HeldBack(written, counter)) => {
                // Our own record, but no term: wait for its lease like everyone else, and
                // take it over then above every token that may have been written meanwhile.
                standby.memory.started(&written.record);
                standby.memory.saw_token(counter);
                standby.held_create = Some(TermMark::of(&written.record));
                self.observe(&mut standby.observed, standby.memory, Some(written), false);
                self.raise_held_create(standby).await;
                Step::Again
            }
            Err(err) => {
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
                match err {
                    LockError::Conflict { .. } | LockError::AlreadyExists { .. } => {
                        tracing::debug!(error = %err, "another candidate wrote first");
                        standby.failures.answered();
                    }
                    _ => {
                        report(&err);
                        if err.is_retryable() {
                            let not_durable = matches!(err, LockError::NotReplicated { .. });
                            // Named in the log: should it land, the others may name this
                            // candidate as leader for up to a lease although it does not lead.
                            tracing::warn!(
                                fencing_token = mark.token,
                                "a write to start a term went unanswered or unconfirmed: it \
                                 may have landed"
                            );
                            standby.memory.sent_unanswered(LostWrite {
                                mark,
                                takeover,
                                renew_time,
                            });
                            standby.unanswered.push(Unanswered {
                                mark,
                                sent,
                                hold_back: check != CreateCheck::None || (not_durable && !takeover),
                                not_durable,
                                takeover,
                                renew_time,
                                over: current.clone(),
                            });
                        }
                        standby.failures.failed(err);
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

    /// Until when this candidate leaves a takeable lock to another: a record whose preferred
    /// holder names someone else (a planned handover) is that candidate's alone for one retry
    /// period after it became takeable (released, or its lease out). If it does not take the
    /// lock by then, the election goes on as usual.
    fn yields_until(&self, seen: &Observation) -> Option<Instant> {
        let preferred = seen.current.as_ref()?.record.preferred_holder.as_deref()?;
        if preferred.is_empty() || preferred == self.config.identity {
            return None;
        }
        let takeable_at = seen
            .expires_at(self.config.lease_duration)
            .unwrap_or(seen.since);
        Some(takeable_at + self.config.retry_period)
    }

    /// The lost write that may be in place as this stand-by ends: the only one kept, or, of
    /// several, the one a read shows (all were made over the state the last read showed, so at
    /// most one of them can have landed); the newest if the lock cannot be read.
    async fn lost_write_in_place(&self, pending: &mut PendingWrites) -> Option<Unanswered> {
        if pending.len() > 1 {
            if let Ok(current) = self.bounded(self.call_deadline(), self.lock.get()).await {
                return pending.settle(current.as_ref(), &self.config.identity);
            }
        }
        pending.take_newest()
    }

    /// The first read after this candidate's term ended: if it shows that term's record (the
    /// term ran out at its renew deadline, or a renew of it landed late), nobody leads under
    /// it, yet every candidate would wait for its lease and name a leader that is not leading.
    /// It is released at once, as a step-down releases, and this candidate leaves the lock to
    /// the others for one retry period: it has just failed to keep a term. Safe as a release
    /// on cancellation is: the record is exactly that term's (its mark), and the term is over.
    /// A renew still on its way after the release finds another version and fails.
    async fn release_ended_term(
        &self,
        standby: &mut Standby<'_>,
        current: Option<&Versioned>,
    ) -> Option<Step> {
        let own = standby.ended.take()?;
        let identity = self.config.identity.as_str();
        let current = current?;
        if own.renewed_by_another(&current.record, identity) {
            // Another process with this identity renewed the term's record keeping its mark
            // (a client-go elector adopts any record naming it): its running term, left to it.
            tracing::error!(
                identity,
                fencing_token = own.mark.token,
                "another process renewed the record of this candidate's ended term under this \
                 identity: leaving it to that process; give every process its own identity"
            );
            return None;
        }
        if !own.wrote(&current.record, identity) {
            return None;
        }
        tracing::info!(
            fencing_token = own.mark.token,
            "the record of this candidate's ended term is still in place: releasing it"
        );
        let released = self.release_own(&own).await;
        if let Some(seen) = standby.observed.as_mut() {
            seen.stale = true;
        }
        if released {
            self.shared.released(own.mark.token);
            standby.yield_until = Some(Instant::now() + self.config.retry_period);
        }
        Some(Step::Again)
    }

    /// After a write that started a term went unanswered, the next read tells whether it
    /// landed: if the record is exactly the one this process sent (holder, token and the
    /// acquireTime mark), the term started when that write was sent, and it is taken up if it is
    /// still valid. A record with this identity and token but another mark is a twin's.
    fn adopt_unanswered(
        &self,
        standby: &mut Standby<'_>,
        current: Option<&Versioned>,
    ) -> Option<Found> {
        standby
            .unanswered
            .forget_older_than(self.config.lease_duration);
        let unanswered = standby.unanswered.settle(current, &self.config.identity)?;
        let current = current?;
        if unanswered.renewed_by_another(current) {
            tracing::error!(
                fencing_token = unanswered.mark.token,
                "a write of this candidate landed and was then renewed by another process with \
                 the identity {} (a client-go elector adopts any record naming its identity): \
                 waiting for its lease to run out. Give every instance a unique identity",
                self.config.identity
            );
            standby.floor_due = true;
            return None;
        }
        let valid_until = unanswered.sent.at + self.config.renew_deadline;
        // Someone rewrote it meanwhile with a shorter lease (keeping the mark): standbys may
        // take it over before this term's renew deadline, so it starts no term, as a running
        // term ends on such a write.
        let shortened =
            current.record.lease_duration_seconds < self.config.lease_duration_seconds();
        let late = Instant::now() >= valid_until;
        if unanswered.hold_back || unanswered.not_durable || shortened || late {
            // Ours but not adopted (no twin's). Remembered as this candidate's, and the
            // store's counter is read before its next take (terms may have come and gone
            // while the write was on its way).
            standby.memory.started(&current.record);
            standby.floor_due = true;
            if !unanswered.takeover {
                standby.held_create = Some(unanswered.mark);
            }
            // A takeover (by compare-and-swap over a lease that ran out) found too late or not
            // confirmed durable: no term runs under it, and holding it for a lease would keep
            // every candidate waiting for, and naming, a leader that is not there. Releasing
            // it is as safe as writing it was, so it is released at once. A create is held for
            // its lease instead: it may have landed after a term that came and went on a
            // deleted record, whose leader may still act until its renew deadline, and
            // freeing it could let a standby in under that leader. So is a record rewritten
            // with a shorter lease (someone else wrote it).
            let hand_back = unanswered.takeover && !unanswered.hold_back && !shortened;
            return hand_back.then_some(Found::HandBack(unanswered.mark));
        }
        tracing::info!(
            fencing_token = unanswered.mark.token,
            "started leading: an unanswered write had landed"
        );
        let term = Leadership::new(
            self.config.identity.clone(),
            unanswered.mark.token,
            unanswered.sent,
            self.config.renew_deadline,
        );
        Some(Found::Won(Step::Won(term, current.clone())))
    }

    /// With a hand-back to do (see [`Standby::hand_back`]) and due, and the read `current`
    /// showing exactly its record: releases it, announcing the hand-back when done, and leaves
    /// the lock to the others for a retry period (this candidate just failed to start a term
    /// under it). `None` when there is nothing to do now: forgotten once the record is another,
    /// and after a failed release tried again a poll later, while the stand-by goes on as
    /// usual meanwhile (the record is this candidate's, waited for like any; a permanent
    /// refusal counts towards giving up).
    async fn hand_back(
        &self,
        standby: &mut Standby<'_>,
        current: Option<&Versioned>,
    ) -> Option<Step> {
        let hand_back = standby.hand_back.as_mut()?;
        if current != Some(&hand_back.found) {
            // A release of an earlier try whose answer was lost may be what is there now.
            let released = current.is_some_and(|current| {
                hand_back.mark.released_by(&current.record, &hand_back.sent)
            });
            if released {
                // The failure reported by that try is no news any more.
                self.shared.forget_release_error();
                self.shared.handed_back(hand_back.mark.token);
                standby.yield_until = Some(Instant::now() + self.config.retry_period);
            }
            standby.hand_back = None;
            return None;
        }
        if Instant::now() < hand_back.retry_at {
            return None;
        }
        let mark = hand_back.mark;
        let found = hand_back.found.clone();
        match self
            .release_marked(&mark, &|fresh| *fresh == found, &mut hand_back.sent)
            .await
        {
            Ok(true) => {
                standby.hand_back = None;
                self.shared.handed_back(mark.token);
                standby.yield_until = Some(Instant::now() + self.config.retry_period);
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
                Some(Step::Again)
            }
            Ok(false) => {
                standby.hand_back = None;
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
                Some(Step::Again)
            }
            Err(err) => {
                hand_back.retry_at = self.next_poll();
                standby.failures.failed(err);
                None
            }
        }
    }

    /// A read showing a write of this candidate that its stand-by no longer kept (too old, or
    /// made over a state the store had left) and that landed after all: never adopted (the
    /// state it was made over may have come back under a term that still runs) and never a
    /// twin's, it is held for its lease as a held-back create is, and the store's counter is
    /// read before the next take. A create's token is raised above that counter too (see
    /// `held_create.rs`): the terms that may have come and gone while it was on its way are
    /// below it then.
    fn hold_forgotten_write(&self, standby: &mut Standby<'_>, current: Option<&Versioned>) {
        let Some(current) = current else {
            return;
        };
        let Some(write) = standby
            .memory
            .forgotten_write(&current.record, &self.config.identity)
        else {
            return;
        };
        tracing::warn!(
            fencing_token = write.mark.token,
            "a write of this candidate whose reply was lost landed long after it was sent: \
             holding it for its lease before any term"
        );
        standby.memory.started(&current.record);
        standby.floor_due = true;
        if !write.takeover {
            standby.held_create = Some(write.mark);
        }
    }

    /// The fencing token of a new term over `current`: above the record's
    /// `leaderTransitions`, above every token this candidate read on the lock, above the tokens
    /// hints carried unless that would not fit (a forged huge token must not stop the
    /// election), and, for a new record, at least the backend's
    /// [`token_floor`](crate::Lock::token_floor). `None` when no such token fits the record's
    /// 32-bit field. Also returns the floor read (0 for a takeover).
    async fn next_token(
        &self,
        current: Option<&Versioned>,
        memory: &Memory,
    ) -> Result<Option<(u64, u64)>, LockError> {
        let above_record = match current {
            None => Some(0),
            Some(seen) => u64::try_from(seen.record.leader_transitions.max(0))
                .ok()
                .map(|token| token + 1),
        };
        let above_read = memory.highest_token().map_or(0, |token| token + 1);
        let floor = match current {
            None => {
                self.bounded(self.call_deadline(), self.lock.token_floor())
                    .await?
            }
            Some(_) => 0,
        };
        let fits = |token: &u64| i32::try_from(*token).is_ok();
        let Some(token) = above_record
            .map(|token| token.max(above_read).max(floor))
            .filter(fits)
        else {
            return Ok(None);
        };
        let with_hinted = memory
            .highest_hinted()
            .map(|hinted| token.max(hinted.saturating_add(1)))
            .filter(fits);
        Ok(Some((with_hinted.unwrap_or(token), floor)))
    }

    /// Writes `record`, which starts a term, over `current` (creating it if there is none, at
    /// or above the token `floor` read before); `sent` is when this call started.
    async fn take(
        &self,
        current: Option<&Versioned>,
        record: crate::LeaderElectionRecord,
        check: CreateCheck,
        floor: u64,
        sent: Stamp,
    ) -> Result<Taken, LockError> {
        let deadline = self.call_deadline();
        let version = match current {
            None => self.bounded(deadline, self.lock.create(&record)).await?,
            Some(seen) => {
                self.bounded(deadline, self.lock.update(&record, &seen.version))
                    .await?
            }
        };
        let moved = match check {
            CreateCheck::None => None,
            CreateCheck::MovedSince(since) => self.store_moved_during_create(since).await?,
            // The counter now, not the floor read before the create (the absence's floor was
            // never read): terms may have come and gone while the create was on its way. If
            // it cannot be read, the create counts as unanswered, and the read after it reads
            // the counter (see `Standby::floor_due`).
            CreateCheck::HoldBack => Some(
                self.bounded(self.call_deadline(), self.lock.token_floor())
                    .await?
                    .max(floor),
            ),
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
            sent,
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

    /// After a held-back write of this candidate was found in place (see
    /// [`Standby::floor_due`]): remembers the backend's token floor, so that the takeover at
    /// the end of that write's lease is above every term the store saw meanwhile. Tried again
    /// at the next read until it succeeds.
    async fn note_floor_of_held_back_write(&self, standby: &mut Standby<'_>) {
        if !standby.floor_due {
            return;
        }
        match self
            .bounded(self.call_deadline(), self.lock.token_floor())
            .await
        {
            Ok(counter) => {
                standby.memory.saw_token(counter);
                standby.floor_due = false;
            }
            Err(err) => tracing::debug!(error = %err, "could not read the token floor"),
        }
    }

    /// With a held-back create of this candidate in place (see [`Standby::held_create`]) and
    /// the store's counter known: raises the record's token, keeping the lease clock of the
    /// hold (the record is the same hold under a higher token).
    async fn raise_held_create(&self, standby: &mut Standby<'_>) {
        let Some(mark) = standby.held_create else {
            return;
        };
        if standby.floor_due {
            return;
        }
        let Some(seen) = standby.observed.as_mut() else {
            return;
        };
        let Some(held) = seen.current.clone().filter(|held| self.holds(held, &mark)) else {
            // Replaced, released or gone: nothing of this candidate's is left to raise.
            standby.held_create = None;
            return;
        };
        let raised = match self.raise_held_token(standby.memory, &held).await {
            Ok(raised) => raised,
            Err(err) => {
                tracing::debug!(error = %err, "could not raise the held record's token");
                return;
            }
        };
        standby.held_create = None;
        let Some(raised) = raised else {
            return;
        };
        // The hold only has to outlast terms that ended before the create landed: its lease
        // still counts from when a read (or the create's answer) first showed it.
        seen.supersede(held.version);
        seen.last_read = Some((Some(raised.clone()), seen.since));
        seen.current = Some(raised);
    }

    /// Takes in a read (or, with `from_hint`, a hint) of the lock: anything new (another
    /// version, or the same version with other content, as after a record was deleted and made
    /// again) restarts the lease clock, except that a read showing the record an earlier read
    /// showed keeps the time that read first saw it.
    fn observe(
        &self,
        observed: &mut Option<Observation>,
        memory: &mut Memory,
        current: Option<Versioned>,
        from_hint: bool,
    ) {
        let now = Instant::now();
        let vanished = current.is_none() && memory.saw_record();
        if let Some(seen) = &current {
            memory.saw(&seen.record, from_hint);
            self.warn_of_twin(memory, seen);
        }
        // Only a record: an absence read twice may hide a record that came and went between.
        let first_read = observed
            .as_ref()
            .and_then(|seen| seen.last_read.as_ref())
            .filter(|(read, _)| !from_hint && current.is_some() && *read == current)
            .map_or(now, |(_, at)| *at);
        match observed {
            Some(seen) if seen.current == current => {
                seen.stale = false;
                if !from_hint {
                    seen.from_hint = false;
                    if seen.last_read.as_ref().map(|(read, _)| read) != Some(&current) {
                        seen.last_read = Some((current, seen.since));
                    }
                }
            }
            Some(seen) => {
                if vanished {
                    // The last held record a read showed, or the one this candidate last knew
                    // of (a hint's, which may be a longer-lease holder it never read): the
                    // longer, within the cap (so a forged hint delays by at most the cap).
                    let lease_of = |seen: Option<&Versioned>| {
                        seen.filter(|held| !held.record.is_free())
                            .map_or(Duration::ZERO, |held| held.record.lease_duration())
                    };
                    let read =
                        lease_of(seen.last_read.as_ref().and_then(|(read, _)| read.as_ref()));
                    let known = lease_of(seen.current.as_ref());
                    seen.vanished_lease = read
                        .max(known)
                        .min(self.config.lease_duration * VANISHED_LEASE_CAP);
                }
                let replaced = seen
                    .current
                    .take()
                    .filter(|old| current.as_ref().map(|new| &new.version) != Some(&old.version));
                if let Some(old) = replaced {
                    seen.supersede(old.version);
                }
                seen.since = if from_hint { now } else { first_read };
                seen.vanished = vanished;
                seen.floor = None;
                seen.stale = false;
                seen.from_hint = from_hint;
                if !from_hint {
                    seen.last_read = Some((current.clone(), seen.since));
                }
                seen.current = current;
                if vanished {
                    self.warn_vanished();
                }
            }
            None => {
                if vanished {
                    self.warn_vanished();
                }
                *observed = Some(Observation {
                    current: current.clone(),
                    since: now,
                    read_at: now,
                    vanished,
                    floor: None,
                    stale: false,
                    from_hint,
                    last_read: (!from_hint).then_some((current, now)),
                    vanished_lease: Duration::ZERO,
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
        if seen.record.holder_identity != *identity || memory.wrote(&seen.record, identity) {
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
        let own_write = match &hint {
            Hint::Record(current) => standby.unanswered.hinted(current, &self.config.identity),
            Hint::Changed => {
                // Whatever changed may be what a kept write was made over.
                standby.unanswered.forget();
                false
            }
        };
        match hint {
            Hint::Record(current) => {
                let late = standby.observed.as_ref().is_some_and(|seen| {
                    seen.is_late(&current.version) || seen.is_older_renew(&current)
                });
                if late {
                    // Late, repeated, or a record made again at a lower version (a backend
                    // whose counter restarted): a read tells which, instead of guessing.
                    if let Some(seen) = standby.observed.as_mut() {
                        seen.stale |= seen.current.as_ref() != Some(&current);
                    }
                } else {
                    self.observe(&mut standby.observed, standby.memory, Some(current), true);
                }
            }
            Hint::Changed => {
                if let Some(seen) = standby.observed.as_mut() {
                    seen.stale = true;
                }
            }
        }
        if own_write || standby.ended.is_some() {
            // Only a read decides the fate of a write whose reply was lost (adopted, handed
            // back, or held) once a hint shows it in place, or of the record of the term that
            // just ended (released if in place): a hint, even one showing that record, must not
            // let this candidate wait on it instead of reading.
            if let Some(seen) = standby.observed.as_mut() {
                seen.stale = true;
            }
        }
    }
}

pub(super) fn report(err: &LockError) {
    match err {
        LockError::Unavailable { .. } | LockError::NotReplicated { .. } => {
            tracing::warn!(error = %err, "lock call failed; retrying")
        }
        _ => tracing::error!(error = %err, "lock call failed; retrying"),
    }
}
