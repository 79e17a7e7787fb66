//! [`ObjectLock`]: the [`Lock`] over one Kubernetes object, compare-and-swap by resourceVersion.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints};
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use lock_core::{
    HintStream, LeaderElectionRecord, Lock, LockError, LockResult, Version, Versioned,
};

use crate::errors::{is_status, ErrorContext};
use crate::options::check_object_name;
use crate::{environment, hints, KubeLockOptions, LockObject};

/// A leader election lock in a `coordination.k8s.io/v1` Lease, mapped as client-go's
/// `LeaseLock` maps it: `holderIdentity`, `leaseDurationSeconds`, `acquireTime` and
/// `renewTime` (as MicroTime), `leaseTransitions`, and `strategy` and `preferredHolder` when
/// set. `kubectl get lease NAME -o yaml` shows what a Go elector would have written.
pub type LeaseLock = ObjectLock<Lease>;

/// A leader election lock in a ConfigMap, as client-go's legacy `ConfigMapLock`: the record as
/// JSON in the annotation [`LEADER_ANNOTATION`](crate::LEADER_ANNOTATION); the map's data,
/// labels and other annotations are left as they were.
pub type ConfigMapLock = ObjectLock<ConfigMap>;

/// A leader election lock in an Endpoints object, as client-go's legacy `EndpointsLock`: the
/// record as JSON in the annotation [`LEADER_ANNOTATION`](crate::LEADER_ANNOTATION); subsets,
/// labels and other annotations are left as they were.
pub type EndpointsLock = ObjectLock<Endpoints>;

/// A leader election lock in one Kubernetes object of kind `K` (see [`LeaseLock`],
/// [`ConfigMapLock`] and [`EndpointsLock`]).
///
/// - The version is the object's `resourceVersion`, opaque.
/// - `create` posts the object; the API server's 409 `AlreadyExists` is
///   [`AlreadyExists`](LockError::AlreadyExists).
/// - `update` replaces the object carrying the expected `resourceVersion`, so the API server
///   compares and swaps: its 409 `Conflict`, and 404 (the object was deleted), are
///   [`Conflict`](LockError::Conflict). The object is the one last read or written at that
///   version (or read afresh), so labels, other annotations and data stay as they were.
/// - An annotation that is not a record is [`Corrupt`](LockError::Corrupt) and never
///   overwritten; an object without the annotation (or a Lease without a spec) reads as a free
///   record that `update` may take.
/// - [`watch`](Lock::watch) watches the one object (field selector `metadata.name`).
/// - A 403 is [`Forbidden`](LockError::Forbidden), naming the user, the verb, the resource and
///   the namespace, and the Role that grants what is needed (see `deploy/`).
///
/// Clones are cheap and share the client.
pub struct ObjectLock<K: LockObject> {
    inner: Arc<Inner<K>>,
}

impl<K: LockObject> Clone for ObjectLock<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// What clones of one lock share.
pub(crate) struct Inner<K: LockObject> {
    pub api: Api<K>,
    pub name: String,
    pub namespace: String,
    pub options: KubeLockOptions,
    pub describe: String,
    pub errors: ErrorContext,
    /// The object as last read or written, when it held a record: the base of the next update
    /// at its version.
    last: Mutex<Option<K>>,
}

impl<K: LockObject> ObjectLock<K> {
    /// Makes the lock on the object `name` with `client` in the namespace the options name (or
    /// [the default one](crate::resolve_namespace)). Contacts nothing; fails only for a bad
    /// name or option.
    pub fn new(client: kube::Client, name: &str, options: KubeLockOptions) -> LockResult<Self> {
        Self::build(client, None, name, options)
    }

    /// Like [`new`](Self::new) with a client made from `config`; its cluster URL shows in
    /// [`describe`](Lock::describe).
    pub fn from_config(
        config: kube::Config,
        name: &str,
        options: KubeLockOptions,
    ) -> LockResult<Self> {
        let cluster = config.cluster_url.to_string();
        let client = crate::client::client(config).map_err(|err| {
            LockError::InvalidConfig(format!("cannot make a Kubernetes client: {err}"))
        })?;
        Self::build(client, Some(cluster), name, options)
    }

    /// Makes the lock with a client from the options' kubeconfig, or from the environment as
    /// `kubectl` finds it (the `KUBECONFIG` variable, `~/.kube/config`, else the in-cluster
    /// configuration of a pod). Contacts nothing yet.
    pub async fn connect(name: &str, options: KubeLockOptions) -> LockResult<Self> {
        let config = environment::kube_config(options.kubeconfig.as_deref()).await?;
        Self::from_config(config, name, options)
    }

