//! Scenario 2, crash takeover: a leader's process is killed (SIGKILL, so it releases nothing)
//! and a standby takes over once the lease has run out. What is measured is the excess: the
//! time from the leader's last successful renew to the new term's start, minus the lease
//! duration. Each crash happens in an election of its own, the elections run side by side and
//! the kills are spaced out, so that many takeovers fit in about two lease durations.

use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::candidate::ChildCandidate;
use crate::clock::{now_nanos, span};
use crate::error::{BenchError, BenchResult};
use crate::feed::{Feed, Stamp, What};
use crate::golang::GoCandidate;
use crate::members::{observed, Member, Roster, Variant};
use crate::scenario::unique;

/// The standbys of every election.
const STANDBYS: [&str; 2] = ["standby-a", "standby-b"];

/// A leader that can be killed.
enum Leader {
    Ours(ChildCandidate),
    Go(GoCandidate),
}

impl Leader {
    async fn start(roster: &Roster, election: &str, identity: &str) -> BenchResult<Self> {
        match (&roster.variant, &roster.go) {
            (Variant::ClientGo, Some((binary, kubeconfig))) => Ok(Leader::Go(GoCandidate::start(
                binary,
                kubeconfig,
                &[election.to_owned()],
                identity,
                roster.timings,
                false,
                &roster.feed,
            )?)),
            (Variant::ClientGo, None) => Err(BenchError::Setup(
                "client-go runs on Kubernetes only".to_owned(),
            )),
            _ => Ok(Leader::Ours(
                ChildCandidate::start(
                    &roster.target,
                    election,
                    identity,
                    roster.timings,
                    &roster.feed,
                )
                .await?,
            )),
        }
    }

    async fn kill(self) -> BenchResult<()> {
        match self {
            Leader::Ours(child) => child.kill().await,
            Leader::Go(go) => go.kill().await,
        }
    }
}

/// Crashes `crashes` leaders `spacing` apart; returns the excess over the lease of each
/// takeover (0 when the new term started within the lease of the last renew).
pub async fn run(
    roster: &Roster,
    feed: &mut Feed,
    crashes: usize,
    spacing: Duration,
) -> BenchResult<Vec<Duration>> {
    let timings = roster.timings;
    let patience = timings.patience();
    let elections: Vec<String> = (0..crashes).map(|_| unique("crash")).collect();
    let leader_of = |index: usize| format!("leader-{index}");
    let start = feed.mark();
    let mut leaders = Vec::new();
    for (index, election) in elections.iter().enumerate() {
        leaders.push(Leader::start(roster, election, &leader_of(index)).await?);
    }
    for (index, election) in elections.iter().enumerate() {
        let leader = leader_of(index);
        feed.wait(start, patience, &format!("{leader} leading"), |stamp| {
            stamp.election == *election && stamp.identity == leader && stamp.what == What::Leading
        })
        .await?;
    }
    let standbys = join_standbys(roster, &elections).await?;
    for (index, election) in elections.iter().enumerate() {
        for standby in STANDBYS {
            observed(feed, start, election, standby, &leader_of(index), patience).await?;
        }
    }
    // Standbys see at least one renew as it happens before the first kill.
    tokio::time::sleep(timings.retry * 2 + Duration::from_millis(200)).await;

    let first_kill = Instant::now();
    let mut killed_at = Vec::new();
    for (index, leader) in leaders.into_iter().enumerate() {
        sleep_until(first_kill + spacing * index as u32).await;
        leader.kill().await?;
        killed_at.push(now_nanos());
    }

    let mut excess = Vec::new();
    for (index, election) in elections.iter().enumerate() {
        let leader = leader_of(index);
        let takeover = feed
            .wait(
                start,
                patience,
                &format!("a takeover from {leader}"),
                |stamp| {
                    stamp.election == *election
                        && stamp.identity != leader
                        && stamp.what == What::Leading
                },
            )
            .await?;
        let last_renew = feed
            .since(start, |stamp| {
                stamp.election == *election
                    && stamp.identity == leader
                    && stamp.what == What::Renewed
                    && stamp.at <= killed_at[index]
            })
            .last()
            .map(|stamp| stamp.at)
            .ok_or_else(|| BenchError::Setup(format!("{leader} never renewed")))?;
        excess.push(span(last_renew, takeover.at).saturating_sub(timings.lease));
        // A killed leader's term ends with its process.
        let _ = roster.feed.send(Stamp {
            election: election.clone(),
            identity: leader,
            what: What::Lost,
            at: killed_at[index],
        });
    }
    for standby in standbys {
        standby.finish().await?;
    }
    feed.check_one_leader()?;
    Ok(excess)
}

/// Two standbys per election: ours one candidate per election each, Go's two processes that
/// take part in every election.
async fn join_standbys(roster: &Roster, elections: &[String]) -> BenchResult<Vec<Member>> {
    let mut standbys = Vec::new();
    for standby in STANDBYS {
        if roster.variant == Variant::ClientGo {
            standbys.push(roster.join(elections, standby).await?);
        } else {
            for election in elections {
                standbys.push(roster.join(std::slice::from_ref(election), standby).await?);
            }
        }
    }
    Ok(standbys)
}
