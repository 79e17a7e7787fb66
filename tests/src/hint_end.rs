//! Waiting for a hint stream to end: a stream whose watch failed must end, so that the elector
//! stops trusting it and polls.

use std::time::Duration;

use futures::StreamExt;
use lock_core::{Hint, HintStream};
use tokio::time::Instant;

/// Reads `hints` until the stream ends, for at most `limit`; returns the hints it gave on the
/// way and how long the end took.
///
/// # Panics
/// When the stream is still open after `limit` (naming the hints it gave meanwhile).
pub async fn stream_ends_within(hints: &mut HintStream, limit: Duration) -> (Vec<Hint>, Duration) {
    let started = Instant::now();
    let deadline = started + limit;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, hints.next()).await {
            Ok(Some(hint)) => seen.push(hint),
            Ok(None) => return (seen, started.elapsed()),
            Err(_) => panic!(
                "the hint stream is still open after {limit:?} (it gave {} hints meanwhile: {:?})",
                seen.len(),
                seen.iter().take(5).collect::<Vec<_>>()
            ),
        }
    }
}
