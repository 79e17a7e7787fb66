//! Where commands go (one server, or the primary the sentinels name) and the shared,
//! self-healing command connection to it.

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisResult,
    TlsCertificates,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use lock_core::backend::{LazyClient, Made};
use lock_core::{LockError, LockResult};

use crate::cluster::ClusterUrl;
use crate::errors::plain_text;
use crate::sentinel::{SentinelUrl, Sentinels};
use crate::{names, RedisLockOptions};

/// Where the commands go: one server named by its URL, or whichever server the sentinels
/// name as the primary when a connection is made.
pub(crate) enum Target {
    /// `redis://` or `rediss://`: one server.
    Server(Client),
    /// `redis+sentinel://` or `rediss+sentinel://`: the primary the sentinels name, asked
    /// again for every new connection.
    Sentinels(Sentinels),
    /// `redis+cluster://` or `rediss+cluster://`: a Redis Cluster, reached through the seed
    /// nodes; commands go to the primary of the election's slot.
    Cluster(Box<ClusterTarget>),
}

/// A Redis Cluster: its client, its name, and how to reach one node (for pub/sub).
pub(crate) struct ClusterTarget {
    client: ClusterClient,
    describe: String,
    /// What a connection to one node needs: credentials, TLS and its roots.
    auth: RedisConnectionInfo,
    tls: bool,
    roots: Option<Vec<u8>>,
}

impl ClusterTarget {
    /// A RESP3 client for the node at `host:port` (sharded pub/sub arrives as pushes).
    pub fn node_client(&self, host: &str, port: u16) -> RedisResult<Client> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let redis = RedisConnectionInfo {
            protocol: redis::ProtocolVersion::RESP3,
            ..self.auth.clone()
        };
        open(ConnectionInfo { addr, redis }, self.roots.as_deref())
    }
}

