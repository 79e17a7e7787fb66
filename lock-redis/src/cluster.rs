//! Redis Cluster: `redis+cluster://` URLs and redis-rs's cluster client, which follows
//! `MOVED` and `ASK` and finds the slot's primary after a failover.
//!
//! Every key of an election shares one hash tag (`leader-election:{orders}` and its
//! `:versions` companion), so the script's keys live in one slot, and the script together with
//! its `WAIT` goes to that slot's primary as one pipeline. Hints go by sharded pub/sub (see
//! [`shards`](crate::shards)).

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates, TlsMode};

use crate::names;

/// A `redis+cluster://` or `rediss+cluster://` URL, taken apart.
#[derive(Clone, Debug)]
pub(crate) struct ClusterUrl {
    /// The seed nodes: any of the cluster's nodes, from which it learns the rest.
    pub nodes: Vec<ConnectionAddr>,
    /// User and password (a cluster has database 0 only).
    pub auth: RedisConnectionInfo,
    /// Whether the nodes speak TLS.
    pub tls: bool,
}

impl ClusterUrl {
    /// `None` when `url` is not a cluster URL; `Err` (a message that does not repeat the URL,
    /// which may hold a password) when it is one but malformed.
    pub fn parse(url: &str) -> Option<Result<Self, String>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
            (true, rest)
        } else {
            return None;
        };
        Some(Self::parse_rest(tls, rest))
    }

    fn parse_rest(tls: bool, rest: &str) -> Result<Self, String> {
        const FORM: &str = "expected redis+cluster://[user[:password]@]host:port[,host:port...] (or rediss+cluster:// for TLS)";
        let after_credentials = rest.rfind('@').map_or(0, |at| at + 1);
        let credentials = &rest[..after_credentials];
        let hosts = rest[after_credentials..].trim_end_matches('/');
        if hosts.contains(['/', '?']) {
            return Err(format!(
                "a cluster URL has no database, path or parameters: {FORM}"
            ));
        }
        let scheme = if tls { "rediss" } else { "redis" };
        let mut nodes = Vec::new();
        let mut auth = None;
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(format!("the cluster URL has an empty host: {FORM}"));
            }
            let info = format!("{scheme}://{credentials}{host}")
                .into_connection_info()
                .map_err(|err| {
                    format!(
                        "invalid cluster URL ({}): {FORM}",
                        err.detail().unwrap_or("bad host")
                    )
                })?;
            nodes.push(info.addr);
            auth.get_or_insert(info.redis);
        }
        Ok(Self {
            nodes,
            auth: auth.unwrap_or_default(),
            tls,
        })
    }

    /// The cluster client: `timeout` per connection and per answer, and two retries, which is
    /// how it follows `MOVED` and `ASK` (a redirection counts as one). A write it sends again
    /// after a lost connection may find its first run in place: the lock recognises its own
    /// bytes and answers with their version (see `RedisLock::update`).
    pub fn client(
        &self,
        roots: Option<&[u8]>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> redis::RedisResult<ClusterClient> {
        let mut builder = ClusterClientBuilder::new(self.seeds())
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            .retries(2);
        if let Some(user) = &self.auth.username {
            builder = builder.username(user.clone());
        }
        if let Some(password) = &self.auth.password {
            builder = builder.password(password.clone());
        }
        if self.tls {
            builder = builder.tls(TlsMode::Secure);
        }
        if let Some(pem) = roots {
            builder = builder.certs(TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            });
        }
        builder.build()
    }

    /// Every seed node with the credentials.
    pub fn seeds(&self) -> Vec<redis::ConnectionInfo> {
        self.nodes
            .iter()
            .map(|addr| redis::ConnectionInfo {
                addr: addr.clone(),
                redis: self.auth.clone(),
            })
            .collect()
    }

    /// `redis+cluster://user@host:port,host:port` (never a password).
    pub fn describe(&self) -> String {
        let scheme = if self.tls {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        let user = names::user_at(self.auth.username.as_deref());
        let hosts: Vec<String> = self.nodes.iter().map(names::address).collect();
        format!("{scheme}://{user}{}", hosts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_nodes_and_credentials_are_read_and_the_password_never_shown() {
        let url = ClusterUrl::parse("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001")
            .unwrap()
            .unwrap();
        assert_eq!(url.nodes.len(), 2);
        assert_eq!(url.auth.password.as_deref(), Some("s3cret"));
        assert_eq!(
            url.describe(),
            "redis+cluster://app@10.0.0.1:7000,10.0.0.2:7001"
        );
        assert!(ClusterUrl::parse("redis://h:1").is_none());
        let message = ClusterUrl::parse("redis+cluster://app:s3cret@h:1/2")
            .unwrap()
            .unwrap_err();
        assert!(message.contains("no database"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
