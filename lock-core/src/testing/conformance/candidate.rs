//! One running elector with its event stream, its handle and its shutdown, bounded in time.

use std::time::Duration;

use crate::{
    ElectionConfig, ElectionEvent, ElectorHandle, LeaderElector, Leadership, Lock, RunOutcome,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::LeadershipLog;

/// How long a running elector may take to end after it was cancelled (its release included).
pub const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A candidate whose [`LeaderElector::run`] runs in a task of its own.
///
/// Events are subscribed before the run starts, so none is missed. Dropping a candidate cancels
/// its election and aborts the task; cases end with [`stop`](Self::stop) instead, which waits
/// for the run to end.
#[derive(Debug)]
pub struct Candidate {
    identity: String,
    handle: ElectorHandle,
    events: mpsc::UnboundedReceiver<ElectionEvent>,
    cancel: CancellationToken,
    task: Option<JoinHandle<RunOutcome>>,
}

impl Candidate {
    /// Starts an elector on `lock` with `config`; with a `log`, its terms are recorded there.
    pub fn start(
        lock: impl Lock + 'static,
        config: ElectionConfig,
        log: Option<&LeadershipLog>,
    ) -> Self {
        let identity = config.identity.clone();
        let elector = LeaderElector::new(lock, config).expect("the suite's configuration is valid");
        let handle = elector.handle();
        let events = elector.subscribe();
        if let Some(log) = log {
            log.follow(&elector);
        }
        let cancel = CancellationToken::new();
        let task = tokio::spawn(elector.run(cancel.clone()));
        Self {
            identity,
            handle,
            events,
            cancel,
            task: Some(task),
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The elector's handle.
    pub fn handle(&self) -> &ElectorHandle {
        &self.handle
    }

    /// The cancellation token of the election (cancel it to make the elector stop).
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The next event, waiting at most `within`; panics naming `waiting_for` otherwise.
    pub async fn next_event(&mut self, within: Duration, waiting_for: &str) -> ElectionEvent {
        match tokio::time::timeout(within, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!(
                "{}: the event stream ended while waiting for {waiting_for}",
                self.identity
            ),
            Err(_) => panic!(
                "{}: no event within {within:?} while waiting for {waiting_for}",
                self.identity
            ),
        }
    }

    /// Skips events until this candidate starts leading, waiting at most `within` in all.
    pub async fn started(&mut self, within: Duration) -> Leadership {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let ElectionEvent::StartedLeading(term) =
                self.next_event(left, "StartedLeading").await
            {
                return term;
            }
        }
    }

    /// Skips events until this candidate has observed `leader` as the holder, waiting at most
    /// `within` (returns at once when the elector already knows it).
    pub async fn sees_leader(&mut self, leader: &str, within: Duration) {
        if self.handle.leader().as_deref() == Some(leader) {
            return;
        }
        let deadline = tokio::time::Instant::now() + within;
        let waiting_for = format!("NewLeader({leader})");
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_event(left, &waiting_for).await;
            if matches!(&event, ElectionEvent::NewLeader(Some(seen)) if seen == leader) {
                return;
            }
        }
    }

    /// The events that are already waiting, without waiting for more. After the run ended
    /// ([`stop`](Self::stop), [`finished`](Self::finished)) these are all its remaining events.
    pub fn pending_events(&mut self) -> Vec<ElectionEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// Cancels the election and waits (at most [`STOP_LIMIT`]) for the run to end.
    pub async fn stop(&mut self) -> RunOutcome {
        self.cancel.cancel();
        self.finished(STOP_LIMIT).await
    }

    /// Waits at most `within` for the run to end by itself, and returns how it ended.
    pub async fn finished(&mut self, within: Duration) -> RunOutcome {
        let task = self
            .task
            .take()
            .unwrap_or_else(|| panic!("{}: the run was already awaited", self.identity));
        let outcome = tokio::time::timeout(within, task)
            .await
            .unwrap_or_else(|_| panic!("{}: the run did not end within {within:?}", self.identity))
            .unwrap_or_else(|err| panic!("{}: the run task failed: {err}", self.identity));
        outcome
    }

    /// Kills the run the way a killed process ends: no step down, no release. Waits until the
    /// task is gone.
    pub async fn kill(&mut self) {
        let task = self
            .task
            .take()
            .unwrap_or_else(|| panic!("{}: the run was already awaited", self.identity));
        task.abort();
        match tokio::time::timeout(STOP_LIMIT, task).await {
            Err(_) => panic!(
                "{}: the aborted run did not end within {STOP_LIMIT:?}",
                self.identity
            ),
            Ok(Err(err)) if err.is_panic() => {
                panic!("{}: the run task panicked: {err}", self.identity)
            }
            Ok(_) => {}
        }
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
