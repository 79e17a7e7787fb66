//! Crash-safe replacement: write a temporary file, fsync it, rename it over the lock file,
//! fsync the directory. A reader sees the old content or the new, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces the file at `path` with `bytes`. `tag`, when given, ends the temporary file's name
/// (see `renewal`): watchers see it in the rename.
pub(crate) fn replace(path: &Path, bytes: &[u8], tag: Option<&str>) -> io::Result<()> {
    crate::operations::count_write();
    let dir = parent(path);
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(tagged(
        format!(
            ".{file_name}.tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
        tag,
    ));
    let result = write_synced(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    // Make the rename itself durable.
    File::open(dir)?.sync_all()
}

/// The most a file name may be long on the file systems this runs on; a longer tagged name
/// falls back to an untagged one (watchers then read).
const NAME_MAX: usize = 255;

/// Appends `tag` to a temporary file's name, unless that makes it too long.
pub(crate) fn tagged(name: String, tag: Option<&str>) -> String {
    match tag {
        Some(tag) if name.len() + tag.len() <= NAME_MAX => name + tag,
        _ => name,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The directory that holds `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_too_long_for_a_tag_goes_untagged() {
        let long = "x".repeat(NAME_MAX - 5);
        assert_eq!(tagged(long.clone(), Some(".renew-1-2")), long);
        assert_eq!(tagged("short".to_owned(), None), "short");
    }
}
