//! Exec mode's supervisor: a small process between the demo and its command that makes the
//! command share the demo's fate, which the demo alone cannot ensure.
//!
//! Why a process: when the demo is killed with SIGKILL or stopped with SIGSTOP it runs no code
//! at all, so whatever enforces "the command runs only while its demo leads" must run outside
//! it. A parent-death signal (`PR_SET_PDEATHSIG`) covers only the kill, needs `unsafe` in
//! `pre_exec`, and fires when the *thread* that forked exits; a supervisor covers the kill, the
//! stop, and its own loss of contact, with no `unsafe` at all.
//!
//! The demo starts `demo __exec-supervisor DEMO_PID -- CMD ARGS...` in a process group of its
//! own, with one end of a Unix socket pair as its stdin (the command's stdin is /dev/null). The
//! supervisor starts the command in a further process group of its own and then:
//! - reports `pid N` (or `error MESSAGE` when the command cannot start) on the socket;
//! - SIGKILLs the command's group the moment the socket ends (the demo exited or was killed:
//!   the kernel closes its end) or its parent is no longer the demo;
//! - checks the demo's state every [`POLL`]: when the demo is stopped (SIGSTOP, CTRL+Z) it
//!   SIGSTOPs the command's group and keeps it stopped until the demo, resumed, says `c`
//!   (the term is still valid) or `k` (it is not: the command must not run another moment);
//! - on `t` sends SIGTERM to the group, on `k` SIGKILL;
//! - when the command exits, SIGKILLs what it left in its group (nothing of a term outlives
//!   it), reports `exit RAW_WAIT_STATUS` and exits.
//!
//! It ignores nothing and handles no signals: it lives in a process group of its own, so
//! CTRL+C and a terminal's SIGHUP reach only the demo, which then stops the command in order.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getppid, Pid};

/// The first argument that starts the supervisor instead of the demo.
pub const ARG: &str = "__exec-supervisor";

/// How often the supervisor checks whether the demo is stopped: the command runs at most this
/// long after its demo stopped, far less than any lease (at least a millisecond, in practice
/// seconds), at a cost of 50 reads of one small /proc file per second.
pub const POLL: Duration = Duration::from_millis(20);

/// The demo's requests, one byte each on the socket.
pub mod request {
    /// Continue the command if it was stopped with the demo: the term is still valid.
    pub const CONTINUE: u8 = b'c';
    /// SIGTERM to the command's group.
    pub const TERMINATE: u8 = b't';
    /// SIGKILL to the command's group.
    pub const KILL: u8 = b'k';
}

/// What arrives from the demo.
enum Message {
    Request(u8),
    /// The socket ended: the demo is gone.
    Gone,
}

/// Runs the supervisor for `args` (what follows [`ARG`]); the demo's `main` calls this.
pub fn main(args: &[String]) -> ExitCode {
    let Some((demo, command)) = parse(args) else {
        eprintln!("error: {ARG} is for the demo's own use: {ARG} DEMO_PID -- CMD ARGS...");
        return ExitCode::from(2);
    };
    // The demo may have died before this process ran: then nobody would stop the command.
    if getppid() != demo {
        return ExitCode::FAILURE;
    }
    let socket = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(err) => {
            eprintln!("error: the exec supervisor has no socket to the demo: {err}");
            return ExitCode::FAILURE;
        }
    };
    let (program, arguments) = command.split_first().expect("parse requires a command");
    let child = Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn();
    let mut reply = &socket;
    let child = match child {
        Ok(child) => child,
        Err(err) => {
            let message = err.to_string().replace('\n', " ");
            let _ = writeln!(reply, "error {message}");
            return ExitCode::FAILURE;
        }
    };
    if writeln!(reply, "pid {}", child.id()).is_err() {
        // The demo is already gone.
        kill_and_reap(child);
        return ExitCode::FAILURE;
    }
    let messages = match listen(&socket) {
        Ok(messages) => messages,
        Err(err) => {
            eprintln!("error: the exec supervisor cannot read from the demo: {err}");
            kill_and_reap(child);
            return ExitCode::FAILURE;
        }
    };
    let status = supervise(child, demo, &messages);
    if let Some(status) = status {
        let _ = writeln!(reply, "exit {}", status.into_raw());
    }
    ExitCode::SUCCESS
}

