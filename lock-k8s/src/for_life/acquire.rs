//! Becoming the leader for life: create the lock ConfigMap owned by this Pod, or wait.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::ResourceExt;
use lock_core::{LifeHold, LockError, LockResult};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::fencing::{token_in, FENCING_TOKEN_ANNOTATION};
use super::hold::{monitor, Held, Release};
use super::pod::{is_held_by, owner_reference};
use super::wake::Wake;
use super::Shared;
use crate::errors::is_status;

/// What one look at the lock found.
enum Attempt {
    /// This Pod holds it now, with this token.
    Held(Held, u64),
    /// Someone else holds it: wait.
    Waiting,
    /// A race was lost while the lock changed: look again at once.
    Again,
}

/// [`LifeLock::acquire`](lock_core::LifeLock::acquire) for [`ForLifeLock`](super::ForLifeLock).
pub(crate) async fn acquire(
    shared: &Arc<Shared>,
    identity: &str,
    cancel: &CancellationToken,
) -> LockResult<Option<LifeHold>> {
    let pod = tokio::select! {
        () = cancel.cancelled() => return Ok(None),
        pod = shared.call("get", "pods", shared.pods.get_opt(identity)) => pod?,
    };
    let Some(pod) = pod else {
        return Err(LockError::InvalidConfig(format!(
            "{}: there is no Pod {identity:?} in namespace {}: a leader-for-life identity is the \
             name of this process' Pod (POD_NAME from the downward API) in the lock's namespace \
             (POD_NAMESPACE)",
            shared.describe, shared.namespace
        )));
    };
    let owner = owner_reference(&pod);
    let mut backoff = super::backoff::Backoff::new(shared.max_backoff);
    let mut wake: Option<Wake> = None;
    let mut again = 0;
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let attempt = tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            attempt = shared.attempt(&owner) => attempt,
        };
        match attempt {
            Ok(Attempt::Held(held, token)) => return Ok(Some(shared.start_hold(held, token))),
            Ok(Attempt::Again) if again < 3 => {
                again += 1;
                continue;
            }
            Ok(Attempt::Again | Attempt::Waiting) => {}
            Err(err) if err.is_retryable() => {
                tracing::warn!(lock = %shared.describe, error = %err, "cannot become the leader yet; retrying");
            }
            Err(err) => return Err(err),
        }
        again = 0;
        wait(shared, &mut backoff, &mut wake, cancel).await;
    }
}

/// Waits for the back-off's next wait, or less when the watch reports a change.
async fn wait(
    shared: &Shared,
    backoff: &mut Backoff,
    wake: &mut Option<Wake>,
    cancel: &CancellationToken,
) {
    if wake.as_ref().is_none_or(Wake::ended) {
        *wake = Some(Wake::new(shared.configmaps.clone(), &shared.name));
    }
    let Some(wake) = wake.as_mut() else {
        return;
    };
    let pause = backoff.next_wait();
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(pause) => {}
        () = wake.changed() => {
            tracing::debug!(lock = %shared.describe, "the lock changed; looking again");
        }
    }
}

impl Shared {
    /// Reads the lock and takes it if it is free or already this Pod's.
    async fn attempt(&self, owner: &OwnerReference) -> LockResult<Attempt> {
        let current = self
            .call("get", "configmaps", self.configmaps.get_opt(&self.name))
            .await?;
        match current {
            None => self.create(owner).await,
            Some(lock) if is_held_by(&lock, owner) => self.adopt(lock, owner).await,
            Some(lock) => {
                if let Ok(Some(token)) = token_in(&lock, FENCING_TOKEN_ANNOTATION) {
                    self.observe(token);
                }
                self.judge_holder(&lock, owner).await;
                Ok(Attempt::Waiting)
            }
        }
    }

    /// Creates the lock owned by this Pod, with a new token (a newer one when the counter
    /// moved on while it was created).
    async fn create(&self, owner: &OwnerReference) -> LockResult<Attempt> {
        let token = self.next_token().await?;
        let lock = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                owner_references: Some(vec![owner.clone()]),
                annotations: Some(BTreeMap::from([(
                    FENCING_TOKEN_ANNOTATION.to_owned(),
                    token.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        match self
            .timed(self.configmaps.create(&PostParams::default(), &lock))
            .await?
        {
            Ok(created) => {
                // Another candidate may have raised the counter after this one did, and led and
                // lost its Pod before this create: then this token is not above its term's.
                // Only when the counter still stands at this token is it above every term.
                if self.last_token().await? != token {
                    tracing::debug!(lock = %self.describe, token, "the counter moved on since; taking a new token");
                    return self.adopt(created, owner).await;
                }
                tracing::info!(lock = %self.describe, pod = %owner.name, token, "became the leader for life");
                Ok(self.held(&created, owner, token))
            }
            Err(err) if is_status(&err, 409, Some("AlreadyExists")) => Ok(Attempt::Again),
            Err(err) => Err(self.map("create", "configmaps", err)),
        }
    }

    /// Leads on a lock this very Pod holds (the process restarted, or its create's token fell
    /// behind the counter), with a new token written onto it by compare-and-swap.
    async fn adopt(&self, mut lock: ConfigMap, owner: &OwnerReference) -> LockResult<Attempt> {
        let token = self.next_token().await?;
        lock.annotations_mut()
            .insert(FENCING_TOKEN_ANNOTATION.to_owned(), token.to_string());
        match self
            .timed(
                self.configmaps
                    .replace(&self.name, &PostParams::default(), &lock),
            )
            .await?
        {
            Ok(updated) if is_held_by(&updated, owner) => {
                tracing::info!(lock = %self.describe, pod = %owner.name, token, "this Pod already held the lock: leading again");
                Ok(self.held(&updated, owner, token))
            }
            Ok(_) => Ok(Attempt::Again),
            Err(err) if is_status(&err, 409, None) || is_status(&err, 404, None) => {
                Ok(Attempt::Again)
            }
            Err(err) => Err(self.map("update", "configmaps", err)),
        }
    }

    fn held(&self, lock: &ConfigMap, owner: &OwnerReference, token: u64) -> Attempt {
        let held = Held {
            uid: lock.uid().unwrap_or_default(),
            owner: owner.clone(),
            token,
        };
        Attempt::Held(held, token)
    }

    /// Starts watching a new hold and hands it out.
    fn start_hold(self: &Arc<Self>, held: Held, fencing_token: u64) -> LifeHold {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        monitor(
            self.configmaps.clone(),
            self.name.clone(),
            held.clone(),
            lost.clone(),
            stop.clone(),
        );
        LifeHold {
            fencing_token,
            lost,
            release: Box::new(Release {
                shared: self.clone(),
                held,
                stop,
            }),
            deadline: None,
        }
    }
}
