//! The candidates of one scenario, whoever runs them: our elector with hints, our elector
//! polling (hints off, as client-go works), or client-go's elector in Go.

use std::path::PathBuf;
use std::time::Duration;

use lock_core::RunOutcome;

use crate::candidate::Candidate;
use crate::error::{BenchError, BenchResult};
use crate::feed::{Feed, Mark, Sender, What};
use crate::golang::GoCandidate;
use crate::plan::Timings;
use crate::target::Target;

/// Whose elector, and how its standbys learn of changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Ours, with change hints (the default).
    Ours,
    /// Ours with hints off: standbys poll every retry period, as client-go's do.
    Polling,
    /// client-go's own elector (Kubernetes only).
    ClientGo,
}

impl Variant {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Ours => "ours (hints)",
            Variant::Polling => "ours, polling (hints off)",
            Variant::ClientGo => "client-go's elector",
        }
    }
}

/// Everything needed to start candidates of one variant.
#[derive(Clone)]
pub struct Roster {
    /// Whose elector.
    pub variant: Variant,
    /// Where.
    pub target: Target,
    /// With which timings.
    pub timings: Timings,
    /// The Go elector binary and the admin kubeconfig, for [`Variant::ClientGo`].
    pub go: Option<(PathBuf, PathBuf)>,
    /// Where candidates report.
    pub feed: Sender,
}

/// One running candidate.
pub enum Member {
    /// Ours, in this process.
    Ours(Candidate),
    /// client-go's, in a Go process.
    Go(GoCandidate),
}

impl Roster {
    /// Starts a candidate `identity` in `elections` (ours: exactly one election per candidate).
    pub async fn join(&self, elections: &[String], identity: &str) -> BenchResult<Member> {
        match self.variant {
            Variant::Ours | Variant::Polling => {
                let [election] = elections else {
                    return Err(BenchError::Setup(
                        "one of our candidates takes part in one election".to_owned(),
                    ));
                };
                let hints = self.variant == Variant::Ours;
                let candidate = Candidate::join(
                    &self.target,
                    election,
                    identity,
                    self.timings,
                    hints,
                    &self.feed,
                )
                .await?;
                Ok(Member::Ours(candidate))
            }
            Variant::ClientGo => {
                let (binary, kubeconfig) = self.go.as_ref().ok_or_else(|| {
                    BenchError::Setup("client-go runs on Kubernetes only".to_owned())
                })?;
                let go = GoCandidate::start(
                    binary,
                    kubeconfig,
                    elections,
                    identity,
                    self.timings,
                    true,
                    &self.feed,
                )?;
                Ok(Member::Go(go))
            }
        }
    }
}

impl Member {
    /// Its identity.
    pub fn identity(&self) -> &str {
        match self {
            Member::Ours(candidate) => &candidate.identity,
            Member::Go(go) => &go.identity,
        }
    }

    /// Starts leaving: a leader releases (ours: cancellation with release; Go: SIGTERM).
    pub fn leave(&self) -> BenchResult<()> {
        match self {
            Member::Ours(candidate) => {
                candidate.leave();
                Ok(())
            }
            Member::Go(go) => go.interrupt(),
        }
    }

    /// Leaves and waits until it is gone; true when it ended well: ours cancelled (and
    /// released, if it held the lock), Go's process exited with status 0.
    pub async fn finish(self) -> BenchResult<bool> {
        match self {
            Member::Ours(candidate) => Ok(matches!(
                candidate.finish().await?,
                RunOutcome::Cancelled { .. }
            )),
            Member::Go(go) => {
                go.interrupt()?;
                go.exited().await
            }
        }
    }

    /// Leaves as the leader and waits until it is gone; fails unless it released the lock
    /// (ours says so; Go's exits with status 0 after client-go's release).
    pub async fn release(self) -> BenchResult<()> {
        let identity = self.identity().to_owned();
        let released = match self {
            Member::Ours(candidate) => matches!(
                candidate.finish().await?,
                RunOutcome::Cancelled { released: true }
            ),
            Member::Go(go) => go.exited().await?,
        };
        if released {
            Ok(())
        } else {
            Err(BenchError::Safety(format!(
                "{identity} left without releasing"
            )))
        }
    }
}

/// Waits until `identity` has observed `leader` as the holder of `election` (from `from` on).
pub async fn observed(
    feed: &mut Feed,
    from: Mark,
    election: &str,
    identity: &str,
    leader: &str,
    within: Duration,
) -> BenchResult<()> {
    feed.wait(
        from,
        within,
        &format!("{identity} observing {leader}"),
        |stamp| {
            stamp.election == election
                && stamp.identity == identity
                && stamp.what
                    == What::NewLeader {
                        leader: Some(leader.to_owned()),
                    }
        },
    )
    .await
    .map(drop)
}

/// Stops every candidate; fails if one did not end well. All are told to leave before any is
/// waited for, so that no standby takes over from a leader that releases on its way out.
pub async fn finish_all(members: Vec<Member>) -> BenchResult<()> {
    for member in &members {
        member.leave()?;
    }
    for member in members {
        let identity = member.identity().to_owned();
        if !member.finish().await? {
            return Err(BenchError::Safety(format!("{identity} did not end well")));
        }
    }
    Ok(())
}
