//! The documentation's walkthroughs (README.md and docs/*.md, `<!-- walkthrough: NAME -->`
//! blocks), run command by command against real servers on free loopback ports, their output
//! compared with what the pages show, so that the pages cannot drift from what the demo does.
//! A failure names the page and line, and shows both outputs. `WALKTHROUGH_SHOW=1` prints
//! every step's raw output, to refresh a page's samples from a real run.

use lock_tests::servers::etcd::EtcdServer;
use lock_tests::servers::ports::free_loopback_port;
use lock_tests::servers::redis::RedisServer;
use lock_tests::walkthrough::{compare, run, walkthrough, Substitution};

/// Runs the walkthrough `name` and panics with the first step that differs from its page.
fn check(name: &str, substitutions: &[Substitution], env: &[(&str, &str)]) {
    let walkthrough = walkthrough(name);
    let actual = run(&walkthrough, substitutions, env);
    if std::env::var_os("WALKTHROUGH_SHOW").is_some() {
        for (step, lines) in walkthrough.steps.iter().zip(&actual) {
            eprintln!("$ {}\n{}", step.command, lines.join("\n"));
        }
    }
    if let Err(mismatch) = compare(&walkthrough, &actual) {
        panic!("walkthrough {name}: {mismatch}");
    }
}

/// The Redis server's documented address, and the real one for `redis-cli` and the demo.
/// `--no-raw` makes `redis-cli` print what it prints in a terminal, as the pages show it.
fn redis_substitutions(redis: &RedisServer) -> Vec<Substitution> {
    let port = redis.port();
    vec![
        Substitution::new("127.0.0.1:6379", format!("127.0.0.1:{port}")),
        Substitution::new("redis-cli", format!("redis-cli -p {port} --no-raw")),
    ]
}

/// README: three instances on one lock file, CTRL+C on the leader.
#[test]
fn the_readme_failover_on_a_lock_file_runs_as_shown() {
    check("failover", &[], &[]);
}

/// docs/modes.md: exec mode runs the command while leading and passes its status on.
#[test]
fn the_exec_mode_walkthrough_runs_as_shown() {
    check("exec", &[], &[]);
}

/// docs/modes.md: leader-for-life on a lock file survives a stop, not a kill.
#[test]
fn the_leader_for_life_walkthrough_runs_as_shown() {
    check("for-life", &[], &[]);
}

/// docs/modes.md: `demo handover` among three instances on a lock file.
#[test]
fn the_handover_walkthrough_runs_as_shown() {
    let dir = tempfile::tempdir().expect("a temporary directory for the lock file");
    let real = dir.path().join("hdemo");
    check(
        "handover",
        &[Substitution::new("/tmp/hdemo", real.display().to_string())],
        &[],
    );
}

/// docs/modes.md: `demo observe` beside two instances, a release and a kill.
#[test]
fn the_observe_walkthrough_runs_as_shown() {
    check("observe", &[], &[]);
}

/// docs/troubleshooting.md: the messages it explains are the ones the demo prints, with
/// their exit statuses. `/tmp/app` is a fresh directory, as the page's absolute paths show up
/// in the messages.
#[test]
fn the_troubleshooting_examples_run_as_shown() {
    let dir = tempfile::tempdir().expect("a temporary directory for the page's /tmp/app");
    check(
        "troubleshooting",
        &[Substitution::new(
            "/tmp/app",
            dir.path().display().to_string(),
        )],
        &[],
    );
}

/// docs/troubleshooting.md: a wrong Redis password gives up after --give-up-after with
/// status 3 and the reason.
#[test]
fn the_troubleshooting_give_up_on_redis_runs_as_shown() {
    let redis = RedisServer::start_with_password("s3cret");
    check("troubleshooting-redis", &redis_substitutions(&redis), &[]);
}

/// docs/redis.md: two instances, the record in the hash, an ACL user that can elect.
#[test]
fn the_redis_walkthrough_runs_as_shown() {
    let redis = RedisServer::start();
    check("redis", &redis_substitutions(&redis), &[]);
}

/// docs/modes.md: the HTTP endpoints of a leader and a standby on Redis.
#[test]
fn the_http_endpoints_walkthrough_runs_as_shown() {
    let redis = RedisServer::start();
    let mut substitutions = redis_substitutions(&redis);
    for documented in ["8081", "8082"] {
        substitutions.push(Substitution::new(
            documented,
            free_loopback_port().to_string(),
        ));
    }
    check("http", &substitutions, &[]);
}

/// docs/etcd.md: a role and user limited to the prefix, authentication on, and the demo
/// electing as that user with its password in a file.
#[test]
fn the_etcd_with_authentication_walkthrough_runs_as_shown() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    check(
        "etcd-auth",
        &[Substitution::new("http://127.0.0.1:2379", endpoint.clone())],
        &[
            ("ETCDCTL_API", "3"),
            ("ETCDCTL_ENDPOINTS", endpoint.as_str()),
        ],
    );
}
