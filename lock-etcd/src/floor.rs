//! The token floor: the smallest fencing token a record created now may carry so that it is
//! above every token the key ever carried, also after the key was deleted.
//!
//! etcd's store revision is one counter for the whole store that grows with every write and
//! never goes back (not across restarts, not across compactions). Every record the elector
//! writes carries a `leaderTransitions` no greater than the revision it lands at:
//!
//! - **A create** carries a token `t = max(floor, observed + 1)`, where `floor` is the revision
//!   read here plus one and `observed` a token of an earlier record. The write lands after the
//!   read, so `floor <= landing revision`; and by the same rule the earlier record's token was
//!   at most its own revision, which is below the landing revision, so `observed + 1 <= landing
//!   revision` too.
//! - **A takeover** carries the previous token plus one: at most the previous record's revision
//!   plus one, which is at most the new revision, since the takeover is a later write.
//! - **A renew or a release** keeps the token and lands at a greater revision.
//!
//! So after a deletion, the store's revision plus one is above every token the key ever
//! carried, whoever deleted it and however long ago. What this does not cover: a record written
//! by hand (or by another program) whose `leaderTransitions` is above its revision, and a
//! store restored from an older snapshot without `--bump-revision` (its revisions go back with
//! its data; a term started after the snapshot may have a greater token than anything left).

use lock_core::{LockError, LockResult};

/// The floor for a store at `revision`: `revision + 1`, or an error when that cannot be a
/// `leaderTransitions` (a 32-bit number in client-go's record).
pub(crate) fn floor_at(lock: &str, revision: i64) -> LockResult<u64> {
    if revision < 0 {
        return Err(LockError::Unavailable {
            lock: lock.to_owned(),
            reason: format!("the server answered with the store revision {revision}"),
            source: None,
        });
    }
    match revision
        .checked_add(1)
        .and_then(|floor| u32::try_from(floor).ok())
    {
        Some(floor) if i32::try_from(floor).is_ok() => Ok(u64::from(floor)),
        _ => Err(LockError::InvalidConfig(format!(
            "{lock}: the etcd store is at revision {revision}, so a new record's fencing token \
             would have to be at least {} to stay above every earlier one, but \
             leaderTransitions is a 32-bit number (at most {}): use an etcd cluster whose \
             revision is below that for this election",
            i128::from(revision) + 1,
            i32::MAX
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_one_past_the_revision() {
        assert_eq!(floor_at("l", 0).unwrap(), 1);
        assert_eq!(floor_at("l", 41).unwrap(), 42);
        assert_eq!(
            floor_at("l", i64::from(i32::MAX) - 1).unwrap(),
            u64::from(i32::MAX.unsigned_abs())
        );
        assert!(floor_at("l", -5).unwrap_err().is_retryable());
    }

    #[test]
    fn a_revision_beyond_what_a_record_holds_is_an_error_that_says_so() {
        for revision in [i64::from(i32::MAX), i64::MAX] {
            let err = floor_at("etcd://x/k", revision).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, LockError::InvalidConfig(_)), "{message}");
            assert!(message.contains(&revision.to_string()), "{message}");
            assert!(message.contains("32-bit"), "{message}");
        }
    }
}
