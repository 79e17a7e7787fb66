//! The command line: flags (each also settable from a `DEMO_*` environment variable), their
//! defaults, and the election configuration they describe.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use lock_core::ElectionConfig;

use crate::exec::OnChildExit;
use crate::handover::HandoverArgs;
use crate::leader_elector_flags::LeaderElectorFlags;
use crate::observe::ObserveArgs;
use crate::timings::{Origin, TimingOrigins};
use clap::builder::TypedValueParser as _;
use leader_election::Backend;

const ABOUT: &str = "Leader election from the command line: elect one leader among instances, \
                     print every change, hand over on CTRL+C";

const LONG_ABOUT: &str = "\
Leader election from the command line.

Every instance that shares one lock takes part in the same election: exactly one of them leads,
the others follow and stand by. Each instance prints one line per change it sees: when it starts
leading (with its term, a fencing token that grows with every new term), whom it follows, when
it stops leading and why, and when it hands the lock over.

CTRL+C (or SIGTERM, or SIGHUP when the terminal closes) makes a leader end its term first and
then release the lock, so a standby takes over at once instead of waiting for the lease to run
out; a second CTRL+C exits at once (status 130). A leader that is killed outright is replaced
when its lease expires.

As a sidecar, --http ADDR serves GET / ({\"name\":\"<leader>\"}, as the old Kubernetes
leader-elector sidecar did), GET /leader (the leader, this instance, its term and lease),
GET /healthz (500 when this instance believes it leads but stopped renewing) and GET /metrics
(Prometheus text). With `-- CMD ARGS...` the demo runs CMD only while it leads: started on every
new term with LEADER_FENCING_TOKEN, LEADER_IDENTITY and LEADER_LOCK in its environment, sent
SIGTERM the moment the term ends and SIGKILL after --grace-period. A supervisor process kills
the command when the demo dies (even by SIGKILL) and stops it while the demo is stopped; it goes
on only if the term outlived the stop.

Other modes: --leader-for-life holds the lock for the life of the leader's process instead of
renewing a lease (file, etcd, Kubernetes as operator-lib does); --ready-url or --ready-command
makes an instance compete only while it is ready; `demo handover --to NAME` moves leadership to
a chosen instance; `demo observe` follows the election without taking part; and the old
leader-elector sidecar's flags (--election, --election-namespace, --id, --ttl) work as they
did.

Exit status:
  0    stopped by CTRL+C, SIGTERM or SIGHUP, and the lock was handed over (or not held)
  1    a failure while running: the lock could not be released at shutdown (standbys wait for
       the lease to run out; the line says why), or signals, the output or --http could not be
       set up
  2    flags that make no valid election, or a lock that cannot be opened (the line says
       which flag to change)
  3    gave up: every lock call failed for --give-up-after with an error that will not pass by
       itself (wrong credentials, a missing permission, a namespace or lock directory that
       cannot be used); the line says which
  127  exec mode: the command cannot be found or is not executable (checked at startup, on
       every instance) or cannot be started
  130  a second CTRL+C (or signal): exited at once, without finishing the hand-over
  N    exec mode: the command exited on its own with status N (128 + the signal that ended it)
       under --on-child-exit release-and-exit, or kept failing under restart (1 if it exited
       with 0)";

const EXAMPLES: &str = "\
Example: try failover with three terminals on one machine (they share the default lock file;
add `--backend redis --redis-url redis://HOST:6379` to elect through Redis instead, or
`--backend etcd --etcd-endpoints http://HOST:2379` through etcd):

  terminal 1:  demo --instance a        a: leading (term 0)
  terminal 2:  demo --instance b        b: following a
  terminal 3:  demo --instance c        c: following a

Press CTRL+C in terminal 1: a prints `stopped leading`, `released leadership` and `exiting`,
and b or c prints `leading (term 1)` within a moment; the other one follows the new leader.
Kill the leader with `kill -9` instead to see a standby wait for the lease to expire. (Terms
go on from where earlier runs on the same lock file left them.)

Run a command only on the leader, with an HTTP endpoint for probes and metrics:

  demo --instance a --http 127.0.0.1:8081 -- sh -c 'exec my-worker --token \"$LEADER_FENCING_TOKEN\"'

Follow the election from a fourth terminal without taking part (reads only; read-only
credentials do):

  demo observe                          leader a (term 0)

Logs go to stderr (RUST_LOG=info for more); event lines go to stdout, as JSON with --json.";

/// Headings that group the flags in `--help`.
const LOCK: &str = "Lock (which election; also after an action's name)";
const TIMING: &str = "Timing";
const OUTPUT: &str = "Output";
const READINESS: &str = "Readiness (compete only while ready)";

/// `--on-unready`: what a leader does when its readiness check fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnUnready {
    /// End the term and release the lock, so a ready standby takes over at once.
    HandOver,
    /// Keep leading; readiness only gates taking the lock.
    KeepLeading,
}

impl From<OnUnready> for lock_core::UnreadyLeader {
    fn from(value: OnUnready) -> Self {
        match value {
            OnUnready::HandOver => Self::HandOver,
            OnUnready::KeepLeading => Self::KeepLeading,
        }
    }
}

const OBSERVE_ABOUT: &str = "Follow the election and print every change of leader, never \
                             taking part";

const OBSERVE_LONG_ABOUT: &str = "\
Follow the election on the lock that the lock flags choose (the same flags the instances that
take part use) and print one line per change: `leader a (term 3)` when a leads in term 3 (the
fencing token), `no leader (WHY)` when nobody does. It never writes to the lock, so read-only
credentials are enough: a Redis user allowed GET and SUBSCRIBE, an etcd user with a read-only
role, a Kubernetes account allowed get, list and watch on leases.

\"No leader\" is reported as soon as nobody can be vouched for: the lock holds no record, the
last leader released it, or the last leader's lease ran out without a renew being seen. A
lease is counted on this machine's clock from when this process read the record, for the
record's leaseDurationSeconds; the record's renewTime is not trusted. Change notifications of
the backend only make it read sooner; without them it reads every --retry-period, with them at
least once a minute, and in any case one --retry-period before an observed lease would run
out.";

const OBSERVE_EXAMPLES: &str = "\
Examples:

  demo observe                                   the default lock file's election
  demo observe --backend redis --redis-url redis://watcher:secret@HOST:6379 --json
  demo observe --backend k8s --namespace prod --lock-name orders

With --json each line is an object: {\"ts\", \"event\": \"leader_changed\", \"leader\",
\"term\", \"lease_expires_at\"} with a leader, {..., \"leader\": null, \"term\": null,
\"reason\"} without one, and {\"event\": \"read_failed\", \"reason\"} when a read fails (it
is retried).";

const HANDOVER_ABOUT: &str = "Ask the leader to hand leadership over to the instance named \
                              by --to, and wait until it leads";

