//! Text that is safe to print on a terminal: identities, lock names and error messages come
//! from the lock's record, from servers and from other writers, so a newline or an escape
//! sequence in them could forge a line (`c: leading (term 99)`) or drive the terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character and every invisible formatting character (bidi
/// overrides, zero-width marks, line and paragraph separators) written as a Rust escape
/// (`\n`, `\u{1b}`), and backslashes doubled so that an escape in the output always means an
/// escaped character. Borrowed when nothing needs escaping, as with every ordinary name.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if needs_escape(c) => {
                // Writing into a String cannot fail.
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
            }
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// Control characters (C0, DEL, C1) and the format characters that change how the rest of a
/// line reads without showing themselves.
fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_borrowed_unchanged() {
        for name in ["a", "web-7f9c_1a2b3c4d", "file:/tmp/x.json", "Zoë 名前"] {
            assert!(matches!(printable(name), Cow::Borrowed(n) if n == name));
        }
    }

    #[test]
    fn hole_13_control_and_formatting_characters_are_escaped() {
        assert_eq!(
            printable("x\nc: leading (term 99)\u{1b}[2J"),
            r"x\nc: leading (term 99)\u{1b}[2J"
        );
        assert_eq!(printable("a\r\tb\u{7f}\u{9b}"), r"a\r\tb\u{7f}\u{9b}");
        assert_eq!(printable("evil\u{202e}txt"), r"evil\u{202e}txt");
        assert_eq!(printable(r"back\slash"), r"back\\slash");
        assert!(!printable("\u{1b}\u{0}\u{2028}")
            .chars()
            .any(char::is_control));
    }
}
