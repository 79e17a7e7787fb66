//! The demo's side of exec mode's supervisor ([`crate::supervisor`]): starts the command
//! through it, and signals and waits for the command through the socket between them.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::process::Command;

use crate::supervisor::{self, request};

/// The program that runs the supervisor: this very binary, through the kernel's link to it,
/// which still works when the file was replaced or deleted since the demo started.
const THIS_PROGRAM: &str = "/proc/self/exe";

/// A command running under a supervisor.
pub struct SupervisedChild {
    pid: u32,
    replies: Lines<BufReader<OwnedReadHalf>>,
    requests: OwnedWriteHalf,
    /// The supervisor process; reaped by the runtime once it exits (it exits right after the
    /// command), never killed: killing it would orphan the command.
    _supervisor: tokio::process::Child,
}

/// What the command's environment gets, besides the demo's own.
pub struct Environment<'a> {
    /// `LEADER_FENCING_TOKEN`.
    pub token: u64,
    /// `LEADER_IDENTITY`.
    pub identity: &'a str,
    /// `LEADER_LOCK`.
    pub lock: &'a str,
}

impl SupervisedChild {
    /// Starts `command` under a supervisor; fails when either cannot start.
    pub async fn spawn(command: &[String], env: &Environment<'_>) -> io::Result<Self> {
        if command.is_empty() {
            return Err(io::Error::other("no command"));
        }
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let supervisor = Command::new(THIS_PROGRAM)
            .arg(supervisor::ARG)
            .arg(std::process::id().to_string())
            .arg("--")
            .args(command)
            .env("LEADER_FENCING_TOKEN", env.token.to_string())
            .env("LEADER_IDENTITY", env.identity)
            .env("LEADER_LOCK", env.lock)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            // A group of its own: CTRL+C and a terminal's SIGHUP reach only the demo, which
            // stops the command in order; the supervisor outlives the demo by a poll at most.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let (read, requests) = UnixStream::from_std(ours)?.into_split();
        let mut replies = BufReader::new(read).lines();
        let first = replies.next_line().await?.unwrap_or_default();
        let pid = match first.split_once(' ') {
            Some(("pid", pid)) => pid.parse().ok(),
            Some(("error", message)) => return Err(io::Error::other(message.to_owned())),
            _ => None,
        };
        let pid = pid.ok_or_else(|| {
            io::Error::other(format!(
                "the exec supervisor said {first:?} instead of a pid"
            ))
        })?;
        Ok(Self {
            pid,
            replies,
            requests,
            _supervisor: supervisor,
        })
    }

    /// The command's process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Sends SIGTERM to the command's process group.
    pub async fn terminate(&mut self) {
        self.request(request::TERMINATE).await;
    }

    /// Sends SIGKILL to the command's process group.
    pub async fn kill(&mut self) {
        self.request(request::KILL).await;
    }

    /// Lets the command go on if it was stopped with the demo (only while the term is valid).
    pub async fn resume(&mut self) {
        self.request(request::CONTINUE).await;
    }

    /// One byte into a socket that is read all the time: never waits in practice. A supervisor
    /// that is gone has already killed the command; [`SupervisedChild::wait`] reports that.
    async fn request(&mut self, byte: u8) {
        if let Err(err) = self.requests.write_all(&[byte]).await {
            tracing::debug!(error = %err, "the exec supervisor is gone");
        }
    }

    /// Waits for the command to exit. Cancel-safe: a `select!` may drop it and call it again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            let Some(line) = self.replies.next_line().await? else {
                return Err(io::Error::other(
                    "the exec supervisor ended without reporting the command's exit (the command was killed)",
                ));
            };
            if let Some(raw) = line.strip_prefix("exit ").and_then(|raw| raw.parse().ok()) {
                return Ok(ExitStatus::from_raw(raw));
            }
            tracing::warn!(line, "the exec supervisor said something unexpected");
        }
    }
}
