//! The hub's pub/sub connection, of one of two kinds:
//!
//! - **classic**: a RESP2 pub/sub connection (`SUBSCRIBE`), to one server, or to any node of a
//!   cluster, which carries every `PUBLISH` to all its nodes;
//! - **sharded**: a RESP3 connection to the node that serves a cluster slot (`SSUBSCRIBE`),
//!   whose messages arrive as pushes. Sharded announcements (`SPUBLISH`) stay on the slot's
//!   nodes, so a cluster's bus does not carry every election's renews to every node.

use futures::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{Msg, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc::UnboundedReceiver;

/// Where the hub sends (un)subscriptions and keep-alives.
#[derive(Clone)]
pub(crate) enum Sink {
    Classic(PubSubSink),
    Sharded(MultiplexedConnection),
}

impl Sink {
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Classic(sink) => sink.subscribe(channel).await,
            Self::Sharded(connection) => {
                redis::cmd("SSUBSCRIBE")
                    .arg(channel)
                    .exec_async(connection)
                    .await
            }
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Classic(sink) => sink.unsubscribe(channel).await,
            Self::Sharded(connection) => {
                redis::cmd("SUNSUBSCRIBE")
                    .arg(channel)
                    .exec_async(connection)
                    .await
            }
        }
    }

    pub async fn ping(&mut self) -> RedisResult<Value> {
        match self {
            Self::Classic(sink) => sink.ping().await,
            Self::Sharded(connection) => redis::cmd("PING").query_async(connection).await,
        }
    }

    /// True when a refused subscription can pass for an answered one and must be checked
    /// (classic pub/sub: the client library drops the error reply); over RESP3 a refused
    /// `SSUBSCRIBE` is an error reply like any other.
    pub fn needs_verify(&self) -> bool {
        matches!(self, Self::Classic(_))
    }
}

/// What arrived on the connection.
pub(crate) enum Incoming {
    /// A published message.
    Message(Msg),
    /// The server confirmed a sharded subscription (`SSUBSCRIBE`).
    Subscribed(String),
    /// The server ended a sharded subscription (`SUNSUBSCRIBE`): ours, or its own when the
    /// slot moved to another node.
    Unsubscribed(String),
}

/// Where the hub's messages come from.
pub(crate) enum Messages {
    Classic(PubSubStream),
    Sharded(UnboundedReceiver<PushInfo>),
}

impl Messages {
    /// The next message or server-side unsubscription; `None` when the connection is gone.
    pub async fn next(&mut self) -> Option<Incoming> {
        match self {
            Self::Classic(stream) => stream.next().await.map(Incoming::Message),
            Self::Sharded(pushes) => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::SMessage => {
                        if let Some(message) = Msg::from_push_info(push) {
                            return Some(Incoming::Message(message));
                        }
                    }
                    PushKind::SSubscribe | PushKind::SUnsubscribe => {
                        if let Some(Value::BulkString(channel)) = push.data.first() {
                            let channel = String::from_utf8_lossy(channel).into_owned();
                            return Some(if push.kind == PushKind::SSubscribe {
                                Incoming::Subscribed(channel)
                            } else {
                                Incoming::Unsubscribed(channel)
                            });
                        }
                    }
                    PushKind::Disconnection => return None,
                    // Confirmations of (un)subscriptions, and anything else, carry no hint.
                    _ => {}
                }
            },
        }
    }
}
