//! The client for one URL (plain or TLS) and the shared, self-healing command connection to it.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, RedisResult, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use lock_core::backend::{LazyClient, Made};
use lock_core::{LockError, LockResult};

use crate::RedisLockOptions;

/// A client for `url`: `redis://` in the clear, `rediss://` over TLS (rustls) checked against
/// `options.tls_ca` or else the system's trusted roots. Nothing is sent yet.
///
/// Error messages never repeat the URL: it may hold a password.
pub(crate) fn client(url: &str, options: &RedisLockOptions) -> LockResult<Client> {
    let info = url
        .into_connection_info()
        .map_err(|err| LockError::InvalidConfig(format!("invalid Redis URL: {err}")))?;
    let tls = matches!(info.addr, ConnectionAddr::TcpTls { .. });
    if tls {
        // rustls needs one process-wide crypto provider; when several are compiled in (other
        // crates may enable aws-lc-rs) it cannot pick one itself. An installed one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let Some(ca_path) = &options.tls_ca else {
        return Client::open(info)
            .map_err(|err| LockError::InvalidConfig(format!("invalid Redis URL: {err}")));
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
    let roots = TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    Client::build_with_tls(info, roots).map_err(|err| {
        LockError::InvalidConfig(format!(
            "cannot use the TLS CA file {}: {err}",
            ca_path.display()
        ))
    })
}

/// One multiplexed command connection shared by every lock of a [`RedisClient`](crate::RedisClient),
/// made on first use. (Pub/sub has a connection of its own, in the [hub](crate::hub).)
///
/// The [`ConnectionManager`] reconnects by itself after the connection drops; this wrapper
/// also makes a new one after an authentication failure (which the manager would otherwise
/// keep returning) and when the first connection could not be made.
pub(crate) struct SharedConnection {
    client: Client,
    config: ConnectionManagerConfig,
    lazy: LazyClient<ConnectionManager>,
}

impl SharedConnection {
    /// Nothing is connected until the first call.
    pub fn new(client: Client, options: &RedisLockOptions) -> Self {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(options.connect_timeout)
            .set_response_timeout(options.response_timeout)
            // One attempt per reconnection: a failed one is retried on the next call, at the
            // elector's pace, instead of by a backoff that can leave a restarted server
            // unused for a minute.
            .set_number_of_retries(0);
        Self {
            client,
            config,
            lazy: LazyClient::new(),
        }
    }

    /// The shared connection, made now if there is none, with its generation.
    pub async fn get(&self) -> RedisResult<Made<ConnectionManager>> {
        self.lazy
            .get(|| ConnectionManager::new_with_config(self.client.clone(), self.config.clone()))
            .await
    }

    /// Forgets the connection of `generation` (if it is still the shared one): the next call
    /// makes a new one.
    pub async fn reset(&self, generation: u64) {
        self.lazy.reset(generation).await;
    }
}
