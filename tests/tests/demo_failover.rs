//! The `demo` binary on the file backend: three processes on one lock file hand over on CTRL+C
//! within a second and never report two leaders at once; bad flags are rejected.

use std::time::Duration;

use lock_tests::demo::run_demo;
use lock_tests::failover::three_instances_hand_over_on_ctrl_c;

const EXIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_the_leader_hands_over_within_a_second_and_never_to_two_leaders() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 temporary path");
    three_instances_hand_over_on_ctrl_c(&["--lock-file", lock]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_timings_are_rejected_with_client_gos_message() {
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
            "--renew-deadline",
            "10s",
        ],
        EXIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("leaseDuration must be greater than renewDeadline"),
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
