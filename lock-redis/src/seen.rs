//! The record bytes this lock read or wrote at each recent version: what an `update` names as
//! the exact value it replaces.
//!
//! The script writes an update only over the very bytes the client read at the version it
//! names (see the opening comment of `script.lua` for why bytes rather than a parser in Lua).
//! Bytes enter this list only after the client parsed them as a record (a `get`, the value a
//! failed update reported) or wrote them itself, so every update replaces a valid record. A
//! version that is not here (made up, from another lock instance, or pushed out) is read first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many versions are kept: the elector holds one at a time; a few more cover clones of the
/// lock used side by side. Older ones cost one read.
const CAPACITY: usize = 8;

/// Recent versions with the record bytes the key held at each. Shared by a lock's clones.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    entries: Mutex<VecDeque<(String, Arc<[u8]>)>>,
}

impl Seen {
    /// Notes that the key held the valid record `bytes` at `version` (replacing what an earlier
    /// note said for the same version: a record edited without a version bump).
    pub fn remember(&self, version: &str, bytes: &[u8]) {
        let mut entries = self.entries();
        entries.retain(|(known, _)| known != version);
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back((version.to_owned(), Arc::from(bytes)));
    }

    /// The bytes the key held at `version`, if this lock saw them.
    pub fn lookup(&self, version: &str) -> Option<Arc<[u8]>> {
        self.entries()
            .iter()
            .rev()
            .find(|(known, _)| known == version)
            .map(|(_, bytes)| bytes.clone())
    }

    /// The list, also after a panic elsewhere while it was held (every change is one call).
    fn entries(&self) -> MutexGuard<'_, VecDeque<(String, Arc<[u8]>)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_bytes_of_recent_versions() {
        let seen = Seen::default();
        seen.remember("1", b"a");
        seen.remember("1", b"b");
        assert_eq!(seen.lookup("1").as_deref(), Some(&b"b"[..]));
        for version in 2..=CAPACITY as u32 + 1 {
            seen.remember(&version.to_string(), b"c");
        }
        assert_eq!(seen.lookup("1"), None, "pushed out");
        assert!(seen.lookup(&(CAPACITY + 1).to_string()).is_some());
        assert_eq!(seen.lookup("unknown"), None);
    }
}
