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
    let names = election_events(&a);
    assert_eq!(
        names,
        ["leading", "stopped_leading", "released", "exiting"],
        "{}",
        a.report()
    );
    // The child's exit was reported as a JSON line of its own.
    let exited = a
        .events()
        .into_iter()
        .find(|event| event.event == "child_exited")
        .unwrap_or_else(|| panic!("no child_exited line\n{}", a.report()));
    assert_eq!(exited.exit_code, Some(3), "{exited:?}");
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

/// The names of `demo`'s election events (not its command's), in order.
fn election_events(demo: &Demo) -> Vec<String> {
    demo.events()
        .into_iter()
        .filter(|event| !event.is_child())
        .map(|event| event.event)
        .collect()
}

/// True when `demo`'s last term began and has not ended.
fn leads(demo: &Demo) -> bool {
    demo.events()
        .iter()
        .rev()
        .find(|event| event.event == "leading" || event.event == "stopped_leading")
        .is_some_and(|event| event.event == "leading")
}

/// A child that appends `beat <pid> <token> <identity> <ns>` to `log` every 50 ms until it is
/// killed (it ignores nothing: SIGTERM ends it).
fn beating_script(log: &Path) -> String {
    format!(
        r#"while :; do echo "beat $$ $LEADER_FENCING_TOKEN $LEADER_IDENTITY $(date +%s%N)" >> '{}'; sleep 0.05; done"#,
        log.display()
    )
}

fn start_beating(name: &str, lock: &str, log: &Path) -> Demo {
    let mut args = flags(lock);
    args.extend(["--", "sh", "-c"].map(str::to_owned));
    args.push(beating_script(log));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Demo::start(name, &args)
}

/// The beats of one child: its pid and identity, and its first and last beat.
#[derive(Clone, Debug)]
struct Beats {
    pid: i32,
    token: u64,
    identity: String,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// The children that beat in `log`, in the order they first beat.
fn read_beats(log: &Path) -> Vec<Beats> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut children: Vec<Beats> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A line being written while the test reads may be cut short: skip it.
        let ["beat", pid, token, identity, ns] = fields[..] else {
            continue;
        };
        let (Ok(pid), Ok(token), Ok(ns)) = (pid.parse(), token.parse(), ns.parse::<i64>()) else {
            continue;
        };
        let at = DateTime::from_timestamp_nanos(ns);
        match children.iter_mut().find(|child| child.pid == pid) {
            Some(child) => child.last = child.last.max(at),
            None => children.push(Beats {
                pid,
                token,
                identity: identity.to_owned(),
                first: at,
                last: at,
            }),
        }
    }
    children.sort_by_key(|child| child.first);
    children
}

/// Fails when two children beat at the same time.
fn assert_one_child_at_a_time(log: &Path) {
    let children = read_beats(log);
    for pair in children.windows(2) {
        assert!(
            pair[0].last < pair[1].first,
            "two commands ran at once: {children:#?}"
        );
        assert!(pair[0].token < pair[1].token, "{children:#?}");
    }
}

/// The process state letter of `pid` from /proc (`None`: gone; `Z`: dead, not yet reaped).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn is_dead(pid: i32) -> bool {
    matches!(process_state(pid), None | Some('Z'))
}

/// Waits until `name`'s command beats and returns its beats.
async fn first_beats_of(name: &str, log: &Path) -> Beats {
    wait_until(&format!("beats of {name}'s command"), STARTUP, || {
        read_beats(log).iter().any(|child| child.identity == name)
    })
    .await;
    read_beats(log)
        .into_iter()
        .find(|child| child.identity == name)
        .expect("beats")
}

/// Issue 11, hole 5: after `kill -9` of an exec-mode leader its command kept running while
/// another instance started its own. The command must die with its demo, well within the lease,
/// and never beat at the same time as the next leader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_5_kill_9_of_an_exec_leader_kills_its_command() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path").to_owned();
    let log = dir.path().join("beats.log");
    let mut a = start_beating("a", &lock, &log);
    let first = first_beats_of("a", &log).await;
    let mut b = start_beating("b", &lock, &log);
    b.wait_for("following a", STARTUP, |event| event.event == "following")
        .await;
    a.signal(Signal::SIGKILL);
    // The lease is 4 s: the command must be gone long before anyone may take over.
    let killed = tokio::time::Instant::now();
    wait_until(
        "the end of a's command after kill -9 of a",
        Duration::from_secs(1),
        || is_dead(first.pid),
    )
    .await;
    eprintln!("a's command died {:?} after a", killed.elapsed());
    let _ = a.wait_exit(EXIT).await;
    b.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    first_beats_of("b", &log).await;
    b.interrupt();
    assert!(b.wait_exit(EXIT).await.success(), "{}", b.report());
    assert_one_child_at_a_time(&log);
}

