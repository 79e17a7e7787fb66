//! The conformance [`Backend`] for the three kinds of Kubernetes lock, on the process-wide test
//! kube-apiserver.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::Resource;
use lock_core::testing::conformance::Backend;
use lock_core::Lock;
use lock_k8s::{
    kube_config, ConfigMapLock, EndpointsLock, KubeLockOptions, LeaseLock, LeaseLocks, LockKind,
    LEADER_ANNOTATION,
};
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};

/// The namespace the conformance cases elect in.
pub const NAMESPACE: &str = "default";

/// A label and a data entry every raw-written annotation object carries, to show that the locks
/// leave them alone.
pub const KEPT_LABEL: (&str, &str) = ("app.kubernetes.io/name", "kept");

/// Elections as objects of one kind on the shared test kube-apiserver.
pub struct KubeBackend {
    pub kind: LockKind,
    pub server: &'static KubeApiServer,
    /// Leases that share one watch: every lock of the case is made from it.
    pub shared_watch: Option<LeaseLocks>,
}

impl KubeBackend {
    pub async fn start(kind: LockKind) -> Self {
        let server = tokio::task::spawn_blocking(KubeApiServer::shared)
            .await
            .expect("start the test kube-apiserver");
        Self {
            kind,
            server,
            shared_watch: None,
        }
    }

    /// Lease locks made from one [`LeaseLocks`], sharing its watch.
    pub async fn start_with_shared_watch() -> Self {
        let mut backend = Self::start(LockKind::Lease).await;
        let client = client_as(backend.server, ADMIN_USER).await;
        let options = KubeLockOptions::default().with_namespace(NAMESPACE);
        backend.shared_watch = Some(LeaseLocks::new(client, options).expect("valid options"));
        backend
    }
}

/// A lock of `kind` on `name` as `user` (by the user's kubeconfig) in `namespace`.
pub async fn lock_as(
    server: &KubeApiServer,
    user: &str,
    kind: LockKind,
    namespace: &str,
    name: &str,
) -> Arc<dyn Lock> {
    let kubeconfig = server.kubeconfig(user);
    let options = KubeLockOptions::default()
        .with_namespace(namespace)
        .with_kubeconfig(&kubeconfig);
    lock_k8s::connect(kind, name, options)
        .await
        .unwrap_or_else(|err| panic!("a {kind} lock as {user}: {err}"))
}

/// A client logged in as `user`.
pub async fn client_as(server: &KubeApiServer, user: &str) -> kube::Client {
    client_from(&server.kubeconfig(user)).await
}

