//! The results of a run, as Markdown tables (printed, and written to BENCHMARKS.md).

use std::fmt::Write as _;
use std::time::Duration;

use crate::machine::Machine;
use crate::members::Variant;
use crate::plan::Plan;
use crate::scaling;
use crate::scenario::fleet::{FleetRow, CANDIDATES};
use crate::scenario::load::Load;
use crate::scenario::many::ManyReport;
use crate::scenario::takeover::TakeoverRow;
use crate::scenario::topology::TopologyRow;
use crate::stats::{millis, ms, Summary};
use leader_election::Backend;

/// One latency distribution: a backend, a variant, its samples.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Where.
    pub backend: Backend,
    /// Whose elector.
    pub variant: Variant,
    /// The samples' distribution.
    pub summary: Summary,
}

/// One load figure.
#[derive(Clone, Debug)]
pub struct LoadRow {
    /// Where.
    pub backend: Backend,
    /// Whose standby.
    pub variant: Variant,
    /// Its figures.
    pub load: Load,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// Scenario 1.
    pub handover: Vec<Latency>,
    /// Scenario 2.
    pub crash: Vec<Latency>,
    /// Scenario 3.
    pub load: Vec<LoadRow>,
    /// Scenario 4.
    pub many: Vec<ManyReport>,
    /// Scenario 4 at the smaller sizes of "how it scales".
    pub scaling: Vec<ManyReport>,
    /// Scenario 5.
    pub topologies: Vec<TopologyRow>,
    /// Scenario 6.
    pub planned: Vec<Latency>,
    /// Scenario 7.
    pub fleet: Vec<FleetRow>,
    /// Scenario 8.
    pub takeover: Vec<TakeoverRow>,
}

/// The goal of scenario 1 on `backend`.
fn handover_goal(backend: Backend) -> i128 {
    match backend {
        Backend::K8s => 100_000_000,
        _ => 20_000_000,
    }
}

const CRASH_GOAL: i128 = 100_000_000;
/// client-go's standbys wait the retry period times 1 plus up to this (`wait.JitterUntil` with
/// `JitterFactor` 1.2).
const CLIENT_GO_JITTER: f64 = 1.2;
const STANDBY_GOAL: f64 = 0.05;
const MANY_CORES_GOAL: f64 = 1.0;
/// One cell of the many-elections table: the figure and, for goals, the judged verdict.
type ManyCell = fn(&ManyReport, &dyn Fn(String, bool) -> String) -> String;

/// Peak memory per election held (issue 17: under 1 GB for 100,000 elections).
const MANY_RSS_GOAL_PER_ELECTION: u64 = 10 * 1024;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// The goal column of one of our rows: the goal, and whether it was met (not judged in quick
/// mode, whose timings and sample counts are not the ones the goals are for).
fn goal_text(quick: bool, goal: String, met: bool) -> String {
    if quick {
        format!("{goal}: not judged (quick)")
    } else {
        format!("{goal}: {}", verdict(met))
    }
}

/// `ours / baseline` as a ratio; `-` when it would mean nothing (a baseline of 0 or less, or a
/// negative figure of ours).
fn ratio(ours: f64, baseline: f64) -> String {
    if baseline <= 0.0 || ours < 0.0 {
        "-".to_owned()
    } else {
        let value = ours / baseline;
        if value < 0.01 {
            format!("{value:.4}")
        } else {
            format!("{value:.2}")
        }
    }
}