const HANDOVER_LONG_ABOUT: &str = "\
Ask the leader of the election that the lock flags choose to hand leadership over to the
instance named by --to (its --instance name), for maintenance or a rolling restart, then wait
until a new term starts and say who leads and how long after the request.

The request writes --to into the record's preferredHolder, the field client-go's coordinated
leader election uses for this; nothing else in the record changes. The leader hears of it at
once (by the backend's change notification; at its next renew without them), ends its term and
releases the lock; the named instance takes it while the others hold back for one
--retry-period (theirs). If the named instance does not take it by then (it is not running, or
is cut off), the election goes on as usual and this command says who leads instead.

Exit status: 0 when the named instance leads; 1 when the request was refused (nobody leads, or
the named instance leads already), another instance took over, or no new term started within
--timeout; 2 for flags that name no lock. The request needs write access to the lock, as the
instances have. Every instance must run this version: an elector that ignores preferredHolder
(client-go outside coordinated mode) overwrites the request at its next renew.";

const HANDOVER_EXAMPLES: &str = "\
Examples:

  demo handover --to b                           on the default lock file's election
  demo handover --to orders-7f9c --backend k8s --namespace prod --lock-name orders --json

With --json each line is an object: {\"ts\", \"event\": \"handover_requested\", \"from\", \"to\",
\"term\"}, then {\"event\": \"handed_over\" (or \"handover_missed\"), \"leader\", \"term\",
\"elapsed_ms\"}, or {\"event\": \"handover_timed_out\"} / {\"event\": \"handover_refused\",
\"reason\"}.";

/// What `demo` does instead of taking part in the election.
#[derive(Clone, Debug, Subcommand)]
pub enum Action {
    /// Follow the election and print every change of leader, never taking part.
    #[command(about = OBSERVE_ABOUT, long_about = OBSERVE_LONG_ABOUT, after_help = OBSERVE_EXAMPLES)]
    Observe(ObserveArgs),
    /// Ask the leader to hand over to a named instance, and wait until it leads.
    #[command(about = HANDOVER_ABOUT, long_about = HANDOVER_LONG_ABOUT, after_help = HANDOVER_EXAMPLES)]
    Handover(HandoverArgs),
}

/// The flags of `demo`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "demo",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    subcommand_value_name = "ACTION",
    override_usage = "demo [OPTIONS] [-- CMD ARGS...]\n       demo [LOCK OPTIONS] <ACTION> [OPTIONS]",
    subcommand_help_heading = "Actions (instead of taking part)"
)]
pub struct Cli {
    /// What to do instead of taking part in the election. Without one, this instance takes
    /// part (`demo --instance a`). The lock flags work before or after the action's name.
    #[command(subcommand)]
    pub action: Option<Action>,

    /// This instance's name, written into the lock as the leader's identity. Must be unique
    /// among the instances that share a lock. Defaults to $POD_NAME when it is set (as the
    /// downward API sets it in a pod), else this machine's hostname and a random suffix
    /// (hostname_1a2b3c4d), new for every process, so that instances started without a name
    /// never share one. --id is the old leader-elector sidecar's spelling; with --election the
    /// default is that sidecar's: $POD_NAME, else the hostname alone.
    #[arg(long = "instance", env = "DEMO_INSTANCE", value_name = "NAME")]
    pub instance_flag: Option<String>,

    /// The identity in force: --instance, or its default (see [`Cli::with_identity`]).
    #[arg(skip)]
    pub instance: String,

    /// Where the timings in force came from, for the messages that name them.
    #[arg(skip)]
    pub timing_origins: TimingOrigins,

    /// The lock as one URL, in place of --backend and its flags: file:///PATH,
    /// redis://[user:password@]HOST:PORT[/DB] (rediss:// for TLS, ?ca=PATH),
    /// etcd://[user:password@]HOST:PORT[,HOST:PORT...] (etcds:// for TLS, ?ca=PATH,
    /// &cert=PATH&key=PATH; the --etcd-* flags fill in what it leaves out, and naming a
    /// setting in both is an error), or k8s://KIND[/NAMESPACE]
    /// (KIND lease, configmap or endpoints; ?kubeconfig=PATH).
    #[arg(long, env = "DEMO_LOCK", global = true, help_heading = LOCK, value_name = "URL")]
    pub lock: Option<String>,

