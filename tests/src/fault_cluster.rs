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

/// How to start one instance: its name (its `--instance`), its flags (without `--instance`,
/// `--json` and `--http`, which the cluster adds), extra environment variables, and the proxies
/// its flags send it through (none for the file backend, one per server member otherwise).
#[derive(Debug)]
pub struct MemberSpec {
    /// `--instance NAME`.
    pub name: String,
    /// The backend's flags, the timings and anything else.
    pub args: Vec<String>,
    /// Extra environment variables of the process (for example libfaketime's).
    pub env: Vec<(String, String)>,
    /// The proxies the flags point at.
    pub proxies: Vec<Proxy>,
}

/// One instance: its process, its proxies and its HTTP base URL.
#[derive(Debug)]
pub struct Member {
    /// The process.
    pub demo: Demo,
    /// The proxies between it and the server (one per server member; none for a file).
    pub proxies: Vec<Proxy>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The flags it was started with (without `--instance`), to start a successor.
    args: Vec<String>,
    /// The extra environment it was started with.
    env: Vec<(String, String)>,
}

impl Member {
    /// Cuts it off from every server member ([`Proxy::cut`]).
    pub fn cut(&self) {
        self.proxies.iter().for_each(Proxy::cut);
    }

    /// Heals every proxy ([`Proxy::heal`]).
    pub fn heal(&self) {
        self.proxies.iter().for_each(Proxy::heal);
    }

    /// Resets every open connection ([`Proxy::reset`]).
    pub fn reset(&self) {
        self.proxies.iter().for_each(Proxy::reset);
    }

    /// Resets every connection and refuses new ones until the heal ([`Proxy::down`]).
    pub fn down(&self) {
        self.proxies.iter().for_each(Proxy::down);
    }
}

/// The election timings every instance runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// `--lease-duration`.
    pub lease: Duration,
    /// `--renew-deadline`.
    pub renew_deadline: Duration,
    /// `--retry-period`.
    pub retry_period: Duration,
}

impl Timings {
    /// The timings of the fault tests: [`LEASE`], [`RENEW_DEADLINE`], [`RETRY_PERIOD`].
    pub const DEFAULT: Self = Self {
        lease: LEASE,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY_PERIOD,
    };

    /// The timings as demo flags.
    pub fn flags(&self) -> Vec<String> {
        let millis = |d: Duration| format!("{}ms", d.as_millis());
        vec![
            "--lease-duration".into(),
            millis(self.lease),
            "--renew-deadline".into(),
            millis(self.renew_deadline),
            "--retry-period".into(),
            millis(self.retry_period),
        ]
    }
}

/// The instances, their history and the sampler.
#[derive(Debug)]
pub struct FaultCluster {
    members: Vec<Member>,
    /// Processes that were replaced (killed or exited), kept for their events.
    retired: Vec<Demo>,
    history: Arc<Mutex<History>>,
    /// Names of the instances the sampler must leave alone (stopped or gone).
    quiet: Arc<Mutex<Vec<String>>>,
    /// The instances the sampler asks: name and base URL.
    targets: Arc<Mutex<Vec<(String, String)>>>,
    sampler: CancellationToken,
    client: reqwest::Client,
    /// A moment on both clocks, to turn an event's arrival into wall-clock time.
    epoch: (Instant, chrono::DateTime<Utc>),
    /// Wall-clock offsets an instance ran with at some time (see
    /// [`clock_stepped`](Self::clock_stepped)), by instance name.
    clock_offsets: Vec<(String, chrono::TimeDelta)>,
    /// The instances' renew deadline: the longest a lock call of theirs may take, so a write
    /// whose failure is logged at some time may have landed up to that long before.
    renew_deadline: Duration,
}

impl FaultCluster {
    /// Starts one instance per name on `lock` of the server at `server`, each through a proxy
    /// of its own, waits for their HTTP addresses and starts the sampler.
    pub async fn start(backend: Backend, server: SocketAddr, lock: &str, names: &[&str]) -> Self {
        let mut specs = Vec::new();
        for name in names {
            let proxy = Proxy::start(server).await;
            let mut args = backend.flags(proxy.address(), lock);
            args.extend(Timings::DEFAULT.flags());
            specs.push(MemberSpec {
                name: (*name).to_owned(),
                args,
                env: Vec::new(),
                proxies: vec![proxy],
            });
        }
        Self::start_members(specs, Timings::DEFAULT).await
    }

