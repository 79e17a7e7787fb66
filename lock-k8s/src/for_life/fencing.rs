//! Fencing tokens for leader-for-life terms: a counter kept in a companion ConfigMap that no
//! Pod owns.
//!
//! The lock ConfigMap cannot keep the counter: the garbage collector deletes it with its
//! holder's Pod, and the next holder would start again from nothing. Its `resourceVersion` is
//! no better: the API's contract makes it opaque, to be compared for equality only. So each
//! new term first raises the counter in the ConfigMap `<lock>-fencing` (annotation
//! [`FENCING_COUNTER_ANNOTATION`]) by compare-and-swap on its `resourceVersion`, then writes
//! the value into the lock's [`FENCING_TOKEN_ANNOTATION`]. A term's token is therefore above
//! every token handed out before, whoever took it and whatever the GC deleted since. A create
//! that succeeds is checked against the counter: if another candidate raised it in between (it
//! may have led, and lost its Pod, while this create was on its way), the new holder takes a
//! fresh token and writes it onto its lock by compare-and-swap before it reports the hold. The counter
//! never goes below the highest token this process has seen (on a lock or on the counter), so
//! deleting the companion by hand costs ordering only against terms this process never saw.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::ResourceExt;
use lock_core::{LockError, LockResult};

use super::Shared;
use crate::errors::is_status;

/// The annotation on the lock ConfigMap that holds the term's fencing token (decimal).
pub const FENCING_TOKEN_ANNOTATION: &str = "leader-election.rs/fencing-token";

/// The annotation on the companion ConfigMap that holds the last token handed out (decimal).
pub const FENCING_COUNTER_ANNOTATION: &str = "leader-election.rs/fencing-counter";

/// The suffix of the companion ConfigMap's name.
pub const FENCING_SUFFIX: &str = "-fencing";

/// How many lost compare-and-swap races in a row `next_token` accepts before it reports a
/// conflict.
const ATTEMPTS: usize = 10;

/// The fencing token in `annotations` under `key`: `Ok(None)` when absent (a lock written by
/// operator-lib has none), `Err` when it is not a number.
pub(crate) fn token_in(lock: &ConfigMap, key: &str) -> Result<Option<u64>, String> {
    match lock.annotations().get(key) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("the annotation {key} holds {text:?}, not a fencing token")),
    }
}

impl Shared {
    /// The counter's value (0 when there is none yet).
    pub(crate) async fn last_token(&self) -> LockResult<u64> {
        let name = format!("{}{FENCING_SUFFIX}", self.name);
        let counter = self
            .call("get", "configmaps", self.configmaps.get_opt(&name))
            .await?;
        Ok(match counter {
            Some(counter) => token_in(&counter, FENCING_COUNTER_ANNOTATION)
                .map_err(|reason| self.corrupt(format!("{name}: {reason}")))?
                .unwrap_or(0),
            None => 0,
        })
    }

    /// Raises the counter and returns the new token: above the stored counter and above
    /// every token this process has seen.
    pub(crate) async fn next_token(&self) -> LockResult<u64> {
        let name = format!("{}{FENCING_SUFFIX}", self.name);
        for _ in 0..ATTEMPTS {
            let current = self
                .call("get", "configmaps", self.configmaps.get_opt(&name))
                .await?;
            let stored = match &current {
                Some(counter) => token_in(counter, FENCING_COUNTER_ANNOTATION)
                    .map_err(|reason| self.corrupt(format!("{name}: {reason}")))?
                    .unwrap_or(0),
                None => 0,
            };
            let token = stored.max(self.floor()) + 1;
            let written = match current {
                Some(mut counter) => {
                    counter
                        .annotations_mut()
                        .insert(FENCING_COUNTER_ANNOTATION.to_owned(), token.to_string());
                    self.timed(
                        self.configmaps
                            .replace(&name, &PostParams::default(), &counter),
                    )
                    .await?
                }
                None => {
                    let counter = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.namespace.clone()),
                            annotations: Some(BTreeMap::from([(
                                FENCING_COUNTER_ANNOTATION.to_owned(),
                                token.to_string(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        ..ConfigMap::default()
                    };
                    self.timed(self.configmaps.create(&PostParams::default(), &counter))
                        .await?
                }
            };
            match written {
                Ok(_) => {
                    self.observe(token);
                    return Ok(token);
                }
                // Another candidate raised it first: read again.
                Err(err) if is_status(&err, 409, None) || is_status(&err, 404, None) => continue,
                Err(err) => return Err(self.map("update", "configmaps", err)),
            }
        }
        Err(LockError::conflict(
            format!("{}/{name}", self.describe),
            format!("{ATTEMPTS} attempts to raise the fencing counter"),
        ))
    }
}
