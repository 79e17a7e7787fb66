//! The hub: one etcd watch per [`EtcdClient`](crate::EtcdClient), on the key prefix of its
//! elections, shared by every hint stream of every lock made from it, run by one tokio task.
//! (A lock made by [`EtcdLock::new`](crate::EtcdLock::new), for one election, watches its key
//! alone instead: a process with one election among many under the prefix would otherwise
//! receive every other election's renews.)
//!
//! A thousand elections on one client would otherwise be a thousand watches on the server
//! (each with its own buffers and events to send). Here a hint stream registers its key and a
//! channel; the task watches the range once and hands each event to the streams of its key,
//! and events of keys nobody here elects on are dropped.
//!
//! - **Hints as the watch of one key gives them**: [`Hint::Changed`] when the watch is confirmed
//!   (changes may have been missed before), or at once for a stream that registers while it is
//!   established; [`Hint::Record`] for every put of a record; [`Hint::Changed`] for deletions
//!   and values that are not records. The streams, their bounded inboxes and the task's life
//!   are a [`Fanout`]'s (lock-core), as for every hub.
//! - **A watch that cannot be served ends every stream** (their inboxes close): a refused or
//!   cancelled watch, a lost connection, a response the client cannot read (a value under the
//!   prefix above the message limit, even another election's). An open stream must be live,
//!   because the elector trusts it and stops polling; after the end each elector polls and
//!   watches again after its back-off, and the first of them starts a new watch from now.
//! - **No stream, no watch**: when the last stream goes, the task ends and the watch with it.

use std::sync::Arc;

use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use lock_core::backend::{Fanout, Hint, Member, WatchTask};

use crate::connection::SharedClient;
use crate::errors::{ErrorContext, Fault};
use crate::session::Session;

/// etcd's event type for a put (`mvccpb.Event.EventType`).
pub(crate) const PUT: i32 = 0;

/// The streams of the client's elections, by key; each keeps its lock's session, which turns a
/// put into a hint (and vouches for the value).
type Streams = Fanout<Vec<u8>, Arc<Session>>;

/// A stream's place at the hub; dropping it leaves.
pub(crate) type Subscription = Member<Vec<u8>, Arc<Session>>;

/// The watch shared by the locks of one client.
pub(crate) struct Hub {
    client: Arc<SharedClient>,
    /// The key prefix of the client's elections: the watched range.
    prefix: String,
    /// Names the endpoints and the prefix in the messages of the shared watch.
    errors: ErrorContext,
    request_timeout: std::time::Duration,
    streams: Arc<Streams>,
}

/// Why the watch ended.
enum End {
    /// Nobody watches any more.
    Idle,
    /// The watch failed: every stream ends.
    Failed(String),
}

impl Hub {
    pub fn new(
        client: Arc<SharedClient>,
        prefix: String,
        errors: ErrorContext,
        request_timeout: std::time::Duration,
    ) -> Self {
        Self {
            client,
            prefix,
            errors,
            request_timeout,
            streams: Arc::default(),
        }
    }

    /// Registers a stream for the key of `session`, starting the shared watch if none runs.
    /// Must be called within a tokio runtime.
    pub fn join(self: &Arc<Self>, session: Arc<Session>) -> Subscription {
        let key = session.key.as_bytes().to_vec();
        let (member, task) = self.streams.join(key, session);
        if let Some(task) = task {
            tokio::spawn(self.clone().run(task));
        }
        member
    }

    /// Runs the watch until it fails or nobody watches.
    async fn run(self: Arc<Self>, task: WatchTask<Vec<u8>, Arc<Session>>) {
        match self.serve(&task).await {
            End::Idle => {
                task.finish_idle();
                tracing::debug!(lock = %self.errors.lock, "nobody watches: the shared watch ends");
            }
            End::Failed(reason) => {
                let keys = task.fail();
                tracing::warn!(
                    lock = %self.errors.lock,
                    keys,
                    %reason,
                    "the shared watch failed; every election of this client polls until its next attempt"
                );
            }
        }
    }

    async fn serve(&self, task: &WatchTask<Vec<u8>, Arc<Session>>) -> End {
        let mut stream = match self.establish(task).await {
            Ok(stream) => stream,
            Err(reason) => return End::Failed(reason),
        };
        tracing::debug!(lock = %self.errors.lock, prefix = %self.prefix, "watching for change hints");
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(response)) if response.canceled() => {
                        return End::Failed(format!("the server cancelled the watch: {}", cancel_reason(&response)));
                    }
                    Ok(Some(response)) => route(task, &response),
                    Ok(None) => return End::Failed("the server ended the watch".to_owned()),
                    Err(err) => return End::Failed(self.failure(&err)),
                },
                () = task.until_idle() => return End::Idle,
            }
        }
    }

    /// Opens the watch on the prefix from now and waits for etcd to confirm it, within the
    /// connect and request timeouts; then tells every registered stream.
    async fn establish(
        &self,
        task: &WatchTask<Vec<u8>, Arc<Session>>,
    ) -> Result<WatchStream, String> {
        let options = WatchOptions::new().with_prefix().with_progress_notify();
        let (stream, first) = self
            .client
            .open_watch(
                &self.errors,
                self.request_timeout,
                self.prefix.clone(),
                options,
            )
            .await?;
        if first.canceled() {
            return Err(format!(
                "the server cancelled the watch: {}",
                cancel_reason(&first)
            ));
        }
        task.live();
        if !first.created() {
            // Not the confirmation but already an answer: route its events.
            route(task, &first);
        }
        Ok(stream)
    }

    /// Words a failure of the open watch.
    fn failure(&self, err: &etcd_client::Error) -> String {
        let reason = crate::errors::describe(err);
        if crate::errors::classify(err) == Fault::TooLarge {
            format!(
                "a change of a key under the prefix {} is too large to be a leader election \
                 record, so the watch cannot read it (fix or delete the value by hand): {reason}",
                self.prefix
            )
        } else {
            reason
        }
    }
}

/// Hands each event of `response` to the streams of its key.
fn route(task: &WatchTask<Vec<u8>, Arc<Session>>, response: &WatchResponse) {
    for event in &response.0.events {
        let Some(kv) = &event.kv else { continue };
        task.route(&kv.key, |session| {
            if event.r#type == PUT {
                session.put_hint(&kv.value, kv.mod_revision)
            } else {
                Hint::Changed
            }
        });
    }
}

/// The reason etcd gave for cancelling a watch.
pub(crate) fn cancel_reason(response: &WatchResponse) -> String {
    match response.cancel_reason() {
        "" => "no reason given".to_owned(),
        reason => reason.to_owned(),
    }
}
