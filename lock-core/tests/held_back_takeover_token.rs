//! A create held back because the store moved while it was on its way (terms of d came and
//! went on the deleted record) and then left by its writer: another candidate c, which never
//! saw d's terms, takes it over after its lease with a token from the record alone. Found by
//! an adversarial review: c led with token 5 below d's 6. The writer now raises its held
//! record's token to the store's counter as soon as it holds it back.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::backend::{Version, Versioned};
use lock_core::testing::MemoryLock;
use lock_core::{LeaderElectionRecord, Lock, LockResult};
use support::{config, start};
use tokio::time::sleep;

type Hook = Box<dyn FnOnce(&MemoryLock) -> i32 + Send>;

struct Racing {
    inner: MemoryLock,
    hook: Arc<Mutex<Option<Hook>>>,
    highest_other: Arc<Mutex<i32>>,
    /// The create that ran the hook lands, but its reply is lost.
    lose_reply: bool,
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
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            *self.highest_other.lock().unwrap() = hook(&self.inner);
            let landed = self.inner.create(record).await;
            if self.lose_reply && landed.is_ok() {
                return Err(lock_core::LockError::unavailable(
                    self.inner.describe(),
                    std::io::Error::other("the reply was lost"),
                ));
            }
            return landed;
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

fn held_by(holder: &str, token: i32) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.into(),
        lease_duration_seconds: 15,
        leader_transitions: token,
        ..Default::default()
    }
}

/// Three terms of d, each at the floor it read (as an elector would), each deleted.
fn three_terms(lock: &MemoryLock) -> i32 {
    let mut token = 3;
    for _ in 0..3 {
        let floor = futures::executor::block_on(lock.token_floor()).unwrap() as i32;
        token = (token + 1).max(floor);
        futures::executor::block_on(lock.create(&held_by("d", token))).unwrap();
        lock.delete();
    }
    token
}

/// Runs the scenario: a reads z, z's record is deleted, a creates while d's terms come and go
/// (the reply to a's create lost if `lose_reply`), a goes away holding its record back, and a
/// fresh candidate c takes the record over. Returns c's token and d's last one.
async fn scenario(name: &str, lose_reply: bool) -> (u64, i32) {
    let lock = MemoryLock::new(name);
    lock.create(&held_by("z", 3)).await.unwrap();
    let highest_other = Arc::new(Mutex::new(0));
    let racing = Racing {
        inner: lock.clone(),
        hook: Arc::new(Mutex::new(Some(Box::new(three_terms) as Hook))),
        highest_other: highest_other.clone(),
        lose_reply,
    };
    let a = start(racing, config("a").with_hints(false).with_random_seed(7));
    sleep(Duration::from_millis(500)).await; // a reads z (token 3)
                                             // a waits a lease on the absence, then creates: d's terms race it. a's create lands and
                                             // is held back (the store moved); a then goes away (a rolling restart) after a read.
    lock.delete();
    let mut held = None;
    for _ in 0..400 {
        sleep(Duration::from_millis(100)).await;
        if let Some(v) = lock.get().await.unwrap() {
            if v.record.holder_identity == "a" {
                held = Some(v);
                break;
            }
        }
    }
    let held = held.expect("a's held-back create landed");
    // Long enough for a's next read (a retry period with jitter) after a lost reply.
    sleep(Duration::from_secs(5)).await;
    a.stop().await;
    let d_last = *highest_other.lock().unwrap();
    eprintln!(
        "a's held record token {}, now {:?}, d's last term token {d_last}",
        held.record.leader_transitions,
        lock.get()
            .await
            .unwrap()
            .map(|v| v.record.leader_transitions)
    );
    // A fresh candidate c (it never saw d's terms) takes the record over after its lease.
    let mut c = start(lock.clone(), config("c"));
    let term = c.next_term(Duration::from_secs(60)).await;
    c.stop().await;
    (term.fencing_token(), d_last)
}

#[tokio::test(start_paused = true)]
async fn a_held_back_create_taken_over_by_another_candidate_keeps_tokens_growing() {
    let (token, d_last) = scenario("aba-hold-back-other", false).await;
    assert!(
        token > d_last as u64,
        "c's term token {token} is not above d's last term token {d_last}"
    );
}

/// The same when the reply to a's create was lost: a finds its record on its next read, holds
/// it back, and raises its token then.
#[tokio::test(start_paused = true)]
async fn a_held_back_create_whose_reply_was_lost_keeps_tokens_growing_for_the_next_holder() {
    let (token, d_last) = scenario("aba-hold-back-lost-reply", true).await;
    assert!(
        token > d_last as u64,
        "c's term token {token} is not above d's last term token {d_last}"
    );
}
