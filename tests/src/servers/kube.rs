//! A real `kube-apiserver` for tests, with an `etcd` of its own: free loopback ports, generated
//! serving certificates and service-account key, static token users, RBAC, and a kubeconfig per
//! user; both processes are killed when the server is dropped (or, for the process-wide
//! [`KubeApiServer::shared`] server, when the test process exits).
//!
//! The `kube-apiserver` binary is built by `scripts/build-kube-apiserver` from the Go module
//! proxy and cached outside the repository (see [`kube_apiserver_binary`]).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;

use super::ports::{free_loopback_port, start_on_free_ports};
use super::tls::TestCertificates;

/// The Kubernetes release `scripts/build-kube-apiserver` builds by default.
pub const KUBERNETES_VERSION: &str = "v1.36.3";

/// The name of the user in the group `system:masters` that every server has.
pub const ADMIN_USER: &str = "admin";

/// Users without any permission that every server started by [`KubeApiServer::start`] has
/// (tests grant them what they need with RBAC).
pub const PLAIN_USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// How long a starting server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a starting server is asked whether it is ready.
const START_POLL: Duration = Duration::from_millis(200);

/// Where `scripts/build-kube-apiserver` caches the binary, unless `KUBE_APISERVER` names
/// another one: `${XDG_CACHE_HOME:-$HOME/.cache}/leader-election/kube-apiserver-<version>`.
pub fn kube_apiserver_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBE_APISERVER") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache
        .join("leader-election")
        .join(format!("kube-apiserver-{KUBERNETES_VERSION}"))
}

/// What a missing binary fails with.
fn missing_binary(path: &Path) -> String {
    format!(
        "kube-apiserver {KUBERNETES_VERSION} not found at {}: build it with \
         `scripts/build-kube-apiserver` (Go from the module proxy, several minutes once; \
         scripts/test does this), or point KUBE_APISERVER at one",
        path.display()
    )
}

/// What a missing `etcd` fails with.
pub const ETCD_MISSING: &str =
    "etcd not found: install it with `apt-get install -y etcd-server` (scripts/test does this)";

/// A user of a test server: a bearer token, and the groups it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeUser {
    /// The user name, as RBAC subjects name it.
    pub name: String,
    /// The bearer token the user authenticates with.
    pub token: String,
    /// The groups the user belongs to.
    pub groups: Vec<String>,
}

/// How to start a [`KubeApiServer`]: which users it knows and which feature gates it sets.
#[derive(Clone, Debug)]
#[must_use]
pub struct KubeApiServerBuilder {
    users: Vec<KubeUser>,
    feature_gates: Vec<String>,
    runtime_config: Vec<String>,
}

impl Default for KubeApiServerBuilder {
    fn default() -> Self {
        let mut builder = Self {
            users: Vec::new(),
            // Leases keep `strategy` and `preferredHolder` only with this gate; its
            // LeaseCandidate API must be served too, or the server never becomes ready.
            feature_gates: vec!["CoordinatedLeaderElection=true".to_owned()],
            runtime_config: vec!["coordination.k8s.io/v1beta1=true".to_owned()],
        };
        builder = builder.user_in_groups(ADMIN_USER, &["system:masters"]);
        for user in PLAIN_USERS {
            builder = builder.user(user);
        }
        builder
    }
}

impl KubeApiServerBuilder {
    /// Adds a user without groups (beyond `system:authenticated`).
    pub fn user(self, name: &str) -> Self {
        self.user_in_groups(name, &[])
    }

    /// Adds a user in `groups`.
    pub fn user_in_groups(mut self, name: &str, groups: &[&str]) -> Self {
        let token = format!("token-{name}-{:016x}", rand_u64());
        self.users.retain(|user| user.name != name);
        self.users.push(KubeUser {
            name: name.to_owned(),
            token,
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
        });
        self
    }

    /// Sets a feature gate, as `Name=true`.
    pub fn feature_gate(mut self, gate: &str) -> Self {
        self.feature_gates.push(gate.to_owned());
        self
    }

    /// Starts etcd and kube-apiserver and waits until `/readyz` answers `ok`.
    ///
    /// # Panics
    /// When a binary is missing (naming the command that provides it), or with the logs when
    /// the servers do not come up.
    pub fn start(self) -> KubeApiServer {
        let binary = kube_apiserver_binary();
        if !binary.is_file() {
            panic!("{}", missing_binary(&binary));
        }
        let dir = tempfile::Builder::new()
            .prefix("kube-apiserver-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot make a temporary directory: {err}"));
        let certificates = TestCertificates::generate(dir.path());
        write_service_account_key(dir.path());
        write_tokens(dir.path(), &self.users);
        let mut server = start_on_free_ports("kube-apiserver", || {
            let mut server = KubeApiServer {
                users: self.users.clone(),
                binary: binary.clone(),
                ca: certificates.ca_cert.clone(),
                port: free_loopback_port(),
                etcd_port: free_loopback_port(),
                etcd: None,
                apiserver: None,
                watchdog: None,
                feature_gates: self.feature_gates.clone(),
                runtime_config: self.runtime_config.clone(),
                dir: None,
            };
            match server.spawn_and_wait(dir.path()) {
                Ok(()) => Ok(server),
                Err(log) => {
                    server.kill();
                    Err(log)
                }
            }
        });
        server.dir = Some(dir);
        server.write_kubeconfigs();
        server
    }
}