    fn build(
        client: kube::Client,
        cluster: Option<String>,
        name: &str,
        options: KubeLockOptions,
    ) -> LockResult<Self> {
        options.validate()?;
        check_object_name("lock name", name)?;
        let namespace = environment::resolve_namespace(options.namespace.as_deref());
        check_object_name("namespace", &namespace)?;
        let path = format!("{}/{name}", K::url_path(&(), Some(&namespace)));
        let cluster = cluster.unwrap_or_else(|| "kubernetes:".to_owned());
        let describe = format!("{}{path}", cluster.trim_end_matches('/'));
        let errors = ErrorContext {
            lock: describe.clone(),
            kind: K::KIND,
            namespace: namespace.clone(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                api: Api::namespaced(client, &namespace),
                name: name.to_owned(),
                namespace,
                options,
                describe,
                errors,
                last: Mutex::new(None),
            }),
        })
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The object's namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The options the lock was made with.
    pub fn options(&self) -> &KubeLockOptions {
        &self.inner.options
    }

    /// Runs one request within the request timeout; the caller maps the API server's errors.
    async fn call<T>(
        &self,
        request: impl Future<Output = kube::Result<T>>,
    ) -> LockResult<kube::Result<T>> {
        let limit = self.inner.options.request_timeout;
        tokio::time::timeout(limit, request)
            .await
            .map_err(|_| self.inner.errors.timed_out(limit))
    }

    /// The record and version of `object`, remembering it as the base of the next update.
    fn versioned(&self, object: K) -> LockResult<Versioned> {
        let version = version_of(&object).ok_or_else(|| {
            self.unexpected("the API server sent an object without resourceVersion")
        })?;
        let record = self
            .inner
            .record_of(&object)
            .map_err(|reason| self.corrupt(reason))?;
        self.remember(Some(object));
        Ok(Versioned { record, version })
    }

    fn remember(&self, object: Option<K>) {
        let mut last = self
            .inner
            .last
            .lock()
            .unwrap_or_else(|err| err.into_inner());
        *last = object;
    }

    /// The object last seen at `version`, if it is the one remembered.
    fn remembered_at(&self, version: &Version) -> Option<K> {
        let last = self
            .inner
            .last
            .lock()
            .unwrap_or_else(|err| err.into_inner());
        last.as_ref()
            .filter(|object| version_of(*object).as_ref() == Some(version))
            .cloned()
    }

    fn conflict(&self, expected: &Version) -> LockError {
        LockError::Conflict {
            lock: self.inner.describe.clone(),
            expected: expected.to_string(),
        }
    }

    fn corrupt(&self, reason: String) -> LockError {
        LockError::Corrupt {
            lock: self.inner.describe.clone(),
            reason,
        }
    }

    fn unexpected(&self, reason: &str) -> LockError {
        LockError::Unavailable {
            lock: self.inner.describe.clone(),
            reason: reason.to_owned(),
            source: None,
        }
    }
}

impl<K: LockObject> Inner<K> {
    /// The record `object` holds: a free record when it holds none yet.
    pub fn record_of(&self, object: &K) -> Result<LeaderElectionRecord, String> {
        Ok(object.record()?.unwrap_or_default())
    }
}

/// An object's `resourceVersion` as a version.
pub(crate) fn version_of<K: Resource>(object: &K) -> Option<Version> {
    object
        .meta()
        .resource_version
        .as_deref()
        .filter(|token| !token.is_empty())
        .map(Version::new)
}

#[async_trait::async_trait]
impl<K: LockObject> Lock for ObjectLock<K> {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        let inner = &self.inner;
        match self.call(inner.api.get_opt(&inner.name)).await? {
            Ok(Some(object)) => self.versioned(object).map(Some),
            Ok(None) => {
                self.remember(None);
                Ok(None)
            }
            Err(err) => Err(inner.errors.map("get", err)),
        }
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let inner = &self.inner;
        let object = K::with_record(&inner.namespace, &inner.name, record);
        let params = PostParams::default();
        match self.call(inner.api.create(&params, &object)).await? {
            Ok(created) => Ok(self.versioned(created)?.version),
            Err(err) if is_status(&err, 409, Some("AlreadyExists")) => {
                Err(LockError::AlreadyExists {
                    lock: inner.describe.clone(),
                })
            }
            Err(err) => Err(inner.errors.map("create", err)),
        }
    }

    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let inner = &self.inner;
        // An empty or zero resourceVersion would make the API server replace unconditionally;
        // no stored object has one.
        if matches!(expected.as_str(), "" | "0") {
            return Err(self.conflict(expected));
        }
        let mut object = match self.remembered_at(expected) {
            Some(object) => object,
            None => match self.call(inner.api.get_opt(&inner.name)).await? {
                Ok(Some(current)) => {
                    if version_of(&current).as_ref() != Some(expected) {
                        return Err(self.conflict(expected));
                    }
                    inner
                        .record_of(&current)
                        .map_err(|reason| self.corrupt(reason))?;
                    current
                }
                Ok(None) => return Err(self.conflict(expected)),
                Err(err) => return Err(inner.errors.map("get", err)),
            },
        };
        object.set_record(record);
        object.meta_mut().resource_version = Some(expected.as_str().to_owned());
        let params = PostParams::default();
        let name = object.name_any();
        match self
            .call(inner.api.replace(&name, &params, &object))
            .await?
        {
            Ok(updated) => Ok(self.versioned(updated)?.version),
            Err(err) if is_status(&err, 409, None) || is_status(&err, 404, None) => {
                self.remember(None);
                Err(self.conflict(expected))
            }
            Err(err) => Err(inner.errors.map("update", err)),
        }
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn watch(&self) -> Option<HintStream> {
        Some(hints::watch(self.inner.clone()))
    }
}

impl<K: LockObject> fmt::Debug for ObjectLock<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectLock")
            .field("lock", &self.inner.describe)
            .field("options", &self.inner.options)
            .finish()
    }
}
