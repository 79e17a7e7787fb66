//! Finding the primary through Redis Sentinel: `redis+sentinel://` URLs and the question
//! asked of the sentinels before every new connection.
//!
//! redis-rs has a sentinel client, but it asks the sentinels in a fixed order with no time
//! limit, so one stopped sentinel (SIGSTOP, a dead host whose packets vanish) would hang every
//! reconnection: the moment a failover needs them most. This module asks one sentinel at a
//! time within the connect and response timeouts, starts with the one that answered last, and
//! checks with `ROLE` that the server it names calls itself a primary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, RedisResult, Role,
};
use tokio::time::timeout;

use crate::names;

/// The port a sentinel listens on unless the URL says otherwise.
pub(crate) const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A `redis+sentinel://` or `rediss+sentinel://` URL, taken apart.
#[derive(Clone, Debug)]
pub(crate) struct SentinelUrl {
    /// The sentinels (address and TLS), without credentials.
    pub sentinels: Vec<ConnectionAddr>,
    /// The master name the sentinels watch.
    pub master: String,
    /// User, password and database of the data connection.
    pub data: RedisConnectionInfo,
    /// Whether the sentinels and the primary speak TLS.
    pub tls: bool,
}

impl SentinelUrl {
    /// `None` when `url` is not a sentinel URL at all; `Err` (a message that does not repeat
    /// the URL, which may hold a password) when it is one but malformed.
    pub fn parse(url: &str) -> Option<Result<Self, String>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return None;
        };
        Some(Self::parse_rest(tls, rest))
    }

    fn parse_rest(tls: bool, rest: &str) -> Result<Self, String> {
        // Query parameters (`protocol=resp3`, say) go to redis-rs with every host.
        let (rest, query) = match rest.rfind('?') {
            Some(at) if !rest[at..].contains('@') => (&rest[..at], &rest[at..]),
            _ => (rest, ""),
        };
        const FORM: &str = "expected redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/MASTER[/DB] (or rediss+sentinel:// for TLS; the port defaults to 26379)";
        // Credentials end at the last '@'; the path begins at the first '/' after them.
        let after_credentials = rest.rfind('@').map_or(0, |at| at + 1);
        let slash = rest[after_credentials..]
            .find('/')
            .map(|at| at + after_credentials)
            .ok_or_else(|| format!("the sentinel URL names no master: {FORM}"))?;
        let credentials = &rest[..after_credentials];
        let hosts = &rest[after_credentials..slash];
        let mut path = rest[slash + 1..].splitn(2, '/');
        let master = path.next().unwrap_or_default();
        if master.is_empty() || master.contains('#') {
            return Err(format!("the sentinel URL names no master: {FORM}"));
        }
        let db = match path.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .map_err(|_| format!("the database in the sentinel URL is not a number: {FORM}"))?,
        };
        let scheme = if tls { "rediss" } else { "redis" };
        let mut sentinels = Vec::new();
        let mut data = None;
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(format!("the sentinel URL has an empty host: {FORM}"));
            }
            let has_port = host
                .rsplit_once(':')
                .is_some_and(|(_, port)| !port.ends_with(']'))
                && !host.ends_with(']');
            let host = if has_port {
                host.to_owned()
            } else {
                format!("{host}:{DEFAULT_SENTINEL_PORT}")
            };
            // redis-rs reads the host, the port and the percent-encoded credentials.
            let info = format!("{scheme}://{credentials}{host}/{db}{query}")
                .into_connection_info()
                .map_err(|err| {
                    format!(
                        "invalid sentinel URL ({}): {FORM}",
                        err.detail().unwrap_or("bad host")
                    )
                })?;
            sentinels.push(info.addr);
            data.get_or_insert(info.redis);
        }
        Ok(Self {
            sentinels,
            master: master.to_owned(),
            data: data.unwrap_or_default(),
            tls,
        })
    }
}

/// The sentinels of one master, and how to reach what they name.
pub(crate) struct Sentinels {
    /// The sentinels, with the credentials they want.
    nodes: Vec<ConnectionInfo>,
    master: String,
    data: RedisConnectionInfo,
    tls: bool,
    /// Makes a client for an address (TLS roots and all): the same as for a plain URL.
    make_client: Box<dyn Fn(ConnectionInfo) -> RedisResult<Client> + Send + Sync>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The sentinel asked first: the last one that answered.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinels")
            .field("master", &self.master)
            .field("sentinels", &self.nodes.len())
            .finish()
    }
}

impl Sentinels {
    pub fn new(
        url: SentinelUrl,
        sentinel_auth: RedisConnectionInfo,
        make_client: impl Fn(ConnectionInfo) -> RedisResult<Client> + Send + Sync + 'static,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        let nodes = url
            .sentinels
            .into_iter()
            .map(|addr| ConnectionInfo {
                addr,
                redis: sentinel_auth.clone(),
            })
            .collect();
        Self {
            nodes,
            master: url.master,
            data: url.data,
            tls: url.tls,
            make_client: Box::new(make_client),
            connect_timeout,
            response_timeout,
            preferred: AtomicUsize::new(0),
        }
    }

