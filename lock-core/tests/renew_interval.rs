//! The renew interval (issue 17): a leader may renew less often than the retry period while
//! the deadline rules hold. Deterministic, on tokio's paused clock.

use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{ElectionConfig, LeaderElector};
use tokio_util::sync::CancellationToken;

/// Client-go's timings (lease 15 s, renew deadline 10 s, retry period 2 s).
fn config() -> ElectionConfig {
    ElectionConfig::new("a")
}

/// The leader's renews (updates) during one minute of leading with `config`.
async fn renews_per_minute(config: ElectionConfig) -> u64 {
    let lock = FaultyLock::new(MemoryLock::new("jobs"));
    let faults = lock.faults();
    let elector = LeaderElector::new(lock, config).unwrap();
    let handle = elector.handle();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(handle.is_leader(), "a lone candidate leads at once");
    let before = faults.counts().updates();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(handle.is_leader(), "still leading after a minute");
    let renews = faults.counts().updates() - before;
    cancel.cancel();
    running.await.unwrap();
    renews
}

#[tokio::test(start_paused = true)]
async fn by_default_the_leader_renews_every_retry_period() {
    assert_eq!(config().renew_every(), Duration::from_secs(2));
    assert_eq!(renews_per_minute(config()).await, 30);
}

#[tokio::test(start_paused = true)]
async fn a_renew_interval_of_twice_the_retry_period_halves_the_leaders_writes() {
    let config = config().with_renew_interval(Duration::from_secs(4));
    assert_eq!(renews_per_minute(config).await, 15);
}

/// A renew due at the interval that fails is retried every retry period, so the term survives
/// a fault shorter than the renew deadline.
#[tokio::test(start_paused = true)]
async fn a_failed_renew_is_retried_every_retry_period_before_the_deadline() {
    let lock = FaultyLock::new(MemoryLock::new("jobs"));
    let faults = lock.faults();
    let config = config().with_renew_interval(Duration::from_secs(6));
    let elector = LeaderElector::new(lock, config).unwrap();
    let handle = elector.handle();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(handle.is_leader());
    // Down from just before the first renew (at 6 s) until 8.5 s: the renew at 6 s fails, the
    // retries at 8 s fail, the one at 10 s succeeds, within the 10 s deadline of the last
    // renew at 0 s... only if retried every 2 s rather than every 6 s.
    tokio::time::sleep(Duration::from_millis(5800)).await;
    faults.set_unavailable(true);
    tokio::time::sleep(Duration::from_millis(2700)).await;
    faults.set_unavailable(false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(handle.is_leader(), "the term survived a fault of 2.7 s");
    cancel.cancel();
    running.await.unwrap();
}

#[test]
fn an_interval_that_leaves_no_retry_before_the_deadline_is_refused() {
    let err = config()
        .with_renew_interval(Duration::from_secs(8))
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "renewDeadline must be greater than renewInterval + retryPeriod*JitterFactor, so that \
         a renew that fails is retried once before the deadline (renewDeadline 10s, \
         renewInterval 8s + retryPeriod 2s * 1.2 = 10.4s)"
    );
    assert!(config()
        .with_renew_interval(Duration::from_secs(7))
        .validate()
        .is_ok());
    assert!(config()
        .with_renew_interval(Duration::ZERO)
        .validate()
        .unwrap_err()
        .to_string()
        .contains("it must lie between 1ms and 24h"));
}

/// Without change hints a leader learns of an outside write (a record freed or taken by hand)
/// only when it renews, so the renew interval does not apply: it renews every retry period,
/// and the overlap such a write can cause stays within one retry period (adversarial review:
/// with a 7 s interval it had grown to the interval).
#[tokio::test(start_paused = true)]
async fn without_hints_the_leader_still_renews_every_retry_period() {
    let config = config()
        .with_hints(false)
        .with_renew_interval(Duration::from_secs(4));
    assert_eq!(renews_per_minute(config).await, 30);
}