/// `DEMO_PID -- CMD ARGS...`
fn parse(args: &[String]) -> Option<(Pid, &[String])> {
    let [pid, separator, command @ ..] = args else {
        return None;
    };
    let pid = pid.parse().ok().filter(|pid| *pid > 1)?;
    (separator == "--" && !command.is_empty()).then_some((Pid::from_raw(pid), command))
}

/// Reads the demo's requests on a thread of its own, so that the main loop can wait for them
/// and poll the demo's state at once.
fn listen(socket: &UnixStream) -> std::io::Result<Receiver<Message>> {
    let reader = socket.try_clone()?;
    let (sender, messages) = mpsc::channel();
    std::thread::Builder::new()
        .name("requests".into())
        .spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let byte = match reader.fill_buf() {
                    Ok(&[byte, ..]) => byte,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    // The end, or an error: either way the demo can ask nothing more.
                    Ok([]) | Err(_) => break,
                };
                reader.consume(1);
                if sender.send(Message::Request(byte)).is_err() {
                    return;
                }
            }
            let _ = sender.send(Message::Gone);
        })?;
    Ok(messages)
}

/// Runs until the command exits (its status) or the demo is gone (`None`, the command killed).
fn supervise(mut child: Child, demo: Pid, messages: &Receiver<Message>) -> Option<ExitStatus> {
    let group = Pid::from_raw(i32::try_from(child.id()).expect("process ids fit in an i32"));
    let signal = |signal: Signal| {
        // Fails only when the group is gone, which the next wait notices.
        let _ = killpg(group, signal);
    };
    // The command is stopped because its demo was: only the demo may let it go on.
    let mut held = false;
    loop {
        match messages.recv_timeout(POLL) {
            Ok(Message::Request(request::CONTINUE)) => {
                if held {
                    signal(Signal::SIGCONT);
                    held = false;
                }
            }
            Ok(Message::Request(request::TERMINATE)) => signal(Signal::SIGTERM),
            Ok(Message::Request(request::KILL)) => signal(Signal::SIGKILL),
            Ok(Message::Request(other)) => {
                eprintln!("warning: the exec supervisor got an unknown request {other}");
            }
            Ok(Message::Gone) | Err(RecvTimeoutError::Disconnected) => {
                kill_and_reap(child);
                return None;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                // What the command left behind in its group goes with it.
                signal(Signal::SIGKILL);
                return Some(status);
            }
            Ok(None) => {}
            Err(_) => {
                kill_and_reap(child);
                return None;
            }
        }
        if getppid() != demo {
            kill_and_reap(child);
            return None;
        }
        if !held && is_stopped(demo) {
            signal(Signal::SIGSTOP);
            held = true;
        }
    }
}

/// SIGKILL to the command's whole group, then waits for the command itself.
fn kill_and_reap(mut child: Child) {
    if let Ok(group) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// True when `pid` is stopped by a signal or a tracer (state `T` or `t` in /proc/PID/stat).
fn is_stopped(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| state_of(&stat))
        .is_some_and(|state| state == 'T' || state == 't')
}

/// The state letter of a /proc/PID/stat line: the first field after the command name, which
/// is in parentheses and may itself contain spaces and parentheses.
pub fn state_of(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_need_a_pid_and_a_command() {
        let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let ok = args(&["42", "--", "sh", "-c", "true"]);
        let (pid, command) = parse(&ok).unwrap();
        assert_eq!(pid, Pid::from_raw(42));
        assert_eq!(command, ["sh", "-c", "true"]);
        assert!(parse(&args(&["42", "--"])).is_none());
        assert!(parse(&args(&["1", "--", "true"])).is_none());
        assert!(parse(&args(&["x", "--", "true"])).is_none());
        assert!(parse(&args(&["42", "true"])).is_none());
    }

    #[test]
    fn the_state_follows_the_last_parenthesis() {
        assert_eq!(state_of("7 (demo) S 1 7 7"), Some('S'));
        assert_eq!(state_of("7 (a) T (b)) T 1"), Some('T'));
        assert_eq!(state_of("garbage"), None);
    }
}
