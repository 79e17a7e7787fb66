//! The Pods of a leader-for-life election: the owner reference a holder writes, and what
//! operator-lib's `Become` checks about the holder's Pod before it clears the lock.

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

/// The owner reference to `pod`, with exactly the fields operator-lib sets: `apiVersion: v1`,
/// `kind: Pod`, the Pod's name and UID (no `controller`, no `blockOwnerDeletion`).
pub(crate) fn owner_reference(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        ..OwnerReference::default()
    }
}

/// The Pod that holds a lock ConfigMap, as operator-lib recognises one: exactly one owner
/// reference, of kind Pod. `None` for anything else (nobody can take such a lock until it is
/// deleted; operator-lib waits too).
pub(crate) fn holder_of(lock: &ConfigMap) -> Option<&OwnerReference> {
    match lock.owner_references() {
        [owner] if owner.kind == "Pod" => Some(owner),
        _ => None,
    }
}

/// The identity to report for a held lock: its owner Pod's name; the first owner's name when
/// the owners are not what operator-lib writes; empty when it has no owner at all.
pub(crate) fn holder_identity(lock: &ConfigMap) -> String {
    holder_of(lock)
        .or_else(|| lock.owner_references().first())
        .map(|owner| owner.name.clone())
        .unwrap_or_default()
}

/// True when `lock` is held by exactly this Pod (name and UID).
pub(crate) fn is_held_by(lock: &ConfigMap, owner: &OwnerReference) -> bool {
    holder_of(lock).is_some_and(|holder| holder.name == owner.name && holder.uid == owner.uid)
}

/// Why the holder's Pod is to be deleted so that the lock can move on, as operator-lib
/// decides: it failed and was evicted or preempted (and is not being deleted already).
pub(crate) fn failed_for_good(pod: &Pod) -> Option<&'static str> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    match status.reason.as_deref() {
        Some("Evicted") => Some("evicted"),
        Some("Preempting") => Some("preempted"),
        _ => None,
    }
}

/// True when the node's `Ready` condition is there and not `True` (operator-lib's test).
pub(crate) fn is_not_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status != "True")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn pod(phase: &str, reason: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                uid: Some("u-1".into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: Some(reason.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn owner_reference_has_operator_libs_fields_only() {
        let owner = owner_reference(&pod("Running", ""));
        let json = serde_json::to_value(&owner).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u-1"})
        );
        let lock = ConfigMap {
            metadata: ObjectMeta {
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        assert!(is_held_by(&lock, &owner));
        assert_eq!(holder_identity(&lock), "p");
        let other = OwnerReference {
            uid: "u-2".into(),
            ..owner
        };
        assert!(!is_held_by(&lock, &other), "same name, another Pod");
    }

    #[test]
    fn evicted_and_preempted_pods_failed_for_good() {
        assert_eq!(failed_for_good(&pod("Failed", "Evicted")), Some("evicted"));
        assert_eq!(
            failed_for_good(&pod("Failed", "Preempting")),
            Some("preempted")
        );
        assert_eq!(failed_for_good(&pod("Running", "Evicted")), None);
        assert_eq!(failed_for_good(&pod("Failed", "Error")), None);
        let mut deleting = pod("Failed", "Evicted");
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(failed_for_good(&deleting), None, "already being deleted");
    }

    #[test]
    fn a_node_is_not_ready_when_its_ready_condition_is_not_true() {
        let node = |status: &str| Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
            ..Node::default()
        };
        assert!(is_not_ready(&node("False")));
        assert!(is_not_ready(&node("Unknown")));
        assert!(!is_not_ready(&node("True")));
        assert!(!is_not_ready(&Node::default()), "no condition: not judged");
    }
}
