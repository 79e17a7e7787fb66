//! The writes of a standby that were to start a term but whose answers were lost (a timeout, a
//! dropped connection): each may have landed, or may still land.
//!
//! A lost write is not settled by the first read after it. On etcd and Kubernetes the write and
//! that read travel on separate streams, and a loaded server answers them in either order, so
//! the read may show the store from before the write, which lands a moment later. The standby
//! then tries again, and its next write fails against the one that landed. Every lost write is
//! therefore kept, by its mark, until a read shows it in place (it is adopted, handed back or
//! held, see `standby.rs`), or until it is too old to matter: a record this candidate wrote
//! must never be taken for a twin's, which would make it wait a whole lease for itself.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::memory::TermMark;
use crate::leadership::Stamp;
use crate::Versioned;

/// How many lost writes a standby keeps. One is the common case (it tries again at once, and
/// that write is answered); a store that keeps timing out makes a few, each tried a retry
/// period after the last.
const KEPT: usize = 4;

/// A write that started a term but whose answer was lost: it may have landed.
#[derive(Clone, Debug)]
pub(super) struct Unanswered {
    pub(super) mark: TermMark,
    pub(super) sent: Stamp,
    /// Held for its lease if it landed, neither adopted nor released: a create that needed a
    /// check of the store (it may have moved meanwhile, which only the check after an
    /// answered create can rule out), or a create not confirmed durable.
    pub(super) hold_back: bool,
    /// The lock said the write was not confirmed durable: a failover may lose it, and with it
    /// the term's token, so it starts no term even if it landed in time.
    pub(super) not_durable: bool,
    /// A takeover by compare-and-swap over a record this candidate read (not a create).
    pub(super) takeover: bool,
    /// The renewTime the write carried: a record with its mark but another renewTime was
    /// renewed by another process since (see [`renewed_by_another`](Self::renewed_by_another)).
    pub(super) renew_time: Option<chrono::DateTime<chrono::Utc>>,
    /// What the write was made over: the record (with its version) it was to replace, or
    /// `None` for a create (made over an absence). It can land only while the store still shows
    /// that. The record counts, not only the version: on a backend whose versions start again
    /// when a record is made again, another record at the same version is another state, and a
    /// compare-and-swap kept for the old one could land on it and replace a running term.
    pub(super) over: Option<Versioned>,
}

impl Unanswered {
    /// True when `found`, which carries this write's mark, is not this write as sent: another
    /// process renewed it, keeping the mark (a client-go elector with the same identity adopts
    /// any record naming it). That is the other process' running term: neither adopted nor
    /// handed back.
    pub(super) fn renewed_by_another(&self, found: &Versioned) -> bool {
        found.record.renew_time != self.renew_time
    }
}

/// The lost writes of one stand-by, oldest first.
#[derive(Debug, Default)]
pub(super) struct PendingWrites {
    writes: VecDeque<Unanswered>,
}

impl PendingWrites {
    /// Keeps a write whose answer was lost, dropping the oldest beyond [`KEPT`].
    pub(super) fn push(&mut self, write: Unanswered) {
        if self.writes.len() == KEPT {
            self.writes.pop_front();
        }
        self.writes.push_back(write);
    }

    /// Takes in a record a hint shows: true when it is one of the kept writes (only a read may
    /// settle it); otherwise only the takeovers made over exactly that record are kept (creates,
    /// made over an absence, are dropped), as by [`settle`](Self::settle). A forged hint can
    /// only make a kept write forgotten, which costs a lease's wait should it land, never a
    /// term: a forgotten write that lands is held, not adopted (see `Memory::forgotten_write`).
    pub(super) fn hinted(&mut self, current: &Versioned, identity: &str) -> bool {
        if self
            .writes
            .iter()
            .any(|write| write.mark.marks(&current.record, identity))
        {
            return true;
        }
        self.writes
            .retain(|write| write.over.as_ref() == Some(current));
        false
    }

    /// Takes in what the store shows now (a read, or a hint's record): the kept write that
    /// `current` is, if any, which settles every kept write (the others were made over the state
    /// it replaced and can no longer land). Otherwise only the writes made over exactly this
    /// state are kept: one made over an absence or a version the store has moved past could
    /// land only after the store came back to it (a record deleted under a term that may still
    /// run), and adopting it then could start a second term beside that one. Should it land, it
    /// is waited out like any other holder's record.
    ///
    /// The oldest match is taken (two marks are equal only by a one-in-a-million chance): its
    /// term counts from the earlier send, the safe side.
    pub(super) fn settle(
        &mut self,
        current: Option<&Versioned>,
        identity: &str,
    ) -> Option<Unanswered> {
        let found = current.and_then(|current| {
            self.writes
                .iter()
                .find(|write| write.mark.marks(&current.record, identity))
                .cloned()
        });
        match found {
            Some(_) => self.writes.clear(),
            None => self.writes.retain(|write| write.over.as_ref() == current),
        }
        found
    }