/// Issue 11, hole 5: SIGSTOP of an exec-mode leader left its command running; after the lease
/// another instance started its own, so two ran at once. The command must stop with its demo
/// (state T) within moments, stay stopped while the other instance's command runs, and never
/// run again once its demo resumes after its term ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_5_sigstop_of_an_exec_leader_stops_its_command() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path").to_owned();
    let log = dir.path().join("beats.log");
    let mut a = start_beating("a", &lock, &log);
    let first = first_beats_of("a", &log).await;
    let mut b = start_beating("b", &lock, &log);
    b.wait_for("following a", STARTUP, |event| event.event == "following")
        .await;
    a.signal(Signal::SIGSTOP);
    wait_until(
        "a's command stopped with a",
        Duration::from_millis(500),
        || process_state(first.pid) == Some('T'),
    )
    .await;
    b.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let second = first_beats_of("b", &log).await;
    assert_eq!(
        process_state(first.pid),
        Some('T'),
        "a's command stays stopped"
    );
    a.signal(Signal::SIGCONT);
    // Its term ended while it was stopped: the command is ended, not resumed.
    wait_until(
        "the end of a's command after a resumed",
        Duration::from_secs(5),
        || is_dead(first.pid),
    )
    .await;
    a.wait_for("stopped_leading", EXIT, |event| {
        event.event == "stopped_leading"
    })
    .await;
    let beats = read_beats(&log);
    let old = beats
        .iter()
        .find(|child| child.pid == first.pid)
        .expect("a's beats");
    assert!(old.last < second.first, "{beats:#?}");
    // The standby first: it would take over from b's release and start one more command.
    a.interrupt();
    assert!(a.wait_exit(EXIT).await.success(), "{}", a.report());
    b.interrupt();
    assert!(b.wait_exit(EXIT).await.success(), "{}", b.report());
    assert_one_child_at_a_time(&log);
}

/// Issue 11, hole 5: SIGHUP (closing the terminal) made an exec-mode leader exit with status
/// 129 without stopping its command or releasing the lock. It must act as SIGTERM: stop the
/// command, release, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_5_sighup_stops_the_command_and_releases_as_sigterm_does() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock_path = dir.path().join("election.json");
    let lock = lock_path.to_str().expect("a UTF-8 path").to_owned();
    let log = dir.path().join("children.log");
    let mut a = start("a", &lock, &log);
    a.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    wait_until("a running child", STARTUP, || {
        read_log(&log).last().is_some_and(|line| !line.stop)
    })
    .await;
    a.signal(Signal::SIGHUP);
    let status = a.wait_exit(EXIT).await;
    assert!(status.success(), "{status}\n{}", a.report());
    let lines = read_log(&log);
    assert!(
        lines.len() == 2 && lines[1].stop,
        "the command got SIGTERM and ended: {lines:?}"
    );
    let names = election_events(&a);
    assert_eq!(names, ["leading", "stopped_leading", "released", "exiting"]);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).expect("the lock file"))
            .expect("a record");
    assert_eq!(record["record"]["holderIdentity"], "", "{record}");
}

/// Issue 11, hole 5, the other side: a stop of the leader shorter than its renew deadline
/// pauses its command with it, and the command goes on when the leader does (its term is
/// still valid), instead of staying stopped for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_5_a_short_stop_of_the_leader_pauses_its_command_and_resumes_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path").to_owned();
    let log = dir.path().join("beats.log");
    let mut a = start_beating("a", &lock, &log);
    let first = first_beats_of("a", &log).await;
    a.signal(Signal::SIGSTOP);
    wait_until(
        "a's command stopped with a",
        Duration::from_millis(500),
        || process_state(first.pid) == Some('T'),
    )
    .await;
    let paused = read_beats(&log)[0].last;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal(Signal::SIGCONT);
    wait_until("a's command beating again", Duration::from_secs(2), || {
        read_beats(&log)[0].last > paused
    })
    .await;
    assert!(!is_dead(first.pid), "the same command goes on");
    assert!(
        a.events()
            .iter()
            .all(|event| event.event != "stopped_leading"),
        "{}",
        a.report()
    );
    a.interrupt();
    assert!(a.wait_exit(EXIT).await.success(), "{}", a.report());
    assert_one_child_at_a_time(&log);
}

/// Issue 11, holes 5 and 9: the kill path must never wait on output. A command that floods a
/// stdout nobody reads fills the pipe the demo writes its lines to; CTRL+C must still stop the
/// command, release the lock and exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_5_the_kill_path_never_waits_on_output() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock_path = dir.path().join("election.json");
    let lock = lock_path.to_str().expect("a UTF-8 path").to_owned();
    let mut args = vec!["--instance".to_owned(), "a".to_owned()];
    args.extend(flags(&lock));
    args.extend(["--", "yes", "flooding stdout"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a = Demo::start_unread("a", &args);
    wait_until("a holding the lock", STARTUP, || {
        std::fs::read_to_string(&lock_path)
            .is_ok_and(|text| text.contains(r#""holderIdentity":"a""#))
    })
    .await;
    // `yes` fills the pipe within moments; give it one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.interrupt();
    let status = a.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).expect("the lock file"))
            .expect("a record");
    assert_eq!(record["record"]["holderIdentity"], "", "{record}");
}
