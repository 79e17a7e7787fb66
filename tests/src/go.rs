//! Go programs for the interop tests: client-go's elector (`interop/`, also the benchmark's
//! client-go baseline) and operator-lib's leader-for-life (`interop/operatorlib/`), built with Go.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `go` command: the official toolchain in `/usr/local/go` when it is there, else `go` on
/// `PATH`.
pub fn go_command() -> &'static str {
    if Path::new("/usr/local/go/bin/go").exists() {
        "/usr/local/go/bin/go"
    } else {
        "go"
    }
}

/// Builds `interop/` once per process into the workspace's `target/go/` (Go's build cache makes
/// later builds quick) and returns the binary's path.
///
/// # Panics
/// When Go is missing or the build fails, with a message that says how to install Go.
pub fn go_elector_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| build("interop", "interop-elector"))
        .clone()
}

/// Builds `interop/operatorlib/` (operator-lib v0.17.0's `leader.Become`, leader-for-life) once
/// per process into the workspace's `target/go/` and returns the binary's path.
///
/// # Panics
/// When Go is missing or the build fails, with a message that says how to install Go.
pub fn go_operatorlib_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| build("interop/operatorlib", "operatorlib-become"))
        .clone()
}

/// `go build -o target/go/<output> .` in the workspace's directory `package`.
fn build(package: &str, output: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = workspace.join("target/go").join(output);
    let status = std::process::Command::new(go_command())
        .arg("build")
        .arg("-o")
        .arg(&output)
        .arg(".")
        .current_dir(workspace.join(package))
        .status()
        .unwrap_or_else(|err| {
            panic!("cannot run go to build {package}/ ({err}): install Go (https://go.dev/dl/)")
        });
    assert!(status.success(), "go build in {package}/ failed");
    output
}
