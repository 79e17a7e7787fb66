//! Issue 11's acceptance on real servers and real `demo` processes, on Redis and on etcd:
//! three instances, each reaching the server through a proxy of its own, survive
//!
//! - (a) the leader cut off and the record deleted on the server: a new leader only after the
//!   cut-off leader's term ended, terms that strictly grow, one leader after the heal;
//! - (b) the leader cut off and `GET /` read on it after its renew deadline: it does not name
//!   itself, and `/leader` does not say it leads;
//! - (c) SIGSTOP of the leader past the lease, then SIGCONT: another instance took over, and the
//!   resumed process's first `GET /` and `/leader` answers do not claim leadership.
//!
//! Every test checks its whole history (events, signals, sampled answers) with
//! [`History`](lock_tests::history::History) at the end and prints it. The schedule's
//! randomness (when the record is deleted after the cut, how long faults last beyond the
//! minimum) comes from a seed that is printed; `FAULTS_SEED=N` replays it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::Utc;
use lock_core::testing::conformance::unique_name;
use lock_tests::fault_cluster::{Backend, FaultCluster, LEASE, RENEW_DEADLINE};
use lock_tests::servers::etcd::EtcdServer;
use lock_tests::servers::redis::RedisServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// How long three instances may take to elect a leader that the others follow.
const SETTLE: Duration = Duration::from_secs(30);
/// How long a takeover may take after a fault (a lease, with a loaded machine's slack).
const TAKEOVER: Duration = Duration::from_secs(20);
/// The instances.
const NAMES: [&str; 3] = ["a", "b", "c"];

/// One fault test at a time: each runs three processes on second-scale timings, and two of
/// them at once on a small machine would measure the machine's load rather than the elector.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A real server and how to reach and edit it.
enum Server {
    Redis(RedisServer),
    Etcd(EtcdServer),
}

impl Server {
    fn start(backend: Backend) -> Self {
        match backend {
            Backend::Redis => Self::Redis(RedisServer::start()),
            Backend::Etcd => Self::Etcd(EtcdServer::start()),
        }
    }

    fn address(&self) -> SocketAddr {
        let port = match self {
            Self::Redis(server) => server.port(),
            Self::Etcd(server) => server.client_port(),
        };
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// Deletes the election record of `lock` directly on the server (the key names are the
    /// backends' defaults: `leader-election:{LOCK}` and `leader-election/LOCK`).
    fn delete_record(&self, lock: &str) {
        match self {
            Self::Redis(server) => {
                let mut connection = server
                    .admin_client()
                    .get_connection_with_timeout(Duration::from_secs(5))
                    .expect("a connection to the test server");
                let deleted: i64 = redis::cmd("DEL")
                    .arg(format!("leader-election:{{{lock}}}"))
                    .query(&mut connection)
                    .expect("DEL answers");
                assert_eq!(deleted, 1, "the record existed before the delete");
            }
            Self::Etcd(server) => {
                let key = format!("leader-election/{lock}");
                assert!(
                    server.get(&key).is_some(),
                    "the record exists before the delete"
                );
                server.delete(&key);
            }
        }
    }
}

/// The seed of this run: `FAULTS_SEED`, else the clock; printed, so that a failure replays.
fn seeded(test: &str) -> StdRng {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros().unsigned_abs());
    eprintln!("{test}: seed {seed} (FAULTS_SEED={seed} replays the schedule)");
    StdRng::seed_from_u64(seed)
}

/// A random duration in `[0, max)` milliseconds.
fn up_to(rng: &mut StdRng, max: Duration) -> Duration {
    let max = u64::try_from(max.as_millis()).expect("a short duration");
    Duration::from_millis(rng.random_range(0..max))
}

/// Waits for one settled leader; when there is none, checks the history (whose violations
/// are the likely cause) and panics with it.
async fn settled_leader(cluster: FaultCluster, context: &str) -> (FaultCluster, usize) {
    match cluster.settled_leader(SETTLE).await {
        Some(leader) => (cluster, leader),
        None => {
            let reports = cluster.reports();
            let history = cluster.finish().await;
            let violations = history.violations();
            panic!(
                "{context}: no single leader followed by the others within {SETTLE:?}\n{}\n{reports}",
                history.report(&violations)
            );
        }
    }
}

