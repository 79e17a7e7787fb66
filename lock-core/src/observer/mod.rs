//! Following an election without taking part (etcd's `Observe`): who leads, in which term, and
//! until when this process can vouch for it.
//!
//! An [`Observer`] only ever calls [`Lock::get`] and [`Lock::watch`]: it never writes, so it
//! can run with read-only credentials. It judges leases as a standby does: from when it
//! *observed* a version of the record, on its own monotonic clock, for the record's
//! `leaseDurationSeconds`; `renewTime` is never trusted. A hint only makes it read sooner (a
//! hint can be late or forged; no leader is ever reported from a hint alone). Without hints it
//! reads every retry period, and with them at least once a minute, and in any case one retry
//! period before an observed lease runs out and when it does: a renew that hints failed to
//! announce keeps the leader named, and a lease that really ran out is reported at its end.

mod config;
mod observed;

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::elector::hints::Hints;
use crate::elector::CONFIRM_INTERVAL;
use crate::{ConfigError, Lock, LockError, Versioned};
pub use config::{ObserverConfig, DEFAULT_READ_TIMEOUT};
pub use observed::{NoLeader, Observed, ObservedLeader, ObserverEvent};

/// Follows the election on one lock and reports every change of leader, never writing.
///
/// ```
/// use std::time::Duration;
/// use lock_core::testing::MemoryLock;
/// use lock_core::{ElectionConfig, LeaderElector, Observed, Observer, ObserverConfig, ObserverEvent};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lock = MemoryLock::new("orders");
/// let cancel = CancellationToken::new();
///
/// // A watcher that never takes part...
/// let observer = Observer::new(lock.clone(), ObserverConfig::default()).expect("valid config");
/// let mut changes = observer.subscribe();
/// let observing = tokio::spawn(observer.run(cancel.clone()));
///
/// // ...sees a candidate start leading.
/// let elector = LeaderElector::new(lock, ElectionConfig::new("worker-a")).unwrap();
/// let electing = tokio::spawn(elector.run(cancel.clone()));
/// let leader = loop {
///     match changes.recv().await.expect("the observer runs") {
///         ObserverEvent::LeaderChanged(Observed::Leader(leader)) => break leader,
///         _ => continue,
///     }
/// };
/// assert_eq!((leader.identity.as_str(), leader.term), ("worker-a", 0));
///
/// cancel.cancel();
/// observing.await.unwrap();
/// electing.await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Observer {
    lock: Arc<dyn Lock>,
    config: ObserverConfig,
    state: watch::Sender<Observed>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<ObserverEvent>>>,
}

/// What the observer knows between reads.
struct Knowledge {
    /// The last successful read, and when a read first showed that exact record and version.
    read: Option<(Option<Versioned>, Instant)>,
    /// When the lock was last read (successfully or not).
    read_at: Option<Instant>,
    /// A hint (or a new hint stream) said the lock may have changed.
    hinted: bool,
    /// The last read failed: retry at the retry period even while hints flow.
    failing: bool,
    /// The (identity, term) last reported; `None` inside for "no leader"; outer `None` before
    /// the first report.
    reported: Option<Option<(String, u64)>>,
}

impl Observer {
    /// An observer of `lock`. Fails when a timing of `config` is out of range.
    pub fn new(lock: impl Lock + 'static, config: ObserverConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let (state, _) = watch::channel(Observed::NoLeader(NoLeader::NotReadYet));
        Ok(Self {
            lock: Arc::new(lock),
            config,
            state,
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// A stream of changes, in order, from now on; it ends when [`run`](Self::run) returns.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ObserverEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tx);
        rx
    }

    /// The latest observation, updated after every read (also with each renew's new expiry).
    /// A value kept grows stale: ask [`Observed::leader_at`] with the current instant.
    pub fn state(&self) -> watch::Receiver<Observed> {
        self.state.subscribe()
    }

    /// Follows the lock until `cancel` is cancelled. Errors are reported to the subscribers
    /// and the log, and retried; they never end the run.
    pub async fn run(self, cancel: CancellationToken) {
        let span = tracing::info_span!("observer", lock = %self.lock.describe());
        self.run_until_cancelled(cancel).instrument(span).await;
    }

    async fn run_until_cancelled(&self, cancel: CancellationToken) {
        let mut hints = Hints::new(
            self.lock.clone(),
            self.config.use_hints,
            self.config.retry_period,
        );
        let mut known = Knowledge {
            read: None,
            read_at: None,
            hinted: false,
            failing: false,
            reported: None,
        };
        loop {
            if hints.resubscribe_if_due() {
                // Changes between the last read and the new subscription were missed.
                known.hinted = true;
            }
            // A lease that ran out is reported before anything else is tried.
            self.publish(&mut known);
            if self.read_due(&known, hints.active(), Instant::now()) {
                let read = tokio::time::timeout(self.config.read_timeout, self.lock.get());
                tokio::pin!(read);
                let read = loop {
                    // A slow read must not hold back the report that the observed lease ran
                    // out: that is published at the lease's end while the read goes on.
                    let lease_end = lease_end(&known).filter(|end| *end > Instant::now());
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return,
                        read = &mut read => break read,
                        _ = sleep_until(lease_end.unwrap_or_else(Instant::now)),
                            if lease_end.is_some() => self.publish(&mut known),
                    }
                };
                let read = read.unwrap_or_else(|_| {
                    Err(LockError::timed_out(
                        self.lock.describe(),
                        self.config.read_timeout,
                    ))
                });
                self.take_in(&mut known, read);
                self.publish(&mut known);
            }
            let wake_at = self.next_wake(&known, hints.active());
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = hints.next() => known.hinted = true,
                _ = sleep_until(wake_at) => {}
            }
        }
    }