    /// Where the election record is kept: file, redis, etcd or k8s.
    #[arg(
        long,
        env = "DEMO_BACKEND", global = true, help_heading = LOCK,
        value_name = "BACKEND",
        default_value = "file",
        value_parser = backend_parser()
    )]
    pub backend: Backend,

    /// The file that holds the election record (--backend file). Instances that name the same
    /// file take part in the same election; the default is a fixed name in the system's
    /// temporary directory, so instances started with only --instance share one lock.
    #[arg(long, env = "DEMO_LOCK_FILE", global = true, help_heading = LOCK, value_name = "PATH", default_value_os_t = default_lock_file())]
    pub lock_file: PathBuf,

    /// Kubernetes (--backend k8s): the kind of object that holds the record. `lease` is what
    /// client-go uses today; `configmap` and `endpoints` hold it in the annotation
    /// control-plane.alpha.kubernetes.io/leader, as older operators do.
    #[arg(long, env = "DEMO_LOCK_KIND", global = true, help_heading = LOCK, value_name = "KIND", default_value = "lease", value_parser = ["lease", "configmap", "endpoints"])]
    pub lock_kind: String,

    /// Kubernetes (--backend k8s): the namespace of the lock object. Defaults to the namespace
    /// of the kubeconfig's current context (as kubectl uses it), else the pod's own namespace
    /// (from its service account), else "default"; with --election, to "default" as
    /// the old leader-elector sidecar's did. --election-namespace is that sidecar's spelling.
    #[arg(long, env = "DEMO_NAMESPACE", global = true, help_heading = LOCK, value_name = "NS")]
    pub namespace: Option<String>,

    /// Kubernetes (--backend k8s): the kubeconfig to use. Defaults to $KUBECONFIG,
    /// ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "DEMO_KUBECONFIG", global = true, help_heading = LOCK, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The election's name in a shared store (--backend redis, etcd or k8s): instances with the
    /// same name take part in the same election. --election is the old leader-elector sidecar's
    /// spelling (and also chooses its Endpoints lock).
    #[arg(
        long,
        env = "DEMO_LOCK_NAME", global = true, help_heading = LOCK,
        value_name = "NAME",
        default_value = "demo"
    )]
    pub lock_name: String,

    /// The Redis server (--backend redis): redis://[user:password@]host:port[/db], or
    /// rediss://... for TLS.
    #[arg(
        long,
        env = "DEMO_REDIS_URL", global = true, help_heading = LOCK,
        value_name = "URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// A PEM file with the certificate authority that signed the Redis server's certificate
    /// (for rediss:// URLs whose server the system's trust store does not know).
    #[arg(long, env = "DEMO_REDIS_CA", global = true, help_heading = LOCK, value_name = "PATH")]
    pub redis_ca: Option<PathBuf>,

    /// Find the Redis primary through these sentinels (--backend redis), HOST:PORT separated
    /// by commas, and follow it through failovers; needs --redis-master. The data
    /// connection's user, password, database and TLS still come from --redis-url, whose host
    /// is then not used.
    #[arg(
        long,
        env = "DEMO_REDIS_SENTINEL", global = true, help_heading = LOCK,
        value_name = "HOST:PORT[,HOST:PORT...]",
        value_delimiter = ',',
        requires = "redis_master"
    )]
    pub redis_sentinel: Vec<String>,

    /// Elect in a Redis Cluster reached through these seed nodes (--backend redis),
    /// HOST:PORT separated by commas; the election's key goes to the primary of its slot.
    /// User, password and TLS come from --redis-url, whose host is then not used.
    #[arg(
        long,
        env = "DEMO_REDIS_CLUSTER", global = true, help_heading = LOCK,
        value_name = "HOST:PORT[,HOST:PORT...]",
        value_delimiter = ',',
        conflicts_with = "redis_sentinel"
    )]
    pub redis_cluster: Vec<String>,

    /// The master name the sentinels watch (`sentinel monitor NAME ...`), with
    /// --redis-sentinel.
    #[arg(
        long,
        env = "DEMO_REDIS_MASTER", global = true, help_heading = LOCK,
        value_name = "NAME",
        requires = "redis_sentinel"
    )]
    pub redis_master: Option<String>,

    /// How many Redis replicas must acknowledge every write that starts or renews a term
    /// (WAIT) within 500 ms; a write they do not acknowledge counts as failed, and no term
    /// starts on it. 0 (the default) waits for none: then a failover to a replica that missed the
    /// last writes can bring back an older record and hand out a fencing token twice. Set it
    /// to the number of replicas: a failover may promote any of them.
    #[arg(
        long,
        env = "DEMO_REDIS_MIN_REPLICAS", global = true, help_heading = LOCK,
        value_name = "N",
        default_value_t = 0
    )]
    pub redis_min_replicas: u32,

    /// The etcd cluster (--backend etcd): client URLs separated by commas, such as
    /// http://10.0.0.1:2379,http://10.0.0.2:2379.
    #[arg(
        long,
        env = "DEMO_ETCD_ENDPOINTS", global = true, help_heading = LOCK,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,

    /// etcd: log in as this user (with --etcd-password or --etcd-password-file). The user's
    /// role needs readwrite on the key prefix leader-election/ (`etcdctl role grant-permission
    /// --prefix=true ROLE readwrite leader-election/`). Also with an etcd --lock URL that has
    /// no user of its own.
    #[arg(long, env = "DEMO_ETCD_USER", global = true, help_heading = LOCK, value_name = "NAME")]
    pub etcd_user: Option<String>,

    /// etcd: the password of --etcd-user. Prefer DEMO_ETCD_PASSWORD or --etcd-password-file:
    /// other users of this machine can read a command line.
    #[arg(
        long,
        env = "DEMO_ETCD_PASSWORD", global = true, help_heading = LOCK,
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "etcd_user",
        conflicts_with = "etcd_password_file"
    )]
    pub etcd_password: Option<String>,

    /// etcd: a file that holds the password of --etcd-user (one trailing newline is ignored),
    /// such as a mounted Kubernetes secret.
    #[arg(long, env = "DEMO_ETCD_PASSWORD_FILE", global = true, help_heading = LOCK, value_name = "PATH", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,

    /// etcd: a PEM file with the certificate authority that signed the etcd members'
    /// certificates (for https:// endpoints the system's trust store does not know).
    #[arg(long, env = "DEMO_ETCD_CA", global = true, help_heading = LOCK, value_name = "PATH")]
    pub etcd_ca: Option<PathBuf>,

    /// etcd: a client certificate (PEM) to present, for members that authenticate clients by
    /// certificate (--client-cert-auth); with --etcd-key and https:// endpoints.
    #[arg(long, env = "DEMO_ETCD_CERT", global = true, help_heading = LOCK, value_name = "PATH", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,

    /// etcd: the private key (PEM) of --etcd-cert.
    #[arg(long, env = "DEMO_ETCD_KEY", global = true, help_heading = LOCK, value_name = "PATH", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,

    /// How long standbys wait after they last saw the leader renew before they may take over
    /// (a leader that was killed is replaced after this long).
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_LEASE_DURATION", value_name = "DURATION", default_value = "15s", value_parser = parse_timing)]
    pub lease_duration: Duration,

    /// How long the leader stays leader without a successful renew; must be shorter than the
    /// lease duration, so a leader always steps down before anyone else may take over.
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_RENEW_DEADLINE", value_name = "DURATION", default_value = "10s", value_parser = parse_timing)]
    pub renew_deadline: Duration,

    /// How often the leader renews and standbys check the lock (standbys are woken at once by
    /// changes when the backend reports them); the renew deadline must exceed 1.2 times this.
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_RETRY_PERIOD", global = true, help_heading = TIMING, value_name = "DURATION", default_value = "2s", value_parser = parse_timing)]
    pub retry_period: Duration,

    /// How often the leader renews after a renew that succeeded, when that should differ from
    /// --retry-period (the default, as client-go): 4s with the default timings halves the
    /// leader's writes to the backend. A failed renew is still retried every --retry-period,
    /// so the interval plus 1.2 times the retry period must be shorter than --renew-deadline.
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_RENEW_INTERVAL", value_name = "DURATION", value_parser = parse_timing)]
    pub renew_interval: Option<Duration>,

    /// Give up and exit with status 3 once the lock has been unusable for this long: every
    /// attempt failed with an error that will not pass by itself (wrong credentials, a missing
    /// permission (RBAC, ACL), a namespace that does not exist, a lock file that cannot be
    /// made). A write that succeeds, another instance seen leading, and any passing fault (a
    /// server down or slow) start the count again: those are retried without end. `never` (or 0) retries everything for ever. A leader whose renews fail
    /// steps down at --renew-deadline first and counts from then. Leases only: with
    /// --leader-for-life every fault is retried.
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_GIVE_UP_AFTER", value_name = "DURATION", default_value = "30s", value_parser = parse_give_up_after)]
    pub give_up_after: GiveUpAfter,

    /// On CTRL+C, do not release the lock: standbys then wait for the lease to expire, as with
    /// a crashed leader.
    #[arg(long, env = "DEMO_NO_RELEASE", value_parser = BoolishValueParser::new())]
    pub no_release: bool,

    /// Leader-for-life instead of leases: the leader holds the lock for the life of its
    /// process, as the platform tells, and never renews; it loses it only when its process is
    /// gone (or, with etcd, when its session ends), or on CTRL+C (released unless --no-release).
    /// Two leaders never overlap, but a leader that is stopped, hung or cut off keeps
    /// leadership until the platform ends it: a stopped process (SIGSTOP) on a file lock is
    /// never replaced; on etcd it is replaced once its session expires. With leases a
    /// standby takes over after --lease-duration whatever the leader does, and fencing
    /// tokens guard the overlap that may cause. Backends: file (an OS lock on <lock file>.life;
    /// a killed leader is replaced within milliseconds) and etcd (the key bound to an etcd
    /// lease this process keeps alive; --lease-duration is that session's TTL, whole seconds,
    /// at least 2s: a killed leader is replaced within it) and k8s (the ConfigMap
    /// --lock-name owned by this process' Pod, as operator-lib's leader.Become keeps it; the
    /// instance is the Pod's name, POD_NAME; the garbage collector frees the lock when the Pod
    /// is deleted). Redis is refused: it cannot tell whether a client still lives.
    /// --renew-deadline is ignored; --retry-period is how often standbys read who leads.
    #[arg(long, env = "DEMO_LEADER_FOR_LIFE", value_parser = BoolishValueParser::new())]
    pub leader_for_life: bool,

    /// Print one JSON object per line instead of text: {"ts", "instance", "event", "leader",
    /// "term"}, with event one of leading, following, stopped_leading (which adds "reason"),
    /// released, exiting; in exec mode also child_started, child_stopped and child_exited, which
    /// add "pid" (and "exit_code" and "signal" when it ended). Lines that a stdout nobody reads
    /// could not take are dropped (the election never waits for them) and counted in a
    /// lines_dropped line with "count" once it can write again; text output says "N event
    /// lines dropped". Text output escapes control characters in names and reasons.
    #[arg(long, env = "DEMO_JSON", global = true, help_heading = OUTPUT, value_parser = BoolishValueParser::new())]
    pub json: bool,

    /// Serve HTTP on this address, HOST:PORT (such as 0.0.0.0:8080, localhost:8080, or
    /// 127.0.0.1:0 for any free port; a host name is resolved at startup and the first of its
    /// addresses that can be bound is used): GET / (the leader's name, {"name":"..."} as the
    /// old leader-elector sidecar's --http answered), /leader, /healthz and /metrics. The bound
    /// address is printed on stderr.
    #[arg(long, env = "DEMO_HTTP", value_name = "HOST:PORT", value_parser = parse_http_addr)]
    pub http: Option<String>,

    /// GET /healthz fails when this instance is the last holder it saw but has not renewed for
    /// longer than the lease duration plus this (a leader cut off from its backend, or wedged).
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_HEALTH_TOLERANCE", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub health_tolerance: Duration,

    /// Exec mode: how long the command has to exit after SIGTERM before it gets SIGKILL. Must
    /// be shorter than the lease duration minus the renew deadline, so that a command whose term
    /// ended is gone before another instance may lead; defaults to half of that (2.5s with the
    /// default timings).
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_GRACE_PERIOD", value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: Option<Duration>,

    /// Exec mode: what to do when the command exits on its own while this instance leads:
    /// end the term, release the lock and exit with the command's status, or start it again
    /// (after 1s, 2s, 4s... up to 30s while it keeps exiting within 10s of its start; after 5
    /// such exits in a row it ends the term, releases the lock and exits with the command's
    /// status, 1 if that was 0).
    #[arg(long, env = "DEMO_ON_CHILD_EXIT", value_enum, default_value_t = OnChildExit::ReleaseAndExit)]
    pub on_child_exit: OnChildExit,

    /// Compete only while GET URL answers 2xx (an application's readiness endpoint on this
    /// machine or in this pod, plain http), checked every --ready-period. Until the first check
    /// passes this instance does not take the lock, even a free one; it still follows the
    /// election. See --on-unready for a leader whose check fails. GET /leader shows "ready".
    #[arg(long, env = "DEMO_READY_URL", help_heading = READINESS, value_name = "URL", conflicts_with = "ready_command")]
    pub ready_url: Option<String>,

    /// Compete only while `sh -c CMD` exits 0, run every --ready-period (and killed if it takes
    /// longer than that), as --ready-url does with a URL.
    #[arg(long, env = "DEMO_READY_COMMAND", help_heading = READINESS, value_name = "CMD")]
    pub ready_command: Option<String>,

    /// How often --ready-url or --ready-command is checked; one check may take this long.
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, env = "DEMO_READY_PERIOD", help_heading = READINESS, value_name = "DURATION", default_value = "1s", value_parser = parse_timing)]
    pub ready_period: Duration,

    /// What a leader does when its readiness check fails: hand-over ends its term and releases
    /// the lock at once, so a ready standby takes over; keep-leading lets readiness gate only
    /// the takeover.
    #[arg(long, env = "DEMO_ON_UNREADY", help_heading = READINESS, value_enum, default_value_t = OnUnready::HandOver)]
    pub on_unready: OnUnready,

    /// Exec mode: the command to run while this instance leads, after `--`.
    #[arg(last = true, value_name = "CMD ARGS")]
    pub command: Vec<String>,

    /// The old leader-elector sidecar's flags, written into the flags above by
    /// [`Cli::from_args`].
    #[command(flatten)]
    pub leader_elector: LeaderElectorFlags,
}

