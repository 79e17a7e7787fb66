//! The results of a run, as Markdown tables (printed, and written to BENCHMARKS.md).

use std::fmt::Write as _;
use std::time::Duration;

use crate::machine::Machine;
use crate::members::Variant;
use crate::plan::Plan;
use crate::scenario::load::Load;
use crate::scenario::many::ManyReport;
use crate::stats::{millis, Summary};
use crate::target::Backend;

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
    pub many: Option<ManyReport>,
}

/// The goal of scenario 1 on `backend`.
fn handover_goal(backend: Backend) -> Duration {
    match backend {
        Backend::K8s => Duration::from_millis(100),
        _ => Duration::from_millis(20),
    }
}

const CRASH_GOAL: Duration = Duration::from_millis(100);
const STANDBY_GOAL: f64 = 0.05;
const MANY_CORES_GOAL: f64 = 1.0;
const MANY_RSS_GOAL: u64 = 200 * 1024 * 1024;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// `ours / baseline` as a ratio; `-` when the baseline is 0.
fn ratio(ours: f64, baseline: f64) -> String {
    if baseline == 0.0 {
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
            |backend| Some(handover_goal(backend)),
        );
        self.latency_section(
            &mut out,
            "2. Crash takeover",
            "A leader's process is killed (SIGKILL: nothing is released). The figure is the excess: from \
             the leader's last successful renew to the new term's start, minus the lease duration \
             (0 ms when the takeover came within the lease). Two standbys per election; each crash is \
             its own election, the kills are spaced out.",
            &self.crash,
            |_| Some(CRASH_GOAL),
        );
        self.load_section(&mut out);
        self.many_section(&mut out, plan);
        out
    }

    fn latency_section(
        &self,
        out: &mut String,
        title: &str,
        what: &str,
        rows: &[Latency],
        goal: impl Fn(Backend) -> Option<Duration>,
    ) {
        let _ = writeln!(out, "## {title}\n\n{what}\n");
        let _ = writeln!(
            out,
            "| backend | elector | samples | p50 | p99 | max | ours ÷ this (p50, p99) | goal (p99) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
        for row in rows {
            let ours = rows
                .iter()
                .find(|other| other.backend == row.backend && other.variant == Variant::Ours);
            let (ratios, goal_text) = if row.variant == Variant::Ours {
                let goal_text = goal(row.backend).map_or(String::new(), |goal| {
                    format!("< {}: {}", millis(goal), verdict(row.summary.p99 < goal))
                });
                ("-".to_owned(), goal_text)
            } else {
                let ratios = ours.map_or("-".to_owned(), |ours| {
                    format!(
                        "{}, {}",
                        ratio(
                            ours.summary.p50.as_secs_f64(),
                            row.summary.p50.as_secs_f64()
                        ),
                        ratio(
                            ours.summary.p99.as_secs_f64(),
                            row.summary.p99.as_secs_f64()
                        )
                    )
                });
                (ratios, "baseline".to_owned())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.backend.name(),
                row.variant.name(),
                row.summary.count,
                millis(row.summary.p50),
                millis(row.summary.p99),
                millis(row.summary.max),
                ratios,
                goal_text
            );
        }
        let _ = writeln!(out);
    }

    fn load_section(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## 3. Backend load\n\nRequests per second, counted at the server: Redis `INFO commandstats` \
             (one per script run), etcd `grpc_server_msg_received_total`, kube-apiserver \
             `apiserver_request_total` for Leases. The file backend has no server: its figures are the \
             lock operations (reads and writes of the file) the candidates made. Windows start and end \
             just after a leader renew; the leader alone is counted first, and the standby's share is \
             the rest. The standby's own count of lock calls is a cross-check.\n"
        );
        let _ = writeln!(
            out,
            "| backend | standby | leader req/s (server) | idle standby req/s (server) | idle standby lock calls/s | window | ours ÷ this | goal (standby) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
        let rate = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        for row in &self.load {
            // The file backend's only count is the candidate's.
            let standby = row.load.standby_server.unwrap_or(row.load.standby_calls);
            let ours = self
                .load
                .iter()
                .find(|other| other.backend == row.backend && other.variant == Variant::Ours)
                .map(|ours| ours.load.standby_server.unwrap_or(ours.load.standby_calls));
            let (ratio_text, goal_text) = if row.variant == Variant::Ours {
                (
                    "-".to_owned(),
                    format!(
                        "< {STANDBY_GOAL} req/s: {}",
                        verdict(standby < STANDBY_GOAL)
                    ),
                )
            } else {
                (
                    ours.map_or("-".to_owned(), |ours| ratio(ours, standby)),
                    "baseline".to_owned(),
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.3} | {:.0} s | {} | {} |",
                row.backend.name(),
                row.variant.name(),
                rate(row.load.leader_server),
                rate(row.load.standby_server),
                row.load.standby_calls,
                row.load.window.as_secs_f64(),
                ratio_text,
                goal_text
            );
        }
        let _ = writeln!(out);
    }

    fn many_section(&self, out: &mut String, plan: &Plan) {
        let _ = writeln!(
            out,
            "## 4. Many elections\n\nOne process (`bench many`) holds {} elections on one Redis through \
             one `RedisClient`, with client-go's default timings (lease 15 s, renew deadline 10 s, \
             retry 2 s) and hints on. Measured from the moment all were won, for {:?}.\n",
            plan.many_elections, plan.many_duration
        );
        let Some(many) = &self.many else {
            let _ = writeln!(out, "Not run.\n");
            return;
        };
        let _ = writeln!(out, "| | |\n|---|---|");
        let rows = [
            ("elections", many.elections.to_string()),
            (
                "all won after",
                format!("{:.1} s", many.acquired_in.as_secs_f64()),
            ),
            ("held for", format!("{:.0} s", many.held_for.as_secs_f64())),
            (
                "leases lost",
                format!(
                    "{} (goal 0: {})",
                    many.leases_lost,
                    verdict(many.leases_lost == 0)
                ),
            ),
            (
                "renews",
                format!(
                    "{} ({:.0}/s)",
                    many.renews,
                    many.renews as f64 / many.held_for.as_secs_f64()
                ),
            ),
            ("failed renews", many.failed_renews.to_string()),
            (
                "renew latency p50, p99",
                format!("{}, {}", millis(many.renew_p50), millis(many.renew_p99)),
            ),
            (
                "CPU",
                format!(
                    "{:.3} cores (goal < {MANY_CORES_GOAL}: {})",
                    many.cores,
                    verdict(many.cores < MANY_CORES_GOAL)
                ),
            ),
            (
                "peak RSS",
                format!(
                    "{:.0} MB (goal < 200 MB: {})",
                    many.peak_rss as f64 / 1048576.0,
                    verdict(many.peak_rss < MANY_RSS_GOAL)
                ),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        let _ = writeln!(out);
    }
}
