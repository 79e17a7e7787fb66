//! Scenario 6, planned handover: three of our candidates; `request_handover` names a standby,
//! and the time is measured from the request (just before its write) to the named candidate's
//! term starting (its `StartedLeading`, stamped on the wall clock). The old leader stays in
//! the election as a standby.

use std::time::Duration;

use lock_core::request_handover;

use crate::clock::now_nanos;
use crate::error::{BenchError, BenchResult};
use crate::feed::{Feed, What};
use crate::members::{finish_all, observed, Roster};
use crate::scenario::unique;

/// How many candidates take part.
const CANDIDATES: usize = 3;

/// How long the request's read and write may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `handovers` planned handovers among candidates from `roster`, each to the standby
/// after the leader in a fixed order; returns how long each took, in nanoseconds.
pub async fn run(roster: &Roster, feed: &mut Feed, handovers: usize) -> BenchResult<Vec<i128>> {
    let election = unique("planned");
    let elections = [election.clone()];
    let patience = roster.timings.patience();
    let requester = roster.target.open(&election).await?;
    let start = feed.mark();
    let mut members = Vec::new();
    for index in 0..CANDIDATES {
        members.push(roster.join(&elections, &format!("c{index}")).await?);
    }
    let first = feed
        .wait(start, patience, "a first leader", |stamp| {
            stamp.election == election && stamp.what == What::Leading
        })
        .await?;
    let mut leader = first.identity;
    let mut samples = Vec::with_capacity(handovers);
    for _ in 0..handovers {
        for member in &members {
            if member.identity() != leader {
                observed(feed, start, &election, member.identity(), &leader, patience).await?;
            }
        }
        // Let the old leader's release settle into a standby's watch.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let index = members
            .iter()
            .position(|member| member.identity() == leader)
            .expect("the leader is one of the members");
        let to = members[(index + 1) % members.len()].identity().to_owned();
        let before = feed.mark();
        let asked_at = now_nanos();
        request_handover(requester.as_ref(), &to, CALL_TIMEOUT)
            .await
            .map_err(|err| BenchError::Setup(format!("requesting a handover to {to}: {err}")))?;
        let next = feed
            .wait(before, patience, "the named candidate's term", |stamp| {
                stamp.election == election && stamp.what == What::Leading
            })
            .await?;
        if next.identity != to {
            return Err(BenchError::Safety(format!(
                "{} took over although the handover named {to}",
                next.identity
            )));
        }
        samples.push(next.at - asked_at);
        leader = next.identity;
    }
    finish_all(members).await?;
    feed.check(handovers + 1)?;
    Ok(samples)
}
