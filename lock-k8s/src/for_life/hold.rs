//! A hold in progress: the watch that notices when the platform ends it, and the release.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use lock_core::{LifeRelease, LockResult};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::fencing::{token_in, FENCING_TOKEN_ANNOTATION};
use super::pod::is_held_by;
use super::Shared;
use crate::errors::is_status;

/// Which lock object a hold is: the ConfigMap's UID, the owner reference it carries, and the
/// token of the term written onto it.
#[derive(Clone, Debug)]
pub(crate) struct Held {
    pub uid: String,
    pub owner: OwnerReference,
    pub token: u64,
}

impl Held {
    /// True while `lock` is still this hold's object, owned by this Pod, with this term's
    /// token: another process of the same Pod that adopted it (a twin, or a restart whose old
    /// process still runs) wrote its own token, and this hold is over.
    fn is(&self, lock: &ConfigMap) -> bool {
        lock.uid().as_deref() == Some(self.uid.as_str())
            && is_held_by(lock, &self.owner)
            && token_in(lock, FENCING_TOKEN_ANNOTATION) == Ok(Some(self.token))
    }
}

/// Watches the lock ConfigMap for as long as the hold lasts and cancels `lost` when it is
/// deleted, replaced or given another owner; ends when `stop` is cancelled (a release). The
/// watch resumes by itself after errors (with kube's back-off), and a relist that no longer
/// shows the object counts as a deletion.
pub(crate) fn monitor(
    api: Api<ConfigMap>,
    name: String,
    held: Held,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    tokio::spawn(async move {
        let mut listed = false;
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = events.next() => event,
            };
            let gone = match event {
                Some(Ok(Event::Apply(lock))) => !held.is(&lock),
                Some(Ok(Event::InitApply(lock))) => {
                    listed = true;
                    !held.is(&lock)
                }
                Some(Ok(Event::Delete(lock))) => lock.uid().as_deref() == Some(held.uid.as_str()),
                Some(Ok(Event::Init)) => {
                    listed = false;
                    false
                }
                Some(Ok(Event::InitDone)) => !listed,
                Some(Err(err)) => {
                    tracing::warn!(lock = %name, error = %err, "the watch of the held lock failed; resuming it");
                    false
                }
                None => return,
            };
            if gone && !stop.is_cancelled() {
                tracing::warn!(lock = %name, pod = %held.owner.name, "the lock ConfigMap was deleted or taken over: leadership for life is lost");
                lost.cancel();
                return;
            }
        }
    });
}

/// Gives a hold up: stops its watch and deletes the lock ConfigMap, only if it is still this
/// hold's object with this term's token (read, then deleted with UID and resourceVersion
/// preconditions).
pub(crate) struct Release {
    pub shared: Arc<Shared>,
    pub held: Held,
    pub stop: CancellationToken,
}

#[async_trait::async_trait]
impl LifeRelease for Release {
    async fn release(self: Box<Self>) -> LockResult<()> {
        self.stop.cancel();
        let shared = &self.shared;
        let current = shared
            .call("get", "configmaps", shared.configmaps.get_opt(&shared.name))
            .await?;
        let Some(current) = current.filter(|lock| self.held.is(lock)) else {
            // Gone already, or another object or term now: nothing of ours to give up.
            return Ok(());
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(self.held.uid.clone()),
                resource_version: current.resource_version(),
            }),
            ..DeleteParams::default()
        };
        match shared
            .timed(shared.configmaps.delete(&shared.name, &params))
            .await?
        {
            Ok(_) => {
                tracing::info!(lock = %shared.describe, "released the lock for life");
                Ok(())
            }
            // Gone already, or another object now: nothing of ours to give up.
            Err(err) if is_status(&err, 404, None) || is_status(&err, 409, None) => Ok(()),
            Err(err) => Err(shared.map("delete", "configmaps", err)),
        }
    }
}