impl Results {
    /// The report: machine, versions, timings and one table per scenario.
    pub fn markdown(
        &self,
        machine: &Machine,
        plan: &Plan,
        command: &str,
        took: Duration,
        plot: &str,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Made by `{command}` on {} in {:.1} min{}. Every figure below comes from that run; \
             the servers are real (started by the benchmark on loopback ports), and all times are \
             wall-clock stamps taken where the event happened.\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            took.as_secs_f64() / 60.0,
            if plan.quick {
                " (**quick mode**: short timings and few samples; indicative only)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "## Machine and versions\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        for (name, value) in &machine.facts {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        let _ = writeln!(
            out,
            "| timings (scenarios 1-3) | {} |\n",
            plan.timings.describe()
        );

        self.latency_section(
            &mut out,
            "1. Graceful handover",
            "From the leader starting to leave (our cancellation with release; SIGTERM to client-go's \
             process, which releases) to the next leader's term starting. Three candidates; the old \
             leader rejoins after each handover.",
            &self.handover,
            plan.quick,
            |backend| Some(handover_goal(backend)),
        );
        self.latency_section(
            &mut out,
            "2. Crash takeover",
            "A leader's process is killed (SIGKILL: nothing is released), between two of its renews. \
             The figure is the excess: from the moment the leader sent its last successful renew to \
             the new term's start, minus the lease duration (negative when a standby took over before \
             that lease had run out; the run fails if one took over before the old leader's renew \
             deadline). Two standbys per election; each crash is its own election, the kills are \
             spaced out.",
            &self.crash,
            plan.quick,
            |_| Some(CRASH_GOAL),
        );
        self.load_section(&mut out, plan.quick);
        self.many_section(&mut out, plan);
        if let Some(points) = self.scaling_points() {
            scaling::section(&mut out, &points, plot);
        }
        self.topology_section(&mut out, plan.quick);
        self.latency_section(
            &mut out,
            "6. Planned handover",
            "From a `request_handover` naming one of the two standbys (just before its write of \
             the record's preferred holder) to that candidate's term starting. The leader hears \
             of the request by its hint, ends its term and releases; the named standby takes the \
             lock while the other holds back. Three candidates; the old leader stays as a standby.",
            &self.planned,
            plan.quick,
            |backend| Some(handover_goal(backend)),
        );
        self.fleet_section(&mut out, plan);
        self.takeover_section(&mut out, plan);
        out
    }

    /// The points of "how it scales" (every size of scenario 4), if it ran at more than one
    /// size.
    pub fn scaling_points(&self) -> Option<Vec<scaling::Point>> {
        if self.scaling.is_empty() || self.many.is_empty() {
            return None;
        }
        Some(scaling::points(self.scaling.iter().chain(&self.many)))
    }

