//! Change hints: a kube watcher on the one object (field selector `metadata.name`), ended at
//! its first error; or, for the locks of an [`ObjectLocks`](crate::ObjectLocks), the object's
//! place in their one shared watch (see the `hub` module).

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use lock_core::backend::{Hint, HintStream};

use crate::hub::{Hub, Subscription};
use crate::object::{hint_of, LockObject};

/// A stream of hints for the object `name` from a shared watch, with the same hints as
/// [`watch`] gives: [`Hint::Record`] for every version delivered (also the listed ones),
/// [`Hint::Changed`] once the list is complete (or at once, when it already is), for a
/// deletion and for an object that holds no record. It joins the watch on its first poll, and
/// ends when the shared watch fails.
pub(crate) fn shared<K: LockObject>(hub: Arc<Hub<K>>, name: String) -> HintStream {
    futures::stream::unfold(
        (hub, name, None::<Subscription>),
        |(hub, name, joined)| async move {
            let subscription = match joined {
                Some(subscription) => subscription,
                None => hub.join(&name),
            };
            let hint = subscription.next().await?;
            Some((hint, (hub, name, Some(subscription))))
        },
    )
    .boxed()
}

/// A stream of hints for the lock's object: [`Hint::Record`] for every version the watch
/// reports (also the ones listed when it starts), [`Hint::Changed`] when the object is deleted,
/// when the first list is complete (changes may have been missed before) and for objects that
/// hold no record.
///
/// It ends at the watcher's first error (a refused or failed list or watch, a lost
/// connection), logged at warn: the elector trusts an open stream to announce changes and
/// polls only once it ended, then calls [`watch`](lock_core::Lock::watch) again after a
/// back-off. A watch that the API server closes in the normal course (its timeout) is
/// resumed by the watcher from the last resourceVersion, without a gap.
pub(crate) fn watch<K: LockObject>(api: Api<K>, name: &str, describe: String) -> HintStream {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher::watcher(api, config)
        .scan((), move |_, event| {
            let step = match event {
                Ok(Event::Apply(object) | Event::InitApply(object)) => Some(Some(hint_of(&object))),
                Ok(Event::Delete(_) | Event::InitDone) => Some(Some(Hint::Changed)),
                Ok(Event::Init) => Some(None),
                Err(err) => {
                    tracing::warn!(lock = %describe, error = %err, "the watch failed; polling until the next attempt");
                    None
                }
            };
            futures::future::ready(step)
        })
        .filter_map(futures::future::ready)
        .boxed()
}
