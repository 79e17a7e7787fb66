//! Turns what Redis and the client library report into the lock's error kinds.

use std::time::Duration;

use lock_core::LockError;
use redis::{ErrorKind, RedisError};

/// What an error message needs to name: the lock, the user and the ACL that would fix it.
#[derive(Clone, Debug)]
pub(crate) struct ErrorContext {
    /// The lock, as `describe` names it.
    pub lock: String,
    /// The user the connection authenticates as.
    pub user: String,
    /// The key prefix, for the ACL line that grants what is missing.
    pub key_prefix: String,
    /// Where the connection goes, as `HOST:PORT` (the sentinels or seed nodes behind them,
    /// otherwise), for the messages about a server that does not answer as Redis.
    pub address: String,
    /// True for `rediss://`: the connection starts with a TLS handshake.
    pub tls: bool,
}

impl ErrorContext {
    /// Maps a client library error:
    /// - authentication failures (`WRONGPASS`, `NOAUTH`, a refused `AUTH`) and missing ACL
    ///   permissions (`NOPERM`, and the errors a script gets for them) are `Forbidden`;
    /// - a bad URL or TLS setting is `InvalidConfig`;
    /// - everything else (refused or dropped connections, timeouts, I/O, TLS handshakes, a
    ///   server that is loading, read-only or out of memory) is `Unavailable`.
    pub fn map(&self, err: RedisError) -> LockError {
        if let Some(reason) = self.authentication_failure(&err) {
            return LockError::Forbidden {
                lock: self.lock.clone(),
                reason,
            };
        }
        if is_missing_permission(&err) {
            return LockError::Forbidden {
                lock: self.lock.clone(),
                reason: format!(
                    "user {} lacks an ACL permission the lock needs: {}; grant what the lock uses with: {}",
                    self.user,
                    server_text(&err),
                    crate::acl::acl_setuser_line(&self.user, &self.key_prefix)
                ),
            };
        }
        if err.kind() == ErrorKind::InvalidClientConfig {
            return LockError::InvalidConfig(format!("{}: {}", self.lock, plain_text(&err)));
        }
        if let Some(reason) = self.not_redis(&err) {
            return LockError::unavailable_because(self.lock.clone(), reason, err);
        }
        let mut reason = plain_text(&err);
        if !self.tls && err.is_connection_dropped() {
            // A TLS server closes a connection that starts in the clear; a restart also drops
            // connections, hence only "if".
            reason.push_str(&format!(
                " (the server at {} closed the connection: if it is a Redis server with TLS, \
                 write rediss://)",
                self.address
            ));
        }
        if reason.contains("invalid peer certificate") {
            reason.push_str(
                " (the server's certificate is not trusted: check the tls_ca option, and that the certificate names the host in the URL)",
            );
        }
        LockError::unavailable_because(self.lock.clone(), reason, err)
    }

    /// The lock call took longer than `limit`. Over TLS, a server that does not speak TLS
    /// (a plain Redis) leaves the handshake unanswered, which looks just like this: say so.
    pub fn timed_out(&self, limit: Duration) -> LockError {
        if self.tls {
            return LockError::unexpected(
                self.lock.clone(),
                format!("no answer within {limit:?}{}", self.tls_hint()),
            );
        }
        LockError::timed_out(self.lock.clone(), limit)
    }

    /// What a TLS connection that got no answer may mean, for messages.
    pub fn tls_hint(&self) -> String {
        if !self.tls {
            return String::new();
        }
        format!(
            " (is the server at {} a Redis server with TLS? a rediss:// URL needs a TLS port \
             (tls-port); for a plain Redis server write redis://)",
            self.address
        )
    }

    /// The message for an answer no Redis server gives (an HTTP server, random bytes, or a
    /// plain server spoken to over TLS), or `None` when `err` is something else.
    fn not_redis(&self, err: &RedisError) -> Option<String> {
        let text = plain_text(err);
        let address = &self.address;
        if self.tls && err.is_timeout() {
            return Some(format!(
                "the server at {address} did not complete a TLS handshake ({text}): is it a \
                 Redis server with TLS? a rediss:// URL needs a TLS port (tls-port); for a \
                 plain Redis server write redis://"
            ));
        }
        let bad_tls = ["corrupt message", "InvalidContentType", "InvalidMessage"];
        if self.tls && bad_tls.iter().any(|needle| text.contains(needle)) {
            return Some(format!(
                "the server at {address} did not answer TLS ({text}): is it a Redis server \
                 with TLS? a rediss:// URL needs a TLS port (tls-port); for a plain Redis \
                 server write redis://"
            ));
        }
        if err.kind() == ErrorKind::ParseError {
            // redis-rs puts the bytes it choked on on lines of their own.
            let first_line = text.lines().next().unwrap_or_default();
            let tls_note = if self.tls {
                ""
            } else {
                "; if it is a Redis server with TLS, write rediss://"
            };
            return Some(format!(
                "the server at {address} did not answer as Redis ({first_line}): is it a \
                 Redis server? check the host and port in the URL{tls_note}"
            ));
        }
        None
    }

