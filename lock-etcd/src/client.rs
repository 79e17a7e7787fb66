//! [`EtcdClient`]: one connection and one watch for many elections.

use std::fmt;
use std::sync::Arc;

use lock_core::LockResult;

use crate::connection::{self, SharedClient};
use crate::errors::ErrorContext;
use crate::hub::Hub;
use crate::lock::EtcdLock;
use crate::names::{self, Endpoints};
use crate::session::Session;
use crate::vouched::Vouched;
use crate::EtcdLockOptions;

/// A client for many elections on the same etcd: the locks it makes share one connection and
/// one watch (on the key prefix, whatever the number of elections), as a process that elects
/// per shard or per tenant needs. A lock made by [`EtcdLock::new`] has a client of its own and
/// watches its key alone.
///
/// The shared watch receives every write under the prefix, also of elections this process
/// does not take part in: use one client when the process holds many of the prefix's
/// elections, and [`EtcdLock::new`] (or a prefix of its own) when it holds one of many.
///
/// ```no_run
/// use lock_etcd::{EtcdClient, EtcdLockOptions};
///
/// # async fn example() -> lock_core::LockResult<()> {
/// let client = EtcdClient::connect(&["127.0.0.1:2379"], EtcdLockOptions::default()).await?;
/// let shards: Vec<_> = (0..1000)
///     .map(|shard| client.lock(&format!("shard-{shard}")))
///     .collect::<Result<_, _>>()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EtcdClient {
    shared: Arc<SharedClient>,
    hub: Arc<Hub>,
    endpoints: Endpoints,
    options: EtcdLockOptions,
}

impl EtcdClient {
    /// Makes the client without contacting the server (it connects, and logs in, on the first
    /// call of one of its locks). Fails only for a bad endpoint or option, or an unreadable
    /// TLS file, as [`EtcdLock::new`] does.
    pub fn new<E: AsRef<str>>(endpoints: &[E], options: EtcdLockOptions) -> LockResult<Self> {
        options.validate()?;
        let endpoints = Endpoints::parse(endpoints, options.wants_tls())?;
        let connect = connection::connect_options(&options, &endpoints)?;
        let shared = Arc::new(SharedClient::new(
            &endpoints,
            connect,
            options.connect_timeout,
        ));
        let watched = ErrorContext {
            lock: format!(
                "{}/{}",
                endpoints.describe(options.credentials.as_ref().map(|c| c.user.as_str())),
                options.key_prefix
            ),
            user: options.credentials.as_ref().map(|c| c.user.clone()),
            key: options.key_prefix.clone(),
            prefix: options.key_prefix.clone(),
            tls: endpoints.tls,
        };
        let hub = Arc::new(Hub::new(
            shared.clone(),
            options.key_prefix.clone(),
            watched,
            options.request_timeout,
        ));
        Ok(Self {
            shared,
            hub,
            endpoints,
            options,
        })
    }

    /// Makes the client and checks the connection, the login and the permission to read the
    /// prefix with one count-only read. Fails as `Unavailable` when no server can be reached
    /// and `Forbidden` when the server refuses the login or the read.
    pub async fn connect<E: AsRef<str>>(
        endpoints: &[E],
        options: EtcdLockOptions,
    ) -> LockResult<Self> {
        let client = Self::new(endpoints, options)?;
        let prefix = client.options.key_prefix.clone();
        let probe = client.lock_unchecked(prefix.clone());
        probe
            .request(|mut etcd| async move {
                let options = etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only();
                etcd.get(prefix, Some(options)).await
            })
            .await?;
        Ok(client)
    }

    /// A lock for the election `name` (the key `{prefix}{name}`), sharing this client's
    /// connection and watch. Fails as `InvalidConfig` for a name that cannot be part of a key.
    pub fn lock(&self, name: &str) -> LockResult<EtcdLock> {
        let key = names::key(&self.options.key_prefix, name)?;
        Ok(EtcdLock {
            inner: Arc::new(self.lock_unchecked(key)),
            hub: Some(self.hub.clone()),
        })
    }

    /// A lock for the election `name` that watches its key alone: [`EtcdLock::new`].
    pub(crate) fn lock_of_its_own(&self, name: &str) -> LockResult<EtcdLock> {
        let key = names::key(&self.options.key_prefix, name)?;
        Ok(EtcdLock {
            inner: Arc::new(self.lock_unchecked(key)),
            hub: None,
        })
    }

    /// The endpoints, as URLs with their scheme.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints.urls
    }

    /// The options the client was made with.
    pub fn options(&self) -> &EtcdLockOptions {
        &self.options
    }

    fn lock_unchecked(&self, key: String) -> Session {
        let user = self.options.credentials.as_ref().map(|c| c.user.clone());
        let describe = format!("{}/{key}", self.endpoints.describe(user.as_deref()));
        let errors = ErrorContext {
            lock: describe.clone(),
            user,
            key: key.clone(),
            prefix: self.options.key_prefix.clone(),
            tls: self.endpoints.tls,
        };
        Session {
            client: self.shared.clone(),
            key,
            endpoints: self.endpoints.clone(),
            options: self.options.clone(),
            describe,
            errors,
            vouched: Vouched::default(),
        }
    }
}

impl fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints.urls)
            .field("options", &self.options)
            .finish()
    }
}

// Here rather than in `lock`, which would then depend on this module as it depends on `lock`.
impl EtcdLock {
    /// Makes the lock without contacting the server: the client connects (and logs in) on the
    /// first call, and again on later calls while that fails. Fails only for a bad endpoint,
    /// name or option, or an unreadable TLS file.
    pub fn new<E: AsRef<str>>(
        endpoints: &[E],
        name: &str,
        options: EtcdLockOptions,
    ) -> LockResult<Self> {
        EtcdClient::new(endpoints, options)?.lock_of_its_own(name)
    }
}
