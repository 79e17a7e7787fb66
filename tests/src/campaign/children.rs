//! Exec mode under faults: every instance runs a command while it leads, which appends a beat
//! to a shared file every 50 ms (its pid, its term's token, its instance, the real time), and
//! every beat must fall inside that instance's term. A command alive outside its term is the
//! hole exec mode exists to close: the work of a leader that no longer leads.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::history::Term;

/// How long after its term ended a command may still beat: the supervisor's poll of a stopped
/// demo (20 ms), the 50 ms between beats, and the signal's delivery, with room for a loaded
/// machine; still far below any lease.
pub const SLACK: Duration = Duration::from_millis(300);

/// How long a term may run before its command must have beaten once: the command's start
/// (a fork and a shell) and its first beat, with room for a loaded machine.
pub const SILENT_TERM: Duration = Duration::from_secs(2);

/// The arguments that end an instance's flags and run the beating command in exec mode.
pub fn command(log: &Path) -> Vec<String> {
    // `env -u LD_PRELOAD`: the beat's time is the real one even when the instance's wall
    // clock is stepped (libfaketime is inherited from the demo).
    let script = format!(
        r#"while :; do echo "beat $$ $LEADER_FENCING_TOKEN $LEADER_IDENTITY $(env -u LD_PRELOAD date +%s%N)" >> '{}'; sleep 0.05; done"#,
        log.display()
    );
    vec!["--".into(), "sh".into(), "-c".into(), script]
}

/// One beat: the command's instance and token, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat {
    /// The instance whose command beat.
    pub instance: String,
    /// The token of the term it was started for.
    pub token: u64,
    /// When (real time).
    pub at: DateTime<Utc>,
}

/// The beats in `log`, and the lines that are not beats (a last line still being written is
/// neither: it is skipped).
pub fn read(log: &Path) -> (Vec<Beat>, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut beats = Vec::new();
    let mut malformed = Vec::new();
    for line in complete.lines() {
        match parse(line) {
            Some(beat) => beats.push(beat),
            None => malformed.push(format!("EXEC CHILD WROTE A MALFORMED BEAT: {line:?}")),
        }
    }
    (beats, malformed)
}

fn parse(line: &str) -> Option<Beat> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ["beat", _pid, token, instance, ns] = fields[..] else {
        return None;
    };
    Some(Beat {
        instance: instance.to_owned(),
        token: token.parse().ok()?,
        at: DateTime::from_timestamp_nanos(ns.parse().ok()?),
    })
}

/// Terms that ran for more than [`SILENT_TERM`] with no beat of their command: the command
/// did not run while it should have (and the check above would have nothing to judge).
pub fn silent_terms(beats: &[Beat], terms: &[Term], until: DateTime<Utc>) -> Vec<String> {
    let long = TimeDelta::from_std(SILENT_TERM).unwrap_or_default();
    terms
        .iter()
        .filter(|term| term.end.unwrap_or(until) - term.start > long)
        .filter(|term| {
            !beats
                .iter()
                .any(|beat| beat.instance == term.instance && Some(beat.token) == term.token)
        })
        .map(|term| format!("EXEC CHILD NEVER BEAT during {term}"))
        .collect()
}

/// The beats that fall outside their instance's term of their token (from a little before its
/// start, since the `leading` line is stamped after the term began, to [`SLACK`] after its
/// end; a running term lasts until `until`), as violations.
pub fn outside_terms(beats: &[Beat], terms: &[Term], until: DateTime<Utc>) -> Vec<String> {
    let slack = TimeDelta::from_std(SLACK).unwrap_or_default();
    let mut found = Vec::new();
    for beat in beats {
        let inside = terms.iter().any(|term| {
            term.instance == beat.instance
                && term.token == Some(beat.token)
                && term.start - slack <= beat.at
                && beat.at <= term.end.unwrap_or(until) + slack
        });
        if !inside {
            found.push(format!(
                "EXEC CHILD OUTSIDE ITS TERM: {}'s command of term {} beat at {}",
                beat.instance,
                beat.token,
                beat.at.format("%H:%M:%S%.3f")
            ));
        }
    }
    found
}
