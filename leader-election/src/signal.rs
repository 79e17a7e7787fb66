//! Shutting down on CTRL+C or SIGTERM: what every service's `main` would otherwise write by hand.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first CTRL+C (SIGINT) or SIGTERM (what Kubernetes and systemd send
/// to stop a process). Hand it to [`LeaderElector::run_leading`](crate::LeaderElector::run_leading)
/// (or `run`): the leader's work is stopped, then the lock is released (with
/// [`release_on_cancel`](crate::ElectionConfig::release_on_cancel)) so a standby takes over at
/// once instead of waiting out the lease.
///
/// Must be called inside a tokio runtime: it spawns the task that waits for the signals. If the
/// signal handlers cannot be installed, the failure is logged and the token is left as it is.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        match wait_for_signal().await {
            Ok(name) => {
                tracing::info!(
                    signal = name,
                    "shutting down: stopping the work, then releasing"
                );
                cancel.cancel();
            }
            Err(err) => tracing::error!(error = %err, "cannot listen for CTRL+C or SIGTERM"),
        }
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<&'static str> {
    tokio::signal::ctrl_c().await?;
    Ok("CTRL+C")
}
