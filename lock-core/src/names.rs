//! The checks every backend makes of the names it puts into keys, written once.

use crate::{LockError, LockResult};

/// Checks an election name as every backend does: not empty, and no control characters (they
/// would make the key unreadable in a server's command-line client and in messages). Backends
/// add their own rules on top (Redis refuses braces, Kubernetes wants a DNS name).
pub fn check_election_name(name: &str) -> LockResult<()> {
    if name.is_empty() {
        return Err(LockError::InvalidConfig(
            "the election name is empty".to_owned(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(LockError::InvalidConfig(format!(
            "the election name {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Checks a key prefix as every backend does: it may be empty, but holds no control characters.
pub fn check_key_prefix(prefix: &str) -> LockResult<()> {
    if prefix.chars().any(char::is_control) {
        return Err(LockError::InvalidConfig(format!(
            "the key prefix {prefix:?} contains a control character"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_names_and_control_characters_are_refused() {
        assert!(check_election_name("orders").is_ok());
        assert!(check_election_name("").is_err());
        assert!(check_election_name("a\nb").is_err());
        assert!(check_key_prefix("").is_ok());
        assert!(check_key_prefix("x\u{7}").is_err());
    }
}
