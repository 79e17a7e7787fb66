//! The session of one lock: its client, key, names and error context, and the requests every
//! part of the lock makes through them. The lock (`lock.rs`) and its hint stream (`hints.rs`)
//! both sit on top of this module; neither imports the other's internals.

use std::future::Future;
use std::sync::Arc;

use etcd_client::Client;
use lock_core::backend::{Hint, Version, Versioned};
use lock_core::{LeaderElectionRecord, LockError, LockResult};

use crate::connection::SharedClient;
use crate::errors::{self, ErrorContext, Fault};
use crate::names::Endpoints;
use crate::transactions::{self, Outcome, Stored};
use crate::vouched::Vouched;
use crate::EtcdLockOptions;

/// What clones of one lock, and its watches, share.
pub(crate) struct Session {
    /// The client's connection, shared with every lock of the same [`EtcdClient`](crate::EtcdClient).
    pub client: Arc<SharedClient>,
    pub key: String,
    pub endpoints: Endpoints,
    pub options: EtcdLockOptions,
    pub describe: String,
    pub errors: ErrorContext,
    pub vouched: Vouched,
}

impl Session {
    /// The hint a put of `value` at `revision` on this lock's key gives: the record,
    /// remembered as vouched for, or just "changed" for a value that is not a record (hints are
    /// never trusted for more than waking the elector).
    pub fn put_hint(&self, value: &[u8], revision: i64) -> Hint {
        if revision <= 0 {
            return Hint::Changed;
        }
        match LeaderElectionRecord::from_json(value) {
            Ok(record) => {
                self.vouched.remember(revision, value);
                Hint::Record(Versioned {
                    record,
                    version: Version::from(revision),
                })
            }
            Err(err) => {
                tracing::debug!(lock = %self.describe, error = %err, "a write of a value that is not a record");
                Hint::Changed
            }
        }
    }

    /// Runs one request on the shared client (connecting first if needed) within the request
    /// timeout, mapping its errors.
    pub async fn request<T, F, Fut>(&self, work: F) -> LockResult<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let connected = self.client.get(&self.errors).await?;
        let limit = self.options.request_timeout;
        match tokio::time::timeout(limit, work(connected.client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let fault = errors::classify(&err);
                if matches!(fault, Fault::Authentication | Fault::StaleToken) {
                    // Log in anew on the next call rather than reuse a refused login.
                    self.client.reset(connected.generation).await;
                }
                Err(self.errors.map(err))
            }
            Err(_) => {
                // The connection may be dead without having closed: make a new one next time.
                self.client.reset(connected.generation).await;
                Err(self.errors.timed_out(limit))
            }
        }
    }

    /// Reads the key as it is stored, without judging the value.
    pub async fn read(&self) -> LockResult<Option<Stored>> {
        let key = self.key.clone();
        let response = self
            .request(|mut client| async move { client.get(key, None).await })
            .await?;
        Ok(transactions::stored(&self.key, response))
    }

    /// Checks that `stored` is a record, and vouches for its revision if it is.
    pub fn checked(&self, stored: Stored) -> LockResult<Versioned> {
        let Some(version) = u64::try_from(stored.mod_revision).ok().filter(|r| *r > 0) else {
            return Err(self.errors.unexpected(format!(
                "the key {} has the modification revision {}",
                self.key, stored.mod_revision
            )));
        };
        let record =
            LeaderElectionRecord::from_json(&stored.value).map_err(|err| LockError::Corrupt {
                lock: self.describe.clone(),
                reason: format!(
                    "the key {} holds {}, which is not a leader election record: {err}",
                    self.key,
                    preview(&stored.value)
                ),
            })?;
        self.vouched.remember(stored.mod_revision, &stored.value);
        Ok(Versioned {
            record,
            version: Version::ordered(version),
        })
    }

    pub async fn transaction(&self, txn: etcd_client::Txn) -> LockResult<Outcome> {
        let response = self
            .request(|mut client| async move { client.txn(txn).await })
            .await?;
        transactions::outcome(&self.key, response).map_err(|reason| self.errors.unexpected(reason))
    }

    pub fn conflict(&self, expected: &Version) -> LockError {
        LockError::conflict(self.describe.clone(), expected)
    }

    /// The bytes of the valid record the key held at `revision`: remembered, or read now.
    /// `Ok(None)` when the key no longer is at `revision` (a conflict).
    pub async fn vouched_value(&self, revision: i64) -> LockResult<Option<Arc<[u8]>>> {
        if let Some(value) = self.vouched.lookup(revision) {
            return Ok(Some(value));
        }
        // A version this lock did not hand out: vouch for it only if the key still holds a
        // record at it.
        let Some(stored) = self.read().await? else {
            return Ok(None);
        };
        let at_revision = stored.mod_revision == revision;
        let value: Arc<[u8]> = Arc::from(stored.value.as_slice());
        self.checked(stored)?;
        Ok(at_revision.then_some(value))
    }
}

/// The start of a stored value, for messages: at most 64 characters, escaped.
pub(crate) fn preview(value: &[u8]) -> String {
    const LONGEST: usize = 64;
    let text = String::from_utf8_lossy(value);
    let mut shown: String = text.chars().take(LONGEST).collect();
    if text.chars().nth(LONGEST).is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_short_and_escaped() {
        assert_eq!(preview(b"hello"), "\"hello\"");
        assert_eq!(preview(b"a\nb"), "\"a\\nb\"");
        let long = preview(&[b'x'; 100]);
        assert!(long.ends_with("…\""), "{long}");
        assert_eq!(long.chars().filter(|c| *c == 'x').count(), 64);
    }
}