    /// The server answered something the script cannot have sent.
    pub fn unexpected(&self, reason: String) -> LockError {
        LockError::unexpected(self.lock.clone(), reason)
    }

    /// The message for an authentication failure, or `None` when `err` is not one.
    fn authentication_failure(&self, err: &RedisError) -> Option<String> {
        let user = &self.user;
        let detail = if err.code() == Some("NOAUTH") || is_unauthenticated_protocol_error(err) {
            "the server requires a password and none was given: put it in the URL, as in redis://user:password@host:6379"
        } else if err.code() == Some("WRONGPASS") || err.kind() == ErrorKind::AuthenticationFailed {
            "the server refused the user name and password in the URL (wrong password, unknown user, or the user is disabled)"
        } else {
            return None;
        };
        Some(format!("authentication failed for user {user}: {detail}"))
    }
}

/// True when `err` is the authentication failing: the connection must be made again (with the
/// credentials it has) rather than reused.
pub(crate) fn is_authentication_failure(err: &RedisError) -> bool {
    matches!(err.code(), Some("NOAUTH") | Some("WRONGPASS"))
        || err.kind() == ErrorKind::AuthenticationFailed
        || is_unauthenticated_protocol_error(err)
}

/// A server that requires a password refuses a long command (over ten words: the script's
/// run on a Redis Cluster) from a client that has not logged in with a protocol error
/// (`unauthenticated multibulk length`) rather than `NOAUTH`.
fn is_unauthenticated_protocol_error(err: &RedisError) -> bool {
    err.to_string().contains("unauthenticated multibulk")
}

/// True when the connection's server is gone or no longer the primary: the connection broke
/// or could not be made, or the server answers as a replica (`READONLY`), without a primary
/// (`MASTERDOWN`) or while loading its data (`LOADING`). Behind sentinels, the next connection
/// must ask them where the primary is now.
pub(crate) fn is_server_gone(err: &RedisError) -> bool {
    err.is_unrecoverable_error()
        || err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || matches!(err.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || err.kind() == ErrorKind::MasterNameNotFoundBySentinel
}

/// ACL refusals: `NOPERM` from a command, or the `ERR` a script gets when a command it calls is
/// refused.
fn is_missing_permission(err: &RedisError) -> bool {
    if err.code() == Some("NOPERM") {
        return true;
    }
    let text = server_text(err);
    [
        "NOPERM",
        "no permissions",
        "can't run this command",
        "can't publish to the channel",
        "can't access at least one of the keys",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The client library's message without its internal tag: redis-rs writes its errors as
/// `DESCRIPTION- KindName` or `DESCRIPTION - KindName: DETAIL` (the `ErrorKind`'s Debug
/// name), which means nothing to a user.
pub(crate) fn plain_text(err: &RedisError) -> String {
    let text = err.to_string();
    let tag = format!("{:?}", err.kind());
    let with_detail = format!(" - {tag}: ");
    if text.contains(&with_detail) {
        return text.replacen(&with_detail, ": ", 1);
    }
    match text.strip_suffix(&format!("- {tag}")) {
        Some(plain) => plain.trim_end().to_owned(),
        None => text,
    }
}

/// The server's own words: its error code and message.
fn server_text(err: &RedisError) -> String {
    match (err.code(), err.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ErrorContext {
        ErrorContext {
            lock: "redis://127.0.0.1:6379/leader-election:{orders}".into(),
            user: "alice".into(),
            key_prefix: "leader-election:".into(),
            address: "127.0.0.1:6379".into(),
            tls: false,
        }
    }

    #[test]
    fn the_client_librarys_kind_tags_are_not_shown() {
        let bare = RedisError::from((ErrorKind::InvalidClientConfig, "Redis URL did not parse"));
        assert_eq!(plain_text(&bare), "Redis URL did not parse");
        let detailed = RedisError::from((
            ErrorKind::InvalidClientConfig,
            "Invalid protocol version",
            "bogus".to_owned(),
        ));
        assert_eq!(plain_text(&detailed), "Invalid protocol version: bogus");
        let mapped = context().map(bare).to_string();
        assert!(!mapped.contains("InvalidClientConfig"), "{mapped}");
    }

    fn server_error(code: &str, detail: &str) -> RedisError {
        redis::make_extension_error(code.into(), Some(detail.into()))
    }

    #[test]
    fn wrong_password_is_forbidden_and_names_the_user() {
        let err = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        let mapped = context().map(err);
        let LockError::Forbidden { reason, .. } = &mapped else {
            panic!("not forbidden: {mapped:?}");
        };
        assert!(
            reason.contains("authentication failed for user alice"),
            "{reason}"
        );
    }

    #[test]
    fn noperm_is_forbidden_and_names_the_command_and_the_fix() {
        let err = server_error(
            "NOPERM",
            "this user has no permissions to run the 'get' command",
        );
        let LockError::Forbidden { reason, .. } = context().map(err) else {
            panic!("not forbidden");
        };
        assert!(reason.contains("'get' command"), "{reason}");
        assert!(reason.contains("ACL SETUSER alice"), "{reason}");
    }

    #[test]
    fn io_errors_are_unavailable() {
        let err = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(context().map(err).is_retryable());
    }
}
