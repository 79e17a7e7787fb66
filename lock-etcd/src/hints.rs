//! Change hints. [`shared`] is a lock's place in its client's one watch on the key prefix
//! (see the `hub` module); [`watch`] is a watch of the lock's key alone, from a given revision
//! (for [`EtcdLock::watch_from`](crate::EtcdLock::watch_from)). Either stream ends at the first failure (a refused or cancelled watch, a lost connection, an
//! answer the client cannot read): a stream that is open must be live, because the elector
//! trusts an open stream to announce changes and stops polling while it lasts. After the end
//! the elector polls, and calls [`watch`](lock_core::Lock::watch) again after a back-off.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::proto::PbEvent;
use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use futures::StreamExt;
use lock_core::backend::{Hint, HintStream};

use crate::errors::Fault;
use crate::hub::{cancel_reason, Hub, Subscription, PUT};
use crate::session::Session;

/// How many times in a row the watch starts over from now after etcd compacted the revisions it
/// was to resume from, before it gives up and ends. Starting from now cannot be compacted, so
/// more than one in a row means the watch keeps falling behind; the elector polls instead.
const COMPACTION_RESTARTS: u32 = 3;

/// The watch's state between two hints.
enum State {
    /// Not watching yet (or again, at once, after a compaction).
    Unwatched,
    /// Watching: responses arrive on `stream` (which must be kept: dropping it ends the watch).
    Watching { stream: Box<WatchStream> },
    /// The watch failed: the stream ends once the pending hints are given.
    Ended,
}

/// A stream of hints for the lock from its client's shared watch: [`Hint::Changed`] once the
/// watch is established (or at once, when it already is), [`Hint::Record`] for every put of a
/// record, [`Hint::Changed`] for deletions and values that are not records. It joins the
/// watch on its first poll, and ends when the shared watch fails.
pub(crate) fn shared(hub: Arc<Hub>, inner: Arc<Session>) -> HintStream {
    futures::stream::unfold(
        (hub, inner, None::<Subscription>),
        |(hub, inner, joined)| async move {
            let subscription = match joined {
                Some(subscription) => subscription,
                None => hub.join(inner.clone()),
            };
            let hint = subscription.next().await?;
            Some((hint, (hub, inner, Some(subscription))))
        },
    )
    .boxed()
}

/// One hint stream's watch.
struct Watch {
    inner: Arc<Session>,
    /// The revision to resume from: one past the last one seen. `None` watches from now.
    next_revision: Option<i64>,
    state: State,
    /// Hints taken from one response and not given yet.
    pending: VecDeque<Hint>,
    /// Restarts after a compaction since the last response with events.
    compaction_restarts: u32,
}

/// A stream of hints for the lock: [`Hint::Changed`] once the watch is established (changes may
/// have been missed before) and after a compaction, [`Hint::Record`] for every put of a record,
/// [`Hint::Changed`] for deletions and for values that are not records. It connects on its
/// first poll, watching from `start` (a revision) or, with `None`, from now.
///
/// It ends (after the hints it already has) when the watch cannot be established, when the
/// server cancels or ends it (except for a compaction of the revisions it was to resume from:
/// then it says "changed" and watches on from now, which misses nothing the elector needs, since
/// it reads the lock on "changed"), when the connection is lost, and when a change cannot be
/// read (a value above the client's message limit, which no record comes near). Every end is
/// logged at warn (error for a value that is too large) with its reason.
pub(crate) fn watch(inner: Arc<Session>, start: Option<i64>) -> HintStream {
    let watch = Watch {
        inner,
        next_revision: start,
        state: State::Unwatched,
        pending: VecDeque::new(),
        compaction_restarts: 0,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        let hint = watch.next().await?;
        Some((hint, watch))
    })
    .boxed()
}

