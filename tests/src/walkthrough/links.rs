//! Relative links of the documentation: every `[text](target)` outside code that is not a
//! URL must name a file that exists and, with `#anchor`, a heading of that file (GitHub's
//! anchors: lower case, punctuation dropped, blanks as `-`).

use std::collections::HashSet;
use std::path::Path;

/// The links of `text` that point into the repository, as written: `docs/redis.md#tls`.
pub fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    for line in outside_code(text, true) {
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") && !target.is_empty() {
                links.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    links
}

/// The anchors of `text`'s headings.
pub fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    // A heading's inline code counts (only its backticks go).
    for line in outside_code(text, false) {
        let Some(title) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        // A repeated heading gets -1, -2, ... as on GitHub.
        let mut unique = slug.clone();
        let mut count = 0;
        while !seen.insert(unique.clone()) {
            count += 1;
            unique = format!("{slug}-{count}");
        }
    }
    seen
}

/// The problems with the links of the file `path`: targets that do not exist, anchors that
/// no heading makes.
pub fn broken_links(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let dir = path.parent().expect("a file is in a directory");
    let mut broken = Vec::new();
    for link in relative_links(&text) {
        let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
        let target = if file.is_empty() {
            path.to_path_buf()
        } else {
            dir.join(file)
        };
        if !target.exists() {
            broken.push(format!(
                "{}: {link}: {} does not exist",
                path.display(),
                target.display()
            ));
            continue;
        }
        if anchor.is_empty() {
            continue;
        }
        let headings = std::fs::read_to_string(&target).map(|text| anchors(&text));
        if !headings.is_ok_and(|headings| headings.contains(anchor)) {
            broken.push(format!(
                "{}: {link}: no heading of {} makes the anchor #{anchor}",
                path.display(),
                target.display()
            ));
        }
    }
    broken
}

/// The lines of `text` outside fenced code blocks, with inline code removed if `inline`.
fn outside_code(text: &str, inline: bool) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if !inline {
            lines.push(line.to_owned());
            continue;
        }
        let kept: String = line
            .split('`')
            .enumerate()
            .filter(|(index, _)| index % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join("");
        lines.push(kept);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github() {
        let found = anchors("# Leader-for-life: `--leader-for-life`\n## An ACL user\n## An ACL user\n```\n# not a heading\n```\n");
        assert!(
            found.contains("leader-for-life---leader-for-life"),
            "{found:?}"
        );
        assert!(found.contains("an-acl-user") && found.contains("an-acl-user-1"));
        assert!(!found.contains("not-a-heading"));
    }

    #[test]
    fn links_outside_code_are_found() {
        let text =
            "See [a](docs/a.md#x) and [web](https://x.org) `[no](b.md)`.\n```\n[no](c.md)\n```\n";
        assert_eq!(relative_links(text), ["docs/a.md#x"]);
    }
}
