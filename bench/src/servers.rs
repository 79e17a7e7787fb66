//! One real server per backend for the benchmark, and the number of requests it has served.

use std::path::PathBuf;
use tokio::sync::OnceCell;

use lock_tests::servers::etcd::EtcdServer;
use lock_tests::servers::kube::KubeApiServer;
use lock_tests::servers::redis::RedisServer;
use prometheus_parse::{Scrape, Value};
use tempfile::TempDir;

use crate::error::{BenchError, BenchResult};
use leader_election::Backend;

use crate::target::Target;

/// The namespace of the benchmark's Leases.
pub const NAMESPACE: &str = "default";

/// Commands that only the lock's Lua script runs, inside one `EVALSHA`: they are part of the
/// request that sent the script, not requests of their own. `info` is the benchmark's own.
const NOT_CLIENT_COMMANDS: [&str; 8] = [
    "type", "hmget", "hset", "pexpire", "persist", "publish", "time", "info",
];

/// A running server of one backend (a directory for the file backend).
pub struct BackendServer {
    /// Which backend.
    pub backend: Backend,
    /// How candidates reach it.
    pub target: Target,
    server: Server,
}

enum Server {
    /// The directory of the lock files, removed on drop. The file backend's load is counted
    /// by the file lock itself ([`leader_election::file::file_operations`]): every file candidate of the
    /// load scenario runs in this process.
    File {
        _dir: TempDir,
    },
    Redis(RedisServer),
    Etcd(EtcdServer),
    K8s(Box<KubeApiServer>, OnceCell<kube::Client>),
}

impl BackendServer {
    /// Starts the backend's server on a free loopback port in a temporary directory; it stops
    /// when this is dropped.
    pub async fn start(backend: Backend) -> BenchResult<Self> {
        tokio::task::spawn_blocking(move || Self::start_blocking(backend))
            .await
            .map_err(|err| BenchError::Setup(format!("starting {}: {err}", backend.name())))
    }

    fn start_blocking(backend: Backend) -> Self {
        let (server, target) = match backend {
            Backend::File => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let target = Target::new(format!("file://{}/", dir.path().display()));
                (Server::File { _dir: dir }, target)
            }
            Backend::Redis => {
                let server = RedisServer::start();
                let target = Target::new(server.url());
                (Server::Redis(server), target)
            }
            Backend::Etcd => {
                let server = EtcdServer::start();
                let endpoint = server.endpoint();
                let host = endpoint.trim_start_matches("http://");
                let target = Target::new(format!("etcd://{host}"));
                (Server::Etcd(server), target)
            }
            Backend::K8s => {
                // Without these the server renews Leases of its own (its identity every 10 s,
                // its leader-election controller's every 2 s), which would count as load on the
                // Leases the benchmark measures.
                let server = KubeApiServer::builder()
                    .feature_gate("CoordinatedLeaderElection=false")
                    .feature_gate("APIServerIdentity=false")
                    .feature_gate("UnknownVersionInteroperabilityProxy=false")
                    .start();
                let target = Target::new(format!(
                    "k8s://lease/{NAMESPACE}?kubeconfig={}",
                    server.admin_kubeconfig().display()
                ));
                (Server::K8s(Box::new(server), OnceCell::new()), target)
            }
        };
        Self {
            backend,
            target,
            server,
        }
    }

    /// The admin kubeconfig of the kube-apiserver.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        match &self.server {
            Server::K8s(server, _) => Some(server.admin_kubeconfig()),
            _ => None,
        }
    }

    /// Requests the server has served so far, as it counts them. The benchmark's own reads of
    /// the figures are left out.
    ///
    /// - file: the reads and writes of lock files by this process (the candidates of the load
    ///   scenario run in it);
    /// - Redis: the `calls` of `INFO commandstats`, without the commands only the lock's script
    ///   runs (each script run counts once, as its `EVALSHA`);
    /// - etcd: `grpc_server_msg_received_total`, every gRPC request message (a unary call, or one
    ///   message on a watch stream);
    /// - kube-apiserver: `apiserver_request_total` for the resource `leases`.
    pub async fn requests(&self) -> BenchResult<Option<u64>> {
        match &self.server {
            Server::File { .. } => {
                let operations = leader_election::file::file_operations();
                Ok(Some(operations.reads + operations.writes))
            }
            Server::Redis(server) => redis_requests(server).await.map(Some),
            Server::Etcd(server) => etcd_requests(server).await.map(Some),
            Server::K8s(server, client) => {
                let client = client.get_or_try_init(|| admin_client(server)).await?;
                kube_requests(client).await.map(Some)
            }
        }
    }
}

impl BackendServer {
    /// The server's processes (redis-server; etcd; kube-apiserver and its etcd), for their
    /// CPU time and memory. Empty for the file backend.
    pub fn pids(&self) -> Vec<u32> {
        match &self.server {
            Server::File { .. } => Vec::new(),
            Server::Redis(server) => server.process().pid().into_iter().collect(),
            Server::Etcd(server) => server.process().pid().into_iter().collect(),
            Server::K8s(server, _) => server.pids(),
        }
    }