    fn takeover_section(&self, out: &mut String, plan: &Plan) {
        let lease = plan.timings.lease;
        let _ = writeln!(
            out,
            "## 8. Cold start and takeover of many elections\n\nOne process (`bench many \
             --compete`) starts alone in every election, through one shared client, and wins \
             them all (the cold start); a second joins as the standby of all of them and, one \
             lease later, the first is killed (SIGKILL: nothing is released). Each election's \
             takeover is timed from the kill to the standby's term. Lease {lease:?}; goal: p99 \
             under the lease plus 1 s.\n"
        );
        if self.takeover.is_empty() {
            let _ = writeln!(out, "Not run.\n");
            return;
        }
        let _ = writeln!(
            out,
            "| backend | elections | cold start | takeover min | p50 | p99 | max | goal (p99) |\n|---|---:|---:|---:|---:|---:|---:|---|"
        );
        let goal = (lease + std::time::Duration::from_secs(1)).as_nanos() as i128;
        for row in &self.takeover {
            let goal_ms = format!("< {} ms", goal / 1_000_000);
            // A row that did not complete keeps its place, with its reason as the verdict.
            let (times, judged) = match (&row.failed, row.summary()) {
                (Some(failed), _) => (
                    "- | - | - | -".to_owned(),
                    format!("{goal_ms}: did not complete ({failed}): {}", verdict(false)),
                ),
                (None, Some(summary)) => (
                    [summary.min, summary.p50, summary.p99, summary.max]
                        .map(ms)
                        .join(" | "),
                    goal_text(plan.quick, goal_ms, summary.p99 < goal),
                ),
                (None, None) => continue,
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} s | {times} | {judged} |",
                row.backend,
                row.elections,
                row.cold_start.as_secs_f64(),
            );
        }
        let _ = writeln!(out);
    }

    fn fleet_section(&self, out: &mut String, plan: &Plan) {
        let _ = writeln!(
            out,
            "## 7. A fleet on one API server\n\n{} Lease elections with {CANDIDATES} candidates \
             each on one kube-apiserver, the same timings for both electors: ours as {CANDIDATES} \
             processes in every election, each through one shared client and one watch \
             (`bench many --compete`), with the default timings and again with the renew \
             interval at twice the retry period; client-go's as {CANDIDATES} processes of \
             interop/ with `-names` (one elector per election). Requests on Leases as the API \
             server counts them (`apiserver_request_total`), per second over about {:?} once \
             every election has a leader (the window runs from the middle of one scrape of the \
             counters to the middle of the next). Goal: ours at most the leaders' renews plus \
             1%, and at least 2.5 times fewer requests than client-go.\n",
            plan.fleet_elections, plan.fleet_window
        );
        if self.fleet.is_empty() {
            let _ = writeln!(out, "Not run.\n");
            return;
        }
        let _ = writeln!(
            out,
            "| elector | elections | all led after | window | requests/s by verb | total/s | leases lost |\n|---|---:|---:|---:|---|---:|---:|"
        );
        for row in &self.fleet {
            let verbs: Vec<String> = row
                .per_second
                .iter()
                .map(|(verb, rate)| format!("{verb} {rate:.1}"))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} s | {:.2} s | {} | {:.1} | {} |",
                row.elector,
                row.elections,
                row.all_led_after.as_secs_f64(),
                row.window.as_secs_f64(),
                verbs.join(", "),
                row.total(),
                row.leases_lost
            );
        }
        let Some(go) = self.fleet.iter().find(|row| row.elector == "client-go") else {
            return;
        };
        let _ = writeln!(out);
        for ours in self
            .fleet
            .iter()
            .filter(|row| row.elector.starts_with("ours"))
        {
            // Each leader renews once per its renew period: a GET-free PUT for ours.
            let renews = ours.elections as f64 / ours.renew_every.as_secs_f64();
            let ratio = go.total() / ours.total().max(f64::MIN_POSITIVE);
            let default_timings = ours.renew_every == plan.timings.retry;
            let _ = writeln!(
                out,
                "- {}: the leaders' renews alone {renews:.1}/s; measured {:.1}/s ({}); client-go ÷ \
                 this: {ratio:.2}{}.",
                ours.elector,
                ours.total(),
                goal_text(
                    plan.quick,
                    format!("goal ≤ {:.1}/s", renews * 1.01),
                    ours.total() <= renews * 1.01
                ),
                if default_timings {
                    format!(" ({})", goal_text(plan.quick, "goal ≥ 2.5".to_owned(), ratio >= 2.5))
                } else {
                    String::new()
                },
            );
        }
        // client-go's leaders renew without a GET too (its fast path), every retry period like
        // ours: at the same timings the ratio is client-go's standby polling over those renews.
        let polls = CANDIDATES as f64 - 1.0;
        let bound = 1.0 + polls / (1.0 + CLIENT_GO_JITTER / 2.0);
        let _ = writeln!(
            out,
            "\nAt the same timings the leaders of both electors write the same renews (client-go's \
             leader PUTs without a GET first), so what ours saves is the {polls:.0} standbys' GETs: \
             each polls every retry period times 1 to {:.1} (client-go's jitter), {:.2} times the \
             renews on average, and the ratio cannot pass about {bound:.2} however little a \
             standby of ours asks. Renewing less often (the renew interval, which client-go does \
             not have) is what moves it further.\n",
            1.0 + CLIENT_GO_JITTER,
            polls / (1.0 + CLIENT_GO_JITTER / 2.0),
        );
    }

    fn topology_section(&self, out: &mut String, quick: bool) {
        if self.topologies.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "## 5. Production topologies

Each started by the benchmark on loopback ports: a \
             Redis primary with one replica, without and with `min_replicas=1` (every write waits \
             for the replica's `WAIT` acknowledgement); Redis behind three sentinels with two \
             replicas; a Redis Cluster of three primaries with a replica each; etcd as three members, the lock given every endpoint. Handovers as in \
             scenario 1 (our elector, hints on); one write is one renew's compare-and-swap, one \
             after the other; the primary's kill is measured from the SIGKILL to the first write \
             that succeeds through the sentinels on the promoted replica (sentinel \
             `down-after-milliseconds` 1000, so most of it is the sentinels' doing).\n"
        );
        let _ = writeln!(
            out,
            "| topology | measure | samples | min | p50 | p99 | max | goal (p99) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
        for row in &self.topologies {
            let goal = row.goal.map_or(String::new(), |goal| {
                goal_text(quick, format!("< {}", ms(goal)), row.summary.p99 < goal)
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {goal} |",
                row.topology,
                row.measure,
                row.summary.count,
                ms(row.summary.min),
                ms(row.summary.p50),
                ms(row.summary.p99),
                ms(row.summary.max),
            );
        }
        let _ = writeln!(out);
    }

    fn latency_section(
        &self,
        out: &mut String,
        title: &str,
        what: &str,
        rows: &[Latency],
        quick: bool,
        goal: impl Fn(Backend) -> Option<i128>,
    ) {
        let _ = writeln!(
            out,
            "## {title}\n\n{what} Percentiles are nearest-rank: with fewer than 100 samples the \
             p99 is the largest sample.\n"
        );
        let _ = writeln!(
            out,
            "| backend | elector | samples | min | p50 | p99 | max | ours ÷ this (p50, p99) | goal (p99) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|");
        for row in rows {
            let ours = rows
                .iter()
                .find(|other| other.backend == row.backend && other.variant == Variant::Ours);
            let (ratios, goal_text) = if row.variant == Variant::Ours {
                let goal_text = goal(row.backend).map_or(String::new(), |goal| {
                    goal_text(quick, format!("< {}", ms(goal)), row.summary.p99 < goal)
                });
                ("-".to_owned(), goal_text)
            } else {
                let ratios = ours.map_or("-".to_owned(), |ours| {
                    format!(
                        "{}, {}",
                        ratio(ours.summary.p50 as f64, row.summary.p50 as f64),
                        ratio(ours.summary.p99 as f64, row.summary.p99 as f64)
                    )
                });
                (ratios, "baseline".to_owned())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.backend.name(),
                row.variant.name(),
                row.summary.count,
                ms(row.summary.min),
                ms(row.summary.p50),
                ms(row.summary.p99),
                ms(row.summary.max),
                ratios,
                goal_text
            );
        }
        let _ = writeln!(out);
    }

    fn load_section(&self, out: &mut String, quick: bool) {
        let _ = writeln!(
            out,
            "## 3. Backend load\n\nRequests per second, counted at the server: for the file backend, which \
             has no server, the reads and writes of lock files (counted by the file lock), Redis `INFO commandstats` (one per script \
             run, plus subscriptions and keep-alive pings), etcd `grpc_server_msg_received_total`, \
             kube-apiserver `apiserver_request_total` for Leases. Windows start and end just after a \
             leader renew. The leader alone is counted first, for as long as each standby; the \
             standby's figure is what the server counted beyond the leader's renews at that rate, so it \
             is signed and uncertain by about one request per window (± 1/window). The goal is judged \
             on the upper end (figure + 1/window). The standby's own count of its lock calls is a \
             cross-check (a file standby with hints also reads the file for a change inotify \
             reports that is not a renew it can follow, which is not a lock call).\n"
        );
        let _ = writeln!(
            out,
            "| backend | elector | leader req/s | idle standby req/s | idle standby lock calls/s | window | ours ÷ this (leader, standby) | goal (standby) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
        let rate = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        for row in &self.load {
            let window = row.load.window.as_secs_f64();
            let ours = self
                .load
                .iter()
                .find(|other| other.backend == row.backend && other.variant == Variant::Ours);
            let (ratio_text, goal) = if row.variant == Variant::Ours {
                let upper = row.load.standby_server.map(|v| v + 1.0 / window);
                let met = upper.is_some_and(|upper| upper < STANDBY_GOAL);
                (
                    "-".to_owned(),
                    goal_text(quick, format!("< {STANDBY_GOAL} req/s"), met),
                )
            } else {
                let ratio_of = |ours: Option<f64>, this: Option<f64>| match (ours, this) {
                    (Some(ours), Some(this)) => ratio(ours.max(0.0), this),
                    _ => "-".to_owned(),
                };
                let ratios = ours.map_or("-".to_owned(), |ours| {
                    format!(
                        "{}, {}",
                        ratio_of(ours.load.leader_server, row.load.leader_server),
                        ratio_of(ours.load.standby_server, row.load.standby_server)
                    )
                });
                (ratios, "baseline".to_owned())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} ± {:.3} | {:.3} | {:.0} s | {} | {} |",
                row.backend.name(),
                row.variant.name(),
                rate(row.load.leader_server),
                rate(row.load.standby_server),
                1.0 / window,
                row.load.standby_calls,
                window,
                ratio_text,
                goal
            );
        }
        let _ = writeln!(out);
    }

    fn many_section(&self, out: &mut String, plan: &Plan) {
        let judged = |goal: String, met: bool| goal_text(plan.quick, goal, met);
        let sizes: Vec<String> = plan
            .many_elections
            .iter()
            .map(|(backend, elections)| format!("{elections} on {}", backend.name()))
            .collect();
        let _ = writeln!(
            out,
            "## 4. Many elections\n\nOne process (`bench many`) holds many elections on one server \
             ({}) through one shared client (`leader_election::Locks`: on Redis a command and a \
             pub/sub connection, on etcd one connection and one watch, on Kubernetes one client \
             and one watch of the namespace's Leases), with client-go's default timings (lease \
             15 s, renew deadline 10 s, retry 2 s) and hints on. Measured from the moment all \
             were won, for {:?}.\n",
            sizes.join(", "),
            plan.many_duration
        );
        if self.many.is_empty() {
            let _ = writeln!(out, "Not run.\n");
            return;
        }
        let header: Vec<&str> = self.many.iter().map(|many| many.backend.as_str()).collect();
        let _ = writeln!(
            out,
            "| | {} |\n|---|{}",
            header.join(" | "),
            "---|".repeat(header.len())
        );
        let rows: [(&str, ManyCell); 11] = [
            ("elections", |many, _| many.elections.to_string()),
            ("all won after", |many, _| {
                if many.leading_at_start < many.elections as u64 {
                    format!(
                        "never at once: {} leading after {:.0} s",
                        many.leading_at_start,
                        many.acquired_in.as_secs_f64()
                    )
                } else {
                    format!("{:.1} s", many.acquired_in.as_secs_f64())
                }
            }),
            ("held for", |many, _| {
                format!("{:.0} s", many.held_for.as_secs_f64())
            }),
            ("leases lost", |many, _| {
                format!(
                    "{} (goal 0: {}){}",
                    many.leases_lost,
                    verdict(many.leases_lost == 0),
                    lost_detail(many)
                )
            }),
            ("renews", |many, _| {
                format!(
                    "{} ({:.0}/s)",
                    many.renews,
                    many.renews as f64 / many.held_for.as_secs_f64()
                )
            }),
            ("failed renews", |many, _| many.failed_renews.to_string()),
            ("renew latency p50, p99", |many, _| {
                format!("{}, {}", millis(many.renew_p50), millis(many.renew_p99))
            }),
            ("CPU", |many, judged| {
                format!(
                    "{:.3} cores ({})",
                    many.cores,
                    judged(
                        format!("goal < {MANY_CORES_GOAL}"),
                        many.cores < MANY_CORES_GOAL
                    )
                )
            }),
            ("peak RSS", |many, judged| {
                let per_election = many.peak_rss as f64 / many.elections.max(1) as f64;
                format!(
                    "{:.0} MB, {:.1} KB an election ({})",
                    many.peak_rss as f64 / 1048576.0,
                    per_election / 1024.0,
                    judged(
                        format!(
                            "goal < {} KB an election",
                            MANY_RSS_GOAL_PER_ELECTION / 1024
                        ),
                        per_election < MANY_RSS_GOAL_PER_ELECTION as f64
                    )
                )
            }),
            ("server CPU", |many, _| {
                format!("{:.3} cores", many.server_cores)
            }),
            ("server RSS", |many, _| {
                format!("{:.0} MB", many.server_rss as f64 / 1048576.0)
            }),
        ];
        for (name, value) in rows {
            let values: Vec<String> = self.many.iter().map(|many| value(many, &judged)).collect();
            let _ = writeln!(out, "| {name} | {} |", values.join(" | "));
        }
        let _ = writeln!(out);
    }
}

/// Where and why a many-elections run lost terms: "" when it lost none.
fn lost_detail(many: &ManyReport) -> String {
    if many.leases_lost == 0 {
        return String::new();
    }
    let reasons: Vec<String> = many
        .lost_by_reason
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    format!(
        ": {} before the window; {}",
        many.lost_before_window,
        reasons.join(", ")
    )
}
