//! Leading: renew before the deadline, step down on time, release on request.

use std::time::Duration;

use rand::Rng as _;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::memory::TermMark;
use super::readiness::Readiness;
use super::term_writes::TermWrites;
use super::{to_micros, whole_seconds, Hints, LeaderElector};
use crate::leadership::Stamp;
use crate::{
    Hint, LeaderElectionRecord, Leadership, LockError, RenewOutcome, RenewReport, StopReason,
    Versioned,
};

/// How a term ended.
pub(super) enum Ended {
    Cancelled { released: bool },
    Lost(StopReason),
}

/// The result of one renew attempt.
enum Renewal {
    Renewed,
    Superseded(Superseder),
    /// The record is still this term's but names another preferred holder.
    HandOver(String),
    Failed(LockError),
}

/// Who holds the lock instead of this term, as the read that showed it said.
struct Superseder {
    holder: Option<String>,
    /// When that holder's lease runs out, as this candidate observed it.
    until: Option<Instant>,
}

impl Superseder {
    fn of(fresh: Option<&Versioned>) -> Self {
        let record = fresh.map(|seen| &seen.record);
        Self {
            holder: record.and_then(|r| r.holder()).map(str::to_owned),
            until: record
                .filter(|r| !r.is_free())
                .map(|r| Instant::now() + r.lease_duration()),
        }
    }
}

/// What a read made to check a hint showed.
enum Check {
    /// The record is still this term's.
    Ours,
    /// The record is still this term's, but names another candidate as its preferred holder:
    /// a planned handover was asked for.
    HandOver(String),
    /// Someone else's record, a free one, or none.
    Superseded(Superseder),
    /// The read failed: the next renew decides.
    Unknown,
}

/// The shortest pause between two renew attempts after a failure.
const MIN_RENEW_RETRY: Duration = Duration::from_millis(50);

/// Pause between release attempts that failed for a passing reason.
const RELEASE_BACKOFF: Duration = Duration::from_millis(200);

