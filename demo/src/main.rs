//! `demo`: leader election from the command line.
//!
//! Start several instances on one lock (`demo --instance a`, `--instance b`, ...): one leads,
//! the others follow, and each prints a line for every change it sees. CTRL+C on the leader
//! ends its term, releases the lock and exits; a standby takes over at once. `demo --help`
//! explains the flags.
//!
//! `demo observe` follows the election without taking part, printing every change of leader.
//!
//! As a sidecar, `--http ADDR` serves the leader's name, health and metrics, and
//! `demo [options] -- CMD ARGS...` runs a command only while this instance leads.
//!
//! This file only wires the modules together: [`cli`] (the flags), [`election`] (the mode:
//! leases, or leader-for-life with `--leader-for-life`), [`leader_elector_flags`]
//! (the old leader-elector sidecar's flags), [`lock_url`] (the lock they choose), [`output`]
//! (the event lines), [`shutdown`] (the signals), [`http`] (the endpoint),
//! [`metrics`] (what `/metrics` reports), [`exec`] (the command of exec mode, run through
//! [`child`] under a [`supervisor`] process, which is this binary started with a hidden first
//! argument), [`writer`] (the thread that writes event lines) and [`printable`] (escaping what
//! the lock and servers say before it reaches a terminal); [`observe`] is the `observe` action.

mod child;
mod cli;
mod election;
mod exec;
mod handover;
mod http;
mod leader_elector_flags;
mod lock_url;
mod metrics;
mod observe;
mod output;
mod printable;
mod readiness;
mod resolve;
mod shutdown;
mod supervisor;
mod timings;
mod writer;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::{ElectionConfig, RunOutcome};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::cli::Cli;
use crate::exec::Exec;
use crate::metrics::Metrics;
use crate::output::Output;
use crate::printable::printable;
use crate::writer::LogQueue;

/// The exit status for flags that make no valid election, as for other usage errors.
pub(crate) const USAGE_ERROR: u8 = 2;

/// The exit status after giving up on a fault that will not pass by itself
/// (`--give-up-after`).
const GAVE_UP: u8 = 3;

/// The exit status when exec mode's command cannot be found, as shells report it.
const COMMAND_NOT_FOUND: u8 = 127;

/// How long the last event lines may take to reach a stdout that is read slowly; one that is
/// not read at all cannot hold the exit up longer.
const FINAL_LINES: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(supervisor::ARG) {
        return supervisor::main(&args[2..]);
    }
    let cli = Cli::from_args(std::env::args_os()).unwrap_or_else(|err| err.exit());
    let logs = init_logs();
    if let Some(action) = &cli.action {
        let status = run_action(&cli, action);
        if let Some(logs) = logs {
            logs.drain(FINAL_LINES);
        }
        return status;
    }
    let config = cli.election_config();
    if let Err(err) = timings::check(&cli, &config) {
        fail(&err);
        return ExitCode::from(USAGE_ERROR);
    }
    if let Err(err) = cli.validate_exec() {
        fail(&err);
        return ExitCode::from(USAGE_ERROR);
    }
    if let Some(program) = cli.command.first() {
        // On every instance, leading or not: a typo shows at once, not at the first term.
        if let Err(err) = resolve::resolve(program, std::env::var_os("PATH").as_deref()) {
            fail(&err);
            return ExitCode::from(COMMAND_NOT_FOUND);
        }
    }
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let status = runtime.block_on(run(&cli, config));
    // Lock calls the election gave up on (a file lock held elsewhere, a hung server) may still
    // occupy a blocking thread: exit without waiting for them.
    runtime.shutdown_background();
    if let Some(logs) = logs {
        logs.drain(FINAL_LINES);
    }
    status
}

/// The runtime: two threads, so that the HTTP endpoint answers while the election's task waits
/// on a slow lock. `None` (said on stderr) when it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            fail(&format!("cannot start the runtime: {err}"));
            None
        }
    }
}

/// Runs an action of `demo` other than taking part, on a runtime of its own.
fn run_action(cli: &Cli, action: &cli::Action) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let status = match action {
        cli::Action::Observe(args) => runtime.block_on(observe::run(cli, args)),
        cli::Action::Handover(args) => runtime.block_on(handover::run_action(cli, args)),
    };
    runtime.shutdown_background();
    status
}

/// Prints `error: MESSAGE` on stderr, with control characters escaped: messages quote what
/// servers and lock files said.
pub(crate) fn fail(message: &dyn std::fmt::Display) {
    eprintln!("error: {}", printable(&message.to_string()));
}

/// Logs go to stderr, filtered by `RUST_LOG` (by default warnings and errors, and the one INFO
/// line of the first CTRL+C, which says that a second one exits at once), through a queue
/// that never blocks the election ([`writer::LogQueue`]); `None` when that queue's thread
/// cannot start, and logs are then written directly.
fn init_logs() -> Option<LogQueue> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .with_default_directive(LevelFilter::WARN.into())
            .parse_lossy(directives),
        _ => EnvFilter::new("warn,demo::shutdown=info"),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    match LogQueue::spawn(std::io::stderr()) {
        Ok(queue) => {
            let writer = queue.clone();
            logs.with_writer(move || writer.clone()).init();
            Some(queue)
        }
        Err(err) => {
            logs.with_writer(std::io::stderr).init();
            tracing::warn!(error = %err, "cannot start the log thread: logs may block");
            None
        }
    }
}

