//! Change hints: a kube watcher on the one object (field selector `metadata.name`).

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use lock_core::{Hint, HintStream, Versioned};

use crate::lock::{version_of, Inner};
use crate::LockObject;

/// A stream of hints for the lock's object: [`Hint::Record`] for every version the watch
/// reports (also the ones listed when it (re)starts), [`Hint::Changed`] when the object is
/// deleted, when a (re)started watch has listed everything (changes may have been missed
/// meanwhile) and for objects that do not hold a record. The watcher retries with a backoff
/// after errors (which are logged) and ends only when dropped.
pub(crate) fn watch<K: LockObject>(inner: Arc<Inner<K>>) -> HintStream {
    let config = watcher::Config::default().fields(&format!("metadata.name={}", inner.name));
    let mut logged_error = false;
    watcher::watcher(inner.api.clone(), config)
        .default_backoff()
        .filter_map(move |event| {
            let hint = match event {
                Ok(Event::Apply(object) | Event::InitApply(object)) => {
                    logged_error = false;
                    Some(hint(&inner, &object))
                }
                Ok(Event::Delete(_) | Event::InitDone) => Some(Hint::Changed),
                Ok(Event::Init) => None,
                Err(err) => {
                    if logged_error {
                        tracing::debug!(lock = %inner.describe, error = %err, "watch failed; retrying");
                    } else {
                        tracing::warn!(lock = %inner.describe, error = %err, "watch failed; retrying (polling meanwhile)");
                        logged_error = true;
                    }
                    None
                }
            };
            futures::future::ready(hint)
        })
        .boxed()
}

fn hint<K: LockObject>(inner: &Inner<K>, object: &K) -> Hint {
    match (inner.record_of(object), version_of(object)) {
        (Ok(record), Some(version)) => Hint::Record(Versioned { record, version }),
        _ => Hint::Changed,
    }
}
