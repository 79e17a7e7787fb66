//! Change hints: a lock's watch, fed by its client's [hub](crate::hub) from the one pub/sub
//! connection the client shares among all its locks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use lock_core::backend::{Hint, HintStream};

use crate::hub::{Hub, Registration};
use crate::session::Session;
use lock_core::backend::Inbox;

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
pub(crate) fn watch(session: Arc<Session>, channel: String, describe: String) -> HintStream {
    Watch {
        session,
        channel,
        describe,
        inbox: Arc::default(),
        registration: None,
        finding_node: None,
        ended: false,
    }
    .boxed()
}

/// The stream [`watch`] returns.
struct Watch {
    session: Arc<Session>,
    /// The election's channel.
    channel: String,
    /// The lock, for logs.
    describe: String,
    inbox: Arc<Inbox>,
    /// Made on the first poll; dropping it tells the hub.
    registration: Option<Registration>,
    /// On a Redis Cluster: finding the hub of the node that serves the channel.
    finding_node: Option<BoxFuture<'static, Option<Arc<Hub>>>>,
    ended: bool,
}

impl Watch {
    /// Keeps the hub's registration, or ends the stream when there is none; false when ended.
    fn registered(&mut self, registration: Option<Registration>, what: &str) -> bool {
        match registration {
            Some(registration) => {
                tracing::debug!(lock = %self.describe, "{what}");
                self.registration = Some(registration);
                true
            }
            None => {
                self.ended = true;
                false
            }
        }
    }
}

impl Stream for Watch {
    type Item = Hint;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Hint>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.registration.is_none() && this.session.target.is_cluster() {
            let finding = this.finding_node.get_or_insert_with(|| {
                let (session, channel) = (this.session.clone(), this.channel.clone());
                async move { session.hub_for(&channel).await }.boxed()
            });
            let Poll::Ready(hub) = finding.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            this.finding_node = None;
            let registration = hub.and_then(|hub| hub.watch(&this.channel, this.inbox.clone()));
            if !this.registered(registration, "watching for change hints (sharded)") {
                return Poll::Ready(None);
            }
        }
        if this.registration.is_none() {
            let registration = this.session.hub.watch(&this.channel, this.inbox.clone());
            if !this.registered(registration, "watching for change hints") {
                return Poll::Ready(None);
            }
        }
        this.inbox.poll_next(cx)
    }
}
