//! [`ForLifeLock`]: leader-for-life on Kubernetes, as operator-lib's `leader.Become` elects.

mod acquire;
mod backoff;
mod fencing;
mod hold;
mod judge;
mod pod;
mod wake;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Api;
use lock_core::{LifeHold, LifeLock, LockError, LockResult};
use tokio_util::sync::CancellationToken;

pub use backoff::{DEFAULT_MAX_BACKOFF, FIRST_BACKOFF};
pub use fencing::{FENCING_COUNTER_ANNOTATION, FENCING_SUFFIX, FENCING_TOKEN_ANNOTATION};

use crate::errors::ErrorContext;
use crate::options::check_object_name;
use crate::{environment, KubeLockOptions, LockKind};

/// The variable in which the downward API tells a process its Pod's namespace.
pub const POD_NAMESPACE_VAR: &str = "POD_NAMESPACE";

/// The Role a leader-for-life lock needs, named in permission errors.
const RBAC_HINT: &str = "deploy/leader-for-life/rbac.yaml";

/// A leader-for-life lock in the ConfigMap `name`, in the format operator-lib's
/// `leader.Become` writes and recognises, so that Go operators and Rust processes exclude each
/// other on the same election.
///
/// - **The lock** is the ConfigMap `name` in the Pod's namespace, with one owner reference to
///   the holder's Pod (`apiVersion: v1`, `kind: Pod`, its name and UID, as operator-lib sets
///   them). Whoever creates it leads. It has no lease: when the Pod is deleted, the
///   garbage collector deletes the ConfigMap and a waiting candidate creates it anew.
/// - **The identity** given to [`acquire`](LifeLock::acquire) is the name of this process'
///   Pod (`POD_NAME` from the downward API; [`lock_core::default_identity`] returns it); the
///   Pod must exist in the lock's namespace.
/// - **The namespace** is the options' namespace, else `POD_NAMESPACE`, else the service
///   account's namespace file, else `default` ([`resolve_pod_namespace`]).
/// - **A restarted process** whose Pod (same name *and* UID) still owns the ConfigMap leads
///   again at once, with a new token written onto the lock; a process of that Pod that still
///   runs (a twin, a second container) loses its hold then. A Pod of the same name but another UID (a StatefulSet's
///   replacement) does not: that lock belongs to a Pod that is gone, and the garbage collector
///   is about to delete it.
/// - **Waiting** candidates re-read when a watch on the ConfigMap (field selector on its name)
///   reports a change, else after a back-off of 1 s doubling up to 16 s (plus up to 20 %), as
///   operator-lib does. Like operator-lib, a waiting candidate deletes the holder's Pod when it
///   failed as evicted or preempted; unlike it, it deletes the Pod and the ConfigMap when the
///   Pod's node is NotReady only if asked to ([`with_not_ready_clearing`](Self::with_not_ready_clearing)),
///   since a leader on a NotReady node may still be running. A holder Pod that is already gone
///   is left to the garbage collector.
/// - **Fencing tokens** come from a counter in the companion ConfigMap `<name>-fencing` (see
///   [`FENCING_COUNTER_ANNOTATION`]), which no Pod owns and the garbage collector keeps; each
///   term's token is in the lock's [`FENCING_TOKEN_ANNOTATION`]. A lock taken by operator-lib
///   has no token and reads as token 0.
/// - **Losing it** while alive: [`LifeHold::lost`] is cancelled when the ConfigMap is deleted
///   or replaced, names another owner, or carries another term's token (another process of
///   this Pod adopted it). The release deletes the lock only while it still carries this
///   term's token.
/// - **RBAC**: `get`, `list`, `watch`, `create`, `update`, `delete` on ConfigMaps and `get`,
///   `delete` on Pods in the namespace; `get` on Nodes cluster-wide for the NotReady check
///   (optional: without it that check is skipped, as operator-lib skips it). See
///   `deploy/leader-for-life/rbac.yaml` in the repository.
///
/// ```no_run
/// use lock_core::{default_identity, LifeLock};
/// use lock_k8s::{ForLifeLock, KubeLockOptions};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = ForLifeLock::connect("memcached-operator-lock", KubeLockOptions::default()).await?;
/// let cancel = CancellationToken::new();
/// if let Some(hold) = lock.acquire(&default_identity(), &cancel).await? {
///     println!("leading for life with fencing token {}", hold.fencing_token);
///     hold.lost.cancelled().await;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ForLifeLock {
    shared: Arc<Shared>,
}

