//! What the campaign elects through: a real server (or a directory) started for the run, the
//! demo flags that reach it through an instance's proxies, and what an outsider can do to it
//! (delete the record, write a foreign, free or non-record value, kill and restart the server).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use lock_core::{LeaderElectionRecord, Lock};
use lock_k8s::{KubeLockOptions, LockKind, LEADER_ANNOTATION};
use tempfile::TempDir;

use crate::servers::etcd_cluster::EtcdCluster;
use crate::servers::kube::KubeApiServer;
use crate::servers::redis::RedisServer;

/// The namespace of the Kubernetes elections.
const NAMESPACE: &str = "default";

/// The backends the campaign runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A lock file in a temporary directory (no server, no network).
    File,
    /// One `redis-server`, with an append-only file fsynced on every write.
    Redis,
    /// A three-member etcd cluster.
    Etcd,
    /// A Kubernetes Lease on a real kube-apiserver.
    K8sLease,
    /// The record in an annotation of a ConfigMap on a real kube-apiserver.
    K8sConfigMap,
}

impl TargetKind {
    /// Every backend, in the order the campaign runs them.
    pub const ALL: [Self; 5] = [
        Self::File,
        Self::Redis,
        Self::Etcd,
        Self::K8sLease,
        Self::K8sConfigMap,
    ];

    /// The short name used in reports and in `CAMPAIGN_BACKENDS`.
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Redis => "redis",
            Self::Etcd => "etcd",
            Self::K8sLease => "k8s-lease",
            Self::K8sConfigMap => "k8s-configmap",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// True when instances reach a server over TCP (and can be cut off from it).
    pub fn networked(self) -> bool {
        self != Self::File
    }

    /// True when a value that is not a record can be stored where the record lives (a Lease's
    /// fields are typed by the API server, so there is none).
    pub fn takes_garbage(self) -> bool {
        self != Self::K8sLease
    }
}

/// The server behind a target.
enum Server {
    File(TempDir),
    Redis(RedisServer),
    Etcd(EtcdCluster),
    /// The test binary's shared API server (one per process: it takes seconds to start).
    Kube(&'static KubeApiServer),
}

/// A started backend with one election on it.
pub struct Target {
    kind: TargetKind,
    server: Server,
    lock: String,
    /// A lock from the test process straight to the server, for outside writes.
    outside: Arc<dyn Lock>,
}

impl Target {
    /// Starts the server of `kind` and an outside lock on the election `lock`.
    pub async fn start(kind: TargetKind, lock: &str) -> Self {
        let server = match kind {
            TargetKind::File => Server::File(
                tempfile::Builder::new()
                    .prefix("campaign-")
                    .tempdir()
                    .expect("a temporary directory"),
            ),
            TargetKind::Redis => Server::Redis(RedisServer::builder().persistent().start()),
            TargetKind::Etcd => Server::Etcd(
                tokio::task::spawn_blocking(EtcdCluster::start)
                    .await
                    .expect("start an etcd cluster"),
            ),
            TargetKind::K8sLease | TargetKind::K8sConfigMap => Server::Kube(
                tokio::task::spawn_blocking(KubeApiServer::shared)
                    .await
                    .expect("start a kube-apiserver"),
            ),
        };
        let mut target = Self {
            kind,
            server,
            lock: lock.to_owned(),
            outside: Arc::new(lock_core::testing::MemoryLock::new("placeholder")),
        };
        target.outside = target.open_outside().await;
        target
    }