impl Cli {
    /// Parses `args` (the program's name first) and writes the old leader-elector sidecar's
    /// flags into the demo flags they stand for; settles the identity. A combination whose
    /// spellings disagree (`--id a --instance b`), or a flag of taking part given on the
    /// command line with an action (`demo observe --instance a`), is a clap error (usage
    /// status 2) that names the flags. The lock flags are global: they are taken before or
    /// after an action's name.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Cli::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if let Some(action) = &cli.action {
            if let Some(flag) = election_flag_given(&command, &matches) {
                let name = match action {
                    Action::Observe(_) => "observe",
                    Action::Handover(_) => "handover",
                };
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{flag} is a flag of taking part in the election; `demo {name}` never takes part"),
                ));
            }
        }
        let given = |id: &str| {
            matches
                .value_source(id)
                .is_some_and(|source| source != ValueSource::DefaultValue)
        };
        let flags = cli.leader_elector.clone();
        let parsed = (cli.lease_duration, cli.renew_deadline, cli.retry_period);
        flags
            .apply(&mut cli, given)
            .map_err(|message| command.error(clap::error::ErrorKind::ArgumentConflict, message))?;
        // --ttl (or --election's default TTL) writes all three at once, and never leaves all
        // three as they were parsed (half of a TTL equal to the default lease is not the
        // default renew deadline).
        let by_ttl = parsed != (cli.lease_duration, cli.renew_deadline, cli.retry_period);
        let origin = |id: &str| Origin::of(matches.value_source(id), by_ttl);
        cli.timing_origins = TimingOrigins {
            lease_duration: origin("lease_duration"),
            renew_deadline: origin("renew_deadline"),
            retry_period: origin("retry_period"),
        };
        Ok(cli.with_identity())
    }

    /// Settles the identity: --instance, else $POD_NAME, else the hostname with a random
    /// suffix, on every backend. Two processes that share an identity would each take the
    /// other's term for its own, so the default must differ between processes even on one
    /// machine (the hostname alone does not).
    pub fn with_identity(mut self) -> Self {
        self.instance = match &self.instance_flag {
            Some(name) => name.clone(),
            None => leader_election::default_identity(),
        };
        self
    }

    /// The margin between the end of a term and the earliest takeover by another instance.
    fn takeover_margin(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_deadline)
    }

    /// Exec mode's grace period: the flag, or half the takeover margin.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
            .unwrap_or_else(|| self.takeover_margin() / 2)
    }

    /// Checks what the election configuration cannot: a command's grace period must end before
    /// another instance may lead.
    pub fn validate_exec(&self) -> Result<(), String> {
        let margin = self.takeover_margin();
        if !self.command.is_empty() && self.grace_period() >= margin {
            return Err(format!(
                "--grace-period ({}) must be shorter than --lease-duration minus --renew-deadline \
                 ({}): a command that outlived its term could still run when another instance \
                 starts leading",
                humantime::format_duration(self.grace_period()),
                humantime::format_duration(margin)
            ));
        }
        Ok(())
    }

    /// The election these flags describe: rejoin after losing, release on CTRL+C unless
    /// `--no-release`. Not validated yet.
    pub fn election_config(&self) -> ElectionConfig {
        let config = ElectionConfig::new(self.instance.clone())
            .with_lease_duration(self.lease_duration)
            .with_renew_deadline(self.renew_deadline)
            .with_retry_period(self.retry_period)
            .with_rejoin(true)
            .with_release_on_cancel(!self.no_release);
        match self.renew_interval {
            Some(interval) => config.with_renew_interval(interval),
            None => config,
        }
    }
}

