//! A create held back because the store moved while it was on its way (terms of d came and
//! went on the deleted record) and then left by its writer a: another candidate c, which never
//! saw d's terms, takes it over after its lease with a token from the record alone. Found by
//! an adversarial review: c led with token 5 below d's 6. The writer now raises its held
//! record's token to the store's counter: at once, after a lost reply at its next read, again
//! after a raise that failed, and as it stops.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::backend::{Version, Versioned};
use lock_core::testing::MemoryLock;
use lock_core::{LeaderElectionRecord, Lock, LockError, LockResult};
use support::{config, held_by, start, three_terms_came_and_went};
use tokio::time::{sleep, sleep_until, Instant};

/// What the lock does to a's create (the one d's terms race) and after it.
#[derive(Clone, Copy, Debug, Default)]
struct Plan {
    /// The create lands, and its reply is lost after this long.
    reply_lost_after: Option<Duration>,
    /// The first update after the create fails without landing.
    first_update_fails: bool,
}

#[derive(Default)]
struct State {
    raced: bool,
    d_last: i32,
    landed_at: Option<Instant>,
    fail_update: bool,
}

#[derive(Debug)]
struct Racing {
    inner: MemoryLock,
    plan: Plan,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("State")
    }
}

fn lost(lock: &MemoryLock) -> LockError {
    LockError::unavailable(lock.describe(), std::io::Error::other("the reply was lost"))
}

#[async_trait::async_trait]
impl Lock for Racing {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        if std::mem::replace(&mut self.state.lock().unwrap().raced, true) {
            return self.inner.create(record).await;
        }
        let d_last = three_terms_came_and_went(&self.inner);
        let landed = self.inner.create(record).await;
        {
            let mut state = self.state.lock().unwrap();
            state.d_last = d_last;
            state.landed_at = Some(Instant::now());
            state.fail_update = self.plan.first_update_fails;
        }
        match self.plan.reply_lost_after {
            Some(after) if landed.is_ok() => {
                sleep(after).await;
                Err(lost(&self.inner))
            }
            _ => landed,
        }
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        if std::mem::take(&mut self.state.lock().unwrap().fail_update) {
            return Err(lost(&self.inner)); // it never reached the store
        }
        self.inner.update(record, expected).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn token_floor(&self) -> LockResult<u64> {
        self.inner.token_floor().await
    }
}

/// a reads z's record (token 3), the record is deleted, and a's create after a lease races d's
/// terms, so a holds it back. a is stopped `a_stops_after` the create landed (`None`: while
/// the create is still on its way), and a fresh candidate c, started just after the create
/// landed, takes the record over. Returns c's token and d's last one.
async fn scenario(name: &str, plan: Plan, a_stops_after: Option<Duration>) -> (u64, i32) {
    let lock = MemoryLock::new(name);
    lock.create(&held_by("z", 3)).await.unwrap();
    let state = Arc::new(Mutex::new(State::default()));
    let racing = Racing {
        inner: lock.clone(),
        plan,
        state: state.clone(),
    };
    let a = start(racing, config("a").with_hints(false).with_random_seed(7));
    sleep(Duration::from_millis(500)).await; // a reads z
    lock.delete();
    let mut landed_at = None;
    for _ in 0..6000 {
        sleep(Duration::from_millis(10)).await;
        landed_at = state.lock().unwrap().landed_at;
        if landed_at.is_some() {
            break;
        }
    }
    let landed_at = landed_at.expect("a's create landed within a minute");
    sleep_until(landed_at + Duration::from_millis(100)).await;
    let mut c = start(lock.clone(), config("c"));
    if let Some(after) = a_stops_after {
        sleep_until(landed_at + after).await;
    }
    a.stop().await;
    let left = lock.get().await.unwrap().map(|held| held.record);
    let term = c.next_term(Duration::from_secs(120)).await;
    c.stop().await;
    let d_last = state.lock().unwrap().d_last;
    eprintln!(
        "a left {left:?}; c leads with token {} at +{:?}; d's last token {d_last}",
        term.fencing_token(),
        landed_at.elapsed()
    );
    (term.fencing_token(), d_last)
}

async fn assert_tokens_grow(name: &str, plan: Plan, a_stops_after: Option<Duration>) {
    let (token, d_last) = scenario(name, plan, a_stops_after).await;
    assert!(
        token > d_last as u64,
        "c's term token {token} is not above d's last term token {d_last}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answered_held_back_create_is_raised_at_once() {
    let five_seconds = Some(Duration::from_secs(5));
    assert_tokens_grow("held-answered", Plan::default(), five_seconds).await;
}

#[tokio::test(start_paused = true)]
async fn a_held_back_create_whose_reply_was_lost_is_raised_at_the_next_read() {
    let plan = Plan {
        reply_lost_after: Some(Duration::ZERO),
        ..Plan::default()
    };
    assert_tokens_grow("held-lost-reply", plan, Some(Duration::from_secs(5))).await;
}

#[tokio::test(start_paused = true)]
async fn a_raise_that_failed_is_tried_again_at_the_next_read() {
    let plan = Plan {
        first_update_fails: true,
        ..Plan::default()
    };
    assert_tokens_grow("held-raise-failed", plan, Some(Duration::from_secs(5))).await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_stopped_while_its_create_is_on_its_way_raises_it_as_it_leaves() {
    let plan = Plan {
        reply_lost_after: Some(Duration::from_secs(3)),
        ..Plan::default()
    };
    assert_tokens_grow("held-stopped", plan, None).await;
}
