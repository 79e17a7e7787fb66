//! Scenario 1, graceful handover: the leader of three candidates releases; measured from the
//! moment it starts leaving to the moment the next leader's term starts (its `StartedLeading`,
//! stamped on the wall clock).

use std::time::Duration;

use crate::clock::now_nanos;
use crate::error::BenchResult;
use crate::feed::{Feed, What};
use crate::members::{finish_all, observed, Member, Roster, Variant};
use crate::scenario::unique;

/// How many candidates take part.
const CANDIDATES: usize = 3;

/// Runs `handovers` handovers with candidates from `roster`; returns how long each took, in
/// nanoseconds.
pub async fn run(roster: &Roster, feed: &mut Feed, handovers: usize) -> BenchResult<Vec<i128>> {
    let election = unique("handover");
    let elections = [election.clone()];
    let patience = roster.timings.patience();
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
    for member in &members {
        if member.identity() != leader {
            observed(feed, start, &election, member.identity(), &leader, patience).await?;
        }
    }
    let mut samples = Vec::with_capacity(handovers);
    for _ in 0..handovers {
        settle(roster).await;
        let index = position(&members, &leader);
        let before = feed.mark();
        let released_at = now_nanos();
        members[index].leave()?;
        let next = feed
            .wait(before, patience, "the next leader", |stamp| {
                stamp.election == election
                    && stamp.what == What::Leading
                    && stamp.identity != leader
            })
            .await?;
        samples.push(next.at - released_at);
        // The old leader comes back as a fresh candidate, so that three always take part.
        let old = members.remove(index);
        let identity = old.identity().to_owned();
        old.release().await?;
        let joined = feed.mark();
        members.push(roster.join(&elections, &identity).await?);
        observed(feed, joined, &election, &identity, &next.identity, patience).await?;
        for member in &members {
            if member.identity() != next.identity && member.identity() != identity {
                observed(
                    feed,
                    before,
                    &election,
                    member.identity(),
                    &next.identity,
                    patience,
                )
                .await?;
            }
        }
        leader = next.identity;
    }
    finish_all(members).await?;
    feed.check(handovers + 1)?;
    Ok(samples)
}

fn position(members: &[Member], identity: &str) -> usize {
    members
        .iter()
        .position(|member| member.identity() == identity)
        .expect("the leader is one of the members")
}

/// Gives a candidate that just joined time to open its change hints. Without hints, the
/// handover also waits a random part of the retry period, so that polling standbys are met at
/// random points of their cycle rather than just after the new one's first read.
async fn settle(roster: &Roster) {
    let spread = match roster.variant {
        Variant::Ours => Duration::ZERO,
        Variant::Polling | Variant::ClientGo => roster.timings.retry.mul_f64(rand::random()),
    };
    tokio::time::sleep(Duration::from_millis(100) + spread).await;
}
