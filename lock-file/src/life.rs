//! [`FileLifeLock`]: leader-for-life on one machine, held by an OS lock for the life of the
//! holder's process.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lock_core::{
    LeaderElectionRecord, LifeHold, LifeLock, LifeRelease, Lock, LockError, LockResult,
    MAX_LEASE_DURATION,
};
use tokio_util::sync::CancellationToken;

use crate::errors::io_error;
use crate::FileLock;

/// How often a standby tries the OS lock: the longest a takeover waits after the holder's
/// process is gone.
pub const LIFE_POLL: Duration = Duration::from_millis(10);

/// How often the record is written again after a conflict with another writer, before the
/// hold is given up with the error.
const RECORD_ATTEMPTS: u32 = 5;

/// A [`LifeLock`] on one machine: an exclusive `flock` on `<file>.life`, next to the record
/// file, held for the life of the process.
///
/// - **The kernel says when the holder is gone.** The OS lock is released when the holder's
///   process ends, however it ends (a crash, `SIGKILL`, the OOM killer); a standby tries it
///   every [`LIFE_POLL`], so it leads within milliseconds. A stopped (`SIGSTOP`) or hung
///   holder keeps it: nobody takes over, by design (see
///   [`LifeElector`](lock_core::LifeElector) for the trade-off).
/// - **The record tells who leads.** Once it holds the OS lock, the new holder writes the
///   record file through [`FileLock`] (so `cat` and `demo observe` show it) naming itself,
///   with `leaderTransitions` (its fencing token) above the last term's and above the token
///   floor the `<file>.lock` marks keep. The record's lease is the longest allowed (a day),
///   so that an observer keeps naming the holder; a lease-mode elector must not share the
///   file (it would take over after that day).
/// - [`holder`](LifeLock::holder) asks the kernel first: the lock is free when nobody holds
///   `<file>.life`, whatever the record says.
///
/// The `.life` file is never deleted; deleting it while a holder runs lets a second holder in.
#[derive(Debug, Clone)]
pub struct FileLifeLock {
    record: FileLock,
    life_path: PathBuf,
}

impl FileLifeLock {
    /// A life lock whose record is the file at `path` and whose OS lock is `<path>.life`.
    /// Nothing is read or written until the lock is used.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let record = FileLock::new(path);
        let mut life = record.path().as_os_str().to_owned();
        life.push(".life");
        Self {
            record,
            life_path: PathBuf::from(life),
        }
    }

    /// The file whose OS lock is held for the life of the leader's process.
    pub fn life_path(&self) -> &Path {
        &self.life_path
    }

    /// The lock on the record file.
    pub fn record_lock(&self) -> &FileLock {
        &self.record
    }

    /// Opens (creating it and its directory if needed) the `.life` file, off the runtime.
    async fn open(&self) -> LockResult<File> {
        let path = self.life_path.clone();
        let name = self.describe();
        tokio::task::spawn_blocking(move || open_life_file(&path, &name))
            .await
            .map_err(|err| LockError::unavailable(self.describe(), err))?
    }

    /// Writes the record of a new term for `identity`: the token above the last record's and
    /// the token floor. Returns the token.
    async fn write_record(&self, identity: &str) -> LockResult<u64> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.record.get().await?;
            let floor = self.record.token_floor().await?;
            let above_last = current.as_ref().map_or(0, |stored| {
                u64::try_from(stored.record.leader_transitions).unwrap_or(0) + 1
            });
            let token = above_last.max(floor);
            let transitions = i32::try_from(token).map_err(|_| LockError::Corrupt {
                lock: self.describe(),
                reason: format!(
                    "the next fencing token {token} is beyond a 32-bit leaderTransitions"
                ),
            })?;
            let now = chrono::Utc::now();
            let record = LeaderElectionRecord {
                holder_identity: identity.to_owned(),
                lease_duration_seconds: i32::try_from(MAX_LEASE_DURATION.as_secs())
                    .unwrap_or(i32::MAX),
                acquire_time: Some(now),
                renew_time: Some(now),
                leader_transitions: transitions,
                strategy: None,
                preferred_holder: None,
            };
            let written = match &current {
                Some(stored) => self.record.update(&record, &stored.version).await,
                None => self.record.create(&record).await,
            };
            match written {
                Ok(_) => return Ok(token),
                Err(LockError::Conflict { .. } | LockError::AlreadyExists { .. })
                    if attempt < RECORD_ATTEMPTS =>
                {
                    tracing::warn!(lock = %self.describe(), "the record changed while a term for life started; writing it again");
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Opens `path` for its OS lock, refusing anything but a regular file (without blocking on a
/// FIFO put there).
fn open_life_file(path: &Path, lock: &str) -> LockResult<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| io_error(lock, "create the directory", dir, err))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| io_error(lock, "create", path, err))?;
    let meta = file
        .metadata()
        .map_err(|err| io_error(lock, "inspect", path, err))?;
    if !meta.is_file() {
        crate::path::check_file(&meta, path, lock)?;
    }
    Ok(file)
}

