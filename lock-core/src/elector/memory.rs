//! What a candidate remembers about its lock for as long as it runs, across all its terms and
//! stand-bys: the highest fencing token it saw, whether it ever saw a record, and which records
//! it wrote itself.
//!
//! This memory is what keeps two safety rules when the store forgets (a deleted record, a Redis
//! without persistence): a vanished record is not a free one, and no new term gets a token that
//! is not above every token this candidate has seen.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::{LeaderElectionRecord, Version};

/// How many of its own term records a candidate remembers (to recognise its own record after
/// its term ended, instead of taking it for a twin's).
const REMEMBERED_TERMS: usize = 8;

/// The mark of one write that started a term of this process: its token and the acquireTime
/// with the random microseconds this process chose. A twin (another process with the same
/// identity) cannot produce the same mark except by a one-in-a-million chance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TermMark {
    pub(super) token: u64,
    pub(super) acquire_time: Option<DateTime<Utc>>,
}

impl TermMark {
    /// The mark of a record this process wrote to start a term.
    pub(super) fn of(record: &LeaderElectionRecord) -> Self {
        Self {
            token: u64::try_from(record.leader_transitions).unwrap_or(0),
            acquire_time: record.acquire_time,
        }
    }

    /// True when `record` is exactly the term this mark was made for, held by `identity`.
    pub(super) fn marks(&self, record: &LeaderElectionRecord, identity: &str) -> bool {
        record.holder_identity == identity
            && u64::try_from(record.leader_transitions).ok() == Some(self.token)
            && record.acquire_time == self.acquire_time
    }

    /// True when `record` is one of the releases of this mark's term that this process sent:
    /// free, with the term's token kept and the acquireTime one of `sent` (each release's own
    /// random microseconds).
    pub(super) fn released_by(
        &self,
        record: &LeaderElectionRecord,
        sent: &[DateTime<Utc>],
    ) -> bool {
        record.holder_identity.is_empty()
            && u64::try_from(record.leader_transitions).ok() == Some(self.token)
            && record.acquire_time.is_some_and(|time| sent.contains(&time))
    }
}

/// A write that was to start a term but whose answer was lost, as remembered for as long as the
/// candidate runs (a stand-by keeps the few it may still settle, see `pending.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LostWrite {
    pub(super) mark: TermMark,
    /// A takeover by compare-and-swap, not a create.
    pub(super) takeover: bool,
    /// The renewTime it carried: a record with its mark and another renewTime was renewed by
    /// another process (a client-go elector with the same identity) and is that one's term.
    pub(super) renew_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub(super) struct Memory {
    /// The highest fencing token seen on the lock, in a record read or written.
    highest_token: Option<u64>,
    /// The highest fencing token a hint carried. Kept apart: a hint can be forged, and a
    /// forged huge token must never make every new term impossible.
    highest_hinted: Option<u64>,
    /// True once any record (free or held) was seen on the lock.
    saw_record: bool,
    /// The terms this process started, newest last.
    own_terms: VecDeque<TermMark>,
    /// The writes this process sent to start a term whose answers were lost, newest last:
    /// should one land unseen, it is still this process' record, not a twin's.
    unanswered: VecDeque<LostWrite>,
    /// The version of the last record that named this identity without being ours, so that the
    /// warning about a twin is given once per record, not once per look.
    warned_twin: Option<Version>,
}

impl Memory {
    /// Takes in a record seen on the lock, in a read (or write) or in a hint.
    pub(super) fn saw(&mut self, record: &LeaderElectionRecord, from_hint: bool) {
        self.saw_record = true;
        if let Ok(token) = u64::try_from(record.leader_transitions) {
            let highest = if from_hint {
                &mut self.highest_hinted
            } else {
                &mut self.highest_token
            };
            *highest = Some(highest.map_or(token, |seen| seen.max(token)));
        }
    }

    /// Takes in an upper bound of tokens written on the lock (a backend's counter), so that the
    /// next term's token is above it.
    pub(super) fn saw_token(&mut self, token: u64) {
        self.highest_token = Some(self.highest_token.map_or(token, |seen| seen.max(token)));
    }

    /// True once any record was seen: an absence after that is a deletion, not a new lock.
    pub(super) fn saw_record(&self) -> bool {
        self.saw_record
    }

    /// The highest token seen in reads and writes, if any.
    pub(super) fn highest_token(&self) -> Option<u64> {
        self.highest_token
    }

    /// The highest token a hint carried, if any.
    pub(super) fn highest_hinted(&self) -> Option<u64> {
        self.highest_hinted
    }

    /// Remembers a term this process started.
    pub(super) fn started(&mut self, record: &LeaderElectionRecord) {
        self.saw(record, false);
        // Once each: a write tried again (a held record's raise) must not push out older marks.
        if self.is_own(record, record.holder_identity.as_str()) {
            return;
        }
        if self.own_terms.len() == REMEMBERED_TERMS {
            self.own_terms.pop_front();
        }
        self.own_terms.push_back(TermMark::of(record));
    }

    /// True when `record` is one this process wrote to start a term.
    pub(super) fn is_own(&self, record: &LeaderElectionRecord, identity: &str) -> bool {
        self.own_terms
            .iter()
            .any(|mark| mark.marks(record, identity))
    }

    /// Remembers a write that was to start a term but whose answer was lost.
    pub(super) fn sent_unanswered(&mut self, write: LostWrite) {
        if self.unanswered.len() == REMEMBERED_TERMS {
            self.unanswered.pop_front();
        }
        self.unanswered.push_back(write);
    }

    /// The lost write `record` is, if it is one and was never taken in as a term of this
    /// process (adopted, or held by [`started`](Self::started)): a write the stand-by no
    /// longer kept (too old, or made over a state the store had left) that landed after all,
    /// as it was sent (not renewed since by another process keeping its mark).
    pub(super) fn forgotten_write(
        &self,
        record: &LeaderElectionRecord,
        identity: &str,
    ) -> Option<LostWrite> {
        if self.is_own(record, identity) {
            return None;
        }
        self.unanswered
            .iter()
            .find(|write| {
                write.mark.marks(record, identity) && write.renew_time == record.renew_time
            })
            .copied()
    }

    /// True when `record` is one this process wrote to start a term, whether or not it heard
    /// that the write landed.
    pub(super) fn wrote(&self, record: &LeaderElectionRecord, identity: &str) -> bool {
        self.is_own(record, identity)
            || self
                .unanswered
                .iter()
                .any(|write| write.mark.marks(record, identity))
    }

    /// True the first time a twin's record is seen at `version`.
    pub(super) fn first_sight_of_twin(&mut self, version: &Version) -> bool {
        if self.warned_twin.as_ref() == Some(version) {
            return false;
        }
        self.warned_twin = Some(version.clone());
        true
    }
}
