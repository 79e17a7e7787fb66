//! Scenario 3, backend load: the requests a leader and one idle standby send, counted at the
//! server.
//!
//! Counts are read right after a renew of the leader, so each window holds a whole number of
//! renews. The leader alone is counted first, for as long as the standby will be: that gives
//! its requests per renew. Then a standby joins, and its requests are what the server counted
//! in the window minus the leader's renews times that figure. The estimate is signed (noise can
//! make it negative) and uncertain by about one request per window: a request of the leader's
//! that comes once a minute (a keep-alive) may fall into one window and not the other. The
//! standby's own count of its lock calls is the cross-check.

use std::time::Duration;

use crate::error::BenchResult;
use crate::feed::{Feed, What};
use crate::members::{finish_all, observed, Member, Roster};
use crate::scenario::unique;
use crate::servers::BackendServer;

/// What one window counted.
#[derive(Clone, Copy, Debug)]
struct Window {
    seconds: f64,
    renews: u64,
    /// Requests the server counted; `None` without a server.
    server: Option<u64>,
    /// Lock calls the standby made itself (0 without one).
    standby_calls: u64,
}

/// Requests per second of one variant's leader and idle standby.
#[derive(Clone, Debug)]
pub struct Load {
    /// The leader's requests per second, counted at the server (`None` without a server).
    pub leader_server: Option<f64>,
    /// The idle standby's requests per second, counted at the server (signed: see the module
    /// documentation).
    pub standby_server: Option<f64>,
    /// The idle standby's lock calls per second, counted by the candidate.
    pub standby_calls: f64,
    /// How long the standby was counted (renew to renew).
    pub window: Duration,
}

/// Measures the leader alone, then the leader with one idle standby of each roster in
/// `standbys`, for `window` each.
pub async fn run(
    leader_roster: &Roster,
    standby_rosters: &[&Roster],
    server: &BackendServer,
    feed: &mut Feed,
    window: Duration,
) -> BenchResult<Vec<Load>> {
    let election = unique("load");
    let elections = [election.clone()];
    let patience = leader_roster.timings.patience();
    let start = feed.mark();
    let leader = leader_roster.join(&elections, "leader").await?;
    feed.wait(start, patience, "the leader", |stamp| {
        stamp.election == election && stamp.what == What::Leading
    })
    .await?;
    let alone = count(feed, server, &election, None, window).await?;
    let mut loads = Vec::new();
    for roster in standby_rosters {
        let joined = feed.mark();
        let standby = roster.join(&elections, "standby").await?;
        observed(feed, joined, &election, "standby", "leader", patience).await?;
        // Past its first read and its subscription.
        tokio::time::sleep(roster.timings.retry * 2).await;
        let with_standby = count(feed, server, &election, Some(&standby), window).await?;
        finish_all(vec![standby]).await?;
        loads.push(attribute(alone, with_standby));
    }
    finish_all(vec![leader]).await?;
    feed.check(1)?;
    Ok(loads)
}

/// Splits the window's server count into the leader's share (its renews at the calibrated
/// rate) and the standby's.
fn attribute(alone: Window, with_standby: Window) -> Load {
    let per_renew = |window: &Window| {
        window
            .server
            .map(|requests| requests as f64 / window.renews.max(1) as f64)
    };
    let leader_server = alone.server.map(|requests| requests as f64 / alone.seconds);
    let standby_server = match (per_renew(&alone), with_standby.server) {
        (Some(per_renew), Some(requests)) => {
            let leader_share = per_renew * with_standby.renews as f64;
            Some((requests as f64 - leader_share) / with_standby.seconds)
        }
        _ => None,
    };
    Load {
        leader_server,
        standby_server,
        standby_calls: with_standby.standby_calls as f64 / with_standby.seconds,
        window: Duration::from_secs_f64(with_standby.seconds),
    }
}

/// Counts from just after one renew of the leader to just after the first renew at least
/// `length` later.
async fn count(
    feed: &mut Feed,
    server: &BackendServer,
    election: &str,
    standby: Option<&Member>,
    length: Duration,
) -> BenchResult<Window> {
    let patience = length + Duration::from_secs(30);
    let renewed = |stamp: &crate::feed::Stamp| {
        stamp.election == election && stamp.identity == "leader" && stamp.what == What::Renewed
    };
    let from = feed.mark();
    let first = feed.wait(from, patience, "a renew", renewed).await?;
    let server_before = server.requests().await?;
    let calls_before = calls(feed, standby);
    tokio::time::sleep(length).await;
    let after = feed.mark();
    let last = feed.wait(after, patience, "a renew", renewed).await?;
    let server_after = server.requests().await?;
    let calls_after = calls(feed, standby);
    let renews = feed
        .since(from, |stamp| {
            renewed(stamp) && stamp.at > first.at && stamp.at <= last.at
        })
        .len() as u64;
    Ok(Window {
        seconds: (last.at - first.at) as f64 / 1e9,
        renews,
        server: server_before
            .zip(server_after)
            .map(|(b, a)| a.saturating_sub(b)),
        standby_calls: calls_after - calls_before,
    })
}

/// Lock calls the standby has made so far: counted by our candidate, or reported by Go's.
fn calls(feed: &mut Feed, standby: Option<&Member>) -> u64 {
    match standby {
        None => 0,
        Some(Member::Ours(candidate)) => candidate.calls(),
        Some(Member::Go(go)) => {
            let start = crate::feed::Mark::START;
            feed.since(start, |stamp| {
                stamp.identity == go.identity && matches!(stamp.what, What::Call { .. })
            })
            .len() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standby_gets_what_the_leader_did_not_send() {
        let alone = Window {
            seconds: 20.0,
            renews: 10,
            server: Some(10),
            standby_calls: 0,
        };
        let with_standby = Window {
            seconds: 60.0,
            renews: 30,
            server: Some(33),
            standby_calls: 3,
        };
        let load = attribute(alone, with_standby);
        assert_eq!(load.leader_server, Some(0.5));
        assert!((load.standby_server.unwrap() - 0.05).abs() < 1e-9);
        assert!((load.standby_calls - 0.05).abs() < 1e-9);
    }
}
