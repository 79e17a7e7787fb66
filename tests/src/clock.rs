//! A wall clock that a test can step for one process: libfaketime (Debian's `faketime`
//! package) preloaded into the process, reading its offset from a file on every call.
//!
//! Only the wall clock moves (`FAKETIME_DONT_FAKE_MONOTONIC`): an elector must time leases on
//! the monotonic clock, so a step of the wall clock is exactly the fault to prove harmless (an
//! NTP correction, a VM restored from a snapshot, an operator's `date -s`).

use std::path::{Path, PathBuf};

use chrono::TimeDelta;

/// The preloaded library (thread-safe variant), from Debian's `libfaketime` package.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// What a missing libfaketime fails with.
pub const LIBFAKETIME_MISSING: &str =
    "libfaketime not found: install it with `apt-get install -y faketime` (scripts/test does this)";

/// The wall-clock offset of one process, changed by writing a file libfaketime reads.
#[derive(Debug)]
pub struct FakeClock {
    file: PathBuf,
    offset: TimeDelta,
}

impl FakeClock {
    /// A clock with no offset whose control file is `file` (created now).
    ///
    /// # Panics
    /// With [`LIBFAKETIME_MISSING`] when the library is not installed; when `file` cannot be
    /// written.
    pub fn new(file: &Path) -> Self {
        assert!(Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME_MISSING}");
        let clock = Self {
            file: file.to_owned(),
            offset: TimeDelta::zero(),
        };
        clock.write();
        clock
    }

    /// The environment that puts a process on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            // Read the file on every call, so that a step takes effect at once.
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// The offset in force.
    pub fn offset(&self) -> TimeDelta {
        self.offset
    }

    /// Sets the offset of the process's wall clock from the real one.
    pub fn set(&mut self, offset: TimeDelta) {
        self.offset = offset;
        self.write();
    }

    fn write(&self) {
        // libfaketime's relative form: "+N" or "-N" seconds from now.
        let text = format!("{:+}\n", self.offset.num_seconds());
        std::fs::write(&self.file, text)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", self.file.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wall clock of a process on a [`FakeClock`], read with `date +%s`.
    fn seconds_of_a_process(clock: &FakeClock) -> i64 {
        let output = std::process::Command::new("date")
            .arg("+%s")
            .envs(clock.env())
            .output()
            .expect("run date");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("date printed seconds")
    }

    #[test]
    fn a_step_moves_the_wall_clock_of_the_process_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut clock = FakeClock::new(&dir.path().join("clock"));
        let real = chrono::Utc::now().timestamp();
        assert!((seconds_of_a_process(&clock) - real).abs() <= 5);
        clock.set(TimeDelta::hours(2));
        assert!((seconds_of_a_process(&clock) - real - 7200).abs() <= 5);
        clock.set(TimeDelta::seconds(-90));
        assert!((seconds_of_a_process(&clock) - real + 90).abs() <= 5);
        clock.set(TimeDelta::zero());
        assert!((seconds_of_a_process(&clock) - real).abs() <= 5);
    }
}