/// The flags that only taking part uses: refused with an action (an observer never takes part).
const ELECTION_ONLY: [&str; 15] = [
    "give_up_after",
    "renew_interval",
    "instance_flag",
    "ready_url",
    "ready_command",
    "ready_period",
    "on_unready",
    "lease_duration",
    "renew_deadline",
    "no_release",
    "http",
    "health_tolerance",
    "grace_period",
    "on_child_exit",
    "command",
];

/// The first election-only flag given on the command line (not from the environment or a
/// default), as `--name`.
fn election_flag_given(command: &clap::Command, matches: &ArgMatches) -> Option<String> {
    ELECTION_ONLY
        .into_iter()
        .find(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|id| {
            command
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .and_then(clap::Arg::get_long)
                .map_or_else(|| "-- CMD".to_owned(), |long| format!("--{long}"))
        })
}

impl Cli {
    /// The election's name, as the `name` label of the metrics carries it (client-go labels
    /// them with the lock's name): `--lock-name`, or the lock file's path for `--backend file`.
    pub fn election_name(&self) -> String {
        if self.backend_in_force() == Backend::File {
            self.lock_file.display().to_string()
        } else {
            self.lock_name.clone()
        }
    }
}

/// `--backend`: the facade's backends, each with what it needs.
fn backend_parser() -> impl clap::builder::TypedValueParser<Value = Backend> {
    use clap::builder::{PossibleValue, PossibleValuesParser};
    PossibleValuesParser::new([
        PossibleValue::new("file").help(
            "A JSON record in a local file (--lock-file), for instances on one machine; no \
             server needed",
        ),
        PossibleValue::new("redis").help(
            "A Redis key named after --lock-name on the server at --redis-url; standbys are \
             woken by pub/sub",
        ),
        PossibleValue::new("etcd").help(
            "An etcd key named after --lock-name on the cluster at --etcd-endpoints; standbys \
             are woken by etcd watches",
        ),
        PossibleValue::new("k8s").help(
            "A Kubernetes Lease (or ConfigMap, Endpoints: --lock-kind) named after --lock-name \
             in --namespace; standbys are woken by a watch",
        ),
    ])
    .try_map(|name| name.parse::<Backend>())
}

/// The lock file shared by every instance that does not name one.
fn default_lock_file() -> PathBuf {
    std::env::temp_dir().join("leader-election-demo.json")
}

/// The longest duration any flag takes. Far beyond any sensible timing, and small enough that
/// adding it to an instant, multiplying it by a small factor or turning it into float seconds
/// never overflows (huge values used to panic deep in the election).
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest lease, renew deadline or retry period: lock calls get a fraction of these as
/// their time limit, and below a millisecond that rounds to nothing ("no answer within 0ns").
const MIN_TIMING: Duration = Duration::from_millis(1);