/// What clones of a lock share.
pub(crate) struct Shared {
    pub configmaps: Api<ConfigMap>,
    pub pods: Api<Pod>,
    pub nodes: Api<Node>,
    pub name: String,
    pub namespace: String,
    pub describe: String,
    pub options: KubeLockOptions,
    pub max_backoff: Duration,
    /// Whether a waiting candidate clears a leader whose node is NotReady (see
    /// [`ForLifeLock::with_not_ready_clearing`]).
    pub clear_not_ready: bool,
    pub errors: ErrorContext,
    /// The highest fencing token seen on this lock.
    floor: AtomicU64,
}

/// The namespace of a leader-for-life lock: `flag` when given (and not empty), else
/// `POD_NAMESPACE`, else the service account's namespace file, else `default`.
pub fn resolve_pod_namespace(flag: Option<&str>) -> String {
    let from_env = std::env::var(POD_NAMESPACE_VAR).ok();
    let chosen = flag
        .map(str::trim)
        .filter(|namespace| !namespace.is_empty())
        .or(from_env.as_deref());
    environment::resolve_namespace(chosen)
}

impl ForLifeLock {
    /// Makes the lock on the ConfigMap `name` with `client`, in the namespace of
    /// [`resolve_pod_namespace`]. Contacts nothing; fails only for a bad name or option.
    pub fn new(client: kube::Client, name: &str, options: KubeLockOptions) -> LockResult<Self> {
        Self::build(client, "kubernetes:".to_owned(), name, options)
    }

    /// Like [`new`](Self::new) with a client made from `config`.
    pub fn from_config(
        config: kube::Config,
        name: &str,
        options: KubeLockOptions,
    ) -> LockResult<Self> {
        let cluster = config.cluster_url.to_string();
        let client = crate::client::client(config).map_err(|err| {
            LockError::InvalidConfig(format!("cannot make a Kubernetes client: {err}"))
        })?;
        Self::build(client, cluster, name, options)
    }

    /// Makes the lock with a client from the options' kubeconfig, or from the environment as
    /// `kubectl` finds it (in a Pod: its service account). Contacts nothing yet.
    pub async fn connect(name: &str, options: KubeLockOptions) -> LockResult<Self> {
        let config = environment::kube_config(options.kubeconfig.as_deref()).await?;
        Self::from_config(config, name, options)
    }

    /// Caps the back-off between a waiting candidate's attempts (default
    /// [`DEFAULT_MAX_BACKOFF`]); the first wait is [`FIRST_BACKOFF`] or the cap if shorter.
    /// Other clones of this lock keep their cap.
    pub fn with_max_backoff(self, max: Duration) -> LockResult<Self> {
        if max.is_zero() {
            return Err(LockError::InvalidConfig(
                "the maximum back-off must be greater than zero".into(),
            ));
        }
        Ok(self.derived(max, self.shared.clear_not_ready))
    }

    /// Lets a waiting candidate clear a leader whose node reports NotReady, as operator-lib's
    /// `Become` does: it deletes that Pod and the lock and takes over. **Off by default**,
    /// because a NotReady node is not a dead one: a leader cut off from the API server (or
    /// whose kubelet merely stopped reporting) goes on running and never hears that its lock
    /// was deleted, so two leaders may act at once until the partition heals. Turn it on only
    /// where a leader stuck on a lost node costs more than that. Evicted and preempted Pods
    /// are cleared either way: they have stopped. Other clones of this lock keep their setting.
    pub fn with_not_ready_clearing(self, clear: bool) -> Self {
        self.derived(self.shared.max_backoff, clear)
    }

    /// A lock on the same election with its own back-off cap and NotReady clearing.
    fn derived(&self, max_backoff: Duration, clear_not_ready: bool) -> Self {
        let shared = &self.shared;
        Self {
            shared: Arc::new(Shared {
                configmaps: shared.configmaps.clone(),
                pods: shared.pods.clone(),
                nodes: shared.nodes.clone(),
                name: shared.name.clone(),
                namespace: shared.namespace.clone(),
                describe: shared.describe.clone(),
                options: shared.options.clone(),
                max_backoff,
                clear_not_ready,
                errors: shared.errors.clone(),
                floor: AtomicU64::new(shared.floor()),
            }),
        }
    }

    fn build(
        client: kube::Client,
        cluster: String,
        name: &str,
        options: KubeLockOptions,
    ) -> LockResult<Self> {
        options.validate()?;
        check_object_name("lock name", name)?;
        check_object_name("fencing counter name", &format!("{name}{FENCING_SUFFIX}"))?;
        let namespace = resolve_pod_namespace(options.namespace.as_deref());
        check_object_name("namespace", &namespace)?;
        let describe = format!(
            "{}/api/v1/namespaces/{namespace}/configmaps/{name}",
            cluster.trim_end_matches('/')
        );
        let errors = ErrorContext {
            lock: describe.clone(),
            kind: LockKind::ConfigMap,
            namespace: namespace.clone(),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                configmaps: Api::namespaced(client.clone(), &namespace),
                pods: Api::namespaced(client.clone(), &namespace),
                nodes: Api::all(client),
                name: name.to_owned(),
                namespace,
                describe,
                options,
                max_backoff: DEFAULT_MAX_BACKOFF,
                clear_not_ready: false,
                errors,
                floor: AtomicU64::new(0),
            }),
        })
    }

    /// The ConfigMap's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The namespace of the ConfigMap and of the Pods.
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }
}