/// A running `kube-apiserver` on `https://127.0.0.1:<free port>` backed by an `etcd` on free
/// loopback ports, with RBAC, static token users and a kubeconfig per user. Dropping it kills
/// both and removes their files.
///
/// ```no_run
/// use lock_tests::servers::kube::KubeApiServer;
///
/// let server = KubeApiServer::start();
/// println!("kubectl --kubeconfig {} get leases", server.admin_kubeconfig().display());
/// ```
#[derive(Debug)]
pub struct KubeApiServer {
    users: Vec<KubeUser>,
    binary: PathBuf,
    ca: PathBuf,
    port: u16,
    etcd_port: u16,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    watchdog: Option<Child>,
    feature_gates: Vec<String>,
    runtime_config: Vec<String>,
    dir: Option<TempDir>,
}

impl KubeApiServer {
    /// Starts a server with the admin user and the [`PLAIN_USERS`].
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options for starting a server.
    pub fn builder() -> KubeApiServerBuilder {
        KubeApiServerBuilder::default()
    }

    /// One server for the whole test process, started by the first caller (the others wait).
    /// It is never dropped: a watchdog kills its processes when the test process exits.
    ///
    /// # Panics
    /// As [`start`](Self::start); after a failed start every later caller panics at once with
    /// the same message instead of trying again.
    pub fn shared() -> &'static KubeApiServer {
        static SHARED: OnceLock<Result<KubeApiServer, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            std::panic::catch_unwind(KubeApiServer::start).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_else(|| "kube-apiserver did not start".to_owned())
            })
        });
        match started {
            Ok(server) => server,
            Err(message) => panic!("{message}"),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the serving certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// The directory with the certificates, keys, kubeconfigs and logs.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("a started server has its directory")
            .path()
    }

    /// The user called `name`.
    ///
    /// # Panics
    /// When the server does not know the user.
    pub fn user(&self, name: &str) -> &KubeUser {
        self.users
            .iter()
            .find(|user| user.name == name)
            .unwrap_or_else(|| panic!("the test kube-apiserver has no user {name}"))
    }

    /// The kubeconfig file that logs in as `user` (its context's namespace is `default`).
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        let _ = self.user(user);
        self.dir().join(format!("kubeconfig-{user}.yaml"))
    }

    /// The kubeconfig of the [`ADMIN_USER`] (in `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.kubeconfig(ADMIN_USER)
    }

    /// The logs of kube-apiserver and etcd so far.
    pub fn logs(&self) -> String {
        let Some(dir) = &self.dir else {
            return String::new();
        };
        read_logs(dir.path())
    }

    /// `kubectl --kubeconfig <user's kubeconfig>`, when `kubectl` is installed.
    pub fn kubectl(&self, user: &str) -> Command {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(self.kubeconfig(user));
        command
    }

    /// The process ids of the API server and of its etcd.
    pub fn pids(&self) -> Vec<u32> {
        [&self.etcd, &self.apiserver]
            .into_iter()
            .flatten()
            .map(Child::id)
            .collect()
    }

    fn kill(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd, &mut self.watchdog] {
            if let Some(mut process) = child.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
        }
    }

    /// Starts etcd and kube-apiserver on the current ports and waits for `/readyz`; `Err`
    /// holds the logs when either exited or the server never became ready.
    fn spawn_and_wait(&mut self, dir: &Path) -> Result<(), String> {
        let etcd_data = dir.join(format!("etcd-{}", self.etcd_port));
        let etcd_url = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer_url = format!("http://127.0.0.1:{}", free_loopback_port());
        let etcd = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", etcd_data.display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("etcd.log")))
            .spawn();
        self.etcd = Some(match etcd {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{ETCD_MISSING}"),
            Err(err) => panic!("cannot run etcd: {err}"),
        });

        let path = |name: &str| dir.join(name).display().to_string();
        let apiserver = Command::new(&self.binary)
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.port))
            .arg(format!("--cert-dir={}", path("apiserver-certs")))
            .arg(format!("--tls-cert-file={}", path("server.pem")))
            .arg(format!("--tls-private-key-file={}", path("server-key.pem")))
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--token-auth-file={}", path("tokens.csv")))
            .arg("--anonymous-auth=false")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                path("service-account.pub")
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                path("service-account.key")
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--endpoint-reconciler-type=none")
            .arg("--enable-priority-and-fairness=false")
            .arg("--profiling=false")
            .arg(format!("--feature-gates={}", self.feature_gates.join(",")))
            .arg(format!(
                "--runtime-config={}",
                self.runtime_config.join(",")
            ))
            .arg("--v=0")
            .stdin(Stdio::null())
            .stdout(log_file(&dir.join("kube-apiserver.out")))
            .stderr(log_file(&dir.join("kube-apiserver.log")))
            .spawn();
        self.apiserver = Some(match apiserver {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                panic!("{}", missing_binary(&self.binary))
            }
            Err(err) => panic!("cannot run {}: {err}", self.binary.display()),
        });

        self.watchdog = spawn_watchdog(&self.pids(), dir);

        let tls = tls_config(&self.ca);
        let token = self.user(ADMIN_USER).token.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for (name, child) in [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ] {
                if let Some(process) = child {
                    if let Ok(Some(status)) = process.try_wait() {
                        return Err(format!(
                            "{name} exited ({status}); logs:\n{}",
                            read_logs(dir)
                        ));
                    }
                }
            }
            if let Ok(body) = https_get(&tls, self.port, "/readyz", &token) {
                if body.trim() == "ok" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver was not ready within {START_TIMEOUT:?}; logs:\n{}",
                    read_logs(dir)
                ));
            }
            std::thread::sleep(START_POLL);
        }
    }

    fn write_kubeconfigs(&self) {
        for user in &self.users {
            let config = kubeconfig(&self.url(), &self.ca, user);
            let path = self.dir().join(format!("kubeconfig-{}.yaml", user.name));
            std::fs::write(&path, config)
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        }
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A kubeconfig for `user` on the server at `url`, trusting the CA in `ca`.
fn kubeconfig(url: &str, ca: &Path, user: &KubeUser) -> String {
    let mut text = String::new();
    let _ = write!(
        text,
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {url}
    certificate-authority: {ca}
users:
- name: {name}
  user:
    token: {token}
contexts:
- name: {name}
  context:
    cluster: test
    user: {name}
    namespace: default
current-context: {name}
",
        ca = ca.display(),
        name = user.name,
        token = user.token,
    );
    text
}

/// The static token file: `token,user,uid,"group1,group2"`.
fn write_tokens(dir: &Path, users: &[KubeUser]) {
    let mut text = String::new();
    for user in users {
        let _ = writeln!(
            text,
            "{},{},uid-{},\"{}\"",
            user.token,
            user.name,
            user.name,
            user.groups.join(",")
        );
    }
    let path = dir.join("tokens.csv");
    std::fs::write(&path, text)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// The key pair that signs service-account tokens: `service-account.key` (PKCS #8) and
/// `service-account.pub`.
fn write_service_account_key(dir: &Path) {
    let key = KeyPair::generate().expect("generate the service-account signing key");
    for (name, pem) in [
        ("service-account.key", key.serialize_pem()),
        ("service-account.pub", key.public_key_pem()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }
}

fn log_file(path: &Path) -> Stdio {
    std::fs::File::create(path)
        .map(Stdio::from)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()))
}

/// The tails of the logs in `dir`.
fn read_logs(dir: &Path) -> String {
    let mut text = String::new();
    for name in ["etcd.log", "kube-apiserver.log"] {
        let log = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let _ = writeln!(text, "--- {name} (last lines) ---");
        for line in tail.into_iter().rev() {
            let _ = writeln!(text, "{line}");
        }
    }
    text
}

/// A process that kills `pids` and removes `dir` once the test process is gone, so that
/// servers and their files (over 100 MB of etcd data) never outlive the tests (the
/// process-wide server is never dropped, so its temporary directory is never removed by a drop).
fn spawn_watchdog(pids: &[u32], dir: &Path) -> Option<Child> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(
            r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done; dir=$1; shift; kill -9 "$@" 2>/dev/null; sleep 1; rm -rf "$dir""#,
        )
        .arg(std::process::id().to_string())
        .arg(dir);
    for pid in pids {
        command.arg(pid.to_string());
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", ca.display()))
    {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a valid CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One `GET` over HTTP/1.1 with a bearer token; the body when the status is 200.
fn https_get(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    path: &str,
    token: &str,
) -> Result<String, String> {
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let connection =
        rustls::ClientConnection::new(tls.clone(), name).map_err(|err| err.to_string())?;
    let socket =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1))
            .map_err(|err| err.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|err| err.to_string())?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|err| err.to_string())?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no HTTP response".to_owned())?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}

/// A random number for tokens, from the standard library's hasher seeds.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
