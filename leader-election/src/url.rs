//! Lock URLs: one string that says which store holds an election and how to reach it, as a
//! flag, an environment variable or a config file carries it. Parsing is pure (no I/O) and
//! knows every scheme whatever features are on, so that a URL for a backend left out of the
//! build gets an error naming the feature, not "unknown scheme".

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The store a lock URL names: its scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `file://`: a lock file on this machine.
    File,
    /// `redis://`, `rediss://`: a Redis server.
    Redis,
    /// `etcd://`, `etcds://`: an etcd cluster.
    Etcd,
    /// `k8s://`: a Kubernetes object.
    K8s,
}

impl Backend {
    /// Every backend, in the order the docs list them.
    pub const ALL: [Backend; 4] = [Backend::File, Backend::Redis, Backend::Etcd, Backend::K8s];

    /// Its short name: `file`, `redis`, `etcd` or `k8s` (also the cargo feature that builds it).
    pub fn name(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Redis => "redis",
            Backend::Etcd => "etcd",
            Backend::K8s => "k8s",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.name() == text)
            .ok_or_else(|| UrlError(format!("unknown backend `{text}`: expected {SCHEMES}")))
    }
}

/// The schemes, as error messages list them.
const SCHEMES: &str = "file, redis, etcd or k8s";

/// A lock URL, parsed; [`open`](crate::open) turns it into a lock.
///
/// | URL | the lock |
/// |---|---|
/// | `file:///var/run/app/leader.json` | that file |
/// | `file:///var/run/app/` (ends with `/`) | `<election>.json` in that directory |
/// | `redis://[user:password@]host:port[/db][?ca=PATH][&min_replicas=N]` | key `leader-election:{<election>}` on that server; `rediss://` for TLS, `ca` a PEM file of the CA to trust, `min_replicas` the replicas that must acknowledge every write |
/// | `redis+sentinel://[user:password@]host:port[,host:port…]/MASTER[/db][?…]` | the same key on the primary that those sentinels name for MASTER, followed through failovers; `rediss+sentinel://` for TLS; the credentials are the data connection's |
/// | `redis+cluster://[user:password@]host:port[,host:port…][?…]` | the same key in a Redis Cluster reached through those seed nodes; `rediss+cluster://` for TLS |
/// | `etcd://[user:password@]host:port[,host:port…][?ca=PATH][&cert=PATH&key=PATH]` | key `leader-election/<election>` on that cluster; `etcds://` for TLS, `cert` and `key` a client certificate and its key |
/// | `k8s://lease[/NAMESPACE][?kubeconfig=PATH]` | the Lease `<election>` (also `configmap`, `endpoints`); without a namespace, the pod's or the kubeconfig context's |
///
/// User names and passwords end at the last `@` before the query and may be percent-encoded
/// (`%3F` for `?`, which must be, `%3A` for `:`); paths are taken as written. A file URL that names a file is that election
/// whatever name is given; name the directory (a trailing `/`) to have one file per election.
#[derive(Clone, PartialEq, Eq)]
pub enum LockUrl {
    /// `file://PATH`.
    File {
        /// The lock file, or with `election_in_dir` the directory of `<election>.json`.
        path: PathBuf,
        /// The path ended with `/`.
        election_in_dir: bool,
    },
    /// `redis://…`, `rediss://…`, or their `+sentinel` forms.
    Redis {
        /// The URL as lock-redis reads it (without this crate's query parameters).
        url: String,
        /// `?ca=PATH`: the CA that signs the server's certificate.
        ca: Option<PathBuf>,
        /// `?min_replicas=N`: how many replicas must acknowledge every write (0 by default).
        min_replicas: u32,
    },
    /// `etcd://…` or `etcds://…`.
    Etcd {
        /// `http://host:port` (or `https://`) per member.
        endpoints: Vec<String>,
        /// `user:password@`.
        user: Option<(String, String)>,
        /// `?ca=PATH`.
        ca: Option<PathBuf>,
        /// `?cert=PATH&key=PATH`: the client certificate and its private key (PEM), for a
        /// cluster that authenticates clients by certificate (`--client-cert-auth`).
        identity: Option<(PathBuf, PathBuf)>,
    },
    /// `k8s://KIND[/NAMESPACE]`.
    K8s {
        /// `lease`, `configmap` or `endpoints`.
        kind: String,
        /// The namespace, when given.
        namespace: Option<String>,
        /// `?kubeconfig=PATH`.
        kubeconfig: Option<PathBuf>,
    },
}

