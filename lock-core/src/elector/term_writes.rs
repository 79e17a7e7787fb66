//! The writes of one term: its mark and the `renewTime`s it sent, to tell the term's own
//! record from a twin's renewal of it.
//!
//! A term's mark (its token and the random microseconds of its `acquireTime`) keeps apart two
//! of our electors with one identity. It cannot keep apart a client-go elector given the same
//! identity: client-go takes any record naming its identity as its own and renews it keeping
//! `acquireTime` and `leaderTransitions`, so its renewals carry our mark. What it cannot
//! reproduce is a `renewTime` we sent (to the microsecond). So a term remembers the
//! `renewTime`s it sent lately, and a record with its mark is the term's own only if its
//! `renewTime` is one of them; anything else is the twin's running term, which this term must
//! neither renew over nor release.
//!
//! Forgetting is always on the safe side: a write of ours we no longer remember that shows up
//! (a store rolled back further than we keep, a renew landing very late) is taken for a twin's,
//! which ends a term or leaves a record to its lease; it never makes two leaders.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::memory::TermMark;
use crate::LeaderElectionRecord;

/// The most `renewTime`s a term keeps. A write of ours can show up only while no later write
/// of ours has landed over it, so the few since the last answered renew are what matter; the
/// rest (up to a lease of them) only let a store that rolled back a few writes go on being
/// renewed. The cap bounds the memory of an election whatever its renew interval (a few
/// hundred bytes each, with many thousands of elections in a process).
const KEPT_AT_MOST: usize = 32;

/// The mark and recent `renewTime`s of one term of this candidate.
#[derive(Clone, Debug)]
pub(super) struct TermWrites {
    pub(super) mark: TermMark,
    /// `renewTime`s this term sent, with when each was last sent; oldest first.
    sent: VecDeque<(DateTime<Utc>, Instant)>,
    /// How long a sent `renewTime` is kept (the lease): older ones are dropped at the next send.
    kept_for: Duration,
}

impl TermWrites {
    /// The writes of the term that `record` (written by this candidate) started.
    pub(super) fn of(record: &LeaderElectionRecord, kept_for: Duration) -> Self {
        let mut writes = Self {
            mark: TermMark::of(record),
            sent: VecDeque::new(),
            kept_for,
        };
        if let Some(renew_time) = record.renew_time {
            writes.sending(renew_time);
        }
        writes
    }

    /// Remembers a write of this term carrying `renew_time`, about to be sent (or sent again:
    /// it counts from now).
    pub(super) fn sending(&mut self, renew_time: DateTime<Utc>) {
        let now = Instant::now();
        self.sent.retain(|(time, at)| {
            *time != renew_time && now.saturating_duration_since(*at) <= self.kept_for
        });
        if self.sent.len() == KEPT_AT_MOST {
            self.sent.pop_front();
        }
        self.sent.push_back((renew_time, now));
    }

    /// True when `record` was written by this term: its mark, and a `renewTime` it sent.
    /// `identity` is this candidate's.
    pub(super) fn wrote(&self, record: &LeaderElectionRecord, identity: &str) -> bool {
        self.mark.marks(record, identity)
            && record
                .renew_time
                .is_some_and(|time| self.sent.iter().any(|(sent, _)| *sent == time))
    }

    /// True when `record` carries this term's mark but a `renewTime` it did not send (or no
    /// longer remembers): another process renewed the term's record keeping the mark.
    pub(super) fn renewed_by_another(&self, record: &LeaderElectionRecord, identity: &str) -> bool {
        self.mark.marks(record, identity) && !self.wrote(record, identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(renew_micros: i64) -> LeaderElectionRecord {
        let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        LeaderElectionRecord {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(base + chrono::Duration::microseconds(123_456)),
            renew_time: Some(base + chrono::Duration::microseconds(renew_micros)),
            leader_transitions: 3,
            strategy: None,
            preferred_holder: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_record_and_every_sent_renew_time_are_the_terms() {
        let first = record(1);
        let mut writes = TermWrites::of(&first, Duration::from_secs(15));
        assert!(writes.wrote(&first, "a"));
        let renewed = record(2_000_001);
        assert!(writes.renewed_by_another(&renewed, "a"));
        writes.sending(renewed.renew_time.unwrap());
        assert!(writes.wrote(&renewed, "a"));
        assert!(
            writes.wrote(&first, "a"),
            "a rollback to the first is still ours"
        );
        assert!(
            !writes.wrote(&renewed, "b"),
            "another identity is never ours"
        );
        let mut no_time = renewed.clone();
        no_time.renew_time = None;
        assert!(writes.renewed_by_another(&no_time, "a"));
    }

    #[tokio::test(start_paused = true)]
    async fn renew_times_older_than_the_lease_are_dropped_at_the_next_send() {
        let first = record(1);
        let mut writes = TermWrites::of(&first, Duration::from_secs(15));
        tokio::time::advance(Duration::from_secs(16)).await;
        writes.sending(record(16_000_001).renew_time.unwrap());
        assert!(!writes.wrote(&first, "a"));
        assert!(writes.wrote(&record(16_000_001), "a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renew_time_sent_again_counts_from_its_last_send() {
        let first = record(1);
        let mut writes = TermWrites::of(&first, Duration::from_secs(15));
        tokio::time::advance(Duration::from_secs(10)).await;
        writes.sending(first.renew_time.unwrap());
        tokio::time::advance(Duration::from_secs(10)).await;
        writes.sending(record(20_000_001).renew_time.unwrap());
        assert!(writes.wrote(&first, "a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_tiny_renew_interval_keeps_a_bounded_set_and_forgets_the_oldest() {
        let first = record(1);
        let mut writes = TermWrites::of(&first, Duration::from_secs(15));
        for step in 1..=(KEPT_AT_MOST as i64 * 3) {
            tokio::time::advance(Duration::from_millis(1)).await;
            writes.sending(record(1 + step * 1_000).renew_time.unwrap());
        }
        assert_eq!(writes.sent.len(), KEPT_AT_MOST);
        assert!(
            writes.renewed_by_another(&first, "a"),
            "forgotten writes are taken for a twin's: the safe side"
        );
    }
}