    /// A client for the primary the sentinels name now, checked to call itself a primary.
    pub async fn primary(&self) -> RedisResult<Client> {
        let count = self.nodes.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let limit = self.connect_timeout + self.response_timeout;
        let mut failures = Vec::with_capacity(count);
        for step in 0..count {
            let index = (first + step) % count;
            let node = &self.nodes[index];
            match timeout(limit, self.ask(node)).await {
                Ok(Ok(Some((host, port)))) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return self.checked_primary(host, port).await;
                }
                Ok(Ok(None)) => failures.push(format!(
                    "{} watches no master named {:?}",
                    names::address(&node.addr),
                    self.master
                )),
                Ok(Err(err)) => failures.push(format!("{}: {err}", names::address(&node.addr))),
                Err(_) => failures.push(format!(
                    "{}: no answer within {limit:?}",
                    names::address(&node.addr)
                )),
            }
        }
        Err(RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "no sentinel named the primary",
            format!("master {:?}: {}", self.master, failures.join("; ")),
        )))
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one sentinel.
    async fn ask(&self, node: &ConnectionInfo) -> RedisResult<Option<(String, u16)>> {
        let mut connection = self.connect((self.make_client)(node.clone())?).await?;
        let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master)
            .query_async(&mut connection)
            .await?;
        Ok(answer)
    }

    /// A client for `host:port`, which must answer `ROLE` as a primary: a sentinel that has
    /// not yet seen a failover may still name the old primary, back as a replica.
    async fn checked_primary(&self, host: String, port: u16) -> RedisResult<Client> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let client = (self.make_client)(ConnectionInfo {
            addr: addr.clone(),
            redis: self.data.clone(),
        })?;
        let check = async {
            let mut connection = self.connect(client.clone()).await?;
            redis::cmd("ROLE")
                .query_async::<Role>(&mut connection)
                .await
        };
        let limit = self.connect_timeout + self.response_timeout;
        match timeout(limit, check).await {
            Ok(Ok(Role::Primary { .. })) => Ok(client),
            Ok(Ok(_)) => Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the server a sentinel named is not a primary",
                format!(
                    "{} is not a primary for {:?} (yet): a failover is under way, or the sentinel has not seen it",
                    addr, self.master
                ),
            ))),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(RedisError::from((
                ErrorKind::IoError,
                "the primary a sentinel named does not answer",
                format!("{addr}: no answer within {limit:?}"),
            ))),
        }
    }

    async fn connect(&self, client: Client) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.response_timeout);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// `redis+sentinel://user@host:port,host:port/master` (never a password).
    pub fn describe(&self) -> String {
        let scheme = if self.tls {
            "rediss+sentinel"
        } else {
            "redis+sentinel"
        };
        let user = names::user_at(self.data.username.as_deref());
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| names::address(&node.addr))
            .collect();
        let mut name = format!("{scheme}://{user}{}/{}", hosts.join(","), self.master);
        if self.data.db != 0 {
            name.push_str(&format!("/{}", self.data.db));
        }
        name
    }

    /// The user the data connection authenticates as.
    pub fn data_user(&self) -> String {
        self.data
            .username
            .clone()
            .unwrap_or_else(|| "default".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SentinelUrl, String> {
        SentinelUrl::parse(url).expect("a sentinel URL")
    }

    #[test]
    fn plain_urls_are_not_sentinel_urls() {
        assert!(SentinelUrl::parse("redis://127.0.0.1:6379").is_none());
        assert!(SentinelUrl::parse("rediss://h").is_none());
    }

    #[test]
    fn hosts_master_credentials_and_database_are_read() {
        let url = parse("redis+sentinel://alice:p%40ss@10.0.0.1,10.0.0.2:26380/orders-primary/3")
            .unwrap();
        assert_eq!(
            url.sentinels,
            vec![
                ConnectionAddr::Tcp("10.0.0.1".into(), DEFAULT_SENTINEL_PORT),
                ConnectionAddr::Tcp("10.0.0.2".into(), 26380),
            ]
        );
        assert_eq!(url.master, "orders-primary");
        assert_eq!(url.data.username.as_deref(), Some("alice"));
        assert_eq!(url.data.password.as_deref(), Some("p@ss"));
        assert_eq!(url.data.db, 3);
        assert!(!url.tls);
        let url = parse("rediss+sentinel://[::1]:26379/m").unwrap();
        assert!(url.tls);
        assert!(matches!(
            &url.sentinels[0],
            ConnectionAddr::TcpTls { port: 26379, .. }
        ));
    }

    #[test]
    fn malformed_sentinel_urls_say_what_is_expected_without_the_password() {
        for url in [
            "redis+sentinel://u:secret@h1,h2",
            "redis+sentinel://u:secret@h1/",
            "redis+sentinel://u:secret@h1,,h2/m",
            "redis+sentinel://u:secret@h1/m/x",
        ] {
            let message = parse(url).unwrap_err();
            assert!(message.contains("expected redis+sentinel://"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }
}
