//! The identity a candidate should use when none is configured.

use rand::Rng;

/// The identity an elector in this process should use: the `POD_NAME` environment variable
/// (set from the downward API on Kubernetes, see `deploy/`), else this machine's hostname plus
/// a random suffix. Two processes that share an identity would each take the other's term for
/// its own, so the default differs between processes even on one machine.
pub fn default_identity() -> String {
    identity_from(std::env::var("POD_NAME").ok())
}

fn identity_from(pod_name: Option<String>) -> String {
    if let Some(name) = pod_name.filter(|name| !name.trim().is_empty()) {
        return name.trim().to_owned();
    }
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    let suffix: u32 = rand::rng().random();
    format!("{host}_{suffix:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_pod_name_else_hostname_and_suffix() {
        assert_eq!(identity_from(Some("web-0".into())), "web-0");
        let a = identity_from(None);
        let b = identity_from(None);
        assert_ne!(a, b, "two processes on one host get different identities");
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        assert!(a.starts_with(&host), "{a}");
    }
}
