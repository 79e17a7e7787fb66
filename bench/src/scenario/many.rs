//! Scenario 4, many elections: one process holds many distinct elections on one server (Redis,
//! etcd or kube-apiserver), with client-go's default timings, all through one shared client
//! ([`Locks`]: on Redis one command connection and one pub/sub connection, on etcd one
//! connection and one watch, on Kubernetes one client and one watch of the namespace's Leases).
//! It runs in a child process (`bench many`) so that its CPU time and peak memory are its own.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leader_election::Locks;
use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, StopReason};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::{cpu_time, cpu_time_of, now_nanos, peak_rss_bytes, rss_bytes_of};
use crate::error::{BenchError, BenchResult};
use crate::plan::Timings;
use crate::servers::BackendServer;

/// What the child reports when it is done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManyReport {
    /// The backend's name.
    pub backend: String,
    /// Elections held.
    pub elections: usize,
    /// From starting the electors to all of them leading at once, or to the end of the wait
    /// for that ([`ACQUIRE_WAIT`]) when they never did.
    pub acquired_in: Duration,
    /// How many elections this process led when the measured window started: all of them,
    /// unless the wait for that ran out (an overloaded client or server loses terms as fast as
    /// it wins others).
    #[serde(default)]
    pub leading_at_start: u64,
    /// How long all were held and measured.
    pub held_for: Duration,
    /// Terms that ended for any reason other than the final cancellation, from the start
    /// (the acquiring burst included) to the end.
    pub leases_lost: u64,
    /// Of those, the terms that ended before the measured window started (while the others
    /// were still being acquired).
    #[serde(default)]
    pub lost_before_window: u64,
    /// Why the lost terms ended: each [`StopReason`]'s text, with its count.
    #[serde(default)]
    pub lost_by_reason: BTreeMap<String, u64>,
    /// Renews that succeeded in the measured window.
    pub renews: u64,
    /// Renew attempts that failed in the measured window.
    pub failed_renews: u64,
    /// The median renew latency in the window.
    pub renew_p50: Duration,
    /// The 99th percentile renew latency in the window.
    pub renew_p99: Duration,
    /// CPU time (user + system) used in the window, in seconds per second: 1.0 is one core.
    pub cores: f64,
    /// The process' peak resident memory, in bytes.
    pub peak_rss: u64,
    /// The server's CPU time in the window (its processes': redis-server; etcd; kube-apiserver
    /// and its etcd), in seconds per second. Measured by the parent.
    #[serde(default)]
    pub server_cores: f64,
    /// The server's resident memory at the window's end, in bytes. Measured by the parent.
    #[serde(default)]
    pub server_rss: u64,
    /// With --compete: when each election's first term started, in nanoseconds since 1970
    /// (see `clock`).
    #[serde(default)]
    pub started_at: Vec<i128>,
}

/// What `bench many` prints when its measured window starts, and when it ends.
const WINDOW_START: &str = "window start";
const WINDOW_END: &str = "window end";
/// How long `bench many` waits for all its elections to lead at once before it measures.
const ACQUIRE_WAIT: Duration = Duration::from_secs(180);
/// What `bench many --compete` prints once it has started a term in every election.
const ALL_LEADING: &str = "all leading";

/// Renew latencies in 100 µs buckets up to 10 s (the last bucket holds everything longer).
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    const BUCKET: Duration = Duration::from_micros(100);

    fn new() -> Self {
        Self {
            buckets: (0..100_001).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, latency: Duration) {
        let index = (latency.as_micros() / Self::BUCKET.as_micros()) as usize;
        self.buckets[index.min(self.buckets.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self) {
        self.buckets
            .iter()
            .for_each(|bucket| bucket.store(0, Ordering::Relaxed));
    }

    /// The upper edge of the bucket holding the `percent` percentile.
    fn percentile(&self, percent: u64) -> Duration {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let rank = (total * percent).div_ceil(100).max(1);
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::BUCKET * (index as u32 + 1);
            }
        }
        Duration::ZERO
    }
}

/// Terms that ended for any reason but the final cancellation, counted by why.
#[derive(Default)]
struct Losses(std::sync::Mutex<BTreeMap<String, u64>>);

