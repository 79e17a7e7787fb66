//! Exec mode, `demo [options] -- CMD ARGS...`, with real processes on a file lock: the command
//! runs only in the leading instance, with its fencing token and identity in the environment,
//! gets SIGTERM when its instance stops leading, and never runs in two instances at once across
//! several handovers (the children append `start`/`stop` lines to one file, checked here). A
//! command that exits on its own ends the term and the demo, with the command's status.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lock_tests::demo::{wait_until, Demo, DemoEvent};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous limits for a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);
/// How many times the leader is interrupted.
const HANDOVERS: usize = 4;

/// The flags of every instance: the lock file, short timings, a short grace period.
fn flags(lock: &str) -> Vec<String> {
    [
        "--lock-file",
        lock,
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "1s",
        "--grace-period",
        "500ms",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A child that appends `start <pid> <token> <identity> <ns>` to `log`, and on SIGTERM
/// `stop <pid> <token> <identity> <ns>` before exiting 0.
fn child_script(log: &Path) -> String {
    let log = log.display();
    format!(
        r#"echo "start $$ $LEADER_FENCING_TOKEN $LEADER_IDENTITY $(date +%s%N)" >> '{log}'
trap 'echo "stop $$ $LEADER_FENCING_TOKEN $LEADER_IDENTITY $(date +%s%N)" >> '"'"'{log}'"'"'; exit 0' TERM
while :; do sleep 0.05; done"#
    )
}

fn start(name: &str, lock: &str, log: &Path) -> Demo {
    let mut args = flags(lock);
    args.extend(["--", "sh", "-c"].map(str::to_owned));
    args.push(child_script(log));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Demo::start(name, &args)
}

/// One line of the children's log.
#[derive(Clone, Debug)]
struct ChildLine {
    stop: bool,
    pid: i32,
    token: u64,
    identity: String,
    at: DateTime<Utc>,
}

fn read_log(log: &Path) -> Vec<ChildLine> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [kind, pid, token, identity, ns] = fields[..] else {
                panic!("malformed line {line:?} in\n{text}");
            };
            assert!(kind == "start" || kind == "stop", "{line:?}");
            let ns: i64 = ns.parse().expect("nanoseconds");
            ChildLine {
                stop: kind == "stop",
                pid: pid.parse().expect("a pid"),
                token: token.parse().expect("a fencing token"),
                identity: identity.to_owned(),
                at: DateTime::from_timestamp_nanos(ns),
            }
        })
        .collect()
}

fn leading_terms(events: &[DemoEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|event| event.event == "leading")
        .filter_map(|event| event.term)
        .collect()
}

