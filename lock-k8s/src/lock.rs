//! [`ObjectLock`]: the [`Lock`] over one Kubernetes object, compare-and-swap by resourceVersion.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use lock_core::backend::{HintStream, Version, Versioned};
use lock_core::{LeaderElectionRecord, Lock, LockError, LockResult};

use crate::errors::{is_status, ErrorContext};
use crate::hub::Hub;
use crate::object::version_of;
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
/// - `create` posts the object. When the object exists but holds no record, `create` writes the
///   record onto it by compare-and-swap on its `resourceVersion` (a lost race is
///   [`Conflict`](LockError::Conflict)); [`AlreadyExists`](LockError::AlreadyExists) means a
///   record is there.
/// - `update` replaces the object carrying the expected `resourceVersion`, so the API server
///   compares and swaps: its 409 `Conflict`, and 404 (the object was deleted), are
///   [`Conflict`](LockError::Conflict). The object is the one last read or written at that
///   version (or read afresh), so labels, other annotations and data stay as they were.
/// - An annotation that is not a record is [`Corrupt`](LockError::Corrupt) and never
///   overwritten; an object without the annotation (or a Lease without a spec or a holder)
///   reads as no record (`None`), not as a free one: an elector that saw a record there waits
///   a full lease before it creates one, since the leader may still be leading.
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
    /// The watch this lock's hint streams join, for a lock of an [`ObjectLocks`](crate::ObjectLocks);
    /// `None`: a watch of the one object.
    pub hub: Option<Arc<Hub<K>>>,
    /// The object as last read or written: the base of the next update at its version (when it
    /// holds a record) or of the next create (when it holds none).
    last: Mutex<Option<K>>,
}

impl<K: LockObject> ObjectLock<K> {
    /// Makes the lock on the object `name` with `client` in the namespace the options name (or
    /// [the default one](crate::resolve_namespace)). Contacts nothing; fails only for a bad
    /// name or option.
    pub fn new(client: kube::Client, name: &str, options: KubeLockOptions) -> LockResult<Self> {
        Self::build(client, None, name, options, None)
    }

    /// Like [`new`](Self::new) with a client made from `config`; its cluster URL shows in
    /// [`describe`](Lock::describe).
    ///
    /// Without a namespace in the options, the namespace `config` names (its kubeconfig
    /// context's, as `kubectl` uses it, or the pod's own in a cluster) is the lock's, unless
    /// that is `default`: then the pod's service account namespace, else `default`.
    pub fn from_config(
        config: kube::Config,
        name: &str,
        options: KubeLockOptions,
    ) -> LockResult<Self> {
        let options = environment::with_config_namespace(&config, options);
        let cluster = config.cluster_url.to_string();
        let client = environment::client(config)?;
        Self::build(client, Some(cluster), name, options, None)
    }

    /// Makes the lock with a client from the options' kubeconfig, or from the environment as
    /// `kubectl` finds it (the `KUBECONFIG` variable, `~/.kube/config`, else the in-cluster
    /// configuration of a pod). Contacts nothing yet.
    pub async fn connect(name: &str, options: KubeLockOptions) -> LockResult<Self> {
        let config = environment::kube_config(options.kubeconfig.as_deref()).await?;
        Self::from_config(config, name, options)
    }

