//! A real `etcd` for tests: a single member on two free loopback ports (client and peer), its
//! data and log in a temporary directory, optionally TLS with client certificates and users
//! with roles; SIGKILLed when dropped. Set up and inspected by hand with `etcdctl`.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use super::ports::{free_loopback_port, start_on_free_ports};
use super::process::ServerProcess;

/// What a missing `etcd` binary fails with.
pub const ETCD_MISSING: &str =
    "etcd not found: install it with `apt-get install -y etcd-server` (scripts/test does this)";
/// What a missing `etcdctl` binary fails with.
pub const ETCDCTL_MISSING: &str =
    "etcdctl not found: install it with `apt-get install -y etcd-client` (scripts/test does this)";
/// The password of the `root` user of a server with authentication.
pub const ROOT_PASSWORD: &str = "root-secret";

/// How long a starting server may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a starting server is asked.
const START_POLL: Duration = Duration::from_millis(25);

/// A user of a test server whose role may read and write (or only read) under a key prefix.
#[derive(Clone, Debug)]
struct RestrictedUser {
    name: String,
    password: String,
    prefix: String,
    /// etcd's permission type: `readwrite` or `read`.
    permission: &'static str,
}

/// How to start an [`EtcdServer`]: plain, with TLS and client certificates, with users.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct EtcdServerBuilder {
    tls: bool,
    users: Vec<RestrictedUser>,
    max_request_bytes: Option<u32>,
}

impl EtcdServerBuilder {
    /// Serves clients over TLS only (`https://`), with a certificate for `localhost` and
    /// `127.0.0.1`, and requires client certificates signed by the same generated CA
    /// (`--client-cert-auth`); see [`EtcdServer::certificates`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Adds the user `name` with `password` and the role `{name}-role`, which has `readwrite`
    /// on the keys under `prefix` and nothing else, and enables authentication (with the user
    /// `root`, password [`ROOT_PASSWORD`]).
    pub fn user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        self.users.push(RestrictedUser {
            name: name.into(),
            password: password.into(),
            prefix: prefix.into(),
            permission: "readwrite",
        });
        self
    }

    /// Adds the user `name` with `password` and the role `{name}-role`, which may only read
    /// (and watch) the keys under `prefix`, and enables authentication as [`user`](Self::user)
    /// does.
    pub fn read_only_user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        self.users.push(RestrictedUser {
            name: name.into(),
            password: password.into(),
            prefix: prefix.into(),
            permission: "read",
        });
        self
    }

    /// Accepts requests (and so values) up to `bytes` (`--max-request-bytes`; etcd's default is
    /// 1.5 MiB), for tests of values larger than any record.
    pub fn max_request_bytes(mut self, bytes: u32) -> Self {
        self.max_request_bytes = Some(bytes);
        self
    }

    /// Starts the server, waits until it is healthy and sets up users and authentication.
    ///
    /// # Panics
    /// With [`ETCD_MISSING`] when `etcd` is not on `PATH` ([`ETCDCTL_MISSING`] for
    /// `etcdctl`); with the server's log when it does not come up.
    pub fn start(self) -> EtcdServer {
        let dir = tempfile::Builder::new()
            .prefix("etcd-server-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot make a temporary directory: {err}"));
        let certificates = self.tls.then(|| EtcdCertificates::generate(dir.path()));
        let mut server = EtcdServer {
            settings: self,
            certificates,
            dir,
            client_port: 0,
            peer_port: 0,
            process: ServerProcess::new("etcd"),
            auth_enabled: false,
        };
        start_on_free_ports("etcd", || {
            // A failed attempt may have left a data directory for its ports.
            let _ = std::fs::remove_dir_all(server.data_dir());
            server.client_port = free_loopback_port();
            server.peer_port = free_loopback_port();
            if server.client_port == server.peer_port {
                return Err("the client and peer ports: address already in use".to_owned());
            }
            server.spawn_and_wait()
        });
        server.set_up_users();
        server
    }
}

/// A running single-member `etcd` on 127.0.0.1, with its data directory and log in a temporary
/// directory. Dropping it kills the server and removes the directory.
///
/// ```no_run
/// use lock_tests::servers::etcd::EtcdServer;
///
/// let server = EtcdServer::start();
/// println!("etcd at {}", server.endpoint());
/// server.etcdctl(&["put", "greeting", "hello"]);
/// ```
#[derive(Debug)]
pub struct EtcdServer {
    /// First, so that the server is killed before its directory is removed.
    process: ServerProcess,
    settings: EtcdServerBuilder,
    certificates: Option<EtcdCertificates>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    auth_enabled: bool,
}

impl EtcdServer {
    /// Starts a plain server without authentication.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Starts a TLS server that requires client certificates (see [`EtcdServerBuilder::tls`]).
    pub fn start_tls() -> Self {
        Self::builder().tls().start()
    }

