//! The hub: one watch per [`ObjectLocks`](crate::ObjectLocks), on every object of its kind in
//! its namespace, shared by the hint streams of all the locks made from it, run by one tokio
//! task. Ten thousand Lease elections in one process are one watch on the API server, not ten
//! thousand.
//!
//! - A hint stream registers the object's name and a channel; the task hands each event to the
//!   streams of its object's name and drops the events of objects nobody here elects on.
//! - **Hints as the watch of one object gives them**: [`Hint::Record`] for every version
//!   delivered (the listed ones too), [`Hint::Changed`] when the watcher's list is complete (at
//!   the start, and after every relist: changes may have been missed) or at once for a stream
//!   that registers after that, for a deletion, and for an object that holds no record. Each
//!   stream's hints wait in a bounded [`Inbox`], which coalesces when the stream is not read.
//! - **A watch that fails ends every stream** (their inboxes close): the watcher's first
//!   error, a refused list or watch, a lost connection. The elector trusts an open stream and
//!   stops polling while it lasts; after the end each elector polls and watches again after
//!   its back-off, and the first of them starts a new watch. A watch the API server closes in
//!   the normal course (its timeout) is resumed by the watcher without a gap.
//! - **No stream, no watch**: when the last stream goes, the task ends and the watch with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use lock_core::backend::{Hint, Inbox};
use tokio::sync::Notify;

use crate::LockObject;

/// The watch shared by the locks of one [`ObjectLocks`](crate::ObjectLocks).
pub(crate) struct Hub<K: LockObject> {
    api: Api<K>,
    /// The kind and namespace, for messages.
    describe: String,
    state: Mutex<State>,
}

struct State {
    /// The streams of each object name, by id.
    streams: HashMap<String, Vec<(u64, Arc<Inbox>)>>,
    next_id: u64,
    /// The task that runs the watch, if one runs.
    task: Option<Task>,
}

struct Task {
    /// True once the watcher's first list is complete.
    listed: bool,
    /// Wakes the task when the last stream went.
    idle: Arc<Notify>,
}

/// One stream's place at the hub; dropping it leaves.
pub(crate) struct Subscription<K: LockObject> {
    hub: Arc<Hub<K>>,
    name: String,
    id: u64,
    /// The hints of the object; closed when the watch ended.
    pub inbox: Arc<Inbox>,
}

impl<K: LockObject> Drop for Subscription<K> {
    fn drop(&mut self) {
        self.hub.leave(&self.name, self.id);
    }
}

/// Why the task ended.
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
            state: Mutex::new(State {
                streams: HashMap::new(),
                next_id: 0,
                task: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a stream for the object `name`, starting the shared watch if none runs. Must
    /// be called within a tokio runtime.
    pub fn join(self: &Arc<Self>, name: &str) -> Subscription<K> {
        let inbox = Arc::new(Inbox::default());
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        match &state.task {
            Some(task) if task.listed => inbox.push(Hint::Changed),
            // Told when the list is complete.
            Some(_) => {}
            None => {
                let idle = Arc::new(Notify::new());
                state.task = Some(Task {
                    listed: false,
                    idle: idle.clone(),
                });
                tokio::spawn(Self::run(Ending::new(self.clone()), idle));
            }
        }
        state
            .streams
            .entry(name.to_owned())
            .or_default()
            .push((id, inbox.clone()));
        Subscription {
            hub: self.clone(),
            name: name.to_owned(),
            id,
            inbox,
        }
    }

    fn leave(&self, name: &str, id: u64) {
        let mut state = self.state();
        if let Some(streams) = state.streams.get_mut(name) {
            streams.retain(|(each, _)| *each != id);
            if streams.is_empty() {
                state.streams.remove(name);
            }
        }
        if state.streams.is_empty() {
            if let Some(task) = &state.task {
                task.idle.notify_one();
            }
        }
    }

    /// Runs the watch until it fails or nobody watches; then ends every stream (also when
    /// the task panics, or is dropped with its runtime, even before it ran: see [`Ending`]).
    async fn run(ending: Ending<K>, idle: Arc<Notify>) {
        let hub = ending.hub.clone();
        let end = hub.serve(&idle).await;
        let objects = ending.finish(&end);
        match end {
            End::Idle => {
                tracing::debug!(locks = %hub.describe, "nobody watches: the shared watch ends");
            }
            End::Failed(reason) => tracing::warn!(
                locks = %hub.describe,
                objects,
                %reason,
                "the shared watch failed; every election of these locks polls until its next attempt"
            ),
        }
    }

    async fn serve(&self, idle: &Notify) -> End {
        let mut events = watcher::watcher(self.api.clone(), watcher::Config::default()).boxed();
        tracing::debug!(locks = %self.describe, "watching for change hints");
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Init)) => {}
                    Some(Ok(Event::InitApply(object) | Event::Apply(object))) => {
                        self.route(&object.name_any(), || crate::hints::hint(&object));
                    }
                    Some(Ok(Event::Delete(object))) => self.route(&object.name_any(), || Hint::Changed),
                    Some(Ok(Event::InitDone)) => self.listed(),
                    Some(Err(err)) => return End::Failed(err.to_string()),
                    None => return End::Failed("the watcher ended".to_owned()),
                },
                () = idle.notified() => {
                    // Decided under the lock, so that a stream that joins now finds no task
                    // and starts one.
                    let mut state = self.state();
                    if state.streams.is_empty() {
                        state.task = None;
                        return End::Idle;
                    }
                }
            }
        }
    }

    /// The list is complete: every registered stream reads once.
    fn listed(&self) {
        let mut state = self.state();
        if let Some(task) = &mut state.task {
            task.listed = true;
        }
        for (_, inbox) in state.streams.values().flatten() {
            inbox.push(Hint::Changed);
        }
    }

    /// Hands the hint `make` gives to the streams of the object `name` (made only when some
    /// stream wants it).
    fn route(&self, name: &str, make: impl FnOnce() -> Hint) {
        let state = self.state();
        if let Some(streams) = state.streams.get(name) {
            let hint = make();
            for (_, inbox) in streams {
                inbox.push(hint.clone());
            }
        }
    }
}

/// Ends every stream when the task ends, however it ends: by returning, by a panic, or by
/// being dropped with its runtime (made before the task is spawned, so that a task dropped
/// before its first poll ends them too). A stream whose inbox stayed open with no task behind it
/// would be trusted by its elector, which would stop polling for good.
struct Ending<K: LockObject> {
    hub: Arc<Hub<K>>,
    /// True once the streams were ended.
    done: bool,
}

impl<K: LockObject> Ending<K> {
    fn new(hub: Arc<Hub<K>>) -> Self {
        Self { hub, done: false }
    }

    /// After a failure, ends every stream now (an idle end left none); how many there were.
    fn finish(mut self, end: &End) -> usize {
        self.done = true;
        match end {
            End::Failed(_) => self.end_streams(),
            End::Idle => 0,
        }
    }

    fn end_streams(&self) -> usize {
        let mut state = self.hub.state();
        state.task = None;
        let streams = std::mem::take(&mut state.streams);
        drop(state);
        for (_, inbox) in streams.values().flatten() {
            inbox.close();
        }
        streams.len()
    }
}

impl<K: LockObject> Drop for Ending<K> {
    fn drop(&mut self) {
        // Not again after `finish`: a new task may have started meanwhile.
        if !self.done {
            self.end_streams();
        }
    }
}
