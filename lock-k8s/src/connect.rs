//! Choosing the kind of lock at run time, as the demo's `--lock-kind` does.

use std::sync::Arc;

use lock_core::{Lock, LockResult};

use crate::{ConfigMapLock, EndpointsLock, KubeLockOptions, LeaseLock, LockKind};

/// Makes a lock of `kind` on the object `name`, with a client from the options' kubeconfig or
/// the environment (see [`ObjectLock::connect`](crate::ObjectLock::connect)).
pub async fn connect(
    kind: LockKind,
    name: &str,
    options: KubeLockOptions,
) -> LockResult<Arc<dyn Lock>> {
    Ok(match kind {
        LockKind::Lease => Arc::new(LeaseLock::connect(name, options).await?),
        LockKind::ConfigMap => Arc::new(ConfigMapLock::connect(name, options).await?),
        LockKind::Endpoints => Arc::new(EndpointsLock::connect(name, options).await?),
    })
}
