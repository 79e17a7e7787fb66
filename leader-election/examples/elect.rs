//! Elects on the lock URL given as the first argument (a lock file in the temp directory by
//! default) and leads until CTRL+C, printing each term.
//!
//! ```sh
//! cargo run -p leader-election --example elect
//! cargo run -p leader-election --example elect --features redis -- redis://127.0.0.1:6379
//! ```
//! Start it in two terminals and press CTRL+C in the leader's: the other takes over at once.

use std::time::Duration;

use leader_election::{open, shutdown_on_signal, ElectionConfig, LeaderElector, WorkReturned};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("file://{}/", std::env::temp_dir().display()));
    let identity = format!("example-{}", std::process::id());
    let lock = open(&url, "example").await?;
    println!("{identity} stands by on {}", lock.describe());
    let config = ElectionConfig::new(identity.as_str())
        .with_lease_duration(Duration::from_secs(4))
        .with_renew_deadline(Duration::from_secs(3))
        .with_retry_period(Duration::from_secs(1))
        .with_release_on_cancel(true)
        .with_rejoin(true);
    let elector = LeaderElector::new(lock, config)?;
    let outcome = elector
        .run_leading_with(
            shutdown_on_signal(),
            WorkReturned::Restart,
            |term| async move {
                println!("leading with fencing token {}", term.fencing_token());
                std::future::pending::<()>().await;
            },
        )
        .await;
    println!("{identity}: {outcome:?}");
    Ok(())
}
