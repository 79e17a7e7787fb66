//! Election names that no other case (or earlier run against the same server) uses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A unique election name for the case called `case`: lowercase letters, digits and `-` only,
/// so that it is valid as a file name, a Redis or etcd key and a Kubernetes object name.
pub fn unique_name(case: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let case: String = case
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() % 1_000_000)
        .unwrap_or(0);
    format!(
        "{case}-{}-{started}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_safe() {
        let a = unique_name("Some_Case");
        let b = unique_name("Some_Case");
        assert_ne!(a, b);
        assert!(a.starts_with("some-case-"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}
