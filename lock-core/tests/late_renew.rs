//! A renew that lands only after its term ended at the renew deadline (its reply, or the request
//! itself, held up in the network) leaves a record that names a leader who is no longer
//! leading, with a fresh lease. Found by the full fault campaign on a Kubernetes ConfigMap: the
//! others named that leader for a whole lease. The candidate that finds its own ended term's
//! record in place releases it, so that the election goes on at once.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{ElectionEvent, Lock};
use support::{config, start, LEASE, RENEW_DEADLINE, RETRY};
use tokio::time::{sleep, Instant};

#[tokio::test(start_paused = true)]
async fn a_renew_that_lands_after_the_term_ended_is_released_by_its_writer() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let inner = MemoryLock::new("late-renew");
    let faulty = FaultyLock::new(inner.clone());
    let faults = faulty.faults();
    // a rejoins after losing, as the demo does.
    let mut a = start(faulty, config("a").with_rejoin(true));
    let term = a.next_term(LEASE).await;
    // b only joins once a leads, so that it cannot be the first to lead.
    let mut b = start(inner.clone(), config("b"));
    sleep(RETRY).await;

    // a is cut off from the store: its renews fail until its renew deadline ends the term.
    faults.set_unavailable(true);
    let cut_at = Instant::now();
    tokio::time::timeout(RENEW_DEADLINE + RETRY * 2, async {
        loop {
            match a.events.recv().await {
                Some(ElectionEvent::StoppedLeading { .. }) => return,
                Some(_) => {}
                None => panic!("a stopped"),
            }
        }
    })
    .await
    .expect("a's term ended at its renew deadline");
    assert!(!term.is_leader());

    // One of a's renews, held up in the network, lands now: a's record with a fresh lease (the
    // last renew a sent, as it sent it). The network heals at the same moment.
    sleep(Duration::from_secs(1)).await;
    let stored = inner.get().await.unwrap().expect("a's record");
    assert_eq!(stored.record.holder_identity, "a");
    let renewed = faults.last_update_sent().expect("a sent renews");
    assert_ne!(
        renewed.renew_time, stored.record.renew_time,
        "a renew that did not land"
    );
    inner.update(&renewed, &stored.version).await.unwrap();
    let landed_at = Instant::now();
    faults.set_unavailable(false);

    // Someone leads again within a few retry periods (a's next read finds its own ended term's
    // record and releases it), not a whole lease after the late renew.
    let bound = RETRY * 4;
    let next = tokio::time::timeout(bound, b.next_term(LEASE * 2)).await;
    let led_at = Instant::now();
    assert!(
        next.is_ok(),
        "nobody led within {bound:?} of the late renew ({:?} after the cut): the record of a's \
         ended term stood for its lease",
        led_at - cut_at
    );
    let stored = inner.get().await.unwrap().unwrap().record;
    assert_eq!(stored.holder_identity, "b");
    // a announced the release of its ended term's record.
    let mut released = false;
    while let Ok(event) = a.events.try_recv() {
        released |= matches!(event, ElectionEvent::Released { fencing_token } if fencing_token == term.fencing_token());
    }
    assert!(released, "a announced the release");
    assert!(
        stored.leader_transitions > renewed.leader_transitions,
        "b's token {} is above a's {}",
        stored.leader_transitions,
        renewed.leader_transitions
    );
    eprintln!("b led {:?} after the late renew landed", led_at - landed_at);
    b.stop().await;
    a.stop().await;
}
