//! The `--json` lines of `demo observe`: `leader_changed` (with a leader, its term and the
//! observed lease expiry, or with nobody and why) and `read_failed`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

/// One `--json` line of `demo observe`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObserverLine {
    /// When the line was read from the process's stdout, on the test's monotonic clock.
    pub arrived: Instant,
    /// The line's `ts`.
    pub ts: DateTime<Utc>,
    /// `leader_changed` or `read_failed`.
    pub event: String,
    /// The leader it names (`None`: nobody leads, or a failed read).
    pub leader: Option<String>,
    /// The leader's term.
    pub term: Option<u64>,
    /// Why nobody leads, or why the read failed.
    pub reason: Option<String>,
}

impl ObserverLine {
    /// Parses one line, checking that it has exactly the documented form.
    pub fn parse(line: &str, arrived: Instant) -> Result<Self, String> {
        let value: Value = serde_json::from_str(line).map_err(|err| err.to_string())?;
        let object = value.as_object().ok_or("not a JSON object")?;
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let event = object
            .get("event")
            .and_then(Value::as_str)
            .ok_or("no event")?;
        let leader = object.get("leader").and_then(Value::as_str);
        let expected: &[&str] = match (event, leader) {
            ("leader_changed", Some(_)) => &["event", "leader", "lease_expires_at", "term", "ts"],
            ("leader_changed" | "read_failed", None) => {
                &["event", "leader", "reason", "term", "ts"]
            }
            _ => return Err(format!("not an observer event: {event:?}")),
        };
        if keys != expected {
            return Err(format!("unexpected keys {keys:?}"));
        }
        let time = |key: &str| {
            let text = object[key]
                .as_str()
                .ok_or(format!("{key} is not a string"))?;
            DateTime::parse_from_rfc3339(text)
                .map(|ts| ts.with_timezone(&Utc))
                .map_err(|err| format!("{key} {text:?}: {err}"))
        };
        let ts = time("ts")?;
        let term = object["term"].as_u64();
        if term.is_some() != leader.is_some() {
            return Err(format!(
                "term {:?} does not fit leader {leader:?}",
                object["term"]
            ));
        }
        if leader.is_some() && time("lease_expires_at")? < ts {
            return Err("a leader whose lease ran out before the line".to_owned());
        }
        Ok(Self {
            arrived,
            ts,
            event: event.to_owned(),
            leader: leader.map(str::to_owned),
            term,
            reason: object
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}