impl Watch {
    /// Runs the watch until it has a hint to give; `None` once it ended.
    async fn next(&mut self) -> Option<Hint> {
        loop {
            if let Some(hint) = self.pending.pop_front() {
                return Some(hint);
            }
            let state = std::mem::replace(&mut self.state, State::Ended);
            match state {
                State::Ended => return None,
                State::Unwatched => match self.establish().await {
                    Ok(stream) => {
                        tracing::debug!(lock = %self.inner.describe, from = ?self.next_revision, "watching for change hints");
                        self.state = State::Watching {
                            stream: Box::new(stream),
                        };
                        return Some(Hint::Changed);
                    }
                    Err(Refusal::Compacted) => self.state = self.restart_after_compaction(),
                    Err(Refusal::Failed(reason)) => {
                        tracing::warn!(lock = %self.inner.describe, %reason, "cannot watch for change hints; polling until the next attempt");
                    }
                },
                State::Watching { mut stream } => match stream.message().await {
                    Ok(Some(response)) => self.state = self.receive(response, stream),
                    Ok(None) => {
                        tracing::warn!(lock = %self.inner.describe, "the server ended the watch; polling until the next attempt");
                    }
                    Err(err) => self.report_failure(&err),
                },
            }
        }
    }

    /// Logs why the open watch failed; the stream ends.
    fn report_failure(&self, err: &etcd_client::Error) {
        let reason = crate::errors::describe(err);
        if crate::errors::classify(err) == Fault::TooLarge {
            tracing::error!(
                lock = %self.inner.describe,
                key = %self.inner.key,
                %reason,
                "a change to the key is too large to be a leader election record, so the watch \
                 cannot read it; polling until the next attempt (fix or delete the value by hand)"
            );
        } else {
            tracing::warn!(lock = %self.inner.describe, %reason, "the watch failed; polling until the next attempt");
        }
    }

    /// After a compaction of the revisions the watch was to start from: say "changed" (read the
    /// lock) and watch again from now, unless that keeps happening.
    fn restart_after_compaction(&mut self) -> State {
        self.compaction_restarts += 1;
        if self.compaction_restarts > COMPACTION_RESTARTS {
            tracing::warn!(lock = %self.inner.describe, restarts = COMPACTION_RESTARTS, "the watch keeps falling behind compactions; polling until the next attempt");
            return State::Ended;
        }
        self.next_revision = None;
        self.pending.push_back(Hint::Changed);
        State::Unwatched
    }

    /// Opens a watch and waits for etcd to confirm it, within the connect and request
    /// timeouts.
    async fn establish(&mut self) -> Result<WatchStream, Refusal> {
        let inner = self.inner.clone();
        let mut options = WatchOptions::new().with_progress_notify();
        if let Some(start) = self.next_revision {
            options = options.with_start_revision(start);
        }
        let (stream, first) = inner
            .client
            .open_watch(
                &inner.errors,
                inner.options.request_timeout,
                inner.key.clone(),
                options,
            )
            .await
            .map_err(Refusal::Failed)?;
        if first.canceled() {
            return Err(if first.compact_revision() > 0 {
                tracing::debug!(
                    lock = %inner.describe,
                    compacted = first.compact_revision(),
                    "the revisions to watch from were compacted; watching again from now"
                );
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
                return Err(failed(format!(
                    "the store is at revision {current}, before revisions already seen (up to {}): it was restored or rebuilt",
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
        self.compaction_restarts = 0;
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
        if event.r#type != PUT || kv.key != self.inner.key.as_bytes() {
            return Hint::Changed;
        }
        self.inner.put_hint(&kv.value, kv.mod_revision)
    }

    /// The server cancelled the watch. After a compaction of the revisions it was to start
    /// from: say "changed" and watch again from now. Otherwise (a refused permission, a member
    /// that lost its leader, for example) the stream ends.
    fn cancelled(&mut self, response: &WatchResponse) -> State {
        if response.compact_revision() > 0 {
            tracing::debug!(
                lock = %self.inner.describe,
                compacted = response.compact_revision(),
                "the watch's revisions were compacted; watching again from now"
            );
            self.restart_after_compaction()
        } else {
            tracing::warn!(lock = %self.inner.describe, reason = %cancel_reason(response), "the server cancelled the watch; polling until the next attempt");
            State::Ended
        }
    }
}

/// Why a watch could not be established.
enum Refusal {
    /// Its start revision was compacted away: watch again from now, at once.
    Compacted,
    /// Anything else: the stream ends.
    Failed(String),
}

fn failed(reason: impl Into<String>) -> Refusal {
    Refusal::Failed(reason.into())
}
