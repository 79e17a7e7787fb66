//! Change hints: a pub/sub connection of the watch's own, subscribed to the lock's channel.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lock_core::{Hint, HintStream, LeaderElectionRecord, Versioned};
use redis::aio::{PubSubSink, PubSubStream};
use redis::Msg;
use serde::Deserialize;
use tokio::time::{timeout, Instant};

use crate::lock::Inner;

/// How often an idle subscription is checked with a `PING`, to notice a connection that died
/// without closing.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// What the script publishes on every write.
#[derive(Deserialize)]
struct Announcement {
    version: String,
    record: LeaderElectionRecord,
}

/// The watch's state between two hints.
enum State {
    /// Not subscribed; after `failures` failed attempts in a row.
    Unsubscribed { failures: u32 },
    /// Subscribed: messages arrive on `messages`; `sink` sends the keep-alive pings.
    Subscribed {
        sink: PubSubSink,
        messages: PubSubStream,
        next_ping: Instant,
    },
}

/// A stream of hints for the lock: [`Hint::Changed`] after every (re)subscription (changes may
/// have been missed while not subscribed), [`Hint::Record`] for every announced write. It
/// subscribes again, with a backoff, whenever the connection is lost, and ends only when
/// dropped. It connects on its first poll.
pub(crate) fn watch(inner: Arc<Inner>) -> HintStream {
    futures::stream::unfold(
        (inner, State::Unsubscribed { failures: 0 }),
        |(inner, state)| async move {
            let (hint, state) = next(&inner, state).await;
            Some((hint, (inner, state)))
        },
    )
    .boxed()
}

/// Runs the watch until it has a hint to give.
async fn next(inner: &Inner, mut state: State) -> (Hint, State) {
    loop {
        state = match state {
            State::Unsubscribed { failures } => {
                if failures > 0 {
                    tokio::time::sleep(lock_core::reconnect_backoff(failures)).await;
                }
                match subscribe(inner).await {
                    Ok((sink, messages)) => {
                        tracing::debug!(lock = %inner.describe, "subscribed to change hints");
                        let next_ping = Instant::now() + KEEPALIVE;
                        let state = State::Subscribed {
                            sink,
                            messages,
                            next_ping,
                        };
                        return (Hint::Changed, state);
                    }
                    Err(reason) => {
                        if failures == 0 {
                            tracing::warn!(lock = %inner.describe, %reason, "cannot subscribe to change hints; retrying");
                        } else {
                            tracing::debug!(lock = %inner.describe, %reason, failures, "cannot subscribe to change hints; retrying");
                        }
                        State::Unsubscribed {
                            failures: failures.saturating_add(1),
                        }
                    }
                }
            }
            State::Subscribed {
                mut sink,
                mut messages,
                next_ping,
            } => {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            let hint = hint(inner, &message);
                            let state = State::Subscribed { sink, messages, next_ping };
                            return (hint, state);
                        }
                        None => {
                            tracing::debug!(lock = %inner.describe, "change hint connection lost; subscribing again");
                            State::Unsubscribed { failures: 1 }
                        }
                    },
                    () = tokio::time::sleep_until(next_ping) => {
                        let ping = timeout(inner.options.response_timeout, sink.ping::<redis::Value>());
                        match ping.await {
                            Ok(Ok(_)) => State::Subscribed {
                                sink,
                                messages,
                                next_ping: Instant::now() + KEEPALIVE,
                            },
                            _ => {
                                tracing::debug!(lock = %inner.describe, "change hint connection does not answer; subscribing again");
                                State::Unsubscribed { failures: 1 }
                            }
                        }
                    }
                }
            }
        };
    }
}

/// Connects and subscribes, within the connect and response timeouts.
async fn subscribe(inner: &Inner) -> Result<(PubSubSink, PubSubStream), String> {
    let connect = timeout(inner.options.connect_timeout, inner.connection.pubsub());
    let pubsub = match connect.await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(err)) => return Err(inner.errors.map(err).to_string()),
        Err(_) => {
            return Err(format!(
                "no connection within {:?}",
                inner.options.connect_timeout
            ))
        }
    };
    let (mut sink, messages) = pubsub.split();
    match timeout(
        inner.options.response_timeout,
        sink.subscribe(&inner.names.channel),
    )
    .await
    {
        Ok(Ok(())) => Ok((sink, messages)),
        Ok(Err(err)) => Err(inner.errors.map(err).to_string()),
        Err(_) => Err(format!(
            "no answer to SUBSCRIBE within {:?}",
            inner.options.response_timeout
        )),
    }
}

/// The hint a published message gives: the record it carries, or just "changed" when it
/// cannot be read (hints are never trusted for more than waking the elector up).
fn hint(inner: &Inner, message: &Msg) -> Hint {
    if message.get_channel_name() != inner.names.channel {
        return Hint::Changed;
    }
    match serde_json::from_slice::<Announcement>(message.get_payload_bytes()) {
        Ok(announcement) => Hint::Record(Versioned {
            record: announcement.record,
            version: crate::lock::counter_version(announcement.version),
        }),
        Err(err) => {
            tracing::debug!(lock = %inner.describe, error = %err, "unreadable change announcement");
            Hint::Changed
        }
    }
}
