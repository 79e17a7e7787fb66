//! Several `demo --json --http` instances on one lock of a real server, each reaching the
//! server through its own [`Proxy`], with a [`History`] of everything they said and everything
//! done to them: the setting of the process-level fault tests.
//!
//! A sampler task asks every running instance `GET /` and `GET /leader` every
//! [`SAMPLE_EVERY`], so that stale answers are caught whenever they happen, not only when a
//! test thinks of asking. Stopped instances are not asked (their answer would come after the
//! resume, which [`FaultCluster::resume`] checks on its own).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::demo::{Demo, DemoEvent};
use crate::history::{Answer, History, ProcessAction, Sample};
use crate::proxy::Proxy;

/// The lease of the fault tests: short, so that rounds take seconds.
pub const LEASE: Duration = Duration::from_secs(3);
/// The renew deadline of the fault tests.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(2);
/// The retry period of the fault tests.
pub const RETRY_PERIOD: Duration = Duration::from_millis(500);
/// How often the sampler asks each instance.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long an instance may take to start and print its HTTP address (a loaded machine).
const STARTUP: Duration = Duration::from_secs(60);
/// How long one HTTP request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an instance may take to exit after SIGINT.
const EXIT: Duration = Duration::from_secs(30);

/// The timings every instance runs with, as flags.
fn timing_flags() -> Vec<String> {
    let seconds = |d: Duration| format!("{}ms", d.as_millis());
    vec![
        "--lease-duration".into(),
        seconds(LEASE),
        "--renew-deadline".into(),
        seconds(RENEW_DEADLINE),
        "--retry-period".into(),
        seconds(RETRY_PERIOD),
    ]
}

/// Which server the instances elect through, and how a server address becomes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `--backend redis --redis-url redis://ADDR`.
    Redis,
    /// `--backend etcd --etcd-endpoints http://ADDR`.
    Etcd,
}

impl Backend {
    fn flags(self, server: SocketAddr, lock: &str) -> Vec<String> {
        let (backend, flag, url) = match self {
            Self::Redis => ("redis", "--redis-url", format!("redis://{server}")),
            Self::Etcd => ("etcd", "--etcd-endpoints", format!("http://{server}")),
        };
        vec![
            "--backend".into(),
            backend.into(),
            flag.into(),
            url,
            "--lock-name".into(),
            lock.into(),
        ]
    }
}

/// One instance: its process, its proxy and its HTTP base URL.
#[derive(Debug)]
pub struct Member {
    /// The process.
    pub demo: Demo,
    /// The proxy between it and the server.
    pub proxy: Proxy,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// The instances, their history and the sampler.
#[derive(Debug)]
pub struct FaultCluster {
    members: Vec<Member>,
    history: Arc<Mutex<History>>,
    /// Names of the instances the sampler must leave alone (stopped or gone).
    quiet: Arc<Mutex<Vec<String>>>,
    sampler: CancellationToken,
    client: reqwest::Client,
}

impl FaultCluster {
    /// Starts one instance per name on `lock` of the server at `server`, each through a proxy
    /// of its own, waits for their HTTP addresses and starts the sampler.
    pub async fn start(backend: Backend, server: SocketAddr, lock: &str, names: &[&str]) -> Self {
        let mut members = Vec::new();
        for name in names {
            let proxy = Proxy::start(server).await;
            let mut args = backend.flags(proxy.address(), lock);
            args.extend(timing_flags());
            args.extend(["--http".into(), "127.0.0.1:0".into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let demo = Demo::start(name, &args);
            let base = http_base(&demo).await;
            members.push(Member { demo, proxy, base });
        }
        // Standbys may name a leader until the lease they observed for it runs out: a lease
        // from when they saw its last renew, which they see some milliseconds after it was
        // sent; a second covers that delivery. A leader is due within lease + 2 s of a heal
        // (issue 11's acceptance).
        let history = Arc::new(Mutex::new(History::new(
            LEASE + Duration::from_secs(1),
            LEASE + Duration::from_secs(2),
        )));
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let cluster = Self {
            members,
            history,
            quiet: Arc::new(Mutex::new(Vec::new())),
            sampler: CancellationToken::new(),
            client,
        };
        cluster.spawn_sampler();
        cluster
    }

    /// The instances.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The instance at `index`.
    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    /// Runs `change` on the history (to record a fault).
    pub fn record(&self, change: impl FnOnce(&mut History)) {
        change(&mut lock(&self.history));
    }

    /// The instances that lead by their own events right now (their last `leading` line has no
    /// `stopped_leading` after it), with their tokens.
    pub fn leaders(&self) -> Vec<(usize, Option<u64>)> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(index, member)| {
                let events = member.demo.events();
                let last = events.iter().rev().find(|event| {
                    matches!(
                        event.event.as_str(),
                        "leading" | "stopped_leading" | "released"
                    )
                })?;
                (last.event == "leading").then_some((index, last.term))
            })
            .collect()
    }

