//! Exec mode (`demo [options] -- CMD ARGS...`): runs a command only while this instance leads.
//!
//! On every new term the command starts with `LEADER_FENCING_TOKEN`, `LEADER_IDENTITY` and
//! `LEADER_LOCK` in its environment, in a process group of its own, under a supervisor process
//! ([`crate::supervisor`]) that kills it the moment the demo dies and stops it while the demo is
//! stopped. The moment the term ends (the elector ends it, or its validity runs out by the
//! clock, whichever comes first) the group gets SIGTERM, and SIGKILL after the grace period.
//! When the demo goes on after a stop, the command goes on only if the term is still valid,
//! and is killed otherwise. A command that exits on its own
//! while this instance leads is reported and, per `--on-child-exit`, either ends the term and
//! the program (with the command's status) or is started again. On shutdown the command is
//! stopped first and only then is the election cancelled (which releases the lock), so the next
//! leader's command cannot start before this one has ended.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::{ElectionEvent, Leadership};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use crate::child::{Environment, SupervisedChild};
use crate::output::{Line, Output};
use crate::printable::printable;

/// `--on-child-exit restart`: the wait before the first restart after a fast failure; each
/// further fast failure in a row doubles it, up to [`RESTART_BACKOFF_CAP`].
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two starts of a command that keeps failing fast.
const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// A run of the command shorter than this is a fast failure; a longer one starts the count of
/// fast failures (and the backoff) again.
pub const FAST_FAILURE: Duration = Duration::from_secs(10);

/// After this many fast failures in a row `restart` gives up: the term ends, the lock is
/// released and the demo exits with the command's status.
pub const FAST_FAILURES_LIMIT: u32 = 5;

/// How many starts in a row may stall (see [`crate::child::START_REPORT`]) before the command
/// counts as one that cannot be started.
const STUCK_STARTS_LIMIT: u32 = 3;

/// The exit status when the command cannot be started at all, as shells report it.
const CANNOT_START: u8 = 127;

/// What to do when the command exits on its own while this instance leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnChildExit {
    /// End the term, release the lock and exit with the command's status.
    ReleaseAndExit,
    /// Start the command again while the term lasts, after 1 s, 2 s, 4 s... (at most 30 s)
    /// when it keeps exiting within 10 s of its start; after 5 such exits in a row, end the
    /// term, release the lock and exit with the command's status (1 if that was 0).
    Restart,
}

/// The command and how to run it.
#[derive(Clone, Debug)]
pub struct Exec {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// How long the command has between SIGTERM and SIGKILL.
    pub grace_period: Duration,
    /// What its own exit while leading means.
    pub on_child_exit: OnChildExit,
    /// This instance's identity, for `LEADER_IDENTITY`.
    pub identity: String,
    /// The lock's name, for `LEADER_LOCK`.
    pub lock: String,
}

/// How one term ended for the exec task.
enum TermEnd {
    /// The term ended; the command was stopped. Wait for the next one.
    Lost,
    /// Shutting down; the command was stopped.
    Shutdown,
    /// The command exited on its own and the policy is to release and exit with this status.
    Exit(u8),
}

/// How one run of the command ended.
enum RunEnd {
    Shutdown,
    Lost,
    Exited(std::io::Result<ExitStatus>),
}

/// Runs the command across terms until `shutdown` (then it stops the command and cancels the
/// election) or until the command's own exit ends everything. Cancels `election` in both
/// cases; returns the command's status in the second.
pub async fn supervise(
    exec: Exec,
    mut events: mpsc::UnboundedReceiver<ElectionEvent>,
    shutdown: CancellationToken,
    election: CancellationToken,
    output: Arc<Mutex<Output>>,
) -> Option<u8> {
    // SIGCONT: this process was stopped and goes on; its command waits for a word (see
    // `crate::supervisor`). Without the handler the command would stay stopped for good.
    let resumed = match signal(SignalKind::from_raw(nix::libc::SIGCONT)) {
        Ok(resumed) => resumed,
        Err(err) => {
            eprintln!("error: cannot watch for SIGCONT: {err}");
            election.cancel();
            return Some(1);
        }
    };
    let mut runner = Runner {
        exec,
        output,
        resumed,
    };
    let status = loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break None,
            event = events.recv() => event,
        };
        match event {
            Some(ElectionEvent::StartedLeading(term)) => {
                match runner.lead(&term, &shutdown).await {
                    TermEnd::Lost => {}
                    TermEnd::Shutdown => break None,
                    TermEnd::Exit(status) => break Some(status),
                }
            }
            Some(_) => {}
            // The election ended by itself.
            None => break None,
        }
    };
    election.cancel();
    status
}

