//! Where an election lives in Redis: its key, its change channel and its human name.

use lock_core::backend::check_election_name;
use lock_core::{LockError, LockResult};
use redis::{ConnectionAddr, ConnectionInfo};

/// The Redis names of one election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Names {
    /// The hash that holds the record and its version: `{prefix}{{name}}`.
    pub key: String,
    /// The pub/sub channel on which every write is announced: `{key}:changes` (the script
    /// derives it from the key the same way).
    pub channel: String,
    /// The hash that keeps the highest version ever written for the election, so that a
    /// record deleted and created again never repeats a version: `{key}:versions`. It shares
    /// the key's hash tag (one Redis Cluster slot) and its prefix (one ACL key pattern).
    pub versions: String,
}

impl Names {
    /// Checks `prefix` and `name` and derives the key and the channel.
    ///
    /// The name is wrapped in a Redis Cluster hash tag, so that everything derived from the key
    /// hashes to one slot whatever the prefix is.
    pub fn new(prefix: &str, name: &str) -> LockResult<Self> {
        check_prefix(prefix)?;
        check_election_name(name)?;
        if name.contains(['{', '}']) {
            return Err(invalid(format!(
                "the election name {name:?} contains '{{' or '}}', which would break the Redis Cluster hash tag around it"
            )));
        }
        let key = format!("{prefix}{{{name}}}");
        let channel = format!("{key}:changes");
        let versions = format!("{key}:versions");
        Ok(Self {
            key,
            channel,
            versions,
        })
    }
}

/// Checks a key prefix: it becomes part of an ACL pattern, so it may hold neither white space
/// nor braces.
pub(crate) fn check_prefix(prefix: &str) -> LockResult<()> {
    if prefix.contains(['{', '}']) {
        return Err(invalid(format!(
            "the key prefix {prefix:?} contains '{{' or '}}': the election name is put in a hash tag after it, and a second tag would change the Redis Cluster slot"
        )));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "the key prefix {prefix:?} contains white space or a control character, which an ACL key pattern cannot hold"
        )));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> LockError {
    LockError::InvalidConfig(message.into())
}

/// `user@` for a URL that shows who logs in (never the password); empty without a user.
pub(crate) fn user_at(username: Option<&str>) -> String {
    username.map(|user| format!("{user}@")).unwrap_or_default()
}

/// `host:port` (IPv6 in brackets), or a socket's path.
pub(crate) fn address(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{}:{port}", bracket(host))
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
    }
}

/// The server part of a lock's human name: scheme, user (never the password), host and port.
pub(crate) fn server(info: &ConnectionInfo) -> String {
    let user = user_at(info.redis.username.as_deref());
    let mut name = match &info.addr {
        ConnectionAddr::Tcp(host, port) => format!("redis://{user}{}:{port}", bracket(host)),
        ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{user}{}:{port}", bracket(host))
        }
        ConnectionAddr::Unix(path) => format!("redis+unix://{user}{}", path.display()),
    };
    if info.redis.db != 0 {
        name.push_str(&format!("/db{}", info.redis.db));
    }
    name
}

/// IPv6 addresses are written in brackets, as in URLs.
pub(crate) fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The user the connection authenticates as, for error messages: Redis calls the user of a
/// password-only login `default`.
pub(crate) fn user(info: &ConnectionInfo) -> String {
    info.redis
        .username
        .clone()
        .unwrap_or_else(|| "default".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::IntoConnectionInfo;

    #[test]
    fn key_and_channel_share_one_hash_tag() {
        let names = Names::new("leader-election:", "orders").unwrap();
        assert_eq!(names.key, "leader-election:{orders}");
        assert_eq!(names.channel, "leader-election:{orders}:changes");
        assert_eq!(names.versions, "leader-election:{orders}:versions");
    }

    #[test]
    fn names_that_break_the_tag_are_rejected() {
        assert!(Names::new("p:", "").is_err());
        assert!(Names::new("p:", "a{b").is_err());
        assert!(Names::new("p:{x}", "a").is_err());
        assert!(Names::new("my app:", "a").is_err());
        assert!(Names::new("", "a b").is_ok());
    }

    #[test]
    fn server_names_never_show_the_password() {
        let info = "redis://alice:secret@127.0.0.1:6380/2"
            .into_connection_info()
            .unwrap();
        assert_eq!(server(&info), "redis://alice@127.0.0.1:6380/db2");
        assert_eq!(user(&info), "alice");
        let info = "rediss://:secret@localhost:6390"
            .into_connection_info()
            .unwrap();
        assert_eq!(server(&info), "rediss://localhost:6390");
        assert_eq!(user(&info), "default");
    }
}
