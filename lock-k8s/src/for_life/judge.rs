//! What a waiting candidate does about the Pod that holds the lock, as operator-lib's
//! `Become` does: nothing while it is healthy or already gone (the garbage collector clears its
//! lock), delete it when it failed as evicted or preempted, and, only when the lock was told to
//! ([`ForLifeLock::with_not_ready_clearing`](crate::ForLifeLock::with_not_ready_clearing)),
//! delete it and its lock when its node is NotReady: such a leader may still be running.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Resource, ResourceExt};

use super::pod::{failed_for_good, holder_of, is_not_ready};
use super::Shared;
use crate::errors::is_status;

impl Shared {
    /// Looks at the holder of `lock` (held by someone other than `me`) and clears it when
    /// operator-lib would. Failures are logged: the candidate keeps waiting either way.
    pub(crate) async fn judge_holder(&self, lock: &ConfigMap, me: &OwnerReference) {
        let Some(holder) = holder_of(lock) else {
            tracing::info!(lock = %self.describe, owners = ?lock.owner_references(), "the lock ConfigMap does not have exactly one Pod owner: waiting until it is deleted");
            return;
        };
        if holder.name == me.name {
            tracing::info!(lock = %self.describe, pod = %holder.name, uid = %holder.uid, "the lock is held by an earlier Pod of this name: waiting for the garbage collector");
            return;
        }
        let pod = match self
            .call("get", "pods", self.pods.get_opt(&holder.name))
            .await
        {
            Ok(pod) => pod,
            Err(err) => {
                tracing::warn!(lock = %self.describe, pod = %holder.name, error = %err, "cannot read the leader's Pod; waiting");
                return;
            }
        };
        let Some(pod) = pod.filter(|pod| pod.uid().as_deref() == Some(holder.uid.as_str())) else {
            tracing::info!(lock = %self.describe, pod = %holder.name, "the leader's Pod is gone: waiting for the garbage collector to delete the lock");
            return;
        };
        if let Some(why) = failed_for_good(&pod) {
            tracing::warn!(lock = %self.describe, pod = %holder.name, "the leader's Pod was {why}: deleting it");
            self.delete_uid(&self.pods, &holder.name, &holder.uid, "pods")
                .await;
            return;
        }
        if self.clear_not_ready && self.node_not_ready(&pod).await {
            tracing::warn!(lock = %self.describe, pod = %holder.name, "the leader's node is NotReady: deleting its Pod and the lock");
            if self
                .delete_uid(&self.pods, &holder.name, &holder.uid, "pods")
                .await
            {
                let uid = lock.uid().unwrap_or_default();
                self.delete_uid(&self.configmaps, &self.name, &uid, "configmaps")
                    .await;
            }
            return;
        }
        tracing::debug!(lock = %self.describe, pod = %holder.name, "not the leader; waiting");
    }

    /// True when the Pod's node reports NotReady. A Pod on no node, or a node that cannot be
    /// read (no `get` on nodes), is not judged.
    async fn node_not_ready(&self, pod: &Pod) -> bool {
        let Some(node) = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) else {
            return false;
        };
        if node.is_empty() {
            return false;
        }
        match self.call("get", "nodes", self.nodes.get_opt(node)).await {
            Ok(Some(node)) => is_not_ready(&node),
            Ok(None) => false,
            Err(err) => {
                tracing::debug!(lock = %self.describe, node, error = %err, "cannot read the leader's node; not judging it");
                false
            }
        }
    }

    /// Deletes the object `name` if its UID is still `uid`; true when it is gone (deleted
    /// now or before).
    async fn delete_uid<K>(&self, api: &Api<K>, name: &str, uid: &str, resource: &str) -> bool
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.timed(api.delete(name, &params)).await {
            Ok(Ok(_)) => true,
            Ok(Err(err)) if is_status(&err, 404, None) => true,
            Ok(Err(err)) => {
                tracing::warn!(lock = %self.describe, name, error = %self.map("delete", resource, err), "could not delete");
                false
            }
            Err(err) => {
                tracing::warn!(lock = %self.describe, name, error = %err, "could not delete");
                false
            }
        }
    }
}
