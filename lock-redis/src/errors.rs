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
            return LockError::InvalidConfig(format!("{}: {err}", self.lock));
        }
        let mut reason = err.to_string();
        if reason.contains("invalid peer certificate") {
            reason.push_str(
                " (the server's certificate is not trusted: check the tls_ca option, and that the certificate names the host in the URL)",
            );
        }
        LockError::unavailable_because(self.lock.clone(), reason, err)
    }

    /// The lock call took longer than `limit`.
    pub fn timed_out(&self, limit: Duration) -> LockError {
        LockError::timed_out(self.lock.clone(), limit)
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
        }
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
