//! Percentiles of a set of measured durations.

use std::time::Duration;

/// The distribution of one scenario's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile (nearest rank; with fewer than 100 samples it is the maximum).
    pub p99: Duration,
    /// The largest sample.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let max = *sorted.last()?;
        Some(Self {
            count: sorted.len(),
            p50: nearest_rank(&sorted, 50),
            p99: nearest_rank(&sorted, 99),
            max,
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample that at least
/// `percent`% of the samples do not exceed.
fn nearest_rank(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
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

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=200).collect();
        let summary = Summary::of(&ms(&samples)).expect("samples");
        assert_eq!(summary.count, 200);
        assert_eq!(summary.p50, Duration::from_millis(100));
        assert_eq!(summary.p99, Duration::from_millis(198));
        assert_eq!(summary.max, Duration::from_millis(200));
    }

    #[test]
    fn few_samples_have_the_maximum_as_p99() {
        let summary = Summary::of(&ms(&[30, 10, 20])).expect("samples");
        assert_eq!(summary.p50, Duration::from_millis(20));
        assert_eq!(summary.p99, Duration::from_millis(30));
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn millis_keeps_small_figures_precise() {
        assert_eq!(millis(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(millis(Duration::from_millis(1234)), "1234 ms");
    }
}
