//! The version counter's one text form, checked by the client exactly as the script checks it.
//!
//! A version is written by the script as canonical decimal digits: no sign, no space, no
//! leading zero (`"0"` itself is allowed), at most [`LARGEST_VERSION`]. The script compares
//! versions as text, so the client must never normalise one: `"007"` read as the number 7 and
//! sent back as `"7"` would conflict forever. Anything else is not a version this crate wrote,
//! and is reported as `Corrupt` by both sides.

use lock_core::backend::Version;

/// The largest version: 2^53 - 1, the largest integer below which every integer and its
/// successor are exact in Lua's double-precision numbers, so that the script's `+ 1` is exact.
/// The script holds the same number as text (`LARGEST_VERSION` in `script.lua`; a test checks
/// they agree). At one write per second a counter seeded from today's clock in microseconds
/// reaches it in the year 2255.
pub(crate) const LARGEST_VERSION: u64 = (1 << 53) - 1;

/// The counter `text` stands for, or why it is not a version.
pub(crate) fn parse(text: &str) -> Result<u64, String> {
    let shown = || text.chars().take(40).collect::<String>();
    let canonical = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(format!(
            "the field version is not a canonical decimal counter: {:?}",
            shown()
        ));
    }
    match text.parse::<u64>() {
        Ok(counter) if counter <= LARGEST_VERSION => Ok(counter),
        _ => Err(format!(
            "the field version {:?} is above the largest version {LARGEST_VERSION}",
            shown()
        )),
    }
}

/// The [`Version`] of a checked counter: ordered, with the counter's own text as its token.
pub(crate) fn version(counter: u64) -> Version {
    Version::ordered(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_counters_parse_and_keep_their_text() {
        for text in ["0", "7", "1764565918000000", "9007199254740991"] {
            let counter = parse(text).unwrap();
            assert_eq!(version(counter).as_str(), text);
        }
    }

    #[test]
    fn anything_else_is_refused_without_panicking() {
        for text in [
            "",
            "007",
            "00",
            "+7",
            "-1",
            " 7",
            "7 ",
            "1e3",
            "7.0",
            "٣",
            "9007199254740992",
            "99999999999999999999999999",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn the_script_has_the_same_largest_version() {
        let line = format!("local LARGEST_VERSION = '{LARGEST_VERSION}'");
        assert!(
            crate::SCRIPT_SOURCE.contains(&line),
            "script.lua should say: {line}"
        );
    }
}