/// A lock URL that cannot be read; the message quotes it (without its password) and says what
/// is expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

impl LockUrl {
    /// Reads `text` as a lock URL.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let shown = redacted(text);
        let bad = |why: &str| UrlError(format!("invalid lock URL `{shown}`: {why}"));
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(bad(&format!(
                "expected SCHEME://…, where SCHEME is {SCHEMES} (see the table in the docs of LockUrl)"
            )));
        };
        // Credentials end at the last `@` before the query (a password may hold `/` or `@`; a
        // `?` in it is written `%3F`, since a query's paths may hold `@`): split them off before
        // anything else reads the rest.
        let query_start = rest.find('?').unwrap_or(rest.len());
        let (userinfo, rest) = match (scheme, rest[..query_start].rfind('@')) {
            (
                "redis" | "rediss" | "redis+sentinel" | "rediss+sentinel" | "redis+cluster"
                | "rediss+cluster" | "etcd" | "etcds",
                Some(at),
            ) => (Some(&rest[..at]), &rest[at + 1..]),
            _ => (None, rest),
        };
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let mut params = Params::new(query);
        let url = match scheme {
            "file" => {
                if body.is_empty() {
                    return Err(bad("no path: write file:///absolute/path.json"));
                }
                LockUrl::File {
                    path: PathBuf::from(body),
                    election_in_dir: body.ends_with('/'),
                }
            }
            "redis" | "rediss" | "redis+sentinel" | "rediss+sentinel" | "redis+cluster"
            | "rediss+cluster" => {
                let ca = params.take("ca").map(PathBuf::from);
                let min_replicas = match params.take("min_replicas") {
                    None => 0,
                    Some(text) => text.parse().map_err(|_| {
                        bad(&format!(
                            "min_replicas must be a whole number of replicas, not `{text}`"
                        ))
                    })?,
                };
                if body.is_empty() {
                    return Err(bad(&format!("no server: write {scheme}://HOST:PORT")));
                }
                if scheme.ends_with("+sentinel") && !body.contains('/') {
                    return Err(bad(&format!(
                        "no master name: write {scheme}://HOST:PORT[,HOST:PORT…]/MASTER"
                    )));
                }
                let kept = params.rest();
                // Written again percent-encoded, as redis-rs reads a URL (it decodes them).
                let credentials = userinfo.map(encoded_userinfo).unwrap_or_default();
                let url = if kept.is_empty() {
                    format!("{scheme}://{credentials}{body}")
                } else {
                    format!("{scheme}://{credentials}{body}?{kept}")
                };
                return Ok(LockUrl::Redis {
                    url,
                    ca,
                    min_replicas,
                });
            }
            "etcd" | "etcds" => {
                let user = match userinfo {
                    Some(userinfo) => {
                        let Some((name, password)) = userinfo.split_once(':') else {
                            return Err(bad("credentials must be USER:PASSWORD@"));
                        };
                        Some((decoded(name), decoded(password)))
                    }
                    None => None,
                };
                let hosts = body;
                let http = if scheme == "etcds" { "https" } else { "http" };
                let hosts = hosts.trim_end_matches('/');
                let mut endpoints = Vec::new();
                for host in hosts.split(',') {
                    if host.is_empty() || host.contains('/') {
                        return Err(bad("expected etcd://HOST:PORT[,HOST:PORT…]"));
                    }
                    endpoints.push(format!("{http}://{host}"));
                }
                let identity = match (params.take("cert"), params.take("key")) {
                    (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
                    (None, None) => None,
                    _ => return Err(bad("cert=PATH and key=PATH go together")),
                };
                LockUrl::Etcd {
                    endpoints,
                    user,
                    ca: params.take("ca").map(PathBuf::from),
                    identity,
                }
            }
            "k8s" | "kubernetes" => {
                let mut parts = body.trim_end_matches('/').splitn(2, '/');
                let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
                if !["lease", "configmap", "endpoints"].contains(&kind.as_str()) {
                    return Err(bad(
                        "expected k8s://KIND[/NAMESPACE], KIND one of lease, configmap, endpoints",
                    ));
                }
                let namespace = parts.next().map(str::to_owned);
                if namespace.as_deref().is_some_and(|ns| ns.contains('/')) {
                    return Err(bad("a namespace has no `/`"));
                }
                LockUrl::K8s {
                    kind,
                    namespace,
                    kubeconfig: params.take("kubeconfig").map(PathBuf::from),
                }
            }
            other => {
                return Err(bad(&format!(
                    "unknown scheme `{other}`: expected {SCHEMES}"
                )))
            }
        };
        match params.rest() {
            unknown if unknown.is_empty() => Ok(url),
            unknown => Err(bad(&format!("unknown parameter `{unknown}`"))),
        }
    }

    /// The backend this URL names.
    pub fn backend(&self) -> Backend {
        match self {
            LockUrl::File { .. } => Backend::File,
            LockUrl::Redis { .. } => Backend::Redis,
            LockUrl::Etcd { .. } => Backend::Etcd,
            LockUrl::K8s { .. } => Backend::K8s,
        }
    }
}