    /// Starts one instance per spec (adding `--http 127.0.0.1:0` before the flags end), waits for their HTTP
    /// addresses and starts the sampler. `timings` set the history's bounds: another instance
    /// may name a leader up to a lease (and a second) after its term ended, and some instance
    /// must lead within a lease and two seconds of a heal.
    pub async fn start_members(specs: Vec<MemberSpec>, timings: Timings) -> Self {
        let mut members = Vec::new();
        for spec in specs {
            members.push(start_member(spec.name, spec.args, spec.env, spec.proxies).await);
        }
        // Standbys may name a leader until the lease they observed for it runs out: a lease
        // from when they saw its last renew, which they see some milliseconds after it was
        // sent; a second covers that delivery. A leader is due within lease + 2 s of a heal
        // (issue 11's acceptance).
        let history = Arc::new(Mutex::new(History::new(
            timings.lease + Duration::from_secs(1),
            timings.lease + Duration::from_secs(2),
        )));
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let targets = members
            .iter()
            .map(|m| (m.demo.name().to_owned(), m.base.clone()))
            .collect();
        let cluster = Self {
            members,
            retired: Vec::new(),
            history,
            quiet: Arc::new(Mutex::new(Vec::new())),
            targets: Arc::new(Mutex::new(targets)),
            sampler: CancellationToken::new(),
            client,
            epoch: (Instant::now(), Utc::now()),
            clock_offsets: Vec::new(),
            renew_deadline: timings.renew_deadline,
        };
        cluster.spawn_sampler();
        cluster
    }

    /// The wall-clock time of a moment of the test's clock (an event's arrival).
    pub fn wall_time(&self, at: Instant) -> chrono::DateTime<Utc> {
        let (instant, utc) = self.epoch;
        let delta = if at >= instant {
            chrono::TimeDelta::from_std(at - instant).unwrap_or_default()
        } else {
            -chrono::TimeDelta::from_std(instant - at).unwrap_or_default()
        };
        utc + delta
    }

    /// SIGKILL to the instance at `index`, recorded (its term, if any, ends now); waits for
    /// the process to be gone. [`replace`](Self::replace) starts a successor.
    pub async fn kill(&mut self, index: usize) {
        let member = &self.members[index];
        lock(&self.quiet).push(member.demo.name().to_owned());
        self.record(|h| h.action(member.demo.name(), Utc::now(), ProcessAction::Killed));
        member.demo.signal(Signal::SIGKILL);
        let _ = self.members[index].demo.wait_exit(EXIT).await;
    }

    /// Sends `signal` (SIGHUP, SIGTERM, SIGINT: an orderly exit) to the instance at `index`
    /// and waits for it to exit; its events say how its term ended.
    pub async fn signal_exit(&mut self, index: usize, signal: Signal) {
        let member = &self.members[index];
        lock(&self.quiet).push(member.demo.name().to_owned());
        member.demo.signal(signal);
        let _ = self.members[index].demo.wait_exit(EXIT).await;
    }

    /// Starts a successor of the instance at `index` (which must have exited) under the new
    /// name `name`, with the same flags, proxies and environment; the old process's events
    /// stay in the history.
    pub async fn replace(&mut self, index: usize, name: &str) {
        let old = &self.members[index];
        let (args, env) = (old.args.clone(), old.env.clone());
        let proxies = std::mem::take(&mut self.members[index].proxies);
        let member = start_member(name.to_owned(), args, env, proxies).await;
        let old = std::mem::replace(&mut self.members[index], member);
        let new = &self.members[index];
        let mut targets = lock(&self.targets);
        targets.retain(|(target, _)| target != old.demo.name());
        targets.push((new.demo.name().to_owned(), new.base.clone()));
        self.retired.push(old.demo);
    }

    /// Records that the wall clock of the instance at `index` was set `offset` away from the
    /// real one (libfaketime, see [`crate::clock`]). Its events' `ts` then read its own clock:
    /// when the history is made, each event's `ts` is brought back to real time by the offset
    /// (of those it ran with, zero included) that best matches when the line arrived.
    pub fn clock_stepped(&mut self, index: usize, offset: chrono::TimeDelta) {
        let name = self.members[index].demo.name().to_owned();
        self.clock_offsets.push((name, offset));
    }