impl Target {
    /// The target of `url`: `redis://` in the clear, `rediss://` over TLS (rustls) checked
    /// against `options.tls_ca` or else the system's trusted roots, or the sentinel forms of
    /// both. Nothing is sent yet.
    ///
    /// Error messages never repeat the URL: it may hold a password.
    pub fn new(url: &str, options: &RedisLockOptions) -> LockResult<Self> {
        // redis-rs ignores query parameters it does not know: one meant for this crate would be
        // dropped without a word (the facade's `open` reads it from its lock URLs).
        if url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("min_replicas=")))
        {
            return Err(LockError::InvalidConfig(
                "min_replicas is not a Redis URL parameter here: set it with RedisLockOptions::with_min_replicas (leader_election::open reads it from its lock URLs)".to_owned(),
            ));
        }
        if let Some(parsed) = ClusterUrl::parse(url) {
            if options.min_replicas == 0 {
                tracing::warn!(
                    "Redis Cluster without min_replicas: a failover to a replica that missed \
                     the last takeover can bring two leaders and a repeated fencing token; set \
                     min_replicas to the number of replicas of each primary"
                );
            }
            let parsed = parsed.map_err(|reason| invalid_url(url, &reason))?;
            let roots = tls_roots(options, parsed.tls)?;
            let invalid = |err: redis::RedisError| invalid_url(url, &plain_text(&err));
            let client = parsed
                .client(
                    roots.as_deref(),
                    options.connect_timeout,
                    options.response_timeout + options.replica_wait(),
                )
                .map_err(invalid)?;
            return Ok(Self::Cluster(Box::new(ClusterTarget {
                client,
                describe: parsed.describe(),
                auth: parsed.auth.clone(),
                tls: parsed.tls,
                roots,
            })));
        }
        if let Some(parsed) = SentinelUrl::parse(url) {
            let mut parsed = parsed.map_err(|reason| invalid_url(url, &reason))?;
            // RESP2: a RESP3 connection manager reconnects by itself when the server says it
            // is going away, to the same address, without asking the sentinels.
            parsed.data.protocol = redis::ProtocolVersion::RESP2;
            if options.min_replicas == 0 {
                tracing::warn!(
                    "Redis behind sentinels without min_replicas: a failover to a replica that \
                     missed the last takeover can bring two leaders and a repeated fencing token; \
                     set min_replicas to the number of replicas"
                );
            }
            let roots = tls_roots(options, parsed.tls)?;
            let auth = RedisConnectionInfo {
                username: options.sentinel_username.clone(),
                password: options.sentinel_password.clone(),
                ..RedisConnectionInfo::default()
            };
            return Ok(Self::Sentinels(Sentinels::new(
                parsed,
                auth,
                move |info| open(info, roots.as_deref()),
                options.connect_timeout,
                options.response_timeout,
            )));
        }
        let info = url
            .into_connection_info()
            .map_err(|err| invalid_url(url, &plain_text(&err)))?;
        let roots = tls_roots(options, matches!(info.addr, ConnectionAddr::TcpTls { .. }))?;
        open(info, roots.as_deref())
            .map_err(|err| match &options.tls_ca {
                Some(path) => LockError::InvalidConfig(format!(
                    "cannot use the TLS CA file {}: {err}",
                    path.display()
                )),
                None => invalid_url(url, &plain_text(&err)),
            })
            .map(Self::Server)
    }

    /// A client for the server to connect to now: the server, or the primary the sentinels
    /// name.
    pub async fn client(&self) -> RedisResult<Client> {
        match self {
            Self::Server(client) => Ok(client.clone()),
            Self::Sentinels(sentinels) => sentinels.primary().await,
            // Its hubs are per node (see `shards`), each with a `Server` target of its own.
            Self::Cluster(_) => Err(redis::RedisError::from((
                redis::ErrorKind::ClientError,
                "a Redis Cluster has no single server for pub/sub",
            ))),
        }
    }

    /// True for a Redis Cluster: announcements go by sharded pub/sub to the slot's nodes.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The cluster, for a Redis Cluster.
    pub fn cluster(&self) -> Option<&ClusterTarget> {
        match self {
            Self::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// True when the server can change (a failover): a connection that failed in any way is
    /// dropped rather than reconnected to the same address, which may now be a replica (or
    /// a restarted old primary that the sentinels have not turned into one yet); a cluster's
    /// new connection learns the slots afresh from the seed nodes.
    pub fn follows_failovers(&self) -> bool {
        matches!(self, Self::Sentinels(_) | Self::Cluster(..))
    }

    /// The server's human name, as `redis://user@host:port` (never the password).
    pub fn describe(&self) -> String {
        match self {
            Self::Server(client) => names::server(client.get_connection_info()),
            Self::Sentinels(sentinels) => sentinels.describe(),
            Self::Cluster(cluster) => cluster.describe.clone(),
        }
    }

    /// Where connections go, as `HOST:PORT` for one server (the sentinels' or seed nodes'
    /// URL otherwise), for messages.
    pub fn address(&self) -> String {
        match self {
            Self::Server(client) => match &client.get_connection_info().addr {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                    format!("{}:{port}", names::bracket(host))
                }
                ConnectionAddr::Unix(path) => path.display().to_string(),
            },
            Self::Sentinels(_) | Self::Cluster(_) => self.describe(),
        }
    }

    /// True when connections start with a TLS handshake (`rediss://`).
    pub fn tls(&self) -> bool {
        match self {
            Self::Server(client) => matches!(
                client.get_connection_info().addr,
                ConnectionAddr::TcpTls { .. }
            ),
            Self::Sentinels(_) => self.describe().starts_with("rediss"),
            Self::Cluster(cluster) => cluster.tls,
        }
    }

    /// The user the data connection authenticates as.
    pub fn user(&self) -> String {
        match self {
            Self::Server(client) => names::user(client.get_connection_info()),
            Self::Sentinels(sentinels) => sentinels.data_user(),
            Self::Cluster(cluster) => cluster
                .describe
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .map_or_else(|| "default".to_owned(), |(user, _)| user.to_owned()),
        }
    }
}

impl std::fmt::Debug for Target {
    // Written by hand: connection info holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The form of a Redis URL, for messages about one that is not.
pub(crate) const URL_FORM: &str = "redis://[USER:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS)";

/// A URL that cannot be read: echoes it without its password, says why and what is expected.
fn invalid_url(url: &str, why: &str) -> LockError {
    LockError::InvalidConfig(format!(
        "invalid Redis URL `{}`: {why}; expected {URL_FORM}",
        redacted(url)
    ))
}

/// `url` with the password of its `user:password@` part replaced by `***` (everything up to
/// the last `@` before a query counts as credentials, so no part of a password shows; a
/// password without a user name is hidden whole).
pub(crate) fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let query_start = rest.find('?').unwrap_or(rest.len());
    let Some(at) = rest[..query_start].rfind('@') else {
        return url.to_owned();
    };
    let prefix = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{prefix}{user}:***@{}", &rest[at + 1..]),
        None if rest[..at].is_empty() => url.to_owned(),
        None => format!("{prefix}***@{}", &rest[at + 1..]),
    }
}

/// A client for `info`, trusting `roots` (PEM) instead of the system's roots when given.
fn open(info: ConnectionInfo, roots: Option<&[u8]>) -> RedisResult<Client> {
    match roots {
        None => Client::open(info),
        Some(pem) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
    }
}

