//! [`Fanout`]: the hint streams of many elections that share one server-side watch, and the
//! bookkeeping of the task that runs it. A backend's hub keeps the watch itself (how to open
//! it, what its events say); this module keeps what every hub needs around it.
//!
//! - A stream [`join`](Fanout::join)s under its election's key with data of the backend's
//!   own (what turns an event into its hint); the first join while no task runs also gets the
//!   [`WatchTask`] to spawn. Dropping the [`Member`] leaves.
//! - **Live means "read once"**: [`WatchTask::live`] gives every stream
//!   [`Hint::Changed`] (changes before may have been missed); a stream that joins a live watch
//!   gets it at once.
//! - **No open stream without a task behind it**: when the task fails, or panics, or is
//!   dropped with its runtime (even before its first poll), every stream's inbox closes, so
//!   each elector polls and watches again instead of trusting a stream nothing feeds.
//! - **No stream, no watch**: [`WatchTask::until_idle`] returns once the last stream left;
//!   that decision and the task's end are one step under the lock, so a stream that joins
//!   then starts a new task.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::inbox::Inbox;
use crate::lock::Hint;

/// The streams of many elections that share one watch; `K` names an election (its key or
/// object name), `T` is what the backend keeps per stream.
pub struct Fanout<K, T> {
    state: Mutex<State<K, T>>,
}

struct State<K, T> {
    streams: HashMap<K, Vec<Entry<T>>>,
    next_id: u64,
    /// The task that runs the watch, if one runs.
    task: Option<Task>,
}

struct Entry<T> {
    id: u64,
    inbox: Arc<Inbox>,
    data: T,
}

struct Task {
    /// True once the watch is live.
    live: bool,
    /// Wakes the task when the last stream left.
    idle: Arc<Notify>,
}

impl<K, T> Default for Fanout<K, T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                streams: HashMap::new(),
                next_id: 0,
                task: None,
            }),
        }
    }
}

impl<K: Eq + Hash + Clone, T> Fanout<K, T> {
    /// The state, also after a panic elsewhere while it was held (every change is one call).
    fn state(&self) -> MutexGuard<'_, State<K, T>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a stream for `key`: its place, and the task to spawn when no watch runs.
    pub fn join(self: &Arc<Self>, key: K, data: T) -> (Member<K, T>, Option<WatchTask<K, T>>) {
        let inbox = Arc::new(Inbox::default());
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        let task = match &state.task {
            Some(task) => {
                if task.live {
                    inbox.push(Hint::Changed);
                }
                None
            }
            None => {
                let idle = Arc::new(Notify::new());
                state.task = Some(Task {
                    live: false,
                    idle: idle.clone(),
                });
                Some(WatchTask {
                    fanout: self.clone(),
                    idle,
                    ended: false,
                })
            }
        };
        state.streams.entry(key.clone()).or_default().push(Entry {
            id,
            inbox: inbox.clone(),
            data,
        });
        let member = Member {
            fanout: self.clone(),
            key,
            id,
            inbox,
        };
        (member, task)
    }

    fn leave(&self, key: &K, id: u64) {
        let mut state = self.state();
        if let Some(streams) = state.streams.get_mut(key) {
            streams.retain(|entry| entry.id != id);
            if streams.is_empty() {
                state.streams.remove(key);
            }
        }
        if state.streams.is_empty() {
            if let Some(task) = &state.task {
                task.idle.notify_one();
            }
        }
    }
}

/// One stream's place in a [`Fanout`]; dropping it leaves.
pub struct Member<K: Eq + Hash + Clone, T> {
    fanout: Arc<Fanout<K, T>>,
    key: K,
    id: u64,
    inbox: Arc<Inbox>,
}

impl<K: Eq + Hash + Clone, T> Member<K, T> {
    /// The stream's hints; `None` once the watch ended.
    pub async fn next(&self) -> Option<Hint> {
        self.inbox.next().await
    }
}

impl<K: Eq + Hash + Clone, T> Drop for Member<K, T> {
    fn drop(&mut self) {
        self.fanout.leave(&self.key, self.id);
    }
}

/// The right and duty to run the shared watch, given by the [`Fanout::join`] that found none
/// running. Dropped without [`finish_idle`](Self::finish_idle) or [`fail`](Self::fail) (a
/// panic, a runtime that shuts down), it ends every stream.
pub struct WatchTask<K: Eq + Hash + Clone, T> {
    fanout: Arc<Fanout<K, T>>,
    idle: Arc<Notify>,
    ended: bool,
}