impl Shared {
    /// Runs one request within the request timeout; the caller handles the API's errors.
    pub(crate) async fn timed<T>(
        &self,
        request: impl Future<Output = kube::Result<T>>,
    ) -> LockResult<kube::Result<T>> {
        let limit = self.options.request_timeout;
        tokio::time::timeout(limit, request)
            .await
            .map_err(|_| self.errors.timed_out(limit))
    }

    /// Runs one request within the request timeout and maps its error.
    pub(crate) async fn call<T>(
        &self,
        verb: &str,
        resource: &str,
        request: impl Future<Output = kube::Result<T>>,
    ) -> LockResult<T> {
        self.timed(request)
            .await?
            .map_err(|err| self.map(verb, resource, err))
    }

    /// Maps an API error of `verb` on `resource`; a 403 names the Role that grants it.
    pub(crate) fn map(&self, verb: &str, resource: &str, err: kube::Error) -> LockError {
        if let kube::Error::Api(status) = &err {
            if status.code == 403 {
                return LockError::Forbidden {
                    lock: self.describe.clone(),
                    reason: format!(
                        "cannot {verb} {resource} in namespace {}: grant what a leader-for-life \
                         lock needs with the Role in {RBAC_HINT} (in the repository); the API \
                         server said: {}",
                        self.namespace, status.message
                    ),
                };
            }
        }
        self.errors.map(verb, err)
    }

    /// The highest fencing token seen so far.
    pub(crate) fn floor(&self) -> u64 {
        self.floor.load(Ordering::SeqCst)
    }

    /// Remembers a token seen on the lock or the counter.
    pub(crate) fn observe(&self, token: u64) {
        self.floor.fetch_max(token, Ordering::SeqCst);
    }

    pub(crate) fn corrupt(&self, reason: String) -> LockError {
        LockError::Corrupt {
            lock: self.describe.clone(),
            reason,
        }
    }
}

#[async_trait::async_trait]
impl LifeLock for ForLifeLock {
    async fn acquire(
        &self,
        identity: &str,
        cancel: &CancellationToken,
    ) -> LockResult<Option<LifeHold>> {
        acquire::acquire(&self.shared, identity, cancel).await
    }

    async fn holder(&self) -> LockResult<Option<(String, u64)>> {
        let shared = &self.shared;
        let Some(lock) = shared
            .call("get", "configmaps", shared.configmaps.get_opt(&shared.name))
            .await?
        else {
            return Ok(None);
        };
        let token = fencing::token_in(&lock, FENCING_TOKEN_ANNOTATION)
            .map_err(|reason| shared.corrupt(reason))?
            .unwrap_or(0);
        shared.observe(token);
        Ok(Some((pod::holder_identity(&lock), token)))
    }

    fn describe(&self) -> String {
        self.shared.describe.clone()
    }
}

impl fmt::Debug for ForLifeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForLifeLock")
            .field("lock", &self.shared.describe)
            .field("max_backoff", &self.shared.max_backoff)
            .field("clear_not_ready", &self.shared.clear_not_ready)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        crate::client::client(config).expect("a client")
    }

    #[tokio::test]
    async fn names_and_back_off_are_checked() {
        let options = || KubeLockOptions::default().with_namespace("team");
        let lock = ForLifeLock::new(client(), "memcached-operator-lock", options()).unwrap();
        assert_eq!(lock.namespace(), "team");
        assert_eq!(
            lock.describe(),
            "kubernetes:/api/v1/namespaces/team/configmaps/memcached-operator-lock"
        );
        assert!(ForLifeLock::new(client(), "Bad_Name", options()).is_err());
        let longest = "a".repeat(253);
        let err = ForLifeLock::new(client(), &longest, options()).unwrap_err();
        assert!(err.to_string().contains("fencing counter"), "{err}");
        let _clone = lock.clone();
        assert!(lock
            .clone()
            .with_max_backoff(Duration::from_secs(2))
            .is_ok());
        assert!(lock
            .clone()
            .with_max_backoff(Duration::ZERO)
            .unwrap_err()
            .to_string()
            .contains("greater than zero"));
        let fresh = ForLifeLock::new(client(), "orders", options()).unwrap();
        assert!(fresh.with_max_backoff(Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn the_flag_namespace_comes_first() {
        assert_eq!(resolve_pod_namespace(Some("jobs")), "jobs");
    }
}
