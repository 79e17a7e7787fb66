//! Shutdown on CTRL+C (SIGINT), SIGTERM or SIGHUP: the first signal cancels the election (in
//! exec mode: stops the command first), which ends the term and hands the lock over; a second
//! one exits at once with status 130.
//!
//! SIGHUP (the terminal was closed) counts as SIGTERM: its default action would end the demo on
//! the spot, with its term unreleased and, in exec mode, its command left to the supervisor.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The exit status after a second signal: 128 + SIGINT, as shells report an interrupt.
const INTERRUPTED: i32 = 130;

/// Cancels `cancel` on the first SIGINT, SIGTERM or SIGHUP and exits the process on the second
/// (in exec mode the command's supervisor then kills the command: see `crate::supervisor`).
///
/// The signals are watched on a thread of their own, so a second CTRL+C works even while the
/// election's thread is busy or stuck. The handlers are installed before this returns: a signal
/// that arrives afterwards is never handled by the default action.
pub fn cancel_on_signal(cancel: CancellationToken) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let mut signals = {
        let _context = runtime.enter();
        Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let first = signals.next().await;
                tracing::info!(
                    "{first}: stepping down and handing the lock over; press CTRL+C again (or \
                     send another signal) to exit at once without finishing the hand-over"
                );
                cancel.cancel();
                let second = signals.next().await;
                // Written directly, not through the log queue: the process ends on the next
                // line, before a queued line would be written.
                eprintln!("{second} again: exiting without finishing the hand-over (status 130)");
                std::process::exit(INTERRUPTED);
            })
        })?;
    Ok(())
}

struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Waits for the next SIGINT, SIGTERM or SIGHUP and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
