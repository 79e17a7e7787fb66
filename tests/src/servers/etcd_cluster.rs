//! A real three-member etcd cluster for tests, as etcd runs in production: each member on two
//! free loopback ports (client and peer), data and logs in one temporary directory; members
//! can be killed and restarted one by one (the raft leader among them). SIGKILLed when dropped.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::etcd::{run_etcdctl, spawn_etcd};
use super::ports::free_loopback_port;
use super::process::ServerProcess;

/// How many members.
pub const MEMBERS: usize = 3;
/// How long the cluster (or a restarted member) may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it is asked.
const START_POLL: Duration = Duration::from_millis(50);

/// One member: its name, ports and process.
#[derive(Debug)]
struct Member {
    process: ServerProcess,
    name: String,
    client_port: u16,
    peer_port: u16,
}

/// Three etcd members forming one cluster on 127.0.0.1.
///
/// ```no_run
/// use lock_tests::servers::etcd_cluster::EtcdCluster;
///
/// let mut cluster = EtcdCluster::start();
/// let leader = cluster.leader().expect("a raft leader");
/// cluster.kill(leader);
/// cluster.restart(leader);
/// ```
#[derive(Debug)]
pub struct EtcdCluster {
    /// First, so that the members are killed before their directory is removed.
    members: Vec<Member>,
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts the three members and waits until every one is healthy.
    ///
    /// # Panics
    /// With [`ETCD_MISSING`] when `etcd` is not on `PATH`; with the members' logs when the
    /// cluster does not come up.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("etcd-cluster-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot make a temporary directory: {err}"));
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 2 * MEMBERS {
            let port = free_loopback_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let members = (0..MEMBERS)
            .map(|index| Member {
                process: ServerProcess::new("etcd"),
                name: format!("member{index}"),
                client_port: ports[2 * index],
                peer_port: ports[2 * index + 1],
            })
            .collect();
        let mut cluster = Self { members, dir };
        for index in 0..MEMBERS {
            cluster.spawn(index);
        }
        cluster.wait_healthy(&(0..MEMBERS).collect::<Vec<_>>());
        cluster
    }

    /// Every member's client URL, `http://127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| format!("http://127.0.0.1:{}", member.client_port))
            .collect()
    }

    /// Every member's client port.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members
            .iter()
            .map(|member| member.client_port)
            .collect()
    }

    /// The member that is the raft leader now, if the running members agree on one.
    pub fn leader(&self) -> Option<usize> {
        for (index, member) in self.members.iter().enumerate() {
            let endpoint = format!("http://127.0.0.1:{}", member.client_port);
            let Ok(output) = etcdctl(&[endpoint], &["endpoint", "status", "--write-out=json"])
            else {
                continue;
            };
            let json: serde_json::Value = serde_json::from_str(&output).unwrap_or_default();
            let status = &json[0]["Status"];
            let (Some(id), Some(leader)) = (
                status["header"]["member_id"].as_u64(),
                status["leader"].as_u64(),
            ) else {
                continue;
            };
            if id == leader {
                return Some(index);
            }
        }
        None
    }

    /// SIGSTOPs member `index`: its connections stay open and nothing answers, as a member
    /// wedged or cut off; [`resume`](Self::resume) continues it.
    pub fn pause(&self, index: usize) {
        self.members[index].process.pause();
    }

    /// SIGCONTs a [paused](Self::pause) member.
    pub fn resume(&self, index: usize) {
        self.members[index].process.resume();
    }

    /// Writes `value` under `key` by hand (`etcdctl put`).
    ///
    /// # Panics
    /// When the cluster refuses the write.
    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl(&["put", "--", key, value])
            .unwrap_or_else(|err| panic!("etcdctl put failed: {err}"));
    }

    /// The value under `key`, read by hand (`etcdctl get`), if there is one.
    ///
    /// # Panics
    /// When the cluster cannot be read.
    pub fn get(&self, key: &str) -> Option<String> {
        let output = self
            .etcdctl(&["get", "--write-out=json", "--", key])
            .unwrap_or_else(|err| panic!("etcdctl get failed: {err}"));
        let json: serde_json::Value = serde_json::from_str(&output).unwrap_or_default();
        if json["kvs"].as_array().is_none_or(Vec::is_empty) {
            return None;
        }
        let value = self
            .etcdctl(&["get", "--print-value-only", "--", key])
            .unwrap_or_else(|err| panic!("etcdctl get failed: {err}"));
        Some(value.strip_suffix('\n').unwrap_or(&value).to_owned())
    }

    /// Kills member `index` with SIGKILL and waits until it is gone.
    pub fn kill(&mut self, index: usize) {
        self.members[index].process.kill();
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.process.kill();
        }
    }

    /// Starts the killed member `index` again with its data and waits until it is healthy.
    ///
    /// # Panics
    /// With its log when it does not become healthy.
    pub fn restart(&mut self, index: usize) {
        self.members[index].process.kill();
        self.spawn(index);
        self.wait_healthy(&[index]);
    }

    /// Starts every member again with its data (after [`kill_all`](Self::kill_all)).
    pub fn restart_all(&mut self) {
        for index in 0..MEMBERS {
            self.members[index].process.kill();
            self.spawn(index);
        }
        self.wait_healthy(&(0..MEMBERS).collect::<Vec<_>>());
    }

    /// Runs `etcdctl` with `args` against every member; its output, or its error output.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        etcdctl(&self.endpoints(), args)
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[index].name))
    }

    /// The log of member `index`.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(self.log_path(index)).unwrap_or_default()
    }

    fn spawn(&mut self, index: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(index))
            .unwrap_or_else(|err| panic!("cannot open an etcd log: {err}"));
        let member = &self.members[index];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let data = self.dir.path().join(format!("{}.etcd", member.name));
        // The initial-cluster flags matter on the first start only; a restart finds its data.
        let mut command = Command::new("etcd");
        command
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", cluster.join(",")))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=lock-tests")
            // Fast elections on loopback, with room for a loaded two-core machine.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .current_dir(self.dir.path());
        let child = spawn_etcd(&mut command, log);
        self.members[index].process.started(child);
    }

    fn wait_healthy(&mut self, indexes: &[usize]) {
        let deadline = Instant::now() + START_TIMEOUT;
        for &index in indexes {
            let endpoint = format!("http://127.0.0.1:{}", self.members[index].client_port);
            loop {
                if !self.members[index].process.is_running() {
                    panic!("etcd member {index} exited; its log:\n{}", self.log(index));
                }
                if etcdctl(std::slice::from_ref(&endpoint), &["endpoint", "health"]).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member {index} not healthy within {START_TIMEOUT:?}; its log:\n{}",
                    self.log(index)
                );
                std::thread::sleep(START_POLL);
            }
        }
    }
}

/// Runs `etcdctl` against `endpoints`.
fn etcdctl(endpoints: &[String], args: &[&str]) -> Result<String, String> {
    run_etcdctl(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=10s")
            .args(args),
    )
}
