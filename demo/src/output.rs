//! Event lines on stdout: one line per election event, as text (`b: following a`) or as one
//! JSON object per line (`--json`), each written whole and flushed at once. In exec mode the
//! child's start, stop and exit get lines too.
//!
//! Lines are rendered (and stamped) where the event happens, and written by a thread of their
//! own ([`crate::writer`]): printing never blocks the election, even when nobody reads stdout.
//! Text lines escape control characters ([`crate::printable`]): names and reasons come from
//! the lock and from servers. JSON lines are escaped by serde.

use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use lock_core::{ElectionEvent, StopReason};
use serde::Serialize;

use crate::printable::printable;
use crate::writer::LineQueue;

/// One line to print.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// This instance started a term.
    Leading {
        /// The term's fencing token.
        term: u64,
    },
    /// Another instance leads (or nobody, when the known leader is `None`).
    Following,
    /// This instance's term ended.
    StoppedLeading {
        /// The fencing token of the term that ended.
        term: u64,
        /// Why it ended.
        reason: StopReason,
    },
    /// This instance handed the lock over after its term ended.
    Released {
        /// The fencing token of the released term.
        term: u64,
    },
    /// This instance released a takeover of its own that could not start a term.
    HandedBack {
        /// The fencing token the takeover wrote.
        term: u64,
    },
    /// The program is about to exit.
    Exiting,
    /// Exec mode: the command was started for a term.
    ChildStarted {
        /// The term it runs for.
        term: u64,
        /// Its process id.
        pid: u32,
    },
    /// Exec mode: the command ended after this instance signalled it (the term ended, or the
    /// program is shutting down).
    ChildStopped {
        /// The term it ran for.
        term: u64,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// Exec mode: the command exited on its own while this instance led.
    ChildExited {
        /// The term it ran for.
        term: u64,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
}

/// The shape of a line with `--json`; fields in this order.
#[derive(Serialize)]
struct JsonLine<'a> {
    ts: String,
    instance: &'a str,
    event: &'static str,
    leader: Option<&'a str>,
    term: Option<u64>,
    /// `stopped_leading` only: why the term ended, as the text line says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `lines_dropped` only: how many lines were dropped because stdout was not being read.
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    /// Child lines only: the child's process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    /// Child exit lines only: its exit code (null when a signal ended it).
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<Option<i32>>,
    /// Child exit lines only: the signal that ended it (null when it exited).
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<Option<i32>>,
}

/// Turns election events into lines for one instance and queues them for writing.
pub struct Output {
    instance: String,
    json: bool,
    /// The leader as this instance last knew it (from the events: what the lines report, not
    /// an answer to "who leads now", which only the elector's handle gives).
    leader: Option<String>,
    queue: LineQueue,
}

impl Output {
    /// Lines for `instance` on stdout, as JSON when `json`.
    pub fn stdout(instance: &str, json: bool) -> io::Result<Self> {
        Self::new(instance, json, io::stdout())
    }

    /// Lines for `instance` written to `out` by a thread of their own, as JSON when `json`.
    pub fn new(instance: &str, json: bool, out: impl Write + Send + 'static) -> io::Result<Self> {
        let notice = {
            let instance = instance.to_owned();
            Box::new(move |count| dropped_notice(&instance, json, count, Utc::now()))
        };
        Ok(Self {
            instance: instance.to_owned(),
            json,
            leader: None,
            queue: LineQueue::spawn(out, notice)?,
        })
    }

    /// Writes what is queued, waiting at most `timeout` for a reader that stopped reading.
    pub fn finish(&mut self, timeout: Duration) {
        self.queue.finish(timeout);
    }

    /// Prints the line an election event calls for, if any, and notes the leader it names.
    pub fn event(&mut self, event: &ElectionEvent) {
        if let Some(line) = self.line_for(event) {
            self.print(&line);
        }
    }

    /// Prints the last line: the program is exiting.
    pub fn exiting(&mut self) {
        self.print(&Line::Exiting);
    }

    /// Prints a line about the child of exec mode.
    pub fn child(&mut self, line: &Line) {
        self.print(line);
    }

    /// The line for an event (none when this instance itself became the observed holder: the
    /// `leading` line follows), updating the known leader.
    fn line_for(&mut self, event: &ElectionEvent) -> Option<Line> {
        match event {
            ElectionEvent::NewLeader(leader) => {
                self.leader.clone_from(leader);
                (leader.as_deref() != Some(self.instance.as_str())).then_some(Line::Following)
            }
            ElectionEvent::StartedLeading(term) => {
                self.leader = Some(self.instance.clone());
                Some(Line::Leading {
                    term: term.fencing_token(),
                })
            }
            ElectionEvent::StoppedLeading {
                fencing_token,
                reason,
            } => {
                if let StopReason::Superseded { holder } = reason {
                    self.leader.clone_from(holder);
                }
                Some(Line::StoppedLeading {
                    term: *fencing_token,
                    reason: reason.clone(),
                })
            }
            ElectionEvent::Released { fencing_token } => {
                self.leader = None;
                Some(Line::Released {
                    term: *fencing_token,
                })
            }
            ElectionEvent::HandedBack { fencing_token } => {
                self.leader = None;
                Some(Line::HandedBack {
                    term: *fencing_token,
                })
            }
        }
    }

