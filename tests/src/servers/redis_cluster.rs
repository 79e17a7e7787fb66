//! A Redis Cluster on loopback: three primaries with one replica each (`redis-cli --cluster
//! create`), every node its own `redis-server` on a free port.

use std::process::Command;
use std::time::{Duration, Instant};

use super::redis::RedisServer;

/// How long the cluster may take to form, or to heal after a failover.
const FORM_LIMIT: Duration = Duration::from_secs(60);

/// Six nodes forming one cluster: three primaries, one replica each. Dropping it stops them.
///
/// ```no_run
/// use lock_tests::servers::redis_cluster::RedisCluster;
///
/// let cluster = RedisCluster::start();
/// println!("elect through {}", cluster.url());
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create --cluster-replicas 1`
    /// and waits until every node says `cluster_state:ok`.
    ///
    /// # Panics
    /// When `redis-server` or `redis-cli` is missing, or the cluster does not form.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::builder().cluster_node().start())
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-cli (install it with `apt-get install -y redis-tools`): {err}")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_ok();
        cluster
    }

    /// The lock URL: `redis+cluster://127.0.0.1:P1,…` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The port of the primary that serves `key`'s slot now.
    ///
    /// # Panics
    /// When no node answers.
    pub fn primary_of(&self, key: &str) -> u16 {
        let mut connection = self.connection();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut connection)
            .expect("CLUSTER KEYSLOT");
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut connection)
            .expect("CLUSTER SLOTS");
        for range in slots {
            let redis::Value::Array(items) = range else {
                continue;
            };
            let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                (items.first(), items.get(1))
            else {
                continue;
            };
            if (*start..=*end).contains(&i64::from(slot)) {
                if let Some(redis::Value::Array(primary)) = items.get(2) {
                    if let Some(redis::Value::Int(port)) = primary.get(1) {
                        return u16::try_from(*port).expect("a port");
                    }
                }
            }
        }
        panic!("no primary serves slot {slot}")
    }

    /// SIGKILLs the primary on `port`, waits until its replica took over (every live node
    /// says `cluster_state:ok`), then starts the killed node again (it rejoins as a replica).
    ///
    /// # Panics
    /// When the cluster does not heal within a minute.
    pub fn kill_and_fail_over(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        node.kill();
        self.wait_ok_without(port);
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("the node");
        node.restart();
        self.wait_ok();
    }

    /// Moves `key`'s slot (with its keys) from its primary to another primary, as a live
    /// resharding does: `CLUSTER SETSLOT … IMPORTING/MIGRATING`, `MIGRATE` of every key in the
    /// slot, then `CLUSTER SETSLOT … NODE` on every primary. Returns the new primary's port.
    ///
    /// # Panics
    /// When a step fails.
    pub fn migrate_slot_of(&self, key: &str) -> u16 {
        let from = self.primary_of(key);
        let mut source = self.node_connection(from);
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut source)
            .expect("CLUSTER KEYSLOT");
        let primaries: Vec<u16> = self
            .ports()
            .into_iter()
            .filter(|port| self.role(*port).as_deref() == Some("master"))
            .collect();
        let to = *primaries
            .iter()
            .find(|port| **port != from)
            .expect("another primary");
        let id = |port: u16| -> String {
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut self.node_connection(port))
                .expect("CLUSTER MYID")
        };
        let (from_id, to_id) = (id(from), id(to));
        let mut target = self.node_connection(to);
        let setslot = |connection: &mut redis::Connection, state: &str, node: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(node)
                .exec(connection)
                .unwrap_or_else(|err| panic!("CLUSTER SETSLOT {slot} {state}: {err}"));
        };
        setslot(&mut target, "IMPORTING", &from_id);
        setslot(&mut source, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .exec(&mut source)
                .unwrap_or_else(|err| panic!("MIGRATE: {err}"));
        }
        for port in primaries {
            setslot(&mut self.node_connection(port), "NODE", &to_id);
        }
        to
    }

    fn node_connection(&self, port: u16) -> redis::Connection {
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .and_then(|node| {
                node.admin_client()
                    .get_connection_with_timeout(Duration::from_millis(500))
                    .ok()
            })
            .unwrap_or_else(|| panic!("the node on port {port} does not answer"))
    }

    fn role(&self, port: u16) -> Option<String> {
        let reply: Vec<redis::Value> = redis::cmd("ROLE")
            .query(&mut self.node_connection(port))
            .ok()?;
        match reply.first()? {
            redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }

    /// How many clients the node on `port` has subscribed to `channel` by sharded pub/sub
    /// (`PUBSUB SHARDNUMSUB`) and by classic pub/sub (`PUBSUB NUMSUB`); `None` when it does
    /// not answer.
    pub fn subscribers(&self, port: u16, channel: &str) -> Option<(i64, i64)> {
        let node = self.nodes.iter().find(|node| node.port() == port)?;
        let mut connection = node
            .admin_client()
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let count = |command: &str, connection: &mut redis::Connection| {
            redis::cmd("PUBSUB")
                .arg(command)
                .arg(channel)
                .query::<(String, i64)>(connection)
                .ok()
                .map(|(_, count)| count)
        };
        Some((
            count("SHARDNUMSUB", &mut connection)?,
            count("NUMSUB", &mut connection)?,
        ))
    }

    /// A client for the node on `port`, as its administrator.
    ///
    /// # Panics
    /// When no node has that port.
    pub fn admin_client(&self, port: u16) -> redis::Client {
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .admin_client()
    }

    /// The ports of every node.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    fn connection(&self) -> redis::Connection {
        self.nodes
            .iter()
            .find_map(|node| {
                node.admin_client()
                    .get_connection_with_timeout(Duration::from_millis(500))
                    .ok()
            })
            .expect("no cluster node answers")
    }

    fn wait_ok(&self) {
        self.wait_ok_without(0);
    }

    /// Waits until every node but the one on `down` (0: none) says `cluster_state:ok`.
    fn wait_ok_without(&self, down: u16) {
        let deadline = Instant::now() + FORM_LIMIT;
        loop {
            let all_ok = self
                .nodes
                .iter()
                .filter(|node| node.port() != down)
                .all(|node| {
                    node.admin_client()
                        .get_connection_with_timeout(Duration::from_millis(500))
                        .ok()
                        .and_then(|mut connection| {
                            redis::cmd("CLUSTER")
                                .arg("INFO")
                                .query::<String>(&mut connection)
                                .ok()
                        })
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                });
            if all_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not reach cluster_state:ok within {FORM_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