/// Parses a human duration such as `15s`, `500ms` or `1m30s`, at most [`MAX_DURATION`].
/// Checked here rather than only in the election's validation so that clap's message names
/// the flag and the value, with usage status 2.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("{err}; write a duration such as 15s, 500ms or 1m30s"))?;
    if duration > MAX_DURATION {
        return Err(format!(
            "{} is longer than the longest allowed, {}",
            humantime::format_duration(duration),
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(duration)
}

/// Parses an election timing (lease, renew deadline, retry period): a duration from
/// [`MIN_TIMING`] to [`MAX_DURATION`].
/// `--give-up-after`: a duration, or `never` (also `0`) for no end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GiveUpAfter(pub Option<Duration>);

fn parse_give_up_after(text: &str) -> Result<GiveUpAfter, String> {
    if text == "never" {
        return Ok(GiveUpAfter(None));
    }
    let duration = parse_duration(text).map_err(|err| format!("{err}, or never"))?;
    Ok(GiveUpAfter((!duration.is_zero()).then_some(duration)))
}

/// `--http`: HOST:PORT, where HOST is an IP address (IPv6 in brackets) or a name resolved at
/// startup.
fn parse_http_addr(text: &str) -> Result<String, String> {
    if text.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    let example = "write HOST:PORT, such as 0.0.0.0:8080, localhost:8080 or [::1]:8080";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("no port; {example}"));
    };
    if host.is_empty() || host.contains(':') || host.contains('/') {
        return Err(format!("`{host}` is no host name; {example}"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{port}` is no port number (0 to 65535); {example}"))?;
    Ok(text.to_owned())
}

pub(crate) fn parse_timing(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < MIN_TIMING {
        return Err(format!(
            "{} is shorter than the shortest allowed, {}",
            humantime::format_duration(duration),
            humantime::format_duration(MIN_TIMING)
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::from_args(std::iter::once("demo").chain(args.iter().copied()))
    }

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_client_gos_timings_and_a_shared_lock_file() {
        let cli = parse(&["--instance", "a"]).unwrap();
        let config = cli.election_config();
        assert_eq!(config.lease_duration, lock_core::DEFAULT_LEASE_DURATION);
        assert_eq!(config.renew_deadline, lock_core::DEFAULT_RENEW_DEADLINE);
        assert_eq!(config.retry_period, lock_core::DEFAULT_RETRY_PERIOD);
        assert!(config.rejoin);
        assert!(config.release_on_cancel);
        assert_eq!(config.identity, "a");
        assert_eq!(cli.backend, Backend::File);
        assert_eq!(
            cli.lock_file,
            std::env::temp_dir().join("leader-election-demo.json")
        );
        assert!(!cli.json);
        assert_eq!(cli.http, None);
        assert_eq!(cli.health_tolerance, Duration::from_secs(10));
        assert_eq!(cli.grace_period(), Duration::from_millis(2500));
        assert_eq!(cli.on_child_exit, OnChildExit::ReleaseAndExit);
        assert!(cli.command.is_empty());
    }

    #[test]
    fn observe_takes_the_lock_flags_before_and_after_its_name_and_no_election_flags() {
        let cli = parse(&[
            "--backend",
            "redis",
            "observe",
            "--redis-url",
            "redis://watcher:pw@db:6379",
            "--lock-name",
            "orders",
            "--retry-period",
            "500ms",
            "--json",
            "--no-hints",
        ])
        .unwrap();
        let Some(Action::Observe(args)) = &cli.action else {
            panic!("expected observe: {cli:?}");
        };
        assert!(args.no_hints);
        assert_eq!(cli.backend, Backend::Redis);
        assert_eq!(cli.redis_url, "redis://watcher:pw@db:6379");
        assert_eq!(cli.lock_name, "orders");
        assert_eq!(cli.retry_period, Duration::from_millis(500));
        assert!(cli.json);
        for refused in [
            &["--instance", "a", "observe"][..],
            &["observe", "--instance", "a"][..],
            &["observe", "--lease-duration", "4s"][..],
            &["--http", "127.0.0.1:0", "observe"][..],
            &["observe", "--", "true"][..],
        ] {
            assert!(parse(refused).is_err(), "{refused:?} was accepted");
        }
        // Taking part is unchanged: no action, and `observe` after `--` is a command.
        let cli = parse(&["--instance", "a", "--", "observe", "x"]).unwrap();
        assert!(cli.action.is_none());
        assert_eq!(cli.command, ["observe", "x"]);
    }

    #[test]
    fn sidecar_and_exec_flags() {
        let cli = parse(&[
            "--http",
            "127.0.0.1:0",
            "--health-tolerance",
            "1s",
            "--grace-period",
            "2s",
            "--on-child-exit",
            "restart",
            "--",
            "sh",
            "-c",
            "echo --not-a-flag",
        ])
        .unwrap();
        assert_eq!(cli.http.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(cli.health_tolerance, Duration::from_secs(1));
        assert_eq!(cli.grace_period(), Duration::from_secs(2));
        assert!(cli.validate_exec().is_ok());
        assert_eq!(cli.on_child_exit, OnChildExit::Restart);
        assert_eq!(cli.command, ["sh", "-c", "echo --not-a-flag"]);
    }

    #[test]
    fn a_grace_period_longer_than_the_takeover_margin_is_rejected() {
        let cli = parse(&["--grace-period", "5s", "--", "true"]).unwrap();
        let err = cli.validate_exec().unwrap_err();
        assert!(err.contains("must be shorter than"), "{err}");
        assert!(err.contains("(5s)"), "{err}");
        let without_command = parse(&["--grace-period", "5s"]).unwrap();
        assert!(without_command.validate_exec().is_ok());
    }

    #[test]
    fn leader_for_life_is_off_by_default_and_set_by_its_flag() {
        assert!(!parse(&[]).unwrap().leader_for_life);
        assert!(parse(&["--leader-for-life"]).unwrap().leader_for_life);
        let help = Cli::command()
            .get_arguments()
            .find(|arg| arg.get_id() == "leader_for_life")
            .and_then(|arg| {
                arg.get_long_help()
                    .or(arg.get_help())
                    .map(|h| h.to_string())
            })
            .expect("help");
        assert!(help.contains("never overlap"), "{help}");
        assert!(help.contains("session's TTL"), "{help}");
        assert!(help.contains("Redis is refused"), "{help}");
    }

    #[test]
    fn give_up_after_defaults_to_30s_and_never_or_0_means_never() {
        assert_eq!(
            parse(&[]).unwrap().give_up_after,
            GiveUpAfter(Some(Duration::from_secs(30)))
        );
        for never in ["never", "0", "0s"] {
            assert_eq!(
                parse(&["--give-up-after", never]).unwrap().give_up_after,
                GiveUpAfter(None)
            );
        }
        assert_eq!(
            parse(&["--give-up-after", "1m"]).unwrap().give_up_after,
            GiveUpAfter(Some(Duration::from_secs(60)))
        );
        let message = refused(
            &["--give-up-after", "soon"],
            clap::error::ErrorKind::ValueValidation,
        );
        assert!(message.contains("--give-up-after"), "{message}");
        assert!(message.contains("or never"), "{message}");
        assert!(parse(&["observe", "--give-up-after", "1s"]).is_err());
    }

    #[test]
    fn long_help_lists_every_exit_status() {
        let help = Cli::command().render_long_help().to_string();
        for status in [
            "  0    stopped by CTRL+C",
            "  1    a failure while running: the lock could not be released at shutdown",
            "  2    flags that make no valid election",
            "  3    gave up: every lock call failed for --give-up-after",
            "  127  exec mode: the command cannot be found",
            "  130  a second CTRL+C",
            "  N    exec mode: the command exited on its own with status N",
        ] {
            assert!(help.contains(status), "{status}\n{help}");
        }
        for flag in ["--give-up-after", "--etcd-password-file", "--etcd-cert"] {
            assert!(help.contains(flag), "{flag}");
        }
    }

    #[test]
    fn http_takes_host_names_and_refuses_what_is_no_host_and_port() {
        for good in [
            "localhost:8080",
            "127.0.0.1:0",
            "[::1]:80",
            "my-host.example:0",
        ] {
            assert_eq!(
                parse(&["--http", good]).unwrap().http.as_deref(),
                Some(good)
            );
        }
        for (bad, says) in [
            ("localhost", "no port"),
            ("localhost:http", "no port number"),
            (":8080", "no host name"),
            ("::1:80", "no host name"),
        ] {
            let message = refused(&["--http", bad], clap::error::ErrorKind::ValueValidation);
            assert!(message.contains(says), "{bad}: {message}");
            assert!(message.contains("HOST:PORT"), "{bad}: {message}");
        }
    }

    #[test]
    fn human_durations_and_no_release() {
        let cli = parse(&[
            "--lease-duration",
            "1m30s",
            "--renew-deadline",
            "500ms",
            "--retry-period",
            "100ms",
            "--no-release",
        ])
        .unwrap();
        let config = cli.election_config();
        assert_eq!(config.lease_duration, Duration::from_secs(90));
        assert_eq!(config.renew_deadline, Duration::from_millis(500));
        assert_eq!(config.retry_period, Duration::from_millis(100));
        assert!(!config.release_on_cancel);
    }

    #[test]
    fn unparsable_durations_are_rejected_with_an_example() {
        let err = parse(&["--retry-period", "soon"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let message = err.to_string();
        assert!(message.contains("--retry-period"), "{message}");
        assert!(message.contains("such as 15s"), "{message}");
    }

    #[test]
    fn invalid_combinations_fail_validation_with_client_gos_message() {
        let cli = parse(&["--lease-duration", "5s", "--renew-deadline", "10s"]).unwrap();
        assert_eq!(
            cli.election_config().validate().unwrap_err().to_string(),
            "leaseDuration must be greater than renewDeadline (leaseDuration 5s, renewDeadline \
             10s)"
        );
    }

    /// Every flag that takes a duration says how to write one in `--help`.
    #[test]
    fn every_duration_flag_shows_the_syntax_in_its_help() {
        let command = Cli::command();
        let mut commands = vec![&command];
        commands.extend(command.get_subcommands());
        let mut seen = Vec::new();
        for command in commands {
            for arg in command.get_arguments() {
                let takes_duration = arg
                    .get_value_names()
                    .is_some_and(|names| names.iter().any(|name| name == "DURATION"));
                if !takes_duration {
                    continue;
                }
                let help = arg
                    .get_long_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(
                    help.contains(
                        "DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s."
                    ),
                    "--{}: {help}",
                    arg.get_long().unwrap_or("?")
                );
                seen.push(arg.get_long().unwrap_or("?").to_owned());
            }
        }
        for flag in [
            "lease-duration",
            "renew-deadline",
            "retry-period",
            "health-tolerance",
            "grace-period",
            "ready-period",
            "ttl",
            "timeout",
            "read-timeout",
        ] {
            assert!(
                seen.iter().any(|s| s == flag),
                "--{flag} not checked: {seen:?}"
            );
        }
    }

    #[test]
    fn hole_12_durations_out_of_range_are_rejected_naming_the_flag() {
        for (flag, value) in [
            ("--lease-duration", "500000000000years"),
            ("--retry-period", "18446744073709551613s"),
            ("--renew-deadline", "3ns"),
            ("--retry-period", "999us"),
            ("--grace-period", "25h"),
            ("--health-tolerance", "1000years"),
        ] {
            let err = parse(&[flag, value]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
            let message = err.to_string();
            assert!(message.contains(flag), "{message}");
            assert!(message.contains(value), "{message}");
        }
        let edges = parse(&[
            "--lease-duration",
            "24h",
            "--renew-deadline",
            "1ms",
            "--retry-period",
            "1ms",
            "--health-tolerance",
            "0s",
        ])
        .unwrap();
        assert_eq!(edges.lease_duration, Duration::from_secs(86_400));
        assert_eq!(edges.retry_period, Duration::from_millis(1));
    }

    /// The error of `args`, which must be refused with `kind`; its message.
    fn refused(args: &[&str], kind: clap::error::ErrorKind) -> String {
        let err = parse(args).unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        err.to_string()
    }

    #[test]
    fn the_old_sidecars_arguments_choose_its_endpoints_lock_namespace_and_timings() {
        let cli = parse(&["--election=elect-nginx-deploy", "--http=0.0.0.0:4444"]).unwrap();
        assert_eq!(cli.backend, Backend::K8s);
        assert_eq!(cli.lock_kind, "endpoints");
        assert_eq!(cli.lock_name, "elect-nginx-deploy");
        assert_eq!(cli.election_name(), "elect-nginx-deploy");
        assert_eq!(cli.namespace.as_deref(), Some("default"));
        assert_eq!(cli.http.as_deref(), Some("0.0.0.0:4444"));
        assert_eq!(
            cli.lock_url().unwrap(),
            leader_election::LockUrl::parse("k8s://endpoints/default").unwrap()
        );
        let config = cli.election_config();
        assert_eq!(config.lease_duration, Duration::from_secs(10));
        assert_eq!(config.renew_deadline, Duration::from_secs(5));
        assert_eq!(config.retry_period, Duration::from_millis(2500));
        config
            .validate()
            .expect("the old image's timings are valid");
        assert!(cli.validate_exec().is_ok());
    }

    #[test]
    fn ttl_sets_the_lease_with_half_for_the_renew_deadline_and_a_quarter_for_retries() {
        for args in [&["--ttl", "20s"][..], &["--election", "e", "--ttl=20s"][..]] {
            let config = parse(args).unwrap().election_config();
            assert_eq!(config.lease_duration, Duration::from_secs(20), "{args:?}");
            assert_eq!(config.renew_deadline, Duration::from_secs(10), "{args:?}");
            assert_eq!(config.retry_period, Duration::from_secs(5), "{args:?}");
            config.validate().expect("valid");
        }
        let smallest = parse(&["--ttl", "4ms"]).unwrap().election_config();
        assert_eq!(smallest.retry_period, Duration::from_millis(1));
        smallest.validate().expect("valid");
        let message = refused(&["--ttl", "3ms"], clap::error::ErrorKind::ValueValidation);
        assert!(message.contains("--ttl"), "{message}");
        assert!(message.contains("3ms"), "{message}");
        assert!(message.contains("a quarter of it"), "{message}");
    }

    #[test]
    fn ttl_conflicts_with_the_timing_it_sets_naming_both_flags() {
        for flag in ["--lease-duration", "--renew-deadline", "--retry-period"] {
            let message = refused(
                &["--ttl", "20s", flag, "1s"],
                clap::error::ErrorKind::ArgumentConflict,
            );
            assert!(message.contains("--ttl 20s"), "{message}");
            assert!(
                message.contains(&format!("give either --ttl or {flag}")),
                "{message}"
            );
        }
        // --election's default TTL gives way to a timing that is given.
        let cli = parse(&["--election", "e", "--lease-duration", "30s"]).unwrap();
        assert_eq!(cli.lease_duration, Duration::from_secs(30));
        assert_eq!(cli.renew_deadline, lock_core::DEFAULT_RENEW_DEADLINE);
        assert_eq!(cli.retry_period, lock_core::DEFAULT_RETRY_PERIOD);
    }

    #[test]
    fn id_is_the_instance_and_a_different_instance_is_refused() {
        assert_eq!(parse(&["--id", "pod-a"]).unwrap().instance, "pod-a");
        assert_eq!(
            parse(&["--id=pod-a", "--instance=pod-a"]).unwrap().instance,
            "pod-a"
        );
        let message = refused(
            &["--id", "pod-a", "--instance", "pod-b"],
            clap::error::ErrorKind::ArgumentConflict,
        );
        assert!(message.contains("--id `pod-a`"), "{message}");
        assert!(message.contains("--instance `pod-b`"), "{message}");
    }

    #[test]
    fn with_election_the_default_identity_is_the_old_images_hostname() {
        use crate::leader_elector_flags::old_default_identity;
        let cli = parse(&["--election", "e"]).unwrap();
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        match std::env::var("POD_NAME")
            .ok()
            .filter(|name| !name.is_empty())
        {
            Some(pod) => assert_eq!(cli.instance, pod.trim()),
            None if !hostname.is_empty() => assert_eq!(cli.instance, hostname),
            None => assert!(cli.instance.contains('_'), "{}", cli.instance),
        }
        assert_eq!(
            parse(&["--election", "e", "--id", "p"]).unwrap().instance,
            "p"
        );
        assert_eq!(
            old_default_identity(Some(" pod-a ".into()), "node".into()),
            "pod-a"
        );
        assert_eq!(old_default_identity(None, "pod-b".into()), "pod-b");
        assert_eq!(
            old_default_identity(Some(String::new()), "pod-b".into()),
            "pod-b"
        );
        // No hostname at all: the demo's own default, with its random suffix.
        let fallback = old_default_identity(None, String::new());
        assert!(fallback.contains('_'), "{fallback}");
        // Without --election the demo's own default: the hostname with a random suffix, new
        // for every process (unless $POD_NAME names the pod).
        if std::env::var_os("POD_NAME").is_none() {
            let own = parse(&[]).unwrap().instance;
            assert!(own.starts_with(&format!("{hostname}_")), "{own}");
        }
    }

    #[test]
    fn election_is_the_lock_name_and_a_different_lock_name_is_refused() {
        let same = parse(&["--election", "jobs", "--lock-name", "jobs"]).unwrap();
        assert_eq!(same.lock_name, "jobs");
        let message = refused(
            &["--election", "jobs", "--lock-name", "other"],
            clap::error::ErrorKind::ArgumentConflict,
        );
        assert!(message.contains("--election `jobs`"), "{message}");
        assert!(message.contains("--lock-name `other`"), "{message}");
        let message = refused(&["--election="], clap::error::ErrorKind::ArgumentConflict);
        assert!(
            message.contains("--election must name the election"),
            "{message}"
        );
    }

    #[test]
    fn election_names_the_election_of_any_backend_the_other_flags_choose() {
        let redis = parse(&["--election", "jobs", "--backend", "redis"]).unwrap();
        assert_eq!(redis.backend, Backend::Redis);
        assert_eq!(redis.lock_name, "jobs");
        let lease = parse(&["--election", "jobs", "--lock-kind", "lease"]).unwrap();
        assert_eq!(lease.backend, Backend::K8s);
        assert_eq!(
            lease.lock_url().unwrap(),
            leader_election::LockUrl::parse("k8s://lease/default").unwrap()
        );
        let url = parse(&["--election", "jobs", "--lock", "etcd://h:2379"]).unwrap();
        assert_eq!(url.backend_in_force(), Backend::Etcd);
        assert_eq!(url.lock_name, "jobs");
        let file = parse(&["--election", "jobs", "--backend", "file"]).unwrap();
        assert_eq!(
            file.lock_file,
            std::env::temp_dir().join("leader-election-jobs.json")
        );
        let named = parse(&[
            "--election=jobs",
            "--backend=file",
            "--lock-file=/run/j.json",
        ]);
        assert_eq!(named.unwrap().lock_file, PathBuf::from("/run/j.json"));
        let message = refused(
            &["--election", "../jobs", "--backend", "file"],
            clap::error::ErrorKind::ArgumentConflict,
        );
        assert!(
            message.contains("--election `../jobs` cannot name a lock file"),
            "{message}"
        );
    }

    #[test]
    fn election_namespace_is_the_namespace_and_a_different_one_is_refused() {
        let cli = parse(&["--election", "e", "--election-namespace", "jobs"]).unwrap();
        assert_eq!(
            cli.lock_url().unwrap(),
            leader_election::LockUrl::parse("k8s://endpoints/jobs").unwrap()
        );
        let alone = parse(&["--backend", "k8s", "--election-namespace", "jobs"]).unwrap();
        assert_eq!(alone.namespace.as_deref(), Some("jobs"));
        assert_eq!(
            alone.lock_kind, "lease",
            "without --election, only the namespace"
        );
        let flag = parse(&["--election", "e", "--namespace", "ops"]).unwrap();
        assert_eq!(flag.namespace.as_deref(), Some("ops"));
        let message = refused(
            &["--election-namespace", "jobs", "--namespace", "ops"],
            clap::error::ErrorKind::ArgumentConflict,
        );
        assert!(message.contains("--election-namespace `jobs`"), "{message}");
        assert!(message.contains("--namespace `ops`"), "{message}");
        // Without --election nothing changes: the pod's namespace stays the default.
        assert_eq!(parse(&["--backend", "k8s"]).unwrap().namespace, None);
    }

    #[test]
    fn use_cluster_credentials_is_accepted_in_the_old_forms_and_changes_nothing() {
        let plain = parse(&["--election", "e"]).unwrap();
        for flag in [
            "--use-cluster-credentials",
            "--use-cluster-credentials=true",
            "--use-cluster-credentials=false",
        ] {
            let cli = parse(&["--election", "e", flag]).unwrap();
            assert!(
                cli.leader_elector.use_cluster_credentials.is_some(),
                "{flag}"
            );
            assert_eq!(cli.lock_url().unwrap(), plain.lock_url().unwrap(), "{flag}");
            assert_eq!(cli.kubeconfig, None, "{flag}");
        }
        let message = refused(
            &["--use-cluster-credentials=maybe"],
            clap::error::ErrorKind::ValueValidation,
        );
        assert!(message.contains("--use-cluster-credentials"), "{message}");
    }

    #[test]
    fn every_old_sidecar_flag_has_a_demo_variable_and_help() {
        let command = Cli::command();
        for (flag, variable) in [
            ("election", "DEMO_ELECTION"),
            ("election_namespace", "DEMO_ELECTION_NAMESPACE"),
            ("id", "DEMO_ID"),
            ("ttl", "DEMO_TTL"),
            ("use_cluster_credentials", "DEMO_USE_CLUSTER_CREDENTIALS"),
        ] {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == flag)
                .unwrap_or_else(|| panic!("no flag {flag}"));
            assert_eq!(arg.get_env().and_then(|env| env.to_str()), Some(variable));
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .expect("help")
                .to_string();
            assert!(help.contains("old sidecar"), "{flag}: {help}");
        }
    }
}
