//! The one error type every lock returns.

use std::time::Duration;

/// What went wrong with a lock operation.
///
/// The variants tell apart what the elector must treat differently: a lost race
/// ([`Conflict`](Self::Conflict), [`AlreadyExists`](Self::AlreadyExists)), a passing fault worth a
/// retry ([`Unavailable`](Self::Unavailable)), and the faults a human has to fix
/// ([`Corrupt`](Self::Corrupt), [`Forbidden`](Self::Forbidden),
/// [`InvalidConfig`](Self::InvalidConfig)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// `update` was given a version that is no longer current (another writer got there first,
    /// or the record was deleted).
    #[error("conflict on {lock}: the record changed since version {expected} was read")]
    Conflict {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
        /// The version the caller expected.
        expected: String,
    },
    /// `create` found a record already there.
    #[error("{lock} already holds a record; read it and update it instead of creating it")]
    AlreadyExists {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
    },
    /// The record does not exist where it was required.
    #[error("{lock} holds no record")]
    NotFound {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
    },
    /// The backend could not be reached or did not answer in time; retrying may succeed.
    #[error("{lock} is unavailable: {reason}")]
    Unavailable {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
        /// What failed (a network error, a timeout, a server error).
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The stored value is not an election record. It is left as it is: fix or delete it by hand.
    #[error("{lock} holds a value that is not a leader election record ({reason}); it was left untouched: inspect it, then fix or delete it")]
    Corrupt {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
        /// Why the value could not be read as a record.
        reason: String,
    },
    /// The backend refused the credentials or the permissions are missing.
    #[error("{lock}: permission denied: {reason}")]
    Forbidden {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
        /// What is missing (the message names the verb, the resource and the scope where the
        /// backend tells them).
        reason: String,
    },
    /// The write may have landed but is not confirmed durable as the lock was asked to make
    /// it (Redis: fewer replicas acknowledged it than required within the bound, or no answer
    /// came at all). It may survive or be lost in a failover, so the elector treats it as a
    /// write it must not rely on: a renew that is not confirmed does not extend the term, and
    /// a takeover that is not confirmed starts no term even when a read shows it landed (the
    /// candidate waits for the lease of the record it wrote, as it would for anyone's, and
    /// then takes over with a higher token). Retryable.
    #[error("{lock}: the write is not confirmed durable: {reason}")]
    NotReplicated {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
        /// How far the confirmation got (replicas acknowledged against required, say).
        reason: String,
    },
    /// The lock cannot work as it is set up, and retrying will not change that by itself: the
    /// namespace or the directory it lives in does not exist, say. Fix the setup; the message
    /// says what is missing.
    #[error("{lock}: {reason}")]
    Misconfigured {
        /// The lock, as [`Lock::describe`](crate::Lock::describe) names it.
        lock: String,
        /// What is missing or wrong, and what to change.
        reason: String,
    },
    /// The lock or the election was configured wrongly.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl LockError {
    /// True for faults that may pass by themselves ([`Unavailable`](Self::Unavailable) and
    /// [`NotReplicated`](Self::NotReplicated)).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::NotReplicated { .. })
    }

    /// True for faults that will not pass by themselves: refused credentials or permissions
    /// ([`Forbidden`](Self::Forbidden)), a setup that cannot work
    /// ([`Misconfigured`](Self::Misconfigured)) and [`InvalidConfig`](Self::InvalidConfig).
    /// An elector still retries them (an operator may fix the setup while it runs), but a
    /// program may give up on them after a while, where it keeps retrying
    /// [retryable](Self::is_retryable) ones.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Forbidden { .. } | Self::Misconfigured { .. } | Self::InvalidConfig(_)
        )
    }

    /// Builds an [`Unavailable`](Self::Unavailable) error from an underlying error.
    pub fn unavailable(
        lock: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            lock: lock.into(),
            reason: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// Builds an [`Unavailable`](Self::Unavailable) error from an underlying error, with a
    /// reason of the backend's (the error's text and what is likely wrong, say).
    pub fn unavailable_because(
        lock: impl Into<String>,
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            lock: lock.into(),
            reason: reason.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Builds an [`Unavailable`](Self::Unavailable) error for an answer the server cannot have
    /// sent (a reply of the wrong shape, a version that is no number): retried, like any
    /// passing fault, and logged by the elector.
    pub fn unexpected(lock: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Unavailable {
            lock: lock.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// Builds a [`Conflict`](Self::Conflict): the record is no longer at version `expected`.
    pub fn conflict(lock: impl Into<String>, expected: impl std::fmt::Display) -> Self {
        Self::Conflict {
            lock: lock.into(),
            expected: expected.to_string(),
        }
    }

    /// Builds an [`Unavailable`](Self::Unavailable) error for a call that took longer than
    /// `limit`.
    pub fn timed_out(lock: impl Into<String>, limit: Duration) -> Self {
        Self::Unavailable {
            lock: lock.into(),
            reason: format!("no answer within {limit:?}"),
            source: None,
        }
    }
}

/// Shorthand for results of lock operations.
pub type LockResult<T> = Result<T, LockError>;