    /// Options for starting a server.
    pub fn builder() -> EtcdServerBuilder {
        EtcdServerBuilder::default()
    }

    /// The client URL: `http://127.0.0.1:<port>`, or `https://` for TLS.
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    /// The client port on 127.0.0.1.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer port on 127.0.0.1.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The certificates of a TLS server: its CA, a client certificate it accepts, and one
    /// signed by another CA that it refuses.
    pub fn certificates(&self) -> Option<&EtcdCertificates> {
        self.certificates.as_ref()
    }

    /// The directory with the data directory and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory, kept across [`restart`](Self::restart)s.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far (every start appends to it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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

    /// Kills the server if it runs and starts it again on the same ports with the same data
    /// directory: everything written before is still there, and revisions go on from where
    /// they were.
    ///
    /// # Panics
    /// When the server does not come up (for example because another process took a port).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "etcd did not start again on ports {} and {}:\n{log}",
                self.client_port, self.peer_port
            );
        }
    }

    /// Runs `etcdctl` against the server with `args`, as `root` when authentication is on and
    /// with the client certificate for TLS, and returns its standard output.
    ///
    /// # Panics
    /// With `etcdctl`'s error output when it fails; with [`ETCDCTL_MISSING`] when it is not on
    /// `PATH`.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.try_etcdctl(args)
            .unwrap_or_else(|err| panic!("etcdctl {} failed: {err}", args.join(" ")))
    }

    /// Like [`etcdctl`](Self::etcdctl), with its error output as `Err` when it fails.
    pub fn try_etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=10s");
        if let Some(certificates) = &self.certificates {
            command
                .arg(format!("--cacert={}", certificates.ca_cert.display()))
                .arg(format!("--cert={}", certificates.client_cert.display()))
                .arg(format!("--key={}", certificates.client_key.display()));
        }
        if self.auth_enabled {
            command.arg(format!("--user=root:{ROOT_PASSWORD}"));
        }
        run_etcdctl(command.args(args))
    }

    /// Stores `value` under `key` by hand (`etcdctl put`); returns the revision of the write.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        let output = self.etcdctl(&["put", "--write-out=json", "--", key, value]);
        header_revision(&output)
    }

    /// The value under `key`, read by hand (`etcdctl get`), if there is one.
    pub fn get(&self, key: &str) -> Option<String> {
        let output = self.etcdctl(&["get", "--write-out=json", "--", key]);
        let json = parse_json(&output);
        let kvs = json["kvs"].as_array().cloned().unwrap_or_default();
        if kvs.is_empty() {
            return None;
        }
        let value = self.etcdctl(&["get", "--print-value-only", "--", key]);
        Some(value.strip_suffix('\n').unwrap_or(&value).to_owned())
    }

    /// The revision that last wrote `key`, if it exists.
    pub fn mod_revision(&self, key: &str) -> Option<i64> {
        let output = self.etcdctl(&["get", "--write-out=json", "--", key]);
        parse_json(&output)["kvs"][0]["mod_revision"].as_i64()
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let output = self.etcdctl(&["get", "--write-out=json", "--", "revision-probe"]);
        header_revision(&output)
    }

    /// Deletes `key` by hand (`etcdctl del`).
    pub fn delete(&self, key: &str) {
        self.etcdctl(&["del", "--", key]);
    }

    /// Compacts the store's history up to the current revision (`etcdctl compact --physical`):
    /// older revisions can no longer be read or watched from.
    pub fn compact(&self) -> i64 {
        let revision = self.revision();
        self.etcdctl(&["compact", "--physical", &revision.to_string()]);
        revision
    }

    fn scheme(&self) -> &'static str {
        if self.settings.tls {
            "https"
        } else {
            "http"
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Starts `etcd` on the current ports and waits until it is healthy; `Err` holds the log
    /// when it exited or never became healthy.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", self.log_path().display()));
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new("etcd");
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--initial-cluster-state=new")
            // One member: it elects itself as soon as the election timeout passes.
            .arg("--heartbeat-interval=25")
            .arg("--election-timeout=250")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr");
        if let Some(bytes) = self.settings.max_request_bytes {
            command.arg(format!("--max-request-bytes={bytes}"));
        }
        if let Some(certificates) = &self.certificates {
            command
                .arg(format!(
                    "--cert-file={}",
                    certificates.server_cert.display()
                ))
                .arg(format!("--key-file={}", certificates.server_key.display()))
                .arg(format!(
                    "--trusted-ca-file={}",
                    certificates.ca_cert.display()
                ))
                .arg("--client-cert-auth");
        }
        let child = spawn_etcd(command.current_dir(self.dir.path()), log);
        self.process.started(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
        loop {
            if !self.process.is_running() {
                self.kill();
                return Err(format!("etcd exited; its log:\n{}", self.log()));
            }
            let listening = TcpStream::connect_timeout(&address, START_POLL).is_ok();
            if listening && self.try_etcdctl(&["endpoint", "health"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "etcd did not become healthy within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(START_POLL);
        }
    }

    /// Creates `root` and the restricted users with their roles, then enables authentication.
    fn set_up_users(&mut self) {
        if self.settings.users.is_empty() {
            return;
        }
        let root_password = format!("--new-user-password={ROOT_PASSWORD}");
        self.etcdctl(&["user", "add", "root", &root_password]);
        self.etcdctl(&["role", "add", "root"]);
        self.etcdctl(&["user", "grant-role", "root", "root"]);
        for user in self.settings.users.clone() {
            let role = format!("{}-role", user.name);
            self.etcdctl(&["role", "add", &role]);
            self.etcdctl(&[
                "role",
                "grant-permission",
                "--prefix=true",
                &role,
                user.permission,
                "--",
                &user.prefix,
            ]);
            let password = format!("--new-user-password={}", user.password);
            self.etcdctl(&["user", "add", &user.name, &password]);
            self.etcdctl(&["user", "grant-role", &user.name, &role]);
        }
        self.etcdctl(&["auth", "enable"]);
        self.auth_enabled = true;
    }
}

/// Starts a prepared `etcd` command with its stdout and stderr appended to `log`.
///
/// # Panics
/// With [`ETCD_MISSING`] when `etcd` is not on `PATH`.
pub(crate) fn spawn_etcd(command: &mut Command, log: File) -> std::process::Child {
    let log_copy = log
        .try_clone()
        .unwrap_or_else(|err| panic!("cannot duplicate the log file handle: {err}"));
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_copy))
        .spawn();
    match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{ETCD_MISSING}"),
        Err(err) => panic!("cannot run etcd: {err}"),
    }
}

