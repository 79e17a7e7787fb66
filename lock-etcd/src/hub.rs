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
//!   and values that are not records. Each stream's hints wait in a bounded [`Inbox`], which
//!   coalesces when the stream is not read, so a stream nobody reads never grows memory.
//! - **A watch that cannot be served ends every stream** (their inboxes close): a refused or
//!   cancelled watch, a lost connection, a response the client cannot read (a value under the
//!   prefix above the message limit, even another election's). An open stream must be live,
//!   because the elector trusts it and stops polling; after the end each elector polls and
//!   watches again after its back-off, and the first of them starts a new watch from now.
//! - **No stream, no watch**: when the last stream goes, the task ends and the watch with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use lock_core::backend::{Hint, Inbox};
use tokio::sync::Notify;
use tokio::time::timeout;

use crate::connection::SharedClient;
use crate::errors::{ErrorContext, Fault};
use crate::session::Session;

/// etcd's event type for a put (`mvccpb.Event.EventType`).
pub(crate) const PUT: i32 = 0;

/// The watch shared by the locks of one client.
pub(crate) struct Hub {
    client: Arc<SharedClient>,
    /// The key prefix of the client's elections: the watched range.
    prefix: String,
    /// Names the endpoints and the prefix in the messages of the shared watch.
    errors: ErrorContext,
    request_timeout: std::time::Duration,
    state: Mutex<State>,
}

/// One registered stream: its hints wait in `inbox`; `session` is its lock's, which turns a
/// put into a hint (and vouches for the value).
struct Stream {
    id: u64,
    inbox: Arc<Inbox>,
    session: Arc<Session>,
}

#[derive(Default)]
struct State {
    /// The streams of each key.
    streams: HashMap<Vec<u8>, Vec<Stream>>,
    next_id: u64,
    /// The task that runs the watch, if one runs.
    task: Option<Task>,
}

struct Task {
    /// True once the watch is confirmed.
    established: bool,
    /// Wakes the task when the last stream went.
    idle: Arc<Notify>,
}

/// One stream's place at the hub; dropping it leaves.
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    key: Vec<u8>,
    id: u64,
    /// The hints of the key; closed when the watch ended.
    pub inbox: Arc<Inbox>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(&self.key, self.id);
    }
}

/// Why the task ended.
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
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a stream for the key of `session`, starting the shared watch if none runs.
    /// Must be called within a tokio runtime.
    pub fn join(self: &Arc<Self>, session: Arc<Session>) -> Subscription {
        let inbox = Arc::new(Inbox::default());
        let key = session.key.as_bytes().to_vec();
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        match &state.task {
            Some(task) if task.established => inbox.push(Hint::Changed),
            // Told when the watch is confirmed.
            Some(_) => {}
            None => {
                let idle = Arc::new(Notify::new());
                state.task = Some(Task {
                    established: false,
                    idle: idle.clone(),
                });
                tokio::spawn(Self::run(Ending::new(self.clone()), idle));
            }
        }
        state.streams.entry(key.clone()).or_default().push(Stream {
            id,
            inbox: inbox.clone(),
            session,
        });
        Subscription {
            hub: self.clone(),
            key,
            id,
            inbox,
        }
    }

    fn leave(&self, key: &[u8], id: u64) {
        let mut state = self.state();
        if let Some(streams) = state.streams.get_mut(key) {
            streams.retain(|stream| stream.id != id);
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

    /// Runs the watch until it fails or nobody watches; then ends every stream (also when
    /// the task panics, or is dropped with its runtime, even before it ran: see [`Ending`]).
    async fn run(ending: Ending, idle: Arc<Notify>) {
        let hub = ending.hub.clone();
        let end = hub.serve(&idle).await;
        let streams = ending.finish(&end);
        match end {
            End::Idle => {
                tracing::debug!(lock = %hub.errors.lock, "nobody watches: the shared watch ends")
            }
            End::Failed(reason) => tracing::warn!(
                lock = %hub.errors.lock,
                keys = streams,
                %reason,
                "the shared watch failed; every election of this client polls until its next attempt"
            ),
        }
    }

    async fn serve(&self, idle: &Notify) -> End {
        let mut stream = match self.establish().await {
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
                    Ok(Some(response)) => self.route(&response),
                    Ok(None) => return End::Failed("the server ended the watch".to_owned()),
                    Err(err) => return End::Failed(self.failure(&err)),
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

    /// Opens the watch on the prefix from now and waits for etcd to confirm it, within the
    /// connect and request timeouts; then tells every registered stream.
    async fn establish(&self) -> Result<WatchStream, String> {
        let connected = self
            .client
            .get(&self.errors)
            .await
            .map_err(|err| err.to_string())?;
        let options = WatchOptions::new().with_prefix().with_progress_notify();
        let mut client = connected.client;
        let prefix = self.prefix.clone();
        let limit = self.request_timeout;
        let opened = timeout(limit, async move {
            let mut stream = client.watch(prefix, Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        })
        .await;
        let (stream, first) = match opened {
            Ok(Ok((stream, Some(first)))) => (stream, first),
            Ok(Ok((_, None))) => return Err("the server ended the watch at once".to_owned()),
            Ok(Err(err)) => return Err(self.errors.map(err).to_string()),
            Err(_) => {
                self.client.reset(connected.generation).await;
                return Err(format!("no answer to the watch request within {limit:?}"));
            }
        };
        if first.canceled() {
            return Err(format!(
                "the server cancelled the watch: {}",
                cancel_reason(&first)
            ));
        }
        let mut state = self.state();
        if let Some(task) = &mut state.task {
            task.established = true;
        }
        for stream in state.streams.values().flatten() {
            stream.inbox.push(Hint::Changed);
        }
        drop(state);
        if !first.created() {
            // Not the confirmation but already an answer: route its events.
            self.route(&first);
        }
        Ok(stream)
    }

    /// Hands each event of `response` to the streams of its key.
    fn route(&self, response: &WatchResponse) {
        let state = self.state();
        for event in &response.0.events {
            let Some(kv) = &event.kv else { continue };
            let Some(streams) = state.streams.get(kv.key.as_slice()) else {
                continue;
            };
            for stream in streams {
                let hint = if event.r#type == PUT {
                    crate::hints::put_hint(&stream.session, &kv.value, kv.mod_revision)
                } else {
                    Hint::Changed
                };
                stream.inbox.push(hint);
            }
        }
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

/// Ends every stream when the task ends, however it ends: by returning, by a panic, or by
/// being dropped with its runtime (made before the task is spawned, so that a task dropped
/// before its first poll ends them too). A stream whose inbox stayed open with no task behind it
/// would be trusted by its elector, which would stop polling for good.
struct Ending {
    hub: Arc<Hub>,
    /// True once the streams were ended.
    done: bool,
}

impl Ending {
    fn new(hub: Arc<Hub>) -> Self {
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
        for stream in streams.values().flatten() {
            stream.inbox.close();
        }
        streams.len()
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        // Not again after `finish`: a new task may have started meanwhile.
        if !self.done {
            self.end_streams();
        }
    }
}

/// The reason etcd gave for cancelling a watch.
pub(crate) fn cancel_reason(response: &WatchResponse) -> String {
    match response.cancel_reason() {
        "" => "no reason given".to_owned(),
        reason => reason.to_owned(),
    }
}
