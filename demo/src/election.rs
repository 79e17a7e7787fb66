//! The elector the flags choose: leases (the default) or leader-for-life
//! (`--leader-for-life`), behind one interface, so that the output, the HTTP endpoint and exec
//! mode work with either.

use std::future::Future;
use std::pin::Pin;

use leader_election::{
    ElectionConfig, ElectionEvent, ElectorHandle, LeaderElector, LifeElector, RunOutcome,
};
use lock_core::RenewReport;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;

/// A running election of either mode.
pub enum Elector {
    /// Leases renewed by the leader; standbys take over when one runs out.
    Lease(Box<LeaderElector>),
    /// Leadership for the life of the leader's process, as the platform tells.
    ForLife(LifeElector),
}

impl Elector {
    /// Opens the lock the flags describe and makes the elector of the mode they choose. An
    /// error (a lock that cannot be opened, a backend without a for-life lock, an invalid
    /// configuration) is a usage error.
    pub async fn open(cli: &Cli, config: ElectionConfig) -> Result<Self, String> {
        if !cli.leader_for_life {
            let lock = crate::lock_url::open_lock(cli).await?;
            return LeaderElector::new(lock, config)
                .map(|elector| Self::Lease(Box::new(elector)))
                .map_err(|err| err.to_string());
        }
        let url = cli.lock_url()?;
        // The one timing of this mode: an etcd session's TTL (the file backend has none).
        let lock = leader_election::open_life_url(&url, &cli.lock_name, cli.lease_duration)
            .await
            .map_err(|err| format!("--leader-for-life: {err}"))?;
        LifeElector::new(lock, config)
            .map(Self::ForLife)
            .map_err(|err| err.to_string())
    }

    /// Competes only while `ready` holds true ([`LeaderElector::with_readiness`]). Leases only:
    /// a term held for life has nothing to hand over to on its own terms.
    pub fn with_readiness(
        self,
        ready: tokio::sync::watch::Receiver<bool>,
        unready_leader: lock_core::UnreadyLeader,
    ) -> Result<Self, String> {
        match self {
            Self::Lease(elector) => Ok(Self::Lease(Box::new(
                elector.with_readiness(ready, unready_leader),
            ))),
            Self::ForLife(_) => Err(
                "--ready-url and --ready-command work with leases only, not with \
                 --leader-for-life (a leader for life keeps leading until its process is gone)"
                    .to_owned(),
            ),
        }
    }

    /// Gives up on permanent faults after `after` ([`LeaderElector::give_up_after`]); `None`
    /// never does. Leases only: a leader-for-life election retries every fault.
    pub fn give_up_after(self, after: Option<std::time::Duration>) -> Self {
        match (self, after) {
            (Self::Lease(elector), Some(after)) => {
                Self::Lease(Box::new((*elector).give_up_after(after)))
            }
            (elector, _) => elector,
        }
    }

    /// A handle for the HTTP endpoint and the metrics.
    pub fn handle(&self) -> ElectorHandle {
        match self {
            Self::Lease(elector) => elector.handle(),
            Self::ForLife(elector) => elector.handle(),
        }
    }

    /// The events, in order, from now on.
    pub fn subscribe(&self) -> tokio::sync::mpsc::UnboundedReceiver<ElectionEvent> {
        match self {
            Self::Lease(elector) => elector.subscribe(),
            Self::ForLife(elector) => elector.subscribe(),
        }
    }

    /// Calls `callback` inline with every event.
    pub fn on_event(&self, callback: impl Fn(&ElectionEvent) + Send + Sync + 'static) {
        match self {
            Self::Lease(elector) => elector.on_event(callback),
            Self::ForLife(elector) => elector.on_event(callback),
        }
    }

    /// Calls `callback` after every renew; a term for life sends none.
    pub fn on_renew(&self, callback: impl Fn(&RenewReport) + Send + Sync + 'static) {
        if let Self::Lease(elector) = self {
            elector.on_renew(callback);
        }
    }

    /// Takes part until `cancel` is cancelled.
    pub fn run(
        self,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = RunOutcome> + Send>> {
        match self {
            Self::Lease(elector) => Box::pin((*elector).run(cancel)),
            Self::ForLife(elector) => Box::pin(elector.run(cancel)),
        }
    }
}
