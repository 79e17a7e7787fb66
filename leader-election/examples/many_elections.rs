//! Many elections from one Redis client: a process that takes part in one election per shard
//! leads some shards and stands by for the others, over two connections to the server in all.
//!
//! ```sh
//! cargo run -p leader-election --features redis --example many_elections -- redis://127.0.0.1:6379 100
//! ```
//! Start it twice: the shards split between the two processes as they come up, and CTRL+C on one
//! hands its shards to the other at once.

use leader_election::redis::{RedisClient, RedisLockOptions};
use leader_election::{
    default_identity, shutdown_on_signal, ElectionConfig, LeaderElector, WorkReturned,
};
use tokio::task::JoinSet;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let shards: usize = args.next().map_or(Ok(10), |count| count.parse())?;
    let identity = default_identity();

    // One client: every lock below shares its command connection and its pub/sub connection.
    let client = RedisClient::connect(&url, RedisLockOptions::default()).await?;
    let shutdown = shutdown_on_signal();
    let mut elections = JoinSet::new();
    for shard in 0..shards {
        let lock = client.lock(&format!("shard-{shard}"))?;
        let config = ElectionConfig::new(identity.as_str()).with_release_on_cancel(true);
        let elector = LeaderElector::new(lock, config)?;
        let work = move |term: leader_election::Leadership| async move {
            println!(
                "shard-{shard}: leading, fencing token {}",
                term.fencing_token()
            );
            // The shard's work would run here until the term ends.
            std::future::pending::<()>().await;
        };
        elections.spawn(elector.run_leading_with(shutdown.clone(), WorkReturned::Restart, work));
    }
    println!(
        "{identity} takes part in {shards} elections on {}",
        client.describe()
    );
    let mut released = 0;
    while let Some(outcome) = elections.join_next().await {
        if let leader_election::RunOutcome::Cancelled { released: true } = outcome? {
            released += 1;
        }
    }
    println!("{identity} released {released} shards");
    Ok(())
}