/// (a): the leader is cut off from the server and the record is deleted behind its back, three
/// rounds; then the history must show no overlap, strictly growing tokens and a leader soon
/// after every heal.
async fn leader_cut_off_and_record_deleted(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let test = format!("{backend:?}: leader cut off and record deleted");
    let mut rng = seeded(&test);
    let server = Server::start(backend);
    let lock = unique_name("cut-delete");
    let mut cluster = FaultCluster::start(backend, server.address(), &lock, &NAMES).await;
    for round in 1..=3 {
        let context = format!("{test}, round {round}");
        let leader;
        (cluster, leader) = settled_leader(cluster, &context).await;
        let name = cluster.member(leader).demo.name().to_owned();
        let cut_at = Instant::now();
        cluster.member(leader).cut();
        cluster.record(|h| h.fault(Utc::now(), format!("{name} cut off")));
        tokio::time::sleep(up_to(&mut rng, Duration::from_millis(400))).await;
        server.delete_record(&lock);
        cluster.record(|h| h.record_deleted(Utc::now()));
        let taken = cluster.new_leader(leader, cut_at, TAKEOVER).await;
        eprintln!(
            "{context}: {name} cut off; {} took over {:?} after the cut",
            taken
                .as_ref()
                .map_or("nobody", |(i, _)| cluster.member(*i).demo.name()),
            taken.as_ref().map(|(_, event)| event.arrived - cut_at)
        );
        // Keep the cut at least a lease long, so that the cut-off leader's term has surely
        // ended by its own clock before the held bytes arrive.
        let held = LEASE + Duration::from_millis(500) + up_to(&mut rng, Duration::from_secs(1));
        tokio::time::sleep_until(cut_at + held).await;
        cluster.member(leader).heal();
        cluster.record(|h| h.healed(Utc::now()));
        tokio::time::sleep(LEASE + Duration::from_secs(2)).await;
    }
    // After the last heal: still one leader, followed by the others.
    let (cluster, _) = settled_leader(cluster, &format!("{test}, after the last heal")).await;
    let history = cluster.finish().await;
    history.assert_safe(&test);
}

/// (b): the leader is cut off; after its renew deadline its `GET /` and `GET /leader` are read:
/// neither may claim leadership. Two rounds.
async fn cut_off_leader_does_not_name_itself(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let test = format!("{backend:?}: cut-off leader's GET / after its renew deadline");
    let mut rng = seeded(&test);
    let server = Server::start(backend);
    let lock = unique_name("cut-get");
    let mut cluster = FaultCluster::start(backend, server.address(), &lock, &NAMES).await;
    let mut claims = Vec::new();
    for round in 1..=2 {
        let context = format!("{test}, round {round}");
        let leader;
        (cluster, leader) = settled_leader(cluster, &context).await;
        let name = cluster.member(leader).demo.name().to_owned();
        let cut_at = Instant::now();
        cluster.member(leader).cut();
        cluster.record(|h| h.fault(Utc::now(), format!("{name} cut off")));
        // Its last renew was before the cut, so its renew deadline has passed by then (with
        // 300 ms for its own timers to fire).
        let asked_at = RENEW_DEADLINE + Duration::from_millis(300) + up_to(&mut rng, LEASE);
        tokio::time::sleep_until(cut_at + asked_at).await;
        let answers = cluster.ask(leader).await;
        eprintln!("{context}: {name} answered {answers:?} {asked_at:?} after the cut");
        let claims_now = [&answers.0, &answers.1]
            .into_iter()
            .flatten()
            .any(|answer| answer.claims(&name));
        if claims_now {
            claims.push(format!(
                "{context}: {name} claimed leadership {asked_at:?} after it was cut off: {answers:?}"
            ));
        }
        assert!(
            answers.0.is_some() && answers.1.is_some(),
            "{context}: {name}'s HTTP endpoint must answer while its backend is cut off: {answers:?}\n{}",
            cluster.reports()
        );
        tokio::time::sleep_until(cut_at + LEASE * 2).await;
        cluster.member(leader).heal();
        cluster.record(|h| h.healed(Utc::now()));
        tokio::time::sleep(LEASE + Duration::from_secs(2)).await;
    }
    // After the last heal: still one leader, followed by the others.
    let (cluster, _) = settled_leader(cluster, &format!("{test}, after the last heal")).await;
    let history = cluster.finish().await;
    let violations = history.violations();
    assert!(
        claims.is_empty() && violations.is_empty(),
        "{}\n{}",
        claims.join("\n"),
        history.report(&violations)
    );
    history.assert_safe(&test);
}

