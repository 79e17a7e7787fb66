//! The hub: one pub/sub connection per [`RedisClient`](crate::RedisClient), shared by every
//! watch of every lock made from it, run by one tokio task.
//!
//! A watch registers its channel and an [`Inbox`]; the hub subscribes each channel once (when
//! its first watcher comes), hands every message to that channel's watchers, and unsubscribes
//! when the last watcher of a channel is gone. While nothing is watched there is no pub/sub
//! connection at all. Each confirmation gives the channel's watchers
//! [`Hint::Changed`](lock_core::backend::Hint::Changed), since writes may have been missed before.
//!
//! **A watch that cannot be served ends** (its inbox is closed) rather than staying open while
//! nothing can arrive, because the elector counts an open hint stream as live and waits on it:
//! - a refused `SUBSCRIBE` (an ACL without the channel) ends that channel's watches;
//! - a lost connection, a `PING` or (un)subscription unanswered within the response timeout,
//!   or a connection that cannot be made ends every watch;
//! - after such a failure the hub waits [`reconnect_backoff`] before it connects again, and a
//!   watch made meanwhile ends at once.
//!
//! The elector then polls and calls `watch` again after a back-off of its own; that watch
//! connects again (one connection for all the client's watches, as before). A connection that
//! dies without closing is noticed by one `PING` every [`KEEPALIVE`] (per client, not per
//! election) that must be answered within the response timeout.
//!
//! The task is started by the first watch and ends when the client, all its locks and all their
//! watches are dropped (they hold the senders of its command channel).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use lock_core::backend::reconnect_backoff;
use redis::RedisResult;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::{sleep_until, timeout, Instant};

use crate::connection::Target;
use crate::errors::ErrorContext;
use crate::link::{Incoming, Messages, Sink};
use crate::subscriptions::{Request, Subscriptions, WatchId};
use lock_core::backend::Inbox;

/// How often the pub/sub connection is checked with a `PING`, to notice a connection that died
/// without closing. One per client: an idle process sends one request a minute for all its
/// elections.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(60);

/// What the hub's task needs from its client. It holds nothing of the client itself, so that
/// the client can be dropped while the task runs.
#[derive(Clone, Debug)]
pub(crate) struct HubSettings {
    /// Where the pub/sub connections go.
    pub target: Arc<Target>,
    /// Sharded pub/sub (`SSUBSCRIBE` over RESP3) on the node the target names, instead of
    /// `SUBSCRIBE`.
    pub sharded: bool,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long an answer to `SUBSCRIBE`, `UNSUBSCRIBE` or `PING` may take.
    pub response_timeout: Duration,
    /// How often the connection is checked: [`KEEPALIVE`] (shorter in tests).
    pub keepalive: Duration,
    /// The server's human name, for logs.
    pub server: String,
    /// Maps connection errors for logs.
    pub errors: ErrorContext,
}

/// The client's handle on its hub: starts the task on the first watch and registers watches.
#[derive(Debug)]
pub(crate) struct Hub {
    settings: Arc<HubSettings>,
    next_id: AtomicU64,
    commands: Mutex<Option<UnboundedSender<Command>>>,
}

/// What a watch asks of the hub.
#[derive(Debug)]
enum Command {
    Watch {
        id: WatchId,
        channel: Arc<str>,
        inbox: Arc<Inbox>,
    },
    Unwatch {
        id: WatchId,
        channel: Arc<str>,
    },
}

/// A watch's registration with the hub; dropping it unregisters the watch.
#[derive(Debug)]
pub(crate) struct Registration {
    id: WatchId,
    channel: Arc<str>,
    commands: UnboundedSender<Command>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Fails only when the task is gone (its runtime shut down): nothing to unregister.
        let _ = self.commands.send(Command::Unwatch {
            id: self.id,
            channel: self.channel.clone(),
        });
    }
}

