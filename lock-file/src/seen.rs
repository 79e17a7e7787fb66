//! The exact bytes a lock handle last read or wrote at each recent version.
//!
//! Versions only tell that nobody wrote through this crate since; a hand edit that keeps the
//! version (fixing a field with an editor, say) would otherwise be overwritten by the next renew
//! without anyone having read it. An update whose expected version is remembered with other
//! bytes than the file now holds is a conflict: the elector then reads the edited record and
//! acts on it. Versions never repeat on one lock (see `marks`), so a version names one content
//! unless someone edited it by hand.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many versions are remembered: the elector reads or writes one at a time, a few more
/// cover a handle shared by several callers.
const KEPT: usize = 8;

/// Bytes per version, most recent last.
#[derive(Default)]
pub(crate) struct Seen {
    versions: Mutex<VecDeque<(u64, Vec<u8>)>>,
}

/// Shows the versions only: the bytes would swamp a lock's debug output.
impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_list()
            .entries(versions.iter().map(|(version, _)| version))
            .finish()
    }
}

impl Seen {
    /// Remembers that the file held `bytes` at `version`.
    pub(crate) fn remember(&self, version: u64, bytes: &[u8]) {
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        versions.retain(|(seen, _)| *seen != version);
        if versions.len() == KEPT {
            versions.pop_front();
        }
        versions.push_back((version, bytes.to_vec()));
    }

    /// True when `version` was seen with other bytes than `bytes`. A version this handle never
    /// saw (one passed in from elsewhere) cannot be checked, and is not a conflict.
    pub(crate) fn edited(&self, version: u64, bytes: &[u8]) -> bool {
        let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        versions
            .iter()
            .any(|(seen, seen_bytes)| *seen == version && seen_bytes != bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_versions_with_their_bytes() {
        let seen = Seen::default();
        seen.remember(1, b"one");
        assert!(!seen.edited(1, b"one"));
        assert!(seen.edited(1, b"edited"));
        assert!(!seen.edited(2, b"never seen"));
        seen.remember(1, b"edited");
        assert!(!seen.edited(1, b"edited"));
        for version in 2..=KEPT as u64 + 1 {
            seen.remember(version, b"later");
        }
        assert!(!seen.edited(1, b"forgotten"));
        assert!(seen.edited(KEPT as u64 + 1, b"other"));
    }
}
