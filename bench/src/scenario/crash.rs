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
use crate::feed::{Feed, Mark, Stamp, What};
use crate::golang::GoCandidate;
use crate::members::{finish_all, observed, Member, Roster, Variant};
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

/// Crashes `crashes` leaders about `spacing` apart; returns the excess over the lease of each
/// takeover, measured from when the leader sent its last successful renew, in nanoseconds. It
/// is negative when a standby took over before that lease had run out: ours never should (it
/// restarts its lease clock on every renew it sees), client-go's can, by up to a second, since
/// it compares records whose times have whole seconds and misses renews within one second.
pub async fn run(
    roster: &Roster,
    feed: &mut Feed,
    crashes: usize,
    spacing: Duration,
) -> BenchResult<Vec<i128>> {
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
    let killed_at = kill_between_renews(feed, leaders, &elections, timings.retry, spacing).await?;

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
        // The old leader counted itself leader until the renew deadline after it sent its last
        // renew: a new term before then would mean two leaders.
        let deadline = last_renew + timings.renew.as_nanos() as i128;
        if takeover.at < deadline {
            return Err(BenchError::Safety(format!(
                "{} took over from {leader} {:?} before the renew deadline of its last renew",
                takeover.identity,
                span(takeover.at, deadline)
            )));
        }
        excess.push(takeover.at - (last_renew + timings.lease.as_nanos() as i128));
        // A killed leader's term ends with its process.
        let _ = roster.feed.send(Stamp {
            election: election.clone(),
            identity: leader,
            what: What::Lost,
            at: killed_at[index],
        });
    }
    finish_all(standbys).await?;
    feed.check(2 * crashes)?;
    Ok(excess)
}

/// Kills every leader once its turn has come (`spacing` apart, in order) and it is between
/// renews: at least a tenth and at most eight tenths of a retry period after the last renew this
/// benchmark has seen from it. So no renew is in flight, and the last one is known (its stamp
/// has arrived). Returns when each was killed.
async fn kill_between_renews(
    feed: &mut Feed,
    leaders: Vec<Leader>,
    elections: &[String],
    retry: Duration,
    spacing: Duration,
) -> BenchResult<Vec<i128>> {
    let first = Instant::now();
    let give_up = first + spacing * leaders.len() as u32 + retry * 10;
    let mut waiting: Vec<Option<Leader>> = leaders.into_iter().map(Some).collect();
    let mut killed_at = vec![0; waiting.len()];
    let mut last_renews: Vec<Option<i128>> = vec![None; waiting.len()];
    let mut cursor = Mark::START;
    let (earliest, latest) = (retry.mul_f64(0.1), retry.mul_f64(0.8));
    while waiting.iter().any(Option::is_some) {
        for stamp in feed.advance(&mut cursor) {
            if stamp.what != What::Renewed {
                continue;
            }
            if let Some(index) = elections.iter().position(|e| *e == stamp.election) {
                if stamp.identity == format!("leader-{index}") {
                    last_renews[index] = Some(stamp.at);
                }
            }
        }
        if Instant::now() > give_up {
            return Err(BenchError::Timeout(
                "leaders that did not renew on time to be killed".to_owned(),
            ));
        }
        for index in 0..waiting.len() {
            if waiting[index].is_none() || Instant::now() < first + spacing * index as u32 {
                continue;
            }
            let Some(last_renew) = last_renews[index] else {
                continue;
            };
            let age = span(last_renew, now_nanos());
            if age >= earliest && age <= latest {
                if let Some(process) = waiting[index].take() {
                    process.kill().await?;
                    killed_at[index] = now_nanos();
                }
            }
        }
        sleep_until(Instant::now() + Duration::from_millis(5)).await;
    }
    Ok(killed_at)
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
