//! `bench`: measures the elector on real servers and writes BENCHMARKS.md.
//!
//! Scenarios (see `--help`): graceful handover, crash takeover, backend load and many
//! elections, each beside the same elector with hints off (polling, as client-go works) and,
//! on Kubernetes, beside client-go's own elector.

mod candidate;
mod clock;
mod error;
mod feed;
mod golang;
mod machine;
mod members;
mod plan;
mod plot;
mod report;
mod scaling;
mod scenario;
mod servers;
mod stats;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::time::Instant;

use crate::candidate::CandidateArgs;
use crate::error::{BenchError, BenchResult};
use crate::machine::Machine;
use crate::members::{Roster, Variant};
use crate::plan::Plan;
use crate::report::{Latency, LoadRow, Results};
use crate::scenario::many::ManyArgs;
use crate::scenario::{crash, handover, load, many, planned, topology};
use crate::servers::BackendServer;
use crate::stats::{ms, Summary};
use leader_election::Backend;

/// glibc's allocator serialises on its arena locks once a process runs tens of thousands of
/// elections (a profile of 100,000 elections on one Redis spent a third of its time in malloc
/// and free): mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks of the leader elector on real servers it starts itself (redis-server, etcd,
/// kube-apiserver on loopback ports), beside polling and client-go's elector.
///
/// Scenarios:
///   handover  a leader of three releases; time until the next term starts
///   crash     a leader's process is SIGKILLed; excess of the takeover over the lease
///   load      requests per second of a leader and an idle standby, counted at the server
///   many      one process holds 100,000 elections on one Redis, 10,000 on one etcd and
///             10,000 Leases on one kube-apiserver, each through one shared client: leases
///             lost, renew latency, CPU, memory
///   topologies  a Redis replica with and without min_replicas, Redis Sentinel, a
///             three-member etcd: handover, write latency, writes lost to a primary's kill
///   planned   a planned handover (request_handover) to a named standby of three; time
///             from the request to the named candidate's term
///   takeover  10,000 elections won from a cold start by one process on each of Redis, etcd
///             and Kubernetes, then taken over by a standby process when it is killed
///   fleet     1,000 Lease elections with three candidates each on one kube-apiserver, ours
///             against client-go's elector: the API server's requests per second by verb
///
/// Each of handover, crash and load also runs with hints off (standbys poll, as client-go's
/// do) and, on k8s, with client-go's own elector (interop/, built with Go).
///
/// The full run uses client-go's default timings (15 s / 10 s / 2 s) and takes well over an
/// hour on two cores (the many-elections and takeover scenarios alone run for about an hour);
/// it writes BENCHMARKS.md at the workspace root. `--quick` runs everything with short timings
/// and few samples in about 8 minutes (scripts/test runs it) and writes
/// target/bench/BENCHMARKS-quick.md.
///
/// The run fails (exit status 1) on two leaders at once, a lost lease, a takeover before the
/// old leader's renew deadline, or a scenario that does not complete; goals that are missed
/// are marked in the report, not failed.
#[derive(Debug, Parser)]
#[command(name = "bench", verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Short timings and few samples: proves every scenario works, figures are indicative.
    #[arg(long)]
    quick: bool,
    /// The backends to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = Backend::ALL)]
    backends: Vec<Backend>,
    /// The scenarios to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Scenario::ALL)]
    scenarios: Vec<Scenario>,
    /// Where to write the report [default: BENCHMARKS.md, or target/bench/BENCHMARKS-quick.md
    /// with --quick].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A scenario of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Graceful handover.
    Handover,
    /// Crash takeover.
    Crash,
    /// Backend load.
    Load,
    /// Many elections on one server (Redis, etcd, Kubernetes).
    Many,
    /// Replicas, sentinels and an etcd cluster: handover, write cost, failover outage.
    Topologies,
    /// Planned handover to a named candidate.
    Planned,
    /// Many elections of three candidates on one API server, ours against client-go's.
    Fleet,
    /// Cold start and takeover of many elections.
    Takeover,
}

impl Scenario {
    const ALL: [Scenario; 8] = [
        Scenario::Handover,
        Scenario::Crash,
        Scenario::Load,
        Scenario::Many,
        Scenario::Topologies,
        Scenario::Planned,
        Scenario::Fleet,
        Scenario::Takeover,
    ];
}

