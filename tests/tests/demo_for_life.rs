//! `demo --leader-for-life` as real processes: on a lock file a stopped leader keeps
//! leadership and a killed one is replaced within a second; on a real etcd a killed leader is
//! replaced within its session's TTL, and a leader stopped past its TTL loses its session,
//! says so first when it resumes, and never leads in that term again; Redis is refused.
//! (Kubernetes: `tests/tests/k8s/for_life_demo.rs`.)

use std::time::Duration;

use lock_tests::demo::{run_demo, Demo, DemoEvent};
use lock_tests::servers::etcd::EtcdServer;
use nix::sys::signal::Signal;
use tokio::time::{sleep, Instant};

/// Generous for a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);

fn leading(demo: &Demo) -> Vec<DemoEvent> {
    demo.events()
        .into_iter()
        .filter(|event| event.event == "leading")
        .collect()
}

async fn first_leader(demos: &[Demo]) -> usize {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Some(index) = demos.iter().position(|demo| !leading(demo).is_empty()) {
            return index;
        }
        assert!(Instant::now() < deadline, "nobody leads");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for one of `standbys` to print `leading`; returns its index and the line.
async fn next_leader(demos: &[Demo], standbys: &[usize], within: Duration) -> (usize, DemoEvent) {
    let deadline = Instant::now() + within;
    loop {
        for &index in standbys {
            if let Some(event) = leading(&demos[index]).into_iter().next() {
                return (index, event);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no standby led within {within:?}\n{}",
            demos.iter().map(Demo::report).collect::<String>()
        );
        sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_a_stopped_leader_keeps_leadership_and_a_killed_one_is_replaced_within_a_second() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path");
    let lease = Duration::from_secs(2);
    let args = [
        "--leader-for-life",
        "--lock-file",
        lock,
        "--lease-duration",
        "2s",
        "--renew-deadline",
        "1s",
        "--retry-period",
        "200ms",
    ];
    let a = Demo::start("a", &args);
    a.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let mut demos = vec![a, Demo::start("b", &args), Demo::start("c", &args)];
    for demo in &demos[1..] {
        demo.wait_for("following a", STARTUP, |event| {
            event.event == "following" && event.leader.as_deref() == Some("a")
        })
        .await;
    }
    let first_term = leading(&demos[0])[0].term.expect("a term");

    // Stopped for twice the lease: nobody takes over.
    demos[0].signal(Signal::SIGSTOP);
    sleep(lease * 2).await;
    for demo in &demos[1..] {
        assert!(
            leading(demo).is_empty(),
            "took over from a stopped leader\n{}",
            demo.report()
        );
    }
    demos[0].signal(Signal::SIGCONT);
    sleep(Duration::from_millis(500)).await;
    let after = demos[0].events();
    assert!(
        after.iter().all(|event| event.event != "stopped_leading"),
        "a still leads after SIGCONT\n{}",
        demos[0].report()
    );
    assert_eq!(leading(&demos[0]).len(), 1);
    for demo in &demos[1..] {
        assert!(leading(demo).is_empty(), "{}", demo.report());
    }

    // Killed: a standby leads within a second, with a greater token.
    demos[0].signal(Signal::SIGKILL);
    let killed = Instant::now();
    let (index, line) = next_leader(&demos, &[1, 2], Duration::from_secs(5)).await;
    let took = line.arrived.saturating_duration_since(killed);
    eprintln!(
        "file: SIGKILL to {}'s leading line: {took:?}",
        demos[index].name()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(line.term.expect("a term") > first_term);
    demos[0].wait_exit(EXIT).await;
    for demo in &mut demos[1..] {
        demo.interrupt();
        assert!(demo.wait_exit(EXIT).await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_the_end_of_the_leaders_session_hands_over() {
    let server = EtcdServer::start();
    let endpoint = server.endpoint();
    let ttl = Duration::from_secs(3);
    let args = [
        "--leader-for-life",
        "--backend",
        "etcd",
        "--etcd-endpoints",
        &endpoint,
        "--lock-name",
        "for-life",
        "--lease-duration",
        "3s",
        "--renew-deadline",
        "2s",
        "--retry-period",
        "500ms",
    ];
    let mut demos = vec![
        Demo::start("a", &args),
        Demo::start("b", &args),
        Demo::start("c", &args),
    ];
    let first = first_leader(&demos).await;
    let first_term = leading(&demos[first])[0].term.expect("a term");
    let standbys: Vec<usize> = (0..3).filter(|index| *index != first).collect();
    // Let the standbys settle into waiting.
    sleep(Duration::from_secs(1)).await;

    // Killed: its session ends after the TTL, and a standby leads within TTL + 1 s.
    demos[first].signal(Signal::SIGKILL);
    let killed = Instant::now();
    let (second, line) = next_leader(&demos, &standbys, ttl + Duration::from_secs(3)).await;
    let took = line.arrived.saturating_duration_since(killed);
    eprintln!(
        "etcd: SIGKILL to {}'s leading line: {took:?} (TTL {ttl:?})",
        demos[second].name()
    );
    assert!(took < ttl + Duration::from_secs(1), "took {took:?}");
    let second_term = line.term.expect("a term");
    assert!(second_term > first_term);
    demos[first].wait_exit(EXIT).await;

    // Stopped past its TTL: its session expires, the last standby leads; resumed, the old
    // leader says stopped_leading before anything else and never leads in that term again.
    let third = standbys
        .into_iter()
        .find(|index| *index != second)
        .expect("a third");
    let before_stop = demos[second].events().len();
    demos[second].signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    let (_, line) = next_leader(&demos, &[third], ttl + Duration::from_secs(5)).await;
    let took = line.arrived.saturating_duration_since(stopped);
    eprintln!(
        "etcd: SIGSTOP to {}'s leading line: {took:?}",
        demos[third].name()
    );
    assert!(
        took >= ttl - Duration::from_millis(500),
        "took over early: {took:?}"
    );
    let third_term = line.term.expect("a term");
    assert!(third_term > second_term);
    demos[second].signal(Signal::SIGCONT);
    demos[second]
        .wait_for("stopped_leading", Duration::from_secs(10), |event| {
            event.event == "stopped_leading"
        })
        .await;
    sleep(Duration::from_secs(1)).await;
    let resumed: Vec<DemoEvent> = demos[second].events().split_off(before_stop);
    assert_eq!(
        resumed.first().map(|event| event.event.as_str()),
        Some("stopped_leading"),
        "{}",
        demos[second].report()
    );
    assert_eq!(resumed[0].term, Some(second_term));
    assert!(
        resumed
            .iter()
            .all(|event| !(event.event == "leading" && event.term == Some(second_term))),
        "{}",
        demos[second].report()
    );
    assert!(
        resumed.iter().all(|event| event.event != "leading"),
        "the lock is the third's: {}",
        demos[second].report()
    );
    for index in [second, third] {
        demos[index].interrupt();
        assert!(demos[index].wait_exit(EXIT).await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_is_refused_saying_why() {
    let output = run_demo(
        &["--instance", "a", "--backend", "redis", "--leader-for-life"],
        EXIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no notion of a client's life"), "{stderr}");
    assert!(stderr.contains("fencing tokens"), "{stderr}");
    assert!(stderr.contains("etcd"), "{stderr}");
    assert!(output.stdout.is_empty());
}
