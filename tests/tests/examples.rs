//! The facade's examples, run as users run them, against real servers: elect and shut down
//! gracefully on a lock file, many elections from one Redis client handing over on CTRL+C, and
//! a fenced write that etcd refuses to a deposed term. `scripts/test` builds the examples
//! first (`cargo build -p leader-election --examples --features full`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use lock_tests::servers::etcd::EtcdServer;
use lock_tests::servers::redis::RedisServer;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A running example and its stdout, line by line.
struct Example {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Example {
    fn start(name: &str, args: &[&str]) -> Self {
        // target/debug/deps/examples-… -> target/debug/examples/NAME
        let exe = std::env::current_exe().expect("the test executable");
        let path: PathBuf = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/debug")
            .join("examples")
            .join(name);
        assert!(
            path.exists(),
            "{} is missing: build it with `cargo build -p leader-election --examples --features full` (scripts/test does)",
            path.display()
        );
        let mut child = Command::new(&path)
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", path.display()));
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until `count` of them contain `text` (from the start), within `limit`.
    async fn until(&mut self, text: &str, count: usize, limit: Duration) {
        let found = tokio::time::timeout(limit, async {
            while self.seen.iter().filter(|line| line.contains(text)).count() < count {
                match self.lines.next_line().await {
                    Ok(Some(line)) => self.seen.push(line),
                    _ => return false,
                }
            }
            true
        })
        .await;
        assert!(
            found == Ok(true),
            "fewer than {count} lines with {text:?} within {limit:?}; the example printed: {:#?}",
            self.seen
        );
    }

    fn interrupt(&self) {
        let pid = self.child.id().expect("a running example");
        kill(Pid::from_raw(pid as i32), Signal::SIGINT).expect("SIGINT");
    }

    /// Waits for the exit (10 s at most), reads what is left, asserts a zero status.
    async fn exits_cleanly(&mut self) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the example exits within 10 s")
            .expect("wait");
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push(line);
        }
        assert!(status.success(), "{status}; printed {:#?}", self.seen);
    }
}

#[tokio::test]
async fn elect_leads_on_a_lock_file_and_releases_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/", dir.path().display());
    let mut example = Example::start("elect", &[&url]);
    example
        .until("leading with fencing token 0", 1, Duration::from_secs(10))
        .await;
    example.interrupt();
    example.exits_cleanly().await;
    assert!(
        example
            .seen
            .iter()
            .any(|line| line.ends_with("Cancelled { released: true }")),
        "{:#?}",
        example.seen
    );
}

#[tokio::test]
async fn many_elections_share_one_client_and_hand_every_shard_over() {
    const SHARDS: usize = 20;
    let server = RedisServer::start();
    let url = server.url();
    let shards = SHARDS.to_string();
    let mut first = Example::start("many_elections", &[&url, &shards]);
    first
        .until(": leading", SHARDS, Duration::from_secs(20))
        .await;
    let mut second = Example::start("many_elections", &[&url, &shards]);
    second
        .until("takes part in 20 elections", 1, Duration::from_secs(10))
        .await;
    // The lease is client-go's 15 s: only a release hands the shards over within 10 s.
    first.interrupt();
    first.exits_cleanly().await;
    assert!(
        first
            .seen
            .iter()
            .any(|line| line.ends_with("released 20 shards")),
        "{:#?}",
        first.seen
    );
    second
        .until(": leading", SHARDS, Duration::from_secs(10))
        .await;
    let mut admin = server
        .admin_client()
        .get_multiplexed_async_connection()
        .await
        .expect("an admin connection");
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("CLIENT LIST");
    assert_eq!(
        clients.lines().count(),
        3,
        "20 elections on two connections, and this admin connection: {clients}"
    );
    second.interrupt();
    second.exits_cleanly().await;
}

#[tokio::test]
async fn a_fenced_write_is_refused_to_a_deposed_term() {
    let server = EtcdServer::start();
    let host = server.endpoint().trim_start_matches("http://").to_owned();
    let mut example = Example::start("fenced_write", &[&format!("etcd://{host}")]);
    example.exits_cleanly().await;
    let printed = example.seen.join("\n");
    // "term N: write landed: Ok(true)" for each writer, in order of growing tokens.
    let landed: Vec<u64> = example
        .seen
        .iter()
        .filter_map(|line| line.strip_suffix(": write landed: Ok(true)"))
        .filter_map(|term| term.strip_prefix("term ")?.parse().ok())
        .collect();
    assert!(
        landed.len() == 2 && landed[0] < landed[1],
        "two writes with growing tokens: {printed}"
    );
    assert!(
        printed.contains(&format!(
            "term {} (deposed): write landed: false",
            landed[0]
        )),
        "the first writer's late write is refused: {printed}"
    );
}
