//! Change hints: etcd's watch on the lock's key, resumed after every disconnect from the last
//! revision it saw, and restarted from now after a compaction.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::proto::PbEvent;
use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use futures::StreamExt;
use lock_core::{Hint, HintStream, LeaderElectionRecord, Version, Versioned};
use tokio::time::timeout;

use crate::lock::Inner;

/// etcd's event type for a put (`mvccpb.Event.EventType`).
const PUT: i32 = 0;

/// The watch's state between two hints.
enum State {
    /// Not watching; after `failures` failed attempts in a row.
    Unwatched { failures: u32 },
    /// Watching: responses arrive on `stream` (which must be kept: dropping it ends the watch).
    Watching { stream: Box<WatchStream> },
}

/// One hint stream's watch.
struct Watch {
    inner: Arc<Inner>,
    /// The revision to resume from: one past the last one seen. `None` watches from now.
    next_revision: Option<i64>,
    state: State,
    /// Hints taken from one response and not given yet.
    pending: VecDeque<Hint>,
}

/// A stream of hints for the lock: [`Hint::Changed`] after every (re)established watch
/// (changes may have been missed meanwhile) and after a compaction, [`Hint::Record`] for every
/// put of a record, [`Hint::Changed`] for deletions and for values that are not records. It
/// watches again, with a backoff, whenever the watch fails, and ends only when dropped. It
/// connects on its first poll, watching from `start` (a revision) or, with `None`, from now.
pub(crate) fn watch(inner: Arc<Inner>, start: Option<i64>) -> HintStream {
    let watch = Watch {
        inner,
        next_revision: start,
        state: State::Unwatched { failures: 0 },
        pending: VecDeque::new(),
    };
    futures::stream::unfold(watch, |mut watch| async move {
        let hint = watch.next().await;
        Some((hint, watch))
    })
    .boxed()
}

impl Watch {
    /// Runs the watch until it has a hint to give.
    async fn next(&mut self) -> Hint {
        loop {
            if let Some(hint) = self.pending.pop_front() {
                return hint;
            }
            let state = std::mem::replace(&mut self.state, State::Unwatched { failures: 0 });
            self.state = match state {
                State::Unwatched { failures } => {
                    if failures > 0 {
                        tokio::time::sleep(lock_core::reconnect_backoff(failures)).await;
                    }
                    match self.establish().await {
                        Err(Refusal::Compacted) => State::Unwatched { failures: 0 },
                        Ok(stream) => {
                            tracing::debug!(lock = %self.inner.describe, from = ?self.next_revision, "watching for change hints");
                            self.state = State::Watching {
                                stream: Box::new(stream),
                            };
                            return Hint::Changed;
                        }
                        Err(Refusal::Failed(reason)) => {
                            if failures == 0 {
                                tracing::warn!(lock = %self.inner.describe, %reason, "cannot watch for change hints; retrying");
                            } else {
                                tracing::debug!(lock = %self.inner.describe, %reason, failures, "cannot watch for change hints; retrying");
                            }
                            State::Unwatched {
                                failures: failures.saturating_add(1),
                            }
                        }
                    }
                }
                State::Watching { mut stream } => match stream.message().await {
                    Ok(Some(response)) => self.receive(response, stream),
                    Ok(None) => {
                        tracing::debug!(lock = %self.inner.describe, "the watch ended; watching again");
                        State::Unwatched { failures: 1 }
                    }
                    Err(err) => {
                        tracing::debug!(lock = %self.inner.describe, error = %crate::errors::describe(&err), "the watch failed; watching again");
                        State::Unwatched { failures: 1 }
                    }
                },
            };
        }
    }