/// The demos' own view: the `leading` and `stopped_leading` lines of `name` for `term`.
fn term_bounds(
    demos: &HashMap<String, Vec<DemoEvent>>,
    name: &str,
    term: u64,
) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let events = &demos[name];
    let start = events
        .iter()
        .find(|e| e.event == "leading" && e.term == Some(term))
        .unwrap_or_else(|| panic!("{name} never reported leading term {term}: {events:#?}"))
        .ts;
    let end = events
        .iter()
        .find(|e| e.event == "stopped_leading" && e.term == Some(term))
        .map(|e| e.ts);
    (start, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_runs_only_on_the_leader_and_never_twice_across_handovers() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path").to_owned();
    let log = dir.path().join("children.log");
    let mut running: Vec<Demo> = ["a", "b", "c"]
        .into_iter()
        .map(|name| start(name, &lock, &log))
        .collect();
    let mut finished: Vec<Demo> = Vec::new();

    for round in 0..HANDOVERS {
        // Exactly one running instance has started the command; wait for it.
        wait_until("a running child", STARTUP, || {
            read_log(&log).last().is_some_and(|line| !line.stop)
        })
        .await;
        let started = read_log(&log).last().cloned().expect("a start line");
        let leader = running
            .iter()
            .position(|demo| demo.name() == started.identity)
            .unwrap_or_else(|| panic!("round {round}: {started:?} names no running instance"));
        // The child may write its line before the test has read its instance's `leading`
        // line from the pipe: give the reader a moment, then require the two to agree.
        wait_until("the leader's leading line", Duration::from_secs(5), || {
            leading_terms(&running[leader].events()).last() == Some(&started.token)
        })
        .await;
        assert_eq!(
            leading_terms(&running[leader].events()).last(),
            Some(&started.token),
            "round {round}: the child's token is its instance's current term\n{}",
            running[leader].report()
        );
        // Let it renew a few times, then interrupt it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !read_log(&log).last().expect("a line").stop,
            "the child still runs while its instance leads"
        );
        let mut demo = running.remove(leader);
        demo.interrupt();
        let status = demo.wait_exit(EXIT).await;
        assert!(status.success(), "{status}\n{}", demo.report());
        let stopped = read_log(&log);
        let stop = stopped
            .iter()
            .find(|line| line.stop && line.pid == started.pid)
            .unwrap_or_else(|| panic!("the child {} got no SIGTERM: {stopped:?}", started.pid));
        assert_eq!(stop.token, started.token);
        finished.push(demo);
        // A fresh instance joins as a standby, so that three keep taking part.
        let name = format!("n{round}");
        running.push(start(&name, &lock, &log));
    }
    // The last leader's child starts; then everybody stops.
    wait_until("a child of the last leader", STARTUP, || {
        read_log(&log).last().is_some_and(|line| !line.stop)
    })
    .await;
    // Standbys first, the leader last: once the leader released, a standby still running would
    // rightly take over and start one more child.
    running.sort_by_key(leads);
    for mut demo in running {
        demo.interrupt();
        let status = demo.wait_exit(EXIT).await;
        assert!(status.success(), "{status}\n{}", demo.report());
        finished.push(demo);
    }

    // The log alternates start/stop of one child at a time: never two at once.
    let lines = read_log(&log);
    let reports: Vec<String> = finished.iter().map(Demo::report).collect();
    let reports = reports.join("\n");
    assert_eq!(lines.len(), 2 * (HANDOVERS + 1), "{lines:#?}\n{reports}");
    let by_name: HashMap<String, Vec<DemoEvent>> = finished
        .iter()
        .map(|demo| (demo.name().to_owned(), demo.events()))
        .collect();
    let mut tokens = Vec::new();
    for pair in lines.chunks(2) {
        let [start, stop] = pair else { unreachable!() };
        assert!(!start.stop && stop.stop, "{lines:#?}");
        assert_eq!(
            (start.pid, start.token, &start.identity),
            (stop.pid, stop.token, &stop.identity),
            "{lines:#?}"
        );
        assert!(start.at <= stop.at, "{lines:#?}");
        // The child ran within its instance's term, as the instance reported it.
        let (leading, stopped) = term_bounds(&by_name, &start.identity, start.token);
        let stopped = stopped.unwrap_or_else(|| {
            panic!(
                "{} never reported the end of term {}\n{reports}",
                start.identity, start.token
            )
        });
        let ms = chrono::TimeDelta::milliseconds(1);
        assert!(leading <= start.at, "{start:?} before {leading}");
        assert!(stop.at <= stopped + ms, "{stop:?} after {stopped}");
        tokens.push(start.token);
    }
    for pair in lines.windows(2) {
        assert!(
            pair[0].at <= pair[1].at,
            "log lines in time order: {lines:#?}"
        );
    }
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "every child ran for a new term: {tokens:?}"
    );
    // No child outlived its demo.
    for line in &lines {
        let alive = kill(Pid::from_raw(line.pid), None).is_ok();
        if alive {
            let _ = kill(Pid::from_raw(-line.pid), Signal::SIGKILL);
        }
        assert!(!alive, "child {} still runs", line.pid);
    }
    eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_exits_ends_the_term_and_the_demo_with_its_status() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path").to_owned();
    let mut args = flags(&lock);
    args.extend(["--", "sh", "-c", "sleep 1; exit 3"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a = Demo::start("a", &args);
    a.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let status = a.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(3), "{}", a.report());
    let names: Vec<String> = a.events().into_iter().map(|event| event.event).collect();
    assert_eq!(
        names,
        ["leading", "stopped_leading", "released", "exiting"],
        "{}",
        a.report()
    );
    // The child's exit was reported as a JSON line of its own.
    let unparsed = a.unparsed();
    let exited = unparsed
        .iter()
        .find(|line| line.contains(r#""event":"child_exited""#))
        .unwrap_or_else(|| panic!("no child_exited line\n{}", a.report()));
    assert!(exited.contains(r#""exit_code":3"#), "{exited}");
    // The lock was released: it names nobody.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock).expect("the lock file"))
            .expect("a record");
    assert_eq!(record["record"]["holderIdentity"], "", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_restart_a_command_that_exits_is_started_again_in_the_same_term() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path").to_owned();
    let log = dir.path().join("runs.log");
    let mut args = flags(&lock);
    args.extend(["--on-child-exit", "restart", "--", "sh", "-c"].map(str::to_owned));
    args.push(format!(
        r#"echo "$LEADER_FENCING_TOKEN" >> '{}'; exit 1"#,
        log.display()
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a = Demo::start("a", &args);
    wait_until("three runs", STARTUP, || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.lines().count() >= 3)
    })
    .await;
    let runs = std::fs::read_to_string(&log).expect("the log");
    let term = leading_terms(&a.events())[0].to_string();
    assert!(runs.lines().all(|line| line == term), "{runs}");
    a.interrupt();
    let status = a.wait_exit(EXIT).await;
    assert!(status.success(), "{}", a.report());
}

/// True when `demo`'s last term began and has not ended.
fn leads(demo: &Demo) -> bool {
    demo.events()
        .iter()
        .rev()
        .find(|event| event.event == "leading" || event.event == "stopped_leading")
        .is_some_and(|event| event.event == "leading")
}
