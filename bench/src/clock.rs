//! Wall-clock stamps that compare across processes, and this process' resource use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since 1970 on the wall clock: every process on the machine reads the same clock,
/// so stamps taken in the benchmark, its children and the Go electors compare directly.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i128)
}

/// A signed span between two stamps.
pub fn span(from: i128, to: i128) -> Duration {
    Duration::from_nanos(u64::try_from(to - from).unwrap_or(0))
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
pub fn cpu_time() -> Duration {
    cpu_time_in("self")
}

/// CPU time (user + system) the process `pid` has used (zero once it is gone).
pub fn cpu_time_of(pid: u32) -> Duration {
    cpu_time_in(&pid.to_string())
}

fn cpu_time_in(process: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // The kernel reports in clock ticks of 1/100 s on Linux (USER_HZ).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The most resident memory this process has had, from `VmHWM` in `/proc/self/status`.
pub fn peak_rss_bytes() -> u64 {
    status_bytes("self", "VmHWM:")
}

/// The resident memory of the process `pid` now (`VmRSS`; zero once it is gone).
pub fn rss_bytes_of(pid: u32) -> u64 {
    status_bytes(&pid.to_string(), "VmRSS:")
}

fn status_bytes(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}
