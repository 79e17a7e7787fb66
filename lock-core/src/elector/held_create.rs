//! Raising the token of a held-back create.
//!
//! A create is held back (neither led on nor released, see `standby.rs`) when the store's
//! counter moved while it was on its way: terms may have come and gone on a record deleted
//! meanwhile, with tokens above the one the create carries, chosen before. Its writer would
//! take it over at the end of its lease above every token it knows, but if the writer goes away
//! first, whoever takes it over takes its token from the record alone and could lead below
//! those terms. So the writer rewrites the held record with the highest token it knows (at
//! least the store's counter): as soon as it holds it back, at its next reads until the rewrite
//! is answered, and once more as it leaves.
//!
//! What this cannot cover: a writer that dies (SIGKILL, a crash) between its create landing
//! and the rewrite, a window of one round trip after an answered create and of a read after
//! an unanswered one. The rewrite is a new version, so the other standbys start their wait for
//! the held record again when they see it: a rewrite that comes late (the counter could not be
//! read for a while) makes them wait up to that much longer if the writer goes away.

use super::memory::{Memory, TermMark};
use super::LeaderElector;
use crate::{LeaderElectionRecord, LockResult, Versioned};

impl LeaderElector {
    /// Rewrites `held`, a held-back record of this candidate, with the highest token this
    /// candidate knows when that is higher. `Ok(None)` when there is nothing to raise (or the
    /// token would not fit the record's 32-bit field). The rewrite is remembered as this
    /// candidate's before it is sent: it may land unanswered, and must not look like a twin's.
    pub(super) async fn raise_held_token(
        &self,
        memory: &mut Memory,
        held: &Versioned,
    ) -> LockResult<Option<Versioned>> {
        let Some(token) = memory
            .highest_token()
            .and_then(|token| i32::try_from(token).ok())
            .filter(|token| *token > held.record.leader_transitions)
        else {
            return Ok(None);
        };
        let raised = LeaderElectionRecord {
            leader_transitions: token,
            ..held.record.clone()
        };
        memory.started(&raised);
        let version = self
            .bounded(
                self.call_deadline(),
                self.lock.update(&raised, &held.version),
            )
            .await?;
        tracing::debug!(
            fencing_token = token,
            "raised the held record's token to the store's counter"
        );
        Ok(Some(Versioned {
            record: raised,
            version,
        }))
    }

    /// As a stand-by ends (cancelled, or given up) with a create of this candidate that may be
    /// in place and held back, unraised: reads the lock and the store's counter, and raises
    /// that record's token if it is there. Best effort: errors are logged.
    pub(super) async fn raise_held_before_leaving(&self, memory: &mut Memory, mark: TermMark) {
        let outcome = async {
            let Some(held) = self
                .bounded(self.call_deadline(), self.lock.get())
                .await?
                .filter(|current| self.holds(current, &mark))
            else {
                return Ok(None);
            };
            let counter = self
                .bounded(self.call_deadline(), self.lock.token_floor())
                .await?;
            memory.saw_token(counter);
            self.raise_held_token(memory, &held).await
        }
        .await;
        if let Err(err) = outcome {
            tracing::warn!(
                error = %err,
                "could not raise the token of a held-back record of this candidate as it \
                 stopped: a candidate that takes that record over may lead below a term that \
                 ran while it was being written"
            );
        }
    }
}