async fn client_from(kubeconfig: &Path) -> kube::Client {
    let config = kube_config(Some(kubeconfig)).await.expect("a kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

#[async_trait::async_trait]
impl Backend for KubeBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        if let Some(locks) = &self.shared_watch {
            return Arc::new(locks.lock(name).expect("a valid name"));
        }
        let kubeconfig = self.server.admin_kubeconfig();
        let config = kube_config(Some(&kubeconfig)).await.expect("a kubeconfig");
        let options = KubeLockOptions::default().with_namespace(NAMESPACE);
        match self.kind {
            LockKind::Lease => Arc::new(LeaseLock::from_config(config, name, options).unwrap()),
            LockKind::ConfigMap => {
                Arc::new(ConfigMapLock::from_config(config, name, options).unwrap())
            }
            LockKind::Endpoints => {
                Arc::new(EndpointsLock::from_config(config, name, options).unwrap())
            }
        }
    }

    /// Lease: `bytes` are the JSON of a LeaseSpec, stored as the Lease's spec (a Lease can hold
    /// nothing but a LeaseSpec: the API server checks its schema). Annotation kinds: `bytes`
    /// become the leader annotation, next to a label and data that must survive.
    async fn write_raw(&self, name: &str, bytes: &[u8]) {
        let client = client_as(self.server, ADMIN_USER).await;
        match self.kind {
            LockKind::Lease => {
                // Sent as JSON, not through LeaseSpec: other clients can write values (times
                // near the year 10000) that the Rust types cannot hold.
                let spec: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_else(|err| {
                    panic!(
                        "a Lease holds only a LeaseSpec, and {:?} is not one ({err})",
                        String::from_utf8_lossy(bytes)
                    )
                });
                let resource = ApiResource::erase::<Lease>(&());
                let lease =
                    DynamicObject::new(name, &resource).data(serde_json::json!({ "spec": spec }));
                let api = Api::<DynamicObject>::namespaced_with(client, NAMESPACE, &resource);
                put_dynamic(api, name, lease).await;
            }
            LockKind::ConfigMap => {
                let map = ConfigMap {
                    metadata: raw_metadata(bytes),
                    data: Some([("config".to_owned(), "kept".to_owned())].into()),
                    ..ConfigMap::default()
                };
                put(Api::<ConfigMap>::namespaced(client, NAMESPACE), name, map).await;
            }
            LockKind::Endpoints => {
                let endpoints = Endpoints {
                    metadata: raw_metadata(bytes),
                    ..Endpoints::default()
                };
                put(Api::namespaced(client, NAMESPACE), name, endpoints).await;
            }
        }
    }

    async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        let client = client_as(self.server, ADMIN_USER).await;
        match self.kind {
            LockKind::Lease => {
                let resource = ApiResource::erase::<Lease>(&());
                let lease = Api::<DynamicObject>::namespaced_with(client, NAMESPACE, &resource)
                    .get_opt(name)
                    .await
                    .expect("get the lease")?;
                let spec = lease.data.get("spec").cloned().unwrap_or_default();
                Some(serde_json::to_vec(&spec).expect("JSON"))
            }
            LockKind::ConfigMap => {
                let map = Api::<ConfigMap>::namespaced(client, NAMESPACE)
                    .get_opt(name)
                    .await
                    .expect("get the config map")?;
                annotation(&map)
            }
            LockKind::Endpoints => {
                let endpoints = Api::<Endpoints>::namespaced(client, NAMESPACE)
                    .get_opt(name)
                    .await
                    .expect("get the endpoints")?;
                annotation(&endpoints)
            }
        }
    }
}

fn raw_metadata(bytes: &[u8]) -> kube::api::ObjectMeta {
    let text = String::from_utf8(bytes.to_vec()).expect("an annotation is UTF-8 text");
    kube::api::ObjectMeta {
        annotations: Some(BTreeMap::from([
            (LEADER_ANNOTATION.to_owned(), text),
            ("example.com/other".to_owned(), "kept".to_owned()),
        ])),
        labels: Some(BTreeMap::from([(
            KEPT_LABEL.0.to_owned(),
            KEPT_LABEL.1.to_owned(),
        )])),
        ..Default::default()
    }
}

fn annotation<K: Resource>(object: &K) -> Option<Vec<u8>> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(LEADER_ANNOTATION)
        .map(|text| text.as_bytes().to_vec())
}

/// Creates `object` as `name`, or replaces the one there.
async fn put_dynamic(api: Api<DynamicObject>, name: &str, mut object: DynamicObject) {
    match api.get_opt(name).await.expect("get") {
        None => {
            api.create(&PostParams::default(), &object)
                .await
                .expect("create");
        }
        Some(current) => {
            object.metadata.resource_version = current.metadata.resource_version;
            api.replace(name, &PostParams::default(), &object)
                .await
                .expect("replace");
        }
    }
}

/// Creates `object` as `name`, or replaces the one there.
async fn put<K>(api: Api<K>, name: &str, mut object: K)
where
    K: lock_k8s::LockObject,
{
    object.meta_mut().name = Some(name.to_owned());
    match api.get_opt(name).await.expect("get") {
        None => {
            api.create(&PostParams::default(), &object)
                .await
                .expect("create");
        }
        Some(current) => {
            object.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(name, &PostParams::default(), &object)
                .await
                .expect("replace");
        }
    }
}
