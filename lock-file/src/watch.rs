//! Change hints from the file system: inotify (through `notify`) on the lock file's directory,
//! or polling where inotify is not available.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use lock_core::backend::{Hint, HintStream};
use notify::event::{ModifyKind, RenameMode};
use notify::{Event, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::stored;

/// How often the polling fallback looks at the directory.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The version and exact bytes of the last record sent as a hint.
type LastSent = (u64, Vec<u8>);

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

/// Watches the directory of the record file `real` (the file itself is replaced by rename on
/// every write) and sends the new record on every change of it. When the lock's path `given`
/// is a symlink to `real`, its directory is watched too, and a change of the link ends the
/// stream: the link may lead elsewhere now, and the elector subscribes again (resolving it
/// again) after polling meanwhile. The stream also ends when a watched directory is removed or
/// moved, or the watcher reports an error. `None` when neither inotify nor polling can watch.
pub(crate) fn watch(given: &Path, real: &Path, lock: String) -> Option<HintStream> {
    let (tx, hints) = mpsc::unbounded_channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let target = real.to_path_buf();
    // The link's name as inotify reports it (under its directory's canonical path).
    let alias = match (given.parent().map(std::fs::canonicalize), given.file_name()) {
        (Some(Ok(dir)), Some(name)) => Some(dir.join(name)).filter(|alias| *alias != target),
        _ => None,
    };
    // A write may still be reported more than once (a rename from another directory, say):
    // the same version with the same bytes is a repeat and is not sent again. A lower version,
    // or the same version with other bytes, is not dropped: the record was deleted and made
    // again, or edited by hand, and the elector reads it.
    let last_sent: Arc<Mutex<Option<LastSent>>> = Arc::default();
    let mut dirs = vec![crate::write::parent(real).to_path_buf()];
    if let Some(dir) = alias.as_deref().map(crate::write::parent) {
        if !dirs.iter().any(|watched| watched == dir) {
            dirs.push(dir.to_path_buf());
        }
    }
    let watched = dirs.clone();
    // The path the last event renamed away, with the rename's tracker: inotify reports a
    // rename in one directory as `From` then `To`, so the `To` of the lock file that comes
    // right after tells which temporary file became the record (a renew names its own, see
    // `renewal`).
    let renamed_from: Arc<Mutex<Option<(usize, PathBuf)>>> = Arc::default();
    let handler = move |event: notify::Result<Event>| {
        let mut sender = tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(send) = sender.as_ref() else { return };
        let came_from = {
            let mut renamed = renamed_from.lock().unwrap_or_else(|p| p.into_inner());
            let previous = renamed.take();
            if let Ok(event) = &event {
                if let (
                    EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                    Some(tracker),
                    [path],
                ) = (event.kind, event.tracker(), event.paths.as_slice())
                {
                    *renamed = Some((tracker, path.clone()));
                }
            }
            previous
        };
        let hint = match event {
            // The link moved, a watched directory went (its watch with it) or the watcher
            // failed: this stream can no longer see every change. End it; the elector reads,
            // polls, and subscribes again later.
            Ok(event)
                if alias.as_ref().is_some_and(|link| concerns(&event, link))
                    || watched.iter().any(|dir| gone(&event, dir)) =>
            {
                let _ = send.send(Hint::Changed);
                *sender = None;
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, lock, "watching the lock file failed; the elector will poll");
                *sender = None;
                return;
            }
            // The kernel's queue overflowed: changes may have been missed, read to find out
            // (and follow no renew from what was sent before: it may be out of date).
            Ok(event) if event.need_rescan() => {
                *last_sent.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Hint::Changed
            }
            Ok(event) if !concerns(&event, &target) => return,
            Ok(event) => match follow_renew(&event, came_from, &last_sent)
                .map_or_else(|| stored::read(&target, &lock), |renewed| Ok(Some(renewed)))
            {
                Ok(Some(read)) => {
                    let mut last = last_sent.lock().unwrap_or_else(|p| p.into_inner());
                    let version = read.stored.version;
                    let hint = match last.as_ref() {
                        Some((sent, bytes)) if *sent == version && *bytes == read.bytes => return,
                        Some((sent, _)) if *sent >= version => Hint::Changed,
                        _ => Hint::Record(read.stored.versioned()),
                    };
                    *last = Some((version, read.bytes));
                    hint
                }
                // Deleted, unreadable or corrupt: the elector reads and reports it itself.
                _ => Hint::Changed,
            },
        };
        let _ = send.send(hint);
    };
    let watcher = start(handler, &dirs)?;
    Some(Box::pin(FileHints {
        _watcher: watcher,
        hints,
    }))
}

/// The record after `event`, without reading the file, when `event` renamed a renew's temporary
/// file (the `From` just before, `came_from`) over the record that was sent last; `None` means
/// read.
fn follow_renew(
    event: &Event,
    came_from: Option<(usize, PathBuf)>,
    last_sent: &Mutex<Option<LastSent>>,
) -> Option<stored::FileContent> {
    let (tracker, from) = came_from?;
    if event.kind != EventKind::Modify(ModifyKind::Name(RenameMode::To))
        || event.tracker() != Some(tracker)
    {
        return None;
    }
    let name = from.file_name()?.to_str()?;
    let last = last_sent.lock().unwrap_or_else(|p| p.into_inner());
    let (_, before) = last.as_ref()?;
    crate::renewal::follow(before, name)
}

fn start<H>(handler: H, dirs: &[PathBuf]) -> Option<Box<dyn Watcher + Send>>
where
    H: notify::EventHandler + Clone,
{
    match RecommendedWatcher::new(handler.clone(), notify::Config::default()) {
        Ok(mut watcher) => match watch_all(&mut watcher, dirs) {
            Ok(()) => return Some(Box::new(watcher)),
            Err(err) => tracing::warn!(error = %err, "inotify watch failed; polling instead"),
        },
        Err(err) => tracing::warn!(error = %err, "inotify unavailable; polling instead"),
    }
    let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
    let mut watcher = PollWatcher::new(handler, config).ok()?;
    match watch_all(&mut watcher, dirs) {
        Ok(()) => Some(Box::new(watcher)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch the lock file's directory; the elector will poll");
            None
        }
    }
}

fn watch_all(watcher: &mut dyn Watcher, dirs: &[PathBuf]) -> notify::Result<()> {
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|err| err.add_path(dir.clone()))?;
    }
    Ok(())
}

/// True when `event` says the watched directory `dir` was removed or moved away (its inotify
/// watch goes with it).
fn gone(event: &Event, dir: &PathBuf) -> bool {
    matches!(
        event.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    ) && event.paths.iter().any(|path| path == dir)
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