impl LeaderElector {
    /// Leads until the term ends; `written` is the record and version this candidate wrote last,
    /// `own` the term's mark and the `renewTime`s it sends (kept by the caller: the stand-by
    /// after the term needs them).
    pub(super) async fn lead(
        &self,
        term: Leadership,
        mut written: Versioned,
        own: &mut TermWrites,
        hints: &mut Hints,
        readiness: &mut Readiness,
        cancel: &CancellationToken,
    ) -> Ended {
        self.shared.started(&term);
        // An adopted write (its reply was lost) may carry a handover request that landed on it
        // before the read that adopted it: renewing over it on the fast path would keep the
        // request in the record and never act on it.
        if let Some(to) = self.handover_asked(&written) {
            return self
                .make_way(&term, own, StopReason::HandedOver { to })
                .await;
        }
        // After a failed renew: when to try again (every retry period, within the deadline).
        let mut retry_at: Option<Instant> = None;
        loop {
            hints.resubscribe_if_due();
            // The renew interval applies only while change hints flow: they tell the leader of
            // an outside write at once. Without them, the leader learns of one only when it
            // renews, so it renews every retry period, which bounds that overlap as before.
            // Computed on every turn: a hint stream that ends wakes this loop (it is reported
            // as a change), and the shorter period applies from then on.
            let period = if hints.active() {
                self.config.renew_every()
            } else {
                self.config.retry_period
            };
            let next_renew = retry_at.unwrap_or(term.renewed_at() + period);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return self.step_down(&term, own).await,
                _ = sleep_until(term.valid_until()) => {
                    return self.lose(&term, StopReason::RenewDeadlineExceeded);
                }
                _ = sleep_until(next_renew) => {}
                _ = readiness.hand_over_due() => {
                    return self.make_way(&term, own, StopReason::Unready).await;
                }
                hint = hints.next() => {
                    if !self.hint_may_end_term(&hint, &written) {
                        continue;
                    }
                    // The record may no longer be this term's (an outside write, a deletion):
                    // check now rather than at the next renew, so the term ends within
                    // milliseconds of the change. A hint alone never ends it: it may be forged.
                    let check = tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return self.step_down(&term, own).await,
                        check = self.check_record(&term, own, &mut written) => check,
                    };
                    match check {
                        Check::Superseded(by) => return self.superseded(&term, by),
                        Check::HandOver(to) => {
                            return self.make_way(&term, own, StopReason::HandedOver { to }).await;
                        }
                        Check::Ours | Check::Unknown => continue,
                    }
                }
            }
            // The boot clock may say the term ran out while the machine was suspended, although
            // the monotonic clock did not: never renew a term that is over.
            if !term.is_leader() {
                return self.lose(&term, StopReason::RenewDeadlineExceeded);
            }
            let renewal = tokio::select! {
                biased;
                _ = cancel.cancelled() => return self.step_down(&term, own).await,
                renewal = self.renew_and_report(&term, own, &mut written) => renewal,
            };
            match renewal {
                Renewal::Renewed => retry_at = None,
                Renewal::Superseded(by) => return self.superseded(&term, by),
                Renewal::HandOver(to) => {
                    return self
                        .make_way(&term, own, StopReason::HandedOver { to })
                        .await;
                }
                Renewal::Failed(err) => {
                    let now = Instant::now();
                    let remaining = term.valid_until().saturating_duration_since(now);
                    tracing::warn!(
                        error = %err,
                        valid_for = ?remaining,
                        "renew failed; retrying until the renew deadline"
                    );
                    // Retry within the time left, however the deadline and the period relate.
                    let pause = self
                        .config
                        .retry_period
                        .min(remaining / 2)
                        .max(MIN_RENEW_RETRY);
                    retry_at = Some(now + pause);
                }
            }
        }
    }

    /// True when `hint` may mean the record is no longer this term's: anything but a write of
    /// this term (the hint of its last write, or a late one of an earlier write). A write by
    /// someone else that kept this term's mark is checked too: it may have shortened the lease.
    fn hint_may_end_term(&self, hint: &Hint, written: &Versioned) -> bool {
        match hint {
            Hint::Changed => true,
            Hint::Record(seen) => {
                seen.version != written.version && !seen.version.is_older_than(&written.version)
            }
        }
    }

    /// True when `fresh` is this term's record (its mark, and a `renewTime` this term sent)
    /// with a lease at least this candidate's: someone who rewrote it with a shorter lease let
    /// standbys take over sooner than this term's renew deadline allows for, so the term must
    /// end. A record with the mark and a `renewTime` this term never sent was renewed by
    /// another process with this identity (a client-go elector adopts any record naming it):
    /// that process leads, and this term must end rather than renew over it.
    fn still_ours(&self, fresh: &Versioned, own: &TermWrites) -> bool {
        if own.renewed_by_another(&fresh.record, &self.config.identity) {
            tracing::error!(
                identity = %self.config.identity,
                fencing_token = own.mark.token,
                "another process renewed this term's record under this identity (a client-go \
                 elector given the same identity?): this term ends and leaves the lock to it; \
                 give every process its own identity"
            );
            return false;
        }
        own.wrote(&fresh.record, &self.config.identity)
            && fresh.record.lease_duration_seconds >= self.config.lease_duration_seconds()
    }

    /// Reads the lock to see whether the record is still this term's.
    async fn check_record(
        &self,
        term: &Leadership,
        own: &TermWrites,
        written: &mut Versioned,
    ) -> Check {
        match self.bounded(term.valid_until(), self.lock.get()).await {
            Ok(Some(fresh)) if self.still_ours(&fresh, own) => {
                if let Some(to) = self.handover_asked(&fresh) {
                    return Check::HandOver(to);
                }
                if fresh.version != written.version {
                    // Our record, rewritten by someone who kept it ours: renew over it.
                    keep_coordination(&mut written.record, &fresh.record);
                    written.version = fresh.version;
                }
                Check::Ours
            }
            Ok(fresh) => Check::Superseded(Superseder::of(fresh.as_ref())),
            Err(err) => {
                tracing::debug!(error = %err, "could not check the record after a hint");
                Check::Unknown
            }
        }
    }

    /// Ends the term because the record belongs to someone else now (or to nobody).
    fn superseded(&self, term: &Leadership, by: Superseder) -> Ended {
        let end = self.lose(
            term,
            StopReason::Superseded {
                holder: by.holder.clone(),
            },
        );
        self.shared.observed_leader(by.holder.as_deref(), by.until);
        end
    }

    /// One renew, timed and reported to the renew callbacks before its outcome is acted on.
    async fn renew_and_report(
        &self,
        term: &Leadership,
        own: &mut TermWrites,
        written: &mut Versioned,
    ) -> Renewal {
        let started = Instant::now();
        let mut slow_path = false;
        let renewal = self.renew(term, own, written, &mut slow_path).await;
        let outcome = match &renewal {
            Renewal::Renewed => RenewOutcome::Renewed { slow_path },
            Renewal::Superseded(by) => RenewOutcome::Superseded {
                holder: by.holder.clone(),
            },
            Renewal::HandOver(to) => RenewOutcome::HandedOver { to: to.clone() },
            Renewal::Failed(err) => RenewOutcome::Failed {
                error: err.to_string(),
            },
        };
        self.shared.renew_reported(&RenewReport {
            fencing_token: term.fencing_token(),
            latency: Instant::now().saturating_duration_since(started),
            outcome,
        });
        renewal
    }

    /// One renew: write with the version written last; after a conflict, read, and write again
    /// over the fresh version only if the record still belongs to this term. `slow_path` is set
    /// when it read after a conflict.
    async fn renew(
        &self,
        term: &Leadership,
        own: &mut TermWrites,
        written: &mut Versioned,
        slow_path: &mut bool,
    ) -> Renewal {
        let deadline = term.valid_until();
        let mut record = written.record.clone();
        record.lease_duration_seconds = self.config.lease_duration_seconds();
        let renew_time = to_micros(chrono::Utc::now());
        record.renew_time = Some(renew_time);
        for attempt in 0..2 {
            // Remembered before it is sent: it may land although no answer comes back, and a
            // later read that shows it must find it this term's, not a twin's.
            own.sending(renew_time);
            let sent = Stamp::now();
            let result = self
                .bounded(deadline, self.lock.update(&record, &written.version))
                .await;
            match result {
                // A reply that comes after the deadline ends nothing more: the term is over.
                Ok(_) if Instant::now() >= deadline => {
                    return Renewal::Failed(LockError::timed_out(
                        self.shared.lock_name.clone(),
                        self.config.renew_deadline,
                    ));
                }
                Ok(version) => {
                    if !term.renewed(sent) {
                        // The term ran out (or ended) between the check above and now: it
                        // stays over, whatever the store says.
                        return Renewal::Failed(LockError::timed_out(
                            self.shared.lock_name.clone(),
                            self.config.renew_deadline,
                        ));
                    }
                    *written = Versioned { record, version };
                    tracing::debug!(fencing_token = term.fencing_token(), "renewed");
                    return Renewal::Renewed;
                }
                Err(LockError::Conflict { .. }) if attempt == 0 => {
                    *slow_path = true;
                    match self.bounded(deadline, self.lock.get()).await {
                        Ok(Some(fresh)) if self.still_ours(&fresh, own) => {
                            if let Some(to) = self.handover_asked(&fresh) {
                                return Renewal::HandOver(to);
                            }
                            keep_coordination(&mut record, &fresh.record);
                            written.version = fresh.version;
                        }
                        Ok(fresh) => return Renewal::Superseded(Superseder::of(fresh.as_ref())),
                        Err(err) => return Renewal::Failed(err),
                    }
                }
                Err(err) => return Renewal::Failed(err),
            }
        }
        Renewal::Failed(LockError::Conflict {
            lock: self.shared.lock_name.clone(),
            expected: written.version.to_string(),
        })
    }

    /// The candidate a planned handover asks this term to make way for: the record's preferred
    /// holder, when it names someone else. One naming this candidate is ignored (it leads
    /// already), as an empty one is.
    fn handover_asked(&self, fresh: &Versioned) -> Option<String> {
        let preferred = fresh.record.preferred_holder.as_deref()?;
        if preferred.is_empty() {
            return None;
        }
        if preferred == self.config.identity {
            tracing::debug!("the record prefers this candidate, which leads already");
            return None;
        }
        Some(preferred.to_owned())
    }

    /// Ends the term for `reason` (a planned handover, or this candidate turned unready) and
    /// releases the lock, whatever `release_on_cancel` says, so that another candidate takes
    /// over at once: a handover's named candidate first (the release keeps it as the preferred
    /// holder). The term ends before the release is written, as on cancellation.
    async fn make_way(&self, term: &Leadership, own: &TermWrites, reason: StopReason) -> Ended {
        tracing::info!(fencing_token = term.fencing_token(), %reason, "stopped leading");
        self.shared.stopped(term, reason.clone());
        if self.release_own(own).await {
            self.shared.released(term.fencing_token());
        }
        Ended::Lost(reason)
    }

    fn lose(&self, term: &Leadership, reason: StopReason) -> Ended {
        tracing::warn!(fencing_token = term.fencing_token(), %reason, "stopped leading");
        self.shared.stopped(term, reason.clone());
        Ended::Lost(reason)
    }

    /// Ends the term on cancellation, then releases the lock if so configured. The term ends
    /// before the release is written, so nobody can see two leaders at once.
    async fn step_down(&self, term: &Leadership, own: &TermWrites) -> Ended {
        tracing::info!(
            fencing_token = term.fencing_token(),
            "stopped leading: cancelled"
        );
        self.shared.stopped(term, StopReason::Cancelled);
        let released = self.config.release_on_cancel && self.release_own(own).await;
        if released {
            self.shared.released(term.fencing_token());
        }
        Ended::Cancelled { released }
    }

    /// Hands the lock over if the record is still exactly one this term wrote (holder this
    /// candidate, `leaderTransitions` its token, acquireTime its mark, a `renewTime` it sent;
    /// so never a twin's term, nor a twin's renewal of this one): re-reads, and only then
    /// writes holder "" with a 1 s lease. Gives up after the renew deadline. Returns whether
    /// it released.
    pub(super) async fn release_own(&self, own: &TermWrites) -> bool {
        let identity = self.config.identity.as_str();
        self.release_marked(
            &own.mark,
            &|fresh| own.wrote(&fresh.record, identity),
            &mut Vec::new(),
        )
        .await
        .unwrap_or(false)
    }

    /// Like [`release_own`](Self::release_own), releasing a record with the mark only
    /// if `only` accepts it too: a record renewed by another process keeping the mark (a
    /// client-go elector with the same identity adopts any record naming it) is that process'
    /// running term. The error is the last attempt's, when it gave up. `sent` collects the
    /// marks (acquireTimes) of the releases written: one that failed without a clear refusal
    /// (no answer, or not confirmed durable) may have landed, and a retry, in this call or a
    /// later one given the same `sent`, then reads it as done.
    pub(super) async fn release_marked(
        &self,
        mark: &TermMark,
        only: &(dyn Fn(&Versioned) -> bool + Sync),
        sent: &mut Vec<chrono::DateTime<chrono::Utc>>,
    ) -> Result<bool, LockError> {
        // The error reported is the last release's: an earlier one that failed is no news once
        // another release is tried.
        self.shared.forget_release_error();
        let deadline = self.call_deadline();
        loop {
            match self.try_release(mark, only, deadline, sent).await {
                Ok(true) => {
                    tracing::info!(fencing_token = mark.token, "released the lock");
                    return Ok(true);
                }
                Ok(false) => {
                    tracing::info!("not releasing: the lock no longer belongs to this term");
                    return Ok(false);
                }
                Err(err)
                    if (err.is_retryable() || matches!(err, LockError::Conflict { .. }))
                        && Instant::now() + RELEASE_BACKOFF < deadline =>
                {
                    tracing::warn!(error = %err, "release failed; retrying");
                    sleep(RELEASE_BACKOFF).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "release failed; the lease will expire instead");
                    self.shared.release_failed(&err);
                    return Err(err);
                }
            }
        }
    }

    async fn try_release(
        &self,
        mark: &TermMark,
        only: &(dyn Fn(&Versioned) -> bool + Sync),
        deadline: Instant,
        sent: &mut Vec<chrono::DateTime<chrono::Utc>>,
    ) -> Result<bool, LockError> {
        let Some(fresh) = self.bounded(deadline, self.lock.get()).await? else {
            return Ok(false);
        };
        if !self.holds(&fresh, mark) {
            // An earlier attempt that failed after it was sent (a Redis whose replicas did not
            // acknowledge it, a lost reply) landed: the lock is free of this term, so it is
            // released, and saying otherwise would hide a hand-back from everyone who read
            // the record naming this candidate. Only that release's own record counts, told
            // by its mark: a free record with the term's token may be someone else's (an
            // outside edit, or a term under the same token on a record made again).
            return Ok(mark.released_by(&fresh.record, sent));
        }
        if !only(&fresh) {
            return Ok(false);
        }
        let now = whole_seconds(chrono::Utc::now());
        // Random microseconds mark this release, as they mark a term's record: what a retry
        // reads is this write only if it carries them.
        let marked = now + chrono::Duration::microseconds(self.random().random_range(1..1_000_000));
        // A preferred holder naming someone else (a planned handover's candidate) is kept: it
        // takes the lock first. One naming this candidate, which is leaving, is dropped, as
        // client-go's release drops it: the others would hold back for nobody.
        let preferred_holder = fresh
            .record
            .preferred_holder
            .clone()
            .filter(|preferred| *preferred != self.config.identity);
        let released = LeaderElectionRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(marked),
            renew_time: Some(now),
            preferred_holder,
            ..fresh.record
        };
        sent.push(marked);
        self.bounded(deadline, self.lock.update(&released, &fresh.version))
            .await?;
        Ok(true)
    }
}

/// Copies into `record`, which this term is about to write, what a coordinator may have set on
/// the record in place (client-go's coordinated election writes both fields).
fn keep_coordination(record: &mut LeaderElectionRecord, fresh: &LeaderElectionRecord) {
    record.strategy.clone_from(&fresh.strategy);
    record.preferred_holder.clone_from(&fresh.preferred_holder);
}
