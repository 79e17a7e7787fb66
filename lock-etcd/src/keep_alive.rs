//! The session of a term held for life: keeps its etcd lease alive, and says when it ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::session::Session;

/// Keeps lease `lease` alive every third of `ttl` until `stop` is cancelled, on a task of its
/// own. Cancels `lost` (and stops) when the session has ended: etcd answers that the lease is
/// gone (TTL 0), or no keep-alive was acknowledged for a whole `ttl` since it was sent (the
/// server may have let the lease expire; a process resumed from a long stop finds that out
/// at its first check, before it sends anything).
pub(crate) fn spawn(
    inner: Arc<Session>,
    lease: i64,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = keep_alive(&inner, lease, ttl) => {
                tracing::warn!(lock = %inner.describe, lease, "the etcd session of the term for life ended");
                lost.cancel();
            }
        }
    });
}

/// Returns when the session has ended.
async fn keep_alive(inner: &Session, lease: i64, ttl: Duration) {
    let interval = ttl / 3;
    // The lease was granted, and the key put, just before: count from now.
    let mut acknowledged = Instant::now();
    let mut stream = None;
    loop {
        if acknowledged.elapsed() >= ttl {
            return;
        }
        let sent = Instant::now();
        if stream.is_none() {
            stream = inner
                .request(|mut client| async move { client.lease_keep_alive(lease).await })
                .await
                .map_err(|err| tracing::warn!(error = %err, "cannot open the keep-alive stream"))
                .ok();
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
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => acknowledged = sent,
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
