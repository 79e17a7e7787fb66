//! The planned-handover scenario, shared by every backend: three `demo` instances, and
//! `demo handover --to NAME` moves leadership to each named instance in turn, within a second,
//! with growing terms and never two leaders at once; a request naming the leader itself is
//! refused.

use std::time::Duration;

use tokio::time::Instant;

use crate::demo::{overlapping_terms, run_demo, wait_until, Demo, DemoEvent};

/// Generous limits for a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);
/// How long after the request the named instance must report leading: milliseconds where the
/// backend has hints, at most a retry period otherwise; a second tells those from a lease.
const HANDOVER: Duration = Duration::from_secs(1);

/// How many handovers the scenario asks for.
const ROUNDS: usize = 4;

/// The instance whose last `leading` line is not followed by a `stopped_leading` line, with
/// that term, if exactly one such instance exists.
fn sole_leader(demos: &[Demo]) -> Option<(usize, u64)> {
    let leading: Vec<(usize, u64)> = demos
        .iter()
        .enumerate()
        .filter_map(|(index, demo)| {
            let events = demo.events();
            let last = events
                .iter()
                .rev()
                .find(|event| event.event == "leading" || event.event == "stopped_leading")?;
            (last.event == "leading").then(|| (index, last.term.unwrap_or(0)))
        })
        .collect();
    match leading[..] {
        [one] => Some(one),
        _ => None,
    }
}

fn reports(demos: &[Demo]) -> String {
    demos
        .iter()
        .map(Demo::report)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON lines `demo handover` printed.
fn handover_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}")))
        .collect()
}

/// Starts `demo --json` instances a, b and c with `backend_args` (the flags that choose and
/// address the lock) and short timings, then runs `demo handover --to NAME --json` with the
/// same lock flags [`ROUNDS`] times, each naming the standby after the leader: each must exit
/// 0 and report `handed_over` to NAME, NAME must report leading within [`HANDOVER`] with a
/// greater term, and the old leader `stopped_leading` and `released` and go on as a standby.
/// A request naming the current leader exits 1 and changes nothing. At no moment did two
/// instances report leading. Every backend's test calls this with its own flags.
pub async fn handover_moves_leadership_to_the_named_instance(backend_args: &[&str]) {
    let mut args = backend_args.to_vec();
    args.extend([
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "1s",
    ]);
    let mut demos: Vec<Demo> = ["a", "b", "c"]
        .into_iter()
        .map(|name| Demo::start(name, &args))
        .collect();
    let followed_by_all = |demos: &[Demo], leader: usize| {
        let name = demos[leader].name().to_owned();
        demos
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != leader)
            .all(|(_, demo)| {
                demo.events()
                    .iter()
                    .rev()
                    .find(|e| e.event == "following")
                    .is_some_and(|event| event.leader.as_deref() == Some(name.as_str()))
            })
    };
    wait_until("one leader followed by the two others", STARTUP, || {
        sole_leader(&demos).is_some_and(|(leader, _)| followed_by_all(&demos, leader))
    })
    .await;

    // Asking the leader to hand over to itself is refused, and nothing happens.
    let (leader, term) = sole_leader(&demos).expect("a leader");
    let mut to_self = vec!["handover", "--to", demos[leader].name(), "--json"];
    to_self.extend_from_slice(backend_args);
    let refused = run_demo(&to_self, EXIT).await;
    let lines = handover_lines(&refused.stdout);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{lines:?} {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "handover_refused", "{lines:?}");
    assert!(
        lines[0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("already leads")),
        "{lines:?}"
    );
    assert_eq!(
        sole_leader(&demos),
        Some((leader, term)),
        "{}",
        reports(&demos)
    );

    let mut previous_term = term;
    for _ in 0..ROUNDS {
        let (leader, _) = sole_leader(&demos).expect("a leader");
        let to = (leader + 1) % demos.len();
        let to_name = demos[to].name().to_owned();
        // Let every instance settle on its watch after the last change.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = Instant::now();
        let mut request = vec!["handover", "--to", to_name.as_str(), "--json"];
        request.extend_from_slice(backend_args);
        let output = run_demo(&request, EXIT).await;
        let lines = handover_lines(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{lines:?} {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            reports(&demos)
        );
        let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
        assert_eq!(events, ["handover_requested", "handed_over"], "{lines:?}");
        assert_eq!(lines[0]["from"], demos[leader].name(), "{lines:?}");
        assert_eq!(lines[1]["leader"], to_name.as_str(), "{lines:?}");

        let started = |event: &DemoEvent| event.event == "leading" && event.arrived >= asked;
        wait_until("the named instance leading", STARTUP, || {
            demos[to].events().iter().any(started)
        })
        .await;
        let leading = demos[to]
            .events()
            .into_iter()
            .find(started)
            .expect("a leading line");
        let took = leading.arrived - asked;
        assert!(
            took <= HANDOVER,
            "{to_name} led {took:?} after the request\n{}",
            reports(&demos)
        );
        let new_term = leading.term.expect("a term");
        assert!(new_term > previous_term, "{new_term} after {previous_term}");
        previous_term = new_term;
        // The old leader ended its term, released, and stands by.
        let old: Vec<String> = demos[leader]
            .events()
            .into_iter()
            .filter(|event| event.arrived >= asked && event.event != "following")
            .map(|event| event.event)
            .collect();
        assert_eq!(
            old,
            ["stopped_leading", "released"],
            "{}",
            demos[leader].report()
        );
        wait_until(
            "every other instance following the new leader",
            STARTUP,
            || followed_by_all(&demos, to),
        )
        .await;
    }

    for demo in &mut demos {
        demo.interrupt();
    }
    for demo in &mut demos {
        let status = demo.wait_exit(EXIT).await;
        assert!(status.success(), "{status}\n{}", demo.report());
        assert!(demo.unparsed().is_empty(), "{}", demo.report());
    }
    let all: Vec<Vec<DemoEvent>> = demos.iter().map(Demo::events).collect();
    let overlaps = overlapping_terms(&all);
    assert!(
        overlaps.is_empty(),
        "two instances reported leading at once: {overlaps:#?}\n{}",
        reports(&demos)
    );
}
