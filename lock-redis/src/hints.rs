//! Change hints: a lock's watch, fed by its client's [hub](crate::hub) from the one pub/sub
//! connection the client shares among all its locks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use lock_core::backend::{Hint, HintStream, Versioned};
use lock_core::LeaderElectionRecord;
use redis::Msg;
use serde::Deserialize;

use crate::hub::Registration;
use crate::inbox::Inbox;
use crate::lock::Inner;

/// What the script publishes on every write.
#[derive(Deserialize)]
struct Announcement {
    version: String,
    record: LeaderElectionRecord,
}

/// A stream of hints for the lock: [`Hint::Changed`] once its channel is subscribed (changes may
/// have been missed before; a watch made while the channel is subscribed gets it at once), then
/// [`Hint::Record`] for every announced write (or `Changed` for one it cannot read).
///
/// The stream **ends** when it can no longer be served, never pretending to be live: when the
/// server refuses `SUBSCRIBE` (an ACL without the channel), when the pub/sub connection is lost
/// or fails its keep-alive, when it cannot be made, and at once while the hub waits out its
/// back-off after such a failure (or when polled outside a tokio runtime). The elector then
/// polls and calls [`watch`](lock_core::Lock::watch) again later, which connects again.
///
/// Hints only wake the elector: a `DEL` of the key announces nothing, and anyone allowed to
/// `PUBLISH` on the channel can announce anything; the elector confirms by reads. It registers
/// with the hub on its first poll, and a watch that is not read keeps at most a few hints (see
/// [`Inbox`]).
pub(crate) fn watch(inner: Arc<Inner>) -> HintStream {
    Watch {
        lock: inner,
        inbox: Arc::default(),
        registration: None,
        ended: false,
    }
    .boxed()
}

/// The stream [`watch`] returns.
struct Watch {
    lock: Arc<Inner>,
    inbox: Arc<Inbox>,
    /// Made on the first poll; dropping it tells the hub.
    registration: Option<Registration>,
    ended: bool,
}

impl Stream for Watch {
    type Item = Hint;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Hint>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.registration.is_none() {
            let lock = &this.lock;
            match lock
                .client
                .hub
                .watch(&lock.names.channel, this.inbox.clone())
            {
                Some(registration) => {
                    tracing::debug!(lock = %lock.describe, "watching for change hints");
                    this.registration = Some(registration);
                }
                None => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
            }
        }
        this.inbox.poll_next(cx)
    }
}

/// The hint a published message gives: the record it carries, or just "changed" when it
/// cannot be read (hints are never trusted for more than waking the elector up).
pub(crate) fn hint(message: &Msg) -> Hint {
    let announcement = serde_json::from_slice::<Announcement>(message.get_payload_bytes())
        .map_err(|err| err.to_string())
        .and_then(|announcement| {
            let counter = crate::counter::parse(&announcement.version)?;
            Ok(Versioned {
                record: announcement.record,
                version: crate::counter::version(counter),
            })
        });
    match announcement {
        Ok(versioned) => Hint::Record(versioned),
        Err(err) => {
            tracing::debug!(channel = %message.get_channel_name(), error = %err, "unreadable change announcement");
            Hint::Changed
        }
    }
}
