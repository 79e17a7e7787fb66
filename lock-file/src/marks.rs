//! High-water marks kept in the `<file>.lock` file, which outlives the record file.
//!
//! Deleting the record file (by hand, or a clean-up job) must not let versions or fencing tokens
//! go back: an old version could then pass a stale compare-and-swap, and a token could repeat.
//! The OS lock file is never deleted by this crate, so it remembers, written under the OS lock
//! before each record write that goes above them:
//! - a version ceiling: every version ever written is at or below it; a new record's version
//!   starts above it (or at the clock in microseconds, when that is higher). The ceiling moves in
//!   steps of [`VERSION_STEP`], so that it is written once per that many writes, not every time;
//! - the highest `leaderTransitions` (the fencing token) ever written, for
//!   [`Lock::token_floor`](lock_core::Lock::token_floor).
//!
//! Deleting the `.lock` file too forgets both (a fresh start). It is written in place (a rename
//! would move the OS lock to another inode), which a crash can tear: a value that cannot be read
//! back is reported as corrupt, never guessed at.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use lock_core::{LockError, LockResult};
use serde::{Deserialize, Serialize};

/// How far above a written version the ceiling is put when it moves.
const VERSION_STEP: u64 = 1 << 16;
/// The most the `.lock` file is read of (the marks take well under 100 bytes).
const MAX_BYTES: u64 = 4096;

/// What the OS lock file remembers; the default (an empty file) remembers nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Marks {
    /// Every version ever written through this OS lock file is at or below it.
    version_ceiling: u64,
    /// The highest `leaderTransitions` ever written through it; none before the first record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    highest_leader_transitions: Option<u64>,
}

impl Marks {
    /// Reads the marks from the (locked) OS lock file at `path`.
    pub(crate) fn read(file: &File, path: &Path, lock: &str) -> LockResult<Self> {
        let bytes = read_from_start(file)
            .map_err(|err| crate::errors::io_error(lock, "read", path, err))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let parsed = if bytes.len() as u64 > MAX_BYTES {
            Err(format!("longer than {MAX_BYTES} bytes"))
        } else {
            serde_json::from_slice(&bytes).map_err(|err| err.to_string())
        };
        parsed.map_err(|err| LockError::Corrupt {
            lock: lock.to_owned(),
            reason: format!(
                "{} should hold the highest version and token written ({err}); deleting it \
                 forgets them, after which both may repeat once the record file is deleted",
                path.display()
            ),
        })
    }

    /// Writes the marks into the (locked) OS lock file, durably, before the record that needs
    /// them is written.
    pub(crate) fn write(self, file: &File) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(&self).expect("two integers always serialize");
        bytes.push(b'\n');
        file.write_all_at(&bytes, 0)?;
        file.set_len(bytes.len() as u64)?;
        file.sync_data()
    }

    /// The version for a new record: above every version written before, and at least the
    /// clock in microseconds (`None` when the ceiling is at the largest version).
    pub(crate) fn first_version(self, clock_micros: u64) -> Option<u64> {
        self.version_ceiling
            .checked_add(1)
            .map(|above| above.max(clock_micros))
    }

    /// The smallest token above every token written: 0 when none was.
    pub(crate) fn token_floor(self) -> u64 {
        self.highest_leader_transitions
            .map_or(0, |highest| highest.saturating_add(1))
    }

    /// The marks to write before writing a record with this version and token, when they must
    /// move.
    pub(crate) fn raised_for(self, version: u64, leader_transitions: i32) -> Option<Self> {
        let mut raised = self;
        if version > self.version_ceiling {
            raised.version_ceiling = version.saturating_add(VERSION_STEP);
        }
        let token = u64::try_from(leader_transitions).unwrap_or(0);
        if self
            .highest_leader_transitions
            .is_none_or(|highest| token > highest)
        {
            raised.highest_leader_transitions = Some(token);
        }
        (raised != self).then_some(raised)
    }
}

/// Up to `MAX_BYTES + 1` bytes from offset 0, whatever the file's current offset.
fn read_from_start(file: &File) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0; MAX_BYTES as usize + 1];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], filled as u64)? {
            0 => break,
            read => filled += read,
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_move_up_and_in_steps() {
        let empty = Marks::default();
        assert_eq!(empty.token_floor(), 0);
        assert_eq!(empty.first_version(1_000), Some(1_000));
        let raised = empty.raised_for(1_000, 3).unwrap();
        assert_eq!(raised.token_floor(), 4);
        assert_eq!(raised.first_version(5), Some(1_000 + VERSION_STEP + 1));
        assert_eq!(
            raised.raised_for(1_001, 2),
            None,
            "within the step, lower token"
        );
        assert_eq!(
            raised.raised_for(1_001, -1),
            None,
            "a negative token counts as 0"
        );
        let top = raised.raised_for(u64::MAX, 3).unwrap();
        assert_eq!(top.first_version(5), None);
    }
}