    /// Makes the lock; `hub` is the shared watch of an [`ObjectLocks`](crate::ObjectLocks).
    pub(crate) fn build(
        client: kube::Client,
        cluster: Option<String>,
        name: &str,
        options: KubeLockOptions,
        hub: Option<Arc<Hub<K>>>,
    ) -> LockResult<Self> {
        options.validate()?;
        check_object_name("lock name", name)?;
        let namespace = resolved_namespace(&options)?;
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
                hub,
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

    /// The record and version of `object` (`None` when it holds no record), remembering it as
    /// the base of the next update or create.
    fn versioned(&self, object: K) -> LockResult<Option<Versioned>> {
        let version = self.version(&object)?;
        let record = object.record().map_err(|reason| self.corrupt(reason))?;
        self.remember(Some(object));
        Ok(record.map(|record| Versioned { record, version }))
    }

    /// The version of an object the API server sent.
    fn version(&self, object: &K) -> LockResult<Version> {
        version_of(object)
            .ok_or_else(|| self.unexpected("the API server sent an object without resourceVersion"))
    }

    /// The version at which `object`, just written with a record, now stands.
    fn written(&self, object: K) -> LockResult<Version> {
        match self.versioned(object)? {
            Some(versioned) => Ok(versioned.version),
            None => Err(self
                .unexpected("the API server answered a write with an object without the record")),
        }
    }

    /// Writes `record` onto `object` (which holds none) by compare-and-swap on its
    /// `resourceVersion`: someone else's write in between is a lost race.
    async fn write_onto(
        &self,
        mut object: K,
        record: &LeaderElectionRecord,
    ) -> LockResult<Version> {
        let version = self.version(&object)?;
        object.set_record(record);
        self.replace(object, &version, "create").await
    }

    /// Replaces the object with `object` if it is still at `expected`.
    async fn replace(&self, mut object: K, expected: &Version, verb: &str) -> LockResult<Version> {
        let inner = &self.inner;
        object.meta_mut().resource_version = Some(expected.as_str().to_owned());
        let params = PostParams::default();
        let name = object.name_any();
        match self
            .call(inner.api.replace(&name, &params, &object))
            .await?
        {
            Ok(updated) => self.written(updated),
            Err(err) if is_status(&err, 409, None) || is_status(&err, 404, None) => {
                self.remember(None);
                Err(self.conflict(expected))
            }
            Err(err) => Err(inner.errors.map(verb, err)),
        }
    }

    /// The remembered object, if it holds no record: the base of a create.
    fn remembered_without_record(&self) -> Option<K> {
        let last = self
            .inner
            .last
            .lock()
            .unwrap_or_else(|err| err.into_inner());
        last.as_ref()
            .filter(|object| matches!(object.record(), Ok(None)))
            .cloned()
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
        LockError::conflict(self.inner.describe.clone(), expected)
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

#[async_trait::async_trait]
impl<K: LockObject> Lock for ObjectLock<K> {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        let inner = &self.inner;
        match self.call(inner.api.get_opt(&inner.name)).await? {
            Ok(Some(object)) => self.versioned(object),
            Ok(None) => {
                self.remember(None);
                Ok(None)
            }
            Err(err) => Err(inner.errors.map("get", err)),
        }
    }

    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        let inner = &self.inner;
        // The object was read without a record: write onto it (saves a failed POST).
        if let Some(object) = self.remembered_without_record() {
            return self.write_onto(object, record).await;
        }
        let object = K::with_record(&inner.namespace, &inner.name, record);
        let params = PostParams::default();
        match self.call(inner.api.create(&params, &object)).await? {
            Ok(created) => self.written(created),
            Err(err) if is_status(&err, 409, Some("AlreadyExists")) => {
                // The object exists: AlreadyExists only if it holds a record.
                let current = match self.call(inner.api.get_opt(&inner.name)).await? {
                    Ok(Some(current)) => current,
                    // Deleted since: someone else is at work on it, a lost race.
                    Ok(None) => {
                        return Err(LockError::conflict(inner.describe.clone(), "no object"))
                    }
                    Err(err) => return Err(inner.errors.map("get", err)),
                };
                match current.record() {
                    Err(reason) => Err(self.corrupt(reason)),
                    Ok(Some(_)) => {
                        self.remember(Some(current));
                        Err(LockError::AlreadyExists {
                            lock: inner.describe.clone(),
                        })
                    }
                    Ok(None) => self.write_onto(current, record).await,
                }
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
                    current
                }
                Ok(None) => return Err(self.conflict(expected)),
                Err(err) => return Err(inner.errors.map("get", err)),
            },
        };
        // Only a record is updated: a value that is not one is left alone, and an object
        // without a record at this version means the record vanished (a conflict).
        if object
            .record()
            .map_err(|reason| self.corrupt(reason))?
            .is_none()
        {
            return Err(self.conflict(expected));
        }
        object.set_record(record);
        self.replace(object, expected, "update").await
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    /// A watch of the one object, or the object's place in the shared watch of its
    /// [`ObjectLocks`](crate::ObjectLocks).
    fn watch(&self) -> Option<HintStream> {
        Some(match &self.inner.hub {
            Some(hub) => hints::shared(hub.clone(), self.inner.name.clone()),
            None => hints::watch(
                self.inner.api.clone(),
                &self.inner.name,
                self.inner.describe.clone(),
            ),
        })
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

/// The namespace the options name (or [the default one](crate::resolve_namespace)), checked.
pub(crate) fn resolved_namespace(options: &KubeLockOptions) -> LockResult<String> {
    let namespace = environment::resolve_namespace(options.namespace.as_deref());
    check_object_name("namespace", &namespace)?;
    Ok(namespace)
}
