//! A backend that dies under a leader: the check every server backend's fault test makes.

use std::time::Duration;

use lock_core::Leadership;
use tokio::time::Instant;

use lock_core::testing::conformance::{LEASE, RENEW_DEADLINE};

/// Waits for `term`'s next successful renew, then calls `stop_backend` (a server killed right
/// after that renew), and asserts that the leader steps down in time: its term ends no earlier
/// than its renew deadline and before the lease could expire for any other candidate (both
/// counted from its last renew, with the suite's timings).
pub async fn backend_stops_under_the_leader(term: &Leadership, stop_backend: impl FnOnce()) {
    let renewed = term.renewed_at();
    tokio::time::timeout(Duration::from_secs(10), async {
        while term.renewed_at() == renewed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a renew within 10 s");
    stop_backend();
    let last_renew = term.renewed_at();
    tokio::time::timeout(LEASE * 2, term.lost())
        .await
        .expect("the leader steps down");
    let stepped_down = Instant::now();
    assert!(!term.is_leader());
    assert!(
        stepped_down < last_renew + LEASE,
        "stepped down {:?} after its last renew; others may take over after {LEASE:?}",
        stepped_down - last_renew
    );
    assert!(
        stepped_down + Duration::from_millis(50) >= last_renew + RENEW_DEADLINE,
        "stepped down {:?} after its last renew, before the renew deadline {RENEW_DEADLINE:?}",
        stepped_down - last_renew
    );
}
