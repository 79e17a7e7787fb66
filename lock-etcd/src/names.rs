//! Where an election lives in etcd: its key, the endpoints that reach it and its human name.

use lock_core::backend::{check_election_name, check_key_prefix};
use lock_core::{LockError, LockResult};

/// The key of the election `name`: `{prefix}{name}`.
pub(crate) fn key(prefix: &str, name: &str) -> LockResult<String> {
    check_key_prefix(prefix)?;
    check_election_name(name)?;
    Ok(format!("{prefix}{name}"))
}

/// The endpoints of one lock, all with the same scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoints {
    /// `http://host:port` or `https://host:port`, as the client library takes them.
    pub urls: Vec<String>,
    /// `host:port` of each endpoint, for the human name.
    pub authorities: Vec<String>,
    /// True when the endpoints are reached over TLS.
    pub tls: bool,
}

impl Endpoints {
    /// Parses the endpoints: `http://host:port`, `https://host:port` or `host:port` (which
    /// is `https://` when a TLS option is set and `http://` otherwise). Error messages never
    /// repeat what comes before an `@`: it may be a password.
    /// `wants_tls`: a TLS option is set (a CA or a client certificate).
    pub fn parse<E: AsRef<str>>(endpoints: &[E], wants_tls: bool) -> LockResult<Self> {
        if endpoints.is_empty() {
            return Err(invalid(
                "no etcd endpoint was given (expected one or more URLs such as http://127.0.0.1:2379)"
                    .to_owned(),
            ));
        }
        let mut schemes = Vec::new();
        let mut authorities = Vec::new();
        for endpoint in endpoints {
            let (scheme, authority) = split(endpoint.as_ref().trim())?;
            schemes.push(scheme);
            authorities.push(authority.to_owned());
        }
        let https = schemes.contains(&Some(Scheme::Https));
        let http = schemes.contains(&Some(Scheme::Http));
        if https && http {
            return Err(invalid(
                "the etcd endpoints mix http:// and https://: use one scheme for all of them"
                    .to_owned(),
            ));
        }
        if http && wants_tls {
            return Err(invalid(
                "a TLS option (tls_ca or client_identity) is set but the endpoints use http://: write them as https://"
                    .to_owned(),
            ));
        }
        let tls = https || wants_tls;
        let scheme = if tls { "https" } else { "http" };
        let urls = authorities
            .iter()
            .map(|authority| format!("{scheme}://{authority}"))
            .collect();
        Ok(Self {
            urls,
            authorities,
            tls,
        })
    }

    /// The human name of the servers: `etcd://[user@]host:port[,host:port…]`, or `etcds://`
    /// over TLS. Never a password.
    pub fn describe(&self, user: Option<&str>) -> String {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        let user = user.map(|user| format!("{user}@")).unwrap_or_default();
        format!("{scheme}://{user}{}", self.authorities.join(","))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// Splits an endpoint into its scheme (if written) and `host:port`, checking the rest.
fn split(endpoint: &str) -> LockResult<(Option<Scheme>, &str)> {
    let (scheme, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
        (Some(Scheme::Http), rest)
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        (Some(Scheme::Https), rest)
    } else if let Some((scheme, _)) = endpoint.split_once("://") {
        return Err(invalid(format!(
            "the etcd endpoint scheme {scheme:?} is not supported: use http:// or https://"
        )));
    } else {
        (None, endpoint)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(invalid(
            "an etcd endpoint holds a user name or password: pass them with EtcdLockOptions::with_user instead"
                .to_owned(),
        ));
    }
    if authority.contains(['/', '?', '#']) || authority.chars().any(char::is_whitespace) {
        return Err(invalid(format!(
            "the etcd endpoint {endpoint:?} is not of the form http://host:port"
        )));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(invalid(format!(
            "the etcd endpoint {endpoint:?} has no port (etcd's client port is usually 2379)"
        )));
    };
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(invalid(format!(
            "the etcd endpoint {endpoint:?} has no valid host (write IPv6 addresses in brackets, as in http://[::1]:2379)"
        )));
    }
    if port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(invalid(format!(
            "the etcd endpoint {endpoint:?} has no valid port"
        )));
    }
    Ok((scheme, authority))
}

fn invalid(message: String) -> LockError {
    LockError::InvalidConfig(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::EtcdLockOptions;

    fn parse(endpoints: &[&str], options: &EtcdLockOptions) -> LockResult<Endpoints> {
        Endpoints::parse(endpoints, options.wants_tls())
    }

    #[test]
    fn keys_are_prefix_and_name() {
        assert_eq!(
            key("leader-election/", "orders").unwrap(),
            "leader-election/orders"
        );
        assert_eq!(key("", "a/b").unwrap(), "a/b");
        assert!(key("p/", "").is_err());
        assert!(key("p/", "a\nb").is_err());
        assert!(key("p\0/", "a").is_err());
    }

    #[test]
    fn endpoints_get_one_scheme() {
        let plain = EtcdLockOptions::default();
        let parsed = parse(&["127.0.0.1:2379", "http://10.0.0.2:2379/"], &plain).unwrap();
        assert_eq!(
            parsed.urls,
            ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(parsed.describe(None), "etcd://127.0.0.1:2379,10.0.0.2:2379");

        let tls = EtcdLockOptions::default().with_tls_ca("/ca.pem");
        let parsed = parse(&["[::1]:2379"], &tls).unwrap();
        assert_eq!(parsed.urls, ["https://[::1]:2379"]);
        assert_eq!(
            parsed.describe(Some("elector")),
            "etcds://elector@[::1]:2379"
        );
        assert!(parse(&["https://a:1"], &plain).unwrap().tls);
    }

    #[test]
    fn bad_endpoints_are_invalid_config() {
        let plain = EtcdLockOptions::default();
        let tls = EtcdLockOptions::default().with_tls_ca("/ca.pem");
        assert!(parse(&[], &plain).is_err());
        assert!(parse(&["http://a:1", "https://b:1"], &plain).is_err());
        assert!(parse(&["http://a:1"], &tls).is_err());
        assert!(parse(&["unix:///run/etcd.sock"], &plain).is_err());
        assert!(parse(&["http://a"], &plain).is_err());
        assert!(parse(&["http://a:0"], &plain).is_err());
        assert!(parse(&["http://a:1/v3"], &plain).is_err());
        assert!(parse(&["http://::1:2379"], &plain).is_err());
        let err = parse(&["http://root:hunter2@a:1"], &plain).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
