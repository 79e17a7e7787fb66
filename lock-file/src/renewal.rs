//! Renews that a watcher can follow without reading the file.
//!
//! A leader renews every retry period, and inotify wakes every watcher of the directory on each
//! renew. Reading the file each time would make an idle standby read at the renew rate, for a
//! change it can predict: a renew moves the version up by one and sets `renewTime`, nothing
//! else. So a writer whose new content is exactly that (checked on the bytes) names its
//! temporary file after the renew: `renew-<unix microseconds>-<FNV-1a 64 of the new bytes>`. The
//! rename of that file over the lock file shows the name to inotify (a `From` event just before
//! the `To` event of the lock file), and a watcher that knows the content before it rebuilds the
//! content after it in memory, and takes it only when its bytes hash to the name's hash.
//!
//! Anything else (another kind of write, a watcher that missed the previous content, a hash
//! that does not match, polling) reads the file as before. A hint is only a hint: someone who
//! can write the directory can forge such a name, as someone allowed to `PUBLISH` can forge a
//! Redis hint, and the elector confirms by reads (at the latest when the hinted lease would run
//! out, and at least once a minute): a forged renew can keep standbys on the known holder for at
//! most that long, less than writing the file itself (which the same permission allows) could.
//! Polling (where inotify is not available) sees no renames and reads on every change.

use std::hash::Hasher;

use chrono::{TimeZone, Utc};

use crate::stored::{FileContent, Stored};

/// What the name of a renew's temporary file carries, after the usual prefix.
const MARK: &str = ".renew-";

/// The tag for a write of `new` over `current`, when the write is a renew of it (`None` for any
/// other write: the watchers read those).
pub(crate) fn tag(current: &Stored, new: &Stored) -> Option<String> {
    let micros = new.record.renew_time?.timestamp_micros();
    let bytes = new.to_bytes();
    let predicted = renewed(current, micros)?;
    (predicted.to_bytes() == bytes).then(|| format!("{MARK}{micros}-{:016x}", hash(&bytes)))
}

/// The content after the renew a temporary file's name `name` announces, rebuilt from the
/// content `before` it; `None` when the name announces no renew or the rebuilt bytes are not
/// the ones the writer hashed.
pub(crate) fn follow(before: &[u8], name: &str) -> Option<FileContent> {
    let (_, tag) = name.rsplit_once(MARK)?;
    let (micros, digest) = tag.split_once('-')?;
    let micros: i64 = micros.parse().ok()?;
    let digest = u64::from_str_radix(digest, 16).ok()?;
    let before = Stored::parse(before).ok()?;
    let stored = renewed(&before, micros)?;
    let bytes = stored.to_bytes();
    (hash(&bytes) == digest).then_some(FileContent { stored, bytes })
}

/// `current` renewed at `micros` (since the epoch): the next version, the same record with that
/// `renewTime` (the file keeps microseconds, so a finer time in a write serializes as this one
/// does, and a read gives this one too).
fn renewed(current: &Stored, micros: i64) -> Option<Stored> {
    let mut record = current.record.clone();
    record.renew_time = Some(Utc.timestamp_micros(micros).single()?);
    Some(Stored {
        version: current.version.checked_add(1)?,
        record,
    })
}

/// FNV-1a, 64 bits: the same in every process and every build, which the standard library's
/// hasher does not promise.
fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::tagged;
    use lock_core::LeaderElectionRecord;

    fn stored(version: u64, holder: &str, renew_seconds: i64) -> Stored {
        let at = Utc
            .timestamp_micros(renew_seconds * 1_000_000 + 123_456)
            .single();
        Stored {
            version,
            record: LeaderElectionRecord {
                holder_identity: holder.to_owned(),
                lease_duration_seconds: 15,
                acquire_time: at,
                renew_time: at,
                leader_transitions: 3,
                ..LeaderElectionRecord::default()
            },
        }
    }

    #[test]
    fn a_renew_is_tagged_and_followed_to_the_exact_bytes() {
        let before = stored(7, "a", 1_000);
        let mut after = stored(8, "a", 1_002);
        after.record.acquire_time = before.record.acquire_time;
        let tag = tag(&before, &after).expect("a renew is tagged");
        let name = tagged(".lock.tmp-1-2".to_owned(), Some(&tag));
        let followed = follow(&before.to_bytes(), &name).expect("followed");
        assert_eq!(followed.bytes, after.to_bytes());
        assert_eq!(followed.stored.version, 8);
        assert_eq!(followed.stored.record, after.record);
    }

    #[test]
    fn other_writes_are_not_tagged() {
        let before = stored(7, "a", 1_000);
        // A new holder, a version that skips, a changed field: each is read by the watchers.
        let mut takeover = stored(8, "b", 1_002);
        takeover.record.acquire_time = before.record.acquire_time;
        assert_eq!(tag(&before, &takeover), None);
        let mut skip = stored(9, "a", 1_002);
        skip.record.acquire_time = before.record.acquire_time;
        assert_eq!(tag(&before, &skip), None);
        let mut handover = stored(8, "a", 1_002);
        handover.record.acquire_time = before.record.acquire_time;
        handover.record.preferred_holder = Some("b".to_owned());
        assert_eq!(tag(&before, &handover), None);
        let mut released = before.record.clone();
        released.renew_time = None;
        let release = Stored {
            version: 8,
            record: released,
        };
        assert_eq!(tag(&before, &release), None);
    }

    #[test]
    fn a_watcher_that_knows_other_content_or_a_forged_name_reads() {
        let before = stored(7, "a", 1_000);
        let mut after = stored(8, "a", 1_002);
        after.record.acquire_time = before.record.acquire_time;
        let name = tagged(".lock.tmp-1-2".to_owned(), tag(&before, &after).as_deref());
        // The watcher last saw another holder (it missed a write): the hash does not match.
        assert!(follow(&stored(7, "b", 1_000).to_bytes(), &name).is_none());
        assert!(follow(b"not json", &name).is_none());
        for forged in [
            ".lock.tmp-1-2",
            ".lock.tmp-1-2.renew-",
            ".lock.tmp-1-2.renew-1002",
            ".lock.tmp-1-2.renew-x-00",
            ".lock.tmp-1-2.renew-1002-zz",
            ".lock.tmp-1-2.renew-1002-0000000000000000",
            ".lock.tmp-1-2.renew-99999999999999999999-0",
        ] {
            assert!(follow(&before.to_bytes(), forged).is_none(), "{forged}");
        }
    }
}
