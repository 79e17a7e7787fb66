//! A real `redis-server` for tests: free loopback port, configuration and files in a temporary
//! directory, optionally TLS, a password and ACL users; SIGKILLed when dropped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::ports::{free_loopback_port, start_on_free_ports};
use super::process::ServerProcess;
use super::tls::TestCertificates;

/// What a missing `redis-server` binary fails with.
pub const REDIS_SERVER_MISSING: &str =
    "redis-server not found: install it with `apt-get install -y redis-server` (scripts/test does this)";

/// How long a starting server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a starting server is asked.
const START_POLL: Duration = Duration::from_millis(20);

/// An ACL user of a test server: name, password and rules (as after `ACL SETUSER name`).
#[derive(Clone, Debug)]
struct AclUser {
    name: String,
    password: String,
    rules: String,
}

/// How to start a [`RedisServer`]: plain, with TLS, a password for the default user, ACL users.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct RedisServerBuilder {
    tls: bool,
    persistent: bool,
    password: Option<String>,
    users: Vec<AclUser>,
    replica_of: Option<u16>,
    cluster: bool,
}

impl RedisServerBuilder {
    /// Serves TLS only (`port 0`, `tls-port`), with a certificate for `localhost` and
    /// `127.0.0.1` signed by a CA generated for this server; clients need no certificate.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Keeps the data across a kill: an append-only file fsynced on every write
    /// (`appendonly yes`, `appendfsync always`), which [`RedisServer::restart`] loads again.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Runs as a node of a Redis Cluster (`cluster-enabled yes`, a node timeout of one
    /// second), not yet joined to any: see `redis_cluster::RedisCluster`.
    pub fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Starts as a replica of the plain server on 127.0.0.1 at `port` (`replicaof`).
    pub fn replica_of(mut self, port: u16) -> Self {
        self.replica_of = Some(port);
        self
    }

    /// Requires `password` from the default user (`requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Adds the ACL user `name` with `password` and `rules` (for example the output of
    /// `lock_redis::acl_rules`), as `user <name> on >password <rules>` in the configuration.
    pub fn acl_user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        rules: impl Into<String>,
    ) -> Self {
        self.users.push(AclUser {
            name: name.into(),
            password: password.into(),
            rules: rules.into(),
        });
        self
    }

    /// Starts the server and waits until it answers `PING`.
    ///
    /// # Panics
    /// With [`REDIS_SERVER_MISSING`] when `redis-server` is not on `PATH`; with the server's
    /// log when it does not come up.
    pub fn start(self) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("redis-server-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot make a temporary directory: {err}"));
        let certificates = self.tls.then(|| TestCertificates::generate(dir.path()));
        let mut server = RedisServer {
            settings: self,
            certificates,
            dir,
            port: 0,
            process: ServerProcess::new("redis-server"),
        };
        start_on_free_ports("redis-server", || {
            server.port = free_loopback_port();
            server.spawn_and_wait()
        });
        server
    }
}

/// A running `redis-server` on 127.0.0.1 at a free port, with its configuration, log and any
/// data in a temporary directory. Dropping it kills the server and removes the directory.
///
/// ```no_run
/// use lock_tests::servers::redis::RedisServer;
///
/// let server = RedisServer::start();
/// println!("redis at {}", server.url());
/// ```
#[derive(Debug)]
pub struct RedisServer {
    /// First, so that the server is killed before its directory is removed.
    process: ServerProcess,
    settings: RedisServerBuilder,
    certificates: Option<TestCertificates>,
    dir: TempDir,
    port: u16,
}

impl RedisServer {
    /// Starts a plain server without a password.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Starts a TLS-only server (see [`RedisServerBuilder::tls`]).
    pub fn start_tls() -> Self {
        Self::builder().tls().start()
    }

