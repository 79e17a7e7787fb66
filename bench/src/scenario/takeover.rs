//! Scenario 8, cold start and takeover of many elections: one process (`bench many --compete`)
//! starts alone in every election and wins them all (the cold start); a second joins as the
//! standby of all of them; the first is killed (SIGKILL, nothing released) and the second takes
//! every election over. The takeover of each election is timed from the kill, against the goal
//! of the lease plus one second.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clock::now_nanos;
use crate::error::{BenchError, BenchResult};
use crate::plan::Plan;
use crate::scenario::many::Competitor;
use crate::servers::BackendServer;
use crate::stats::Summary;

/// The longest the cold start or the takeover may take.
const WITHIN: Duration = Duration::from_secs(300);

/// One backend's cold start and takeover.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TakeoverRow {
    /// The backend's name.
    pub backend: String,
    /// Elections.
    pub elections: usize,
    /// From the first process' start to its leading every election.
    pub cold_start: Duration,
    /// From the kill to each election's new term, in nanoseconds.
    pub takeovers: Vec<i128>,
    /// Terms of the standby that ended before it was stopped.
    pub leases_lost: u64,
    /// Why the scenario did not complete (a process not leading every election in time), if it
    /// did not: the report shows it as the row's verdict instead of losing the whole run.
    #[serde(default)]
    pub failed: Option<String>,
}

impl TakeoverRow {
    /// The takeovers' percentiles.
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.takeovers)
    }
}

/// Runs the scenario on `server` with `elections` elections.
pub async fn run(
    server: &BackendServer,
    elections: usize,
    plan: &Plan,
) -> BenchResult<TakeoverRow> {
    let url = &server.target.url;
    let started = Instant::now();
    let failed = |what: &str, err: BenchError| TakeoverRow {
        backend: server.backend.name().to_owned(),
        elections,
        cold_start: started.elapsed(),
        takeovers: Vec::new(),
        leases_lost: 0,
        failed: Some(format!("{what}: {err}")),
    };
    let mut first = Competitor::start(url, "takeover", elections, "first", plan.quick, None)?;
    if let Some(err) = timed_out(first.all_leading(WITHIN).await)? {
        return Ok(failed("cold start", err));
    }
    let cold_start = started.elapsed();
    let mut second = Competitor::start(url, "takeover", elections, "second", plan.quick, None)?;
    // Long enough for the standby to have read every election and to follow the renews.
    tokio::time::sleep(plan.timings.lease).await;
    let killed_at = now_nanos();
    first.kill()?;
    if let Some(err) = timed_out(second.all_leading(WITHIN).await)? {
        return Ok(TakeoverRow {
            cold_start,
            ..failed("takeover", err)
        });
    }
    let report = second.finish().await?;
    if report.started_at.len() != elections {
        return Err(BenchError::Setup(format!(
            "the standby led {} of {elections} elections",
            report.started_at.len()
        )));
    }
    let takeovers = report.started_at.iter().map(|at| at - killed_at).collect();
    Ok(TakeoverRow {
        backend: report.backend,
        elections,
        cold_start,
        takeovers,
        leases_lost: report.leases_lost,
        failed: None,
    })
}

/// A wait that ran out, as a value (the row records it); any other error is the run's.
fn timed_out(result: BenchResult<()>) -> BenchResult<Option<BenchError>> {
    match result {
        Ok(()) => Ok(None),
        Err(err @ BenchError::Timeout(_)) => Ok(Some(err)),
        Err(err) => Err(err),
    }
}