    /// Opens a watch and waits for etcd to confirm it, within the connect and request
    /// timeouts.
    async fn establish(&mut self) -> Result<WatchStream, Refusal> {
        let inner = self.inner.clone();
        let connected = inner
            .client
            .get(&inner.errors)
            .await
            .map_err(|err| Refusal::Failed(err.to_string()))?;
        let mut options = WatchOptions::new().with_progress_notify();
        if let Some(start) = self.next_revision {
            options = options.with_start_revision(start);
        }
        let mut client = connected.client;
        let key = inner.key.clone();
        let limit = inner.options.request_timeout;
        let opened = timeout(limit, async move {
            let mut stream = client.watch(key, Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        })
        .await;
        let (stream, first) = match opened {
            Ok(Ok((stream, Some(first)))) => (stream, first),
            Ok(Ok((_, None))) => return Err(failed("the server ended the watch at once")),
            Ok(Err(err)) => return Err(Refusal::Failed(inner.errors.map(err).to_string())),
            Err(_) => {
                inner.client.reset(connected.generation).await;
                return Err(failed(format!(
                    "no answer to the watch request within {limit:?}"
                )));
            }
        };
        if first.canceled() {
            let compacted = first.compact_revision() > 0;
            self.cancelled(&first);
            return Err(if compacted {
                Refusal::Compacted
            } else {
                failed(format!(
                    "the server cancelled the watch: {}",
                    cancel_reason(&first)
                ))
            });
        }
        let current = first.header().map(|header| header.revision());
        match (self.next_revision, current) {
            (None, Some(current)) => self.next_revision = current.checked_add(1),
            (Some(start), Some(current)) if current.saturating_add(1) < start => {
                // The store is behind revisions already seen: it was restored or rebuilt. A
                // watch from `start` would miss everything until the store catches up.
                self.next_revision = None;
                return Err(failed(format!(
                    "the store is at revision {current}, before revisions already seen (up to {}); watching from now",
                    start - 1
                )));
            }
            _ => {}
        }
        if !first.created() {
            // Not the confirmation but already an answer: take its events.
            self.take_events(&first);
        }
        Ok(stream)
    }

    /// Handles one response of an established watch; the state that follows.
    fn receive(&mut self, response: WatchResponse, stream: Box<WatchStream>) -> State {
        if response.canceled() {
            return self.cancelled(&response);
        }
        self.take_events(&response);
        State::Watching { stream }
    }

    /// Turns a response's events into pending hints and moves the resume point past them; a
    /// response without events (a progress notice) moves it to the store's revision.
    fn take_events(&mut self, response: &WatchResponse) {
        let events = &response.0.events;
        if events.is_empty() {
            if !response.created() {
                if let Some(header) = response.header() {
                    self.advance(header.revision());
                }
            }
            return;
        }
        for event in events {
            if let Some(kv) = &event.kv {
                self.advance(kv.mod_revision);
            }
            let hint = self.hint(event);
            self.pending.push_back(hint);
        }
    }

    /// Notes that everything up to `revision` was seen.
    fn advance(&mut self, revision: i64) {
        let next = revision.saturating_add(1);
        if self.next_revision.is_none_or(|current| current < next) {
            self.next_revision = Some(next);
        }
    }

    /// The hint one event gives: the record a put carries, or just "changed" for deletions and
    /// values that are not records (hints are never trusted for more than waking the elector).
    fn hint(&self, event: &PbEvent) -> Hint {
        let Some(kv) = &event.kv else {
            return Hint::Changed;
        };
        if event.r#type != PUT || kv.key != self.inner.key.as_bytes() || kv.mod_revision <= 0 {
            return Hint::Changed;
        }
        match LeaderElectionRecord::from_json(&kv.value) {
            Ok(record) => {
                self.inner.vouched.remember(kv.mod_revision, &kv.value);
                Hint::Record(Versioned {
                    record,
                    version: Version::from(kv.mod_revision),
                })
            }
            Err(err) => {
                tracing::debug!(lock = %self.inner.describe, error = %err, "a write of a value that is not a record");
                Hint::Changed
            }
        }
    }

    /// The server cancelled the watch. After a compaction of the revisions it was to start
    /// from: say "changed" and watch again from now. Otherwise (a refused permission, for
    /// example) watch again after the backoff.
    fn cancelled(&mut self, response: &WatchResponse) -> State {
        if response.compact_revision() > 0 {
            tracing::debug!(
                lock = %self.inner.describe,
                compacted = response.compact_revision(),
                "the watch's revisions were compacted; watching again from now"
            );
            self.next_revision = None;
            self.pending.push_back(Hint::Changed);
            State::Unwatched { failures: 0 }
        } else {
            tracing::warn!(lock = %self.inner.describe, reason = %cancel_reason(response), "the server cancelled the watch; watching again");
            State::Unwatched { failures: 1 }
        }
    }
}

/// Why a watch could not be established.
enum Refusal {
    /// Its start revision was compacted away: watch again from now, at once.
    Compacted,
    /// Anything else: watch again after the backoff.
    Failed(String),
}

fn failed(reason: impl Into<String>) -> Refusal {
    Refusal::Failed(reason.into())
}

fn cancel_reason(response: &WatchResponse) -> String {
    match response.cancel_reason() {
        "" => "no reason given".to_owned(),
        reason => reason.to_owned(),
    }
}
