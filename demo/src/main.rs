//! `demo`: leader election from the command line.
//!
//! Start several instances on one lock (`demo --instance a`, `--instance b`, ...): one leads,
//! the others follow, and each prints a line for every change it sees. CTRL+C on the leader
//! ends its term, releases the lock and exits; a standby takes over at once. `demo --help`
//! explains the flags.
//!
//! This file only wires the modules together: [`cli`] (the flags), [`backend`] (the lock they
//! choose), [`output`] (the event lines) and [`shutdown`] (the signals).

mod backend;
mod cli;
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
use crate::output::Output;

/// The exit status for flags that make no valid election, as for other usage errors.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let config = cli.election_config();
    if let Err(err) = config.validate() {
        eprintln!("error: {err}");
        return ExitCode::from(USAGE_ERROR);
    }
    // One thread is plenty: the election waits on the lock and the clock most of the time.
    let runtime = match tokio::runtime::Builder::new_current_thread()
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

/// Takes part in the election until a signal, printing every event; then prints `exiting`.
async fn run(cli: &Cli, config: ElectionConfig) -> ExitCode {
    let cancel = CancellationToken::new();
    if let Err(err) = shutdown::cancel_on_signal(cancel.clone()) {
        eprintln!("error: cannot handle signals: {err}");
        return ExitCode::FAILURE;
    }
    let lock = match cli.backend.open(cli) {
        Ok(lock) => lock,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let elector = match LeaderElector::new(lock, config) {
        Ok(elector) => elector,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    // Lines are printed inline by the elector, before its next lock call: a `stopped_leading`
    // line is out before the release that lets another instance lead is written.
    let output = Arc::new(Mutex::new(Output::stdout(&cli.instance, cli.json)));
    elector.on_event({
        let output = output.clone();
        move |event| {
            output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .event(event)
        }
    });
    tracing::info!(lock = %elector.handle().lock_name(), "standing by");
    let finished = tokio::spawn(elector.run(cancel)).await;
    output.lock().unwrap_or_else(|p| p.into_inner()).exiting();
    match finished {
        Ok(RunOutcome::Cancelled { .. }) => ExitCode::SUCCESS,
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
