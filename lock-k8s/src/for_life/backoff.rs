//! The waits between a waiting candidate's attempts: operator-lib's capped exponential back-off.

use std::time::Duration;

/// The first wait, as operator-lib's `Become` starts.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait by default (operator-lib's default maximum back-off interval).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(16);

/// How much of a wait is added at random (up to 20 %), so that candidates spread out.
const JITTER: f64 = 0.2;

/// Waits that start at [`FIRST_BACKOFF`] and double after each one while below the maximum,
/// each lengthened by up to 20 % at random.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits capped at `max`.
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            next: FIRST_BACKOFF.min(max),
            max,
        }
    }

    /// The next wait (without jitter it would be 1 s, 2 s, 4 s, 8 s, 16 s, 16 s…).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let base = self.next;
        if self.next < self.max {
            self.next = (self.next * 2).min(self.max);
        }
        base.mul_f64(1.0 + JITTER * random_fraction())
    }
}

/// A number in [0, 1) from the standard library's random hasher seeds.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(std::time::Instant::now()) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_at_most_a_fifth_added() {
        let mut backoff = Backoff::new(DEFAULT_MAX_BACKOFF);
        for base in [1, 2, 4, 8, 16, 16, 16] {
            let wait = backoff.next_wait();
            let base = Duration::from_secs(base);
            assert!(
                wait >= base && wait <= base.mul_f64(1.2),
                "{wait:?} for {base:?}"
            );
        }
        let mut short = Backoff::new(Duration::from_millis(300));
        assert!(short.next_wait() <= Duration::from_millis(360));
        assert!(short.next_wait() <= Duration::from_millis(360));
    }
}
