//! The client for the endpoints (plain or TLS, with or without a login), made on first use and
//! made again after a call hung.

use std::path::Path;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, TlsOptions, WatchOptions, WatchResponse,
    WatchStream,
};
use lock_core::backend::{LazyClient, Made};
use lock_core::{LockError, LockResult};

use crate::errors::ErrorContext;
use crate::names::Endpoints;
use crate::EtcdLockOptions;

/// How often an HTTP/2 ping checks the connection while a request or watch is open, so that a
/// watch on a connection that died without closing is noticed. etcd refuses pings more often
/// than every 5 s (`--grpc-keepalive-min-time`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The client's connection settings, with the TLS files read.
pub(crate) fn connect_options(
    options: &EtcdLockOptions,
    endpoints: &Endpoints,
) -> LockResult<ConnectOptions> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(KEEPALIVE_INTERVAL, options.request_timeout)
        // etcd closes connections that ping while nothing is open.
        .with_keep_alive_while_idle(false)
        // A member cut off from its cluster answers "no leader" instead of stale data, and ends
        // watches so that they move to another endpoint.
        .with_require_leader(true)
        // Simple tokens expire and die with a server restart: log in again when refused.
        .with_auto_token_refresh(true);
    if let Some(credentials) = &options.credentials {
        connect = connect.with_user(credentials.user.clone(), credentials.password.clone());
    }
    if endpoints.tls {
        let mut tls = TlsOptions::new().timeout(options.connect_timeout);
        match &options.tls_ca {
            Some(path) => {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem(
                    path,
                    "the TLS CA file",
                    "CERTIFICATE",
                )?));
            }
            None => tls = tls.with_native_roots(),
        }
        if let Some(identity) = &options.client_identity {
            let cert = read_pem(&identity.cert, "the TLS client certificate", "CERTIFICATE")?;
            let key = read_pem(&identity.key, "the TLS client key", "PRIVATE KEY")?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        connect = connect.with_tls(tls);
    }
    Ok(connect)
}

/// Reads a PEM file, checking that it holds a block of the expected kind.
fn read_pem(path: &Path, what: &str, block: &str) -> LockResult<Vec<u8>> {
    let pem = std::fs::read(path).map_err(|err| {
        LockError::InvalidConfig(format!("cannot read {what} {}: {err}", path.display()))
    })?;
    let text = String::from_utf8_lossy(&pem);
    let holds_block = text.lines().any(|line| {
        line.starts_with("-----BEGIN ") && line.trim_end().ends_with(&format!("{block}-----"))
    });
    if !holds_block {
        return Err(LockError::InvalidConfig(format!(
            "{what} {} holds no PEM {block} block (expected a line such as -----BEGIN {block}-----)",
            path.display()
        )));
    }
    Ok(pem)
}

/// One client shared by every clone of a lock, made on first use (see [`LazyClient`]).
///
/// The client reconnects by itself after a connection drops. It is made again after a login
/// that failed (the next call logs in anew) and after a request that did not answer in time
/// (its connection may be dead without having closed).
pub(crate) struct SharedClient {
    endpoints: Vec<String>,
    options: ConnectOptions,
    connect_timeout: Duration,
    lazy: LazyClient<Client>,
}

/// A client with the generation it belongs to.
pub(crate) type Connected = Made<Client>;

impl SharedClient {
    /// Nothing is connected until the first call.
    pub fn new(endpoints: &Endpoints, options: ConnectOptions, connect_timeout: Duration) -> Self {
        Self {
            endpoints: endpoints.urls.clone(),
            options,
            connect_timeout,
            lazy: LazyClient::new(),
        }
    }

    /// The shared client, made now (and logged in, with credentials) if there is none, within
    /// the connect timeout.
    pub async fn get(&self, errors: &ErrorContext) -> LockResult<Connected> {
        let made = self.lazy.get(|| async {
            Client::connect(&self.endpoints, Some(self.options.clone()))
                .await
                .map_err(|err| errors.map(err))
        });
        match tokio::time::timeout(self.connect_timeout, made).await {
            Ok(result) => result,
            Err(_) => Err(LockError::Unavailable {
                lock: errors.lock.clone(),
                reason: format!("no connection within {:?}", self.connect_timeout),
                source: None,
            }),
        }
    }

    /// Opens a watch of `key` with `options` and waits for etcd's first answer to it (the
    /// confirmation, or a refusal), connecting first if needed, within `limit`. A watch that
    /// does not answer in time drops the client (its connection may be dead without having
    /// closed). The error is worded for a log line.
    pub async fn open_watch(
        &self,
        errors: &ErrorContext,
        limit: Duration,
        key: String,
        options: WatchOptions,
    ) -> Result<(WatchStream, WatchResponse), String> {
        let connected = self.get(errors).await.map_err(|err| err.to_string())?;
        let mut client = connected.client;
        let opened = tokio::time::timeout(limit, async move {
            let mut stream = client.watch(key, Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        })
        .await;
        match opened {
            Ok(Ok((stream, Some(first)))) => Ok((stream, first)),
            Ok(Ok((_, None))) => Err("the server ended the watch at once".to_owned()),
            Ok(Err(err)) => Err(errors.map(err).to_string()),
            Err(_) => {
                self.reset(connected.generation).await;
                Err(format!("no answer to the watch request within {limit:?}"))
            }
        }
    }

    /// Forgets the client of `generation` (if it is still the shared one): the next call makes
    /// a new one.
    pub async fn reset(&self, generation: u64) {
        if self.lazy.reset(generation).await {
            tracing::debug!("dropping the etcd client; the next call connects anew");
        }
    }
}
