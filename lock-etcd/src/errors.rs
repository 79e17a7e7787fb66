//! Turns what etcd and the client library report into the lock's error kinds.

use std::error::Error as _;
use std::time::Duration;

use etcd_client::Error;
use lock_core::LockError;
use tonic::Code;

/// What an error message needs to name: the lock, the user, the key and its prefix.
#[derive(Clone, Debug)]
pub(crate) struct ErrorContext {
    /// The lock, as `describe` names it.
    pub lock: String,
    /// The user the client logs in as, if any.
    pub user: Option<String>,
    /// The key of the election.
    pub key: String,
    /// The key prefix, for the permission that would fix a refusal.
    pub prefix: String,
    /// True when the endpoints are reached over TLS.
    pub tls: bool,
}

/// What kind of fault an error is, before it is worded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The server refused the user name and password, or wants some and got none.
    Authentication,
    /// The user's role may not read or write the key.
    Permission,
    /// Credentials were given to a server without authentication.
    AuthenticationNotEnabled,
    /// The login token expired or the server forgot it (after a restart): log in again.
    StaleToken,
    /// A bad endpoint or setting.
    Config,
    /// An answer above the client's message limit (4 MiB, tonic's default for decoding): the
    /// key holds a value far larger than any record.
    TooLarge,
    /// Anything that may pass: network, timeout, server down or without a leader.
    Transient,
}

impl ErrorContext {
    /// Maps a client library error:
    /// - a refused login (`authentication failed, invalid user ID or password`, `user name is
    ///   empty`) and a refused permission (`permission denied`) are `Forbidden`, with what is
    ///   missing;
    /// - a bad endpoint, or credentials for a server without authentication, are
    ///   `InvalidConfig`;
    /// - an answer above the client's message limit is `Corrupt`: the only thing in an answer
    ///   that can grow that large is the key's value, and no record comes near it (the message
    ///   names the size and the limit);
    /// - everything else (refused or dropped connections, TLS handshakes with an untrusted
    ///   server, no leader, timeouts, an expired login) is `Unavailable`. That includes a
    ///   refused TLS client certificate: with TLS 1.3 the client often only sees the connection
    ///   close, so it cannot be told apart reliably; the message points at the certificate.
    pub fn map(&self, err: Error) -> LockError {
        let reason = describe(&err);
        match classify(&err) {
            Fault::Authentication => LockError::Forbidden {
                lock: self.lock.clone(),
                reason: self.authentication_failure(&reason),
            },
            Fault::Permission => LockError::Forbidden {
                lock: self.lock.clone(),
                reason: self.missing_permission(&reason),
            },
            Fault::AuthenticationNotEnabled => LockError::InvalidConfig(format!(
                "{}: a user name and password are set but the server does not have authentication enabled ({reason}): remove them, or run `etcdctl auth enable`",
                self.lock
            )),
            Fault::Config => LockError::InvalidConfig(format!("{}: {reason}", self.lock)),
            Fault::TooLarge => LockError::Corrupt {
                lock: self.lock.clone(),
                reason: self.too_large(&reason),
            },
            Fault::StaleToken | Fault::Transient => {
                let mut reason = reason;
                if let Some(hint) = self.tls_hint(&reason) {
                    reason.push_str(hint);
                }
                LockError::unavailable_because(self.lock.clone(), reason, err)
            }
        }
    }

    /// The request took longer than `limit`.
    pub fn timed_out(&self, limit: Duration) -> LockError {
        LockError::timed_out(self.lock.clone(), limit)
    }

    /// The server answered something etcd cannot have sent.
    pub fn unexpected(&self, reason: impl Into<String>) -> LockError {
        LockError::unexpected(self.lock.clone(), reason)
    }

    /// The message for a value above the client's message limit: its size and the limit when
    /// the client says them, and the etcdctl commands that inspect and delete it.
    fn too_large(&self, reason: &str) -> String {
        let key = &self.key;
        let sizes = message_sizes(reason).map_or_else(
            || format!("({reason})"),
            |(found, limit)| format!("({found} bytes, the limit is {limit} bytes)"),
        );
        format!(
            "the key {key} holds a value too large to be a leader election record: it exceeds \
             the client's gRPC message limit {sizes}, so another program wrote it there; \
             inspect it with `etcdctl get {key} --print-value-only | head -c 300`, then delete \
             it with `etcdctl del {key}` or choose another election name"
        )
    }

    /// What a TLS failure may mean, for the message.
    fn tls_hint(&self, reason: &str) -> Option<&'static str> {
        if !self.tls {
            return None;
        }
        if reason.contains("invalid peer certificate") {
            return Some(" (the server's certificate is not trusted: check the tls_ca option, and that the certificate names the host in the endpoint)");
        }
        if reason.contains("received fatal alert") {
            return Some(" (the server refused the TLS handshake, most likely the client certificate: set one signed by a CA the server trusts with EtcdLockOptions::with_client_identity)");
        }
        if ["broken pipe", "connection closed", "connection reset"]
            .iter()
            .any(|closed| reason.contains(closed))
        {
            return Some(" (if the server checks client certificates (--client-cert-auth), it closes the connection when it refuses the client certificate: check the client_identity option)");
        }
        None
    }

    fn authentication_failure(&self, reason: &str) -> String {
        match &self.user {
            Some(user) => format!(
                "authentication failed for user {user}: the server refused the user name and password (wrong password or unknown user): {reason}"
            ),
            None => format!(
                "authentication failed: the server has authentication enabled and no user was given; set one with EtcdLockOptions::with_user: {reason}"
            ),
        }
    }

    fn missing_permission(&self, reason: &str) -> String {
        let who = match &self.user {
            Some(user) => format!("user {user}"),
            None => "the client (logged in by its certificate's common name)".to_owned(),
        };
        format!(
            "{who} may not read and write the key {key:?} ({reason}): the user's role needs readwrite permission on the prefix {prefix:?}; grant it with: {grant}",
            key = self.key,
            prefix = self.prefix,
            grant = crate::etcdctl_grant_line("<role>", &self.prefix),
        )
    }
}

