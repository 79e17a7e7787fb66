//! How an [`EtcdLock`](crate::EtcdLock) names its key, times its calls, trusts the server and
//! logs in.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lock_core::{LockError, LockResult};

/// The key prefix used unless [`EtcdLockOptions::key_prefix`] says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "leader-election/";
/// How long connecting (TCP, TLS and, with credentials, authentication) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may take to answer one request by default.
///
/// Well below client-go's 10 s renew deadline, so that one hung call cannot cost the lease.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A user name and password for etcd's authentication (`etcdctl user add`).
///
/// Its `Debug` output never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The etcd user.
    pub user: String,
    /// The user's password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A client certificate and its private key (PEM files), for servers that check client
/// certificates (`etcd --client-cert-auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The client certificate (PEM), optionally followed by its intermediate certificates.
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    pub key: PathBuf,
}

/// Options of an [`EtcdLock`](crate::EtcdLock); [`Default`] gives the documented defaults.
///
/// TLS is used when an endpoint is written `https://…`, or when [`tls_ca`](Self::tls_ca) or
/// [`client_identity`](Self::client_identity) is set (endpoints without a scheme then use
/// `https://`).
///
/// ```
/// use std::time::Duration;
/// use lock_etcd::EtcdLockOptions;
///
/// let options = EtcdLockOptions::default()
///     .with_key_prefix("billing/")
///     .with_tls_ca("/etc/etcd/ca.pem")
///     .with_client_identity("/etc/etcd/client.pem", "/etc/etcd/client-key.pem")
///     .with_user("elector", "secret")
///     .with_request_timeout(Duration::from_secs(1));
/// assert_eq!(options.key_prefix, "billing/");
/// assert!(!format!("{options:?}").contains("secret"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdLockOptions {
    /// Put in front of the election name to make the key: with the default
    /// `"leader-election/"` the election `orders` lives under the key
    /// `leader-election/orders`. A user whose role has `readwrite` on this prefix can run every
    /// election under it (see [`etcdctl_grant_line`](crate::etcdctl_grant_line)).
    pub key_prefix: String,
    /// How long connecting may take: TCP, TLS and, with [`credentials`](Self::credentials),
    /// the authentication request.
    pub connect_timeout: Duration,
    /// How long the server may take to answer one request. A lock call fails as
    /// [`Unavailable`](LockError::Unavailable) after at most `connect_timeout +
    /// request_timeout` (`request_timeout` alone once connected), so that one hung call cannot
    /// cost the lease.
    pub request_timeout: Duration,
    /// A PEM file of certificate authorities that the servers' certificates are checked
    /// against, instead of the system's trusted roots. Turns TLS on.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate to present, for servers started with `--client-cert-auth`. Turns
    /// TLS on.
    pub client_identity: Option<ClientIdentity>,
    /// A user and password, for servers with authentication enabled (`etcdctl auth enable`).
    pub credentials: Option<Credentials>,
}

impl Default for EtcdLockOptions {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            tls_ca: None,
            client_identity: None,
            credentials: None,
        }
    }
}

impl EtcdLockOptions {
    /// The defaults: prefix `leader-election/`, 2 s to connect, 2 s per request, no TLS
    /// options, no credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Sets how long connecting may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long the server may take to answer one request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Checks the servers' certificates against the certificate authorities in this PEM file.
    pub fn with_tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    /// Presents this client certificate (PEM) with its private key (PEM).
    pub fn with_client_identity(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_identity = Some(ClientIdentity {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Logs in as `user` with `password`.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// True when a TLS option is set.
    pub(crate) fn wants_tls(&self) -> bool {
        self.tls_ca.is_some() || self.client_identity.is_some()
    }

    /// Checks the options that do not depend on the endpoints.
    pub(crate) fn validate(&self) -> LockResult<()> {
        lock_core::backend::check_key_prefix(&self.key_prefix)?;
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout must be greater than zero"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout must be greater than zero"));
        }
        if let Some(credentials) = &self.credentials {
            if credentials.user.is_empty() {
                return Err(invalid("the etcd user name is empty"));
            }
        }
        Ok(())
    }
}

fn invalid(message: &str) -> LockError {
    LockError::InvalidConfig(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_well_below_the_renew_deadline() {
        let options = EtcdLockOptions::default();
        assert!(options.validate().is_ok());
        assert!(!options.wants_tls());
    }

    #[test]
    fn zero_durations_and_empty_users_are_rejected() {
        let zero = Duration::ZERO;
        assert!(EtcdLockOptions::new()
            .with_connect_timeout(zero)
            .validate()
            .is_err());
        assert!(EtcdLockOptions::new()
            .with_request_timeout(zero)
            .validate()
            .is_err());
        assert!(EtcdLockOptions::new()
            .with_user("", "x")
            .validate()
            .is_err());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let options = EtcdLockOptions::new().with_user("alice", "hunter2");
        let text = format!("{options:?}");
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
