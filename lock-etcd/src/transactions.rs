//! The two transactions that write the key, and how their answers are read.
//!
//! Both read the key in their `else` branch, so that a failed comparison tells in the same
//! round trip what is there instead: nothing, a record, or a value that is not a record.

use etcd_client::proto::{PbTxnOpResponse, PbTxnResponse};
use etcd_client::{Compare, CompareOp, GetResponse, Txn, TxnOp, TxnResponse};

/// The key's value and the revision that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The comparison held and the record was written at this revision.
    Written { revision: i64 },
    /// The comparison failed; the key holds this (or nothing).
    NotWritten { current: Option<Stored> },
}

/// Writes `value` under `key` if the key does not exist (`create_revision == 0`), else reads it.
pub(crate) fn create(key: &str, value: &[u8]) -> Txn {
    Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)])
}

/// Writes `value` under `key` if the key was last written at `revision` and still holds
/// `expected` (see [`crate::vouched`] for why both), else reads it.
pub(crate) fn update(key: &str, revision: i64, expected: &[u8], value: &[u8]) -> Txn {
    Txn::new()
        .when([
            Compare::mod_revision(key, CompareOp::Equal, revision),
            Compare::value(key, CompareOp::Equal, expected),
        ])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)])
}

/// Reads a transaction's answer; `Err` says what is wrong with it (a server cannot send that).
pub(crate) fn outcome(key: &str, response: TxnResponse) -> Result<Outcome, String> {
    let PbTxnResponse {
        header,
        succeeded,
        responses,
    } = response.0;
    if succeeded {
        let Some(header) = header else {
            return Err("a transaction answer without a header".to_owned());
        };
        if header.revision <= 0 {
            return Err(format!(
                "a transaction that wrote at revision {}",
                header.revision
            ));
        }
        return Ok(Outcome::Written {
            revision: header.revision,
        });
    }
    let range = responses
        .into_iter()
        .find_map(|op| match op.response {
            Some(PbTxnOpResponse::ResponseRange(range)) => Some(range),
            _ => None,
        })
        .ok_or_else(|| "a failed transaction answer without the read of the key".to_owned())?;
    let current = range
        .kvs
        .into_iter()
        .find(|kv| kv.key == key.as_bytes())
        .map(|kv| Stored {
            value: kv.value,
            mod_revision: kv.mod_revision,
        });
    Ok(Outcome::NotWritten { current })
}

/// The key's value in the answer to a plain read.
pub(crate) fn stored(key: &str, mut response: GetResponse) -> Option<Stored> {
    response
        .take_kvs()
        .into_iter()
        .find(|kv| kv.key() == key.as_bytes())
        .map(|kv| Stored {
            mod_revision: kv.mod_revision(),
            value: kv.into_key_value().1,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_client::proto::{PbKeyValue, PbRangeResponse, PbResponseHeader, PbResponseOp};

    fn answer(succeeded: bool, header: Option<i64>, responses: Vec<PbResponseOp>) -> TxnResponse {
        TxnResponse(PbTxnResponse {
            header: header.map(|revision| PbResponseHeader {
                revision,
                ..PbResponseHeader::default()
            }),
            succeeded,
            responses,
        })
    }

    fn range(kvs: Vec<PbKeyValue>) -> PbResponseOp {
        PbResponseOp {
            response: Some(PbTxnOpResponse::ResponseRange(PbRangeResponse {
                kvs,
                ..PbRangeResponse::default()
            })),
        }
    }

    #[test]
    fn a_write_reports_the_header_revision() {
        assert_eq!(
            outcome("k", answer(true, Some(7), vec![])),
            Ok(Outcome::Written { revision: 7 })
        );
    }

    #[test]
    fn a_failed_comparison_reports_what_is_there() {
        let kv = PbKeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            mod_revision: 5,
            ..PbKeyValue::default()
        };
        assert_eq!(
            outcome("k", answer(false, Some(9), vec![range(vec![kv])])),
            Ok(Outcome::NotWritten {
                current: Some(Stored {
                    value: b"v".to_vec(),
                    mod_revision: 5,
                })
            })
        );
        assert_eq!(
            outcome("k", answer(false, Some(9), vec![range(vec![])])),
            Ok(Outcome::NotWritten { current: None })
        );
    }

    #[test]
    fn answers_a_server_cannot_send_are_errors_not_panics() {
        assert!(outcome("k", answer(true, None, vec![])).is_err());
        assert!(outcome("k", answer(true, Some(0), vec![])).is_err());
        assert!(outcome("k", answer(false, Some(9), vec![])).is_err());
        let empty = PbResponseOp { response: None };
        assert!(outcome("k", answer(false, Some(9), vec![empty])).is_err());
    }
}
