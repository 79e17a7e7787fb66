//! A renew whose write lands but which the term refuses (its token was cancelled while the
//! write was in flight, as a task the work spawned may do): one `StoppedLeading`, never two
//! leaders, tokens strictly growing, `leader()` never naming a term that is over, and the
//! fresh record of the ended term waited out for a lease. Written by an adversarial review.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{ElectionConfig, ElectionEvent, Lock};
use support::{start, LEASE, RETRY};
use tokio::time::{sleep, Instant};

#[tokio::test(start_paused = true)]
async fn refused_renew_is_safe() {
    let lock = MemoryLock::new("refused");
    let faulty = FaultyLock::new(lock.clone());
    let faults = faulty.faults();
    let mut a = start(
        faulty,
        ElectionConfig::new("a").with_rejoin(true).with_hints(false),
    );
    let t1 = a.next_term(Duration::from_secs(1)).await;
    let mut b = start(lock.clone(), ElectionConfig::new("b").with_hints(false));
    // Every call of a's now takes 1 s: the next renew is in flight for a second.
    faults.set_latency(Duration::from_secs(1));
    tokio::time::sleep_until(t1.renewed_at() + RETRY + Duration::from_millis(500)).await;
    t1.cancellation_token().cancel();
    let before = lock.get().await.unwrap().unwrap();
    sleep(Duration::from_secs(2)).await;
    let after = lock.get().await.unwrap().unwrap();
    eprintln!("renew landed: {}", before.version != after.version);
    let end = Instant::now() + LEASE * 3;
    let mut tokens = vec![t1.fencing_token()];
    let mut stopped = 0;
    while Instant::now() < end {
        assert!(
            !(a.handle.is_leader() && b.handle.is_leader()),
            "two leaders"
        );
        for h in [&a.handle, &b.handle] {
            if h.leader().as_deref() == Some(h.identity()) {
                assert!(
                    h.is_leader(),
                    "{} names itself with its term over",
                    h.identity()
                );
            }
        }
        while let Ok(ev) = a.events.try_recv() {
            match ev {
                ElectionEvent::StartedLeading(t) => tokens.push(t.fencing_token()),
                ElectionEvent::StoppedLeading { fencing_token, .. }
                    if fencing_token == t1.fencing_token() =>
                {
                    stopped += 1
                }
                _ => {}
            }
        }
        while let Ok(ev) = b.events.try_recv() {
            if let ElectionEvent::StartedLeading(t) = ev {
                tokens.push(t.fencing_token());
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    eprintln!("tokens {tokens:?}, stopped {stopped}");
    assert_eq!(stopped, 1);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    assert!(tokens.len() >= 2, "someone leads again");
}
