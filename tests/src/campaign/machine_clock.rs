//! Steps of the whole machine's wall clock against its monotonic clock, while a segment runs.
//!
//! The history of a segment is judged in wall-clock time: every instance stamps its events with
//! the wall clock, and the campaign maps its own monotonic readings (arrivals, samples) onto the
//! wall clock from one reading taken at the start. When the machine itself is paused (a VM
//! snapshotted or migrated) or its clock is stepped, the wall clock jumps and the monotonic one
//! does not (or not by as much): every process on the machine is affected alike, no lease is
//! judged wrongly by the electors (which time leases on the monotonic clock), but the mapping
//! is off by the step for the rest of the segment, and the checker would report events
//! "stamped after they arrived", stale answers and late leaders that did not happen. A segment
//! during which the machine's clocks moved apart is therefore void: not counted, and run again.
//! (One instance's own clock steps are a fault the campaign injects, through libfaketime, and
//! are judged, not voided: they do not move the machine's clock.)

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the two clocks are read.
const EVERY: Duration = Duration::from_millis(50);
/// The least divergence that counts as a step: reading the two clocks one after the other
/// takes microseconds, a loaded machine's scheduling delays both alike.
const STEP: Duration = Duration::from_millis(500);

/// Watches the machine's clocks until dropped.
pub struct MachineClockWatch {
    stop: Arc<AtomicBool>,
    /// The largest divergence seen, in microseconds (signed: positive when the wall clock ran
    /// ahead).
    largest: Arc<AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MachineClockWatch {
    /// Starts watching.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let largest = Arc::new(AtomicI64::new(0));
        let thread = {
            let (stop, largest) = (stop.clone(), largest.clone());
            std::thread::spawn(move || {
                let (start, wall_start) = (Instant::now(), wall_micros());
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EVERY);
                    let monotonic = start.elapsed().as_micros() as i64;
                    let divergence = (wall_micros() - wall_start) - monotonic;
                    if divergence.abs() > largest.load(Ordering::Relaxed).abs() {
                        largest.store(divergence, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            stop,
            largest,
            thread: Some(thread),
        }
    }

    /// The step, when the machine's clocks moved apart by [`STEP`] or more since the start:
    /// what the wall clock gained on the monotonic clock (negative: lost).
    pub fn step(&self) -> Option<chrono::TimeDelta> {
        let largest = self.largest.load(Ordering::Relaxed);
        (largest.unsigned_abs() >= STEP.as_micros() as u64)
            .then(|| chrono::TimeDelta::microseconds(largest))
    }
}

impl Drop for MachineClockWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wall_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_whose_clocks_agree_shows_no_step() {
        let watch = MachineClockWatch::start();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(watch.step(), None);
    }
}
