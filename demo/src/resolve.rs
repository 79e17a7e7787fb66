//! Exec mode's command, found at startup on every instance: a typo (`-- no-such-cmd`) fails at
//! once with status 127, on standbys too, instead of when the instance first leads.
//!
//! The lookup is the one `execvp` does: a name with a slash is a path, used as it is; any
//! other name is looked for in each directory of `$PATH` in turn (an empty entry is the current
//! directory), and the first regular file there that this process may execute is it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where `execvp` looks when `$PATH` is not set (glibc's default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The file `program` names, as `execvp` would find it; an error says why there is none, in
/// words that name the program and `$PATH`.
pub fn resolve(program: &str, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the command after `--` is empty".to_owned());
    }
    if program.contains('/') {
        let path = Path::new(program);
        return match executable(path) {
            Ok(()) => Ok(path.to_path_buf()),
            Err(why) => Err(format!("cannot run {program:?}: {why}")),
        };
    }
    let search = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut refused = None;
    for dir in search.as_bytes().split(|byte| *byte == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            // Found but not runnable: said if nothing later on $PATH is.
            Err(why) if candidate.exists() => {
                refused.get_or_insert(format!("{}: {why}", candidate.display()));
            }
            Err(_) => {}
        }
    }
    let shown = String::from_utf8_lossy(search.as_bytes()).into_owned();
    Err(match refused {
        Some(why) => format!("cannot run {program:?}: {why}"),
        None => format!(
            "command not found: {program:?} is in no directory of $PATH ({shown}); give its \
             full path or fix the name"
        ),
    })
}

/// Ok when `path` is a regular file with an execute bit; else why not. (The bits are what
/// decides for root, as for `execvp`; an ordinary user refused by them anyway still gets a
/// clear line when the start fails.)
fn executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        _ => err.to_string(),
    })?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("not executable (no x permission)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_on_path_and_paths_used_as_they_are() {
        let dir = std::env::temp_dir().join(format!("resolve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tool = dir.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, "data").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = format!("/nonexistent:{}", dir.display());
        let path = Some(OsStr::new(&path));

        assert_eq!(resolve("tool", path).unwrap(), tool);
        assert_eq!(resolve(tool.to_str().unwrap(), None).unwrap(), tool);
        let missing = resolve("no-such-cmd", path).unwrap_err();
        assert!(
            missing.contains("command not found: \"no-such-cmd\""),
            "{missing}"
        );
        assert!(missing.contains("/nonexistent:"), "{missing}");
        let gone = resolve("./no/such/file", None).unwrap_err();
        assert!(gone.contains("no such file"), "{gone}");
        let is_dir = resolve(dir.to_str().unwrap(), None).unwrap_err();
        assert!(is_dir.contains("not a regular file"), "{is_dir}");
        let not_exec = resolve(plain.to_str().unwrap(), None).unwrap_err();
        assert!(not_exec.contains("not executable"), "{not_exec}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