    fn print(&mut self, line: &Line) {
        let text = self.render(line, Utc::now());
        self.queue.push(text);
    }

    /// The text of a line (without the newline), stamped `now` when it is JSON.
    fn render(&self, line: &Line, now: DateTime<Utc>) -> String {
        if self.json {
            self.render_json(line, now)
        } else {
            self.render_text(line)
        }
    }

    fn render_text(&self, line: &Line) -> String {
        let instance = printable(&self.instance);
        match line {
            Line::Leading { term } => format!("{instance}: leading (term {term})"),
            Line::Following => match &self.leader {
                Some(leader) => format!("{instance}: following {}", printable(leader)),
                None => format!("{instance}: no leader"),
            },
            Line::StoppedLeading { term, reason } => {
                let reason = reason.to_string();
                format!(
                    "{instance}: stopped leading (term {term}): {}",
                    printable(&reason)
                )
            }
            Line::Released { .. } => format!("{instance}: released leadership"),
            Line::HandedBack { term } => format!(
                "{instance}: released a takeover that could not start a term (token {term})"
            ),
            Line::Exiting => format!("{instance}: exiting"),
            Line::ChildStarted { term, pid } => {
                format!("{instance}: started the command (pid {pid}, term {term})")
            }
            Line::ChildStopped { term, pid, status } => {
                format!("{instance}: stopped the command (pid {pid}, term {term}): {status}")
            }
            Line::ChildExited { term, pid, status } => {
                format!("{instance}: the command exited while leading (pid {pid}, term {term}): {status}")
            }
        }
    }

    fn render_json(&self, line: &Line, now: DateTime<Utc>) -> String {
        let (event, term, pid, status) = match line {
            Line::Leading { term } => ("leading", Some(*term), None, None),
            Line::Following => ("following", None, None, None),
            Line::StoppedLeading { term, .. } => ("stopped_leading", Some(*term), None, None),
            Line::Released { term } => ("released", Some(*term), None, None),
            Line::HandedBack { term } => ("handed_back", Some(*term), None, None),
            Line::Exiting => ("exiting", None, None, None),
            Line::ChildStarted { term, pid } => ("child_started", Some(*term), Some(*pid), None),
            Line::ChildStopped { term, pid, status } => {
                ("child_stopped", Some(*term), Some(*pid), Some(status))
            }
            Line::ChildExited { term, pid, status } => {
                ("child_exited", Some(*term), Some(*pid), Some(status))
            }
        };
        let reason = match line {
            Line::StoppedLeading { reason, .. } => Some(reason.to_string()),
            _ => None,
        };
        let json = JsonLine {
            ts: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            instance: &self.instance,
            event,
            leader: self.leader.as_deref(),
            term,
            reason,
            count: None,
            pid,
            exit_code: status.map(ExitStatus::code),
            signal: status.map(ExitStatus::signal),
        };
        // A struct of strings and integers always serializes.
        serde_json::to_string(&json).expect("an event line serializes")
    }
}