/// What kind of fault `err` is, from etcd's status code and its own messages
/// (`rpctypes` in etcd's API: the Lock and Election services lose the codes, the messages stay).
pub(crate) fn classify(err: &Error) -> Fault {
    match err {
        Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("etcdserver: authentication failed")
                || message.contains("etcdserver: user name is empty")
            {
                Fault::Authentication
            } else if message.contains("etcdserver: authentication is not enabled") {
                Fault::AuthenticationNotEnabled
            } else if status.code() == Code::PermissionDenied
                || message.contains("etcdserver: permission denied")
            {
                Fault::Permission
            } else if status.code() == Code::OutOfRange
                && message.contains("message length too large")
            {
                Fault::TooLarge
            } else if status.code() == Code::Unauthenticated
                || message.contains("etcdserver: invalid auth token")
            {
                Fault::StaleToken
            } else {
                Fault::Transient
            }
        }
        Error::InvalidArgs(_) | Error::InvalidUri(_) | Error::InvalidMetadataValue(_) => {
            Fault::Config
        }
        _ => Fault::Transient,
    }
}

/// The sizes in tonic's `decoded message length too large: found N bytes, the limit is: M
/// bytes`.
fn message_sizes(text: &str) -> Option<(u64, u64)> {
    let number_after = |marker: &str| -> Option<u64> {
        let start = text.find(marker)? + marker.len();
        let digits: String = text[start..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((number_after("found")?, number_after("the limit is:")?))
}

/// The error with its causes, as one line: the client library's own messages say little
/// ("transport error"), the causes say what happened.
pub(crate) fn describe(err: &Error) -> String {
    let (mut text, mut source) = match err {
        Error::GRpcStatus(status) => {
            let mut text = format!("{:?}", status.code());
            if !status.message().is_empty() {
                text.push_str(": ");
                text.push_str(status.message());
            }
            (text, status.source())
        }
        Error::TransportError(err) => (err.to_string(), err.source()),
        Error::IoError(err) => (err.to_string(), err.source()),
        other => (other.to_string(), None),
    };
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    fn context(user: Option<&str>) -> ErrorContext {
        ErrorContext {
            lock: "etcd://127.0.0.1:2379/leader-election/orders".into(),
            user: user.map(str::to_owned),
            key: "leader-election/orders".into(),
            prefix: "leader-election/".into(),
            tls: false,
        }
    }

    #[test]
    fn a_refused_login_is_forbidden_and_names_the_user() {
        let err = Error::GRpcStatus(Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password",
        ));
        let mapped = context(Some("alice")).map(err);
        let LockError::Forbidden { reason, .. } = &mapped else {
            panic!("not forbidden: {mapped:?}");
        };
        assert!(
            reason.contains("authentication failed for user alice"),
            "{reason}"
        );
    }

    #[test]
    fn a_refused_permission_names_the_key_and_the_grant() {
        let err = Error::GRpcStatus(Status::permission_denied("etcdserver: permission denied"));
        let LockError::Forbidden { reason, .. } = context(Some("alice")).map(err) else {
            panic!("not forbidden");
        };
        assert!(reason.contains("user alice"), "{reason}");
        assert!(reason.contains("\"leader-election/orders\""), "{reason}");
        assert!(reason.contains("readwrite"), "{reason}");
        assert!(
            reason.contains("--prefix=true '<role>' readwrite leader-election/"),
            "{reason}"
        );
    }

    #[test]
    fn network_faults_and_stale_tokens_are_unavailable() {
        for status in [
            Status::unavailable("tcp connect error"),
            Status::unknown("etcdserver: no leader"),
            Status::unauthenticated("etcdserver: invalid auth token"),
            Status::deadline_exceeded("etcdserver: request timed out"),
        ] {
            let mapped = context(None).map(Error::GRpcStatus(status));
            assert!(mapped.is_retryable(), "{mapped:?}");
        }
    }

    #[test]
    fn an_answer_above_the_message_limit_is_corrupt_and_names_size_and_limit() {
        let err = Error::GRpcStatus(Status::out_of_range(
            "Error, decoded message length too large: found 5242939 bytes, the limit is: 4194304 bytes",
        ));
        let mapped = context(None).map(err);
        assert!(matches!(mapped, LockError::Corrupt { .. }), "{mapped:?}");
        let message = mapped.to_string();
        assert!(
            message.contains(
                "the key leader-election/orders holds a value too large to be a leader election \
                 record: it exceeds the client's gRPC message limit (5242939 bytes, the limit is \
                 4194304 bytes), so another program wrote it there; inspect it with `etcdctl get \
                 leader-election/orders --print-value-only | head -c 300`, then delete it with \
                 `etcdctl del leader-election/orders` or choose another election name"
            ),
            "{message}"
        );
    }

    #[test]
    fn credentials_for_a_server_without_authentication_are_invalid_config() {
        let err = Error::GRpcStatus(Status::failed_precondition(
            "etcdserver: authentication is not enabled",
        ));
        let mapped = context(Some("alice")).map(err);
        assert!(matches!(mapped, LockError::InvalidConfig(_)), "{mapped:?}");
    }
}
