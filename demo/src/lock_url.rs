//! The lock the flags describe, as a lock URL: `--lock URL` as given, or one built from
//! `--backend` and its flags. The facade crate's `open` turns it into a lock, so the demo knows
//! no backend of its own.

use std::sync::Arc;

use leader_election::{Backend, Lock, LockUrl};

use crate::cli::Cli;

/// Opens the lock the flags describe. Opening a server backend does no I/O (Kubernetes reads
/// its kubeconfig): an unreachable store shows up as retried errors once the election runs.
/// Flags that cannot describe a lock (a malformed URL, say) are an error.
pub async fn open_lock(cli: &Cli) -> Result<Arc<dyn Lock>, String> {
    let url = cli.lock_url()?;
    leader_election::open_url(&url, &cli.lock_name)
        .await
        .map_err(|err| err.to_string())
}

impl Cli {
    /// The lock URL in force: `--lock`, else the one `--backend` and its flags describe.
    pub fn lock_url(&self) -> Result<LockUrl, String> {
        let text = match &self.lock {
            Some(url) => url.clone(),
            None => self.url_from_flags()?,
        };
        let mut url = LockUrl::parse(&text).map_err(|err| err.to_string())?;
        self.apply_etcd_flags(&mut url)?;
        Ok(url)
    }

    /// The backend in force: the `--lock` URL's, else `--backend`.
    pub fn backend_in_force(&self) -> Backend {
        self.lock_url()
            .map(|url| url.backend())
            .unwrap_or(self.backend)
    }

    fn url_from_flags(&self) -> Result<String, String> {
        Ok(match self.backend {
            Backend::File => format!("file://{}", self.lock_file.display()),
            Backend::Redis => {
                let mut url = match &self.redis_master {
                    Some(master) => sentinel_url(&self.redis_url, &self.redis_sentinel, master)?,
                    None if !self.redis_cluster.is_empty() => {
                        cluster_url(&self.redis_url, &self.redis_cluster)?
                    }
                    None => self.redis_url.clone(),
                };
                let mut add = |param: String| {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&param);
                };
                if let Some(ca) = &self.redis_ca {
                    add(format!("ca={}", ca.display()));
                }
                if self.redis_min_replicas > 0 {
                    add(format!("min_replicas={}", self.redis_min_replicas));
                }
                url
            }
            Backend::Etcd => etcd_url(&self.etcd_endpoints)?,
            Backend::K8s => {
                let mut url = format!("k8s://{}", self.lock_kind);
                if let Some(namespace) = &self.namespace {
                    url = format!("{url}/{namespace}");
                }
                if let Some(kubeconfig) = &self.kubeconfig {
                    url = format!("{url}?kubeconfig={}", kubeconfig.display());
                }
                url
            }
        })
    }
}