/// Runs the command for the terms of this instance (the demo's side of exec mode).
struct Runner {
    exec: Exec,
    output: Arc<Mutex<Output>>,
    resumed: Signal,
}

impl Runner {
    /// Runs the command for one term.
    async fn lead(&mut self, term: &Leadership, shutdown: &CancellationToken) -> TermEnd {
        // Runs in a row that ended within FAST_FAILURE of their start (`restart`).
        let mut fast_failures = 0;
        // Starts in a row whose supervisor said nothing in time: retried at once, but only
        // a few times, so that a machine where starts always stall ends the term (as a command
        // that cannot start does) instead of holding the lock with no command running.
        let mut stuck_starts = 0;
        loop {
            if !term.is_leader() {
                return TermEnd::Lost;
            }
            // Raced with the term and the program: a start that takes long must not keep a
            // term that ended waiting, nor a CTRL+C unanswered; a start given up on is undone
            // (nothing of it runs) before the term's end is acted on.
            let given_up = async {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    () = term.ended() => {}
                }
            };
            let spawned = self.spawn(term, given_up).await;
            let mut child = match spawned {
                Ok(child) => child,
                Err(err)
                    if err.kind() == std::io::ErrorKind::Interrupted
                        && (shutdown.is_cancelled() || !term.is_leader()) =>
                {
                    tracing::warn!(error = %err, "the term or the program ended while the command started");
                    return if shutdown.is_cancelled() {
                        TermEnd::Shutdown
                    } else {
                        TermEnd::Lost
                    };
                }
                Err(err)
                    if err.kind() == std::io::ErrorKind::TimedOut
                        && stuck_starts + 1 < STUCK_STARTS_LIMIT =>
                {
                    // The supervisor got stuck (it was killed, with anything it started):
                    // nothing is known to be wrong with the command, so start it again.
                    stuck_starts += 1;
                    tracing::warn!(error = %err, "starting the command again");
                    continue;
                }
                Err(err) => {
                    let program = self.exec.command.first().map_or("", String::as_str);
                    let message = err.to_string();
                    eprintln!(
                        "error: cannot start {}: {}",
                        printable(&format!("{program:?}")),
                        printable(&message)
                    );
                    match self.exec.on_child_exit {
                        OnChildExit::ReleaseAndExit => return TermEnd::Exit(CANNOT_START),
                        OnChildExit::Restart => {
                            fast_failures += 1;
                            if let Some(end) = self
                                .back_off(fast_failures, CANNOT_START, term, shutdown)
                                .await
                            {
                                return end;
                            }
                            continue;
                        }
                    }
                }
            };
            stuck_starts = 0;
            let pid = child.id();
            let token = term.fencing_token();
            self.print(&Line::ChildStarted { term: token, pid });
            let started = tokio::time::Instant::now();
            let end = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break RunEnd::Shutdown,
                    () = term.ended() => break RunEnd::Lost,
                    _ = self.resumed.recv() => {
                        // The command was stopped with this process (at most a poll later).
                        // It goes on only if the term outlived the pause; otherwise another
                        // instance may lead already, and it must not run another moment.
                        if term.is_leader() {
                            child.resume().await;
                        } else {
                            child.kill().await;
                        }
                    }
                    status = child.wait() => break RunEnd::Exited(status),
                }
            };
            match end {
                RunEnd::Shutdown => {
                    self.stop(&mut child, term).await;
                    return TermEnd::Shutdown;
                }
                RunEnd::Lost => {
                    // `ended` is final: a term over by the clock refuses later renews.
                    self.stop(&mut child, term).await;
                    return TermEnd::Lost;
                }
                RunEnd::Exited(status) => {
                    let status = status.unwrap_or_else(|err| {
                        tracing::error!(error = %err, "cannot wait for the command");
                        ExitStatus::default()
                    });
                    self.print(&Line::ChildExited {
                        term: token,
                        pid,
                        status,
                    });
                    match self.exec.on_child_exit {
                        OnChildExit::ReleaseAndExit => return TermEnd::Exit(exit_code(status)),
                        OnChildExit::Restart if started.elapsed() >= FAST_FAILURE => {
                            fast_failures = 0;
                        }
                        OnChildExit::Restart => {
                            fast_failures += 1;
                            if let Some(end) = self
                                .back_off(fast_failures, exit_code(status), term, shutdown)
                                .await
                            {
                                return end;
                            }
                        }
                    }
                }
            }
        }
    }

    /// After the `failures`-th fast failure in a row (the last with status `code`): gives up
    /// at [`FAST_FAILURES_LIMIT`], saying so, else waits out the backoff unless the term or
    /// the program ends first.
    async fn back_off(
        &self,
        failures: u32,
        code: u8,
        term: &Leadership,
        shutdown: &CancellationToken,
    ) -> Option<TermEnd> {
        if failures >= FAST_FAILURES_LIMIT {
            let program = self.exec.command.first().map_or("", String::as_str);
            eprintln!(
                "error: {} exited within {} of its start {failures} times in a row \
                 (--on-child-exit restart gives up after {FAST_FAILURES_LIMIT}): ending the \
                 term, releasing the lock and exiting with its last status",
                printable(&format!("{program:?}")),
                humantime::format_duration(FAST_FAILURE),
            );
            return Some(TermEnd::Exit(if code == 0 { 1 } else { code }));
        }
        let backoff = restart_backoff(failures);
        tracing::warn!(
            ?backoff,
            failures,
            "the command failed fast: starting it again after a pause"
        );
        tokio::select! {
            _ = shutdown.cancelled() => Some(TermEnd::Shutdown),
            () = term.ended() => Some(TermEnd::Lost),
            _ = sleep(backoff) => None,
        }
    }

    async fn spawn(
        &self,
        term: &Leadership,
        given_up: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<SupervisedChild> {
        let env = Environment {
            token: term.fencing_token(),
            identity: &self.exec.identity,
            lock: &self.exec.lock,
        };
        SupervisedChild::spawn(&self.exec.command, &env, given_up).await
    }

    /// SIGTERM to the command's group, SIGKILL after the grace period; waits for its exit.
    /// Nothing here waits on output: the requests are single bytes to the supervisor process, and
    /// event lines are queued ([`crate::writer`]).
    async fn stop(&self, child: &mut SupervisedChild, term: &Leadership) {
        let pid = child.id();
        child.terminate().await;
        let status = match tokio::time::timeout(self.exec.grace_period, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    grace_period = ?self.exec.grace_period,
                    "the command outlived its grace period: SIGKILL"
                );
                child.kill().await;
                child.wait().await
            }
        };
        let status = status.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "the command ended unreported");
            ExitStatus::from_raw(9)
        });
        self.print(&Line::ChildStopped {
            term: term.fencing_token(),
            pid,
            status,
        });
    }

    fn print(&self, line: &Line) {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .child(line);
    }
}

/// The status to exit with for the command's: its code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

/// The wait before a restart after the `failures`-th fast failure in a row (1 or more): 1 s,
/// doubled for each further one, at most [`RESTART_BACKOFF_CAP`].
fn restart_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RESTART_BACKOFF
        .saturating_mul(1 << doublings)
        .min(RESTART_BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_backoff_doubles_from_one_second_up_to_thirty() {
        let waits: Vec<u64> = (1..=7).map(|n| restart_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(restart_backoff(u32::MAX), RESTART_BACKOFF_CAP);
    }

    #[test]
    fn exit_codes_are_the_commands_or_128_plus_the_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
