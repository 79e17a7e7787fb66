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
        Self::start_with(server, lock, name, identity, &[])
    }

    /// Like [`start`](Self::start), with further flags of the Go program.
    fn start_with(
        server: &KubeApiServer,
        lock: &str,
        name: &str,
        identity: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = Command::new(go_elector_binary())
            .args(extra)
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

/// Writes the Lease `name` as client-go's coordinated leader election controller does when it
/// elects `holder`: holder, lease, times, one more transition, its strategy, no preferred
/// holder.
async fn coordinator_elects(server: &KubeApiServer, name: &str, holder: &str) {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let api = Api::<Lease>::namespaced(client_as(server, ADMIN_USER).await, NAMESPACE);
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let current = api.get_opt(name).await.expect("read the lease");
    let transitions = current
        .as_ref()
        .and_then(|lease| lease.spec.as_ref())
        .and_then(|spec| spec.lease_transitions)
        .unwrap_or(0);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            resource_version: current.and_then(|lease| lease.metadata.resource_version),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(4),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions + 1),
            strategy: Some("OldestEmulationVersion".to_owned()),
            preferred_holder: None,
        }),
    };
    if lease.metadata.resource_version.is_some() {
        api.replace(name, &Default::default(), &lease)
            .await
            .expect("elect on the lease");
    } else {
        api.create(&Default::default(), &lease)
            .await
            .expect("create the lease");
    }
}

/// Issue 14: a Go elector in coordinated mode (client-go's `Coordinated: true`) and ours agree
/// on a Lease's `preferredHolder`. Asked by `request_handover`, the Go leader stops renewing and
/// ours takes over when its lease runs out, the named candidate first; asked by a coordinator
/// to make way for a Go candidate, ours ends its term and releases at once, and its other
/// standby holds back while the coordinator elects the Go candidate. No two leaders at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinated_go_elector_and_ours_agree_on_the_preferred_holder() {
    let server = KubeBackend::start(LockKind::Lease).await.server;
    let _ = tokio::task::spawn_blocking(go_elector_binary).await;
    let name = unique_name("coordinated");
    let log = LeadershipLog::new();
    let (base_instant, base_wall) = (Instant::now(), now_nanos());
    let wall = |instant: Instant| base_wall + (instant - base_instant).as_nanos() as i128;
    let mut terms = Vec::new();

    // The coordinator elects go-0; the Go elector in coordinated mode then leads.
    coordinator_elects(server, &name, "go-0").await;
    // Without release: client-go's release after a coordinated term writes a free record
    // without the preferred holder (any standby may then take it, safely, but not b first).
    // A shorter renew deadline and retry period than the 4 s lease: client-go counts its renew
    // deadline from the start of the failing renew loop, up to a retry period after the last
    // renew, so a term ends at most retry + deadline (3 s) after it; with 2 s + 3 s it would
    // outlast the lease that standbys wait for.
    let mut go = GoElector::start_with(
        server,
        "lease",
        &name,
        "go-0",
        &[
            "-coordinated",
            "-release-on-cancel=false",
            "-renew-deadline=2s",
            "-retry-period=1s",
        ],
    );
    go.wait_for("leading", "go-0", Duration::from_secs(30))
        .await;
    let lock = || lock_as(server, ADMIN_USER, LockKind::Lease, NAMESPACE, &name);
    let mut b = Candidate::start(lock().await, releasing_config("b"), Some(&log));
    let mut c = Candidate::start(lock().await, releasing_config("c"), Some(&log));
    b.sees_leader("go-0", Duration::from_secs(15)).await;
    c.sees_leader("go-0", Duration::from_secs(15)).await;

    // Ours asks the Go leader to make way for b.
    let requester = lock().await;
    let request = lock_core::request_handover(&requester, "b", Duration::from_secs(5))
        .await
        .expect("request the handover");
    assert_eq!(request.from, "go-0");
    // Its Run ends with the term, and the process exits: the `exiting` line (after the term
    // ended) bounds the term from above (its `lost` line may not make it out before the exit).
    let lost = go.wait_for("exiting", "", Duration::from_secs(15)).await;
    terms.push(Term {
        identity: "go-0".to_owned(),
        start: go.started.expect("go led"),
        end: lost.ts,
    });
    let b_term = b.started(Duration::from_secs(15)).await;
    assert!(
        b_term.fencing_token() > 1,
        "above the coordinator's transitions"
    );
    let (holder, _) = lease_record(server, &name).await;
    assert_eq!(holder, "b");

    // A coordinator asks b to make way for go-1, a coordinated Go candidate.
    // A quick retry period: a coordinated candidate only takes up a term the coordinator wrote
    // at its next attempt, which client-go jitters up to 2.2 retry periods away; our standbys
    // take over a term nobody renews within their 4 s lease.
    let mut go1 = GoElector::start_with(
        server,
        "lease",
        &name,
        "go-1",
        &["-coordinated", "-renew-deadline=2s", "-retry-period=500ms"],
    );
    let coordinator = lock().await;
    lock_core::request_handover(&coordinator, "go-1", Duration::from_secs(5))
        .await
        .expect("ask b to make way");
    // b releases at once; the coordinator sees the free Lease and elects go-1 while c (not
    // preferred) holds back for its retry period.
    let released = Instant::now();
    loop {
        let (holder, _) = lease_record(server, &name).await;
        if holder.is_empty() {
            break;
        }
        assert!(
            released.elapsed() < Duration::from_secs(2),
            "b did not release within 2 s (holder {holder})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    coordinator_elects(server, &name, "go-1").await;
    go1.wait_for("leading", "go-1", Duration::from_secs(15))
        .await;
    // c and b follow go-1 and do not take over while it renews.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (holder, _) = lease_record(server, &name).await;
    assert_eq!(holder, "go-1", "go-1 kept the lease");
    let end = go1.interrupt().await;
    terms.push(Term {
        identity: "go-1".to_owned(),
        start: go1.started.expect("go-1 led"),
        end,
    });
    // go-0's Run ended with its term: the process exits by itself.
    let _ = tokio::time::timeout(Duration::from_secs(10), go.child.wait()).await;
    b.stop().await;
    c.stop().await;

    log.assert_no_overlap();
    let intervals = log.intervals();
    let ours: Vec<&str> = intervals.iter().map(|i| i.identity.as_str()).collect();
    assert!(ours.starts_with(&["b"]), "b led first among ours: {ours:?}");
    for interval in intervals {
        terms.push(Term {
            identity: interval.identity.clone(),
            start: wall(interval.started),
            end: wall(interval.end().expect("every Rust term ended")),
        });
    }
    assert_no_overlap(&mut terms);
}