/// `redis+sentinel://user:password@s1:26379,s2:26379/MASTER/DB` from the data connection's
/// URL (scheme, credentials, database and query) and the sentinels' addresses.
impl Cli {
    /// Adds what the etcd flags set (user and password, CA, client certificate) to an etcd
    /// lock's URL, built from --etcd-endpoints or given by --lock. A setting both make is an
    /// error that says which to drop; so are etcd flags for another backend's lock, a password
    /// file that cannot be read, a certificate file that is not there, and TLS files for
    /// http:// endpoints.
    fn apply_etcd_flags(&self, url: &mut LockUrl) -> Result<(), String> {
        let given: Vec<&str> = [
            ("--etcd-user", self.etcd_user.is_some()),
            ("--etcd-ca", self.etcd_ca.is_some()),
            ("--etcd-cert", self.etcd_cert.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if given.is_empty() {
            return Ok(());
        }
        let LockUrl::Etcd {
            endpoints,
            user,
            ca,
            identity,
        } = url
        else {
            return Err(format!(
                "{} set{} etcd options, but the lock is a {} lock: drop {}, or choose an etcd \
                 lock (--backend etcd, or an etcd:// --lock URL)",
                given.join(", "),
                if given.len() == 1 { "s" } else { "" },
                url.backend(),
                if given.len() == 1 { "it" } else { "them" },
            ));
        };
        if let Some(name) = &self.etcd_user {
            if user.is_some() {
                return Err(
                    "both --etcd-user and the user in --lock (etcd://USER:PASSWORD@...) \
                            name the etcd user: drop one"
                        .to_owned(),
                );
            }
            *user = Some((name.clone(), self.etcd_password()?));
        }
        if let Some(path) = &self.etcd_ca {
            if ca.is_some() {
                return Err(
                    "both --etcd-ca and ?ca= in --lock name the etcd CA: drop one".to_owned(),
                );
            }
            existing_file("--etcd-ca", path)?;
            *ca = Some(path.clone());
        }
        if let (Some(cert), Some(key)) = (&self.etcd_cert, &self.etcd_key) {
            if identity.is_some() {
                return Err(
                    "both --etcd-cert/--etcd-key and ?cert=&key= in --lock name the etcd \
                            client certificate: drop one"
                        .to_owned(),
                );
            }
            existing_file("--etcd-cert", cert)?;
            existing_file("--etcd-key", key)?;
            *identity = Some((cert.clone(), key.clone()));
        }
        let tls_files = self.etcd_ca.is_some() || self.etcd_cert.is_some();
        if tls_files
            && endpoints
                .iter()
                .any(|endpoint| endpoint.starts_with("http://"))
        {
            return Err(format!(
                "--etcd-ca and --etcd-cert need TLS, but the endpoints are http:// ({}): give \
                 https:// endpoints in --etcd-endpoints (etcds:// in --lock)",
                endpoints.join(",")
            ));
        }
        Ok(())
    }

    /// The password of --etcd-user: --etcd-password (or DEMO_ETCD_PASSWORD), or the contents
    /// of --etcd-password-file without one trailing newline.
    fn etcd_password(&self) -> Result<String, String> {
        if let Some(password) = &self.etcd_password {
            return Ok(password.clone());
        }
        let Some(path) = &self.etcd_password_file else {
            return Err(
                "--etcd-user needs a password: give --etcd-password-file PATH or set \
                        DEMO_ETCD_PASSWORD (or --etcd-password)"
                    .to_owned(),
            );
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            format!(
                "--etcd-password-file {}: cannot read it: {err}",
                path.display()
            )
        })?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
    }
}

/// Ok when `path` is a file; else an error naming `flag`.
fn existing_file(flag: &str, path: &std::path::Path) -> Result<(), String> {
    if path.is_file() {
        Ok(())
    } else {
        Err(format!("{flag} {}: no such file", path.display()))
    }
}

fn sentinel_url(data_url: &str, sentinels: &[String], master: &str) -> Result<String, String> {
    let Some((scheme, rest)) = data_url.split_once("://") else {
        return Err("--redis-url must be a redis:// or rediss:// URL".to_owned());
    };
    let scheme = match scheme {
        "redis" => "redis+sentinel",
        "rediss" => "rediss+sentinel",
        _ => {
            return Err(
                "--redis-url must be a redis:// or rediss:// URL to go with --redis-sentinel"
                    .to_owned(),
            )
        }
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let (credentials, rest) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let db = rest.split_once('/').map(|(_, db)| db).unwrap_or_default();
    if sentinels.is_empty()
        || sentinels
            .iter()
            .any(|host| host.is_empty() || host.contains('/'))
    {
        return Err(format!(
            "--redis-sentinel must list HOST:PORT addresses separated by commas, not `{}`",
            sentinels.join(",")
        ));
    }
    let mut url = format!("{scheme}://{credentials}{}/{master}", sentinels.join(","));
    if !db.is_empty() {
        url = format!("{url}/{db}");
    }
    Ok(format!("{url}{query}"))
}

/// `redis+cluster://user:password@n1:7000,n2:7001` from the data connection's URL (scheme and
/// credentials) and the seed nodes.
fn cluster_url(data_url: &str, nodes: &[String]) -> Result<String, String> {
    let scheme = match data_url.split_once("://") {
        Some(("redis", _)) => "redis+cluster",
        Some(("rediss", _)) => "rediss+cluster",
        _ => {
            return Err(
                "--redis-url must be a redis:// or rediss:// URL to go with --redis-cluster"
                    .to_owned(),
            )
        }
    };
    let rest = data_url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let rest = rest.split_once('?').map_or(rest, |(rest, _)| rest);
    let credentials = rest.rfind('@').map_or("", |at| &rest[..=at]);
    if nodes
        .iter()
        .any(|node| node.is_empty() || node.contains('/'))
    {
        return Err(format!(
            "--redis-cluster must list HOST:PORT addresses separated by commas, not `{}`",
            nodes.join(",")
        ));
    }
    Ok(format!("{scheme}://{credentials}{}", nodes.join(",")))
}

/// `etcd://a:2379,b:2379` from `http://a:2379`, `http://b:2379` (`etcds://` for https; one
/// scheme for all members).
fn etcd_url(endpoints: &[String]) -> Result<String, String> {
    let mut tls = None;
    let mut hosts = Vec::new();
    for endpoint in endpoints {
        let (https, host) = match endpoint.split_once("://") {
            Some(("https", host)) => (true, host),
            Some(("http", host)) => (false, host),
            Some(_) => {
                return Err(format!(
                    "--etcd-endpoints: `{endpoint}` is not an http:// or https:// URL"
                ))
            }
            None => (false, endpoint.as_str()),
        };
        if tls.replace(https).is_some_and(|earlier| earlier != https) {
            return Err(format!(
                "--etcd-endpoints mixes http:// and https:// ({}): use one for every member",
                endpoints.join(",")
            ));
        }
        hosts.push(host.trim_end_matches('/'));
    }
    let scheme = if tls == Some(true) { "etcds" } else { "etcd" };
    Ok(format!("{scheme}://{}", hosts.join(",")))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn url(args: &[&str]) -> Result<LockUrl, String> {
        Cli::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))
            .expect("flags parse")
            .lock_url()
    }

