//! Waiting for a hint stream to end: a stream whose watch failed must end, so that the elector
//! stops trusting it and polls.

use std::time::Duration;

use futures::StreamExt;
use lock_core::backend::{Hint, HintStream};
use tokio::time::Instant;

/// Reads `hints` until the stream ends, for at most `limit`; returns the hints it gave on the
/// way and how long the end took.
///
/// # Panics
/// When the stream is still open after `limit` (naming the hints it gave meanwhile).
pub async fn stream_ends_within(hints: &mut HintStream, limit: Duration) -> (Vec<Hint>, Duration) {
    match drain(hints, limit).await {
        Ok(ended) => ended,
        Err(seen) => panic!(
            "the hint stream is still open after {limit:?} (it gave {} hints meanwhile: {:?})",
            seen.len(),
            seen.iter().take(5).collect::<Vec<_>>()
        ),
    }
}

/// Waits for the stream to end (skipping the hints it still gives) within
/// [`PATIENCE`](crate::driver::PATIENCE); panics naming `what` if it stays open.
pub async fn hints_end(hints: &mut HintStream, what: &str) {
    if let Err(seen) = drain(hints, crate::driver::PATIENCE).await {
        panic!(
            "{what}: the hint stream did not end (it gave {} hints)",
            seen.len()
        );
    }
}

/// The hints given until the end and how long it took, or the hints given until `limit`.
async fn drain(
    hints: &mut HintStream,
    limit: Duration,
) -> Result<(Vec<Hint>, Duration), Vec<Hint>> {
    let started = Instant::now();
    let deadline = started + limit;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, hints.next()).await {
            Ok(Some(hint)) => seen.push(hint),
            Ok(None) => return Ok((seen, started.elapsed())),
            Err(_) => return Err(seen),
        }
    }
}