/// Tries the OS lock once: `Ok(true)` when this file description holds it now.
fn try_hold(file: &File, lock: &str) -> LockResult<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        // flock fails only for reasons no path explains (out of kernel memory, say).
        Err(TryLockError::Error(err)) => Err(LockError::unavailable_because(
            lock,
            format!("cannot lock the life lock file: {err}"),
            err,
        )),
    }
}

#[async_trait::async_trait]
impl LifeLock for FileLifeLock {
    async fn acquire(
        &self,
        identity: &str,
        cancel: &CancellationToken,
    ) -> LockResult<Option<LifeHold>> {
        let file = self.open().await?;
        let name = self.describe();
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            // A non-blocking flock is one quick system call.
            if try_hold(&file, &name)? {
                break;
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(LIFE_POLL) => {}
            }
        }
        // Held: the file is closed (and the OS lock released) if writing the record fails.
        let fencing_token = self.write_record(identity).await?;
        tracing::info!(lock = %name, fencing_token, "holding the life lock");
        Ok(Some(LifeHold {
            fencing_token,
            // Nothing but the end of this process ends a flock.
            lost: CancellationToken::new(),
            release: Box::new(FileRelease {
                file: Some(file),
                record: self.record.clone(),
                identity: identity.to_owned(),
                token: fencing_token,
            }),
            deadline: None,
        }))
    }

    async fn holder(&self) -> LockResult<Option<(String, u64)>> {
        if !tokio::fs::try_exists(&self.life_path)
            .await
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let file = self.open().await?;
        if try_hold(&file, &self.describe())? {
            // Nobody holds it (closing the file lets go at once).
            return Ok(None);
        }
        let Some(stored) = self.record.get().await? else {
            return Ok(None);
        };
        Ok(stored.record.holder().map(|holder| {
            let token = u64::try_from(stored.record.leader_transitions).unwrap_or(0);
            (holder.to_owned(), token)
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{} (for life: {})",
            self.record.describe(),
            self.life_path.display()
        )
    }
}

/// Gives the OS lock up, after marking the record free. Dropped without `release`, it keeps
/// the file open (and the OS lock held) until the process ends.
struct FileRelease {
    file: Option<File>,
    record: FileLock,
    identity: String,
    token: u64,
}

impl Drop for FileRelease {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Kept for the life of the process, as the platform tells.
            std::mem::forget(file);
        }
    }
}

#[async_trait::async_trait]
impl LifeRelease for FileRelease {
    async fn release(mut self: Box<Self>) -> LockResult<()> {
        let marked = async {
            let Some(stored) = self.record.get().await? else {
                return Ok(());
            };
            let ours = stored.record.holder() == Some(self.identity.as_str())
                && u64::try_from(stored.record.leader_transitions).ok() == Some(self.token);
            if !ours {
                return Ok(());
            }
            let mut freed = stored.record.clone();
            freed.holder_identity = String::new();
            freed.lease_duration_seconds = 1;
            self.record
                .update(&freed, &stored.version)
                .await
                .map(|_| ())
        }
        .await;
        // The OS lock goes whatever the record write did: a standby takes over at once.
        if let Some(file) = self.file.take() {
            let _ = file.unlock();
        }
        marked
    }
}
