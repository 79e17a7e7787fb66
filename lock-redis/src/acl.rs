//! The least a Redis ACL user needs to take part in elections: exactly what this crate sends.

/// The commands the lock sends, directly or from its script, each granted with `+`:
/// - `evalsha`, `script|load`: the compare-and-swap script (loaded again after `NOSCRIPT`);
/// - `type`, `hmget`, `hset`, `pexpire`, `persist`, `publish`, `time`: what the script calls
///   (on the election's key and its `:versions` companion, both under the prefix);
/// - `subscribe`, `unsubscribe`, `ping`: the change-hint connection (shared by the elections of
///   a client, it unsubscribes from an election nobody watches any more) and its keep-alive;
/// - `select`: sent on connecting when the URL names a database other than 0;
/// - `wait`: after every write when [`min_replicas`](crate::RedisLockOptions::min_replicas)
///   is set; `role`: the check that the server the sentinels name is the primary;
/// - `cluster|slots`, `asking`: how the cluster client learns which node serves a slot, and
///   follows a slot that is being moved; `spublish`, `ssubscribe`, `sunsubscribe`: change
///   hints over sharded pub/sub on a Redis Cluster.
///
/// `AUTH` needs no permission.
pub const ACL_COMMANDS: &[&str] = &[
    "evalsha",
    "script|load",
    "type",
    "hmget",
    "hset",
    "pexpire",
    "persist",
    "publish",
    "time",
    "subscribe",
    "unsubscribe",
    "ping",
    "select",
    "wait",
    "role",
    "cluster|slots",
    "asking",
    "spublish",
    "ssubscribe",
    "sunsubscribe",
];

/// The ACL rules that let a user take part in every election under `key_prefix` and nothing
/// else: its keys (`~prefix*`), its change channels (`&prefix*`) and the
/// [commands](ACL_COMMANDS) the lock sends.
///
/// ```
/// assert_eq!(
///     lock_redis::acl_rules("leader-election:"),
///     "resetkeys ~leader-election:* resetchannels &leader-election:* -@all +evalsha +script|load +type +hmget +hset +pexpire +persist +publish +time +subscribe +unsubscribe +ping +select +wait +role +cluster|slots +asking +spublish +ssubscribe +sunsubscribe"
/// );
/// ```
pub fn acl_rules(key_prefix: &str) -> String {
    let pattern = escape_glob(key_prefix);
    let mut rules = format!("resetkeys ~{pattern}* resetchannels &{pattern}* -@all");
    for command in ACL_COMMANDS {
        rules.push_str(" +");
        rules.push_str(command);
    }
    rules
}

/// The `ACL SETUSER` command that creates (or narrows) `user` to what the lock needs under
/// `key_prefix`. Add a password to it (`>secret`) or run `ACL SETUSER user >secret` after it;
/// in `redis.conf` or an ACL file write the same rules after `user <name> on >secret`.
///
/// ```
/// let line = lock_redis::acl_setuser_line("elector", "leader-election:");
/// assert!(line.starts_with("ACL SETUSER elector on resetkeys ~leader-election:* "));
/// ```
pub fn acl_setuser_line(user: &str, key_prefix: &str) -> String {
    format!("ACL SETUSER {user} on {}", acl_rules(key_prefix))
}

/// Escapes the characters that are special in ACL glob patterns.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_the_prefix_are_escaped() {
        assert!(acl_rules("a*b?:").starts_with(r"resetkeys ~a\*b\?:* resetchannels &a\*b\?:* "));
    }
}

#[cfg(test)]
mod readme {
    /// docs/redis.md prints the ACL line for the default prefix; it must be the one the code makes.
    #[test]
    fn the_readme_shows_the_acl_line_the_driver_needs() {
        let readme = include_str!("../../docs/redis.md");
        let line = super::acl_setuser_line("elector", crate::DEFAULT_KEY_PREFIX);
        assert!(readme.contains(&line), "docs/redis.md should show:\n{line}");
    }
}
