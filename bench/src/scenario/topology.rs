//! Scenario 5, production topologies: what replicas, sentinels and an etcd cluster cost and
//! what a Redis failover interrupts. Each topology is started here on loopback ports:
//!
//! - a Redis primary with one replica, without and with `min_replicas=1` (every write waits
//!   for the replica's acknowledgement): the graceful handover and one write's latency;
//! - Redis behind three sentinels with two replicas and `min_replicas=1`: the graceful
//!   handover, and how long writes are impossible when the primary is SIGKILLed (from the
//!   kill to the first write that succeeds on the promoted replica, through the sentinels);
//! - a Redis Cluster of three primaries with a replica each, without and with
//!   `min_replicas=1`: the graceful handover;
//! - etcd as three members, the lock given every endpoint: the graceful handover.

use std::time::{Duration, Instant};

use leader_election::{LeaderElectionRecord, Lock, LockError};
use lock_tests::servers::etcd_cluster::EtcdCluster;
use lock_tests::servers::redis::RedisServer;
use lock_tests::servers::redis_cluster::RedisCluster;
use lock_tests::servers::redis_sentinel::SentinelTopology;

use crate::error::{BenchError, BenchResult};
use crate::feed;
use crate::members::{Roster, Variant};
use crate::plan::Plan;
use crate::scenario::{handover, unique};
use crate::stats::Summary;
use crate::target::Target;

/// One row of the topology table.
#[derive(Clone, Debug)]
pub struct TopologyRow {
    /// The servers and the lock's settings.
    pub topology: String,
    /// What was measured.
    pub measure: &'static str,
    /// The samples' distribution, in nanoseconds.
    pub summary: Summary,
    /// The goal of the p99, in nanoseconds, where there is one.
    pub goal: Option<i128>,
}

/// The graceful handover's goal, as on a single server.
const HANDOVER_GOAL: i128 = 20_000_000;

/// Runs every topology; returns the rows.
pub async fn run(plan: &Plan) -> BenchResult<Vec<TopologyRow>> {
    let mut rows = Vec::new();
    let writes = if plan.quick { 50 } else { 500 };
    let kills = if plan.quick { 2 } else { 10 };

    let (primary, replica) = blocking(|| {
        let primary = RedisServer::start();
        let replica = RedisServer::builder().replica_of(primary.port()).start();
        (primary, replica)
    })
    .await?;
    for min_replicas in [0, 1] {
        let topology = format!("Redis primary + 1 replica, min_replicas={min_replicas}");
        let url = format!("{}?min_replicas={min_replicas}", primary.url());
        rows.push(handover_row(plan, &topology, &url).await?);
        rows.push(TopologyRow {
            topology,
            measure: "one write (renew)",
            summary: write_latency(&Target::new(url), writes).await?,
            goal: None,
        });
    }
    drop((primary, replica));

    let mut sentinels = blocking(|| SentinelTopology::start(2, 3)).await?;
    let topology = "Redis Sentinel: 3 sentinels, primary + 2 replicas, min_replicas=1".to_owned();
    let url = format!("{}?min_replicas=1", sentinels.url());
    rows.push(handover_row(plan, &topology, &url).await?);
    let mut outages = Vec::with_capacity(kills);
    for _ in 0..kills {
        let (back, outage) = writes_resume_after_a_primary_kill(sentinels, &url).await?;
        sentinels = back;
        outages.push(outage);
    }
    rows.push(TopologyRow {
        topology,
        measure: "primary SIGKILL to the first write on the promoted replica",
        summary: summary(&outages)?,
        goal: None,
    });
    drop(sentinels);

    let redis_cluster = blocking(RedisCluster::start).await?;
    for min_replicas in [0, 1] {
        let topology =
            format!("Redis Cluster: 3 primaries + 1 replica each, min_replicas={min_replicas}");
        let url = format!("{}?min_replicas={min_replicas}", redis_cluster.url());
        rows.push(handover_row(plan, &topology, &url).await?);
    }
    drop(redis_cluster);

    let cluster = blocking(EtcdCluster::start).await?;
    let hosts: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|endpoint| endpoint.trim_start_matches("http://").to_owned())
        .collect();
    let url = format!("etcd://{}", hosts.join(","));
    rows.push(handover_row(plan, "etcd, three members", &url).await?);
    drop(cluster);
    Ok(rows)
}

