//! Dependencies point one way inside every library crate: no module imports a module that
//! imports it back, directly or through others. Read from the sources (`use crate::…` lines,
//! `crate::…` paths, `super::…`, and names the crate root re-exports), tests and comments left
//! out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules must form no cycle.
const CRATES: [&str; 6] = [
    "lock-core",
    "lock-file",
    "lock-redis",
    "lock-etcd",
    "lock-k8s",
    "leader-election",
];

#[test]
fn no_library_crate_has_a_module_cycle() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for name in CRATES {
        let graph = module_graph(&workspace.join(name).join("src"));
        assert!(graph.len() > 1, "{name}: no modules read");
        for cycle in cycles(&graph) {
            found.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

/// A made-up cycle is found (the check can fail).
#[test]
fn a_cycle_is_found() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycles(&graph), [vec!["a".to_owned(), "b".to_owned()]]);
}

/// Module path (`hints`, `elector::shared`; `crate` for the root) -> the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn module_graph(src: &Path) -> Graph {
    let mut texts = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file
            .strip_prefix(src)
            .expect("under src")
            .with_extension("");
        let mut parts: Vec<String> = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        let module = if parts.is_empty() {
            "crate".to_owned()
        } else {
            parts.join("::")
        };
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        texts.insert(module, code_only(&text));
    }
    let modules: BTreeSet<String> = texts.keys().cloned().collect();
    let reexported = root_reexports(texts.get("crate").map_or("", String::as_str));
    let mut graph = Graph::new();
    for (module, text) in &texts {
        let mut uses = BTreeSet::new();
        if module != "crate" {
            for path in crate_paths(text) {
                if let Some(target) = resolve(&path, &modules, &reexported) {
                    if target != *module
                        && target != "crate"
                        && !module.starts_with(&format!("{target}::"))
                    {
                        uses.insert(target);
                    }
                }
            }
            let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
            for name in words_after(text, "super::") {
                let target = if parent.is_empty() {
                    name
                } else {
                    format!("{parent}::{name}")
                };
                if modules.contains(&target) && target != *module {
                    uses.insert(target);
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The text without its unit tests and without comment lines.
fn code_only(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path, with `use crate::{a::X, b::{Y, Z}}` trees expanded.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if after.starts_with('{') {
            let end = matching_brace(after);
            expand_tree(&after[1..end], &mut Vec::new(), &mut paths);
            rest = &after[end..];
        } else {
            let path: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(segments(&path));
            rest = after;
        }
    }
    paths
}

fn matching_brace(text: &str) -> usize {
    let mut depth = 0;
    for (index, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return index;
                }
            }
            _ => {}
        }
    }
    text.len()
}

fn expand_tree(tree: &str, prefix: &mut Vec<String>, paths: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (index, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&tree[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&tree[start..]);
    for item in items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        match item.split_once("::{") {
            Some((head, inner)) => {
                let added = segments(head);
                let count = added.len();
                prefix.extend(added);
                expand_tree(inner.strip_suffix('}').unwrap_or(inner), prefix, paths);
                prefix.truncate(prefix.len() - count);
            }
            None => {
                let mut path = prefix.clone();
                path.extend(segments(item.split(" as ").next().unwrap_or(item)));
                paths.push(path);
            }
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The longest module prefix of `path`, or the module a root re-export names.
fn resolve(
    path: &[String],
    modules: &BTreeSet<String>,
    reexported: &BTreeMap<String, String>,
) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|len| path[..len].join("::"))
        .find(|candidate| modules.contains(candidate))
        .or_else(|| reexported.get(path.first()?).cloned())
}

/// `pub use module::{A, B}` and `pub use module::A` in the crate root: name -> module.
fn root_reexports(root: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in root.split(';') {
        let Some(tree) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let mut paths = Vec::new();
        expand_tree(tree, &mut Vec::new(), &mut paths);
        for path in paths {
            if let (Some(module), Some(name)) = (path.first(), path.last()) {
                names.insert(name.clone(), module.clone());
            }
        }
    }
    names
}

fn words_after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .map(|(at, _)| {
            text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The cycles of `graph`: its strongly connected components of more than one module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let nodes: Vec<&String> = graph.keys().collect();
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in &nodes {
        if done.contains(*node) {
            continue;
        }
        let ahead = reachable(graph, node);
        let component: Vec<String> = ahead
            .iter()
            .filter(|other| reachable(graph, other).contains(*node))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        if component.len() > 1 {
            found.push(component);
        }
    }
    found
}

/// Every module `from` reaches (itself included).
fn reachable(graph: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([from.to_owned()]);
    let mut stack = vec![from.to_owned()];
    while let Some(node) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}