    /// `events` with each `ts` read on the real clock (see [`clock_stepped`](Self::clock_stepped)).
    fn real_time_events(&self, name: &str, mut events: Vec<DemoEvent>) -> Vec<DemoEvent> {
        let offsets: Vec<chrono::TimeDelta> = self
            .clock_offsets
            .iter()
            .filter(|(stepped, _)| stepped == name)
            .map(|(_, offset)| *offset)
            .collect();
        if offsets.is_empty() {
            return events;
        }
        for event in &mut events {
            let arrived = self.wall_time(event.arrived);
            let best = std::iter::once(chrono::TimeDelta::zero())
                .chain(offsets.iter().copied())
                .min_by_key(|offset| (event.ts - *offset - arrived).abs())
                .unwrap_or_default();
            event.ts -= best;
        }
        events
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
                        || member
                            .demo
                            .events()
                            .iter()
                            .rev()
                            .find(|event| !event.is_child())
                            .is_some_and(|last| {
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
            member.heal();
            member.demo.interrupt();
        }
        for member in &mut self.members {
            // The exit status is not the point here: a process that hangs on exit shows in the
            // report through wait_exit's panic.
            let _ = member.demo.wait_exit(EXIT).await;
        }
        let mut history = lock(&self.history).clone();
        history.observed_until(observed_until);
        let demos = self.members.iter().map(|m| &m.demo).chain(&self.retired);
        for demo in demos {
            let events = self.real_time_events(demo.name(), demo.events());
            let mut unparsed = demo.unparsed();
            // A line cannot be stamped after it arrived (a second covers the two clocks'
            // reading apart): one that is was stamped by a wrong clock.
            for event in &events {
                if event.ts > self.wall_time(event.arrived) + chrono::TimeDelta::seconds(1) {
                    unparsed.push(format!(
                        "stamped {} but arrived at {}: {event:?}",
                        event.ts,
                        self.wall_time(event.arrived)
                    ));
                }
            }
            history.events(demo.name(), events, unparsed);
            // A write to start a term whose answer was lost (or not confirmed durable) may have
            // landed: for a lease from then the others may rightly name its writer, which does
            // not lead under it (it hands it back, or holds it, see lock-core's standby). Its
            // writer logs the failure when the call ends, which may be a whole call later than
            // the landing (a Redis write waits out WAIT's timeout for a replica after it
            // landed); a call is bounded by the renew deadline, so the write went out at most
            // that long before the line.
            for at in unconfirmed_term_writes(&demo.stderr()) {
                history.unconfirmed_write(demo.name(), at, self.renew_deadline);
            }
        }
        history
    }

    /// What every process printed, for failure messages.
    pub fn reports(&self) -> String {
        let demos = self.members.iter().map(|m| &m.demo).chain(&self.retired);
        let reports: Vec<String> = demos.map(Demo::report).collect();
        reports.join("\n")
    }

    fn spawn_sampler(&self) {
        let all_targets = self.targets.clone();
        let history = self.history.clone();
        let quiet = self.quiet.clone();
        let stop = self.sampler.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let targets = lock(&all_targets).clone();
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

/// Starts one instance and waits for its HTTP address.
async fn start_member(
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    proxies: Vec<Proxy>,
) -> Member {
    // Before a `--` (exec mode's command), where the demo's own flags end.
    let mut all = args.clone();
    let at = all.iter().position(|arg| arg == "--").unwrap_or(all.len());
    all.splice(at..at, ["--http".to_owned(), "127.0.0.1:0".to_owned()]);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let demo = Demo::start_with_env(&name, &all, &env);
    let base = http_base(&demo).await;
    Member {
        demo,
        proxies,
        base,
        args,
        env,
    }
}

/// Waits for the `serving HTTP on URL` line on the instance's stderr.
async fn http_base(demo: &Demo) -> String {
    demo.http_base(STARTUP).await
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The log line (lock-core's standby) of a write to start a term that may have landed
/// unanswered.
const UNCONFIRMED_TERM_WRITE: &str = "a write to start a term went unanswered or unconfirmed";

/// When a demo logged a write to start a term that went unanswered or unconfirmed: the
/// timestamps of those stderr lines (tracing's default format starts each line with one).
fn unconfirmed_term_writes(stderr: &str) -> Vec<chrono::DateTime<Utc>> {
    stderr
        .lines()
        .filter(|line| line.contains(UNCONFIRMED_TERM_WRITE))
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|stamp| chrono::DateTime::parse_from_rfc3339(stamp).ok())
        .map(|stamp| stamp.with_timezone(&Utc))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfirmed_term_writes_are_read_from_the_log() {
        let stderr = "2026-12-04T00:49:24.500000Z  WARN lock_core::elector::standby: lock call failed; retrying error=x\n\
                      2026-12-04T00:49:24.500100Z  WARN lock_core::elector::standby: a write to start a term went unanswered or unconfirmed: it may have landed fencing_token=8\n\
                      not a log line: a write to start a term went unanswered or unconfirmed\n";
        let found = unconfirmed_term_writes(stderr);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].to_rfc3339(), "2026-12-04T00:49:24.500100+00:00");
    }
}