    /// Forgets every kept write: the store changed in a way no hint showed.
    pub(super) fn forget(&mut self) {
        self.writes.clear();
    }

    /// How many writes are kept.
    pub(super) fn len(&self) -> usize {
        self.writes.len()
    }

    /// Forgets the writes sent more than `kept_for` ago: one still on its way after a whole
    /// lease is not expected, and should it land, it is waited out like any other holder's.
    pub(super) fn forget_older_than(&mut self, kept_for: Duration) {
        let now = Instant::now();
        self.writes
            .retain(|write| now.saturating_duration_since(write.sent.at) < kept_for);
    }

    /// Takes the newest kept write (the one most likely to have landed), forgetting the others.
    pub(super) fn take_newest(&mut self) -> Option<Unanswered> {
        let newest = self.writes.pop_back();
        self.writes.clear();
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LeaderElectionRecord, Version};

    fn write(token: u64) -> Unanswered {
        write_over(token, None)
    }

    fn write_over(token: u64, over: Option<Versioned>) -> Unanswered {
        Unanswered {
            takeover: over.is_some(),
            over,
            mark: TermMark {
                token,
                acquire_time: None,
            },
            sent: Stamp::now(),
            hold_back: false,
            not_durable: false,
            renew_time: None,
        }
    }

    fn record(holder: &str, token: i32) -> Versioned {
        Versioned {
            record: LeaderElectionRecord {
                holder_identity: holder.to_owned(),
                leader_transitions: token,
                ..LeaderElectionRecord::default()
            },
            version: Version::ordered(1),
        }
    }

    #[test]
    fn a_write_found_in_place_settles_all_of_them() {
        let mut pending = PendingWrites::default();
        pending.push(write(1));
        pending.push(write(2));
        assert!(
            pending.hinted(&record("a", 1), "a"),
            "a hint of a kept write"
        );
        assert_eq!(pending.len(), 2, "only a read settles");
        assert!(pending.settle(None, "a").is_none());
        assert_eq!(
            pending.len(),
            2,
            "creates are kept while the store shows an absence"
        );
        let found = pending.settle(Some(&record("a", 2)), "a");
        assert_eq!(found.map(|w| w.mark.token), Some(2));
        assert_eq!(pending.len(), 0, "all settled");
    }

    #[test]
    fn writes_made_over_a_state_the_store_left_are_dropped() {
        let mut pending = PendingWrites::default();
        pending.push(write(1));
        assert!(pending.settle(Some(&record("b", 1)), "a").is_none());
        assert_eq!(pending.len(), 0, "a create, once another record was shown");
        let over = record("x", 7);
        pending.push(write_over(8, Some(over.clone())));
        assert!(!pending.hinted(&over, "a"));
        assert_eq!(pending.len(), 1, "a hint of the record it was made over");
        assert!(pending.settle(Some(&over), "a").is_none());
        assert_eq!(pending.len(), 1, "a takeover, while its version is shown");
        let renewed = Versioned {
            version: Version::ordered(2),
            ..over
        };
        assert!(pending.settle(Some(&renewed), "a").is_none());
        assert_eq!(pending.len(), 0, "a takeover, once the record moved on");
    }

    #[test]
    fn another_record_at_the_same_version_is_another_state() {
        // A backend whose versions start again when the record is made again: y's record at
        // x's old version. The takeover kept for x's record must not stay kept for it.
        let mut pending = PendingWrites::default();
        let over = record("x", 7);
        pending.push(write_over(8, Some(over.clone())));
        let made_again = record("y", 0);
        assert_eq!(made_again.version, over.version);
        assert!(!pending.hinted(&made_again, "a"));
        assert_eq!(pending.len(), 0, "a hint of another record at that version");
        pending.push(write_over(8, Some(over)));
        assert!(pending.settle(Some(&made_again), "a").is_none());
        assert_eq!(pending.len(), 0, "a read of another record at that version");
    }

    #[test]
    fn only_the_newest_few_are_kept() {
        let mut pending = PendingWrites::default();
        for token in 0..(KEPT as u64 + 2) {
            pending.push(write(token));
        }
        assert_eq!(pending.len(), KEPT);
        assert_eq!(pending.take_newest().map(|w| w.mark.token), Some(5));
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn old_writes_are_forgotten() {
        let mut pending = PendingWrites::default();
        pending.push(write(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        pending.push(write(2));
        pending.forget_older_than(Duration::from_secs(5));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.take_newest().map(|w| w.mark.token), Some(2));
    }
}