    /// Waits until exactly one instance leads (by its events) and the others last said they
    /// follow it; `None` after `timeout`.
    pub async fn settled_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let [(leader, _)] = self.leaders()[..] {
                let name = self.members[leader].demo.name().to_owned();
                let followed = self.members.iter().enumerate().all(|(index, member)| {
                    index == leader
                        || member.demo.events().last().is_some_and(|last| {
                            last.event == "following" && last.leader.as_deref() == Some(&name)
                        })
                });
                if followed {
                    return Some(leader);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until an instance other than `except` prints `leading` after `since`; its index
    /// and event, or `None` after `timeout`.
    pub async fn new_leader(
        &self,
        except: usize,
        since: Instant,
        timeout: Duration,
    ) -> Option<(usize, DemoEvent)> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .members
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != except)
                .find_map(|(index, member)| {
                    member
                        .demo
                        .events()
                        .into_iter()
                        .find(|event| event.event == "leading" && event.arrived >= since)
                        .map(|event| (index, event))
                });
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGSTOP to the instance at `index`, recorded (its term, if any, ends now).
    pub fn stop(&self, index: usize) {
        let member = &self.members[index];
        lock(&self.quiet).push(member.demo.name().to_owned());
        self.record(|h| h.action(member.demo.name(), Utc::now(), ProcessAction::Stopped));
        member.demo.signal(Signal::SIGSTOP);
    }

    /// SIGCONT to the instance at `index`, recorded; then asks it `GET /` and `GET /leader` at
    /// once (its first answers after the resume) and returns them, also recorded.
    pub async fn resume(&self, index: usize) -> (Option<Answer>, Option<Answer>) {
        let member = &self.members[index];
        self.record(|h| h.action(member.demo.name(), Utc::now(), ProcessAction::Resumed));
        member.demo.signal(Signal::SIGCONT);
        let first = self.ask(index).await;
        lock(&self.quiet).retain(|name| name != member.demo.name());
        first
    }

    /// Asks the instance at `index` `GET /` and `GET /leader`, records and returns the answers
    /// (`None`: no answer within the request timeout).
    pub async fn ask(&self, index: usize) -> (Option<Answer>, Option<Answer>) {
        let member = &self.members[index];
        let samples = sample_once(&self.client, member.demo.name(), &member.base).await;
        let mut history = lock(&self.history);
        let mut answers = (None, None);
        for sample in samples.into_iter().flatten() {
            match &sample.answer {
                Answer::Name(_) => answers.0 = Some(sample.answer.clone()),
                Answer::Leader { .. } => answers.1 = Some(sample.answer.clone()),
            }
            history.sample(sample);
        }
        answers
    }

    /// Stops the sampler, sends SIGINT to every instance (SIGCONT first to a stopped one),
    /// waits for them to exit, and returns the history with every event line in it.
    pub async fn finish(mut self) -> History {
        self.sampler.cancel();
        for member in &self.members {
            if lock(&self.quiet).contains(&member.demo.name().to_owned()) {
                member.demo.signal(Signal::SIGCONT);
            }
        }
        let observed_until = Utc::now();
        for member in &mut self.members {
            member.proxy.heal();
            member.demo.interrupt();
        }
        for member in &mut self.members {
            // The exit status is not the point here: a process that hangs on exit shows in the
            // report through wait_exit's panic.
            let _ = member.demo.wait_exit(EXIT).await;
        }
        let mut history = lock(&self.history).clone();
        history.observed_until(observed_until);
        for member in &self.members {
            history.events(
                member.demo.name(),
                member.demo.events(),
                member.demo.unparsed(),
            );
        }
        history
    }

    /// What every process printed, for failure messages.
    pub fn reports(&self) -> String {
        let reports: Vec<String> = self.members.iter().map(|m| m.demo.report()).collect();
        reports.join("\n")
    }

    fn spawn_sampler(&self) {
        let targets: Vec<(String, String)> = self
            .members
            .iter()
            .map(|m| (m.demo.name().to_owned(), m.base.clone()))
            .collect();
        let history = self.history.clone();
        let quiet = self.quiet.clone();
        let stop = self.sampler.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                for (name, base) in &targets {
                    if lock(&quiet).contains(name) {
                        continue;
                    }
                    let samples = tokio::select! {
                        () = stop.cancelled() => return,
                        samples = sample_once(&client, name, base) => samples,
                    };
                    let mut history = lock(&history);
                    for sample in samples.into_iter().flatten() {
                        history.sample(sample);
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        });
    }
}

impl Drop for FaultCluster {
    fn drop(&mut self) {
        self.sampler.cancel();
    }
}

/// `GET /` and `GET /leader` on one instance, each with its window; `None` for a request that
/// got no well-formed answer in time.
async fn sample_once(client: &reqwest::Client, name: &str, base: &str) -> [Option<Sample>; 2] {
    let get = |path: &'static str| async move {
        let sent = Utc::now();
        let body: Value = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let received = Utc::now();
        let answer = match path {
            "/" => Answer::Name(body["name"].as_str()?.to_owned()),
            _ => Answer::Leader {
                is_leader: body["is_leader"].as_bool()?,
                leader: body["leader"].as_str().map(str::to_owned),
            },
        };
        Some(Sample {
            instance: name.to_owned(),
            sent,
            received,
            answer,
        })
    };
    [get("/").await, get("/leader").await]
}

/// Waits for the `serving HTTP on URL` line on the instance's stderr.
async fn http_base(demo: &Demo) -> String {
    let started = Instant::now();
    loop {
        if let Some(base) = demo
            .stderr()
            .lines()
            .find_map(|line| line.strip_prefix("serving HTTP on "))
        {
            return base.trim().to_owned();
        }
        assert!(
            started.elapsed() < STARTUP,
            "no HTTP address within {STARTUP:?}\n{}",
            demo.report()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
