//! The elector's view of a lock's change hints: subscribe, notice the end, subscribe again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::{Hint, HintStream, Lock};

pub(crate) struct Hints {
    lock: Arc<dyn Lock>,
    enabled: bool,
    stream: Option<HintStream>,
    resubscribe_after: Duration,
    resubscribe_at: Option<Instant>,
}

impl Hints {
    pub(crate) fn new(lock: Arc<dyn Lock>, enabled: bool, resubscribe_after: Duration) -> Self {
        let stream = if enabled { lock.watch() } else { None };
        Self {
            lock,
            enabled,
            stream,
            resubscribe_after,
            resubscribe_at: None,
        }
    }

    /// True while a hint stream is open, so that waiting for hints can replace polling.
    pub(crate) fn active(&self) -> bool {
        self.stream.is_some()
    }

    /// Opens the stream again if it ended and the back-off has passed; true when a new stream
    /// opened (changes made before it may have been missed: read once more).
    pub(crate) fn resubscribe_if_due(&mut self) -> bool {
        if !self.enabled || self.stream.is_some() {
            return false;
        }
        if self.resubscribe_at.is_some_and(|at| Instant::now() >= at) {
            self.stream = self.lock.watch();
            // No stream this time either: try again after another back-off.
            self.resubscribe_at = self
                .stream
                .is_none()
                .then(|| Instant::now() + self.resubscribe_after);
            return self.stream.is_some();
        }
        false
    }

    /// The next hint; pending forever while no stream is open. The end of a stream is reported
    /// as [`Hint::Changed`], since changes may have been missed.
    pub(crate) async fn next(&mut self) -> Hint {
        let Some(stream) = self.stream.as_mut() else {
            return std::future::pending().await;
        };
        match stream.next().await {
            Some(hint) => hint,
            None => {
                tracing::info!(lock = %self.lock.describe(), "change hints ended; polling until they resume");
                self.stream = None;
                self.resubscribe_at = Some(Instant::now() + self.resubscribe_after);
                Hint::Changed
            }
        }
    }
}
