//! [`ObjectLocks`]: the locks of many elections in one namespace, with one watch.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use lock_core::LockResult;

use crate::environment;
use crate::hub::Hub;
use crate::lock::resolved_namespace;
use crate::{KubeLockOptions, LockObject, ObjectLock};

/// The locks of many elections of kind `K` in one namespace, sharing one watch on the API
/// server: a process that elects per shard or per tenant puts one watch there, not one per
/// election. Each lock is an [`ObjectLock`] like any other, and hears of its own object only.
///
/// The shared watch covers every object of the kind in the namespace, also those of elections
/// this process does not take part in: use it when the process holds many of the namespace's
/// elections. A lock made alone ([`ObjectLock::new`]) watches its one object. The RBAC is the
/// same: `list` and `watch` on the kind in the namespace.
///
/// ```no_run
/// use lock_k8s::{KubeLockOptions, LeaseLocks};
///
/// # async fn example(client: lock_k8s::kube::Client) -> lock_core::LockResult<()> {
/// let leases = LeaseLocks::new(client, KubeLockOptions::default().with_namespace("shards"))?;
/// let shards: Vec<_> = (0..1000)
///     .map(|shard| leases.lock(&format!("shard-{shard}")))
///     .collect::<Result<_, _>>()?;
/// # Ok(())
/// # }
/// ```
pub struct ObjectLocks<K: LockObject> {
    client: kube::Client,
    options: KubeLockOptions,
    namespace: String,
    hub: Arc<Hub<K>>,
}

/// The locks of many Lease elections in one namespace, with one watch.
pub type LeaseLocks = ObjectLocks<Lease>;

impl<K: LockObject> Clone for ObjectLocks<K> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            options: self.options.clone(),
            namespace: self.namespace.clone(),
            hub: self.hub.clone(),
        }
    }
}

impl<K: LockObject> ObjectLocks<K> {
    /// The locks of elections in the namespace the options name (or [the default
    /// one](crate::resolve_namespace)), through `client`. Contacts nothing; fails only for a
    /// bad namespace or option.
    pub fn new(client: kube::Client, options: KubeLockOptions) -> LockResult<Self> {
        options.validate()?;
        let namespace = resolved_namespace(&options)?;
        let api: Api<K> = Api::namespaced(client.clone(), &namespace);
        let describe = format!("{} locks in the namespace {namespace}", K::KIND);
        let options = options.with_namespace(namespace.clone());
        Ok(Self {
            client,
            options,
            namespace,
            hub: Arc::new(Hub::new(api, describe)),
        })
    }

    /// Like [`new`](Self::new) with a client from the options' kubeconfig or the environment,
    /// and the namespace chosen, as [`ObjectLock::connect`] finds them. Contacts nothing yet.
    pub async fn connect(options: KubeLockOptions) -> LockResult<Self> {
        let config = environment::kube_config(options.kubeconfig.as_deref()).await?;
        let options = environment::with_config_namespace(&config, options);
        Self::new(environment::client(config)?, options)
    }

    /// The lock of the election `name` (the object of that name), sharing the watch. Fails
    /// as `InvalidConfig` for a name that is not a valid object name.
    pub fn lock(&self, name: &str) -> LockResult<ObjectLock<K>> {
        ObjectLock::build(
            self.client.clone(),
            None,
            name,
            self.options.clone(),
            Some(self.hub.clone()),
        )
    }

    /// The namespace of the locks.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl<K: LockObject> fmt::Debug for ObjectLocks<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectLocks")
            .field("kind", &K::KIND)
            .field("namespace", &self.namespace)
            .finish()
    }
}
