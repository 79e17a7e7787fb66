//! A create held back because the token floor of the absence could never be read (a backend
//! with a counter that failed to answer while the absence was young): the counter is read
//! again after the create, not taken from the read before it, so the held record's token is
//! raised above the terms that came and went while the create was on its way, and so is the
//! term of whoever takes it over, its writer included. Found by an adversarial review: both
//! led with 5 below d's 6.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::backend::{Version, Versioned};
use lock_core::testing::MemoryLock;
use lock_core::{LeaderElectionRecord, Lock, LockError, LockResult};
use support::{config, held_by, start, three_terms_came_and_went, LEASE};
use tokio::time::{sleep, sleep_until, Instant};

#[derive(Default, Debug)]
struct State {
    deleted: bool,
    first_absent: Option<Instant>,
    raced: bool,
    d_last: i32,
    landed_at: Option<Instant>,
}

#[derive(Debug)]
struct Racing {
    inner: MemoryLock,
    state: Arc<Mutex<State>>,
}

#[async_trait::async_trait]
impl Lock for Racing {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        let got = self.inner.get().await?;
        let mut state = self.state.lock().unwrap();
        if got.is_none() && state.deleted && state.first_absent.is_none() {
            state.first_absent = Some(Instant::now());
        }
        Ok(got)
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        if std::mem::replace(&mut self.state.lock().unwrap().raced, true) {
            return self.inner.create(record).await;
        }
        let d_last = three_terms_came_and_went(&self.inner);
        let landed = self.inner.create(record).await;
        let mut state = self.state.lock().unwrap();
        state.d_last = d_last;
        state.landed_at = Some(Instant::now());
        landed
    }
    async fn update(&self, r: &LeaderElectionRecord, v: &Version) -> LockResult<Version> {
        self.inner.update(r, v).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    /// The store's counter cannot be read while the absence is young (a flaky store): the
    /// reads of the absence never learn its floor; the one just before the create does.
    async fn token_floor(&self) -> LockResult<u64> {
        let young = self
            .state
            .lock()
            .unwrap()
            .first_absent
            .is_some_and(|at| Instant::now() < at + LEASE);
        if young {
            return Err(LockError::unavailable(
                self.inner.describe(),
                std::io::Error::other("counter unavailable"),
            ));
        }
        self.inner.token_floor().await
    }
}

async fn setup(name: &str) -> (MemoryLock, Arc<Mutex<State>>, support::Candidate, Instant) {
    let lock = MemoryLock::new(name);
    lock.create(&held_by("z", 3)).await.unwrap();
    let state = Arc::new(Mutex::new(State::default()));
    let racing = Racing {
        inner: lock.clone(),
        state: state.clone(),
    };
    let a = start(racing, config("a").with_hints(false).with_random_seed(7));
    sleep(Duration::from_millis(500)).await; // a reads z
    lock.delete();
    state.lock().unwrap().deleted = true;
    let mut landed_at = None;
    for _ in 0..6000 {
        sleep(Duration::from_millis(10)).await;
        landed_at = state.lock().unwrap().landed_at;
        if landed_at.is_some() {
            break;
        }
    }
    let landed_at = landed_at.expect("a's create landed within a minute");
    (lock, state, a, landed_at)
}

/// The writer keeps running and takes its held record over itself after the hold.
#[tokio::test(start_paused = true)]
async fn the_writer_of_a_held_back_create_leads_above_the_terms_it_hid() {
    let (lock, state, mut a, _) = setup("holdback-self").await;
    let held = lock
        .get()
        .await
        .unwrap()
        .map(|h| h.record.leader_transitions);
    let term = a.next_term(Duration::from_secs(120)).await;
    a.stop().await;
    let d_last = state.lock().unwrap().d_last;
    eprintln!(
        "held record token {held:?}; a leads with {}; d's last {d_last}",
        term.fencing_token()
    );
    assert!(
        term.fencing_token() > d_last as u64,
        "a's term token {} is not above d's last term token {d_last}",
        term.fencing_token()
    );
}

/// The writer stops during the hold (raising as it leaves); c takes the record over.
#[tokio::test(start_paused = true)]
async fn a_candidate_taking_over_a_held_back_create_leads_above_the_terms_it_hid() {
    let (lock, state, a, landed_at) = setup("holdback-other").await;
    sleep_until(landed_at + Duration::from_millis(100)).await;
    let mut c = start(lock.clone(), config("c"));
    sleep_until(landed_at + Duration::from_secs(5)).await;
    a.stop().await;
    let left = lock
        .get()
        .await
        .unwrap()
        .map(|h| h.record.leader_transitions);
    let term = c.next_term(Duration::from_secs(120)).await;
    c.stop().await;
    let d_last = state.lock().unwrap().d_last;
    eprintln!(
        "a left token {left:?}; c leads with {}; d's last {d_last}",
        term.fencing_token()
    );
    assert!(
        term.fencing_token() > d_last as u64,
        "c's term token {} is not above d's last term token {d_last}",
        term.fencing_token()
    );
}