impl Hub {
    /// A hub whose task is not started yet.
    pub fn new(settings: HubSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            next_id: AtomicU64::new(0),
            commands: Mutex::new(None),
        }
    }

    /// Registers a watcher of `channel` whose hints go to `inbox`, starting the task on the
    /// current tokio runtime if it does not run. `None` outside a tokio runtime.
    pub fn watch(&self, channel: &str, inbox: Arc<Inbox>) -> Option<Registration> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let channel: Arc<str> = Arc::from(channel);
        let mut command = Command::Watch {
            id,
            channel: channel.clone(),
            inbox,
        };
        let mut slot = self
            .commands
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(commands) = slot.as_ref() {
            match commands.send(command) {
                Ok(()) => {
                    return Some(Registration {
                        id,
                        channel,
                        commands: commands.clone(),
                    })
                }
                // The task is gone with the runtime it ran on: start one on this runtime.
                Err(returned) => command = returned.0,
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(server = %self.settings.server, "change hints need a tokio runtime; the watch ends at once");
            return None;
        };
        let (commands, receiver) = unbounded_channel();
        runtime.spawn(run(self.settings.clone(), receiver));
        commands.send(command).ok()?;
        *slot = Some(commands.clone());
        Some(Registration {
            id,
            channel,
            commands,
        })
    }
}

