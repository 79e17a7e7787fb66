//! Leading: renew before the deadline, step down on time, release on request.

use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::{Hints, LeaderElector};
use crate::{
    LeaderElectionRecord, Leadership, LockError, RenewOutcome, RenewReport, StopReason, Versioned,
};

/// How a term ended.
pub(super) enum Ended {
    Cancelled { released: bool },
    Lost(StopReason),
}

/// The result of one renew attempt.
enum Renewal {
    Renewed,
    Superseded(Option<String>),
    Failed(LockError),
}

/// The shortest pause between two renew attempts after a failure.
const MIN_RENEW_RETRY: Duration = Duration::from_millis(50);

/// Pause between release attempts that failed for a passing reason.
const RELEASE_BACKOFF: Duration = Duration::from_millis(200);

impl LeaderElector {
    /// Leads until the term ends; `written` is the record and version this candidate wrote last.
    pub(super) async fn lead(
        &self,
        term: Leadership,
        mut written: Versioned,
        hints: &mut Hints,
        cancel: &CancellationToken,
    ) -> Ended {
        self.shared.started(&term);
        let mut next_renew = term.renewed_at() + self.config.retry_period;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return self.step_down(&term).await,
                _ = sleep_until(term.valid_until()) => {
                    return self.lose(&term, StopReason::RenewDeadlineExceeded);
                }
                _ = sleep_until(next_renew) => {}
                // A leader learns of changes by renewing; hints are only drained here.
                _ = hints.next() => continue,
            }
            let renewal = tokio::select! {
                biased;
                _ = cancel.cancelled() => return self.step_down(&term).await,
                renewal = self.renew_and_report(&term, &mut written) => renewal,
            };
            match renewal {
                Renewal::Renewed => {
                    next_renew = term.renewed_at() + self.config.retry_period;
                }
                Renewal::Superseded(holder) => {
                    let end = self.lose(
                        &term,
                        StopReason::Superseded {
                            holder: holder.clone(),
                        },
                    );
                    self.shared.observed_leader(holder.as_deref());
                    return end;
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
                    next_renew = now + pause;
                }
            }
        }
    }

    /// One renew, timed and reported to the renew callbacks before its outcome is acted on.
    async fn renew_and_report(&self, term: &Leadership, written: &mut Versioned) -> Renewal {
        let started = Instant::now();
        let mut slow_path = false;
        let renewal = self.renew(term, written, &mut slow_path).await;
        let outcome = match &renewal {
            Renewal::Renewed => RenewOutcome::Renewed { slow_path },
            Renewal::Superseded(holder) => RenewOutcome::Superseded {
                holder: holder.clone(),
            },
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
        written: &mut Versioned,
        slow_path: &mut bool,
    ) -> Renewal {
        let deadline = term.valid_until();
        let mut record = written.record.clone();
        record.lease_duration_seconds = self.config.lease_duration_seconds();
        record.renew_time = Some(chrono::Utc::now());
        for attempt in 0..2 {
            let sent_at = Instant::now();
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
                    term.renewed(sent_at);
                    *written = Versioned { record, version };
                    tracing::debug!(fencing_token = term.fencing_token(), "renewed");
                    return Renewal::Renewed;
                }
                Err(LockError::Conflict { .. }) if attempt == 0 => {
                    *slow_path = true;
                    match self.bounded(deadline, self.lock.get()).await {
                        Ok(Some(fresh)) if self.is_term_record(&fresh, term) => {
                            // Keep what a coordinator may have changed meanwhile.
                            record.strategy = fresh.record.strategy;
                            record.preferred_holder = fresh.record.preferred_holder;
                            written.version = fresh.version;
                        }
                        Ok(fresh) => {
                            return Renewal::Superseded(
                                fresh.and_then(|v| v.record.holder().map(str::to_owned)),
                            )
                        }
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

    fn lose(&self, term: &Leadership, reason: StopReason) -> Ended {
        tracing::warn!(fencing_token = term.fencing_token(), %reason, "stopped leading");
        self.shared.stopped(term, reason.clone());
        Ended::Lost(reason)
    }

    /// Ends the term on cancellation, then releases the lock if so configured. The term ends
    /// before the release is written, so nobody can see two leaders at once.
    async fn step_down(&self, term: &Leadership) -> Ended {
        tracing::info!(
            fencing_token = term.fencing_token(),
            "stopped leading: cancelled"
        );
        self.shared.stopped(term, StopReason::Cancelled);
        let released =
            self.config.release_on_cancel && self.release_if_ours(term.fencing_token()).await;
        if released {
            self.shared.released(term);
        }
        Ended::Cancelled { released }
    }

    /// Hands the lock over if the record still belongs to the term with `token` (holder this
    /// candidate, `leaderTransitions` that token): re-reads, and only then writes holder "" with
    /// a 1 s lease. Gives up after the renew deadline. Returns whether it released.
    pub(super) async fn release_if_ours(&self, token: u64) -> bool {
        let deadline = self.call_deadline();
        loop {
            match self.try_release(token, deadline).await {
                Ok(true) => {
                    tracing::info!(fencing_token = token, "released the lock");
                    return true;
                }
                Ok(false) => {
                    tracing::info!("not releasing: the lock no longer belongs to this term");
                    return false;
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
                    return false;
                }
            }
        }
    }

    async fn try_release(&self, token: u64, deadline: Instant) -> Result<bool, LockError> {
        let Some(fresh) = self.bounded(deadline, self.lock.get()).await? else {
            return Ok(false);
        };
        if !self.holds(&fresh, token) {
            return Ok(false);
        }
        let now = chrono::Utc::now();
        let released = LeaderElectionRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            ..fresh.record
        };
        self.bounded(deadline, self.lock.update(&released, &fresh.version))
            .await?;
        Ok(true)
    }
}
