//! Which Kubernetes object holds the record.

use std::fmt;
use std::str::FromStr;

use lock_core::LockError;

/// The kind of object a lock keeps its record in.
///
/// ```
/// use lock_k8s::LockKind;
///
/// assert_eq!("lease".parse::<LockKind>().unwrap(), LockKind::Lease);
/// assert_eq!("configmaps".parse::<LockKind>().unwrap(), LockKind::ConfigMap);
/// assert_eq!(LockKind::Endpoints.to_string(), "endpoints");
/// assert!("pod".parse::<LockKind>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// A `coordination.k8s.io/v1` Lease: the record in its spec, as client-go's `LeaseLock`
    /// keeps it. The default, and the only kind new deployments should use.
    #[default]
    Lease,
    /// A ConfigMap holding the record as JSON in the annotation
    /// [`LEADER_ANNOTATION`](crate::LEADER_ANNOTATION) (client-go's legacy `ConfigMapLock`).
    ConfigMap,
    /// An Endpoints object holding the record as JSON in the annotation
    /// [`LEADER_ANNOTATION`](crate::LEADER_ANNOTATION) (client-go's legacy `EndpointsLock`;
    /// the Endpoints API is deprecated since Kubernetes 1.33).
    Endpoints,
}

impl LockKind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [LockKind; 3] = [LockKind::Lease, LockKind::ConfigMap, LockKind::Endpoints];

    /// The name on the command line: `lease`, `configmap` or `endpoints`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Lease => "lease",
            LockKind::ConfigMap => "configmap",
            LockKind::Endpoints => "endpoints",
        }
    }

    /// The resource as RBAC names it: `leases.coordination.k8s.io`, `configmaps` or `endpoints`.
    pub fn rbac_resource(self) -> &'static str {
        match self {
            LockKind::Lease => "leases.coordination.k8s.io",
            LockKind::ConfigMap => "configmaps",
            LockKind::Endpoints => "endpoints",
        }
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LockKind {
    type Err = LockError;

    /// Accepts `lease`, `configmap` and `endpoints`, in any case, singular or plural.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "lease" | "leases" => Ok(LockKind::Lease),
            "configmap" | "configmaps" => Ok(LockKind::ConfigMap),
            "endpoints" | "endpoint" => Ok(LockKind::Endpoints),
            _ => Err(LockError::InvalidConfig(format!(
                "unknown lock kind {text:?}: use lease, configmap or endpoints"
            ))),
        }
    }
}