impl FromStr for LockUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        LockUrl::parse(text)
    }
}

/// Shows the URL's kind and place, never its password.
impl fmt::Debug for LockUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockUrl::File {
                path,
                election_in_dir,
            } => f
                .debug_struct("File")
                .field("path", path)
                .field("election_in_dir", election_in_dir)
                .finish(),
            LockUrl::Redis {
                url,
                ca,
                min_replicas,
            } => f
                .debug_struct("Redis")
                .field("url", &redacted(url))
                .field("ca", ca)
                .field("min_replicas", min_replicas)
                .finish(),
            LockUrl::Etcd {
                endpoints,
                user,
                ca,
                identity,
            } => f
                .debug_struct("Etcd")
                .field("endpoints", endpoints)
                .field("user", &user.as_ref().map(|(name, _)| name))
                .field("ca", ca)
                .field("identity", identity)
                .finish(),
            LockUrl::K8s {
                kind,
                namespace,
                kubeconfig,
            } => f
                .debug_struct("K8s")
                .field("kind", kind)
                .field("namespace", namespace)
                .field("kubeconfig", kubeconfig)
                .finish(),
        }
    }
}

/// `text` with the password of its `user:password@` part replaced by `***`. Everything up to
/// the last `@` is taken for credentials, so a password holding `/`, `?` or `@` never shows;
/// credentials without a `:` (a password given without its user) are hidden whole, and so is
/// everything before an `@` in text that is not a URL at all. When in doubt, more is hidden,
/// never less.
pub fn redacted(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_owned();
    };
    let Some((scheme, rest)) = text
        .split_once("://")
        .filter(|(scheme, _)| scheme.len() < at)
    else {
        return format!("***@{}", &text[at + 1..]);
    };
    if scheme == "file" {
        return text.to_owned();
    }
    let at = at - scheme.len() - 3;
    match rest[..at].split_once(':') {
        Some((user, _)) if !user.contains('%') => {
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        _ => format!("{scheme}://***@{}", &rest[at + 1..]),
    }
}

/// `user:password` with each part percent-encoded (after decoding what was encoded already),
/// followed by `@`.
fn encoded_userinfo(userinfo: &str) -> String {
    const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let encode =
        |part: &str| percent_encoding::utf8_percent_encode(&decoded(part), USERINFO).to_string();
    match userinfo.split_once(':') {
        Some((user, password)) => format!("{}:{}@", encode(user), encode(password)),
        None => format!("{}@", encode(userinfo)),
    }
}