    /// True when the lock must be read now: never read, a hint came, the poll or confirmation
    /// is due, or an observed lease is about to run out (one retry period before its end, so
    /// that a renew that hints did not announce is found before the leader is given up) or ran
    /// out since the last read.
    fn read_due(&self, known: &Knowledge, hints_active: bool, now: Instant) -> bool {
        let Some(read_at) = known.read_at else {
            return true;
        };
        let lease_check_due = self
            .lease_checks(known)
            .into_iter()
            .any(|check| check <= now && read_at < check);
        known.hinted || now >= self.next_read(known, hints_active, read_at) || lease_check_due
    }

    /// When the observed lease calls for a read: one retry period before it ends, and when it
    /// ends. Empty when no holder was read.
    fn lease_checks(&self, known: &Knowledge) -> Vec<Instant> {
        lease_end(known)
            .map(|end| {
                let before = end.checked_sub(self.config.retry_period).unwrap_or(end);
                vec![before, end]
            })
            .unwrap_or_default()
    }

    /// When the next read is due without any hint.
    fn next_read(&self, known: &Knowledge, hints_active: bool, read_at: Instant) -> Instant {
        if hints_active && !known.failing {
            read_at + CONFIRM_INTERVAL
        } else {
            read_at + self.config.retry_period
        }
    }

    /// When to wake up if no hint comes: the next read, or the next check of the observed lease.
    fn next_wake(&self, known: &Knowledge, hints_active: bool) -> Instant {
        let now = Instant::now();
        let next_read = known
            .read_at
            .map_or(now, |at| self.next_read(known, hints_active, at));
        self.lease_checks(known)
            .into_iter()
            .filter(|check| *check > now)
            .fold(next_read, Instant::min)
    }

    /// Takes in the result of a read.
    fn take_in(&self, known: &mut Knowledge, read: Result<Option<Versioned>, LockError>) {
        let now = Instant::now();
        known.read_at = Some(now);
        known.hinted = false;
        match read {
            Ok(current) => {
                known.failing = false;
                // The same record at the same version keeps the time it was first seen: only a
                // new version (a renew, a takeover) restarts the lease clock.
                let since = match &known.read {
                    Some((previous, since)) if current.is_some() && *previous == current => *since,
                    _ => now,
                };
                known.read = Some((current, since));
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading the lock failed; retrying");
                if !known.failing {
                    self.send(ObserverEvent::ReadFailed(Arc::new(err)));
                }
                known.failing = true;
            }
        }
    }

    /// Updates the state, and reports a change of leader to the subscribers.
    fn publish(&self, known: &mut Knowledge) {
        let Some((current, since)) = &known.read else {
            return;
        };
        let observed = judge(current.as_ref(), *since, Instant::now());
        let key = observed
            .term_key()
            .map(|(identity, term)| (identity.to_owned(), term));
        self.state.send_replace(observed.clone());
        if known.reported.as_ref() != Some(&key) {
            tracing::info!(%observed, "leader changed");
            known.reported = Some(key);
            self.send(ObserverEvent::LeaderChanged(observed));
        }
    }

    fn send(&self, event: ObserverEvent) {
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|tx| tx.send(event.clone()).is_ok());
    }
}

/// The end of the observed lease of the holder last read, if a holder was read.
fn lease_end(known: &Knowledge) -> Option<Instant> {
    match &known.read {
        Some((Some(seen), since)) if !seen.record.is_free() => {
            Some(*since + seen.record.lease_duration())
        }
        _ => None,
    }
}

/// What a read of `current`, first seen at `since`, says about who leads at `now`.
fn judge(current: Option<&Versioned>, since: Instant, now: Instant) -> Observed {
    let Some(seen) = current else {
        return Observed::NoLeader(NoLeader::NoRecord);
    };
    let term = u64::try_from(seen.record.leader_transitions).unwrap_or(0);
    let Some(identity) = seen.record.holder() else {
        return Observed::NoLeader(NoLeader::Released { last_term: term });
    };
    let lease_expires_at = since + seen.record.lease_duration();
    if now >= lease_expires_at {
        return Observed::NoLeader(NoLeader::LeaseRanOut {
            identity: identity.to_owned(),
            term,
        });
    }
    Observed::Leader(ObservedLeader {
        identity: identity.to_owned(),
        term,
        lease_expires_at,
    })
}