    /// The kube-apiserver's admin client (`None` for the other backends).
    pub async fn kube_admin(&self) -> BenchResult<Option<kube::Client>> {
        match &self.server {
            Server::K8s(server, client) => Ok(Some(
                client
                    .get_or_try_init(|| admin_client(server))
                    .await?
                    .clone(),
            )),
            _ => Ok(None),
        }
    }
}

/// The requests on Leases the kube-apiserver has served so far, by verb
/// (`apiserver_request_total`).
pub async fn lease_requests_by_verb(
    client: &kube::Client,
) -> BenchResult<std::collections::BTreeMap<String, u64>> {
    let fail = |err: kube::Error| BenchError::Counter(format!("kube-apiserver /metrics: {err}"));
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a valid request");
    let text = client.request_text(request).await.map_err(fail)?;
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = Scrape::parse(lines)
        .map_err(|err| BenchError::Counter(format!("cannot parse the metrics: {err}")))?;
    let mut by_verb = std::collections::BTreeMap::new();
    for sample in &scrape.samples {
        if sample.metric != "apiserver_request_total"
            || sample.labels.get("resource") != Some("leases")
        {
            continue;
        }
        if let (Some(verb), Value::Counter(value) | Value::Untyped(value)) =
            (sample.labels.get("verb"), &sample.value)
        {
            *by_verb.entry(verb.to_owned()).or_insert(0) += *value as u64;
        }
    }
    Ok(by_verb)
}

async fn redis_requests(server: &RedisServer) -> BenchResult<u64> {
    let fail = |err: redis::RedisError| BenchError::Counter(format!("redis INFO: {err}"));
    let mut connection = server
        .admin_client()
        .get_multiplexed_async_connection()
        .await
        .map_err(fail)?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .map_err(fail)?;
    Ok(client_commands(&info))
}

/// Sums the calls of `INFO commandstats` that clients sent.
fn client_commands(info: &str) -> u64 {
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| line.split_once(':'))
        .filter(|(command, _)| !NOT_CLIENT_COMMANDS.contains(command))
        .filter_map(|(_, stats)| {
            stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|calls| calls.parse::<u64>().ok())
        })
        .sum()
}

async fn etcd_requests(server: &EtcdServer) -> BenchResult<u64> {
    let url = format!("{}/metrics", server.endpoint());
    let text = fetch_text(reqwest::get(&url).await).await?;
    metric_sum(&text, "grpc_server_msg_received_total", |_| true)
}

async fn admin_client(server: &KubeApiServer) -> BenchResult<kube::Client> {
    let options = kube::config::KubeConfigOptions::default();
    let kubeconfig = kube::config::Kubeconfig::read_from(server.admin_kubeconfig())
        .map_err(|err| BenchError::Counter(format!("admin kubeconfig: {err}")))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|err| BenchError::Counter(format!("admin kubeconfig: {err}")))?;
    kube::Client::try_from(config)
        .map_err(|err| BenchError::Counter(format!("kube-apiserver client: {err}")))
}

async fn kube_requests(client: &kube::Client) -> BenchResult<u64> {
    let by_verb = lease_requests_by_verb(client).await?;
    if by_verb.is_empty() {
        return Err(BenchError::Counter(
            "the metrics have no apiserver_request_total for leases".to_owned(),
        ));
    }
    Ok(by_verb.values().sum())
}

async fn fetch_text(response: reqwest::Result<reqwest::Response>) -> BenchResult<String> {
    let fail = |err: reqwest::Error| BenchError::Counter(format!("etcd /metrics: {err}"));
    response.map_err(fail)?.text().await.map_err(fail)
}

/// The sum of the counter `name` over the series whose labels `select` accepts; an error when
/// the text does not parse or no series matches (a count of 0 would read as no load).
fn metric_sum(
    text: &str,
    name: &str,
    select: impl Fn(&prometheus_parse::Labels) -> bool,
) -> BenchResult<u64> {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = Scrape::parse(lines)
        .map_err(|err| BenchError::Counter(format!("cannot parse the metrics: {err}")))?;
    let values: Vec<u64> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name && select(&sample.labels))
        .filter_map(|sample| match sample.value {
            Value::Counter(value) | Value::Untyped(value) => Some(value as u64),
            _ => None,
        })
        .collect();
    if values.is_empty() {
        return Err(BenchError::Counter(format!("the metrics have no {name}")));
    }
    Ok(values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_internal_commands_are_not_requests() {
        let info = "# Commandstats\r\ncmdstat_evalsha:calls=7,usec=1\r\ncmdstat_hset:calls=7,usec=1\r\ncmdstat_publish:calls=7,usec=1\r\ncmdstat_subscribe:calls=2,usec=1\r\ncmdstat_info:calls=9,usec=1\r\n";
        assert_eq!(client_commands(info), 9);
    }

    #[test]
    fn metric_sums_select_by_label() {
        let text = "# TYPE apiserver_request_total counter\napiserver_request_total{resource=\"leases\",verb=\"PUT\"} 5\napiserver_request_total{resource=\"leases\",verb=\"GET\"} 2\napiserver_request_total{resource=\"pods\",verb=\"GET\"} 40\n";
        let leases = metric_sum(text, "apiserver_request_total", |labels| {
            labels.get("resource") == Some("leases")
        });
        assert_eq!(leases.unwrap(), 7);
        assert!(metric_sum(text, "etcd_nothing_total", |_| true).is_err());
    }
}