    /// Starts a server whose default user needs `password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::builder().password(password).start()
    }

    /// Options for starting a server.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The server's port on 127.0.0.1 (the TLS port for a TLS server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL that reaches the server as the default user: `redis://127.0.0.1:<port>`, or
    /// `rediss://` for TLS, with the default user's password when one is set.
    pub fn url(&self) -> String {
        match &self.settings.password {
            Some(password) => self.url_as("default", password),
            None => format!("{}://127.0.0.1:{}", self.scheme(), self.port),
        }
    }

    /// The URL that logs in as `user` with `password` (both percent-encoded, as a URL needs).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        let encode = |text: &str| {
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        };
        format!(
            "{}://{}:{}@127.0.0.1:{}",
            self.scheme(),
            encode(user),
            encode(password),
            self.port
        )
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca_path(&self) -> Option<&Path> {
        self.certificates.as_ref().map(|c| c.ca_cert.as_path())
    }

    /// The directory with the server's configuration and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A client that reaches the server as the default user (with TLS and password as
    /// configured), for setting things up by hand.
    pub fn admin_client(&self) -> redis::Client {
        match self.ca_path() {
            None => redis::Client::open(self.url()),
            Some(ca) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let root_cert = std::fs::read(ca)
                    .unwrap_or_else(|err| panic!("cannot read {}: {err}", ca.display()));
                redis::Client::build_with_tls(
                    self.url(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
        }
        .unwrap_or_else(|err| panic!("cannot make a client for the test server: {err}"))
    }

    /// The server's process: [`pause`](ServerProcess::pause) and
    /// [`resume`](ServerProcess::resume) it to simulate a wedged server, or read its pid.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// Kills the server with SIGKILL (no shutdown, nothing saved) and waits until it is gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the server if it runs and starts it again on the same port: with its data when
    /// it is [persistent](RedisServerBuilder::persistent), else empty.
    ///
    /// # Panics
    /// When the server does not come up (for example because another process took the port).
    pub fn restart(&mut self) {
        self.kill();
        if !self.settings.persistent {
            self.remove_data();
        }
        self.spawn_again();
    }

    /// Kills the server if it runs and starts it again on the same port (with its data when it
    /// is [persistent](RedisServerBuilder::persistent)) as a replica of the server on `port`:
    /// an old primary brought back after a failover.
    ///
    /// # Panics
    /// As [`restart`](Self::restart).
    pub fn restart_as_replica_of(&mut self, port: u16) {
        self.settings.replica_of = Some(port);
        self.restart();
    }

    /// Kills the server if it runs and starts it again on the same port with no data, even a
    /// persistent one (its disk lost, or a server that never had persistence).
    ///
    /// # Panics
    /// As [`restart`](Self::restart).
    pub fn restart_empty(&mut self) {
        self.kill();
        self.remove_data();
        self.spawn_again();
    }

    /// Closes every client connection in pub/sub mode (`CLIENT KILL TYPE pubsub`) while the
    /// others go on: hint streams end, commands keep working. Returns how many were closed.
    ///
    /// # Panics
    /// When the server cannot be asked.
    pub fn kill_pubsub_clients(&self) -> usize {
        let mut connection = self
            .admin_client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|err| panic!("cannot reach the test server: {err}"));
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut connection)
            .unwrap_or_else(|err| panic!("CLIENT KILL TYPE pubsub failed: {err}"));
        usize::try_from(killed).unwrap_or(0)
    }

    fn remove_data(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        let _ = std::fs::remove_dir_all(self.dir.path().join("appendonlydir"));
    }

    fn spawn_again(&mut self) {
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "redis-server did not start again on port {}:\n{log}",
                self.port
            );
        }
    }

    fn scheme(&self) -> &'static str {
        if self.settings.tls {
            "rediss"
        } else {
            "redis"
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Writes the configuration for the current port, starts the server and waits for
    /// `PING`; `Err` holds the log when the server exited or never answered.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("redis.conf");
        std::fs::write(&config, self.config())
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", config.display()));
        let _ = std::fs::remove_file(self.log_path());
        let child = spawn_redis_server(&config, &[], self.dir.path());
        self.process.started(child);
        let client = self.admin_client();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.process.is_running() {
                self.kill();
                return Err(format!("redis-server exited; its log:\n{}", self.log()));
            }
            if answers_ping(&client) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(START_POLL);
        }
    }

    /// The configuration file for the current port.
    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let mut config = String::new();
        let mut line = |text: String| {
            config.push_str(&text);
            config.push('\n');
        };
        line("bind 127.0.0.1".into());
        line("protected-mode no".into());
        line("daemonize no".into());
        line("save \"\"".into());
        if self.settings.persistent {
            line("appendonly yes".into());
            line("appendfsync always".into());
        } else {
            line("appendonly no".into());
        }
        line(format!("dir \"{dir}\""));
        line(format!("logfile \"{}\"", self.log_path().display()));
        match &self.certificates {
            None => line(format!("port {}", self.port)),
            Some(certificates) => {
                line("port 0".into());
                line(format!("tls-port {}", self.port));
                line(format!(
                    "tls-cert-file \"{}\"",
                    certificates.server_cert.display()
                ));
                line(format!(
                    "tls-key-file \"{}\"",
                    certificates.server_key.display()
                ));
                line(format!(
                    "tls-ca-cert-file \"{}\"",
                    certificates.ca_cert.display()
                ));
                line("tls-auth-clients no".into());
            }
        }
        if let Some(password) = &self.settings.password {
            line(format!("requirepass \"{password}\""));
        }
        if self.settings.cluster {
            line("cluster-enabled yes".into());
            line("cluster-config-file nodes.conf".into());
            line("cluster-node-timeout 1000".into());
        }
        if let Some(port) = self.settings.replica_of {
            line(format!("replicaof 127.0.0.1 {port}"));
        }
        for user in &self.settings.users {
            let mut text = String::new();
            let _ = write!(
                text,
                "user {} on >{} {}",
                user.name, user.password, user.rules
            );
            line(text);
        }
        config
    }
}

/// Starts `redis-server CONFIG ARGS…` in `dir`, its output discarded (it logs to the file its
/// configuration names).
///
/// # Panics
/// With [`REDIS_SERVER_MISSING`] when `redis-server` is not on `PATH`.
pub(crate) fn spawn_redis_server(config: &Path, args: &[&str], dir: &Path) -> std::process::Child {
    let child = Command::new("redis-server")
        .arg(config)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            panic!("{REDIS_SERVER_MISSING}")
        }
        Err(err) => panic!("cannot run redis-server: {err}"),
    }
}

/// True when the server answers `PING` (with `PONG`) right now.
fn answers_ping(client: &redis::Client) -> bool {
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
        return false;
    };
    redis::cmd("PING")
        .query::<String>(&mut connection)
        .is_ok_and(|reply| reply == "PONG")
}
