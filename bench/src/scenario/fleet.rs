//! Scenario 7, a fleet on one API server: many Lease elections with three candidates each, the
//! load each elector puts on the kube-apiserver, counted by the server by verb. Ours: three
//! processes (`bench many --compete`), each in every election through one shared client and
//! watch, with the default timings and again with the renew interval at twice the retry
//! period. client-go's: three processes of the interop/ program with `-names` (one elector per
//! election, each polling with GETs). Same timings, same elections, one after the other on one
//! server.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kube::api::{Api, ListParams};
use leader_election::k8s::k8s_openapi::api::coordination::v1::Lease;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{BenchError, BenchResult};
use crate::feed;
use crate::golang::GoCandidate;
use crate::plan::Plan;
use crate::scenario::many::Competitor;
use crate::servers::{lease_requests_by_verb, BackendServer, NAMESPACE};

/// Candidates per election.
pub const CANDIDATES: usize = 3;
/// The most the fleet may take to elect every leader.
const ALL_LED_WITHIN: Duration = Duration::from_secs(300);

/// One elector's load on the API server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetRow {
    /// Whose elector.
    pub elector: String,
    /// Elections, each with [`CANDIDATES`] candidates.
    pub elections: usize,
    /// From the candidates' start to every election having a leader.
    pub all_led_after: Duration,
    /// How long the requests were counted: from the middle of the first scrape of the API
    /// server's counters to the middle of the last.
    pub window: Duration,
    /// How often each leader renews.
    pub renew_every: Duration,
    /// Requests on Leases per second in the window, by verb.
    pub per_second: BTreeMap<String, f64>,
    /// Terms that ended before the candidates were stopped (ours only: client-go's are not
    /// counted).
    pub leases_lost: u64,
}

impl FleetRow {
    /// All requests per second.
    pub fn total(&self) -> f64 {
        self.per_second.values().sum()
    }
}

/// Runs ours, then client-go's, on `server` (a kube-apiserver).
pub async fn run(
    server: &BackendServer,
    plan: &Plan,
    go_binary: &Path,
) -> BenchResult<Vec<FleetRow>> {
    let admin = server
        .kube_admin()
        .await?
        .ok_or_else(|| BenchError::Setup("the fleet runs on Kubernetes".to_owned()))?;
    let kubeconfig = server
        .kubeconfig()
        .ok_or_else(|| BenchError::Setup("the fleet runs on Kubernetes".to_owned()))?;
    let elections = plan.fleet_elections;
    let mut rows = Vec::new();

    // Ours with default timings, then with the renew interval at twice the retry period (the
    // leader's writes halved, as a user may choose).
    let halved = plan.timings.retry * 2;
    for (elector, prefix, renew_interval) in [
        ("ours (hints)".to_owned(), "fleet-ours", None),
        (
            format!("ours, renew interval {halved:?}"),
            "fleet-ours-halved",
            Some(halved),
        ),
    ] {
        let started = Instant::now();
        let ours: Vec<Competitor> = ["ours-a", "ours-b", "ours-c"]
            .iter()
            .map(|identity| {
                Competitor::start(
                    &server.target.url,
                    prefix,
                    elections,
                    identity,
                    plan.quick,
                    renew_interval,
                )
            })
            .collect::<BenchResult<_>>()?;
        let (all_led_after, window, per_second) =
            measure(&admin, prefix, elections, started, plan).await?;
        let mut leases_lost = 0;
        for candidate in ours {
            leases_lost += candidate.finish().await?.leases_lost;
        }
        rows.push(FleetRow {
            elector,
            elections,
            all_led_after,
            window,
            renew_every: renew_interval.unwrap_or(plan.timings.retry),
            per_second,
            leases_lost,
        });
    }

    let names: Vec<String> = (0..elections).map(|i| format!("fleet-go-{i}")).collect();
    // The Go candidates' lock-call reports are not needed here.
    let (sender, _unread) = feed::feed();
    let started = Instant::now();
    let go: Vec<GoCandidate> = ["go-a", "go-b", "go-c"]
        .iter()
        .map(|identity| {
            GoCandidate::start(
                go_binary,
                &kubeconfig,
                &names,
                identity,
                plan.timings,
                false,
                &sender,
            )
        })
        .collect::<BenchResult<_>>()?;
    let (all_led_after, window, per_second) =
        measure(&admin, "fleet-go", elections, started, plan).await?;
    drop(go);
    rows.push(FleetRow {
        elector: "client-go".to_owned(),
        elections,
        all_led_after,
        window,
        renew_every: plan.timings.retry,
        per_second,
        leases_lost: 0,
    });
    Ok(rows)
}

/// Waits until every election `prefix-N` has a holder, lets the fleet settle for two retry
/// periods, then counts the requests on Leases for the plan's window. Returns how long the
/// elections took to be led, the window as measured, and the requests per second by verb.
async fn measure(
    admin: &kube::Client,
    prefix: &str,
    elections: usize,
    started: Instant,
    plan: &Plan,
) -> BenchResult<(Duration, Duration, BTreeMap<String, f64>)> {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NAMESPACE);
    loop {
        let list = leases
            .list(&ListParams::default())
            .await
            .map_err(|err| BenchError::Counter(format!("list Leases: {err}")))?;
        let led = list
            .items
            .iter()
            .filter(|lease| {
                lease
                    .metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| name.starts_with(&format!("{prefix}-")))
            })
            .filter(|lease| {
                lease
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.holder_identity.as_deref())
                    .is_some_and(|holder| !holder.is_empty())
            })
            .count();
        if led == elections {
            break;
        }
        if started.elapsed() > ALL_LED_WITHIN {
            return Err(BenchError::Timeout(format!(
                "{prefix}: {led} of {elections} elections led after {ALL_LED_WITHIN:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_led_after = started.elapsed();
    tokio::time::sleep(plan.timings.retry * 2).await;
    let (before, from) = scrape(admin).await?;
    tokio::time::sleep(plan.fleet_window).await;
    let (after, to) = scrape(admin).await?;
    // The API server's /metrics page is large and takes a while to make: the window runs
    // from the middle of one scrape to the middle of the next, the time the counters covered,
    // not for the sleep alone.
    let window = to - from;
    let seconds = window.as_secs_f64();
    let per_second = after
        .iter()
        .map(|(verb, count)| {
            let delta = count.saturating_sub(before.get(verb).copied().unwrap_or(0));
            (verb.clone(), delta as f64 / seconds)
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect();
    Ok((all_led_after, window, per_second))
}

/// The API server's Lease requests by verb, and the middle of the scrape that read them.
async fn scrape(admin: &kube::Client) -> BenchResult<(BTreeMap<String, u64>, Instant)> {
    let sent = Instant::now();
    let counts = lease_requests_by_verb(admin).await?;
    let answered = Instant::now();
    Ok((counts, sent + (answered - sent) / 2))
}
