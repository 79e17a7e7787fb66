//! The process of a server the test helpers started: signals, and SIGKILL on drop.

use std::process::Child;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One server process (or none, between a kill and a restart). Dropping it kills the process.
#[derive(Debug)]
pub struct ServerProcess {
    program: &'static str,
    child: Option<Child>,
}

impl ServerProcess {
    /// No process yet; `program` names it in panics.
    pub fn new(program: &'static str) -> Self {
        Self {
            program,
            child: None,
        }
    }

    /// Takes charge of a freshly spawned process.
    pub fn started(&mut self, child: Child) {
        self.child = Some(child);
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: connections stay open but nothing is answered, as with a server wedged or cut
    /// off by the network. [`resume`](Self::resume) continues it.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT for a [paused](Self::pause) process.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let program = self.program;
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{program} is not running"));
        let pid = Pid::from_raw(i32::try_from(pid).expect("a process id fits in i32"));
        kill(pid, signal).unwrap_or_else(|err| panic!("cannot send {signal} to {program}: {err}"));
    }

    /// SIGKILL (no shutdown, nothing saved), then waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
