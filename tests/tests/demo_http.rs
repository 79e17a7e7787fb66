//! `demo --http ADDR` against a real redis-server, read with a real HTTP client: `GET /` and
//! `GET /leader` before and after a handover, `GET /metrics` parsed by a Prometheus text-format
//! parser (the `leader_election_master_status` gauge flips on handover, transitions count), and
//! `GET /healthz` turning 500 for a leader whose backend stops answering, then 200 again.

use std::collections::HashMap;
use std::time::Duration;

use lock_core::testing::conformance::unique_name;
use lock_tests::demo::{wait_until, Demo, DemoEvent};
use lock_tests::servers::redis::RedisServer;
use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;
use tokio::time::Instant;

/// Generous limits for a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);

/// Short timings, so that the test sees leases run out in seconds.
const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "4s",
    "--renew-deadline",
    "3s",
    "--retry-period",
    "2s",
];

/// A demo instance with its HTTP endpoint.
struct Sidecar {
    demo: Demo,
    base: String,
}

impl Sidecar {
    /// Starts `demo --instance NAME --json --http 127.0.0.1:0` on the Redis lock `lock` and
    /// waits for the address it prints on stderr.
    async fn start(name: &str, server: &RedisServer, lock: &str, extra: &[&str]) -> Self {
        let url = server.url();
        let mut args = vec![
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--lock-name",
            lock,
            "--http",
            "127.0.0.1:0",
        ];
        args.extend(TIMINGS);
        args.extend(extra);
        let demo = Demo::start(name, &args);
        let base = demo.http_base(STARTUP).await;
        Self { demo, base }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}\n{}", self.demo.report()))
    }

    async fn json(&self, path: &str) -> Json {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE].clone();
        assert_eq!(content_type, "application/json", "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// `GET /`: the old leader-elector sidecar's `{"name": ...}`, and nothing else.
    async fn name(&self) -> String {
        let body = self.json("/").await;
        let object = body.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{body}");
        object["name"].as_str().expect("a string").to_owned()
    }

    async fn health(&self) -> (u16, String) {
        let response = self.get("/healthz").await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    }

    /// `GET /metrics`, parsed; the samples by metric name (every metric has one series here).
    async fn metrics(&self) -> HashMap<String, (Value, HashMap<String, String>)> {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("a body");
        let scrape =
            Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("the metrics parse");
        for counter in [
            "leader_election_transitions",
            "leader_election_renew_failures",
            "leader_election_slowpath",
        ] {
            assert!(
                text.contains(&format!("# TYPE {counter} counter")),
                "{counter} is a counter:\n{text}"
            );
        }
        scrape
            .samples
            .into_iter()
            .map(|sample| {
                let labels = ["name"]
                    .iter()
                    .filter_map(|key| {
                        sample
                            .labels
                            .get(key)
                            .map(|value| (key.to_string(), value.to_owned()))
                    })
                    .collect();
                (sample.metric, (sample.value, labels))
            })
            .collect()
    }

    fn is_leading(&self) -> bool {
        self.demo.events().iter().any(is_leading)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

fn is_leading(event: &DemoEvent) -> bool {
    event.event == "leading"
}

/// The value of a gauge or counter sample (the text format's counters are named `..._total`,
/// which this parser files as untyped).
fn number(metrics: &HashMap<String, (Value, HashMap<String, String>)>, name: &str) -> f64 {
    match metrics.get(name).map(|(value, _)| value) {
        Some(Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v)) => *v,
        other => panic!("{name}: {other:?} in {:?}", metrics.keys()),
    }
}

fn master_status(metrics: &HashMap<String, (Value, HashMap<String, String>)>) -> f64 {
    match &metrics["leader_election_master_status"].0 {
        Value::Gauge(v) => *v,
        other => panic!("leader_election_master_status is a gauge, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_and_metrics_endpoints_follow_a_handover() {
    let server = RedisServer::start();
    let lock = unique_name("demo-http");
    let a = Sidecar::start("a", &server, &lock, &[]).await;
    let b = Sidecar::start("b", &server, &lock, &[]).await;
    let sidecars = [a, b];
    wait_until("one leader followed by the other", STARTUP, || {
        let leaders: Vec<&Sidecar> = sidecars.iter().filter(|s| s.is_leading()).collect();
        let [leader] = leaders[..] else { return false };
        sidecars.iter().all(|s| {
            s.demo.events().last().is_some_and(|last| {
                last.leader.as_deref() == Some(leader.demo.name())
                    && (last.event == "following" || last.event == "leading")
            })
        })
    })
    .await;
    let (old, new) = if sidecars[0].is_leading() {
        (0, 1)
    } else {
        (1, 0)
    };
    let mut sidecars = sidecars.map(Some);
    let old_name = sidecars[old].as_ref().unwrap().demo.name().to_owned();
    let new_name = sidecars[new].as_ref().unwrap().demo.name().to_owned();

    // Before the handover: both name the leader; only the leader says it leads.
    for sidecar in sidecars.iter().flatten() {
        assert_eq!(sidecar.name().await, old_name);
        let leader = sidecar.json("/leader").await;
        let me = sidecar.demo.name();
        assert_eq!(leader["leader"], old_name.as_str(), "{leader}");
        assert_eq!(leader["instance"], me, "{leader}");
        let leads = me == old_name;
        assert_eq!(leader["is_leader"], leads, "{leader}");
        if leads {
            let term = leader["term"].as_u64().expect("a term");
            let renewed = chrono::DateTime::parse_from_rfc3339(
                leader["renewed_at"].as_str().expect("renewed_at"),
            )
            .expect("RFC 3339");
            let expires = chrono::DateTime::parse_from_rfc3339(
                leader["lease_expires_at"]
                    .as_str()
                    .expect("lease_expires_at"),
            )
            .expect("RFC 3339");
            assert_eq!(expires - renewed, chrono::TimeDelta::seconds(4), "{leader}");
            assert!(leader["valid_until"].is_string(), "{leader}");
            assert!(term < 1_000, "{leader}");
        } else {
            for key in ["term", "renewed_at", "valid_until", "lease_expires_at"] {
                assert!(leader[key].is_null(), "{key}: {leader}");
            }
        }
        let metrics = sidecar.metrics().await;
        assert_eq!(master_status(&metrics), if leads { 1.0 } else { 0.0 });
        let (_, labels) = &metrics["leader_election_master_status"];
        assert_eq!(
            labels.get("name"),
            Some(&lock),
            "the name label is the election's name"
        );
        assert_eq!(
            number(&metrics, "leader_election_transitions_total"),
            1.0,
            "{me} saw one holder so far"
        );
        assert!(number(&metrics, "leader_election_renew_failures_total") == 0.0);
        assert!(number(&metrics, "leader_election_slowpath_total") == 0.0);
        assert_eq!(sidecar.health().await, (200, "ok".to_owned()));
    }
    // The leader has renewed at least once after a retry period; its histogram shows it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let leader_metrics = sidecars[old].as_ref().unwrap().metrics().await;
    let renewals = match &leader_metrics["leader_election_renew_duration_seconds"].0 {
        Value::Histogram(buckets) => {
            buckets
                .iter()
                .find(|bucket| bucket.less_than.is_infinite())
                .expect("a +Inf bucket")
                .count
        }
        other => panic!("the renew latency is a histogram, not {other:?}"),
    };
    assert!(renewals >= 1.0, "{renewals} renewals counted");

    // CTRL+C on the leader: the other takes over.
    let mut leaving = sidecars[old].take().unwrap();
    leaving.demo.interrupt();
    let status = leaving.demo.wait_exit(EXIT).await;
    assert!(status.success(), "{}", leaving.demo.report());
    let taking = sidecars[new].as_ref().unwrap();
    taking
        .demo
        .wait_for("leading after the handover", STARTUP, is_leading)
        .await;
    assert_eq!(taking.name().await, new_name);
    let leader = taking.json("/leader").await;
    assert_eq!(leader["leader"], new_name.as_str(), "{leader}");
    assert_eq!(leader["is_leader"], true, "{leader}");
    assert!(leader["term"].as_u64().is_some(), "{leader}");
    let metrics = taking.metrics().await;
    assert_eq!(master_status(&metrics), 1.0, "the gauge flipped to 1");
    assert_eq!(
        number(&metrics, "leader_election_transitions_total"),
        2.0,
        "{new_name} saw {old_name}, then itself"
    );

    // The old leader comes back as a follower: its gauge is 0, its / names the new leader.
    let back = Sidecar::start(&old_name, &server, &lock, &[]).await;
    back.demo
        .wait_for("following the new leader", STARTUP, |event| {
            event.event == "following" && event.leader.as_deref() == Some(new_name.as_str())
        })
        .await;
    assert_eq!(back.name().await, new_name);
    let metrics = back.metrics().await;
    assert_eq!(master_status(&metrics), 0.0);
    assert_eq!(back.json("/leader").await["is_leader"], false);
    assert_eq!(back.health().await, (200, "ok".to_owned()));

    for mut sidecar in [sidecars[new].take().unwrap(), back] {
        sidecar.demo.interrupt();
        let status = sidecar.demo.wait_exit(EXIT).await;
        assert!(status.success(), "{}", sidecar.demo.report());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_for_a_leader_whose_backend_stops_answering_and_recovers() {
    let server = RedisServer::start();
    let lock = unique_name("demo-healthz");
    let mut a = Sidecar::start("a", &server, &lock, &["--health-tolerance", "1s"]).await;
    a.demo.wait_for("leading", STARTUP, is_leading).await;
    assert_eq!(a.health().await, (200, "ok".to_owned()));

    // The server stops answering (SIGSTOP: connections stay open, nothing comes back).
    server.process().pause();
    let paused = Instant::now();
    // Lease 4 s + tolerance 1 s after the last renew; poll generously.
    let mut last = (0, String::new());
    while paused.elapsed() < Duration::from_secs(30) {
        last = a.health().await;
        if last.0 == 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unhealthy_after = paused.elapsed();
    assert_eq!(last.0, 500, "{last:?}\n{}", a.demo.report());
    assert!(
        last.1.contains("believes it leads") && last.1.contains("a "),
        "{last:?}"
    );
    assert!(
        unhealthy_after >= Duration::from_secs(2),
        "500 only once lease + tolerance passed since the last renew: {unhealthy_after:?}"
    );
    // The endpoint answers while the backend hangs, and says this instance does not lead; nor
    // does it name itself as the leader, since its term is over (issue 11, hole 7), although
    // the health check still judges the holder it last observed.
    let leader = a.json("/leader").await;
    assert_eq!(leader["is_leader"], false, "{leader}");
    assert_eq!(leader["leader"], Json::Null, "{leader}");
    assert_eq!(master_status(&a.metrics().await), 0.0);
    assert!(number(&a.metrics().await, "leader_election_renew_failures_total") >= 1.0);

    // The server answers again: a new term is won, and the check passes again.
    server.process().resume();
    let resumed = Instant::now();
    loop {
        if a.health().await.0 == 200 && a.json("/leader").await["is_leader"] == true {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "not healthy and leading again within 30 s\n{}",
            a.demo.report()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("/healthz turned 500 {unhealthy_after:?} after the server stopped answering");
    a.demo.interrupt();
    let status = a.demo.wait_exit(EXIT).await;
    assert!(status.success(), "{}", a.demo.report());
}
