//! What wakes a waiting candidate before its back-off ends: a watch on the lock ConfigMap
//! (field selector on its name).

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::Api;

/// A watch on one ConfigMap that yields when it may have become free: deleted, changed, or
/// absent from a (re)list. It ends at the watcher's first error; the candidate then relies on
/// its back-off until it makes a new one.
pub(crate) struct Wake {
    events: BoxStream<'static, Result<Event<ConfigMap>, watcher::Error>>,
    /// Whether the list in progress has shown the object.
    listed: bool,
    ended: bool,
}

impl Wake {
    /// Watches `name` through `api`. Nothing is requested until [`changed`](Self::changed)
    /// is awaited.
    pub(crate) fn new(api: Api<ConfigMap>, name: &str) -> Self {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        Self {
            events: watcher::watcher(api, config).boxed(),
            listed: false,
            ended: false,
        }
    }

    /// True once the watch failed: it wakes nobody any more.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Resolves when the ConfigMap was deleted or modified, or when a list did not show it;
    /// never when the watch has ended.
    pub(crate) async fn changed(&mut self) {
        while !self.ended {
            match self.events.next().await {
                Some(Ok(Event::Delete(_) | Event::Apply(_))) => return,
                Some(Ok(Event::Init)) => self.listed = false,
                Some(Ok(Event::InitApply(_))) => self.listed = true,
                Some(Ok(Event::InitDone)) if !self.listed => return,
                Some(Ok(Event::InitDone)) => {}
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "the watch of the lock failed; waking by back-off only");
                    self.ended = true;
                }
                None => self.ended = true,
            }
        }
        std::future::pending::<()>().await;
    }
}
