//! The thread that writes event lines, so that a stdout nobody reads never blocks the
//! election: lines wait in a bounded queue; when it is full new lines are dropped and counted,
//! and once the writer can write again it says how many it dropped.
//!
//! A thread of its own, not a task: a blocking `write` on a full pipe would hold one of the
//! runtime's two worker threads for as long as the reader sleeps.
//!
//! Logs on stderr go through a [`LogQueue`] for the same reason: the elector logs on its own
//! task (a term that ends is a warning, written before the release), so a stderr nobody reads
//! would hold up the hand-over just as a stalled stdout would.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many lines may wait for a slow reader: far more than a burst of events (a handover is a
/// handful), few enough that the memory they take stays small.
pub const QUEUE_LINES: usize = 1024;

/// Renders the notice for `count` dropped lines (without the newline).
pub type Notice = Box<dyn Fn(u64) -> String + Send>;

/// The sending side: [`LineQueue::push`] never blocks.
pub struct LineQueue {
    lines: Option<SyncSender<String>>,
    notice: Notice,
    /// Lines dropped since the last notice. The notice is queued in their place, before the
    /// next line that fits, so that it stands where the gap is.
    dropped: u64,
    done: Receiver<()>,
}

impl LineQueue {
    /// Starts the writer thread on `out`, with `notice` for the line that reports drops.
    pub fn spawn(out: impl Write + Send + 'static, notice: Notice) -> std::io::Result<Self> {
        let (lines, queued) = mpsc::sync_channel(QUEUE_LINES);
        let (finished, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("event-lines".into())
            .spawn(move || {
                write_lines(out, &queued);
                let _ = finished.send(());
            })?;
        Ok(Self {
            lines: Some(lines),
            notice,
            dropped: 0,
            done,
        })
    }

    /// Queues one line (a newline is added), after the notice of earlier drops if any; drops
    /// it when the queue is full.
    pub fn push(&mut self, line: String) {
        if self.dropped > 0 {
            let notice = (self.notice)(self.dropped);
            if !self.send(notice) {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if !self.send(line) {
            if self.dropped == 0 {
                tracing::warn!(
                    queued = QUEUE_LINES,
                    "stdout is not being read: dropping event lines until it is"
                );
            }
            self.dropped += 1;
        }
    }

    /// Queues `line` with a newline; false when the queue is full. A writer thread that is
    /// gone (it cannot be, short of a panic) takes nothing, quietly.
    fn send(&self, mut line: String) -> bool {
        let Some(lines) = &self.lines else {
            return true;
        };
        line.push('\n');
        !matches!(lines.try_send(line), Err(TrySendError::Full(_)))
    }

    /// Queues the notice of the last drops, ends the queue and waits up to `timeout` for the
    /// writer to write what is queued: a reader that stopped reading cannot hold the exit up
    /// longer than that.
    pub fn finish(&mut self, timeout: Duration) {
        if self.dropped > 0 && self.send((self.notice)(self.dropped)) {
            self.dropped = 0;
        }
        self.lines = None;
        if let Err(RecvTimeoutError::Timeout) = self.done.recv_timeout(timeout) {
            tracing::warn!(
                ?timeout,
                "stdout is not being read: exiting without writing the last event lines"
            );
        }
    }
}

/// The writer thread: writes each line whole and flushes it, until the queue ends.
fn write_lines(mut out: impl Write, queued: &Receiver<String>) {
    let mut failed = false;
    while let Ok(line) = queued.recv() {
        let written = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        if let Err(err) = written {
            // Stdout was closed: say so once, then discard lines quietly.
            if !failed {
                tracing::warn!(error = %err, "cannot write event lines to stdout");
                failed = true;
            }
        }
    }
}

/// A writer for the log subscriber that queues each write (one formatted log line) for a
/// thread that writes them to `out`; never blocks. Lines that do not fit are dropped and
/// counted in a line of their own once the thread can write again.
#[derive(Clone)]
pub struct LogQueue {
    lines: SyncSender<Vec<u8>>,
    /// Lines queued and not yet written.
    pending: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl LogQueue {
    /// Starts the thread that writes log lines to `out`.
    pub fn spawn(mut out: impl Write + Send + 'static) -> std::io::Result<Self> {
        let (lines, queued) = mpsc::sync_channel::<Vec<u8>>(QUEUE_LINES);
        let pending = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let queue = Self {
            lines,
            pending: pending.clone(),
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("log-lines".into())
            .spawn(move || {
                while let Ok(line) = queued.recv() {
                    let count = dropped.swap(0, Ordering::SeqCst);
                    if count > 0 {
                        let notice =
                            format!("{count} log lines dropped: stderr is not being read\n");
                        let _ = out.write_all(notice.as_bytes());
                    }
                    // Nowhere to report a failure to write the logs.
                    let _ = out.write_all(&line).and_then(|()| out.flush());
                    pending.fetch_sub(1, Ordering::SeqCst);
                }
            })?;
        Ok(queue)
    }

    /// Waits up to `timeout` for the queued lines to be written (before the process exits).
    pub fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Write for LogQueue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        match self.lines.try_send(buf.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                self.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};

    use super::*;

    #[derive(Default)]
    struct GateState {
        open: bool,
        waiting: bool,
        written: Vec<u8>,
    }

    /// A writer that blocks until it is opened, then collects what is written.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<GateState>, Condvar)>);

    impl Gate {
        fn with<T>(&self, f: impl FnOnce(&mut GateState) -> T) -> T {
            f(&mut self.0 .0.lock().unwrap())
        }
        fn open(&self) {
            self.with(|state| state.open = true);
            self.0 .1.notify_all();
        }
        fn text(&self) -> String {
            self.with(|state| String::from_utf8(state.written.clone()).unwrap())
        }
        /// Waits (bounded) until `condition` holds.
        fn wait_until(&self, condition: impl Fn(&GateState) -> bool) {
            for _ in 0..500 {
                if self.with(|state| condition(state)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("the writer did not get there within 5s");
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, opened) = &*self.0;
            let mut state = lock.lock().unwrap();
            state.waiting = true;
            let mut state = opened.wait_while(state, |state| !state.open).unwrap();
            state.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hole_9_a_blocked_writer_never_blocks_push_and_drops_are_reported_in_place() {
        let gate = Gate::default();
        let notice: Notice = Box::new(|count| format!("a: {count} lines dropped"));
        let mut queue = LineQueue::spawn(gate.clone(), notice).unwrap();
        queue.push("line 0".into());
        gate.wait_until(|state| state.waiting);
        let extra = 10;
        let started = std::time::Instant::now();
        // The blocked writer holds line 0; QUEUE_LINES lines wait; the rest are dropped.
        for i in 1..=QUEUE_LINES + extra {
            queue.push(format!("line {i}"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "push never blocks"
        );
        assert_eq!(queue.dropped, extra as u64);
        gate.open();
        gate.wait_until(|state| {
            state.written.iter().filter(|b| **b == b'\n').count() > QUEUE_LINES
        });
        queue.push("after".into());
        queue.finish(Duration::from_secs(10));
        let text = gate.text();
        let lines: Vec<&str> = text.lines().collect();
        let expected: Vec<String> = (0..=QUEUE_LINES)
            .map(|i| format!("line {i}"))
            .chain([format!("a: {extra} lines dropped"), "after".into()])
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn finish_gives_up_on_a_reader_that_never_reads() {
        let gate = Gate::default();
        let mut queue = LineQueue::spawn(gate, Box::new(|n| n.to_string())).unwrap();
        queue.push("stuck".into());
        let started = std::time::Instant::now();
        queue.finish(Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn hole_9_log_lines_never_block_and_drops_are_counted() {
        let gate = Gate::default();
        let mut logs = LogQueue::spawn(gate.clone()).unwrap();
        logs.write_all(b"log 0\n").unwrap();
        gate.wait_until(|state| state.waiting);
        let started = std::time::Instant::now();
        for i in 1..=QUEUE_LINES + 3 {
            logs.write_all(format!("log {i}\n").as_bytes()).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "writes never block"
        );
        gate.open();
        logs.drain(Duration::from_secs(10));
        logs.write_all(b"after\n").unwrap();
        logs.drain(Duration::from_secs(10));
        let text = gate.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            QUEUE_LINES + 1 + 1 + 1,
            "{:?}",
            &lines[lines.len() - 3..]
        );
        assert!(text.contains("3 log lines dropped: stderr is not being read"));
        assert_eq!(lines.last(), Some(&"after"));
    }
}
