//! Holding a run against the page. Lines are compared after [`normalise`]; within one step,
//! the lines of one process (the demo's `NAME: ` prefix, or no prefix) must come in the page's
//! order, while lines of different background processes may interleave as they please, since
//! they do between runs too.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use super::normalise::normalise;
use super::parse::Walkthrough;

/// The first step whose output differs from the page, with both sides.
#[derive(Debug)]
pub struct Mismatch {
    /// The page and line of the step's command.
    pub location: String,
    /// The command as the page writes it.
    pub command: String,
    /// The page's lines, normalised.
    pub expected: Vec<String>,
    /// The run's lines, normalised.
    pub actual: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: the output of `{}` differs from the page",
            self.location, self.command
        )?;
        writeln!(f, "--- the page shows (normalised):")?;
        for line in &self.expected {
            writeln!(f, "{line}")?;
        }
        writeln!(f, "--- this run printed (normalised):")?;
        for line in &self.actual {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Compares each step's output with the page. When the walkthrough names swappable
/// instances, a run also passes if, from the first step that differs on, it matches with those
/// two names traded (the race of which standby takes over is decided at one step, and the
/// steps before it show the names as they were).
pub fn compare(walkthrough: &Walkthrough, actual: &[Vec<String>]) -> Result<(), Mismatch> {
    let Err((index, mismatch)) = compare_steps(walkthrough, actual, 0) else {
        return Ok(());
    };
    let [one, other] = walkthrough.swappable.as_slice() else {
        return Err(mismatch);
    };
    let swapped: Vec<Vec<String>> = actual
        .iter()
        .enumerate()
        .map(|(step, lines)| {
            if step < index {
                lines.clone()
            } else {
                lines.iter().map(|line| swap(line, one, other)).collect()
            }
        })
        .collect();
    compare_steps(walkthrough, &swapped, index).map_err(|_| mismatch)
}

/// Compares the steps from `from` on; the first that differs, with its index.
fn compare_steps(
    walkthrough: &Walkthrough,
    actual: &[Vec<String>],
    from: usize,
) -> Result<(), (usize, Mismatch)> {
    for (index, (step, lines)) in walkthrough.steps.iter().zip(actual).enumerate().skip(from) {
        let expected: Vec<String> = step.expected.iter().map(|line| normalise(line)).collect();
        let printed: Vec<String> = lines.iter().map(|line| normalise(line)).collect();
        if by_process(&expected) != by_process(&printed) {
            return Err((
                index,
                Mismatch {
                    location: step.location.clone(),
                    command: step.command.clone(),
                    expected,
                    actual: printed,
                },
            ));
        }
    }
    Ok(())
}

/// The lines grouped by the process that printed them, each group in order.
fn by_process(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let process = line
            .split_once(": ")
            .map(|(prefix, _)| prefix)
            .filter(|prefix| {
                !prefix.is_empty()
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            })
            .unwrap_or("");
        groups
            .entry(process.to_owned())
            .or_default()
            .push(line.clone());
    }
    groups
}

/// `line` with the words `one` and `other` traded.
fn swap(line: &str, one: &str, other: &str) -> String {
    let pattern = Regex::new(&format!(
        r"\b({}|{})\b",
        regex::escape(one),
        regex::escape(other)
    ))
    .expect("escaped names make a valid pattern");
    pattern
        .replace_all(line, |found: &regex::Captures<'_>| {
            if &found[1] == one {
                other.to_owned()
            } else {
                one.to_owned()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walkthrough::parse::blocks;

    fn walkthrough(text: &str) -> Walkthrough {
        blocks(text, "x.md").remove(0)
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn processes_may_interleave_but_each_keeps_its_order() {
        let page = walkthrough(
            "<!-- walkthrough: w -->\n```console\n$ kill -INT %1\na: stopped\nb: no leader\na: exiting\n```\n",
        );
        assert!(compare(
            &page,
            &[lines(&["b: no leader", "a: stopped", "a: exiting"])]
        )
        .is_ok());
        let reordered = compare(
            &page,
            &[lines(&["a: exiting", "a: stopped", "b: no leader"])],
        );
        assert!(reordered.unwrap_err().to_string().contains("x.md:3"));
    }

    #[test]
    fn swappable_names_may_trade_places() {
        let page = walkthrough(
            "<!-- walkthrough: w; swappable: b c -->\n```console\n$ x\nb: leading (term 1)\nc: following b\n```\n",
        );
        assert!(compare(&page, &[lines(&["c: leading (term 1)", "b: following c"])]).is_ok());
        assert!(compare(&page, &[lines(&["c: leading (term 1)", "b: following b"])]).is_err());
    }

    #[test]
    fn names_are_swapped_only_from_the_step_that_differs() {
        let page = walkthrough(
            "<!-- walkthrough: w; swappable: b c -->\n```console\n$ x\nb: following a\n$ y\nb: leading (term 1)\n$ z\nc: following b\n```\n",
        );
        let run = [
            lines(&["b: following a"]),
            lines(&["c: leading (term 1)"]),
            lines(&["b: following c"]),
        ];
        assert!(compare(&page, &run).is_ok());
        // Once traded, the names stay traded for the rest of the walkthrough.
        let traded_back = [
            lines(&["b: following a"]),
            lines(&["c: leading (term 1)"]),
            lines(&["c: following b"]),
        ];
        assert!(compare(&page, &traded_back).is_err());
    }

    #[test]
    fn missing_and_extra_lines_fail() {
        let page =
            walkthrough("<!-- walkthrough: w -->\n```console\n$ x\na: leading (term 0)\n```\n");
        assert!(compare(&page, &[lines(&[])]).is_err());
        assert!(compare(&page, &[lines(&["a: leading (term 0)", "a: exiting"])]).is_err());
    }
}
