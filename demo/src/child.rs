//! The demo's side of exec mode's supervisor ([`crate::supervisor`]): starts the command
//! through it, and signals and waits for the command through the socket between them.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::process::Command;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::supervisor::{self, request};

/// The program that runs the supervisor: this very binary, through the kernel's link to it,
/// which still works when the file was replaced or deleted since the demo started.
const THIS_PROGRAM: &str = "/proc/self/exe";

/// How long the supervisor may take to start the command and report its pid. A fork and two
/// execs take milliseconds even on a loaded machine; a supervisor silent for seconds is stuck
/// (seen once in CI, cause unknown), and waiting on it forever would leave the term without its
/// command and the demo deaf to CTRL+C.
pub const START_REPORT: Duration = Duration::from_secs(5);

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

/// Ends a start that is given up on (the supervisor said nothing within [`START_REPORT`], or
/// the term or the program ended meanwhile) so that nothing of it runs once this returns: the
/// supervisor is stopped first (SIGSTOP, so that it cannot start anything more), then every
/// child it has is killed, alone and with its process group (the command leads a group of its
/// own once it runs; a child that has not set its group yet is killed by its pid), then the
/// supervisor itself, whose exit is waited for. Returns what was found, for the message.
async fn abandon(mut supervisor: tokio::process::Child) -> String {
    let Some(pid) = supervisor.id() else {
        return "it had exited".to_owned();
    };
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| supervisor::state_of(&stat))
        .map_or_else(|| "gone".to_owned(), |state| format!("state {state}"));
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let supervisor_pid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    let _ = kill(supervisor_pid, Signal::SIGSTOP);
    // A stopped process shows state T at once, but give the kernel a moment on a busy machine.
    for _ in 0..100 {
        let stopped = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| supervisor::state_of(&stat))
            .is_none_or(|state| matches!(state, 'T' | 't' | 'Z' | 'X'));
        if stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let children = children_of(pid);
    for child in &children {
        if let Ok(child) = i32::try_from(*child) {
            let child = Pid::from_raw(child);
            let _ = killpg(child, Signal::SIGKILL);
            let _ = kill(child, Signal::SIGKILL);
        }
    }
    let _ = supervisor.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), supervisor.wait()).await;
    // SIGKILL takes effect when the kernel next schedules the process: wait (briefly) until
    // the children are gone or zombies, so that nothing of the start runs once this returns.
    for _ in 0..100 {
        let running = children.iter().any(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| supervisor::state_of(&stat))
                .is_some_and(|state| !matches!(state, 'Z' | 'X'))
        });
        if !running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = if children.is_empty() {
        "it had started nothing".to_owned()
    } else {
        format!("the command it had started (pid {children:?}) was killed too")
    };
    format!("pid {pid}, {state}, waiting in {wchan:?}; it was killed, and {started}")
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the parenthesised command name: the state, then the parent's pid.
                    let rest = stat.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

impl SupervisedChild {
    /// Starts `command` under a supervisor; fails when either cannot start. When `given_up`
    /// completes first (the term or the program ended), the start is undone before this
    /// returns an `Interrupted` error: nothing of it runs afterwards. A supervisor that says
    /// nothing for [`START_REPORT`] is undone likewise, with a `TimedOut` error.
    pub async fn spawn(
        command: &[String],
        env: &Environment<'_>,
        given_up: impl std::future::Future<Output = ()>,
    ) -> io::Result<Self> {
        Self::spawn_through(THIS_PROGRAM, command, env, given_up).await
    }