/// A user name or password with its percent-escapes decoded (`%40` for `@`), as redis-rs
/// decodes the Redis URL's; text that is not valid UTF-8 once decoded stays as written.
fn decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_or_else(|_| text.to_owned(), |decoded| decoded.into_owned())
}

/// The `name=value` pairs of a query; this crate's own are taken out, the rest go on to the
/// backend's client (redis-rs reads `protocol=`, for example).
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (pair.to_owned(), String::new()),
            })
            .collect();
        Self(pairs)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let index = self.0.iter().position(|(key, _)| key == name)?;
        Some(self.0.remove(index).1)
    }

    fn rest(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LockUrl {
        LockUrl::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    fn error(text: &str) -> String {
        LockUrl::parse(text).expect_err(text).to_string()
    }

    #[test]
    fn files() {
        assert_eq!(
            parse("file:///run/app/leader.json"),
            LockUrl::File {
                path: "/run/app/leader.json".into(),
                election_in_dir: false
            }
        );
        assert_eq!(
            parse("file:///run/app/"),
            LockUrl::File {
                path: "/run/app/".into(),
                election_in_dir: true
            }
        );
        assert!(error("file://").contains("no path"));
    }

    #[test]
    fn redis_behind_sentinels_with_replica_acknowledgements() {
        assert_eq!(
            parse(
                "rediss+sentinel://app:p@ss@s1:26379,s2:26379/orders/1?ca=/ca.pem&min_replicas=1"
            ),
            LockUrl::Redis {
                url: "rediss+sentinel://app:p%40ss@s1:26379,s2:26379/orders/1".into(),
                ca: Some("/ca.pem".into()),
                min_replicas: 1,
            }
        );
        assert_eq!(
            parse("redis+sentinel://s1/orders").backend(),
            Backend::Redis
        );
        assert_eq!(
            parse("redis+cluster://app:pw@n1:7000,n2:7001?min_replicas=1"),
            LockUrl::Redis {
                url: "redis+cluster://app:pw@n1:7000,n2:7001".into(),
                ca: None,
                min_replicas: 1,
            }
        );
        let message = LockUrl::parse("redis+sentinel://app:s3cret@s1:26379")
            .unwrap_err()
            .to_string();
        assert!(message.contains("no master name"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let message = LockUrl::parse("redis://h:1?min_replicas=all")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("min_replicas must be a whole number"),
            "{message}"
        );
    }

    #[test]
    fn redis_keeps_the_url_and_takes_the_ca() {
        assert_eq!(
            parse("rediss://app:s3cret@cache:6380/2?ca=/etc/ca.pem&protocol=resp3"),
            LockUrl::Redis {
                url: "rediss://app:s3cret@cache:6380/2?protocol=resp3".into(),
                ca: Some("/etc/ca.pem".into()),
                min_replicas: 0,
            }
        );
        let shown = format!("{:?}", parse("redis://app:s3cret@cache:6379"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn etcd_members_user_and_tls() {
        assert_eq!(
            parse("etcds://root:pw@a:2379,b:2379/?ca=/ca.pem"),
            LockUrl::Etcd {
                endpoints: vec!["https://a:2379".into(), "https://b:2379".into()],
                user: Some(("root".into(), "pw".into())),
                ca: Some("/ca.pem".into()),
                identity: None,
            }
        );
        let LockUrl::Etcd { identity, .. } = parse("etcds://a:2379?cert=/c.pem&key=/k.pem") else {
            panic!("an etcd URL")
        };
        assert_eq!(identity, Some(("/c.pem".into(), "/k.pem".into())));
        assert!(error("etcds://a:2379?cert=/c.pem").contains("cert=PATH and key=PATH go together"));
        assert!(error("etcd://a:2379,,b:2379").contains("HOST:PORT"));
        assert!(error("etcd://pw@a:2379").contains("USER:PASSWORD"));
    }

    #[test]
    fn kubernetes_kinds_and_namespaces() {
        assert_eq!(
            parse("k8s://lease/prod?kubeconfig=/home/me/.kube/config"),
            LockUrl::K8s {
                kind: "lease".into(),
                namespace: Some("prod".into()),
                kubeconfig: Some("/home/me/.kube/config".into())
            }
        );
        assert_eq!(
            parse("k8s://configmap").backend(),
            Backend::K8s,
            "the namespace may come from the environment"
        );
        assert!(error("k8s://pod/prod").contains("KIND one of lease"));
    }

    /// Passwords with the characters that end other parts of a URL never show, in errors or
    /// in Debug output.
    #[test]
    fn passwords_with_slashes_question_marks_and_ats_stay_hidden() {
        for (url, password) in [
            ("etcd://root:ab/cd@a:2379,,b:2379", "ab/cd"),
            ("etcd://root:pa%3Fss@a:2379?cert=x", "pa%3Fss"),
            ("etcd://s3cret@a:2379,,b", "s3cret"),
            ("etcd://root%3As3cret@a:2379,,b", "s3cret"),
            ("redis:/app:s3cret@cache:6379", "s3cret"),
            ("redis://app:Zm9v/YmFy@cache:6379?ca=/x&bad", "Zm9v/YmFy"),
        ] {
            let shown = match LockUrl::parse(url) {
                Ok(parsed) => format!("{parsed:?}"),
                Err(err) => err.to_string(),
            };
            assert!(!shown.contains(password), "{shown}");
            assert!(!redacted(url).contains(password), "{}", redacted(url));
        }
        assert_eq!(
            format!("{:?}", parse("redis://app:Zm9v/YmFy@cache:6379")),
            r#"Redis { url: "redis://app:***@cache:6379", ca: None, min_replicas: 0 }"#
        );
        // Re-encoded for redis-rs, which decodes it.
        assert_eq!(
            parse("redis://app:Zm9v/YmFy@cache:6379"),
            LockUrl::Redis {
                url: "redis://app:Zm9v%2FYmFy@cache:6379".into(),
                ca: None,
                min_replicas: 0,
            }
        );
        assert!(!redacted("redis://s3cret@cache").contains("s3cret"));
        // An `@` in a query path is no end of credentials.
        assert_eq!(
            parse("rediss://cache:6379?ca=/run/credentials/app@1.service/ca.pem"),
            LockUrl::Redis {
                url: "rediss://cache:6379".into(),
                ca: Some("/run/credentials/app@1.service/ca.pem".into()),
                min_replicas: 0,
            }
        );
        let LockUrl::Etcd {
            endpoints,
            user,
            ca,
            ..
        } = parse("etcd://root:pw@a:2379?ca=me@corp.pem")
        else {
            panic!("an etcd URL")
        };
        assert_eq!(endpoints, ["http://a:2379"]);
        assert_eq!(user, Some(("root".into(), "pw".into())));
        assert_eq!(ca, Some("me@corp.pem".into()));
        let LockUrl::Etcd { user, .. } = parse("etcd://root:p%40ss%2Fw@a:2379") else {
            panic!("an etcd URL")
        };
        assert_eq!(user, Some(("root".into(), "p@ss/w".into())));
    }

    #[test]
    fn errors_quote_the_url_without_its_password_and_say_what_is_expected() {
        let message = error("mysql://root:hunter2@db:3306");
        assert!(message.contains("root:***@db:3306"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("file, redis, etcd or k8s"), "{message}");
        assert!(error("localhost:6379").contains("SCHEME://"));
        assert!(error("etcd://a:2379?certs=x").contains("unknown parameter `certs=x`"));
        assert_eq!(
            "redis".parse::<Backend>().unwrap(),
            Backend::Redis,
            "backend names"
        );
        assert!("mongo".parse::<Backend>().is_err());
    }
}