/// The pub/sub connection, as far as the hub has it.
enum Link {
    /// None, and none being made.
    Idle,
    /// Being made (after a back-off when the last attempt failed).
    Connecting(BoxFuture<'static, Result<(Sink, Messages), String>>),
    /// Made; `ping_due` is when the next keep-alive is sent (`None` while one is on its way).
    Up {
        sink: Sink,
        messages: Messages,
        ping_due: Option<Instant>,
    },
}

/// Something the task sent and what came of it, for the connection `generation`.
struct Done {
    generation: u64,
    what: Sent,
    outcome: Outcome,
}

enum Sent {
    Request(Request),
    /// Sharded links: the time a (un)subscription's push confirmation may take; when it is
    /// over and the request is still pending, the link is given up.
    AwaitPush(Request),
    /// The `PING` that checks that a `SUBSCRIBE` of this channel took effect.
    Verify(Arc<str>),
    Ping,
}

enum Outcome {
    Answered,
    /// The server answered with an error; the connection is fine.
    Refused(String),
    /// No answer, or the connection broke: connect again.
    Lost(String),
}

/// What woke the task.
enum Event {
    Command(Option<Command>),
    Connected(Result<(Sink, Messages), String>),
    Message(Option<Incoming>),
    PingDue,
    Done(Done),
}

/// The task's state.
struct Task {
    settings: Arc<HubSettings>,
    book: Subscriptions,
    link: Link,
    /// Failed or lost connections in a row.
    failures: u32,
    /// Until when the hub waits after a failed or lost connection before it connects again:
    /// watches made meanwhile end at once.
    quiet_until: Option<Instant>,
    /// Counts connections, so that answers from a lost one are ignored.
    generation: u64,
    in_flight: FuturesUnordered<BoxFuture<'static, Done>>,
}

/// The hub's task: runs until every sender of `commands` is dropped.
async fn run(settings: Arc<HubSettings>, mut commands: UnboundedReceiver<Command>) {
    tracing::debug!(server = %settings.server, "change hint hub started");
    let mut task = Task {
        settings,
        book: Subscriptions::default(),
        link: Link::Idle,
        failures: 0,
        quiet_until: None,
        generation: 0,
        in_flight: FuturesUnordered::new(),
    };
    loop {
        task.connect_or_close();
        let Task {
            link, in_flight, ..
        } = &mut task;
        let link = async {
            match link {
                Link::Idle => std::future::pending().await,
                Link::Connecting(connecting) => Event::Connected(connecting.await),
                Link::Up {
                    messages, ping_due, ..
                } => {
                    let ping = async {
                        match ping_due {
                            Some(at) => sleep_until(*at).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        message = messages.next() => Event::Message(message),
                        () = ping => Event::PingDue,
                    }
                }
            }
        };
        let in_flight = async {
            match in_flight.next().await {
                Some(done) => Event::Done(done),
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            command = commands.recv() => Event::Command(command),
            event = link => event,
            event = in_flight => event,
        };
        match event {
            Event::Command(None) => break,
            Event::Command(Some(command)) => task.command(command),
            Event::Connected(result) => task.connected(result),
            Event::Message(Some(Incoming::Message(message))) => {
                task.book.deliver(message.get_channel_name(), || {
                    crate::announcement::hint(&message)
                });
            }
            Event::Message(Some(Incoming::Subscribed(channel))) => task.push_subscribed(&channel),
            Event::Message(Some(Incoming::Unsubscribed(channel))) => {
                task.push_unsubscribed(&channel)
            }
            Event::Message(None) => task.lost("the connection closed".into()),
            Event::PingDue => task.ping(),
            Event::Done(done) => task.done(done),
        }
    }
    tracing::debug!(server = %task.settings.server, "change hint hub stopped: no client, lock or watch is left");
}

impl Task {
    /// Connects when something is watched and there is no connection; closes the connection
    /// when nothing is watched any more (which unsubscribes everything at once).
    fn connect_or_close(&mut self) {
        let unwatched = self.book.is_unwatched();
        match (&self.link, unwatched) {
            (Link::Idle, false) => {
                self.link = Link::Connecting(connect(self.settings.clone()));
            }
            (Link::Connecting(_) | Link::Up { .. }, true) => {
                tracing::debug!(server = %self.settings.server, "no watch left; closing the change hint connection");
                self.drop_link();
                self.failures = 0;
            }
            _ => {}
        }
    }

    fn command(&mut self, command: Command) {
        let request = match command {
            Command::Watch { inbox, .. } if self.is_quiet() => {
                tracing::debug!(server = %self.settings.server, "change hints are unavailable for a moment after a failure; the watch ends at once");
                inbox.close();
                None
            }
            Command::Watch { id, channel, inbox } => self.book.watch(id, &channel, inbox),
            Command::Unwatch { id, channel } => self.book.unwatch(id, &channel),
        };
        self.send(request);
    }

    fn connected(&mut self, result: Result<(Sink, Messages), String>) {
        match result {
            Ok((sink, messages)) => {
                self.link = Link::Up {
                    sink,
                    messages,
                    ping_due: Some(Instant::now() + self.settings.keepalive),
                };
                let requests = self.book.connected();
                tracing::debug!(server = %self.settings.server, channels = requests.len(), "change hint connection made; subscribing");
                for request in requests {
                    self.send(Some(request));
                }
            }
            Err(reason) => {
                let channels = self.book.watched_channels();
                self.drop_link();
                let failures = self.fail();
                if failures == 1 {
                    tracing::warn!(server = %self.settings.server, %reason, channels, "cannot connect for change hints; the watches end and their electors poll");
                } else {
                    tracing::debug!(server = %self.settings.server, %reason, channels, failures, "cannot connect for change hints; the watches end and their electors poll");
                }
            }
        }
    }

    /// The connection broke or stopped answering: every watch ends; a later watch connects
    /// again, after a back-off (the first one after a connection that answered, a longer one
    /// after a connection that never did).
    fn lost(&mut self, reason: String) {
        tracing::info!(server = %self.settings.server, %reason, channels = self.book.watched_channels(), "change hint connection lost; the watches end and their electors poll");
        self.drop_link();
        self.fail();
    }

    /// Counts a failure and starts the back-off; returns the failures in a row.
    fn fail(&mut self) -> u32 {
        self.failures = self.failures.saturating_add(1);
        self.quiet_until = Some(Instant::now() + reconnect_backoff(self.failures));
        self.failures
    }

    /// True during the back-off after a failure.
    fn is_quiet(&self) -> bool {
        self.quiet_until.is_some_and(|until| Instant::now() < until)
    }

    /// Forgets the connection (closing it) and everything sent on it, and ends every watch.
    fn drop_link(&mut self) {
        self.link = Link::Idle;
        self.generation = self.generation.wrapping_add(1);
        self.book.disconnected();
    }

    /// Sharded links: the server confirmed a subscription (pushes come in the server's order,
    /// unlike command replies, which redis-rs may pair with the wrong request).
    fn push_subscribed(&mut self, channel: &str) {
        if self.book.is_subscribing(channel) {
            let next = self.book.subscribed(channel);
            self.send(next);
        }
    }

    /// Sharded links: the server ended a subscription. Ours (the channel is being
    /// unsubscribed) completes; one the server made on its own (the slot moved to another
    /// node) leaves the watches deaf: they end, and the next ones find the slot's node.
    fn push_unsubscribed(&mut self, channel: &str) {
        if self.book.is_unsubscribing(channel) {
            let next = self.book.unsubscribed(channel);
            self.send(next);
            return;
        }
        let ended = self.book.dropped_by_server(channel);
        if ended > 0 {
            tracing::info!(server = %self.settings.server, %channel, watches = ended, "the server ended a sharded subscription (its slot moved?); the watches end and their electors poll");
        }
    }

    /// Sharded links: gives the push that confirms `request` the response timeout to come.
    fn await_push(&mut self, request: Request) {
        let limit = self.settings.response_timeout;
        self.track(Sent::AwaitPush(request), "a confirmation", async move {
            tokio::time::sleep(limit).await;
            Ok(())
        });
    }

    fn ping(&mut self) {
        let Link::Up { sink, ping_due, .. } = &mut self.link else {
            return;
        };
        *ping_due = None;
        let mut sink = sink.clone();
        self.track(
            Sent::Ping,
            "PING",
            async move { sink.ping().await.map(drop) },
        );
    }

    /// Checks that the `SUBSCRIBE` of `channel` the server just answered took effect.
    ///
    /// The client library reports a refused `SUBSCRIBE` (`NOPERM` from an ACL without the
    /// channel or without `+subscribe`) as a success: it hands the error reply to the command
    /// and drops it. So the hub asks `PING` right after it, on the same connection, in order:
    /// a connection with at least one subscription answers `["pong", ""]` (subscribed mode),
    /// one without answers `PONG`. A plain `PONG` means the subscription was refused, and the
    /// channel's watches end. When other channels of the client are subscribed on the
    /// connection this cannot tell, and a refused channel's watch stays open without hints;
    /// an ACL grants or refuses the channels of one key prefix alike, and the elector's
    /// confirming read (once a minute) bounds the wait in any case.
    fn verify(&mut self, channel: Arc<str>) {
        let Link::Up { sink, .. } = &self.link else {
            return;
        };
        if !sink.needs_verify() {
            let next = self.book.subscribed(&channel);
            self.send(next);
            return;
        }
        let mut sink = sink.clone();
        self.track(Sent::Verify(channel), "PING", async move {
            match sink.ping().await? {
                redis::Value::Array(_) | redis::Value::Push { .. } => Ok(()),
                other => Err(redis::RedisError::from((
                    redis::ErrorKind::ResponseError,
                    "SUBSCRIBE refused: the connection is not subscribed after it",
                    format!(
                        "PING answered {other:?}; the user needs +subscribe and the channel in its ACL channel patterns"
                    ),
                ))),
            }
        });
    }

    /// Sends `request` if there is one and the connection is up (otherwise the next
    /// connection sends what is needed then).
    fn send(&mut self, request: Option<Request>) {
        let Some(request) = request else { return };
        let Link::Up { sink, .. } = &self.link else {
            return;
        };
        let mut sink = sink.clone();
        match request.clone() {
            Request::Subscribe(channel) => {
                self.track(Sent::Request(request), "SUBSCRIBE", async move {
                    sink.subscribe(&channel).await
                })
            }
            Request::Unsubscribe(channel) => {
                self.track(Sent::Request(request), "UNSUBSCRIBE", async move {
                    sink.unsubscribe(&channel).await
                })
            }
        }
    }

    /// Waits for the answer to `call` (named `command` in messages) within the response
    /// timeout, as part of the current connection.
    fn track(
        &mut self,
        what: Sent,
        command: &'static str,
        call: impl std::future::Future<Output = RedisResult<()>> + Send + 'static,
    ) {
        let generation = self.generation;
        let limit = self.settings.response_timeout;
        let errors = self.settings.errors.clone();
        self.in_flight.push(
            async move {
                let outcome = match timeout(limit, call).await {
                    Ok(Ok(())) => Outcome::Answered,
                    Ok(Err(err)) if err.is_unrecoverable_error() => {
                        Outcome::Lost(errors.map(err).to_string())
                    }
                    Ok(Err(err)) => Outcome::Refused(errors.map(err).to_string()),
                    Err(_) => Outcome::Lost(format!("no answer to {command} within {limit:?}")),
                };
                Done {
                    generation,
                    what,
                    outcome,
                }
            }
            .boxed(),
        );
    }

    /// True when the link is sharded: its (un)subscriptions are confirmed by pushes.
    fn sharded_link(&self) -> bool {
        matches!(&self.link, Link::Up { sink, .. } if !sink.needs_verify())
    }

    fn done(&mut self, done: Done) {
        if done.generation != self.generation {
            return; // From a connection that is gone.
        }
        if let Sent::AwaitPush(request) = &done.what {
            let pending = match request {
                Request::Subscribe(channel) => self.book.is_subscribing(channel),
                Request::Unsubscribe(channel) => self.book.is_unsubscribing(channel),
            };
            if pending {
                self.lost(format!(
                    "no push confirmed {request:?} within {:?}",
                    self.settings.response_timeout
                ));
            }
            return;
        }
        if self.sharded_link() {
            if let Sent::Request(request) = &done.what {
                // The reply proves nothing (redis-rs may hand a push meant for another channel
                // to this request): the push decides, or the wait for it runs out. A refusal
                // still ends the channel's watches, which at worst makes them watch again.
                let request = request.clone();
                match done.outcome {
                    Outcome::Lost(reason) => return self.lost(reason),
                    Outcome::Refused(reason) => {
                        if let Request::Subscribe(channel) = &request {
                            let ended = self.book.refused(channel);
                            tracing::warn!(server = %self.settings.server, %channel, %reason, watches = ended, "SSUBSCRIBE refused: its watches end and their electors poll");
                            return;
                        }
                    }
                    Outcome::Answered => {}
                }
                self.failures = 0;
                return self.await_push(request);
            }
        }
        let outcome = match done.outcome {
            Outcome::Lost(reason) => return self.lost(reason),
            outcome => outcome,
        };
        // The server answered: the next loss starts the back-off from the beginning.
        self.failures = 0;
        match (done.what, outcome) {
            (Sent::Request(Request::Subscribe(channel)), Outcome::Refused(reason)) => {
                let ended = self.book.refused(&channel);
                tracing::warn!(server = %self.settings.server, %channel, %reason, watches = ended, "SUBSCRIBE refused: no change hints for this election; its watches end and their electors poll");
            }
            (Sent::Request(Request::Subscribe(channel)), _) => self.verify(channel),
            (Sent::Verify(channel), Outcome::Refused(reason)) => {
                let ended = self.book.refused(&channel);
                tracing::warn!(server = %self.settings.server, %channel, %reason, watches = ended, "SUBSCRIBE refused: no change hints for this election; its watches end and their electors poll");
            }
            (Sent::Verify(channel), _) => {
                let next = self.book.subscribed(&channel);
                self.send(next);
            }
            (Sent::Request(Request::Unsubscribe(channel)), outcome) => {
                if let Outcome::Refused(reason) = outcome {
                    // Harmless: its messages find no watcher, and the connection closes when
                    // nothing is watched.
                    tracing::debug!(server = %self.settings.server, %channel, %reason, "UNSUBSCRIBE refused");
                }
                let next = self.book.unsubscribed(&channel);
                self.send(next);
            }
            (Sent::AwaitPush(_), _) => {}
            // Any answer, also an error, shows the connection is alive.
            (Sent::Ping, _) => {
                if let Link::Up { ping_due, .. } = &mut self.link {
                    *ping_due = Some(Instant::now() + self.settings.keepalive);
                }
            }
        }
    }
}

/// Makes a pub/sub connection within the connect timeout: classic, or sharded over RESP3.
fn connect(settings: Arc<HubSettings>) -> BoxFuture<'static, Result<(Sink, Messages), String>> {
    async move {
        let mut limit = settings.connect_timeout;
        if settings.target.follows_failovers() {
            // Asking a sentinel comes first.
            limit += settings.connect_timeout + settings.response_timeout;
        }
        let connect = async {
            let client = settings.target.client().await?;
            if settings.sharded {
                let (pushes, received) = unbounded_channel();
                // No response timeout of redis-rs's own: an unanswered keep-alive must time
                // out on the hub's clock, which counts it as a lost connection (redis-rs's
                // timeout error would pass for a refusal, and refusals leave the link up).
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(settings.connect_timeout)
                    .set_push_sender(pushes);
                let connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                return Ok((Sink::Sharded(connection), Messages::Sharded(received)));
            }
            let (sink, stream) = client.get_async_pubsub().await?.split();
            Ok((Sink::Classic(sink), Messages::Classic(stream)))
        };
        match timeout(limit, connect).await {
            Ok(Ok(link)) => Ok(link),
            Ok(Err(err)) => Err(settings.errors.map(err).to_string()),
            Err(_) => Err(format!(
                "no connection within {limit:?}{}",
                settings.errors.tls_hint()
            )),
        }
    }
    .boxed()
}

#[cfg(test)]
mod tests;
