//! What may differ between two honest runs of a walkthrough, replaced by placeholders on
//! both sides before they are compared: times, record versions, process ids and measured
//! durations. Everything else (names, terms, leases, messages, field order) must match.

use std::sync::OnceLock;

use regex::Regex;

/// The rules, in order: each pattern and its placeholder.
fn rules() -> &'static [(Regex, &'static str)] {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        [
            // RFC 3339 times in records, JSON lines and logs.
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
            // Record versions and revisions: counters that start at the clock in microseconds.
            (r"\b\d{10,}\b", "<number>"),
            // Process ids, as the demo prints them.
            (r"\bpid \d+\b", "pid <pid>"),
            // Measured durations: "16 ms", "22.3 ms", "8.511861231s".
            (r"\b\d+(\.\d+)? ?(ms|µs)\b", "<duration>"),
            (r"\b\d+\.\d+s\b", "<duration>"),
        ]
        .into_iter()
        .map(|(pattern, placeholder)| {
            (
                Regex::new(pattern).unwrap_or_else(|err| panic!("{pattern}: {err}")),
                placeholder,
            )
        })
        .collect()
    })
}

/// `line` with every run-dependent part replaced by its placeholder, and trailing blanks cut.
pub fn normalise(line: &str) -> String {
    let mut line = line.trim_end().to_owned();
    for (pattern, placeholder) in rules() {
        line = pattern.replace_all(&line, *placeholder).into_owned();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn run_dependent_parts_are_replaced() {
        assert_eq!(
            normalise(
                r#"{"version":1796221117237852,"record":{"renewTime":"2026-12-02T14:18:37.237656Z"}}"#
            ),
            r#"{"version":<number>,"record":{"renewTime":"<time>"}}"#
        );
        assert_eq!(
            normalise("a: started the command (pid 27687, term 0)"),
            "a: started the command (pid <pid>, term 0)"
        );
        assert_eq!(
            normalise("c leads (term 1), 22.3 ms after"),
            "c leads (term 1), <duration> after"
        );
        assert_eq!(
            normalise("last renewed 8.5118s ago, lease 4s"),
            "last renewed <duration> ago, lease 4s"
        );
    }
}
