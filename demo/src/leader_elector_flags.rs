//! The flags of the old `k8s.gcr.io/leader-elector` sidecar (kubernetes/contrib's `election`),
//! accepted with their meanings so that a Deployment written for that image runs with only the
//! image swapped: `--election`, `--election-namespace`, `--id`, `--ttl`, `--http` (the demo's own
//! flag, with the same `GET /` answer) and `--use-cluster-credentials`.
//!
//! Each one is a spelling of demo flags; [`LeaderElectorFlags::apply`] writes them into the
//! [`Cli`] after parsing, and refuses a combination whose two spellings disagree.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Args;
use leader_election::Backend;

use crate::cli::{parse_timing, Cli};

/// The old image's `--ttl` default: its lease was 10 s (renew deadline 5 s, retry 2.5 s).
pub const OLD_DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The old image's `--election-namespace` default, whatever namespace its pod ran in.
pub const OLD_DEFAULT_NAMESPACE: &str = "default";

/// The shortest `--ttl`: its quarter, the retry period, must be at least a millisecond.
const MIN_TTL: Duration = Duration::from_millis(4);

/// The old leader-elector sidecar's flags.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Flags of the old k8s.gcr.io/leader-elector sidecar")]
pub struct LeaderElectorFlags {
    /// The election's name, as the old sidecar's --election: the same as --lock-name (giving
    /// both with different names is an error). Unless --backend, --lock-kind or --lock say
    /// otherwise it also selects what the old image used: --backend k8s with --lock-kind
    /// endpoints, in --namespace "default" (see --election-namespace), with the old timings
    /// (--ttl 10s). With --backend file the lock file is leader-election-NAME.json in the
    /// temporary directory unless --lock-file names one.
    #[arg(long, env = "DEMO_ELECTION", value_name = "NAME")]
    pub election: Option<String>,

    /// The namespace of the election's object, as the old sidecar's --election-namespace: the
    /// same as --namespace (giving both with different values is an error). With --election
    /// and neither flag the namespace is "default", as the old image's was, not the pod's own.
    #[arg(long, env = "DEMO_ELECTION_NAMESPACE", value_name = "NS")]
    pub election_namespace: Option<String>,

    /// This instance's identity, as the old sidecar's --id: the same as --instance (giving
    /// both with different names is an error). Default with --election: $POD_NAME, else the
    /// hostname, as the old image's (in a pod, its name); without --election, as --instance's.
    #[arg(long, env = "DEMO_ID", value_name = "NAME")]
    pub id: Option<String>,

    /// The lease, as the old sidecar's --ttl: sets --lease-duration to TTL, --renew-deadline
    /// to TTL/2 and --retry-period to TTL/4, as the old image configured client-go (so it
    /// cannot be combined with those three). Default with --election: 10s, the old image's;
    /// at least 4ms.
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_TTL", value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<Duration>,

    /// Accepted for the old sidecar's Deployments and otherwise ignored (true or false): the
    /// credentials are found as --kubeconfig describes, which in a pod without a kubeconfig
    /// is the pod's service account, what this flag asked the old image for.
    #[arg(
        long,
        env = "DEMO_USE_CLUSTER_CREDENTIALS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub use_cluster_credentials: Option<bool>,
}

/// Parses `--ttl`: a timing whose quarter is still a valid retry period.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_timing(text)?;
    if ttl < MIN_TTL {
        return Err(format!(
            "{} is shorter than the shortest allowed, {} (the retry period is a quarter of it)",
            humantime::format_duration(ttl),
            humantime::format_duration(MIN_TTL)
        ));
    }
    Ok(ttl)
}

/// The identity of an instance started with `--election` but neither `--id` nor
/// `--instance`: `pod_name` ($POD_NAME) when set, else `hostname`, as the old image defaulted
/// `--id` to the hostname (a pod's hostname is its name, so applications compare `GET /` with
/// it). Unlike the demo's own default it has no random suffix: two such instances on one host
/// would share it, and the elector then lets only the first one lead.
pub fn old_default_identity(pod_name: Option<String>, hostname: String) -> String {
    match pod_name.filter(|name| !name.trim().is_empty()) {
        Some(name) => name.trim().to_owned(),
        None if hostname.is_empty() => lock_core::default_identity(),
        None => hostname,
    }
}

