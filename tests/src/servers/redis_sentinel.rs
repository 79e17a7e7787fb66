//! A Redis primary with replicas, watched by sentinels (`redis-server --sentinel`), all on
//! free loopback ports: the topology production Redis elections run on, with the failovers
//! to go with it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::ports::{free_loopback_port, start_on_free_ports};
use super::process::ServerProcess;
use super::redis::{spawn_redis_server, RedisServer};

/// The master name the sentinels watch.
pub const MASTER_NAME: &str = "leader-election-primary";
/// How long a primary may stay silent before the sentinels call it down: short, so that a
/// test's failovers take seconds.
const DOWN_AFTER: Duration = Duration::from_millis(1_000);
/// Sentinel's failover timeout: it also spaces out failovers of one master (two of these).
const FAILOVER_TIMEOUT: Duration = Duration::from_millis(2_000);
/// How long a failover may take in a test before it fails.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
/// How long a starting sentinel may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One sentinel process.
#[derive(Debug)]
struct Sentinel {
    process: ServerProcess,
    port: u16,
    dir: TempDir,
    /// The password it requires of clients and other sentinels, if any.
    password: Option<String>,
}

impl Sentinel {
    fn start(primary_port: u16, quorum: usize, password: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("redis-sentinel-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot make a temporary directory: {err}"));
        let mut sentinel = Self {
            process: ServerProcess::new("redis-server --sentinel"),
            port: 0,
            dir,
            password: password.map(str::to_owned),
        };
        start_on_free_ports("redis-server --sentinel", || {
            sentinel.port = free_loopback_port();
            sentinel.spawn(primary_port, quorum)
        });
        sentinel
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sentinel.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes the configuration (a sentinel rewrites its own file, so it must be writable),
    /// starts the process and waits for `PING`.
    fn spawn(&mut self, primary_port: u16, quorum: usize) -> Result<(), String> {
        let config = self.dir.path().join("sentinel.conf");
        let text = &[
            "bind 127.0.0.1".to_owned(),
            "protected-mode no".to_owned(),
            "daemonize no".to_owned(),
            format!("port {}", self.port),
            format!("dir \"{}\"", self.dir.path().display()),
            format!("logfile \"{}\"", self.log_path().display()),
            format!("sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}"),
            format!(
                "sentinel down-after-milliseconds {MASTER_NAME} {}",
                DOWN_AFTER.as_millis()
            ),
            format!(
                "sentinel failover-timeout {MASTER_NAME} {}",
                FAILOVER_TIMEOUT.as_millis()
            ),
            format!("sentinel parallel-syncs {MASTER_NAME} 2"),
        ];
        // Clients must give the password, and sentinels give it to each other.
        let text = match &self.password {
            Some(password) => [
                text.to_vec(),
                vec![
                    format!("requirepass \"{password}\""),
                    format!("sentinel sentinel-pass \"{password}\""),
                ],
            ]
            .concat(),
            None => text.to_vec(),
        }
        .join("\n");
        std::fs::write(&config, text + "\n")
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", config.display()));
        let child = spawn_redis_server(&config, &["--sentinel"], self.dir.path());
        self.process.started(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.process.is_running() {
                self.process.kill();
                return Err(format!("the sentinel exited; its log:\n{}", self.log()));
            }
            if self.ask_primary().is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.process.kill();
                return Err(format!(
                    "the sentinel did not answer within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port of the primary this sentinel names now, if it answers.
    fn ask_primary(&self) -> Option<u16> {
        let (_, port): (String, u16) = self.ask(
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME),
        )?;
        Some(port)
    }

    /// How many other sentinels this one knows for the master.
    fn known_sentinels(&self) -> usize {
        self.ask::<Vec<redis::Value>>(redis::cmd("SENTINEL").arg("SENTINELS").arg(MASTER_NAME))
            .map_or(0, |sentinels| sentinels.len())
    }

    /// One command to this sentinel, with its password; `None` when it does not answer.
    fn ask<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |password| format!(":{password}@"));
        ask_url(&format!("redis://{auth}127.0.0.1:{}", self.port), command)
    }
}

/// A primary, its replicas and the sentinels that watch them, each its own process on
/// 127.0.0.1. Dropping it stops them all.
///
/// ```no_run
/// use lock_tests::servers::redis_sentinel::SentinelTopology;
///
/// let mut redis = SentinelTopology::start(2, 3);
/// println!("elect through {}", redis.url());
/// let failover = redis.kill_primary_and_fail_over();
/// println!("the sentinels promoted port {} in {:?}", failover.new_primary, failover.took);
/// ```
#[derive(Debug)]
pub struct SentinelTopology {
    /// Every data server; which one is the primary changes with failovers.
    servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

/// A primary [`SentinelTopology::kill_primary`] killed: its port and when.
#[derive(Clone, Copy, Debug)]
pub struct KilledPrimary {
    /// Its port.
    pub port: u16,
    /// When it was killed.
    pub at: Instant,
}

/// What [`SentinelTopology::kill_primary_and_fail_over`] saw.
#[derive(Clone, Copy, Debug)]
pub struct Failover {
    /// The port of the primary that was killed.
    pub old_primary: u16,
    /// The port of the replica the sentinels promoted.
    pub new_primary: u16,
    /// From the kill until the promoted replica answered as the primary.
    pub took: Duration,
}

impl SentinelTopology {
    /// Starts a primary, `replicas` replicas of it (waiting until they are in sync) and
    /// `sentinels` sentinels with a majority quorum.
    ///
    /// # Panics
    /// When `redis-server` is missing or a server does not come up.
    pub fn start(replicas: usize, sentinels: usize) -> Self {
        Self::start_with(replicas, sentinels, None)
    }