    /// [`spawn`](Self::spawn) with `supervisor` as the supervisor's program (tests give one
    /// that misbehaves).
    async fn spawn_through(
        supervisor: &str,
        command: &[String],
        env: &Environment<'_>,
        given_up: impl std::future::Future<Output = ()>,
    ) -> io::Result<Self> {
        if command.is_empty() {
            return Err(io::Error::other("no command"));
        }
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let supervisor = Command::new(supervisor)
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
        let first = tokio::select! {
            first = replies.next_line() => first,
            () = tokio::time::sleep(START_REPORT) => {
                let what = abandon(supervisor).await;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the exec supervisor did not start the command within {START_REPORT:?} ({what})"
                    ),
                ));
            }
            () = given_up => {
                let what = abandon(supervisor).await;
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    format!("the start was given up on ({what})"),
                ));
            }
        };
        let first = first?.unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;

    /// A fake supervisor in a directory of its own: a shell script that runs `body` and never
    /// reports; `pid` is the file its body writes a pid into.
    struct FakeSupervisor {
        dir: PathBuf,
        program: PathBuf,
        pid: PathBuf,
    }

    impl FakeSupervisor {
        fn new(name: &str, body: impl Fn(&Path) -> String) -> Self {
            let dir = std::env::temp_dir().join(format!("demo-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let program = dir.join("supervisor");
            let pid = dir.join("pid");
            std::fs::write(&program, format!("#!/bin/sh\n{}\n", body(&pid))).unwrap();
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
            Self { dir, program, pid }
        }

        /// One that hangs before it starts anything (its own pid in the file).
        fn stuck() -> Self {
            Self::new("stuck", |pid| {
                format!("echo $$ > '{}'\nexec sleep 60", pid.display())
            })
        }

        /// One that starts a command in a session (and group) of its own, as the real one
        /// does, and then says nothing (the command's pid in the file).
        fn silent(name: &str) -> Self {
            Self::new(name, |pid| {
                format!(
                    "setsid sh -c 'echo $$ > \"{}\"; exec sleep 60' &\nexec sleep 60",
                    pid.display()
                )
            })
        }

        async fn spawn(&self, given_up: impl std::future::Future<Output = ()>) -> io::Error {
            let env = Environment {
                token: 1,
                identity: "a",
                lock: "l",
            };
            let program = self.program.to_str().unwrap();
            let mut given_up = std::pin::pin!(given_up);
            // The script was just written: while another test thread forks (and before its
            // child execs), that child holds our write descriptor and exec fails with
            // ETXTBSY. That is the test's own race, not the supervisor's; try again shortly.
            for _ in 0..50 {
                let err = SupervisedChild::spawn_through(
                    program,
                    &["true".into()],
                    &env,
                    given_up.as_mut(),
                )
                .await
                .err()
                .expect("a supervisor that never reports is an error");
                if err.kind() != io::ErrorKind::ExecutableFileBusy {
                    return err;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!(
                "{} stayed busy (ETXTBSY) for a second",
                self.program.display()
            )
        }

        /// The pid its body wrote.
        fn written_pid(&self) -> i32 {
            let text = std::fs::read_to_string(&self.pid).unwrap();
            text.trim().parse().unwrap()
        }
    }

    impl Drop for FakeSupervisor {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// True when `pid` is gone or a zombie.
    fn dead(pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        supervisor::state_of(&stat).is_none_or(|state| state == 'Z')
    }

    /// Whether `pid` is dead within five seconds.
    async fn dies_soon(pid: i32) -> bool {
        for _ in 0..50 {
            if dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// A supervisor that never reports (stuck before it starts the command) costs the term
    /// [`START_REPORT`], not its life: the start fails with `TimedOut`, and the stuck process
    /// is killed rather than left behind.
    #[tokio::test]
    async fn a_supervisor_that_never_reports_is_given_up_and_killed() {
        let fake = FakeSupervisor::stuck();
        let started = tokio::time::Instant::now();
        let err = fake.spawn(std::future::pending()).await;
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        let message = err.to_string();
        assert!(
            message.contains("did not start the command within 5s"),
            "{err}"
        );
        assert!(message.contains("it had started nothing"), "{err}");
        assert!(started.elapsed() < START_REPORT + Duration::from_secs(5));
        let pid = fake.written_pid();
        assert!(
            dies_soon(pid).await,
            "the stuck supervisor {pid} still runs"
        );
    }

    /// A supervisor that started the command (in a group of its own) and then went silent is
    /// killed with its command: nothing of the start runs on unsupervised.
    #[tokio::test]
    async fn a_silent_supervisor_that_started_the_command_is_killed_with_it() {
        let fake = FakeSupervisor::silent("silent");
        let err = fake.spawn(std::future::pending()).await;
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("was killed too"), "{err}");
        let command = fake.written_pid();
        assert!(dies_soon(command).await, "the command {command} still runs");
    }

    /// A start given up on (the term ended meanwhile) is undone before `spawn` returns: the
    /// command the silent supervisor had started is dead by then, not a moment later.
    #[tokio::test]
    async fn a_start_given_up_on_is_undone_before_spawn_returns() {
        let fake = FakeSupervisor::silent("given-up");
        let err = fake
            .spawn(tokio::time::sleep(Duration::from_millis(1500)))
            .await;
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err}");
        assert!(err.to_string().contains("was killed too"), "{err}");
        let command = fake.written_pid();
        assert!(
            dead(command),
            "the command {command} still runs after spawn returned"
        );
    }
}
