//! Percentiles of a set of measured durations.

use std::time::Duration;

/// The distribution of one scenario's samples, in signed nanoseconds (a crash takeover can
/// come before the lease measured from the last renew has run out: client-go's can).
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// The smallest sample.
    pub min: i128,
    /// The median.
    pub p50: i128,
    /// The 99th percentile (nearest rank; with fewer than 100 samples it is the maximum).
    pub p99: i128,
    /// The largest sample.
    pub max: i128,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[i128]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort();
        Some(Self {
            count: sorted.len(),
            min: *sorted.first()?,
            p50: nearest_rank(&sorted, 50),
            p99: nearest_rank(&sorted, 99),
            max: *sorted.last()?,
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample that at least
/// `percent`% of the samples do not exceed.
fn nearest_rank(sorted: &[i128], percent: usize) -> i128 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Signed nanoseconds in milliseconds, with a precision that suits them.
pub fn ms(nanos: i128) -> String {
    let ms = nanos as f64 / 1e6;
    if ms.abs() < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A duration in milliseconds with a precision that suits it.
pub fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<i128> = (1..=200).collect();
        let summary = Summary::of(&samples).expect("samples");
        assert_eq!(summary.count, 200);
        assert_eq!((summary.min, summary.p50), (1, 100));
        assert_eq!((summary.p99, summary.max), (198, 200));
    }

    #[test]
    fn few_samples_have_the_maximum_as_p99() {
        let summary = Summary::of(&[30, -10, 20]).expect("samples");
        assert_eq!((summary.min, summary.p50, summary.p99), (-10, 20, 30));
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn figures_keep_small_values_precise() {
        assert_eq!(millis(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(millis(Duration::from_millis(1234)), "1234 ms");
        assert_eq!(ms(-2_500_000), "-2.5 ms");
    }
}
