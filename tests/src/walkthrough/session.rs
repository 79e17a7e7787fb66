//! Running a walkthrough: one `bash` reads the commands one by one, as a reader types them,
//! with stderr joined to stdout and the demo binary first on `PATH`. Background instances
//! (`&`) keep printing into the same output, so a step's output is what arrived between its
//! command and the next one: the test waits for the command to finish, then (boundedly) for as
//! many lines as the page shows, then for a short quiet spell that catches extra lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use regex::Regex;

use super::parse::Walkthrough;
use crate::demo::demo_binary;

/// Printed by the shell after each command, to tell where the command's own output ends.
const STEP_DONE: &str = "__walkthrough_step_done__";
/// How long one command may run in the foreground.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long the lines the page shows may take to arrive after the command returned
/// (background instances electing, taking over, stopping).
const OUTPUT_LIMIT: Duration = Duration::from_secs(10);
/// A step's output is complete once nothing arrived for this long...
const QUIET: Duration = Duration::from_millis(300);
/// ...or after this much longer at most, however chatty the instances are.
const QUIET_LIMIT: Duration = Duration::from_secs(3);

/// What bash, without a terminal, says of a background job that a signal ended (`bash: line 9:
/// 18262 Killed  demo ...`); a terminal says it differently (`[1]+ Killed ...`) at the next
/// prompt, so the pages leave it out and so does the comparison.
fn is_job_notice(line: &str) -> bool {
    static NOTICE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    NOTICE
        .get_or_init(|| Regex::new(r"^bash: line \d+: +\d+ [A-Z]").expect("a valid pattern"))
        .is_match(line)
}

/// An address or name the page documents and the one this run uses instead: commands get
/// `real` for `documented`, and output gets `documented` back for `real`.
#[derive(Debug, Clone)]
pub struct Substitution {
    /// As the page writes it: `127.0.0.1:6379`.
    pub documented: String,
    /// As this run needs it: `127.0.0.1:41023`.
    pub real: String,
}

impl Substitution {
    /// `real` in place of `documented`.
    pub fn new(documented: impl Into<String>, real: impl Into<String>) -> Self {
        Self {
            documented: documented.into(),
            real: real.into(),
        }
    }
}

/// Runs every step of `walkthrough` in a fresh temporary directory with `env` added, and
/// returns what each step printed (with documented names put back). Every process the
/// walkthrough started is killed at the end.
pub fn run(
    walkthrough: &Walkthrough,
    substitutions: &[Substitution],
    env: &[(&str, &str)],
) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().expect("a temporary directory for the walkthrough");
    let mut shell = Shell::start(dir.path(), env);
    let back = reverse(substitutions);
    walkthrough
        .steps
        .iter()
        .map(|step| {
            let mut command = step.command.clone();
            for substitution in substitutions {
                command = command.replace(&substitution.documented, &substitution.real);
            }
            shell
                .step(&command, step.expected.len(), &step.location)
                .into_iter()
                .map(|line| {
                    back.iter().fold(line, |line, (real, documented)| {
                        real.replace_all(&line, documented.as_str()).into_owned()
                    })
                })
                .collect()
        })
        .collect()
}

/// Patterns that find the real values in output, as whole words where they start or end
/// with one (a port inside a longer number is not a port).
fn reverse(substitutions: &[Substitution]) -> Vec<(Regex, String)> {
    substitutions
        .iter()
        .map(|substitution| {
            let real = &substitution.real;
            let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
            let start = if word(real.chars().next()) { r"\b" } else { "" };
            let end = if word(real.chars().last()) { r"\b" } else { "" };
            let pattern = format!("{start}{}{end}", regex::escape(real));
            (
                Regex::new(&pattern).expect("an escaped literal is a valid pattern"),
                substitution.documented.clone(),
            )
        })
        .collect()
}

/// The shell and the lines it (and everything it started) printed.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Shell {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let demo_dir = demo_binary()
            .parent()
            .expect("the demo binary is in a directory")
            .to_path_buf();
        let path = std::env::join_paths(std::iter::once(demo_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .expect("PATH entries without separators");
        let mut command = Command::new("bash");
        command
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env("PATH", path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so that the end of the walkthrough can kill the shell
            // and every instance it left in the background at once.
            .process_group(0);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start bash for a walkthrough: {err}"));
        let stdin = child.stdin.take().expect("bash's stdin is piped");
        let stdout = child.stdout.take().expect("bash's stdout is piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buffer);
                let line = line.trim_end_matches('\n');
                // Output without a final newline (a file, an HTTP body) runs into the marker.
                let parts: Vec<&str> = match line.strip_suffix(STEP_DONE) {
                    Some(before) if !before.is_empty() => vec![before, STEP_DONE],
                    _ => vec![line],
                };
                for part in parts.into_iter().filter(|part| !is_job_notice(part)) {
                    if sender.send(part.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut shell = Self {
            child,
            stdin,
            lines,
        };
        shell.send("exec 2>&1");
        shell
    }

    fn send(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").expect("bash reads its commands");
        self.stdin.flush().expect("bash reads its commands");
    }

    /// Runs one command and returns its output (see the module's docs for where it ends).
    fn step(&mut self, command: &str, expected_lines: usize, location: &str) -> Vec<String> {
        self.send(command);
        self.send(&format!("printf '%s\\n' {STEP_DONE}"));
        let mut output = Vec::new();
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == STEP_DONE => break,
                Ok(line) => output.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{location}: `{command}` did not return within {COMMAND_LIMIT:?}; it printed:\n{}",
                    output.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{location}: the shell ended during `{command}`; it printed:\n{}",
                    output.join("\n")
                ),
            }
        }
        let deadline = Instant::now() + OUTPUT_LIMIT;
        while output.len() < expected_lines {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => output.push(line),
                Err(_) => break,
            }
        }
        let deadline = Instant::now() + QUIET_LIMIT;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(QUIET) {
                Ok(line) => output.push(line),
                Err(_) => break,
            }
        }
        output
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // The group's id is the shell's pid (it leads its own group).
        let group = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32"));
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
