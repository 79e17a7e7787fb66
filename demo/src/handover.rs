//! `demo handover --to NAME`: ask the leader to hand its term to NAME, then follow the lock
//! until a new term starts, and say who took it and how long after the request.
//!
//! The request is [`lock_core::request_handover`]: one write of the record's preferred holder.
//! The leader ends its term and releases at once, NAME takes the lock while the others hold
//! back for a retry period, and if NAME does not take it by then the election goes on as
//! usual: this command then reports who leads instead and exits with status 1.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lock_core::{request_handover, HandoverError, HandoverRequest, Lock};
use serde::Serialize;

use crate::cli::Cli;
use crate::printable::printable;

/// How often the lock is read while no hint arrives: hints (every backend has them) make the
/// follow-up immediate; polling only bounds what a lost hint costs.
const POLL: Duration = Duration::from_millis(100);

/// Each read or write gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The flags of `demo handover`.
#[derive(Clone, Debug, clap::Args)]
pub struct HandoverArgs {
    /// The instance to hand leadership to: its --instance name.
    #[arg(long, value_name = "NAME")]
    pub to: String,

    /// How long to wait for the new term after the request (a duration such as 30s or 1m).
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
}

/// `demo handover`: opens the lock the flags choose and runs [`run`]; status 2 when the flags
/// name no lock.
pub async fn run_action(cli: &Cli, args: &HandoverArgs) -> ExitCode {
    let lock = match crate::lock_url::open_lock(cli).await {
        Ok(lock) => lock,
        Err(err) => {
            crate::fail(&err);
            return ExitCode::from(crate::USAGE_ERROR);
        }
    };
    run(lock, &args.to, args.timeout, cli.json).await
}

/// What the command saw end the request.
enum Outcome {
    /// A new term started: its holder and fencing token.
    NewTerm { leader: String, term: u64 },
    /// No new term within the time allowed.
    TimedOut,
}

/// Asks for the handover to `to` on `lock`, follows it for at most `timeout`, prints what
/// happened (as JSON lines with `json`) and returns the exit status: 0 when `to` leads, 1 when
/// the request was refused, someone else took over, or nothing happened in time.
pub async fn run(lock: Arc<dyn Lock>, to: &str, timeout: Duration, json: bool) -> ExitCode {
    // Watch before writing, so that the new term's write cannot slip by unseen.
    let mut hints = lock.watch();
    let asked = Instant::now();
    let request = match request_handover(lock.as_ref(), to, CALL_TIMEOUT).await {
        Ok(request) => request,
        Err(err) => {
            refused(&err, json);
            return ExitCode::FAILURE;
        }
    };
    print(json, &Said::requested(&request));
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = loop {
        match lock.get().await {
            Ok(Some(current)) => {
                let record = &current.record;
                let term = u64::try_from(record.leader_transitions.max(0)).unwrap_or(0);
                if let Some(leader) = record.holder().filter(|_| term > request.fencing_token) {
                    break Outcome::NewTerm {
                        leader: leader.to_owned(),
                        term,
                    };
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "could not read the lock; retrying"),
        }
        let next_poll = tokio::time::Instant::now() + POLL;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break Outcome::TimedOut,
            _ = next_hint(&mut hints) => {}
            _ = tokio::time::sleep_until(next_poll) => {}
        }
    };
    let elapsed = asked.elapsed();
    match outcome {
        Outcome::NewTerm { leader, term } => {
            let took_over = leader == to;
            print(json, &Said::done(&request, &leader, term, elapsed));
            if took_over {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Outcome::TimedOut => {
            print(json, &Said::timed_out(&request, timeout));
            ExitCode::FAILURE
        }
    }
}

/// The next hint, or never when the lock has none (or its stream ended: polling goes on).
async fn next_hint(hints: &mut Option<lock_core::backend::HintStream>) {
    match hints {
        Some(stream) => {
            if stream.next().await.is_none() {
                *hints = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

fn refused(err: &HandoverError, json: bool) {
    if json {
        print(
            json,
            &Said {
                event: "handover_refused",
                reason: Some(err.to_string()),
                ..Said::default()
            },
        );
    } else {
        eprintln!("error: {}", printable(&err.to_string()));
    }
}

/// One line of this command's output.
#[derive(Clone, Default, Serialize)]
struct Said {
    ts: String,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The text form of the line.
    #[serde(skip)]
    text: String,
}

impl Said {
    fn requested(request: &HandoverRequest) -> Self {
        Self {
            event: "handover_requested",
            from: Some(request.from.clone()),
            to: Some(request.to.clone()),
            term: Some(request.fencing_token),
            text: format!(
                "asked {} (term {}) to hand over to {}",
                printable(&request.from),
                request.fencing_token,
                printable(&request.to)
            ),
            ..Self::default()
        }
    }

    fn done(request: &HandoverRequest, leader: &str, term: u64, elapsed: Duration) -> Self {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let (event, text) = if leader == request.to {
            (
                "handed_over",
                format!(
                    "{} leads (term {term}), {ms:.1} ms after the request",
                    printable(leader)
                ),
            )
        } else {
            (
                "handover_missed",
                format!(
                    "{} did not take over: {} leads (term {term}), {ms:.1} ms after the request",
                    printable(&request.to),
                    printable(leader)
                ),
            )
        };
        Self {
            event,
            to: Some(request.to.clone()),
            leader: Some(leader.to_owned()),
            term: Some(term),
            elapsed_ms: Some(ms),
            text,
            ..Self::default()
        }
    }

    fn timed_out(request: &HandoverRequest, timeout: Duration) -> Self {
        Self {
            event: "handover_timed_out",
            to: Some(request.to.clone()),
            text: format!(
                "no new term within {} of the request (is {} running?)",
                humantime::format_duration(timeout),
                printable(&request.to)
            ),
            ..Self::default()
        }
    }
}

fn print(json: bool, said: &Said) {
    if !json {
        println!("{}", said.text);
        return;
    }
    let mut line = said.clone();
    line.ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    match serde_json::to_string(&line) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("error: cannot render a line: {err}"),
    }
}
