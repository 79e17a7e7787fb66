//! A standby on a lock with change hints waits for them instead of polling.

use std::sync::Arc;
use std::time::Duration;

use crate::testing::FaultyLock;
use crate::Lock;

use super::TAKE_LIMIT;
use crate::testing::conformance::{config, Backend, Candidate, RETRY_PERIOD};

/// How long the standby is watched: long enough that a standby that polls (every retry
/// period plus a jitter of up to 1.2 retry periods, so at least every 4.4 s) reads at least
/// twice more after its first look, which the limit below does not allow.
const IDLE: Duration = Duration::from_secs(9);

/// The most reads the idle standby may make: its first look, and one to spare.
const MAX_READS: u64 = 2;

/// Case 14: An idle standby follows the leader's renews through change hints: over nine seconds, in
/// which the leader renews every two seconds (a polling standby would read at least three
/// times), it reads the lock at most twice. For a backend whose capabilities say it has no
/// hints, the case checks that its `watch` says so too (the elector then polls).
pub async fn idle_standby_waits_on_hints(backend: Arc<dyn Backend>, name: &str) {
    if !backend.capabilities().hints {
        let lock = backend.lock(name).await;
        assert!(
            lock.watch().is_none(),
            "{} claims no change hints but its watch gives a stream",
            lock.describe()
        );
        return;
    }
    let mut leader = Candidate::start(backend.lock(name).await, config("busy"), None);
    let term = leader.started(TAKE_LIMIT).await;

    let lock = backend.lock(name).await;
    assert!(
        lock.watch().is_some(),
        "{} offers no change hints; this case needs a backend that does",
        lock.describe()
    );
    let faulty = FaultyLock::new(lock);
    let faults = faulty.faults();
    let mut standby = Candidate::start(faulty, config("idle"), None);
    standby.sees_leader("busy", TAKE_LIMIT).await;

    let renewed_before = term.renewed_at();
    tokio::time::sleep(IDLE).await;
    let renewed_after = term.renewed_at();
    let counts = faults.counts();
    assert!(
        renewed_after >= renewed_before + RETRY_PERIOD * 3,
        "the leader must keep renewing meanwhile (it renewed for {:?})",
        renewed_after - renewed_before
    );
    assert!(
        counts.gets() <= MAX_READS,
        "the idle standby read the lock {} times in {IDLE:?}; with change hints it should wait \
         for them (at most {MAX_READS} reads)",
        counts.gets()
    );
    assert_eq!(
        counts.creates() + counts.updates(),
        0,
        "the standby never tried to take the lock"
    );
    assert!(
        term.is_leader() && leader.handle().is_leader(),
        "the leader still leads"
    );
    assert!(!standby.handle().is_leader());
    assert_eq!(standby.handle().leader().as_deref(), Some("busy"));

    standby.stop().await;
    leader.stop().await;
}
