//! `demo`: leader election from the command line.
//!
//! Start several instances on one lock (`demo --instance a`, `--instance b`, ...): one leads,
//! the others follow, and each prints a line for every change it sees. CTRL+C on the leader
//! ends its term, releases the lock and exits; a standby takes over at once. `demo --help`
//! explains the flags.
//!
//! As a sidecar, `--http ADDR` serves the leader's name, health and metrics, and
//! `demo [options] -- CMD ARGS...` runs a command only while this instance leads.
//!
//! This file only wires the modules together: [`cli`] (the flags), [`backend`] (the lock they
//! choose), [`output`] (the event lines), [`shutdown`] (the signals), [`http`] (the endpoint),
//! [`metrics`] (what `/metrics` reports) and [`exec`] (the command of exec mode).

mod backend;
mod cli;
mod exec;
mod http;
mod metrics;
mod output;
mod shutdown;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use lock_core::{ElectionConfig, LeaderElector, RunOutcome};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use crate::cli::Cli;
use crate::exec::{Exec, RunningChild};
use crate::metrics::Metrics;
use crate::output::Output;

/// The exit status for flags that make no valid election, as for other usage errors.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse().with_identity();
    init_logs();
    let config = cli.election_config();
    if let Err(err) = config.validate() {
        eprintln!("error: {err}");
        return ExitCode::from(USAGE_ERROR);
    }
    if let Err(err) = cli.validate_exec() {
        eprintln!("error: {err}");
        return ExitCode::from(USAGE_ERROR);
    }
    // Two threads: the HTTP endpoint answers while the election's task waits on a slow lock.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let status = runtime.block_on(run(&cli, config));
    // Lock calls the election gave up on (a file lock held elsewhere, a hung server) may still
    // occupy a blocking thread: exit without waiting for them.
    runtime.shutdown_background();
    status
}

/// Logs go to stderr, filtered by `RUST_LOG` (warnings and errors by default).
fn init_logs() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Takes part in the election until a signal, printing every event (and serving HTTP, and
/// running the command, when asked to); then prints `exiting`.
async fn run(cli: &Cli, config: ElectionConfig) -> ExitCode {
    // The first signal cancels `shutdown`. Without a command that is the election's own token;
    // in exec mode the supervisor stops the command first and then cancels the election.
    let shutdown = CancellationToken::new();
    let election = if cli.command.is_empty() {
        shutdown.clone()
    } else {
        CancellationToken::new()
    };
    let running = RunningChild::default();
    let on_forced_exit = {
        let running = running.clone();
        move || running.kill()
    };
    if let Err(err) = shutdown::cancel_on_signal(shutdown.clone(), on_forced_exit) {
        eprintln!("error: cannot handle signals: {err}");
        return ExitCode::FAILURE;
    }
    let lock = match cli.backend.open(cli).await {
        Ok(lock) => lock,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let lease_duration = config.lease_duration;
    let elector = match LeaderElector::new(lock, config) {
        Ok(elector) => elector,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let handle = elector.handle();
    let metrics = Arc::new(Metrics::new(&cli.election_name()));
    // Lines are printed inline by the elector, before its next lock call: a `stopped_leading`
    // line is out before the release that lets another instance lead is written.
    let output = Arc::new(Mutex::new(Output::stdout(&cli.instance, cli.json)));
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
    if let Some(addr) = cli.http {
        let endpoint = http::Endpoint {
            handle: handle.clone(),
            metrics,
            lease_duration,
            health_tolerance: cli.health_tolerance,
        };
        match http::serve(addr, endpoint).await {
            Ok(bound) => eprintln!("serving HTTP on http://{bound}"),
            Err(err) => {
                eprintln!("error: cannot serve HTTP on {addr}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let supervisor = (!cli.command.is_empty()).then(|| {
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
            running,
        ))
    });
    tracing::info!(lock = %handle.lock_name(), "standing by");
    let finished = tokio::spawn(elector.run(election)).await;
    let child_status = match supervisor {
        Some(supervisor) => supervisor.await.ok().flatten(),
        None => None,
    };
    output.lock().unwrap_or_else(|p| p.into_inner()).exiting();
    match finished {
        Ok(RunOutcome::Cancelled { .. }) => child_status.map_or(ExitCode::SUCCESS, ExitCode::from),
        Ok(RunOutcome::LostLeadership(reason)) => {
            // Not reached: the demo rejoins after losing.
            eprintln!("error: the election ended: {reason}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: the election failed: {err}");
            ExitCode::FAILURE
        }
    }
}