/// The lock file for `--election NAME` with `--backend file`:
/// `<temporary directory>/leader-election-NAME.json`; an error for a name that is not a plain
/// file name.
pub fn election_lock_file(name: &str) -> Result<PathBuf, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(plain) {
        return Err(format!(
            "--election `{name}` cannot name a lock file: use letters, digits, `-`, `_` and `.`, \
             or give --lock-file"
        ));
    }
    Ok(std::env::temp_dir().join(format!("leader-election-{name}.json")))
}

impl LeaderElectorFlags {
    /// Writes these flags into `cli` as the demo flags they stand for. `given(id)` tells
    /// whether the demo flag with that clap id was set on the command line or from its
    /// environment variable (rather than left at its default). Errors name both flags and their
    /// values.
    pub fn apply(&self, cli: &mut Cli, given: impl Fn(&str) -> bool) -> Result<(), String> {
        if let Some(id) = &self.id {
            match &cli.instance_flag {
                Some(instance) if instance != id => {
                    return Err(format!(
                        "--id `{id}` and --instance `{instance}` name two different identities: \
                         give one of them"
                    ))
                }
                _ => cli.instance_flag = Some(id.clone()),
            }
        }
        if let Some(namespace) = &self.election_namespace {
            match &cli.namespace {
                Some(other) if other != namespace => {
                    return Err(format!(
                        "--election-namespace `{namespace}` and --namespace `{other}` name two \
                         different namespaces: give one of them"
                    ))
                }
                _ => cli.namespace = Some(namespace.clone()),
            }
        }
        let timings = ["lease_duration", "renew_deadline", "retry_period"];
        let ttl = match self.ttl {
            Some(ttl) => {
                if let Some(flag) = timings.iter().find(|id| given(id)) {
                    return Err(format!(
                        "--ttl {} sets --lease-duration, --renew-deadline and --retry-period \
                         (TTL, TTL/2, TTL/4): give either --ttl or --{}",
                        humantime::format_duration(ttl),
                        flag.replace('_', "-")
                    ));
                }
                Some(ttl)
            }
            None if self.election.is_some() && !timings.iter().any(|id| given(id)) => {
                Some(OLD_DEFAULT_TTL)
            }
            None => None,
        };
        if let Some(ttl) = ttl {
            cli.lease_duration = ttl;
            cli.renew_deadline = ttl / 2;
            cli.retry_period = ttl / 4;
        }
        if let Some(election) = &self.election {
            self.apply_election(election, cli, &given)?;
            if cli.instance_flag.is_none() {
                let hostname = gethostname::gethostname().to_string_lossy().into_owned();
                let pod_name = std::env::var("POD_NAME").ok();
                cli.instance_flag = Some(old_default_identity(pod_name, hostname));
            }
        }
        Ok(())
    }

    /// `--election NAME`: the election's name, and the old image's lock unless other flags
    /// choose one.
    fn apply_election(
        &self,
        election: &str,
        cli: &mut Cli,
        given: &impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        if election.trim().is_empty() {
            return Err("--election must name the election, not be empty".to_owned());
        }
        if given("lock_name") && cli.lock_name != election {
            return Err(format!(
                "--election `{election}` and --lock-name `{}` name two different elections: \
                 give one of them",
                cli.lock_name
            ));
        }
        cli.lock_name = election.to_owned();
        if !given("backend") {
            cli.backend = Backend::K8s;
        }
        if !given("lock_kind") {
            cli.lock_kind = "endpoints".to_owned();
        }
        if cli.namespace.is_none() {
            cli.namespace = Some(OLD_DEFAULT_NAMESPACE.to_owned());
        }
        if cli.lock.is_none() && cli.backend == Backend::File && !given("lock_file") {
            cli.lock_file = election_lock_file(election)?;
        }
        Ok(())
    }
}
