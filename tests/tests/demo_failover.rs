//! The `demo` binary on the file backend: three processes on one lock file hand over on CTRL+C
//! within a second and never report two leaders at once; bad flags are rejected; instances
//! without `--instance` elect normally; a stdout nobody reads does not stall the election; and
//! a hostile holder identity cannot forge text lines.

use std::path::Path;
use std::time::Duration;

use lock_tests::demo::{run_demo, wait_until, Demo};
use lock_tests::failover::three_instances_hand_over_on_ctrl_c;
use lock_tests::handover::handover_moves_leadership_to_the_named_instance;

const EXIT: Duration = Duration::from_secs(30);
/// Generous for a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);

/// Short timings on `lock`: a killed leader is replaced within 4 s.
fn flags(lock: &str) -> Vec<&str> {
    vec![
        "--lock-file",
        lock,
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "1s",
    ]
}

/// The holder named in the lock file (`None` while it cannot be read).
fn holder(lock: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let stored: serde_json::Value = serde_json::from_str(&text).ok()?;
    stored["record"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_the_leader_hands_over_within_a_second_and_never_to_two_leaders() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    three_instances_hand_over_on_ctrl_c(&["--lock-file", lock]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_handover_moves_leadership_among_three_processes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    handover_moves_leadership_to_the_named_instance(&["--lock-file", lock]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_timings_are_rejected_naming_the_flags_and_the_values_in_force() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let output = run_demo(
        &[
            "--instance",
            "a",
            "--lock-file",
            lock.to_str().expect("a UTF-8 temporary path"),
            "--lease-duration",
            "5s",
        ],
        EXIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: --renew-deadline (10s, the default) must be shorter than --lease-duration \
             (5s): "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("lower --renew-deadline or raise --lease-duration"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing on stdout");
    assert!(!lock.exists(), "the lock was not touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_durations_are_rejected_by_the_flag_parser() {
    let output = run_demo(&["--instance", "a", "--lease-duration", "soon"], EXIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--lease-duration"), "{stderr}");
    assert!(stderr.contains("'soon'"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
}

/// Issue 11, hole 12: durations that overflow an `Instant` or a float conversion panicked, and
/// nanosecond timings failed later with "no answer within 0ns". Each must exit with status 2 and
/// a message that names the flag and the value, without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_12_huge_and_tiny_durations_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    let cases: [&[&str]; 6] = [
        &["--lease-duration", "500000000000years"],
        &["--retry-period", "18446744073709551613s"],
        &["--renew-deadline", "3ns"],
        &["--retry-period", "1ns"],
        &["--lease-duration", "2ns"],
        &["--health-tolerance", "500000000000years"],
    ];
    for case in cases {
        let mut args = vec!["--instance", "a", "--lock-file", lock];
        args.extend_from_slice(case);
        let output = run_demo(&args, EXIT).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{case:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{case:?}: {stderr}");
        assert!(
            stderr.contains(case[0]),
            "{case:?} names the flag: {stderr}"
        );
        assert!(
            stderr.contains(&format!("'{}'", case[1])),
            "{case:?} names the value: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{case:?}: nothing on stdout");
    }
    assert!(
        !std::path::Path::new(lock).exists(),
        "the lock was not touched"
    );
}

/// Issue 11, hole 3 (demo side): without `--instance` every demo on a machine took the hostname
/// as its identity, so a second one adopted the first one's term and printed nothing, ever.
/// The default is now unique per process: the second follows the first and takes over on
/// CTRL+C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_3_two_demos_without_instance_on_one_machine_elect_normally() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    let mut args = vec!["--json"];
    args.extend(flags(lock));
    let mut first = Demo::start_with("first", &args);
    let leading = first
        .wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let second = Demo::start_with("second", &args);
    let following = second
        .wait_for("following the first", STARTUP, |event| {
            event.event == "following" && event.leader.is_some()
        })
        .await;
    assert_eq!(following.leader.as_deref(), Some(leading.instance.as_str()));
    assert_ne!(following.instance, leading.instance, "two identities");
    first.interrupt();
    assert!(first.wait_exit(EXIT).await.success(), "{}", first.report());
    let took_over = second
        .wait_for("leading", Duration::from_secs(10), |event| {
            event.event == "leading"
        })
        .await;
    assert!(took_over.term > leading.term, "{}", second.report());
}

/// Issue 11, hole 9: event lines were written inline on the elector's task, so a stdout pipe
/// that nobody reads blocked the election: a released lock stayed leaderless. With the pipe
/// full from the start, a standby must still take over a released lock within moments (well
/// under the lease), and still exit on CTRL+C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_9_a_stdout_nobody_reads_does_not_stall_the_election() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock_path = dir.path().join("election.json");
    let lock = lock_path.to_str().expect("a UTF-8 temporary path");
    let long_lease = [
        "--lock-file",
        lock,
        "--lease-duration",
        "20s",
        "--renew-deadline",
        "15s",
        "--retry-period",
        "1s",
    ];
    let mut a = Demo::start("a", &long_lease);
    a.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let mut args = vec!["--instance", "b"];
    args.extend(long_lease);
    let mut b = Demo::start_unread("b", &args);
    let filled = b.fill_stdout_pipe();
    assert!(filled > 0, "the pipe took the filler");
    // b reads the record and prints `following a` into the full pipe.
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.interrupt();
    assert!(a.wait_exit(EXIT).await.success(), "{}", a.report());
    wait_until(
        "b holding the released lock",
        Duration::from_secs(5),
        || holder(&lock_path).as_deref() == Some("b"),
    )
    .await;
    b.interrupt();
    let status = b.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}\n{}", b.report());
    assert_eq!(holder(&lock_path).as_deref(), Some(""), "b released");
}

/// Issue 11, hole 9, on stderr: the elector logs on its own task (the end of a term, before
/// the release is written: at `info` on CTRL+C, as a warning when the term is lost), so a
/// stderr pipe nobody reads held a leader's hand-over. With the leader's stderr full, a standby must still take over
/// at once, and the leader still exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_9_a_stderr_nobody_reads_does_not_stall_the_hand_over() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock_path = dir.path().join("election.json");
    let lock = lock_path.to_str().expect("a UTF-8 temporary path");
    let long_lease = [
        "--lock-file",
        lock,
        "--lease-duration",
        "20s",
        "--renew-deadline",
        "15s",
        "--retry-period",
        "1s",
    ];
    let mut args = vec!["--instance", "a"];
    args.extend(long_lease);
    let mut a = Demo::start_unread("a", &args);
    wait_until("a holding the lock", STARTUP, || {
        holder(&lock_path).as_deref() == Some("a")
    })
    .await;
    let filled = a.fill_stderr_pipe();
    assert!(filled > 0, "the pipe took the filler");
    let mut b = Demo::start("b", &long_lease);
    b.wait_for("following a", STARTUP, |event| event.event == "following")
        .await;
    a.interrupt();
    b.wait_for("leading", Duration::from_secs(5), |event| {
        event.event == "leading"
    })
    .await;
    let status = a.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    b.interrupt();
    assert!(b.wait_exit(EXIT).await.success(), "{}", b.report());
}

/// Issue 11, hole 13: a holder identity with a newline and terminal escapes printed a forged
/// `c: leading (term 99)` line and raw escapes. Text lines escape every control character: one
/// line for the holder, and no ESC byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_13_a_hostile_identity_cannot_forge_text_lines() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock_path = dir.path().join("election.json");
    let lock = lock_path.to_str().expect("a UTF-8 temporary path");
    let hostile = "x\nc: leading (term 99)\u{1b}[2J";
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stored = serde_json::json!({
        "version": 1,
        "record": {
            "holderIdentity": hostile,
            "leaseDurationSeconds": 3600,
            "acquireTime": now,
            "renewTime": now,
            "leaderTransitions": 5,
        }
    });
    std::fs::write(&lock_path, format!("{stored}\n")).expect("the lock file is written");
    let mut args = vec!["--instance", "b"];
    args.extend(flags(lock));
    let mut b = Demo::start_with("b", &args);
    wait_until("the following line", STARTUP, || {
        b.unparsed()
            .iter()
            .any(|line| line.starts_with("b: following"))
    })
    .await;
    b.interrupt();
    assert!(b.wait_exit(EXIT).await.success(), "{}", b.report());
    let lines = b.unparsed();
    let following: Vec<&String> = lines.iter().filter(|l| l.contains("following")).collect();
    assert_eq!(following.len(), 1, "{lines:#?}");
    assert!(
        following[0].starts_with(r"b: following x\nc: leading (term 99)\u{1b}[2J"),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("c:")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "{lines:#?}");
    assert_eq!(
        holder(&lock_path).as_deref(),
        Some(hostile),
        "not overwritten"
    );
}