/// (c): SIGSTOP of the leader past the lease, then SIGCONT: another instance took over
/// meanwhile, and the resumed process's first answers do not claim leadership. Two rounds.
async fn stopped_leader_resumes_without_claiming(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let test = format!("{backend:?}: SIGSTOP of the leader past the lease, then SIGCONT");
    let mut rng = seeded(&test);
    let server = Server::start(backend);
    let lock = unique_name("stop-cont");
    let mut cluster = FaultCluster::start(backend, server.address(), &lock, &NAMES).await;
    let mut claims = Vec::new();
    for round in 1..=2 {
        let context = format!("{test}, round {round}");
        let leader;
        (cluster, leader) = settled_leader(cluster, &context).await;
        let name = cluster.member(leader).demo.name().to_owned();
        let stopped_at = Instant::now();
        cluster.stop(leader);
        let taken = cluster.new_leader(leader, stopped_at, TAKEOVER).await;
        let pause = LEASE + Duration::from_secs(1) + up_to(&mut rng, Duration::from_secs(1));
        tokio::time::sleep_until(stopped_at + pause).await;
        let answers = cluster.resume(leader).await;
        let resumed = Utc::now();
        eprintln!(
            "{context}: {name} stopped for {pause:?}; {} took over; first answers after SIGCONT: {answers:?}",
            taken.as_ref().map_or("nobody", |(i, _)| cluster.member(*i).demo.name())
        );
        assert!(
            taken.is_some(),
            "{context}: nobody took over from the stopped {name} within {TAKEOVER:?}\n{}",
            cluster.reports()
        );
        let claims_now = [&answers.0, &answers.1]
            .into_iter()
            .flatten()
            .any(|answer| answer.claims(&name));
        if claims_now {
            claims.push(format!(
                "{context}: {name}'s first answers after SIGCONT claim leadership: {answers:?}"
            ));
        }
        cluster.record(|h| h.healed(resumed));
        tokio::time::sleep(LEASE + Duration::from_secs(2)).await;
    }
    // After the last heal: still one leader, followed by the others.
    let (cluster, _) = settled_leader(cluster, &format!("{test}, after the last heal")).await;
    let history = cluster.finish().await;
    let violations = history.violations();
    assert!(
        claims.is_empty() && violations.is_empty(),
        "{}\n{}",
        claims.join("\n"),
        history.report(&violations)
    );
    history.assert_safe(&test);
}

/// No fault: the history of a quiet election is clean (the checker finds nothing where there
/// is nothing), and the leader stays.
async fn quiet_election_has_a_clean_history(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let test = format!("{backend:?}: quiet election");
    let server = Server::start(backend);
    let lock = unique_name("quiet");
    let cluster = FaultCluster::start(backend, server.address(), &lock, &NAMES).await;
    let (cluster, leader) = settled_leader(cluster, &test).await;
    tokio::time::sleep(LEASE).await;
    assert_eq!(
        cluster.settled_leader(Duration::ZERO).await,
        Some(leader),
        "{test}: the leader changed without a fault\n{}",
        cluster.reports()
    );
    let history = cluster.finish().await;
    assert_eq!(history.terms().len(), 1, "{}", history.report(&[]));
    history.assert_safe(&test);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_quiet_election_has_a_clean_history() {
    quiet_election_has_a_clean_history(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_quiet_election_has_a_clean_history() {
    quiet_election_has_a_clean_history(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leader_cut_off_and_record_deleted_never_gives_two_leaders_or_a_lower_term() {
    leader_cut_off_and_record_deleted(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_cut_off_and_record_deleted_never_gives_two_leaders_or_a_lower_term() {
    leader_cut_off_and_record_deleted(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_off_leader_does_not_name_itself_after_its_renew_deadline() {
    cut_off_leader_does_not_name_itself(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cut_off_leader_does_not_name_itself_after_its_renew_deadline() {
    cut_off_leader_does_not_name_itself(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leader_stopped_past_the_lease_does_not_claim_leadership_on_sigcont() {
    stopped_leader_resumes_without_claiming(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_stopped_past_the_lease_does_not_claim_leadership_on_sigcont() {
    stopped_leader_resumes_without_claiming(Backend::Etcd).await;
}
