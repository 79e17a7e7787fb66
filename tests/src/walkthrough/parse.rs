//! Reading walkthroughs out of the markdown: the marker comment, the `console` block after
//! it, its commands (with `\` continuations) and the output shown under each.

use std::path::{Path, PathBuf};

/// The comment that marks the next `console` block as (part of) a runnable walkthrough.
const MARKER: &str = "<!-- walkthrough:";

/// One command of a walkthrough and the output the page shows for it.
#[derive(Debug, Clone)]
pub struct Step {
    /// The command as the page writes it, continuation lines included, without the `$ `.
    pub command: String,
    /// The lines the page shows under the command.
    pub expected: Vec<String>,
    /// Where the command is: `docs/redis.md:42`.
    pub location: String,
}

/// Every step of one walkthrough, in the order of the pages.
#[derive(Debug, Clone)]
pub struct Walkthrough {
    /// The name in the marker.
    pub name: String,
    /// Instance names that may trade places between runs (`swappable: b c` in the marker):
    /// which of two standbys takes over is a race, and the page shows one outcome.
    pub swappable: Vec<String>,
    /// The commands, in the order of the pages.
    pub steps: Vec<Step>,
}

/// The repository's root (the parent of the `tests` package).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package is inside the repository")
        .to_path_buf()
}

/// README.md, then the pages under `docs/` in name order.
pub fn documentation_files() -> Vec<PathBuf> {
    let root = repository_root();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", root.join("docs").display()))
        .map(|entry| entry.expect("a directory entry of docs/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    let mut files = vec![root.join("README.md")];
    files.extend(pages);
    files
}

/// The walkthrough `name`, gathered from every documentation file; panics when no block
/// carries that name, so a renamed marker cannot leave its test running nothing.
pub fn walkthrough(name: &str) -> Walkthrough {
    let root = repository_root();
    let mut found = Walkthrough {
        name: name.to_owned(),
        swappable: Vec::new(),
        steps: Vec::new(),
    };
    for file in documentation_files() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for block in blocks(&text, &shown) {
            if block.name == name {
                found.swappable.extend(block.swappable);
                found.steps.extend(block.steps);
            }
        }
    }
    assert!(
        !found.steps.is_empty(),
        "no documentation file has a `<!-- walkthrough: {name} -->` block with commands"
    );
    found
}

/// The marked blocks of one file.
pub fn blocks(text: &str, file: &str) -> Vec<Walkthrough> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let Some(marker) = lines[index].trim().strip_prefix(MARKER) else {
            index += 1;
            continue;
        };
        let (name, swappable) = parse_marker(marker, file, index + 1);
        index += 1;
        assert!(
            lines
                .get(index)
                .is_some_and(|line| line.trim() == "```console"),
            "{file}:{index}: a walkthrough marker must be followed at once by a ```console block"
        );
        index += 1;
        let start = index;
        while index < lines.len() && lines[index].trim() != "```" {
            index += 1;
        }
        found.push(Walkthrough {
            name,
            swappable,
            steps: steps(&lines[start..index], file, start + 1),
        });
    }
    found
}

/// `NAME -->` or `NAME; swappable: b c -->`.
fn parse_marker(rest: &str, file: &str, line: usize) -> (String, Vec<String>) {
    let body = rest
        .trim()
        .strip_suffix("-->")
        .unwrap_or_else(|| panic!("{file}:{line}: the walkthrough marker must end with -->"))
        .trim();
    let (name, options) = body.split_once(';').unwrap_or((body, ""));
    let swappable = options
        .trim()
        .strip_prefix("swappable:")
        .map(|names| names.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    (name.trim().to_owned(), swappable)
}

/// The steps of one block; `first_line` is the file's line number of its first line.
fn steps(lines: &[&str], file: &str, first_line: usize) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if let Some(command) = line.strip_prefix("$ ") {
            let location = format!("{file}:{}", first_line + index);
            let mut command = command.to_owned();
            while (command.ends_with('\\') || open_quote(&command)) && index + 1 < lines.len() {
                index += 1;
                command.push('\n');
                command.push_str(lines[index]);
            }
            steps.push(Step {
                command,
                expected: Vec::new(),
                location,
            });
        } else {
            let step = steps.last_mut().unwrap_or_else(|| {
                panic!(
                    "{file}:{}: output before the first `$ ` command",
                    first_line + index
                )
            });
            step.expected.push(line.to_owned());
        }
        index += 1;
    }
    steps
}

/// Whether `command` ends inside single or double quotes, so that the shell reads on (a
/// comment's apostrophes do not count).
fn open_quote(command: &str) -> bool {
    let mut quote = None;
    let mut escaped = false;
    let mut after_blank = true;
    for c in command.chars() {
        let blank = after_blank;
        after_blank = c.is_whitespace();
        match (quote, c) {
            (_, _) if escaped => escaped = false,
            (None, '#') if blank => return false,
            (Some('"') | None, '\\') => escaped = true,
            (None, '\'' | '"') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            _ => {}
        }
    }
    quote.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_continuations_and_output_are_read() {
        let text = "prose\n<!-- walkthrough: w; swappable: b c -->\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n";
        let found = blocks(text, "x.md");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "w");
        assert_eq!(found[0].swappable, ["b", "c"]);
        let steps = &found[0].steps;
        assert_eq!(steps[0].command, "echo a \\\n  b");
        assert_eq!(steps[0].expected, ["a b"]);
        assert_eq!(steps[0].location, "x.md:4");
        assert_eq!(steps[1].command, "true");
        assert!(steps[1].expected.is_empty());
    }

    #[test]
    fn a_command_goes_on_while_a_quote_is_open() {
        let text = "<!-- walkthrough: w -->\n```console\n$ sh -c 'echo \"a\"\n  echo b' &\nb\n$ echo \\'x\nx\n```\n";
        let steps = &blocks(text, "x.md")[0].steps;
        assert_eq!(steps[0].command, "sh -c 'echo \"a\"\n  echo b' &");
        assert_eq!(steps[0].expected, ["b"]);
        assert_eq!(steps[1].command, "echo \\'x");
        assert!(!open_quote("kill %1  # a's term"));
    }

    #[test]
    fn unmarked_blocks_are_not_walkthroughs() {
        assert!(blocks("```console\n$ rm -rf /\n```\n", "x.md").is_empty());
    }
}
