//! Process-level helpers for the `demo` binary: build and find it, start instances with piped output, collect their `--json` event lines with the
//! instant each arrived, signal them and wait for them to exit. Every process started here is
//! killed when its [`Demo`] is dropped, so a failing test leaves no orphans.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::observer_lines::ObserverLine;

/// The `demo` binary of this build profile, next to the running test executable
/// (`target/<profile>/demo`). `cargo build -p demo` runs first, once per test process (cargo
/// itself decides whether anything is stale, and it is quick when nothing is); panics with
/// cargo's output if that build fails.
pub fn demo_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let mut profile_dir = exe
        .parent()
        .expect("the test executable is in a directory")
        .to_path_buf();
    if profile_dir.ends_with("deps") {
        profile_dir.pop();
    }
    build_demo(&profile_dir);
    let binary = profile_dir.join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "`cargo build -p demo` succeeded but {} does not exist",
        binary.display()
    );
    binary
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package is inside the workspace")
        .to_path_buf()
}

/// Runs `cargo build -p demo` for the profile whose output directory is `profile_dir`.
fn build_demo(profile_dir: &Path) {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut command = std::process::Command::new(cargo);
    command
        .arg("build")
        .arg("-p")
        .arg("demo")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"));
    if let Some(target_dir) = profile_dir.parent() {
        command.arg("--target-dir").arg(target_dir);
    }
    // The variables cargo sets for this test process (the package's CARGO_PKG_*, a library path,
    // a recursion count) would make the build look different from a developer's `cargo build
    // -p demo` (and scripts/test's) and rebuild the demo each time: build as they do.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = (name.starts_with("CARGO") && name != "CARGO_HOME")
            || name == "LD_LIBRARY_PATH"
            || name == "RUST_RECURSION_COUNT";
        if set_by_cargo {
            command.env_remove(name.as_ref());
        }
    }
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.arg("--profile").arg(profile);
        }
    }
    let shown = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {shown} to build the demo binary: {err}"));
    assert!(
        output.status.success(),
        "building the demo binary failed ({}): {shown}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// A `demo` command with the given arguments and no `DEMO_*` settings (nor `POD_NAME`)
/// inherited from the environment, so that only the arguments count.
///
/// The process is killed when its handle is dropped, and also (through util-linux's `setpriv`,
/// where it is installed) when the thread that started it ends, so that not even an aborting
/// test leaves a demo running.
fn demo_command(args: &[&str]) -> Command {
    demo_command_as(args, None)
}

/// [`demo_command`], run as user id `uid` (with the group id of the same number and no
/// supplementary groups) when one is given, through util-linux's `setpriv`.
fn demo_command_as(args: &[&str], uid: Option<u32>) -> Command {
    let mut command = if let Some(uid) = uid {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg("--pdeathsig")
            .arg("KILL")
            .arg(demo_binary());
        command
    } else if parent_death_signal_works() {
        let mut command = Command::new("setpriv");
        command.arg("--pdeathsig").arg("KILL").arg(demo_binary());
        command
    } else {
        Command::new(demo_binary())
    };
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        // $POD_NAME would be the default identity: only the arguments count.
        // $RUST_LOG would change what the demo logs by default, which tests assert.
        if name.to_string_lossy().starts_with("DEMO_") || name == "POD_NAME" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// True when `setpriv --pdeathsig` can start programs here. `setpriv` execs the program, so
/// the process id stays the demo's own.
fn parent_death_signal_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        std::process::Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// Runs `demo` with `args` to completion and returns what it printed; panics if it does not
/// finish within `timeout`.
pub async fn run_demo(args: &[&str], timeout: Duration) -> Output {
    let run = demo_command(args).output();
    match tokio::time::timeout(timeout, run).await {
        Ok(output) => output.expect("the demo binary starts"),
        Err(_) => panic!("demo {args:?} did not finish within {timeout:?}"),
    }
}

/// One `--json` event line of a demo process.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoEvent {
    /// When the line was read from the process's stdout, on the test's monotonic clock.
    pub arrived: Instant,
    /// The line's `ts`: when the process printed it (RFC 3339, UTC, milliseconds).
    pub ts: DateTime<Utc>,
    /// The line's `instance`.
    pub instance: String,
    /// The line's `event`: `leading`, `following`, `stopped_leading`, `released` or `exiting`;
    /// in exec mode also `child_started`, `child_stopped` and `child_exited`.
    pub event: String,
    /// The line's `leader`: the leader as the process knew it.
    pub leader: Option<String>,
    /// The line's `term`: the fencing token, for `leading`, `stopped_leading` and `released`.
    pub term: Option<u64>,
    /// The line's `reason`: why the term ended, for `stopped_leading` only.
    pub reason: Option<String>,
    /// The line's `exit_code`, for `child_stopped` and `child_exited` (`None` also when the
    /// command ended by a signal).
    pub exit_code: Option<i64>,
}

/// The events a `--json` line may name.
const EVENTS: [&str; 9] = [
    "leading",
    "following",
    "stopped_leading",
    "released",
    "handed_back",
    "exiting",
    "child_started",
    "child_stopped",
    "child_exited",
];

impl DemoEvent {
    /// True for exec mode's lines about the command (`child_started`, `child_stopped`,
    /// `child_exited`), false for the election's.
    pub fn is_child(&self) -> bool {
        self.event.starts_with("child_")
    }
}

impl DemoEvent {
    /// Parses one line, checking that it has exactly the documented form.
    pub fn parse(line: &str, arrived: Instant) -> Result<Self, String> {
        let value: Value = serde_json::from_str(line).map_err(|err| err.to_string())?;
        let object = value.as_object().ok_or("not a JSON object")?;
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let kind = object.get("event").and_then(Value::as_str);
        let stopped = kind == Some("stopped_leading");
        let expected: &[&str] = match kind {
            Some("stopped_leading") => &["event", "instance", "leader", "reason", "term", "ts"],
            Some("child_started") => &["event", "instance", "leader", "pid", "term", "ts"],
            Some("child_stopped" | "child_exited") => &[
                "event",
                "exit_code",
                "instance",
                "leader",
                "pid",
                "signal",
                "term",
                "ts",
            ],
            _ => &["event", "instance", "leader", "term", "ts"],
        };
        if keys != expected {
            return Err(format!("unexpected keys {keys:?}"));
        }
        let text = |key: &str| object[key].as_str().ok_or(format!("{key} is not a string"));
        let ts_text = text("ts")?;
        if ts_text.len() != "2026-11-21T08:00:00.123Z".len() || !ts_text.ends_with('Z') {
            return Err(format!(
                "ts {ts_text:?} is not RFC 3339 UTC with milliseconds"
            ));
        }
        let ts = DateTime::parse_from_rfc3339(ts_text)
            .map_err(|err| format!("ts {ts_text:?}: {err}"))?
            .with_timezone(&Utc);
        let event = text("event")?;
        if !EVENTS.contains(&event) {
            return Err(format!("unknown event {event:?}"));
        }
        let leader = match &object["leader"] {
            Value::Null => None,
            Value::String(leader) => Some(leader.clone()),
            other => return Err(format!("leader {other} is neither a string nor null")),
        };
        let term = match &object["term"] {
            Value::Null => None,
            other => Some(
                other
                    .as_u64()
                    .ok_or(format!("term {other} is neither a count nor null"))?,
            ),
        };
        let has_term = matches!(
            event,
            "leading" | "stopped_leading" | "released" | "handed_back"
        ) || event.starts_with("child_");
        if term.is_some() != has_term {
            return Err(format!("term {term:?} does not fit event {event:?}"));
        }
        let reason = if stopped {
            Some(text("reason")?.to_owned())
        } else {
            None
        };
        let exit_code = object.get("exit_code").and_then(Value::as_i64);
        Ok(Self {
            arrived,
            ts,
            instance: text("instance")?.to_owned(),
            event: event.to_owned(),
            leader,
            term,
            reason,
            exit_code,
        })
    }
}

/// Everything read from a demo process's stdout so far.
#[derive(Clone, Debug, Default)]
pub struct Lines {
    /// The event lines, in order.
    pub events: Vec<DemoEvent>,
    /// The lines of `demo observe --json`, in order.
    pub observed: Vec<ObserverLine>,
    /// Lines that are not event lines of the documented form, with the reason.
    pub unparsed: Vec<String>,
    /// Stdout reached its end (the process exited or closed it).
    pub closed: bool,
}

/// A running `demo --json` process.
#[derive(Debug)]
pub struct Demo {
    name: String,
    pid: Pid,
    child: Child,
    lines: watch::Receiver<Lines>,
    stderr: Arc<Mutex<String>>,
    /// True once stderr was read to its end (or is not read at all).
    stderr_done: watch::Receiver<bool>,
    /// True while stdout is not read ([`Demo::stall_stdout`]).
    stall: watch::Sender<bool>,
}

impl Demo {
    /// Starts `demo --instance NAME --json` with further `args`, reading its stdout and stderr.
    pub fn start(name: &str, args: &[&str]) -> Self {
        let mut all = vec!["--instance", name, "--json"];
        all.extend_from_slice(args);
        Self::start_with(name, &all)
    }

    /// Starts `demo --instance NAME --json` with further `args` and extra environment
    /// variables `env`, reading its stdout and stderr.
    pub fn start_with_env(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let mut all = vec!["--instance", name, "--json"];
        all.extend_from_slice(args);
        Self::spawn_env(name, &all, true, env)
    }

    /// Starts `demo ARGS` with exactly `args` (`name` only labels it in reports), reading its
    /// stdout and stderr. Without `--json` every stdout line lands in [`Demo::unparsed`].
    pub fn start_with(name: &str, args: &[&str]) -> Self {
        Self::spawn(name, args, true)
    }

    /// Starts `demo ARGS` like [`Demo::start_with`] but never reads its stdout nor its stderr:
    /// the pipes stay open and fill up, as with a reader that stopped reading. It logs at
    /// `info` (`RUST_LOG=info`), so that every change of its election writes to stderr.
    /// [`Demo::events`] and [`Demo::stderr`] stay empty.
    pub fn start_unread(name: &str, args: &[&str]) -> Self {
        Self::spawn(name, args, false)
    }

    /// Starts `demo ARGS` like [`Demo::start_with`], as user id `uid` (its group id the same
    /// number, no supplementary groups), so that file permissions apply even when the tests
    /// run as root. Needs util-linux's `setpriv` (and root, to switch users).
    pub fn start_as_user(name: &str, uid: u32, args: &[&str]) -> Self {
        Self::spawn_command(name, demo_command_as(args, Some(uid)), true, &[])
    }

    fn spawn(name: &str, args: &[&str], read_output: bool) -> Self {
        Self::spawn_env(name, args, read_output, &[])
    }

    fn spawn_env(name: &str, args: &[&str], read_output: bool, env: &[(String, String)]) -> Self {
        Self::spawn_command(name, demo_command(args), read_output, env)
    }

    fn spawn_command(
        name: &str,
        mut command: Command,
        read_output: bool,
        env: &[(String, String)],
    ) -> Self {
        command.envs(env.iter().map(|(key, value)| (key, value)));
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        if !read_output {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start demo {name}: {err}"));
        let pid = child
            .id()
            .expect("a process that was just started has an id");
        let pid = Pid::from_raw(i32::try_from(pid).expect("process ids fit in an i32"));
        let (sender, lines) = watch::channel(Lines::default());
        let (stall, stalled) = watch::channel(false);
        if read_output {
            let stdout = child.stdout.take().expect("stdout is piped");
            tokio::spawn(read_events(stdout, sender, stalled));
        } else {
            // The unread pipe stays in `child` (closed when it is dropped); it counts as ended
            // so that [`Demo::wait_exit`] waits only for the exit.
            sender.send_modify(|lines| lines.closed = true);
        }
        let collected = Arc::new(Mutex::new(String::new()));
        let (stderr_ended, stderr_done) = watch::channel(!read_output);
        if read_output {
            let stderr = child.stderr.take().expect("stderr is piped");
            let into = collected.clone();
            tokio::spawn(async move {
                read_all(stderr, into).await;
                let _ = stderr_ended.send(true);
            });
        }
        Self {
            name: name.to_owned(),
            pid,
            child,
            lines,
            stderr: collected,
            stderr_done,
            stall,
        }
    }

    /// Stops reading the demo's stdout and fills its pipe with filler lines (which the reader
    /// skips later): from now on the demo's writes to stdout block, as when whatever reads its
    /// output hangs. [`unstall_stdout`](Self::unstall_stdout) reads again. Returns how many
    /// bytes of filler it took.
    pub fn stall_stdout(&self) -> usize {
        self.stall.send_replace(true);
        // Let a read in progress finish before the filler goes in.
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.fill_pipe_with(1, &FILLER)
    }

    /// Reads the demo's stdout again after [`stall_stdout`](Self::stall_stdout).
    pub fn unstall_stdout(&self) {
        self.stall.send_replace(false);
    }

    /// The process id of the demo.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Fills the demo's stdout pipe to the brim by writing filler into it through
    /// `/proc/PID/fd/1` (of a demo started with [`Demo::start_unread`]): from then on every
    /// write of the demo to stdout blocks. Returns how many bytes it took.
    pub fn fill_stdout_pipe(&self) -> usize {
        self.fill_pipe(1)
    }

    /// Fills the demo's stderr pipe as [`Demo::fill_stdout_pipe`] fills stdout's.
    pub fn fill_stderr_pipe(&self) -> usize {
        self.fill_pipe(2)
    }

    fn fill_pipe(&self, fd: u8) -> usize {
        self.fill_pipe_with(fd, &[b'#'; 4096])
    }

    fn fill_pipe_with(&self, fd: u8, filler: &[u8; 4096]) -> usize {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = format!("/proc/{}/fd/{fd}", self.pid);
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)
            .unwrap_or_else(|err| panic!("cannot open {path}: {err}"));
        let mut written = 0;
        // A pipe holds at most 1 MiB unless an administrator raised the limit: 64 MiB bounds it.
        while written < 64 << 20 {
            match pipe.write(filler) {
                Ok(count) => written += count,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return written,
                Err(err) => panic!("cannot fill {path}: {err}"),
            }
        }
        panic!("{path} took 64 MiB without filling up: is it a pipe?");
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event lines read so far.
    pub fn events(&self) -> Vec<DemoEvent> {
        self.lines.borrow().events.clone()
    }

    /// The lines of `demo observe --json` read so far.
    pub fn observed(&self) -> Vec<ObserverLine> {
        self.lines.borrow().observed.clone()
    }

    /// The lines read so far that were not event lines of the documented form.
    pub fn unparsed(&self) -> Vec<String> {
        self.lines.borrow().unparsed.clone()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The first line of stderr that contains `needle`, whole (as a user reads it); panics
    /// with the process's report when none comes `within`.
    pub async fn stderr_line(&self, needle: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.stderr().lines().find(|line| line.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                started.elapsed() < within,
                "{}: no stderr line with {needle:?} within {within:?}\n{}",
                self.name,
                self.report()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The base URL (`http://ADDR`) this instance serves HTTP on, from the `serving HTTP on`
    /// line of its stderr; panics with its report if none comes `within`.
    pub async fn http_base(&self, within: Duration) -> String {
        let started = Instant::now();
        loop {
            // Whole lines only: a read may end in the middle of the address.
            if let Some(base) = self
                .stderr()
                .split_inclusive('\n')
                .filter(|line| line.ends_with('\n'))
                .find_map(|line| line.strip_prefix("serving HTTP on "))
            {
                return base.trim().to_owned();
            }
            assert!(
                started.elapsed() < within,
                "no HTTP address within {within:?}\n{}",
                self.report()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first event that `matches`; panics, showing what the process printed, when none
    /// arrives within `timeout` or stdout ends first.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&DemoEvent) -> bool,
    ) -> DemoEvent {
        let mut lines = self.lines.clone();
        let waited = tokio::time::timeout(
            timeout,
            lines.wait_for(|lines| lines.closed || lines.events.iter().any(&matches)),
        )
        .await
        .is_ok();
        let found = self.events().into_iter().find(|event| matches(event));
        match (waited, found) {
            (_, Some(event)) => event,
            (true, None) => panic!(
                "{}: stdout ended before {what}\n{}",
                self.name,
                self.report()
            ),
            (false, None) => {
                panic!(
                    "{}: no {what} within {timeout:?}\n{}",
                    self.name,
                    self.report()
                )
            }
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid, signal)
            .unwrap_or_else(|err| panic!("cannot send {signal} to demo {}: {err}", self.name));
    }

    /// Sends SIGINT, as CTRL+C in its terminal would.
    pub fn interrupt(&self) {
        self.signal(Signal::SIGINT);
    }

    /// Waits for the process to exit and for its stdout and stderr to be read to the end (a
    /// last line on stderr, such as the one that says why it exited, may still be in the pipe
    /// when the exit is seen); panics, showing what it printed, if that takes longer than
    /// `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(status) => status.expect("waiting for a child process"),
            Err(_) => panic!(
                "{}: did not exit within {timeout:?}\n{}{}",
                self.name,
                process_tree(self.pid),
                self.report()
            ),
        };
        let mut lines = self.lines.clone();
        if tokio::time::timeout_at(deadline, lines.wait_for(|lines| lines.closed))
            .await
            .is_err()
        {
            panic!(
                "{}: exited ({status}) but its stdout stayed open past {timeout:?}\n{}",
                self.name,
                self.report()
            );
        }
        let mut stderr_done = self.stderr_done.clone();
        if tokio::time::timeout_at(deadline, stderr_done.wait_for(|done| *done))
            .await
            .is_err()
        {
            panic!(
                "{}: exited ({status}) but its stderr stayed open past {timeout:?}\n{}",
                self.name,
                self.report()
            );
        }
        status
    }

    /// Everything the process printed so far, for failure messages.
    pub fn report(&self) -> String {
        let lines = self.lines.borrow().clone();
        let mut report = format!("--- demo {} stdout:\n", self.name);
        for event in &lines.events {
            report.push_str(&format!("{event:?}\n"));
        }
        for line in &lines.observed {
            report.push_str(&format!("{line:?}\n"));
        }
        for line in &lines.unparsed {
            report.push_str(&format!("unparsed: {line}\n"));
        }
        report.push_str(&format!(
            "--- demo {} stderr:\n{}",
            self.name,
            self.stderr()
        ));
        report
    }
}

/// `pid` and its descendants, one line each (pid, state, kernel wait channel, command line), to
/// show where a process that does not exit is stuck.
fn process_tree(pid: Pid) -> String {
    let field = |pid: i32, file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = field(pid, "stat") else {
            continue;
        };
        // After the parenthesised command name: state, then the parent's pid.
        let mut rest = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace();
        let state = rest.next().unwrap_or("?").to_owned();
        let parent = rest.next().and_then(|p| p.parse::<i32>().ok()).unwrap_or(0);
        all.push((pid, parent, state));
    }
    let mut tree = String::from("--- process tree:\n");
    let mut queue = vec![(pid.as_raw(), 0)];
    while let Some((pid, depth)) = queue.pop() {
        let Some((_, _, state)) = all.iter().find(|(p, _, _)| *p == pid) else {
            continue;
        };
        let wchan = field(pid, "wchan").unwrap_or_default();
        let command = field(pid, "cmdline").unwrap_or_default().replace('\0', " ");
        let command: String = command.chars().take(120).collect();
        tree.push_str(&format!(
            "{}{pid} {state} wchan={wchan} {command}\n",
            "  ".repeat(depth)
        ));
        for (child, _, _) in all.iter().filter(|(_, parent, _)| *parent == pid) {
            queue.push((*child, depth + 1));
        }
    }
    tree
}

/// The filler [`Demo::stall_stdout`] writes into a pipe: whole lines of it, each written at
/// once (a pipe write of at most 4096 bytes is atomic), which the reader skips.
const FILLER: [u8; 4096] = {
    let mut line = [b'#'; 4096];
    line[4095] = b'\n';
    line
};

async fn read_events(
    stdout: impl AsyncRead + Unpin,
    sender: watch::Sender<Lines>,
    mut stalled: watch::Receiver<bool>,
) {
    let mut reader = BufReader::new(stdout).lines();
    loop {
        // While stalled, nothing is read: the pipe fills and the demo's writes block.
        if stalled.wait_for(|stalled| !stalled).await.is_err() {
            break;
        }
        let Ok(Some(line)) = reader.next_line().await else {
            break;
        };
        if !line.is_empty() && line.bytes().all(|byte| byte == b'#') {
            continue;
        }
        let arrived = Instant::now();
        match DemoEvent::parse(&line, arrived) {
            Ok(event) => sender.send_modify(|lines| lines.events.push(event)),
            Err(reason) => match ObserverLine::parse(&line, arrived) {
                Ok(observed) => sender.send_modify(|lines| lines.observed.push(observed)),
                Err(_) => {
                    sender.send_modify(|lines| lines.unparsed.push(format!("{line} ({reason})")))
                }
            },
        }
    }
    sender.send_modify(|lines| lines.closed = true);
}

async fn read_all(mut stream: impl AsyncRead + Unpin, into: Arc<Mutex<String>>) {
    let mut buffer = [0u8; 4096];
    while let Ok(read @ 1..) = stream.read(&mut buffer).await {
        into.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
}

/// Polls `condition` until it holds; panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "no {what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One term as a process reported it: from its `leading` line to its `stopped_leading` line
/// (`None`: it never reported the end).
#[derive(Clone, Debug, PartialEq)]
pub struct LeadingInterval {
    /// The instance that led.
    pub instance: String,
    /// The term's fencing token.
    pub term: Option<u64>,
    /// The `ts` of the `leading` line.
    pub start: DateTime<Utc>,
    /// The `ts` of the `stopped_leading` line that ended it.
    pub end: Option<DateTime<Utc>>,
}

/// The terms one process reported, in order.
pub fn leading_intervals(events: &[DemoEvent]) -> Vec<LeadingInterval> {
    let mut intervals: Vec<LeadingInterval> = Vec::new();
    for event in events {
        match event.event.as_str() {
            "leading" => intervals.push(LeadingInterval {
                instance: event.instance.clone(),
                term: event.term,
                start: event.ts,
                end: None,
            }),
            "stopped_leading" => {
                if let Some(open) = intervals.last_mut().filter(|last| last.end.is_none()) {
                    open.end = Some(event.ts);
                }
            }
            _ => {}
        }
    }
    intervals
}

/// Pairs of terms of different processes that overlap in time (an interval without an end
/// lasts forever). Touching ends (one stops in the millisecond the other starts) do not count.
pub fn overlapping_terms(processes: &[Vec<DemoEvent>]) -> Vec<(LeadingInterval, LeadingInterval)> {
    let intervals: Vec<LeadingInterval> = processes
        .iter()
        .flat_map(|events| leading_intervals(events))
        .collect();
    let mut overlaps = Vec::new();
    for (i, first) in intervals.iter().enumerate() {
        for second in &intervals[i + 1..] {
            if first.instance == second.instance {
                continue;
            }
            let first_before_second_ends = second.end.is_none_or(|end| first.start < end);
            let second_before_first_ends = first.end.is_none_or(|end| second.start < end);
            if first_before_second_ends && second_before_first_ends {
                overlaps.push((first.clone(), second.clone()));
            }
        }
    }
    overlaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(instance: &str, event: &str, ms: i64, term: Option<u64>) -> DemoEvent {
        DemoEvent {
            arrived: Instant::now(),
            ts: DateTime::from_timestamp_millis(ms).unwrap(),
            instance: instance.into(),
            event: event.into(),
            leader: None,
            term,
            reason: None,
            exit_code: None,
        }
    }

    #[test]
    fn lines_of_the_documented_form_parse() {
        let line = r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"leading","leader":"b","term":7}"#;
        let event = DemoEvent::parse(line, Instant::now()).unwrap();
        assert_eq!(event.instance, "b");
        assert_eq!(event.term, Some(7));
        assert_eq!(event.ts.timestamp_subsec_millis(), 123);
        let following = r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"following","leader":null,"term":null}"#;
        let stopped = r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"stopped_leading","leader":null,"term":7,"reason":"the election was cancelled"}"#;
        assert_eq!(
            DemoEvent::parse(stopped, Instant::now())
                .unwrap()
                .reason
                .as_deref(),
            Some("the election was cancelled")
        );
        assert_eq!(
            DemoEvent::parse(following, Instant::now()).unwrap().leader,
            None
        );
    }

    #[test]
    fn other_lines_do_not() {
        for line in [
            "b: leading (term 7)",
            r#"{"ts":"2026-11-21T08:00:00Z","instance":"b","event":"leading","leader":"b","term":7}"#,
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"leading","leader":"b","term":null}"#,
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"won","leader":"b","term":7}"#,
            r#"{"ts":"2026-11-21T08:00:00.123Z","instance":"b","event":"exiting","leader":null}"#,
        ] {
            assert!(DemoEvent::parse(line, Instant::now()).is_err(), "{line}");
        }
    }

    #[test]
    fn overlaps_are_found_and_handovers_are_not_overlaps() {
        let a = vec![
            event("a", "leading", 1000, Some(0)),
            event("a", "stopped_leading", 2000, Some(0)),
        ];
        let b = vec![
            event("b", "leading", 2000, Some(1)),
            event("b", "stopped_leading", 3000, Some(1)),
        ];
        assert!(overlapping_terms(&[a.clone(), b]).is_empty());
        let c = vec![event("c", "leading", 1999, Some(1))];
        assert_eq!(overlapping_terms(&[a, c]).len(), 1);
    }
}
