//! A held-back write (not confirmed durable, or a create whose reply was lost) that landed
//! while other terms came and went on the lock (deleted each time) is taken over later above
//! every token the store gave meanwhile, not only above its own. Found by an adversarial
//! review; the last two cases failed before the candidate read the token floor.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::backend::{Version, Versioned};
use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{LeaderElectionRecord, Lock, LockResult};
use support::{config, held_by, start, three_terms_came_and_went};
use tokio::time::sleep;

type Hook = Box<dyn FnOnce(&MemoryLock) -> i32 + Send>;

/// A memory lock where other candidates' terms come and go just before this candidate's
/// create lands (between its token-floor read and the write).
struct Racing {
    inner: MemoryLock,
    hook: Arc<Mutex<Option<Hook>>>,
    highest_other: Arc<Mutex<i32>>,
}

impl std::fmt::Debug for Racing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Racing")
    }
}

#[async_trait::async_trait]
impl Lock for Racing {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        if let Some(hook) = self.hook.lock().unwrap().take() {
            *self.highest_other.lock().unwrap() = hook(&self.inner);
        }
        self.inner.create(record).await
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        self.inner.update(record, expected).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn token_floor(&self) -> LockResult<u64> {
        self.inner.token_floor().await
    }
}

async fn scenario(fault: &str) -> (u64, i32) {
    let lock = MemoryLock::new("aba-hold-back");
    lock.create(&held_by("z", 3)).await.unwrap();
    let highest_other = Arc::new(Mutex::new(0));
    let racing = Racing {
        inner: lock.clone(),
        hook: Arc::new(Mutex::new(
            Some(Box::new(three_terms_came_and_went) as Hook),
        )),
        highest_other: highest_other.clone(),
    };
    let a_lock = FaultyLock::new(racing);
    let faults = a_lock.faults();
    match fault {
        "not_replicated" => faults.unreplicate_next(1),
        "lost_reply" => faults.lose_replies_next(1),
        _ => {}
    }
    let mut a = start(a_lock, config("a").with_hints(false).with_random_seed(7));
    sleep(Duration::from_millis(500)).await; // a reads z (token 3)
    lock.delete(); // a sees the absence, waits a lease, then creates
    let term = a.next_term(Duration::from_secs(120)).await;
    let other = *highest_other.lock().unwrap();
    a.stop().await;
    (term.fencing_token(), other)
}

#[tokio::test(start_paused = true)]
async fn answered_create_on_an_aba_leads_above_every_term_meanwhile() {
    let (token, other) = scenario("none").await;
    assert!(
        token > other as u64,
        "a's term token {token} not above d's {other}"
    );
}

#[tokio::test(start_paused = true)]
async fn not_replicated_create_on_an_aba_leads_above_every_term_meanwhile() {
    let (token, other) = scenario("not_replicated").await;
    assert!(
        token > other as u64,
        "a's term token {token} not above d's {other}"
    );
}

#[tokio::test(start_paused = true)]
async fn lost_reply_create_on_an_aba_leads_above_every_term_meanwhile() {
    let (token, other) = scenario("lost_reply").await;
    assert!(
        token > other as u64,
        "a's term token {token} not above d's {other}"
    );
}
