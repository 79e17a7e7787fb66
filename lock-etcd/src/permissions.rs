//! The least an etcd role needs for the lock: `readwrite` on the key prefix.

/// The `etcdctl` command that grants `role` what the lock needs under `prefix`: `readwrite`
/// on every key that starts with it (reads and writes of the key in transactions, and watches
/// of it).
///
/// ```
/// assert_eq!(
///     lock_etcd::etcdctl_grant_line("elector", "leader-election/"),
///     "etcdctl role grant-permission --prefix=true elector readwrite leader-election/"
/// );
/// ```
pub fn etcdctl_grant_line(role: &str, prefix: &str) -> String {
    format!(
        "etcdctl role grant-permission --prefix=true {} readwrite {}",
        shell_word(role),
        shell_word(prefix)
    )
}

/// `word` as one shell word: as it is when it is plain, in single quotes otherwise.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_prefixes_are_quoted() {
        assert_eq!(
            etcdctl_grant_line("<role>", ""),
            "etcdctl role grant-permission --prefix=true '<role>' readwrite ''"
        );
        assert_eq!(
            etcdctl_grant_line("r", "it's here/"),
            r"etcdctl role grant-permission --prefix=true r readwrite 'it'\''s here/'"
        );
    }
}

#[cfg(test)]
mod readme {
    /// docs/etcd.md prints the grant for the default prefix; it must be the one the code makes.
    #[test]
    fn the_readme_shows_the_grant_the_lock_needs() {
        let readme = include_str!("../../docs/etcd.md");
        let line = super::etcdctl_grant_line("elector", crate::DEFAULT_KEY_PREFIX);
        assert!(readme.contains(&line), "docs/etcd.md should show:\n{line}");
    }
}