    #[test]
    fn etcd_flags_fill_the_url_and_conflicts_name_what_to_drop() {
        let dir = std::env::temp_dir().join(format!("etcd-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let (password, ca, cert, key) = (
            file("pw", "s3cret\n"),
            file("ca.pem", "x"),
            file("c.pem", "x"),
            file("k.pem", "x"),
        );
        let tls = [
            "--backend",
            "etcd",
            "--etcd-endpoints",
            "https://a:2379",
            "--etcd-user",
            "elector",
            "--etcd-password-file",
            &password,
            "--etcd-ca",
            &ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
        ];
        let LockUrl::Etcd {
            user,
            ca: url_ca,
            identity,
            ..
        } = url(&tls).unwrap()
        else {
            panic!("an etcd URL");
        };
        assert_eq!(user, Some(("elector".into(), "s3cret".into())));
        assert_eq!(url_ca, Some(ca.clone().into()));
        assert_eq!(identity, Some((cert.clone().into(), key.clone().into())));
        // With --lock, flags fill in what the URL leaves out.
        let LockUrl::Etcd { user, .. } = url(&[
            "--lock",
            "etcd://a:2379",
            "--etcd-user",
            "u",
            "--etcd-password",
            "p",
        ])
        .unwrap() else {
            panic!("an etcd URL");
        };
        assert_eq!(user, Some(("u".into(), "p".into())));
        for (args, says) in [
            (
                &[
                    "--lock",
                    "etcd://x:y@a:2379",
                    "--etcd-user",
                    "u",
                    "--etcd-password",
                    "p",
                ][..],
                "both --etcd-user and the user in --lock",
            ),
            (
                &[
                    "--lock",
                    &format!("etcds://a:2379?ca={ca}"),
                    "--etcd-ca",
                    &ca,
                ][..],
                "both --etcd-ca and ?ca= in --lock",
            ),
            (
                &["--lock", "redis://a:6379", "--etcd-ca", &ca][..],
                "--etcd-ca sets etcd options, but the lock is a redis lock: drop it",
            ),
            (
                &["--backend", "etcd", "--etcd-user", "u"][..],
                "--etcd-user needs a password",
            ),
            (
                &[
                    "--backend",
                    "etcd",
                    "--etcd-user",
                    "u",
                    "--etcd-password-file",
                    "/no/pw",
                ][..],
                "--etcd-password-file /no/pw: cannot read it",
            ),
            (
                &[
                    "--backend",
                    "etcd",
                    "--etcd-endpoints",
                    "https://a:2379",
                    "--etcd-ca",
                    "/no/ca",
                ][..],
                "--etcd-ca /no/ca: no such file",
            ),
            (
                &["--backend", "etcd", "--etcd-ca", &ca][..],
                "--etcd-ca and --etcd-cert need TLS, but the endpoints are http://",
            ),
        ] {
            let err = url(args).unwrap_err();
            assert!(err.contains(says), "{args:?}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sentinel_flags_keep_the_data_connections_credentials_and_tls() {
        assert_eq!(
            url(&[
                "--backend",
                "redis",
                "--redis-url",
                "rediss://app:s3cret@ignored:6379/2",
                "--redis-sentinel",
                "s1:26379,s2:26380",
                "--redis-master",
                "orders",
                "--redis-ca",
                "/ca.pem",
                "--redis-min-replicas",
                "1",
            ])
            .unwrap(),
            LockUrl::parse(
                "rediss+sentinel://app:s3cret@s1:26379,s2:26380/orders/2?ca=/ca.pem&min_replicas=1"
            )
            .unwrap()
        );
        let message = Cli::try_parse_from(["demo", "--redis-sentinel", "s1:26379"])
            .unwrap_err()
            .to_string();
        assert!(message.contains("--redis-master"), "{message}");
    }

    #[test]
    fn cluster_flags_keep_the_credentials() {
        assert_eq!(
            url(&[
                "--backend",
                "redis",
                "--redis-url",
                "redis://app:s3cret@ignored:6379",
                "--redis-cluster",
                "n1:7000,n2:7001",
            ])
            .unwrap(),
            LockUrl::parse("redis+cluster://app:s3cret@n1:7000,n2:7001").unwrap()
        );
    }

    #[test]
    fn flags_become_the_url_the_facade_opens() {
        assert_eq!(
            url(&["--lock-file", "/run/x.json"]).unwrap(),
            LockUrl::parse("file:///run/x.json").unwrap()
        );
        assert_eq!(
            url(&[
                "--backend",
                "redis",
                "--redis-url",
                "rediss://h:1",
                "--redis-ca",
                "/ca.pem"
            ])
            .unwrap(),
            LockUrl::parse("rediss://h:1?ca=/ca.pem").unwrap()
        );
        assert_eq!(
            url(&[
                "--backend",
                "etcd",
                "--etcd-endpoints",
                "http://a:1,http://b:2"
            ])
            .unwrap(),
            LockUrl::parse("etcd://a:1,b:2").unwrap()
        );
        assert_eq!(
            url(&[
                "--backend",
                "k8s",
                "--lock-kind",
                "configmap",
                "--namespace",
                "jobs"
            ])
            .unwrap(),
            LockUrl::parse("k8s://configmap/jobs").unwrap()
        );
        assert!(url(&[
            "--backend",
            "etcd",
            "--etcd-endpoints",
            "http://a:1,https://b:2"
        ])
        .unwrap_err()
        .contains("mixes http:// and https://"));
    }

    #[test]
    fn lock_overrides_the_backend_flags() {
        let cli =
            Cli::try_parse_from(["demo", "--backend", "etcd", "--lock", "redis://h:6379"]).unwrap();
        assert_eq!(cli.backend_in_force(), Backend::Redis);
        assert!(url(&["--lock", "redis:/h"])
            .unwrap_err()
            .contains("SCHEME://"));
    }
}
