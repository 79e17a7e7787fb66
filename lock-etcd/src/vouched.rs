//! The revisions at which this lock has seen a valid record, and why `update` may trust them.
//!
//! # Why an update never overwrites a value that is not a record
//!
//! etcd cannot parse JSON inside a transaction, so `update` cannot check "the stored value is a
//! record" on the server the way the Redis script does. It relies on two facts instead:
//!
//! 1. **A revision names one write.** etcd's revision is one counter for the whole store; every
//!    write gets a new one, and the same member never hands one out twice (it survives restarts
//!    with the data directory). So while a key's `mod_revision` is still `R`, its value is
//!    exactly the value written at `R`.
//! 2. **The lock only compares with revisions it has vouched for.** A revision enters this list
//!    only together with bytes that were checked to be a valid record: a value read by `get`
//!    (or by the `else` branch of a transaction) that parsed, a value this lock wrote itself, or
//!    a value a watch event carried that parsed. Every version the lock hands out comes from one
//!    of these.
//!
//! The update's transaction compares `mod_revision(key) == R` for such an `R`, so by (1) it can
//! only succeed while the stored value is the valid record seen at `R`; a value put by hand has
//! a revision of its own, the comparison fails, and the `else` branch reads the value to report
//! it as `Corrupt`. A version the lock did not vouch for (made up, from another lock instance, or
//! pushed out of this bounded list) is first checked by a read, which vouches for it only if
//! the value at that revision parses.
//!
//! Fact (1) fails only if the store's revisions start over, which happens when etcd is
//! restored from an old snapshot or wiped and rebuilt. For that case the transaction also
//! compares the value with the vouched bytes (`value(key) == bytes`), which etcd can do: with
//! both comparisons a write happens only over exactly the bytes that were checked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many vouched revisions are kept: enough for the versions in flight in one process
/// (the elector holds one at a time); older ones are checked by a read.
const CAPACITY: usize = 32;

/// Revisions at which the key held a valid record, with the bytes it held. Shared by the
/// clones of one lock and its watches.
#[derive(Debug, Default)]
pub(crate) struct Vouched {
    entries: Mutex<VecDeque<(i64, Arc<[u8]>)>>,
}

impl Vouched {
    /// Notes that the key held the valid record `value` at `revision`.
    pub fn remember(&self, revision: i64, value: &[u8]) {
        let mut entries = self.entries();
        if entries.iter().any(|(known, _)| *known == revision) {
            return;
        }
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back((revision, Arc::from(value)));
    }

    /// The bytes of the valid record the key held at `revision`, if this lock saw it.
    pub fn lookup(&self, revision: i64) -> Option<Arc<[u8]>> {
        self.entries()
            .iter()
            .rev()
            .find(|(known, _)| *known == revision)
            .map(|(_, value)| value.clone())
    }

    fn entries(&self) -> MutexGuard<'_, VecDeque<(i64, Arc<[u8]>)>> {
        // Nothing panics while the guard is held, so a poisoned list is still whole.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_revisions_only() {
        let vouched = Vouched::default();
        for revision in 1..=40 {
            vouched.remember(revision, revision.to_string().as_bytes());
        }
        assert_eq!(vouched.lookup(40).as_deref(), Some(&b"40"[..]));
        assert_eq!(vouched.lookup(9).as_deref(), Some(&b"9"[..]));
        assert_eq!(vouched.lookup(8), None);
        vouched.remember(40, b"other");
        assert_eq!(vouched.lookup(40).as_deref(), Some(&b"40"[..]));
    }
}
