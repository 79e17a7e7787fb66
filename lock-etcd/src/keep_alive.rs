//! The session of a term held for life: keeps its etcd lease alive, and says when it ended.

use std::sync::Arc;
use std::time::Duration;

use lock_core::HoldDeadline;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::session::Session;

/// Keeps lease `lease` alive every third of `ttl` until `stop` is cancelled, on a task of its
/// own. Cancels `lost` (and stops) when the session has ended: etcd answers that the lease is
/// gone (TTL 0), or no keep-alive was acknowledged for a whole `ttl` since it was sent (the
/// server may have let the lease expire; a process resumed from a long stop finds that out
/// at its first check, before it sends anything). `granted` is when the grant of the lease was
/// sent: the server's TTL runs from the grant, not from the put that followed it. Returns the
/// session's deadline, moved on with every acknowledged keep-alive: the hold is over once it
/// has passed, before this task has run to cancel `lost`.
pub(crate) fn spawn(
    inner: Arc<Session>,
    lease: i64,
    ttl: Duration,
    granted: Instant,
    lost: CancellationToken,
    stop: CancellationToken,
) -> HoldDeadline {
    let deadline = HoldDeadline::new(granted + ttl);
    let session = deadline.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = keep_alive(&inner, lease, ttl, granted, &session) => {
                tracing::warn!(lock = %inner.describe, lease, "the etcd session of the term for life ended");
                lost.cancel();
            }
        }
    });
    deadline
}

/// Returns when the session has ended.
async fn keep_alive(
    inner: &Session,
    lease: i64,
    ttl: Duration,
    granted: Instant,
    deadline: &HoldDeadline,
) {
    let interval = ttl / 3;
    // The server counts the TTL from the grant: so does the holder (the reads and the put that
    // followed the grant may have taken a while).
    let mut acknowledged = granted;
    let mut stream = None;
    loop {
        if acknowledged.elapsed() >= ttl {
            return;
        }
        let sent = Instant::now();
        if stream.is_none() {
            // Bounded by what is left of the session, as the wait for an answer is: a request
            // timeout longer than that would hold the end of the session back.
            let left = ttl.saturating_sub(acknowledged.elapsed());
            let opening =
                inner.request(|mut client| async move { client.lease_keep_alive(lease).await });
            stream = match tokio::time::timeout(left, opening).await {
                Ok(Ok(opened)) => Some(opened),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot open the keep-alive stream");
                    None
                }
                Err(_) => {
                    tracing::warn!(lease, "no keep-alive stream before the session's end");
                    None
                }
            };
        }
        if let Some((keeper, answers)) = stream.as_mut() {
            let limit = ttl
                .saturating_sub(acknowledged.elapsed())
                .min(inner.options.request_timeout);
            let answer = tokio::time::timeout(limit, async {
                keeper.keep_alive().await?;
                answers.message().await
            })
            .await;
            match answer {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                    // A late answer to a keep-alive sent in time does not bring back a session
                    // that the deadline (which `is_leader` reads) already ended.
                    if !deadline.extend(sent + ttl) {
                        return;
                    }
                    acknowledged = sent;
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease, "etcd says the lease is gone");
                    return;
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    tracing::warn!(lease, "a keep-alive failed; opening the stream again");
                    stream = None;
                }
            }
        }
        if acknowledged.elapsed() >= ttl {
            return;
        }
        let next = if stream.is_some() {
            sent + interval
        } else {
            // Retry soon after a failure, but not in a tight loop.
            Instant::now() + Duration::from_millis(200).min(interval)
        };
        tokio::time::sleep_until(next.min(acknowledged + ttl)).await;
    }
}