    /// Like [`start`](Self::start), with sentinels that require `password` (`requirepass`)
    /// of their clients and give it to each other (`sentinel sentinel-pass`). The data
    /// servers want none.
    pub fn start_with_sentinel_password(replicas: usize, sentinels: usize, password: &str) -> Self {
        Self::start_with(replicas, sentinels, Some(password))
    }

    fn start_with(replicas: usize, sentinels: usize, password: Option<&str>) -> Self {
        let primary = RedisServer::builder().persistent().start();
        let primary_port = primary.port();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            servers.push(
                RedisServer::builder()
                    .persistent()
                    .replica_of(primary_port)
                    .start(),
            );
        }
        let topology = Self {
            sentinels: (0..sentinels)
                .map(|_| Sentinel::start(primary_port, sentinels / 2 + 1, password))
                .collect(),
            servers,
        };
        topology.wait_for_replicas(primary_port, replicas);
        topology.wait_until_sentinels_know_each_other();
        topology
    }

    /// The lock URL: `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,…/leader-election-primary`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://{}/{MASTER_NAME}",
            self.sentinel_addresses().join(",")
        )
    }

    /// The sentinels as `127.0.0.1:PORT`, for `--redis-sentinel`.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect()
    }

    /// The port of the primary as the sentinels name it now (the first that answers).
    ///
    /// # Panics
    /// When no sentinel answers.
    pub fn primary_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(Sentinel::ask_primary)
            .expect("no sentinel answers")
    }

    /// The data server on `port`.
    ///
    /// # Panics
    /// When no server of the topology has that port.
    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers
            .iter()
            .find(|server| server.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// SIGKILLs the primary, waits until the sentinels promoted a replica (every sentinel
    /// names it and it answers `ROLE` as a primary), then starts the old primary again (with
    /// its append-only file) as a replica of the new one and waits until every replica is
    /// online and in sync.
    ///
    /// # Panics
    /// When the failover or the rejoin takes longer than a minute; the sentinels' logs are in
    /// the message.
    pub fn kill_primary_and_fail_over(&mut self) -> Failover {
        let killed = self.kill_primary();
        self.fail_over(killed)
    }

    /// SIGKILLs the primary (nothing else): the first half of
    /// [`kill_primary_and_fail_over`](Self::kill_primary_and_fail_over).
    pub fn kill_primary(&mut self) -> KilledPrimary {
        let port = self.primary_port();
        let at = Instant::now();
        self.server_mut(port).kill();
        KilledPrimary { port, at }
    }

    /// The second half of [`kill_primary_and_fail_over`](Self::kill_primary_and_fail_over),
    /// after [`kill_primary`](Self::kill_primary).
    pub fn fail_over(&mut self, killed: KilledPrimary) -> Failover {
        let old_primary = killed.port;
        let replicas = self.servers.len() - 1;
        let new_primary = self.wait(
            |topology| {
                let named: Vec<Option<u16>> = topology
                    .sentinels
                    .iter()
                    .map(Sentinel::ask_primary)
                    .collect();
                let port = named.first().copied().flatten()?;
                let agreed = named.iter().all(|each| *each == Some(port));
                (agreed && port != old_primary && role(port).as_deref() == Some("master"))
                    .then_some(port)
            },
            "the sentinels to promote a replica",
        );
        let took = killed.at.elapsed();
        // Back as a replica of the new primary, as an operator brings a failed primary back
        // (the sentinels would convert it too, but only at their next look, up to 10 s on).
        self.server_mut(old_primary)
            .restart_as_replica_of(new_primary);
        self.wait_for_replicas(new_primary, replicas);
        Failover {
            old_primary,
            new_primary,
            took,
        }
    }

    fn server_mut(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|server| server.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// Waits until the primary on `port` has `count` replicas online and acknowledging (a lag
    /// of at most a second, as Redis's own `min-replicas-max-lag` counts), and every other
    /// server calls itself a replica.
    ///
    /// A server that replicates from another one is pointed at the primary (`REPLICAOF`), as
    /// the sentinels do at their next look: after failovers in quick succession a sentinel
    /// may end one by timeout and leave a replica behind a replica.
    fn wait_for_replicas(&self, port: u16, count: usize) {
        let mut corrected_at = Instant::now();
        self.wait(
            |topology| {
                let others: Vec<u16> = topology
                    .servers
                    .iter()
                    .map(RedisServer::port)
                    .filter(|other| *other != port)
                    .collect();
                let misplaced: Vec<u16> = others
                    .iter()
                    .copied()
                    .filter(|other| replica_of(*other) != Some(port))
                    .collect();
                if !misplaced.is_empty() && corrected_at.elapsed() > Duration::from_secs(3) {
                    for other in &misplaced {
                        let _: Option<()> =
                            ask(*other, redis::cmd("REPLICAOF").arg("127.0.0.1").arg(port));
                    }
                    corrected_at = Instant::now();
                }
                (misplaced.is_empty() && synced_replicas(port) >= count).then_some(())
            },
            "the replicas to be in sync",
        );
    }

    fn wait_until_sentinels_know_each_other(&self) {
        let others = self.sentinels.len() - 1;
        self.wait(
            |topology| {
                topology
                    .sentinels
                    .iter()
                    .all(|sentinel| sentinel.known_sentinels() >= others)
                    .then_some(())
            },
            "the sentinels to find each other",
        );
    }

    /// Polls `ready` every 50 ms for at most a minute.
    fn wait<T>(&self, mut ready: impl FnMut(&Self) -> Option<T>, what: &str) -> T {
        let deadline = Instant::now() + FAILOVER_LIMIT;
        loop {
            if let Some(value) = ready(self) {
                return value;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .sentinels
                    .iter()
                    .map(|sentinel| format!("sentinel {}:\n{}", sentinel.port, sentinel.log()))
                    .collect();
                panic!(
                    "waited {FAILOVER_LIMIT:?} for {what}; the sentinels' logs:\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One command to the plain server on `port`, or `None` when it does not answer.
fn ask<T: redis::FromRedisValue>(port: u16, command: &redis::Cmd) -> Option<T> {
    ask_url(&format!("redis://127.0.0.1:{port}"), command)
}

/// One command to the server at `url`, or `None` when it does not answer.
fn ask_url<T: redis::FromRedisValue>(url: &str, command: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(url).ok()?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    connection
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    command.query(&mut connection).ok()
}

/// What `ROLE` says first: `master`, `slave` or `sentinel`.
fn role(port: u16) -> Option<String> {
    let reply: Vec<redis::Value> = ask(port, &redis::cmd("ROLE"))?;
    match reply.first()? {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// The port of the primary that the server on `port` replicates from, if it is a replica.
fn replica_of(port: u16) -> Option<u16> {
    let reply: Vec<redis::Value> = ask(port, &redis::cmd("ROLE"))?;
    let is_replica =
        matches!(reply.first(), Some(redis::Value::BulkString(kind)) if kind == b"slave");
    match (is_replica, reply.get(2)) {
        (true, Some(redis::Value::Int(primary))) => u16::try_from(*primary).ok(),
        _ => None,
    }
}

/// How many replicas the primary on `port` lists as online with a lag of at most a second.
/// (Their offsets trail the primary's by whatever was written since their last
/// acknowledgement, sent once a second, so offsets are no test of being in sync while
/// instances renew.)
fn synced_replicas(port: u16) -> usize {
    let Some(info) = ask::<String>(port, redis::cmd("INFO").arg("replication")) else {
        return 0;
    };
    info.lines()
        .filter(|line| line.starts_with("slave") && line.contains("state=online"))
        .filter(|line| {
            line.split(',')
                .find_map(|field| field.trim().strip_prefix("lag="))
                .and_then(|lag| lag.parse::<u64>().ok())
                .is_some_and(|lag| lag <= 1)
        })
        .count()
}