async fn blocking<T: Send + 'static>(start: impl FnOnce() -> T + Send + 'static) -> BenchResult<T> {
    tokio::task::spawn_blocking(start)
        .await
        .map_err(|err| BenchError::Setup(format!("starting a topology: {err}")))
}

fn summary(samples: &[i128]) -> BenchResult<Summary> {
    Summary::of(samples).ok_or_else(|| BenchError::Setup("a topology produced no samples".into()))
}

/// Scenario 1 (graceful handover, our elector) on `url`.
async fn handover_row(plan: &Plan, topology: &str, url: &str) -> BenchResult<TopologyRow> {
    let (sender, mut feed) = feed::feed();
    let roster = Roster {
        variant: Variant::Ours,
        target: Target::new(url),
        timings: plan.timings,
        go: None,
        feed: sender,
    };
    let samples = handover::run(&roster, &mut feed, plan.handovers).await?;
    let summary = summary(&samples)?;
    eprintln!(
        "bench: topology {topology}: handover p50={} p99={}",
        crate::stats::ms(summary.p50),
        crate::stats::ms(summary.p99)
    );
    Ok(TopologyRow {
        topology: topology.to_owned(),
        measure: "graceful handover",
        summary,
        goal: Some(HANDOVER_GOAL),
    })
}

fn record(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds: 15,
        ..LeaderElectionRecord::default()
    }
}

/// The latency of `count` updates of one record, one after the other.
async fn write_latency(target: &Target, count: usize) -> BenchResult<Summary> {
    let lock = target.open(&unique("write")).await?;
    let mut version = lock.create(&record("bench")).await?;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        version = lock.update(&record("bench"), &version).await?;
        samples.push(started.elapsed().as_nanos() as i128);
    }
    summary(&samples)
}

/// Kills the primary and measures from the kill until a write through the sentinels succeeds
/// again (a read and a compare-and-swap on whatever the promoted replica holds).
async fn writes_resume_after_a_primary_kill(
    mut sentinels: SentinelTopology,
    url: &str,
) -> BenchResult<(SentinelTopology, i128)> {
    let lock = Target::new(url).open(&unique("failover")).await?;
    lock.create(&record("bench")).await?;
    let (mut sentinels, killed) = blocking(move || {
        let killed = sentinels.kill_primary();
        (sentinels, killed)
    })
    .await?;
    let killed_at = killed.at;
    // The sentinels promote a replica and the old primary comes back as a replica meanwhile.
    let failover = tokio::task::spawn_blocking(move || {
        let failover = sentinels.fail_over(killed);
        (sentinels, failover)
    });
    let deadline = killed_at + Duration::from_secs(60);
    let resumed = loop {
        let written = match lock.get().await {
            Ok(Some(current)) => lock
                .update(&record("bench"), &current.version)
                .await
                .map(drop),
            Ok(None) => lock.create(&record("bench")).await.map(drop),
            Err(err) => Err(err),
        };
        match written {
            Ok(()) => break Instant::now(),
            Err(LockError::Conflict { .. }) | Err(LockError::AlreadyExists { .. }) => {}
            Err(err) if err.is_retryable() => {}
            Err(err) => return Err(err.into()),
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(
                "no write succeeded within a minute of the primary's kill".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (sentinels, _) = failover
        .await
        .map_err(|err| BenchError::Setup(format!("the failover: {err}")))?;
    Ok((sentinels, (resumed - killed_at).as_nanos() as i128))
}
