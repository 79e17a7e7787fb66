//! Readiness-gated candidacy with real `demo` processes on one lock file: an instance whose
//! `--ready-url` answers 503 never leads, not even when it is alone and the lock is free; an
//! instance whose `--ready-command` starts failing while it leads hands over to a ready one at
//! once, and its `GET /leader` says it is not ready.

use std::time::Duration;

use lock_tests::demo::{overlapping_terms, wait_until, Demo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);
const TIMINGS: [&str; 8] = [
    "--lease-duration",
    "4s",
    "--renew-deadline",
    "3s",
    "--retry-period",
    "1s",
    "--ready-period",
    "200ms",
];

/// Answers every HTTP request with 503 until the test ends; returns its URL.
async fn never_ready() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    format!("http://{address}/ready")
}

fn led(demo: &Demo) -> bool {
    demo.events().iter().any(|event| event.event == "leading")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unready_instance_never_leads_and_an_unready_leader_hands_over() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join("election.json");
    let lock = lock.to_str().expect("a UTF-8 path").to_owned();
    let flag = |name: &str| dir.path().join(format!("{name}-ready"));
    let url = never_ready().await;

    // a alone, its readiness URL failing: the lock is free, yet a never takes it.
    let mut args = vec!["--lock-file", lock.as_str(), "--ready-url", url.as_str()];
    args.extend(TIMINGS);
    let mut a = Demo::start("a", &args);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !led(&a),
        "a led while its --ready-url failed\n{}",
        a.report()
    );
    assert!(
        !std::path::Path::new(&lock).exists(),
        "nothing was written to the lock"
    );

    // b and c, ready by their command: one of them leads; a still does not.
    let ready_demo = |name: &str| {
        std::fs::write(flag(name), "").expect("the readiness file");
        let command = format!("test -f {}", flag(name).display());
        let mut args = vec![
            "--lock-file".to_owned(),
            lock.clone(),
            "--ready-command".to_owned(),
            command,
            "--http".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        args.extend(TIMINGS.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Demo::start(name, &args)
    };
    let mut b = ready_demo("b");
    wait_until("b leading", STARTUP, || led(&b)).await;
    let mut c = ready_demo("c");
    c.wait_for("c following b", STARTUP, |event| {
        event.event == "following" && event.leader.as_deref() == Some("b")
    })
    .await;
    let b_base = b.http_base(STARTUP).await;

    // b turns unready while leading: it hands over to c at once, never to a.
    std::fs::remove_file(flag("b")).expect("remove b's readiness file");
    let unready_at = Instant::now();
    wait_until("c leading", STARTUP, || led(&c)).await;
    let took = unready_at.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "c took over {took:?} after b's check started failing (ready period 200 ms)"
    );
    let b_events: Vec<String> = b.events().into_iter().map(|event| event.event).collect();
    let stop = b_events
        .iter()
        .position(|event| event == "stopped_leading")
        .expect("b stopped leading");
    assert_eq!(
        b_events.get(stop + 1).map(String::as_str),
        Some("released"),
        "{b_events:?}"
    );
    let view: serde_json::Value = reqwest::get(format!("{b_base}/leader"))
        .await
        .expect("GET /leader")
        .json()
        .await
        .expect("JSON");
    assert_eq!(view["ready"], false, "{view}");
    assert_eq!(view["is_leader"], false, "{view}");
    assert_eq!(view["leader"], "c", "{view}");

    assert!(!led(&a), "a never led\n{}", a.report());
    for demo in [&mut a, &mut b, &mut c] {
        demo.interrupt();
        let status = demo.wait_exit(EXIT).await;
        assert!(status.success(), "{status}\n{}", demo.report());
    }
    let all: Vec<_> = [&a, &b, &c].iter().map(|demo| demo.events()).collect();
    assert!(overlapping_terms(&all).is_empty(), "two leaders at once");
}
