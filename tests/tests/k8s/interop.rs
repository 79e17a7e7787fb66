//! Interoperation with client-go: electors of `interop/` (client-go's leaderelection, built
//! with Go) and of this crate hand one Lease back and forth, and a ConfigMap lock written by Go
//! is taken over by ours.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use lock_core::testing::conformance::{
    config, releasing_config, unique_name, Candidate, LeadershipLog,
};
use lock_k8s::LockKind;
use lock_tests::go::go_elector_binary;
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backend::{client_as, lock_as, KubeBackend, NAMESPACE};

/// How many times leadership changes sides in the Lease test.
const HANDOVERS: usize = 22;

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i128
}

/// One line of the Go elector's output.
#[derive(Clone, Debug)]
struct GoEvent {
    event: String,
    who: String,
    ts: i128,
}

/// A running Go elector.
struct GoElector {
    identity: String,
    child: Child,
    events: mpsc::UnboundedReceiver<GoEvent>,
    started: Option<i128>,
}

impl GoElector {
    fn start(server: &KubeApiServer, lock: &str, name: &str, identity: &str) -> Self {
        let mut child = Command::new(go_elector_binary())
            .arg(format!(
                "-kubeconfig={}",
                server.admin_kubeconfig().display()
            ))
            .arg(format!("-namespace={NAMESPACE}"))
            .arg(format!("-name={name}"))
            .arg(format!("-identity={identity}"))
            .arg(format!("-lock={lock}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Go elector");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
                let event = GoEvent {
                    event: text("event"),
                    who: if value["leader"].is_string() {
                        text("leader")
                    } else {
                        text("identity")
                    },
                    ts: value["ts"].as_i64().unwrap_or_default().into(),
                };
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Self {
            identity: identity.to_owned(),
            child,
            events,
            started: None,
        }
    }

    async fn wait_for(&mut self, event: &str, who: &str, within: Duration) -> GoEvent {
        let deadline = Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match next {
                Ok(Some(seen)) => {
                    if seen.event == "leading" {
                        self.started = Some(seen.ts);
                    }
                    if seen.event == event && seen.who == who {
                        return seen;
                    }
                }
                Ok(None) => panic!("{}: exited before {event} {who}", self.identity),
                Err(_) => panic!("{}: no {event} {who} within {within:?}", self.identity),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("running");
        kill(Pid::from_raw(pid as i32), signal).expect("signal the Go elector");
    }

    /// SIGINT: client-go cancels and releases; returns when its leading context ended.
    async fn interrupt(&mut self) -> i128 {
        self.signal(Signal::SIGINT);
        let identity = self.identity.clone();
        let lost = self
            .wait_for("lost", &identity, Duration::from_secs(10))
            .await;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the Go elector exits on SIGINT")
            .expect("wait");
        assert!(status.success(), "{}: {status}", self.identity);
        lost.ts
    }

    /// SIGKILL; returns when the process is gone.
    async fn kill(&mut self) -> i128 {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
        now_nanos()
    }
}

/// A term as the test saw it, on the wall clock (nanoseconds since 1970).
#[derive(Debug)]
struct Term {
    identity: String,
    start: i128,
    end: i128,
}

fn assert_no_overlap(terms: &mut [Term]) {
    terms.sort_by_key(|term| term.start);
    for pair in terms.windows(2) {
        assert!(
            pair[1].start >= pair[0].end,
            "two leaders at once: {} ({:?}) and {} ({:?})",
            pair[0].identity,
            pair[0],
            pair[1].identity,
            pair[1]
        );
    }
}

async fn lease_record(server: &KubeApiServer, name: &str) -> (String, i32) {
    let lease = Api::<Lease>::namespaced(client_as(server, ADMIN_USER).await, NAMESPACE)
        .get(name)
        .await
        .expect("the lease");
    let spec = lease.spec.unwrap_or_default();
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or_default(),
    )
}

enum Leader {
    Go(GoElector),
    Rust(Candidate),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_and_rust_electors_hand_a_lease_over_both_ways() {
    let server = KubeBackend::start(LockKind::Lease).await.server;
    let _ = tokio::task::spawn_blocking(go_elector_binary).await;
    let name = unique_name("interop");
    let log = LeadershipLog::new();
    let (base_instant, base_wall) = (Instant::now(), now_nanos());
    let wall = |instant: Instant| base_wall + (instant - base_instant).as_nanos() as i128;
    let mut terms = Vec::new();

    let mut go = GoElector::start(server, "lease", &name, "go-0");
    go.wait_for("leading", "go-0", Duration::from_secs(30))
        .await;
    let (holder, mut transitions) = lease_record(server, &name).await;
    assert_eq!(holder, "go-0");
    let mut leader = Leader::Go(go);

    for round in 1..=HANDOVERS {
        let release = round % 2 == 1;
        let next_leader = match leader {
            Leader::Go(mut go) => {
                // A Rust standby takes over from Go.
                let identity = format!("rust-{round}");
                let lock = lock_as(server, ADMIN_USER, LockKind::Lease, NAMESPACE, &name).await;
                let mut rust = Candidate::start(lock, releasing_config(&identity), Some(&log));
                rust.sees_leader(&go.identity, Duration::from_secs(15))
                    .await;
                let end = if release {
                    go.interrupt().await
                } else {
                    go.kill().await
                };
                terms.push(Term {
                    identity: go.identity.clone(),
                    start: go.started.expect("go led"),
                    end,
                });
                rust.started(Duration::from_secs(15)).await;
                Leader::Rust(rust)
            }
            Leader::Rust(mut rust) => {
                // A Go standby takes over from Rust.
                let identity = format!("go-{round}");
                let mut go = GoElector::start(server, "lease", &name, &identity);
                go.wait_for("new_leader", rust.identity(), Duration::from_secs(30))
                    .await;
                if release {
                    rust.stop().await;
                } else {
                    rust.kill().await;
                }
                go.wait_for("leading", &identity, Duration::from_secs(15))
                    .await;
                Leader::Go(go)
            }
        };
        let expected = match &next_leader {
            Leader::Go(go) => go.identity.clone(),
            Leader::Rust(rust) => rust.identity().to_owned(),
        };
        let (holder, now) = lease_record(server, &name).await;
        assert_eq!(holder, expected, "round {round}");
        assert_eq!(
            now,
            transitions + 1,
            "round {round}: one transition per new holder"
        );
        transitions = now;
        leader = next_leader;
    }
    match leader {
        Leader::Go(mut go) => {
            let end = go.interrupt().await;
            terms.push(Term {
                identity: go.identity.clone(),
                start: go.started.expect("go led"),
                end,
            });
        }
        Leader::Rust(mut rust) => {
            rust.stop().await;
        }
    }

    log.assert_no_overlap();
    for interval in log.intervals() {
        terms.push(Term {
            identity: interval.identity.clone(),
            start: wall(interval.started),
            end: wall(interval.end().expect("every Rust term ended")),
        });
    }
    assert_eq!(terms.len(), HANDOVERS + 1, "{terms:?}");
    assert_no_overlap(&mut terms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_lock_written_by_go_is_taken_over() {
    let server = KubeBackend::start(LockKind::ConfigMap).await.server;
    let _ = tokio::task::spawn_blocking(go_elector_binary).await;
    let name = unique_name("interop-configmap");
    let mut go = GoElector::start(server, "configmap", &name, "go-writer");
    go.wait_for("leading", "go-writer", Duration::from_secs(30))
        .await;

    let lock = lock_as(server, ADMIN_USER, LockKind::ConfigMap, NAMESPACE, &name).await;
    let written = lock
        .get()
        .await
        .expect("read Go's record")
        .expect("a record");
    assert_eq!(written.record.holder_identity, "go-writer");
    assert_eq!(written.record.lease_duration_seconds, 4);
    assert!(written.record.acquire_time.is_some() && written.record.renew_time.is_some());

    let mut rust = Candidate::start(lock, config("rust-taker"), None);
    rust.sees_leader("go-writer", Duration::from_secs(15)).await;
    let killed = Instant::now();
    go.kill().await;
    let term = rust.started(Duration::from_secs(15)).await;
    assert!(
        killed.elapsed() >= Duration::from_secs(3),
        "the Go holder's lease was respected"
    );
    let check = lock_as(server, ADMIN_USER, LockKind::ConfigMap, NAMESPACE, &name).await;
    let taken = check.get().await.expect("get").expect("a record");
    assert_eq!(taken.record.holder_identity, "rust-taker");
    assert_eq!(
        taken.record.leader_transitions,
        written.record.leader_transitions + 1
    );
    assert_eq!(term.fencing_token(), taken.record.leader_transitions as u64);
    rust.stop().await;
}
