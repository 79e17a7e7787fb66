//! The hub: one watch per [`ObjectLocks`](crate::ObjectLocks), on every object of its kind in
//! its namespace, shared by the hint streams of all the locks made from it, run by one tokio
//! task. Ten thousand Lease elections in one process are one watch on the API server, not ten
//! thousand.
//!
//! - A hint stream registers the object's name; the task hands each event to the streams of its
//!   object's name and drops the events of objects nobody here elects on. The streams, their
//!   bounded inboxes and the task's life are a [`Fanout`]'s (lock-core), as for every hub.
//! - **Hints as the watch of one object gives them**: [`Hint::Record`] for every version
//!   delivered (the listed ones too), [`Hint::Changed`] when the watcher's list is complete (at
//!   the start, and after every relist: changes may have been missed) or at once for a stream
//!   that registers after that, for a deletion, and for an object that holds no record.
//! - **A watch that fails ends every stream** (their inboxes close): the watcher's first
//!   error, a refused list or watch, a lost connection. The elector trusts an open stream and
//!   stops polling while it lasts; after the end each elector polls and watches again after
//!   its back-off, and the first of them starts a new watch. A watch the API server closes in
//!   the normal course (its timeout) is resumed by the watcher without a gap.
//! - **No stream, no watch**: when the last stream goes, the task ends and the watch with it.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use lock_core::backend::{Fanout, Hint, Member, WatchTask};

use crate::LockObject;

/// A stream's place at the hub; dropping it leaves.
pub(crate) type Subscription = Member<String, ()>;

/// The watch shared by the locks of one [`ObjectLocks`](crate::ObjectLocks).
pub(crate) struct Hub<K: LockObject> {
    api: Api<K>,
    /// The kind and namespace, for messages.
    describe: String,
    /// The streams, by object name.
    streams: Arc<Fanout<String, ()>>,
}

/// Why the watch ended.
enum End {
    /// Nobody watches any more.
    Idle,
    /// The watch failed: every stream ends.
    Failed(String),
}

impl<K: LockObject> Hub<K> {
    pub fn new(api: Api<K>, describe: String) -> Self {
        Self {
            api,
            describe,
            streams: Arc::default(),
        }
    }

    /// Registers a stream for the object `name`, starting the shared watch if none runs. Must
    /// be called within a tokio runtime.
    pub fn join(self: &Arc<Self>, name: &str) -> Subscription {
        let (member, task) = self.streams.join(name.to_owned(), ());
        if let Some(task) = task {
            tokio::spawn(self.clone().run(task));
        }
        member
    }

    /// Runs the watch until it fails or nobody watches.
    async fn run(self: Arc<Self>, task: WatchTask<String, ()>) {
        match self.serve(&task).await {
            End::Idle => {
                task.finish_idle();
                tracing::debug!(locks = %self.describe, "nobody watches: the shared watch ends");
            }
            End::Failed(reason) => {
                let objects = task.fail();
                tracing::warn!(
                    locks = %self.describe,
                    objects,
                    %reason,
                    "the shared watch failed; every election of these locks polls until its next attempt"
                );
            }
        }
    }

    async fn serve(&self, task: &WatchTask<String, ()>) -> End {
        let mut events = watcher::watcher(self.api.clone(), watcher::Config::default()).boxed();
        tracing::debug!(locks = %self.describe, "watching for change hints");
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Init)) => {}
                    Some(Ok(Event::InitApply(object) | Event::Apply(object))) => {
                        let hint = crate::object::hint_of(&object);
                        task.route(&object.name_any(), |()| hint.clone());
                    }
                    Some(Ok(Event::Delete(object))) => task.route(&object.name_any(), |()| Hint::Changed),
                    // The list is complete (at the start and after every relist): read once.
                    Some(Ok(Event::InitDone)) => task.live(),
                    Some(Err(err)) => return End::Failed(err.to_string()),
                    None => return End::Failed("the watcher ended".to_owned()),
                },
                () = task.until_idle() => return End::Idle,
            }
        }
    }
}
