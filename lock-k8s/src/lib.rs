//! Leader election in Kubernetes: the election record in a `coordination.k8s.io/v1` Lease (or,
//! for clusters and tools that still use them, in an annotation of a ConfigMap or an Endpoints
//! object), compare-and-swap by `resourceVersion`, change hints by a watch on the one object.
//!
//! [`LeaseLock`], [`ConfigMapLock`] and [`EndpointsLock`] implement [`lock_core::Lock`], so the
//! one [`LeaderElector`](lock_core::LeaderElector) runs over them like over any other lock, and
//! they interoperate with client-go's `leaderelection` package on the same object:
//!
//! - **A Lease as client-go writes it**: `holderIdentity`, `leaseDurationSeconds`,
//!   `acquireTime`, `renewTime`, `leaseTransitions` (and `strategy` / `preferredHolder` when
//!   set), so `kubectl get lease NAME -o yaml` reads the same whichever elector wrote it.
//! - **Legacy annotation locks**: the record as client-go's JSON in
//!   [`LEADER_ANNOTATION`]; the object's data, labels and other annotations stay as they were,
//!   and an annotation that is not a record is reported as
//!   [`Corrupt`](lock_core::LockError::Corrupt) and never overwritten.
//! - **Configuration as `kubectl` finds it**: a kubeconfig (`KUBECONFIG`, `~/.kube/config`) or
//!   the in-cluster service account; the namespace from the options, else the kubeconfig
//!   context's (as `kubectl` uses it), else the service account's, else `default`
//!   ([`resolve_namespace`]); [`default_identity`] is `POD_NAME`,
//!   else the hostname plus a random suffix.
//! - **No record is not a free record**: an object without the annotation, or a Lease without
//!   a spec or a holder, reads as no record (`None`), so an elector that saw a record there
//!   waits a lease; `create` then writes the record onto the object by compare-and-swap.
//! - **Hints that end when they fail**: the watch's stream ends at its first error, and the
//!   elector polls until it watches again.
//! - **Many elections, one watch**: the locks of one [`ObjectLocks`] (say [`LeaseLocks`], for
//!   a process that elects per shard) share one watch on their kind in the namespace, which
//!   hands each lock the events of its own object.
//! - **Writes sent once**: the client retries reads only; a write whose answer was lost (a 504
//!   from a proxy) is [`Unavailable`](lock_core::LockError::Unavailable), never repeated into a
//!   conflict.
//! - **Leader-for-life, as operator-lib elects**: [`ForLifeLock`] implements
//!   [`lock_core::LifeLock`] on the ConfigMap that operator-lib's `leader.Become` creates, owned
//!   by the leader's Pod and deleted by the garbage collector with it, so Go operators and Rust
//!   processes share one election; fencing tokens come from a companion counter.
//! - **RBAC that says what is missing**: a refused request names the user, the verb, the
//!   resource and the namespace. The lock needs `get`, `list`, `watch`, `create` and `update`
//!   on its resource in its namespace, nothing cluster-wide (see `deploy/` in the repository).
//!
//! ```no_run
//! use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, Lock};
//! use lock_k8s::{default_identity, KubeLockOptions, LeaseLock};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lock = LeaseLock::connect("orders", KubeLockOptions::default()).await?;
//! println!("electing on {}", lock.describe());
//!
//! let elector = LeaderElector::new(lock, ElectionConfig::new(default_identity()))?;
//! let mut events = elector.subscribe();
//! let cancel = CancellationToken::new();
//! tokio::spawn(elector.run(cancel.clone()));
//! while let Some(event) = events.recv().await {
//!     if let ElectionEvent::StartedLeading(term) = event {
//!         println!("leading with fencing token {}", term.fencing_token());
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod connect;
mod environment;
mod errors;
mod for_life;
mod hints;
mod hub;
mod kind;
mod lock;
mod locks;
mod object;
mod options;

pub use connect::connect;
pub use environment::{
    kube_config, resolve_namespace, resolve_namespace_from, DEFAULT_NAMESPACE,
    SERVICE_ACCOUNT_NAMESPACE_FILE,
};
pub use for_life::{
    resolve_pod_namespace, ForLifeLock, DEFAULT_MAX_BACKOFF, FENCING_COUNTER_ANNOTATION,
    FENCING_SUFFIX, FENCING_TOKEN_ANNOTATION, FIRST_BACKOFF, POD_NAMESPACE_VAR,
};
pub use kind::LockKind;
pub use lock::{ConfigMapLock, EndpointsLock, LeaseLock, ObjectLock};
/// Kept here for client-go users, who look for it next to the Kubernetes locks.
pub use lock_core::default_identity;
pub use locks::{LeaseLocks, ObjectLocks};
pub use object::{LockObject, LEADER_ANNOTATION};
pub use options::{KubeLockOptions, DEFAULT_REQUEST_TIMEOUT};

/// The Kubernetes API types the locks store, re-exported for users who set objects up by
/// hand.
pub use k8s_openapi;
/// The Kubernetes client the locks use.
pub use kube;
