//! Our elector as a benchmark candidate: in this process, or alone in a child process that can
//! be killed like a crashed replica.

use std::process::Stdio;
use std::time::Duration;

use lock_core::testing::{FaultControl, FaultyLock};
use lock_core::{ElectionEvent, LeaderElector, RunOutcome, StopReason};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::now_nanos;
use crate::error::{BenchError, BenchResult};
use crate::feed::{Sender, Stamp, What};
use crate::plan::Timings;
use crate::target::Target;

/// One of our electors running in this process, reporting to a feed.
pub struct Candidate {
    /// Its identity.
    pub identity: String,
    cancel: CancellationToken,
    task: JoinHandle<RunOutcome>,
    calls: FaultControl,
}

impl Candidate {
    /// Joins election `election` on `target` with a connection of its own.
    pub async fn join(
        target: &Target,
        election: &str,
        identity: &str,
        timings: Timings,
        hints: bool,
        feed: &Sender,
    ) -> BenchResult<Self> {
        let lock = FaultyLock::new(target.open(election).await?);
        let calls = lock.faults();
        let elector = LeaderElector::new(lock, timings.config(identity, hints))?;
        report(&elector, election, identity, feed);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(elector.run(cancel.clone()));
        Ok(Self {
            identity: identity.to_owned(),
            cancel,
            task,
            calls,
        })
    }

    /// Lock calls it has made so far (get, create and update).
    pub fn calls(&self) -> u64 {
        let counts = self.calls.counts();
        counts.gets() + counts.creates() + counts.updates()
    }

    /// Starts leaving (a leader releases the lock); [`finish`](Self::finish) waits for it.
    pub fn leave(&self) {
        self.cancel.cancel();
    }

    /// Leaves and waits until it is gone.
    pub async fn finish(mut self) -> BenchResult<RunOutcome> {
        self.cancel.cancel();
        (&mut self.task)
            .await
            .map_err(|err| BenchError::Safety(format!("{} panicked: {err}", self.identity)))
    }
}

impl Drop for Candidate {
    /// A candidate dropped on an error path leaves too (and releases if it leads).
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Sends the elector's events and successful renews to the feed, stamped on the wall clock at
/// the moment the elector reports them (inline, before its next lock call).
fn report(elector: &LeaderElector, election: &str, identity: &str, feed: &Sender) {
    let stamp = {
        let election = election.to_owned();
        let identity = identity.to_owned();
        move |what: What| Stamp {
            election: election.clone(),
            identity: identity.clone(),
            what,
            at: now_nanos(),
        }
    };
    let events = feed.clone();
    let event_stamp = stamp.clone();
    elector.on_event(move |event| {
        let what = match event {
            ElectionEvent::StartedLeading(_) => What::Leading,
            ElectionEvent::StoppedLeading { reason, .. } => match reason {
                // A planned handover ends a term as deliberately as a cancellation does.
                StopReason::Cancelled | StopReason::HandedOver { .. } => What::Lost,
                other => What::LostLease {
                    reason: format!("{other:?}"),
                },
            },
            ElectionEvent::NewLeader(leader) => What::NewLeader {
                leader: leader.clone(),
            },
            _ => return,
        };
        let _ = events.send(event_stamp(what));
    });
    let renews = feed.clone();
    elector.on_renew(move |renew| {
        if renew.outcome.is_renewed() {
            let mut renewed = stamp(What::Renewed);
            renewed.at -= renew.latency.as_nanos() as i128;
            let _ = renews.send(renewed);
        }
    });
}

/// Our elector alone in a child process (`bench candidate`), printing its stamps as JSON lines.
pub struct ChildCandidate {
    child: Child,
}

impl ChildCandidate {
    /// Starts `bench candidate` for election `election`; its stamps go to `feed`.
    pub async fn start(
        target: &Target,
        election: &str,
        identity: &str,
        timings: Timings,
        feed: &Sender,
    ) -> BenchResult<Self> {
        let program =
            std::env::current_exe().map_err(|err| BenchError::io("find the bench binary", err))?;
        let target = serde_json::to_string(target).expect("a target serializes");
        let mut child = Command::new(program)
            .arg("candidate")
            .arg("--target")
            .arg(target)
            .arg("--election")
            .arg(election)
            .arg("--identity")
            .arg(identity)
            .arg("--lease-ms")
            .arg(timings.lease.as_millis().to_string())
            .arg("--renew-ms")
            .arg(timings.renew.as_millis().to_string())
            .arg("--retry-ms")
            .arg(timings.retry.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| BenchError::io("start a candidate process", err))?;
        let stdout = child.stdout.take().expect("piped stdout");
        forward_lines(stdout, feed.clone(), |line| {
            serde_json::from_str(line).into_iter().collect()
        });
        Ok(Self { child })
    }

    /// SIGKILL: the process dies without releasing anything.
    pub async fn kill(mut self) -> BenchResult<()> {
        self.child
            .start_kill()
            .map_err(|err| BenchError::io("kill a candidate process", err))?;
        self.child
            .wait()
            .await
            .map_err(|err| BenchError::io("wait for a killed candidate", err))?;
        Ok(())
    }
}

/// Reads `output` line by line until it ends, sending the stamps `parse` makes of each line.
pub fn forward_lines(
    output: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    feed: Sender,
    parse: impl Fn(&str) -> Vec<Stamp> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            for stamp in parse(&line) {
                if feed.send(stamp).is_err() {
                    return;
                }
            }
        }
    });
}

/// The arguments of `bench candidate`.
#[derive(Debug, clap::Args)]
pub struct CandidateArgs {
    /// Where to elect, as JSON (see `Target`).
    #[arg(long)]
    target: String,
    /// The election.
    #[arg(long)]
    election: String,
    /// This candidate's identity.
    #[arg(long)]
    identity: String,
    /// Lease duration in milliseconds.
    #[arg(long)]
    lease_ms: u64,
    /// Renew deadline in milliseconds.
    #[arg(long)]
    renew_ms: u64,
    /// Retry period in milliseconds.
    #[arg(long)]
    retry_ms: u64,
}

/// `bench candidate`: elects until killed, printing one JSON stamp per line.
pub async fn run_child(args: CandidateArgs) -> BenchResult<()> {
    let target: Target = serde_json::from_str(&args.target)
        .map_err(|err| BenchError::Setup(format!("bad --target: {err}")))?;
    let timings = Timings {
        lease: Duration::from_millis(args.lease_ms),
        renew: Duration::from_millis(args.renew_ms),
        retry: Duration::from_millis(args.retry_ms),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    // Runs until the benchmark kills the process: `sender` stays alive, so the loop never ends.
    let _candidate = Candidate::join(
        &target,
        &args.election,
        &args.identity,
        timings,
        true,
        &sender,
    )
    .await?;
    let mut stdout = tokio::io::stdout();
    while let Some(stamp) = receiver.recv().await {
        let mut line = serde_json::to_string(&stamp).expect("a stamp serializes");
        line.push('\n');
        stdout
            .write_all(line.as_bytes())
            .await
            .map_err(|err| BenchError::io("write a stamp", err))?;
        stdout
            .flush()
            .await
            .map_err(|err| BenchError::io("write a stamp", err))?;
    }
    Ok(())
}