/// The line that stands for `count` lines dropped because stdout was not being read:
/// `a: 3 event lines dropped: stdout is not being read`, or a `lines_dropped` JSON object
/// with `count`.
fn dropped_notice(instance: &str, json: bool, count: u64, now: DateTime<Utc>) -> String {
    if !json {
        return format!(
            "{}: {count} event lines dropped: stdout is not being read",
            printable(instance)
        );
    }
    let line = JsonLine {
        ts: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        instance,
        event: "lines_dropped",
        leader: None,
        term: None,
        reason: None,
        count: Some(count),
        pid: None,
        exit_code: None,
        signal: None,
    };
    serde_json::to_string(&line).expect("an event line serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn text_lines(instance: &str, events: &[ElectionEvent]) -> Vec<String> {
        let out = Shared::default();
        let mut output = Output::new(instance, false, out.clone()).unwrap();
        for event in events {
            output.event(event);
        }
        output.exiting();
        output.finish(Duration::from_secs(10));
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stopped(term: u64, reason: StopReason) -> ElectionEvent {
        ElectionEvent::StoppedLeading {
            fencing_token: term,
            reason,
        }
    }

    #[test]
    fn text_lines_name_the_instance_and_the_leader() {
        let lines = text_lines(
            "b",
            &[
                ElectionEvent::NewLeader(Some("a".into())),
                ElectionEvent::NewLeader(None),
                ElectionEvent::NewLeader(Some("b".into())),
                stopped(7, StopReason::Cancelled),
                ElectionEvent::Released { fencing_token: 7 },
            ],
        );
        assert_eq!(
            lines,
            [
                "b: following a",
                "b: no leader",
                "b: stopped leading (term 7): the election was cancelled",
                "b: released leadership",
                "b: exiting",
            ]
        );
    }

    #[test]
    fn json_lines_have_the_documented_shape() {
        let mut output = Output::new("b", true, Vec::new()).unwrap();
        output.leader = Some("a".into());
        let at = DateTime::parse_from_rfc3339("2026-11-21T08:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            output.render(&Line::Following, at),
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"following","leader":"a","term":null}"#
        );
        output.leader = None;
        let line = Line::StoppedLeading {
            term: 7,
            reason: StopReason::Cancelled,
        };
        assert_eq!(
            output.render(&line, at),
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"stopped_leading","leader":null,"term":7,"reason":"the election was cancelled"}"#
        );
    }

    #[test]
    fn child_lines_add_the_pid_and_how_it_ended() {
        let mut output = Output::new("a", true, Vec::new()).unwrap();
        output.leader = Some("a".into());
        let at = DateTime::parse_from_rfc3339("2026-11-21T08:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let started = Line::ChildStarted { term: 4, pid: 77 };
        assert_eq!(
            output.render(&started, at),
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"a","event":"child_started","leader":"a","term":4,"pid":77}"#
        );
        let exited = Line::ChildExited {
            term: 4,
            pid: 77,
            status: ExitStatus::from_raw(3 << 8),
        };
        assert_eq!(
            output.render(&exited, at),
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"a","event":"child_exited","leader":"a","term":4,"pid":77,"exit_code":3,"signal":null}"#
        );
        let stopped = Line::ChildStopped {
            term: 4,
            pid: 77,
            status: ExitStatus::from_raw(15),
        };
        assert!(output
            .render(&stopped, at)
            .ends_with(r#""event":"child_stopped","leader":"a","term":4,"pid":77,"exit_code":null,"signal":15}"#));
        output.json = false;
        assert_eq!(
            output.render(&exited, at),
            "a: the command exited while leading (pid 77, term 4): exit status: 3"
        );
    }

    #[test]
    fn the_known_leader_follows_the_events() {
        let mut output = Output::new("b", true, Vec::new()).unwrap();
        output.event(&ElectionEvent::NewLeader(Some("a".into())));
        assert_eq!(output.leader.as_deref(), Some("a"));
        output.event(&stopped(
            3,
            StopReason::Superseded {
                holder: Some("c".into()),
            },
        ));
        assert_eq!(output.leader.as_deref(), Some("c"));
        output.event(&ElectionEvent::Released { fencing_token: 3 });
        assert_eq!(output.leader, None);
    }

    #[test]
    fn a_hand_back_is_a_line_of_its_own() {
        let mut output = Output::new("b", true, Vec::new()).unwrap();
        output.event(&ElectionEvent::NewLeader(Some("b".into())));
        let line = output
            .line_for(&ElectionEvent::HandedBack { fencing_token: 9 })
            .expect("a line");
        assert_eq!(output.leader, None, "the lock is free after it");
        let at = Utc::now();
        assert!(output
            .render(&line, at)
            .contains(r#""event":"handed_back","leader":null,"term":9"#));
        output.json = false;
        assert_eq!(
            output.render(&line, at),
            "b: released a takeover that could not start a term (token 9)"
        );
    }

    #[test]
    fn hole_13_text_lines_escape_what_the_lock_and_servers_say() {
        let hostile = "x\nc: leading (term 99)\u{1b}[2J";
        let lines = text_lines(
            "b\u{1b}]0;t\u{7}",
            &[
                ElectionEvent::NewLeader(Some(hostile.into())),
                stopped(
                    4,
                    StopReason::Superseded {
                        holder: Some(hostile.into()),
                    },
                ),
            ],
        );
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(
            lines[0],
            r"b\u{1b}]0;t\u{7}: following x\nc: leading (term 99)\u{1b}[2J"
        );
        assert!(
            lines[1].contains(r"x\nc: leading (term 99)\u{1b}[2J"),
            "{lines:#?}"
        );
        assert!(lines.iter().all(|line| !line.chars().any(char::is_control)));
    }

    #[test]
    fn dropped_lines_are_reported_as_text_and_json() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T08:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            dropped_notice("a", false, 3, at),
            "a: 3 event lines dropped: stdout is not being read"
        );
        assert_eq!(
            dropped_notice("a", true, 3, at),
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"a","event":"lines_dropped","leader":null,"term":null,"count":3}"#
        );
    }
}
