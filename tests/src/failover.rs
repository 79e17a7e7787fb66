//! The three-process failover scenario, shared by every backend: CTRL+C on the leader hands
//! the lock over within a second, and at no moment do two processes report leading.

use std::time::Duration;

use tokio::time::Instant;

use crate::demo::{overlapping_terms, wait_until, Demo, DemoEvent};

/// Generous limits for a loaded machine; the hand-over itself must take at most [`HANDOVER`].
const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);
/// How long after CTRL+C on the leader another instance must report leading.
const HANDOVER: Duration = Duration::from_secs(1);

fn names(events: &[DemoEvent]) -> Vec<&str> {
    events.iter().map(|event| event.event.as_str()).collect()
}

/// What every process printed, for failure messages.
fn reports(demos: &[Demo]) -> String {
    let reports: Vec<String> = demos.iter().map(Demo::report).collect();
    reports.join("\n")
}

fn is_leading(event: &DemoEvent) -> bool {
    event.event == "leading"
}

/// Starts three `demo --json` instances (a, b, c) with `backend_args` (the flags that choose
/// and address the lock) and short timings, sends SIGINT to the leader, and asserts that another
/// instance reports leading within a second with a greater term, that the old leader printed
/// `stopped_leading`, `released`, `exiting` and exited 0, that the last standby follows the new
/// leader, that the others exit 0 on SIGINT too, and that at no moment did two processes report
/// leading. Every backend's test calls this with its own flags.
pub async fn three_instances_hand_over_on_ctrl_c(backend_args: &[&str]) {
    let mut args = backend_args.to_vec();
    args.extend([
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "2s",
    ]);
    let mut demos: Vec<Demo> = ["a", "b", "c"]
        .into_iter()
        .map(|name| Demo::start(name, &args))
        .collect();

    // One instance leads and the two others follow it (so they are standing by on the lock).
    let settled = |demos: &[Demo]| {
        let leaders: Vec<&Demo> = demos
            .iter()
            .filter(|demo| demo.events().iter().any(is_leading))
            .collect();
        let [leader] = leaders[..] else {
            return false;
        };
        demos
            .iter()
            .filter(|demo| demo.name() != leader.name())
            .all(|demo| {
                demo.events().last().is_some_and(|last| {
                    last.event == "following" && last.leader.as_deref() == Some(leader.name())
                })
            })
    };
    wait_until("single leader followed by the two others", STARTUP, || {
        settled(&demos)
    })
    .await;
    // Let the leader renew at least once (retry period 2 s) while the others stand by: the
    // renewals they are told about must not make anybody else lead.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(settled(&demos), "{}", reports(&demos));
    let old = demos
        .iter()
        .position(|demo| demo.events().iter().any(is_leading))
        .expect("a leader");
    let old_term = demos[old]
        .events()
        .iter()
        .find(|event| is_leading(event))
        .and_then(|event| event.term)
        .expect("a leading line has a term");

    // CTRL+C on the leader.
    let signalled = Instant::now();
    demos[old].interrupt();

    // (1) Another instance reports leading within a second.
    let took_over = |event: &DemoEvent| is_leading(event) && event.arrived >= signalled;
    wait_until("new leader after CTRL+C", STARTUP, || {
        demos.iter().any(|demo| demo.events().iter().any(took_over))
    })
    .await;
    let (new, first_leading) = demos
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != old)
        .filter_map(|(index, demo)| {
            demo.events()
                .into_iter()
                .find(took_over)
                .map(|e| (index, e))
        })
        .min_by_key(|(_, event)| event.arrived)
        .expect("a new leader");
    let handover = first_leading.arrived - signalled;
    assert!(
        handover <= HANDOVER,
        "{} reported leading {handover:?} after CTRL+C on {}, more than {HANDOVER:?}\n{}\n{}",
        demos[new].name(),
        demos[old].name(),
        demos[old].report(),
        demos[new].report()
    );
    let new_term = first_leading.term.expect("a leading line has a term");
    assert!(
        new_term > old_term,
        "the new term {new_term} must be greater than the old {old_term}"
    );

    // (2) The old leader ended its term, released the lock, and exited with status 0.
    let status = demos[old].wait_exit(EXIT).await;
    assert!(status.success(), "{status}\n{}", demos[old].report());
    let after_signal: Vec<DemoEvent> = demos[old]
        .events()
        .into_iter()
        .filter(|event| event.arrived >= signalled)
        .collect();
    let shutdown: Vec<&str> = names(&after_signal)
        .into_iter()
        .filter(|name| *name != "following")
        .collect();
    assert_eq!(
        shutdown,
        ["stopped_leading", "released", "exiting"],
        "{}",
        demos[old].report()
    );
    for event in after_signal.iter().filter(|event| event.term.is_some()) {
        assert_eq!(event.term, Some(old_term), "{event:?}");
    }

    // The remaining standby follows the new leader.
    let standby = (0..3)
        .find(|index| *index != old && *index != new)
        .expect("a third instance");
    let new_name = demos[new].name().to_owned();
    demos[standby]
        .wait_for("following the new leader", STARTUP, |event| {
            event.event == "following" && event.leader.as_deref() == Some(new_name.as_str())
        })
        .await;

    // Stop the rest: the new leader first (the standby may take over once more), then the last.
    for index in [new, standby] {
        demos[index].interrupt();
        let status = demos[index].wait_exit(EXIT).await;
        assert!(status.success(), "{status}\n{}", demos[index].report());
        let events = demos[index].events();
        assert_eq!(
            events.last().map(|event| event.event.as_str()),
            Some("exiting"),
            "{}",
            demos[index].report()
        );
    }

    // Every line had the documented form and named its own instance.
    for demo in &demos {
        assert!(demo.unparsed().is_empty(), "{}", demo.report());
        assert!(
            demo.events()
                .iter()
                .all(|event| event.instance == demo.name()),
            "{}",
            demo.report()
        );
    }

    // (3) At no moment did two processes report leading: the terms, from each `leading` line
    // to its `stopped_leading` line (times from one machine clock), do not overlap, and every
    // term was reported ended.
    let all: Vec<Vec<DemoEvent>> = demos.iter().map(Demo::events).collect();
    let overlaps = overlapping_terms(&all);
    let reports = reports(&demos);
    assert!(
        overlaps.is_empty(),
        "two processes reported leading at once: {overlaps:#?}\n{}",
        reports
    );
    eprintln!(
        "{} took over from {} {handover:?} after CTRL+C\n{}",
        demos[new].name(),
        demos[old].name(),
        reports
    );
    for events in &all {
        let leading = events.iter().filter(|event| is_leading(event)).count();
        let stopped = names(events)
            .iter()
            .filter(|name| **name == "stopped_leading")
            .count();
        assert_eq!(leading, stopped, "{}", reports);
    }
}