impl Losses {
    /// Counts a term that ended for `reason`, unless it was cancelled (the run's end).
    fn record(&self, reason: &StopReason) {
        let kind = match reason {
            StopReason::Cancelled => return,
            // It names a holder: counted by kind, not by name.
            StopReason::Superseded { .. } => "superseded".to_owned(),
            other => other.to_string(),
        };
        *self.reasons().entry(kind).or_default() += 1;
    }

    /// How many terms were lost so far.
    fn count(&self) -> u64 {
        self.reasons().values().sum()
    }

    /// How many were lost so far for each reason.
    fn by_reason(&self) -> BTreeMap<String, u64> {
        self.reasons().clone()
    }

    fn reasons(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The arguments of `bench many`.
#[derive(Debug, clap::Args)]
pub struct ManyArgs {
    /// The lock URL (Redis, etcd or Kubernetes).
    #[arg(long)]
    url: String,
    /// How many elections to hold.
    #[arg(long)]
    elections: usize,
    /// How long to hold them once all are won, in seconds.
    #[arg(long)]
    seconds: u64,
    /// The candidate's identity.
    #[arg(long, default_value = "bench-many")]
    identity: String,
    /// The elections' names: PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "bench-many")]
    prefix: String,
    /// Compete with other candidates (scenario 7): client-go's default timings, or the quick
    /// run's with --quick-timings; lead what it wins, until its stdin closes; `--seconds` is
    /// not used.
    #[arg(long)]
    compete: bool,
    /// With --compete: the quick run's timings.
    #[arg(long)]
    quick_timings: bool,
    /// Renew every this many milliseconds while hints flow, instead of every retry period
    /// (`ElectionConfig::with_renew_interval`).
    #[arg(long, value_name = "MS")]
    renew_interval_ms: Option<u64>,
}

/// One candidate process of many elections (`bench many --compete`), started by
/// [`Competitor::start`]: it competes until [`Competitor::finish`] closes its stdin (or
/// [`Competitor::kill`] kills it).
pub struct Competitor {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Competitor {
    /// Starts a `bench many --compete` process as `identity` in `elections` elections
    /// `prefix-N` at `url`.
    pub fn start(
        url: &str,
        prefix: &str,
        elections: usize,
        identity: &str,
        quick_timings: bool,
        renew_interval: Option<Duration>,
    ) -> BenchResult<Self> {
        let program =
            std::env::current_exe().map_err(|err| BenchError::io("find the bench binary", err))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(["many", "--compete", "--seconds", "0", "--url", url])
            .args(["--prefix", prefix, "--identity", identity])
            .args(["--elections", &elections.to_string()]);
        if quick_timings {
            command.arg("--quick-timings");
        }
        if let Some(interval) = renew_interval {
            command.args(["--renew-interval-ms", &interval.as_millis().to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| BenchError::io("run bench many --compete", err))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
            while let Ok(Some(line)) = reader.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// Waits until it leads every one of its elections (at once or in turn, counting the terms
    /// it started), for at most `within`.
    pub async fn all_leading(&mut self, within: Duration) -> BenchResult<()> {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line == ALL_LEADING {
                    return Ok(());
                }
            }
            Err(BenchError::Setup(
                "bench many --compete ended before leading every election".to_owned(),
            ))
        };
        tokio::time::timeout(within, wait).await.map_err(|_| {
            BenchError::Timeout(format!("not leading every election within {within:?}"))
        })?
    }

    /// SIGKILL: nothing is released, as in a crash.
    pub fn kill(&mut self) -> BenchResult<()> {
        self.child
            .start_kill()
            .map_err(|err| BenchError::io("kill bench many --compete", err))
    }

    /// Closes its stdin and reads its report.
    pub async fn finish(mut self) -> BenchResult<ManyReport> {
        drop(self.child.stdin.take());
        let status = self
            .child
            .wait()
            .await
            .map_err(|err| BenchError::io("wait for bench many --compete", err))?;
        if !status.success() {
            return Err(BenchError::Setup(format!("bench many failed: {status}")));
        }
        let mut last = String::new();
        while let Some(line) = self.lines.recv().await {
            last = line;
        }
        serde_json::from_str(&last)
            .map_err(|err| BenchError::Setup(format!("bench many printed {last:?}: {err}")))
    }
}

/// `bench many`: holds the elections, then prints one [`ManyReport`] as JSON.
pub async fn run_child(args: ManyArgs) -> BenchResult<()> {
    let backend = leader_election::LockUrl::parse(&args.url)
        .map_err(|err| BenchError::Setup(err.to_string()))?
        .backend()
        .name()
        .to_owned();
    let locks = Locks::connect(&args.url).await?;
    let leading = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(Losses::default());
    let started_at: Arc<std::sync::Mutex<Vec<i128>>> = Arc::default();
    let renews = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Histogram::new());
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.elections);
    for index in 0..args.elections {
        let lock = locks.lock(&format!("{}-{index}", args.prefix))?;
        let config = if args.compete {
            let timings = if args.quick_timings {
                Timings::QUICK
            } else {
                Timings::CLIENT_GO
            };
            // Crash-like at the end, as client-go's candidates of the same scenario stop.
            timings
                .config(&args.identity, true)
                .with_release_on_cancel(false)
        } else {
            ElectionConfig::new(args.identity.as_str())
        };
        let config = match args.renew_interval_ms {
            Some(ms) => config.with_renew_interval(Duration::from_millis(ms)),
            None => config,
        };
        let elector = LeaderElector::new(lock, config)?;
        let (leading, lost, started_at) = (leading.clone(), lost.clone(), started_at.clone());
        // Only this election's first term is timed: a term lost and won again is counted
        // among the leases lost, not as a second takeover.
        let first_term = std::sync::atomic::AtomicBool::new(true);
        elector.on_event(move |event| match event {
            ElectionEvent::StartedLeading(_) => {
                leading.fetch_add(1, Ordering::Relaxed);
                if first_term.swap(false, Ordering::Relaxed) {
                    started_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(now_nanos());
                }
            }
            ElectionEvent::StoppedLeading { reason, .. } => {
                // Leaders now, not terms ever started: "all leading" means all at once.
                leading.fetch_sub(1, Ordering::Relaxed);
                lost.record(reason);
            }
            _ => {}
        });
        let (renews, failed, latencies) = (renews.clone(), failed.clone(), latencies.clone());
        elector.on_renew(move |report| {
            if report.outcome.is_renewed() {
                renews.fetch_add(1, Ordering::Relaxed);
                latencies.record(report.latency);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        });
        tasks.push(tokio::spawn(elector.run(cancel.child_token())));
    }
    if args.compete {
        let all = args.elections as u64;
        tokio::spawn(async move {
            while leading.load(Ordering::Relaxed) < all {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!("{ALL_LEADING}");
        });
        return compete(args, tasks, cancel, lost, started_at, started).await;
    }
    let all = args.elections as u64;
    // Measured even if not all lead by then: the window then shows what overload costs.
    let deadline = started + ACQUIRE_WAIT;
    while leading.load(Ordering::Relaxed) < all && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acquired_in = started.elapsed();
    let leading_at_start = leading.load(Ordering::Relaxed);
    let lost_before_window = lost.count();
    renews.store(0, Ordering::Relaxed);
    failed.store(0, Ordering::Relaxed);
    latencies.reset();
    // The parent measures the server over the same window, from these lines.
    println!("{WINDOW_START}");
    let (cpu_before, window_start) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let held_for = window_start.elapsed();
    println!("{WINDOW_END}");
    let cores = (cpu_time() - cpu_before).as_secs_f64() / held_for.as_secs_f64();
    let report = ManyReport {
        backend,
        elections: args.elections,
        acquired_in,
        leading_at_start,
        held_for,
        leases_lost: lost.count(),
        lost_before_window,
        lost_by_reason: lost.by_reason(),
        renews: renews.load(Ordering::Relaxed),
        failed_renews: failed.load(Ordering::Relaxed),
        renew_p50: latencies.percentile(50),
        renew_p99: latencies.percentile(99),
        cores,
        peak_rss: peak_rss_bytes(),
        server_cores: 0.0,
        server_rss: 0,
        started_at: Vec::new(),
    };
    cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report serializes")
    );
    Ok(())
}

/// Runs `bench many` against `server` (Redis, etcd or Kubernetes) and reads its report, with
/// the server's CPU and memory over the child's measured window.
pub async fn run(
    server: &BackendServer,
    elections: usize,
    held_for: Duration,
) -> BenchResult<ManyReport> {
    let program =
        std::env::current_exe().map_err(|err| BenchError::io("find the bench binary", err))?;
    let mut child = tokio::process::Command::new(program)
        .arg("many")
        .arg("--url")
        .arg(&server.target.url)
        .arg("--elections")
        .arg(elections.to_string())
        .arg("--seconds")
        .arg(held_for.as_secs().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| BenchError::io("run bench many", err))?;
    let pids = server.pids();
    let server_cpu = || pids.iter().map(|pid| cpu_time_of(*pid)).sum::<Duration>();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let (mut start, mut server_cores, mut server_rss, mut last) = (None, 0.0, 0, String::new());
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|err| BenchError::io("read bench many's output", err))?
    {
        if line == WINDOW_START {
            start = Some((server_cpu(), Instant::now()));
        } else if line == WINDOW_END {
            if let Some((cpu, at)) = start {
                server_cores = (server_cpu() - cpu).as_secs_f64() / at.elapsed().as_secs_f64();
            }
            server_rss = pids.iter().map(|pid| rss_bytes_of(*pid)).sum();
        } else {
            last = line;
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|err| BenchError::io("wait for bench many", err))?;
    if !status.success() {
        return Err(BenchError::Setup(format!("bench many failed: {status}")));
    }
    let mut report: ManyReport = serde_json::from_str(&last)
        .map_err(|err| BenchError::Setup(format!("bench many printed {last:?}: {err}")))?;
    report.server_cores = server_cores;
    report.server_rss = server_rss;
    Ok(report)
}

/// `bench many --compete` after the electors started: runs until stdin closes, then reports the
/// leases lost (terms that ended other than by that end).
async fn compete(
    args: ManyArgs,
    tasks: Vec<tokio::task::JoinHandle<lock_core::RunOutcome>>,
    cancel: CancellationToken,
    lost: Arc<Losses>,
    started_at: Arc<std::sync::Mutex<Vec<i128>>>,
    started: Instant,
) -> BenchResult<()> {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while tokio::io::AsyncReadExt::read(&mut stdin, &mut buffer)
        .await
        .map_err(|err| BenchError::io("read stdin", err))?
        > 0
    {}
    let held_for = started.elapsed();
    cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let backend = leader_election::LockUrl::parse(&args.url)
        .map_err(|err| BenchError::Setup(err.to_string()))?
        .backend();
    let report = ManyReport {
        backend: backend.name().to_owned(),
        elections: args.elections,
        acquired_in: Duration::ZERO,
        leading_at_start: 0,
        held_for,
        leases_lost: lost.count(),
        lost_before_window: 0,
        lost_by_reason: lost.by_reason(),
        renews: 0,
        failed_renews: 0,
        renew_p50: Duration::ZERO,
        renew_p99: Duration::ZERO,
        cores: 0.0,
        peak_rss: peak_rss_bytes(),
        server_cores: 0.0,
        server_rss: 0,
        started_at: std::mem::take(&mut *started_at.lock().unwrap_or_else(|p| p.into_inner())),
    };
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report serializes")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_count_every_end_but_the_cancellation_by_kind() {
        let losses = Losses::default();
        losses.record(&StopReason::Cancelled);
        assert_eq!(losses.count(), 0);
        for holder in ["a", "b"] {
            losses.record(&StopReason::Superseded {
                holder: Some(holder.to_owned()),
            });
        }
        losses.record(&StopReason::RenewDeadlineExceeded);
        assert_eq!(losses.count(), 3);
        let by_reason = losses.by_reason();
        assert_eq!(by_reason["superseded"], 2);
        assert_eq!(by_reason[&StopReason::RenewDeadlineExceeded.to_string()], 1);
    }

    #[test]
    fn the_histogram_reports_bucket_edges() {
        let histogram = Histogram::new();
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        assert_eq!(histogram.percentile(50), Duration::from_micros(50_100));
        assert_eq!(histogram.percentile(99), Duration::from_micros(99_100));
        histogram.record(Duration::from_secs(60));
        assert_eq!(histogram.percentile(100), Duration::from_micros(10_000_100));
    }
}
