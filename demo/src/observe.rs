//! `demo observe`: follow the election the lock flags choose, printing one line per change of
//! leader, without ever taking part (the lock is only read, so read-only credentials do).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use lock_core::{Observed, Observer, ObserverConfig, ObserverEvent};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::printable::printable;

/// The flags of `demo observe` besides the shared lock flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ObserveArgs {
    /// How long one read of the lock may take before it counts as failed (reported, and
    /// retried after --retry-period).
    ///
    /// DURATION: a number with a unit, such as 500ms, 15s, 2m or 1m30s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::cli::parse_timing)]
    pub read_timeout: Duration,

    /// Do not follow the backend's change notifications: read the lock every --retry-period.
    #[arg(long)]
    pub no_hints: bool,
}

/// Follows the election until a signal, printing every change; status 2 when the flags name
/// no lock.
pub async fn run(cli: &Cli, args: &ObserveArgs) -> ExitCode {
    let cancel = CancellationToken::new();
    if let Err(err) = crate::shutdown::cancel_on_signal(cancel.clone()) {
        crate::fail(&format!("cannot handle signals: {err}"));
        return ExitCode::FAILURE;
    }
    let lock = match crate::lock_url::open_lock(cli).await {
        Ok(lock) => lock,
        Err(err) => {
            crate::fail(&err);
            return ExitCode::from(crate::USAGE_ERROR);
        }
    };
    let config = ObserverConfig::default()
        .with_retry_period(cli.retry_period)
        .with_read_timeout(args.read_timeout)
        .with_hints(!args.no_hints);
    let observer = match Observer::new(lock, config) {
        Ok(observer) => observer,
        Err(err) => {
            crate::fail(&err);
            return ExitCode::from(crate::USAGE_ERROR);
        }
    };
    let mut events = observer.subscribe();
    let running = tokio::spawn(observer.run(cancel.clone()));
    let mut stdout = io::stdout().lock();
    // The stream ends when the observer's run returns, after a signal.
    while let Some(event) = events.recv().await {
        let line = render(&event, cli.json, Instant::now(), Utc::now());
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // Nobody reads any more (a closed pipe): nothing left to do.
            cancel.cancel();
            break;
        }
    }
    match running.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            crate::fail(&format!("the observer failed: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// The shape of a `--json` line of `demo observe`; fields in this order.
#[derive(Serialize)]
struct JsonLine<'a> {
    ts: String,
    event: &'static str,
    leader: Option<&'a str>,
    term: Option<u64>,
    /// `leader_changed` with a leader: when its lease runs out as this process observed it
    /// (the instant it first read the record's current version plus its lease), on this
    /// machine's wall clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expires_at: Option<String>,
    /// `leader_changed` without a leader: why nobody leads; `read_failed`: the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The line for an event, as JSON when `json`; `now` and `wall_now` are the same moment on
/// the monotonic and the wall clock.
fn render(event: &ObserverEvent, json: bool, now: Instant, wall_now: DateTime<Utc>) -> String {
    if !json {
        return match event {
            ObserverEvent::LeaderChanged(observed) => printable(&text(observed)).into_owned(),
            ObserverEvent::ReadFailed(err) => {
                printable(&format!("read failed: {err}")).into_owned()
            }
        };
    }
    let stamp = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let line = match event {
        ObserverEvent::LeaderChanged(Observed::Leader(leader)) => {
            let left = leader.lease_expires_at.saturating_duration_since(now);
            let expires = chrono::Duration::from_std(left).unwrap_or(chrono::Duration::MAX);
            JsonLine {
                ts: stamp(wall_now),
                event: "leader_changed",
                leader: Some(&leader.identity),
                term: Some(leader.term),
                lease_expires_at: wall_now.checked_add_signed(expires).map(stamp),
                reason: None,
            }
        }
        ObserverEvent::LeaderChanged(Observed::NoLeader(why)) => JsonLine {
            ts: stamp(wall_now),
            event: "leader_changed",
            leader: None,
            term: None,
            lease_expires_at: None,
            reason: Some(why.to_string()),
        },
        ObserverEvent::ReadFailed(err) => JsonLine {
            ts: stamp(wall_now),
            event: "read_failed",
            leader: None,
            term: None,
            lease_expires_at: None,
            reason: Some(err.to_string()),
        },
    };
    serde_json::to_string(&line).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}

/// `leader a (term 3)`, or `no leader (WHY)`.
fn text(observed: &Observed) -> String {
    match observed {
        Observed::Leader(leader) => format!("leader {} (term {})", leader.identity, leader.term),
        Observed::NoLeader(why) => format!("no leader ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lock_core::{NoLeader, ObservedLeader, DEFAULT_READ_TIMEOUT};

    #[test]
    fn the_read_timeout_flag_defaults_to_the_library_default() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["demo", "observe"]).unwrap();
        let Some(crate::cli::Action::Observe(args)) = cli.action else {
            panic!("expected observe");
        };
        assert_eq!(args.read_timeout, DEFAULT_READ_TIMEOUT);
        assert!(!args.no_hints);
    }

    fn at() -> (Instant, DateTime<Utc>) {
        let wall = DateTime::parse_from_rfc3339("2026-12-02T11:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        (Instant::now(), wall)
    }

    fn changed(observed: Observed) -> ObserverEvent {
        ObserverEvent::LeaderChanged(observed)
    }

    #[test]
    fn text_lines_name_the_leader_and_term_or_why_there_is_none() {
        let (now, wall) = at();
        let leader = changed(Observed::Leader(ObservedLeader {
            identity: "a".into(),
            term: 3,
            lease_expires_at: now + Duration::from_secs(2),
        }));
        assert_eq!(render(&leader, false, now, wall), "leader a (term 3)");
        let released = changed(Observed::NoLeader(NoLeader::Released { last_term: 3 }));
        assert_eq!(
            render(&released, false, now, wall),
            "no leader (the leader of term 3 released the lock)"
        );
        let hostile = changed(Observed::Leader(ObservedLeader {
            identity: "x\nleader b (term 9)".into(),
            term: 1,
            lease_expires_at: now,
        }));
        assert_eq!(
            render(&hostile, false, now, wall),
            r"leader x\nleader b (term 9) (term 1)"
        );
    }

    #[test]
    fn json_lines_carry_leader_term_and_the_observed_expiry() {
        let (now, wall) = at();
        let leader = changed(Observed::Leader(ObservedLeader {
            identity: "a".into(),
            term: 3,
            lease_expires_at: now + Duration::from_millis(1500),
        }));
        assert_eq!(
            render(&leader, true, now, wall),
            r#"{"ts":"2026-12-02T11:00:00.250Z","event":"leader_changed","leader":"a","term":3,"lease_expires_at":"2026-12-02T11:00:01.750Z"}"#
        );
        let gone = changed(Observed::NoLeader(NoLeader::LeaseRanOut {
            identity: "a".into(),
            term: 3,
        }));
        assert_eq!(
            render(&gone, true, now, wall),
            r#"{"ts":"2026-12-02T11:00:00.250Z","event":"leader_changed","leader":null,"term":null,"reason":"the lease of a (term 3) ran out without a renew being observed"}"#
        );
        let failed = ObserverEvent::ReadFailed(std::sync::Arc::new(
            lock_core::LockError::timed_out("file:///x", Duration::from_secs(5)),
        ));
        assert_eq!(
            render(&failed, true, now, wall),
            r#"{"ts":"2026-12-02T11:00:00.250Z","event":"read_failed","leader":null,"term":null,"reason":"file:///x is unavailable: no answer within 5s"}"#
        );
    }
}
