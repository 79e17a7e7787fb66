//! The one Lua script that reads and compare-and-swaps the record on the server, and its replies.

use std::sync::LazyLock;

use redis::Value;

/// The script's source: every check, the version counter, the expiry and the announcement.
/// Its opening comment says why updates compare the exact bytes the client read.
pub const SCRIPT_SOURCE: &str = include_str!("script.lua");

/// The script, sent as `EVALSHA` and loaded with `SCRIPT LOAD` when the server answers
/// `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
pub(crate) static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(SCRIPT_SOURCE));

/// What the script did, as it says in its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `get`: there is no record.
    None,
    /// `get`: the record's JSON and its version.
    Found { record: Vec<u8>, version: String },
    /// `create`, `update`: written at this version.
    Written { version: String },
    /// `create`, `update`: written at this version, but fewer replicas than required
    /// acknowledged it (never parsed: the lock makes it from `Written` and `WAIT`'s answer).
    Unreplicated { version: String, acknowledged: i64 },
    /// `create`: a record is there already.
    Exists,
    /// `update`: the record is gone (`current` is `None`), or the key holds `current`: the
    /// record's bytes and their version, which moved on or are not the bytes the caller read.
    Conflict { current: Option<(Vec<u8>, String)> },
    /// The key holds something that is not a record; nothing was written.
    Corrupt { reason: String },
}

impl Reply {
    /// Reads the script's reply; `Err` describes a reply the script cannot have sent.
    pub fn parse(value: Value) -> Result<Self, String> {
        let unexpected = |value: &Value| format!("unexpected reply from the script: {value:?}");
        let Value::Array(items) = &value else {
            return Err(unexpected(&value));
        };
        let mut fields = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::BulkString(bytes) => fields.push(bytes.as_slice()),
                Value::SimpleString(text) => fields.push(text.as_bytes()),
                _ => return Err(unexpected(&value)),
            }
        }
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let reply = match fields.as_slice() {
            [b"none"] => Self::None,
            [b"found", record, version] => Self::Found {
                record: record.to_vec(),
                version: text(version),
            },
            [b"ok", version] => Self::Written {
                version: text(version),
            },
            [b"exists"] => Self::Exists,
            [b"conflict", b""] => Self::Conflict { current: None },
            [b"conflict", version, record] => Self::Conflict {
                current: Some((record.to_vec(), text(version))),
            },
            [b"corrupt", reason] => Self::Corrupt {
                reason: text(reason),
            },
            _ => return Err(unexpected(&value)),
        };
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|item| Value::BulkString(item.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn replies_parse() {
        assert_eq!(Reply::parse(bulk(&["none"])), Ok(Reply::None));
        assert_eq!(
            Reply::parse(bulk(&["found", "{}", "7"])),
            Ok(Reply::Found {
                record: b"{}".to_vec(),
                version: "7".into()
            })
        );
        assert_eq!(
            Reply::parse(bulk(&["conflict", ""])),
            Ok(Reply::Conflict { current: None })
        );
        assert_eq!(
            Reply::parse(bulk(&["conflict", "9", "{}"])),
            Ok(Reply::Conflict {
                current: Some((b"{}".to_vec(), "9".into()))
            })
        );
    }

    #[test]
    fn anything_else_is_an_error_not_a_panic() {
        assert!(Reply::parse(Value::Nil).is_err());
        assert!(Reply::parse(Value::Int(3)).is_err());
        assert!(Reply::parse(bulk(&["found", "{}"])).is_err());
        assert!(Reply::parse(bulk(&["ok"])).is_err());
        assert!(Reply::parse(bulk(&["conflict", "9"])).is_err());
        assert!(Reply::parse(Value::Array(vec![Value::Int(1)])).is_err());
    }
}
