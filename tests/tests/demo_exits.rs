//! How the demo ends, with real processes and real servers: it gives up on faults that will
//! not pass by themselves (a wrong Redis password, a lock file that cannot be made) with
//! status 3 and one line that says why, keeps retrying a server that is down, exits 1 when the
//! lock could not be released at shutdown, says at the first CTRL+C that a second one exits at
//! once, and in exec mode refuses a command that does not exist at startup (127) and gives up
//! on a command that keeps failing under `--on-child-exit restart`.

use std::time::Duration;

use lock_tests::demo::Demo;
use lock_tests::servers::ports::ClosedPort;
use lock_tests::servers::redis::RedisServer;

/// Generous limits for a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(60);

/// Short timings, so that terms end and releases give up within seconds.
const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "4s",
    "--renew-deadline",
    "3s",
    "--retry-period",
    "500ms",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = TIMINGS.to_vec();
    all.extend_from_slice(extra);
    all
}

/// The one `error:` line of a demo's stderr.
fn error_lines(demo: &Demo) -> Vec<String> {
    demo.stderr()
        .lines()
        .filter(|line| line.starts_with("error: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_redis_password_gives_up_with_status_3_and_says_why() {
    let server = RedisServer::start_with_password("right-password");
    let url = server.url_as("default", "wrong-password");
    let mut demo = Demo::start(
        "a",
        &args(&[
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--give-up-after",
            "2s",
        ]),
    );
    let status = demo.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(3), "{}", demo.report());
    let errors = error_lines(&demo);
    assert_eq!(errors.len(), 1, "{}", demo.report());
    let line = &errors[0];
    assert!(line.starts_with("error: gave up after 2s: "), "{line}");
    assert!(
        line.contains("authentication failed for user default"),
        "{line}"
    );
    assert!(line.contains("--give-up-after"), "{line}");
    assert!(
        !line.contains("wrong-password"),
        "the password shows: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_file_that_cannot_be_made_gives_up_with_status_3() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A regular file where the lock's directory should be: no directory can be made there.
    let not_a_dir = dir.path().join("not-a-directory");
    std::fs::write(&not_a_dir, "x").expect("a file");
    let lock = not_a_dir.join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path");
    let mut demo = Demo::start("a", &args(&["--lock-file", lock, "--give-up-after", "1s"]));
    let status = demo.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(3), "{}", demo.report());
    let errors = error_lines(&demo);
    assert_eq!(errors.len(), 1, "{}", demo.report());
    let line = &errors[0];
    assert!(line.starts_with("error: gave up after 1s: "), "{line}");
    assert!(line.contains("not-a-directory"), "{line}");
    assert!(
        line.contains("not-a-directory is not a directory: choose another lock file (--lock-file)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_retried_past_the_give_up_time() {
    // Nothing listens on this port, and no other test can start a server there while it is
    // held: every call fails as unavailable, a fault that may pass.
    let closed = ClosedPort::bind();
    let url = format!("redis://127.0.0.1:{}", closed.port());
    let mut demo = Demo::start(
        "a",
        &args(&[
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--give-up-after",
            "1s",
        ]),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        demo.stderr().contains("lock call failed; retrying"),
        "{}",
        demo.report()
    );
    assert!(error_lines(&demo).is_empty(), "{}", demo.report());
    demo.interrupt();
    let status = demo.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(0), "{}", demo.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_at_shutdown_exits_1_and_the_first_ctrl_c_tells_of_the_second() {
    let mut server = RedisServer::start();
    let url = server.url();
    // The hint is an INFO line, shown without RUST_LOG (which the tests' demos never inherit).
    let mut demo = Demo::start("a", &args(&["--backend", "redis", "--redis-url", &url]));
    demo.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    server.kill();
    demo.interrupt();
    let status = demo.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(1), "{}", demo.report());
    let stderr = demo.stderr();
    assert!(
        stderr.contains("SIGINT: stepping down and handing the lock over; press CTRL+C again"),
        "{stderr}"
    );
    let errors = error_lines(&demo);
    assert_eq!(errors.len(), 1, "{}", demo.report());
    assert!(
        errors[0].starts_with(
            "error: could not release the lock, so the others wait for the lease to run out: "
        ),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("unavailable"), "{}", errors[0]);
    // The term ended first, as always, and said why.
    let stopped = demo
        .events()
        .into_iter()
        .find(|event| event.event == "stopped_leading")
        .unwrap_or_else(|| panic!("no stopped_leading\n{}", demo.report()));
    assert_eq!(
        stopped.reason.as_deref(),
        Some("the election was cancelled"),
        "{stopped:?}"
    );
    assert!(!demo.events().iter().any(|event| event.event == "released"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_fails_at_startup_on_a_standby_too() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path");
    let leader = Demo::start("a", &args(&["--lock-file", lock]));
    leader
        .wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    for command in [&["no-such-cmd", "--flag"][..], &["./no/such/path"][..]] {
        let mut all = args(&["--lock-file", lock, "--"]);
        all.extend_from_slice(command);
        let mut standby = Demo::start("b", &all);
        let status = standby.wait_exit(EXIT).await;
        assert_eq!(status.code(), Some(127), "{}", standby.report());
        let errors = error_lines(&standby);
        assert_eq!(errors.len(), 1, "{}", standby.report());
        let expected = if command[0] == "no-such-cmd" {
            "error: command not found: \"no-such-cmd\" is in no directory of $PATH ("
        } else {
            "error: cannot run \"./no/such/path\": no such file"
        };
        assert!(errors[0].starts_with(expected), "{}", errors[0]);
        // It never took part.
        assert!(standby.events().is_empty(), "{}", standby.report());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_gives_up_on_a_command_that_keeps_failing_fast() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path");
    let log = dir.path().join("runs.log");
    let script = format!("date +%s%N >> '{}'; exit 4", log.display());
    let mut demo = Demo::start(
        "a",
        &args(&[
            "--lock-file",
            lock,
            "--grace-period",
            "200ms",
            "--on-child-exit",
            "restart",
            "--",
            "sh",
            "-c",
            &script,
        ]),
    );
    // Backoffs of 1, 2, 4 and 8 s between the five runs.
    let status = demo.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(4), "{}", demo.report());
    let runs: Vec<u128> = std::fs::read_to_string(&log)
        .expect("the runs' log")
        .lines()
        .map(|line| line.parse().expect("nanoseconds"))
        .collect();
    assert_eq!(runs.len(), 5, "{runs:?}");
    let gaps: Vec<u128> = runs
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) / 1_000_000)
        .collect();
    for (gap, backoff) in gaps.iter().zip([1_000, 2_000, 4_000, 8_000]) {
        assert!(*gap >= backoff, "gaps {gaps:?} ms");
    }
    let errors = error_lines(&demo);
    assert_eq!(errors.len(), 1, "{}", demo.report());
    assert!(
        errors[0]
            == "error: \"sh\" exited within 10s of its start 5 times in a row (--on-child-exit \
                restart gives up after 5): ending the term, releasing the lock and exiting with \
                its last status",
        "{}",
        errors[0]
    );
    let names: Vec<String> = demo
        .events()
        .into_iter()
        .filter(|event| !event.is_child())
        .map(|event| event.event)
        .collect();
    assert_eq!(
        names,
        ["leading", "stopped_leading", "released", "exiting"],
        "{}",
        demo.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_takes_a_host_name() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path");
    let mut demo = Demo::start("a", &args(&["--lock-file", lock, "--http", "localhost:0"]));
    let base = demo.http_base(STARTUP).await;
    assert!(
        base.starts_with("http://127.0.0.1:") || base.starts_with("http://[::1]:"),
        "{base}"
    );
    demo.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let deadline = tokio::time::Instant::now() + STARTUP;
    loop {
        let body = match reqwest::get(format!("{base}/")).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains("\"name\":\"a\"") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET / said {body}\n{}",
            demo.report()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    demo.interrupt();
    assert!(demo.wait_exit(EXIT).await.success(), "{}", demo.report());

    let mut unresolvable = Demo::start(
        "b",
        &args(&["--lock-file", lock, "--http", "no-such-host.invalid:0"]),
    );
    let status = unresolvable.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(2), "{}", unresolvable.report());
    let errors = error_lines(&unresolvable);
    assert!(
        errors[0].starts_with("error: --http no-such-host.invalid:0: cannot resolve the host name"),
        "{errors:?}"
    );
}

/// The first CTRL+C starts an orderly stop (here: a command that ignores SIGTERM, with a long
/// grace period, keeps it waiting); the second exits at once with status 130, as the hint
/// says, and the supervisor then kills the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_with_status_130() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trapped = dir.path().join("trapped");
    let trapped_command = format!(
        "trap '' TERM; touch '{}'; exec sleep 1000",
        trapped.display()
    );
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path");
    let mut demo = Demo::start(
        "a",
        &[
            "--lease-duration",
            "60s",
            "--renew-deadline",
            "3s",
            "--retry-period",
            "500ms",
            "--grace-period",
            "50s",
            "--lock-file",
            lock,
            "--",
            "sh",
            "-c",
            // SIGTERM ignored, and the ignoring survives the exec: nothing in the command's
            // group dies of the SIGTERM that starts its stop. The file says the trap is set.
            &trapped_command,
        ],
    );
    demo.wait_for("child_started", STARTUP, |event| {
        event.event == "child_started"
    })
    .await;
    // Only once the command ignores SIGTERM: interrupted before, it dies of the first
    // signal's SIGTERM and the stop ends at once with status 0.
    lock_tests::demo::wait_until("the command's trap", STARTUP, || trapped.exists()).await;
    demo.interrupt();
    demo.stderr_line("press CTRL+C again", STARTUP).await;
    // Still stopping the command that ignores SIGTERM.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    demo.interrupt();
    let status = demo.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(130), "{}", demo.report());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second CTRL+C took {:?}",
        started.elapsed()
    );
    assert!(
        demo.stderr()
            .contains("SIGINT again: exiting without finishing the hand-over"),
        "{}",
        demo.report()
    );
}