/// Takes part in the election until a signal, printing every event (and serving HTTP, and
/// running the command, when asked to); then prints `exiting`.
async fn run(cli: &Cli, config: ElectionConfig) -> ExitCode {
    // The first signal cancels `shutdown`. Without a command that is the election's own token;
    // in exec mode the exec task stops the command first and then cancels the election.
    let shutdown = CancellationToken::new();
    let election = if cli.command.is_empty() {
        shutdown.clone()
    } else {
        CancellationToken::new()
    };
    if let Err(err) = shutdown::cancel_on_signal(shutdown.clone()) {
        fail(&format!("cannot handle signals: {err}"));
        return ExitCode::FAILURE;
    }
    let lease_duration = config.lease_duration;
    let check = match readiness::Check::from_flags(
        cli.ready_url.as_deref(),
        cli.ready_command.as_deref(),
    ) {
        Ok(check) => check,
        Err(err) => {
            fail(&err);
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let mut elector = match election::Elector::open(cli, config).await {
        Ok(elector) => elector.give_up_after(cli.give_up_after.0),
        Err(err) => {
            fail(&err);
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let ready = check.map(|check| readiness::spawn(check, cli.ready_period, shutdown.clone()));
    if let Some(ready) = &ready {
        elector = match elector.with_readiness(ready.clone(), cli.on_unready.into()) {
            Ok(elector) => elector,
            Err(err) => {
                fail(&err);
                return ExitCode::from(USAGE_ERROR);
            }
        };
    }
    let handle = elector.handle();
    let metrics = Arc::new(Metrics::new(&cli.election_name()));
    // Lines are rendered and stamped inline by the elector, before its next lock call (a
    // `stopped_leading` line's `ts` precedes the release that lets another instance lead), and
    // written by a thread of their own, so that a stdout nobody reads never stalls the election.
    let output = match Output::stdout(&cli.instance, cli.json) {
        Ok(output) => Arc::new(Mutex::new(output)),
        Err(err) => {
            fail(&format!("cannot start the output thread: {err}"));
            return ExitCode::FAILURE;
        }
    };
    elector.on_event({
        let output = output.clone();
        let metrics = metrics.clone();
        move |event| {
            metrics.observe_event(event);
            output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .event(event)
        }
    });
    elector.on_renew({
        let metrics = metrics.clone();
        move |report| metrics.observe_renew(report)
    });
    if let Some(addr) = &cli.http {
        let addrs = match tokio::net::lookup_host(addr.as_str()).await {
            Ok(addrs) => addrs.collect::<Vec<_>>(),
            Err(err) => {
                fail(&format!(
                    "--http {addr}: cannot resolve the host name: {err}; give an IP address or \
                     a name this machine resolves"
                ));
                return ExitCode::from(USAGE_ERROR);
            }
        };
        let endpoint = http::Endpoint {
            handle: handle.clone(),
            metrics,
            lease_duration,
            health_tolerance: cli.health_tolerance,
            ready: ready.clone(),
        };
        match http::serve(&addrs, endpoint).await {
            Ok(bound) => eprintln!("serving HTTP on http://{bound}"),
            Err(err) => {
                fail(&format!("cannot serve HTTP on {addr}: {err}"));
                return ExitCode::FAILURE;
            }
        }
    }
    let exec_task = (!cli.command.is_empty()).then(|| {
        let exec = Exec {
            command: cli.command.clone(),
            grace_period: cli.grace_period(),
            on_child_exit: cli.on_child_exit,
            identity: cli.instance.clone(),
            lock: handle.lock_name().to_owned(),
        };
        tokio::spawn(exec::supervise(
            exec,
            elector.subscribe(),
            shutdown.clone(),
            election.clone(),
            output.clone(),
        ))
    });
    tracing::info!(lock = %handle.lock_name(), "standing by");
    let finished = tokio::spawn(elector.run(election)).await;
    let child_status = match exec_task {
        Some(exec_task) => exec_task.await.ok().flatten(),
        None => None,
    };
    {
        let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
        output.exiting();
        output.finish(FINAL_LINES);
    }
    match finished {
        Ok(RunOutcome::Cancelled { .. }) => {
            let release_failed = handle.release_error().inspect(|err| {
                fail(&format!(
                    "could not release the lock, so the others wait for the lease to run out: \
                     {err}"
                ));
            });
            match (child_status, release_failed) {
                // The command's 0 does not hide a lock left held: 1, as without a command.
                (Some(0), Some(_)) => ExitCode::FAILURE,
                (Some(status), _) => ExitCode::from(status),
                (None, Some(_)) => ExitCode::FAILURE,
                (None, None) => ExitCode::SUCCESS,
            }
        }
        Ok(RunOutcome::GaveUp(gave_up)) => {
            fail(&format!(
                "gave up after {}: {} (every lock call failed like this for --give-up-after; \
                 fix it, or set --give-up-after never to retry for ever)",
                humantime::format_duration(gave_up.after),
                gave_up.error
            ));
            ExitCode::from(GAVE_UP)
        }
        Ok(RunOutcome::LostLeadership(reason)) => {
            // Not reached: the demo rejoins after losing.
            fail(&format!("the election ended: {reason}"));
            ExitCode::FAILURE
        }
        Ok(RunOutcome::WorkReturned { .. }) => {
            // Not reached: the demo runs its work outside `run_leading`.
            fail(&"the election ended with its work");
            ExitCode::FAILURE
        }
        Err(err) => {
            fail(&format!("the election failed: {err}"));
            ExitCode::FAILURE
        }
    }
}