/// Runs a prepared `etcdctl` command: its standard output, or its output and error output
/// when it fails.
///
/// # Panics
/// With [`ETCDCTL_MISSING`] when `etcdctl` is not on `PATH`.
pub(crate) fn run_etcdctl(command: &mut Command) -> Result<String, String> {
    let output = match command.stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{ETCDCTL_MISSING}"),
        Err(err) => panic!("cannot run etcdctl: {err}"),
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn parse_json(output: &str) -> serde_json::Value {
    serde_json::from_str(output.trim())
        .unwrap_or_else(|err| panic!("etcdctl wrote {output:?}, which is not JSON: {err}"))
}

fn header_revision(output: &str) -> i64 {
    parse_json(output)["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("etcdctl wrote no header revision: {output}"))
}

/// PEM files for a TLS etcd that checks client certificates: a CA, a server certificate for
/// `localhost` and `127.0.0.1` and a client certificate it signed, and a client certificate
/// signed by another CA (which the server must refuse).
#[derive(Clone, Debug)]
pub struct EtcdCertificates {
    /// The CA certificate: what clients and the server trust.
    pub ca_cert: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA (common name `elector`).
    pub client_cert: PathBuf,
    /// The client certificate's private key.
    pub client_key: PathBuf,
    /// A client certificate signed by a CA the server does not trust.
    pub stranger_cert: PathBuf,
    /// The stranger certificate's private key.
    pub stranger_key: PathBuf,
}

impl EtcdCertificates {
    /// Generates everything and writes it as PEM files in `dir`.
    pub fn generate(dir: &Path) -> Self {
        let ca = certificate_authority("leader-election etcd test CA");
        let other_ca = certificate_authority("some other CA");
        let files = Self {
            ca_cert: dir.join("etcd-ca.pem"),
            server_cert: dir.join("etcd-server.pem"),
            server_key: dir.join("etcd-server-key.pem"),
            client_cert: dir.join("etcd-client.pem"),
            client_key: dir.join("etcd-client-key.pem"),
            stranger_cert: dir.join("stranger.pem"),
            stranger_key: dir.join("stranger-key.pem"),
        };
        write(&files.ca_cert, &ca.pem);
        let server = leaf(
            &ca.issuer,
            "localhost",
            &["localhost", "127.0.0.1"],
            // etcd's own gateway connects with the server certificate as a client.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        write(&files.server_cert, &server.0);
        write(&files.server_key, &server.1);
        let client = leaf(
            &ca.issuer,
            "elector",
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        write(&files.client_cert, &client.0);
        write(&files.client_key, &client.1);
        let stranger = leaf(
            &other_ca.issuer,
            "stranger",
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        write(&files.stranger_cert, &stranger.0);
        write(&files.stranger_key, &stranger.1);
        files
    }
}

/// A CA: its certificate (PEM) and what signs with it.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn certificate_authority(name: &str) -> Authority {
    let key = KeyPair::generate().expect("generate a test CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-sign a test CA");
    Authority {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate signed by `issuer`: (certificate PEM, private key PEM).
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    let key = KeyPair::generate().expect("generate a test certificate key");
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("certificate parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = usages;
    let cert = params
        .signed_by(&key, issuer)
        .expect("sign a test certificate");
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}