/// The benchmark's own child processes.
#[derive(Debug, Subcommand)]
enum Command {
    /// One of our candidates alone in a process, to be killed by the crash scenario.
    #[command(hide = true)]
    Candidate(CandidateArgs),
    /// The many-elections scenario's process.
    #[command(hide = true)]
    Many(ManyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Candidate(args)) => candidate::run_child(args).await,
            Some(Command::Many(args)) => many::run_child(args).await,
            None => run(cli).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> BenchResult<()> {
    let plan = if cli.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let started = Instant::now();
    let machine = tokio::task::spawn_blocking(Machine::describe)
        .await
        .map_err(|err| BenchError::Setup(format!("describing the machine: {err}")))?;
    let mut results = Results::default();
    let per_backend = [
        Scenario::Handover,
        Scenario::Planned,
        Scenario::Crash,
        Scenario::Load,
    ];
    let backends = if per_backend.iter().any(|s| cli.scenarios.contains(s)) {
        cli.backends.clone()
    } else {
        Vec::new()
    };
    for &backend in &backends {
        let server = BackendServer::start(backend).await?;
        eprintln!("bench: {} server up", backend.name());
        run_backend(&cli.scenarios, &plan, &server, &mut results).await?;
    }
    if cli.scenarios.contains(&Scenario::Many) {
        let sizes = plan
            .scaling_elections
            .iter()
            .map(|&(backend, elections)| (backend, elections, plan.scaling_duration, true))
            .chain(
                plan.many_elections
                    .iter()
                    .map(|&(backend, elections)| (backend, elections, plan.many_duration, false)),
            );
        for (backend, elections, duration, scaling) in sizes {
            if !cli.backends.contains(&backend) {
                continue;
            }
            let server = BackendServer::start(backend).await?;
            eprintln!(
                "bench: many: {elections} elections on {} for {duration:?}",
                backend.name(),
            );
            let report = many::run(&server, elections, duration).await?;
            eprintln!(
                "bench: many: {} leases lost ({} before the window; {:?}), {:.3} cores, {} MB peak, renew p99 {:?}",
                report.leases_lost,
                report.lost_before_window,
                report.lost_by_reason,
                report.cores,
                report.peak_rss / (1024 * 1024),
                report.renew_p99
            );
            if scaling {
                results.scaling.push(report);
            } else {
                results.many.push(report);
            }
        }
    }
    if cli.scenarios.contains(&Scenario::Takeover) {
        for &(backend, elections) in &plan.takeover_elections {
            if !cli.backends.contains(&backend) {
                continue;
            }
            let server = BackendServer::start(backend).await?;
            eprintln!(
                "bench: takeover: {elections} elections on {}",
                backend.name()
            );
            let row = scenario::takeover::run(&server, elections, &plan).await?;
            eprintln!(
                "bench: takeover: cold start {:?}, {:?}",
                row.cold_start,
                row.summary()
            );
            results.takeover.push(row);
        }
    }
    if cli.scenarios.contains(&Scenario::Fleet) && cli.backends.contains(&Backend::K8s) {
        let server = BackendServer::start(Backend::K8s).await?;
        let binary = tokio::task::spawn_blocking(lock_tests::go::go_elector_binary)
            .await
            .map_err(|err| BenchError::Setup(format!("building interop/: {err}")))?;
        eprintln!(
            "bench: fleet: {} elections of {} candidates",
            plan.fleet_elections,
            scenario::fleet::CANDIDATES
        );
        results.fleet = scenario::fleet::run(&server, &plan, &binary).await?;
        for row in &results.fleet {
            eprintln!("bench: fleet: {row:?}");
        }
    }
    if cli.scenarios.contains(&Scenario::Topologies) {
        results.topologies = topology::run(&plan).await?;
    }
    let profile = if cfg!(debug_assertions) {
        "cargo run -p bench"
    } else {
        "cargo run --release -p bench"
    };
    let mut flags = Vec::new();
    if plan.quick {
        flags.push("--quick".to_owned());
    }
    if cli.scenarios != Scenario::ALL {
        let names: Vec<String> = cli
            .scenarios
            .iter()
            .filter_map(|scenario| scenario.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        flags.push(format!("--scenarios {}", names.join(",")));
    }
    let command = if flags.is_empty() {
        profile.to_owned()
    } else {
        format!("{profile} -- {}", flags.join(" "))
    };
    let out = cli.out.unwrap_or_else(|| default_report_path(plan.quick));
    let image = plot::path_beside(&out);
    let image_name = image
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = results.markdown(&machine, &plan, &command, started.elapsed(), &image_name);
    println!("{text}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| BenchError::io(format!("create {}", dir.display()), err))?;
    }
    std::fs::write(&out, text)
        .map_err(|err| BenchError::io(format!("write {}", out.display()), err))?;
    eprintln!("bench: wrote {}", out.display());
    if let Some(points) = results.scaling_points() {
        plot::draw(&points, &image)?;
        eprintln!("bench: wrote {}", image.display());
    }
    for row in &results.takeover {
        if let Some(failed) = &row.failed {
            return Err(BenchError::Timeout(format!(
                "takeover of {} elections on {}: {failed}",
                row.elections, row.backend
            )));
        }
        if row.leases_lost > 0 {
            return Err(BenchError::Safety(format!(
                "{} leases lost after the takeover on {}",
                row.leases_lost, row.backend
            )));
        }
    }
    for row in &results.fleet {
        if row.leases_lost > 0 {
            return Err(BenchError::Safety(format!(
                "{} leases lost in the fleet of {}",
                row.leases_lost, row.elector
            )));
        }
    }
    for many in results.many.iter().chain(&results.scaling) {
        if many.leases_lost > 0 {
            return Err(BenchError::Safety(format!(
                "{} leases lost while holding {} elections on {}",
                many.leases_lost, many.elections, many.backend
            )));
        }
    }
    Ok(())
}

fn default_report_path(quick: bool) -> PathBuf {
    let workspace = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if quick {
        workspace.join("target/bench/BENCHMARKS-quick.md")
    } else {
        workspace.join("BENCHMARKS.md")
    }
}

/// Scenarios 1 to 3 on one backend, with every variant that runs there.
async fn run_backend(
    scenarios: &[Scenario],
    plan: &Plan,
    server: &BackendServer,
    results: &mut Results,
) -> BenchResult<()> {
    let backend = server.backend;
    let go = match server.kubeconfig() {
        Some(kubeconfig) => {
            let binary = tokio::task::spawn_blocking(lock_tests::go::go_elector_binary)
                .await
                .map_err(|err| BenchError::Setup(format!("building interop/: {err}")))?;
            Some((binary, kubeconfig))
        }
        None => None,
    };
    let mut variants = vec![Variant::Ours, Variant::Polling];
    if go.is_some() {
        variants.push(Variant::ClientGo);
    }
    let roster = |variant: Variant, sender: feed::Sender| Roster {
        variant,
        target: server.target.clone(),
        timings: plan.timings,
        go: go.clone(),
        feed: sender,
    };
    if scenarios.contains(&Scenario::Handover) {
        for &variant in &variants {
            let (sender, mut feed) = feed::feed();
            let samples =
                handover::run(&roster(variant, sender), &mut feed, plan.handovers).await?;
            results
                .handover
                .push(latency(backend, variant, "handover", &samples)?);
        }
    }
    if scenarios.contains(&Scenario::Planned) {
        // Ours only: a handover is asked for through the record, which client-go's elector
        // (outside coordinated mode) overwrites at its next renew.
        let (sender, mut feed) = feed::feed();
        let samples =
            planned::run(&roster(Variant::Ours, sender), &mut feed, plan.handovers).await?;
        results.planned.push(latency(
            backend,
            Variant::Ours,
            "planned handover",
            &samples,
        )?);
    }
    if scenarios.contains(&Scenario::Crash) {
        for &variant in &variants {
            let (sender, mut feed) = feed::feed();
            let samples = crash::run(
                &roster(variant, sender),
                &mut feed,
                plan.crashes,
                plan.crash_spacing,
            )
            .await?;
            results
                .crash
                .push(latency(backend, variant, "crash", &samples)?);
        }
    }
    if scenarios.contains(&Scenario::Load) {
        let (sender, mut feed) = feed::feed();
        let ours = roster(Variant::Ours, sender.clone());
        let polling = roster(Variant::Polling, sender);
        let loads = load::run(
            &ours,
            &[&ours, &polling],
            server,
            &mut feed,
            plan.load_window,
        )
        .await?;
        for (variant, load) in [Variant::Ours, Variant::Polling].into_iter().zip(loads) {
            eprintln!(
                "bench: {} load {}: {load:?}",
                backend.name(),
                variant.name()
            );
            results.load.push(LoadRow {
                backend,
                variant,
                load,
            });
        }
        if go.is_some() {
            let (sender, mut feed) = feed::feed();
            let client_go = roster(Variant::ClientGo, sender);
            let loads = load::run(
                &client_go,
                &[&client_go],
                server,
                &mut feed,
                plan.load_window,
            )
            .await?;
            for load in loads {
                eprintln!("bench: {} load client-go: {load:?}", backend.name());
                results.load.push(LoadRow {
                    backend,
                    variant: Variant::ClientGo,
                    load,
                });
            }
        }
    }
    Ok(())
}

/// Summarises one scenario's samples and says so on stderr.
fn latency(
    backend: Backend,
    variant: Variant,
    scenario: &str,
    samples: &[i128],
) -> BenchResult<Latency> {
    let summary = Summary::of(samples)
        .ok_or_else(|| BenchError::Setup(format!("{scenario} produced no samples")))?;
    eprintln!(
        "bench: {} {scenario} {}: n={} p50={} p99={} max={}",
        backend.name(),
        variant.name(),
        summary.count,
        ms(summary.p50),
        ms(summary.p99),
        ms(summary.max)
    );
    Ok(Latency {
        backend,
        variant,
        summary,
    })
}