/// The PEM roots of `options.tls_ca`, checked, for a target that uses TLS (`tls`); `None`
/// for the system's roots.
fn tls_roots(options: &RedisLockOptions, tls: bool) -> LockResult<Option<Vec<u8>>> {
    if tls {
        // rustls needs one process-wide crypto provider; when several are compiled in (other
        // crates may enable aws-lc-rs) it cannot pick one itself. An installed one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let Some(ca_path) = &options.tls_ca else {
        return Ok(None);
    };
    if !tls {
        return Err(LockError::InvalidConfig(format!(
            "tls_ca is set to {} but the URL does not use TLS: write it as rediss://",
            ca_path.display()
        )));
    }
    let pem = std::fs::read(ca_path).map_err(|err| {
        LockError::InvalidConfig(format!(
            "cannot read the TLS CA file {}: {err}",
            ca_path.display()
        ))
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            LockError::InvalidConfig(format!(
                "the TLS CA file {} is not PEM: {err}",
                ca_path.display()
            ))
        })?;
    if certificates.is_empty() {
        return Err(LockError::InvalidConfig(format!(
            "the TLS CA file {} holds no certificate (expected PEM blocks that begin with -----BEGIN CERTIFICATE-----)",
            ca_path.display()
        )));
    }
    Ok(Some(pem))
}

/// The command connection: to one server (made again by the manager after it drops), or to a
/// cluster (one connection per node, routed by slot).
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server, or the primary the sentinels named.
    Server(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// One multiplexed command connection shared by every lock of a [`RedisClient`](crate::RedisClient),
/// made on first use. (Pub/sub has a connection of its own, in the [hub](crate::hub).)
///
/// The [`ConnectionManager`] reconnects by itself after the connection drops; this wrapper
/// also makes a new one after an authentication failure (which the manager would otherwise
/// keep returning) and when the first connection could not be made.
pub(crate) struct SharedConnection {
    target: Arc<Target>,
    config: ConnectionManagerConfig,
    lazy: LazyClient<Connection>,
}

impl SharedConnection {
    /// Nothing is connected until the first call.
    pub fn new(target: Arc<Target>, options: &RedisLockOptions) -> Self {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(options.connect_timeout)
            // A write that waits for replicas answers only after WAIT's own bound.
            .set_response_timeout(options.response_timeout + options.replica_wait())
            // One attempt per reconnection: a failed one is retried on the next call, at the
            // elector's pace, instead of by a backoff that can leave a restarted server
            // unused for a minute.
            .set_number_of_retries(0);
        Self {
            target,
            config,
            lazy: LazyClient::new(),
        }
    }

    /// The shared connection, made now if there is none, with its generation.
    pub async fn get(&self) -> RedisResult<Made<Connection>> {
        self.lazy
            .get(|| async {
                if let Target::Cluster(cluster) = self.target.as_ref() {
                    return cluster
                        .client
                        .get_async_connection()
                        .await
                        .map(Connection::Cluster);
                }
                let client = self.target.client().await?;
                ConnectionManager::new_with_config(client, self.config.clone())
                    .await
                    .map(Connection::Server)
            })
            .await
    }

    /// Forgets the connection of `generation` (if it is still the shared one): the next call
    /// makes a new one.
    pub async fn reset(&self, generation: u64) {
        self.lazy.reset(generation).await;
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    fn message(url: &str) -> String {
        match Target::new(url, &RedisLockOptions::default()) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("{url} was accepted"),
        }
    }

    #[test]
    fn a_bad_url_is_echoed_without_its_password_with_the_expected_form() {
        for (url, shown, why) in [
            (
                "redis://app:s3cret@cache:notaport",
                "redis://app:***@cache:notaport",
                "Redis URL did not parse",
            ),
            (
                "rediss://app:s3cret@cache:6379/abc",
                "rediss://app:***@cache:6379/abc",
                "Invalid database number",
            ),
            (
                "redis://:s3cret@cache:6379?protocol=bogus",
                "redis://:***@cache:6379?protocol=bogus",
                "Invalid protocol version: bogus",
            ),
        ] {
            let message = message(url);
            assert_eq!(
                message,
                format!(
                    "invalid configuration: invalid Redis URL `{shown}`: {why}; expected \
                     redis://[USER:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS)"
                ),
                "{url}"
            );
            assert!(!message.contains("s3cret"), "{message}");
            assert!(!message.contains("InvalidClientConfig"), "{message}");
        }
    }

    #[test]
    fn redaction_hides_every_part_of_a_password() {
        assert_eq!(
            redacted("redis://u:p@ss/w@h:1/2?x=@y"),
            "redis://u:***@h:1/2?x=@y"
        );
        assert_eq!(redacted("redis://h:1"), "redis://h:1");
    }
}
