//! Change hints from the file system: inotify (through `notify`) on the lock file's directory,
//! or polling where inotify is not available.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use lock_core::{Hint, HintStream};
use notify::event::{ModifyKind, RenameMode};
use notify::{Event, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::stored;

/// How often the polling fallback looks at the directory.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A hint stream that owns the watcher feeding it.
struct FileHints {
    _watcher: Box<dyn Watcher + Send>,
    hints: mpsc::UnboundedReceiver<Hint>,
}

impl Stream for FileHints {
    type Item = Hint;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Hint>> {
        self.hints.poll_recv(cx)
    }
}

/// Watches the directory of `path` (the file itself is replaced by rename on every write) and
/// sends the new record on every change of `path`. `None` when neither inotify nor polling can
/// watch the directory.
pub(crate) fn watch(path: &Path, lock: String) -> Option<HintStream> {
    let (tx, hints) = mpsc::unbounded_channel();
    let target = path.to_path_buf();
    // A write may still be reported more than once (a rename from another directory, say);
    // versions in the file only grow, so a record at or below the last version sent is a
    // repeat (or older) and is not sent again.
    let last_sent = Arc::new(Mutex::new(0u64));
    let handler = move |event: notify::Result<Event>| {
        let hint = match event {
            Ok(event) if !concerns(&event, &target) => return,
            Ok(_) => match stored::read(&target, &lock) {
                Ok(Some(stored)) => {
                    let mut last = last_sent.lock().unwrap_or_else(|p| p.into_inner());
                    if stored.version <= *last {
                        return;
                    }
                    *last = stored.version;
                    Hint::Record(stored.versioned())
                }
                // Deleted, unreadable or corrupt: the elector reads and reports it itself.
                _ => Hint::Changed,
            },
            // The watcher hit a problem and may have missed events: read to find out.
            Err(_) => Hint::Changed,
        };
        let _ = tx.send(hint);
    };
    let dir = crate::write::parent(path).to_path_buf();
    let watcher = start(handler, &dir)?;
    Some(Box::pin(FileHints {
        _watcher: watcher,
        hints,
    }))
}

fn start<H>(handler: H, dir: &Path) -> Option<Box<dyn Watcher + Send>>
where
    H: notify::EventHandler + Clone,
{
    match RecommendedWatcher::new(handler.clone(), notify::Config::default()) {
        Ok(mut watcher) => match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => return Some(Box::new(watcher)),
            Err(err) => {
                tracing::warn!(error = %err, dir = %dir.display(), "inotify watch failed; polling instead")
            }
        },
        Err(err) => tracing::warn!(error = %err, "inotify unavailable; polling instead"),
    }
    let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
    let mut watcher = PollWatcher::new(handler, config).ok()?;
    match watcher.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => Some(Box::new(watcher)),
        Err(err) => {
            tracing::warn!(error = %err, dir = %dir.display(), "cannot watch the lock file's directory; the elector will poll");
            None
        }
    }
}

/// True when `event` may have changed the file at `target`. A rename within the directory is
/// reported as a `To` event for the new name and then again as a `Both` event for both names:
/// only the first is read for, so that a standby reads the file once per write.
fn concerns(event: &Event, target: &PathBuf) -> bool {
    let repeat = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
    !matches!(event.kind, EventKind::Access(_))
        && event.kind != repeat
        && event.paths.iter().any(|path| path == target)
}