impl<K: Eq + Hash + Clone, T> WatchTask<K, T> {
    /// The watch is live: every stream reads once, and streams that join later are told so.
    pub fn live(&self) {
        let mut state = self.fanout.state();
        if let Some(task) = &mut state.task {
            task.live = true;
        }
        for entry in state.streams.values().flatten() {
            entry.inbox.push(Hint::Changed);
        }
    }

    /// Gives each stream of `key` the hint `hint` makes from its data (nothing is made when no
    /// stream has that key).
    pub fn route(&self, key: &K, mut hint: impl FnMut(&T) -> Hint) {
        let state = self.fanout.state();
        for entry in state.streams.get(key).into_iter().flatten() {
            entry.inbox.push(hint(&entry.data));
        }
    }

    /// Returns once no stream is left; the task is then over (a stream that joins from now
    /// starts another). Cancel-safe, for `select!`.
    pub async fn until_idle(&self) {
        loop {
            self.idle.notified().await;
            let mut state = self.fanout.state();
            if state.streams.is_empty() {
                state.task = None;
                return;
            }
        }
    }

    /// Ends the task after [`until_idle`](Self::until_idle) returned.
    pub fn finish_idle(mut self) {
        self.ended = true;
    }

    /// Ends the task after the watch failed: every stream ends (its elector polls and watches
    /// again). Returns how many keys had streams.
    pub fn fail(mut self) -> usize {
        self.ended = true;
        self.end_streams()
    }

    fn end_streams(&self) -> usize {
        let mut state = self.fanout.state();
        state.task = None;
        let streams = std::mem::take(&mut state.streams);
        drop(state);
        for entry in streams.values().flatten() {
            entry.inbox.close();
        }
        streams.len()
    }
}

impl<K: Eq + Hash + Clone, T> Drop for WatchTask<K, T> {
    fn drop(&mut self) {
        // Not after `fail` or `finish_idle`: a new task may have started since.
        if !self.ended {
            self.end_streams();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fanout() -> Arc<Fanout<&'static str, u32>> {
        Arc::new(Fanout::default())
    }

    #[test]
    fn the_first_join_gets_the_task_and_later_ones_share_it() {
        let fanout = fanout();
        let (_a, task) = fanout.join("a", 1);
        assert!(task.is_some());
        let (_b, again) = fanout.join("b", 2);
        assert!(again.is_none(), "one task for every stream");
        task.unwrap().finish_idle();
    }

    #[test]
    fn live_tells_every_stream_and_later_joins_at_once() {
        let fanout = fanout();
        let (a, task) = fanout.join("a", 1);
        let task = task.unwrap();
        assert!(a.inbox.is_empty(), "not live yet");
        task.live();
        assert_eq!(a.inbox.drain(), [Hint::Changed]);
        let (b, _) = fanout.join("b", 2);
        assert_eq!(b.inbox.drain(), [Hint::Changed]);
        task.finish_idle();
    }

    #[test]
    fn route_reaches_the_streams_of_the_key_only() {
        let fanout = fanout();
        let (a, task) = fanout.join("a", 1);
        let (b, _) = fanout.join("b", 2);
        let task = task.unwrap();
        let mut made = Vec::new();
        task.route(&"a", |data| {
            made.push(*data);
            Hint::Changed
        });
        task.route(&"nobody", |_| unreachable!("no stream, no hint"));
        assert_eq!(made, [1]);
        assert_eq!(a.inbox.drain(), [Hint::Changed]);
        assert!(b.inbox.is_empty());
        task.finish_idle();
    }

    #[tokio::test]
    async fn a_failed_or_dropped_task_ends_every_stream_and_the_next_join_starts_another() {
        let fanout = fanout();
        let (a, task) = fanout.join("a", 1);
        assert_eq!(task.unwrap().fail(), 1);
        assert_eq!(a.next().await, None, "ended");
        let (b, task) = fanout.join("b", 2);
        drop(task.expect("a new task"));
        assert_eq!(
            b.next().await,
            None,
            "a task dropped unfinished ends its streams"
        );
        assert!(fanout.join("c", 3).1.is_some());
    }

    #[tokio::test]
    async fn the_task_is_idle_once_the_last_stream_left() {
        let fanout = fanout();
        let (a, task) = fanout.join("a", 1);
        let task = task.unwrap();
        let (b, _) = fanout.join("a", 2);
        drop(a);
        drop(b);
        task.until_idle().await;
        task.finish_idle();
        assert!(
            fanout.join("a", 3).1.is_some(),
            "the next join starts a task"
        );
    }
}