    /// The server addresses an instance's proxies forward to (none for a file).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let ports = match &self.server {
            Server::File(_) => Vec::new(),
            Server::Redis(server) => vec![server.port()],
            Server::Etcd(cluster) => cluster.client_ports(),
            Server::Kube(server) => vec![server.port()],
        };
        ports
            .into_iter()
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .collect()
    }

    /// The demo flags of an instance whose proxies listen on `proxies` (in the order of
    /// [`addresses`](Self::addresses)); `name` labels its files.
    pub fn flags(&self, name: &str, proxies: &[SocketAddr]) -> Vec<String> {
        let lock = self.lock.clone();
        let mut flags: Vec<String> = match &self.server {
            Server::File(dir) => vec![
                "--backend".into(),
                "file".into(),
                "--lock-file".into(),
                self.lock_file(dir).display().to_string(),
            ],
            Server::Redis(_) => vec![
                "--backend".into(),
                "redis".into(),
                "--redis-url".into(),
                format!("redis://{}", proxies[0]),
            ],
            Server::Etcd(_) => vec![
                "--backend".into(),
                "etcd".into(),
                "--etcd-endpoints".into(),
                proxies
                    .iter()
                    .map(|proxy| format!("http://{proxy}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ],
            Server::Kube(server) => vec![
                "--backend".into(),
                "k8s".into(),
                "--lock-kind".into(),
                self.lock_kind().as_str().to_owned(),
                "--namespace".into(),
                NAMESPACE.into(),
                "--kubeconfig".into(),
                relayed_kubeconfig(server, name, proxies[0])
                    .display()
                    .to_string(),
            ],
        };
        flags.extend(["--lock-name".into(), lock]);
        flags
    }

    fn lock_file(&self, dir: &TempDir) -> PathBuf {
        dir.path().join(format!("{}.json", self.lock))
    }

    fn lock_kind(&self) -> LockKind {
        if self.kind == TargetKind::K8sLease {
            LockKind::Lease
        } else {
            LockKind::ConfigMap
        }
    }

    async fn open_outside(&self) -> Arc<dyn Lock> {
        match &self.server {
            Server::File(dir) => Arc::new(lock_file::FileLock::new(self.lock_file(dir))),
            Server::Redis(server) => Arc::new(
                lock_redis::RedisLock::new(
                    &server.url(),
                    &self.lock,
                    lock_redis::RedisLockOptions::default(),
                )
                .expect("an outside Redis lock"),
            ),
            Server::Etcd(server) => Arc::new(
                lock_etcd::EtcdLock::new(
                    &server.endpoints(),
                    &self.lock,
                    lock_etcd::EtcdLockOptions::default(),
                )
                .expect("an outside etcd lock"),
            ),
            Server::Kube(server) => {
                let options = KubeLockOptions::default()
                    .with_namespace(NAMESPACE)
                    .with_kubeconfig(server.admin_kubeconfig());
                lock_k8s::connect(self.lock_kind(), &self.lock, options)
                    .await
                    .expect("an outside Kubernetes lock")
            }
        }
    }

    /// Writes a record naming `holder` (empty: a free record) with `lease` over whatever the
    /// record is, as another program would: one more transition than the record it replaces,
    /// so that fencing tokens go on growing. Retries conflicts with the instances' renews, and
    /// passing failures of its own connection (a server or member the previous fault restarted
    /// may have closed it: the first call after that fails, the next one reconnects).
    pub async fn write_record(&self, holder: &str, lease: Duration) -> Result<(), String> {
        let mut last_error = String::new();
        for _ in 0..20 {
            let now = Utc::now();
            let current = match self.outside.get().await {
                Ok(current) => current,
                Err(err) if err.is_retryable() => {
                    last_error = err.to_string();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(err) => return Err(err.to_string()),
            };
            let transitions = current
                .as_ref()
                .map_or(0, |current| current.record.leader_transitions + 1);
            let record = LeaderElectionRecord {
                holder_identity: holder.to_owned(),
                lease_duration_seconds: i32::try_from(lease.as_secs().max(1)).unwrap_or(i32::MAX),
                acquire_time: Some(now),
                renew_time: Some(now),
                leader_transitions: transitions,
                ..LeaderElectionRecord::default()
            };
            let written = match &current {
                Some(current) => self.outside.update(&record, &current.version).await,
                None => self.outside.create(&record).await,
            };
            match written {
                Ok(_) => return Ok(()),
                Err(lock_core::LockError::Conflict { .. }) => {
                    last_error = "a conflict with the instances' renews".into();
                }
                Err(err) if err.is_retryable() => {
                    last_error = err.to_string();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err.to_string()),
            }
        }
        Err(format!("20 attempts failed; the last: {last_error}"))
    }

    /// Deletes the record where it is stored.
    pub async fn delete_record(&self) -> Result<(), String> {
        match &self.server {
            Server::File(dir) => std::fs::remove_file(self.lock_file(dir))
                .map_err(|err| format!("remove the lock file: {err}")),
            Server::Redis(server) => {
                redis_command(server, redis::cmd("DEL").arg(self.redis_key())).await
            }
            Server::Etcd(cluster) => cluster
                .etcdctl(&["del", "--", &self.etcd_key()])
                .map(|_| ()),
            Server::Kube(server) => {
                let client = admin_client(server).await?;
                let params = DeleteParams::default();
                let deleted = match self.kind {
                    TargetKind::K8sLease => Api::<Lease>::namespaced(client, NAMESPACE)
                        .delete(&self.lock, &params)
                        .await
                        .map(|_| ()),
                    _ => Api::<ConfigMap>::namespaced(client, NAMESPACE)
                        .delete(&self.lock, &params)
                        .await
                        .map(|_| ()),
                };
                deleted.map_err(|err| err.to_string())
            }
        }
    }

    /// Stores a value that is not a record where the record lives (see
    /// [`TargetKind::takes_garbage`]).
    pub async fn write_garbage(&self) -> Result<(), String> {
        const GARBAGE: &str = "not a record {";
        match &self.server {
            Server::File(dir) => std::fs::write(self.lock_file(dir), GARBAGE)
                .map_err(|err| format!("write the lock file: {err}")),
            Server::Redis(server) => {
                redis_command(server, redis::cmd("SET").arg(self.redis_key()).arg(GARBAGE)).await
            }
            Server::Etcd(cluster) => cluster
                .etcdctl(&["put", "--", &self.etcd_key(), GARBAGE])
                .map(|_| ()),
            Server::Kube(server) if self.kind == TargetKind::K8sConfigMap => {
                let client = admin_client(server).await?;
                let patch = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": self.lock,
                        "annotations": { LEADER_ANNOTATION: GARBAGE },
                    },
                });
                Api::<ConfigMap>::namespaced(client, NAMESPACE)
                    .patch(
                        &self.lock,
                        &PatchParams::apply("campaign").force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            }
            Server::Kube(_) => Err("a Lease takes no value that is not a record".into()),
        }
    }

    /// Kills the server (every etcd member) with SIGKILL.
    pub fn kill_server(&mut self) {
        match &mut self.server {
            Server::Redis(server) => server.kill(),
            Server::Etcd(cluster) => cluster.kill_all(),
            Server::File(_) | Server::Kube(_) => {}
        }
    }

    /// Starts the killed server again on its ports: with its data (Redis from its fsynced
    /// append-only file, etcd members from their data directories), or, with `wipe` on Redis,
    /// empty, as a server without persistence comes back.
    pub fn restart_server(&mut self, wipe: bool) {
        match &mut self.server {
            Server::Redis(server) if wipe => server.restart_empty(),
            Server::Redis(server) => server.restart(),
            Server::Etcd(cluster) => cluster.restart_all(),
            Server::File(_) | Server::Kube(_) => {}
        }
    }

    /// Kills the etcd member that is the raft leader; its index, or `None` when there is no
    /// etcd cluster or no leader now.
    pub fn kill_raft_leader(&mut self) -> Option<usize> {
        let Server::Etcd(cluster) = &mut self.server else {
            return None;
        };
        let leader = cluster.leader()?;
        cluster.kill(leader);
        Some(leader)
    }

    /// Starts etcd member `index` again with its data.
    pub fn restart_member(&mut self, index: usize) {
        if let Server::Etcd(cluster) = &mut self.server {
            cluster.restart(index);
        }
    }

    /// Ends every hint stream while commands go on working, where the server can do that
    /// (Redis: `CLIENT KILL TYPE pubsub`); `None` elsewhere.
    pub async fn cut_hints(&self) -> Option<usize> {
        match &self.server {
            Server::Redis(server) => Some(server.kill_pubsub_clients()),
            _ => None,
        }
    }

    fn etcd_key(&self) -> String {
        format!("leader-election/{}", self.lock)
    }

    fn redis_key(&self) -> String {
        format!("leader-election:{{{}}}", self.lock)
    }
}

/// Runs `command` on `server` as its admin.
async fn redis_command(server: &RedisServer, command: &redis::Cmd) -> Result<(), String> {
    let mut connection = server
        .admin_client()
        .get_multiplexed_async_connection()
        .await
        .map_err(|err| err.to_string())?;
    command
        .query_async::<redis::Value>(&mut connection)
        .await
        .map(|_| ())
        .map_err(|err| err.to_string())
}

/// The admin's client of `server`.
async fn admin_client(server: &KubeApiServer) -> Result<kube::Client, String> {
    let config = lock_k8s::kube_config(Some(&server.admin_kubeconfig()))
        .await
        .map_err(|err| err.to_string())?;
    kube::Client::try_from(config).map_err(|err| err.to_string())
}

/// A copy of the admin's kubeconfig that sends instance `name` through its proxy at `proxy`
/// (the server's certificate names 127.0.0.1, so TLS holds through the proxy).
fn relayed_kubeconfig(server: &KubeApiServer, name: &str, proxy: SocketAddr) -> PathBuf {
    let path = server
        .dir()
        .join(format!("kubeconfig-campaign-{name}.yaml"));
    let text = std::fs::read_to_string(server.admin_kubeconfig()).expect("the kubeconfig");
    let relayed = text.replace(&server.url(), &format!("https://{proxy}"));
    assert_ne!(text, relayed, "the kubeconfig names the server's URL");
    std::fs::write(&path, relayed).expect("write a kubeconfig");
    path
}
