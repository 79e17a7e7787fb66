//! client-go's own elector as a baseline: the `interop/` Go program, one process per candidate
//! (or one per group of elections), reporting to the same feed as ours.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::candidate::forward_lines;
use crate::error::{BenchError, BenchResult};
use crate::feed::{Sender, Stamp, What};
use crate::plan::Timings;
use crate::servers::NAMESPACE;

/// A running Go elector process: client-go v0.36's `leaderelection` on Leases.
pub struct GoCandidate {
    /// Its identity (the same in every election it takes part in).
    pub identity: String,
    child: Child,
}

impl GoCandidate {
    /// Starts one Go process that takes part in `elections` as `identity`, reporting every lock
    /// call. With `release_on_cancel` it releases its leases on SIGTERM, as client-go does.
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        elections: &[String],
        identity: &str,
        timings: Timings,
        release_on_cancel: bool,
        feed: &Sender,
    ) -> BenchResult<Self> {
        let mut child = Command::new(binary)
            .arg(format!("-kubeconfig={}", kubeconfig.display()))
            .arg(format!("-namespace={NAMESPACE}"))
            .arg(format!("-names={}", elections.join(",")))
            .arg(format!("-identity={identity}"))
            .arg("-lock=lease")
            .arg(format!("-lease-duration={}ms", timings.lease.as_millis()))
            .arg(format!("-renew-deadline={}ms", timings.renew.as_millis()))
            .arg(format!("-retry-period={}ms", timings.retry.as_millis()))
            .arg(format!("-release-on-cancel={release_on_cancel}"))
            .arg("-report-calls")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| BenchError::io("start the Go elector", err))?;
        let stdout = child.stdout.take().expect("piped stdout");
        forward_lines(stdout, feed.clone(), parse_line);
        Ok(Self {
            identity: identity.to_owned(),
            child,
        })
    }

    /// SIGTERM: client-go cancels its context and (if so configured) releases.
    pub fn interrupt(&self) -> BenchResult<()> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| BenchError::Setup(format!("{} has exited", self.identity)))?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM)
            .map_err(|err| BenchError::io("signal the Go elector", err.into()))
    }

    /// Waits for the process to exit; true when it exited with status 0.
    pub async fn exited(mut self) -> BenchResult<bool> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|err| BenchError::io("wait for the Go elector", err))?;
        Ok(status.success())
    }

    /// SIGKILL: the process dies without releasing.
    pub async fn kill(mut self) -> BenchResult<()> {
        self.child
            .start_kill()
            .map_err(|err| BenchError::io("kill the Go elector", err))?;
        self.exited().await.map(drop)
    }
}

/// The stamps one line of the Go elector's output means. A successful `update` or `create` that
/// names the caller as holder is both a call and a renew, stamped when it was sent (a release
/// names nobody). Lines without a time are ignored.
fn parse_line(line: &str) -> Vec<Stamp> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return Vec::new();
    };
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let Some(at) = value["ts"].as_i64().map(i128::from) else {
        return Vec::new();
    };
    let stamp = |what: What| Stamp {
        election: text("name"),
        identity: text("identity"),
        what,
        at,
    };
    match text("event").as_str() {
        "leading" => vec![stamp(What::Leading)],
        "lost" => vec![stamp(What::Lost)],
        "new_leader" => {
            let leader = Some(text("leader")).filter(|leader| !leader.is_empty());
            vec![stamp(What::NewLeader { leader })]
        }
        "call" => {
            let op = text("op");
            let renewed = value["ok"].as_bool() == Some(true)
                && op != "get"
                && text("holder") == text("identity");
            let mut stamps = vec![stamp(What::Call { op })];
            if let (true, Some(sent)) = (renewed, value["sent"].as_i64()) {
                let mut renew = stamp(What::Renewed);
                renew.at = i128::from(sent);
                stamps.push(renew);
            }
            stamps
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successful_update_of_the_holder_is_a_call_and_a_renew() {
        let line = r#"{"event":"call","name":"e","identity":"go-1","op":"update","holder":"go-1","sent":40,"ok":true,"ts":42}"#;
        let stamps = parse_line(line);
        assert_eq!(stamps.len(), 2);
        let update = What::Call {
            op: "update".to_owned(),
        };
        assert_eq!(stamps[0].what, update);
        assert_eq!(stamps[0].at, 42);
        assert_eq!(stamps[1].what, What::Renewed);
        assert_eq!(stamps[1].at, 40);
    }

    #[test]
    fn releases_failures_and_lines_without_a_time_are_no_renews() {
        let release = r#"{"event":"call","name":"e","identity":"go-1","op":"update","holder":"","sent":50,"ok":true,"ts":52}"#;
        assert_eq!(parse_line(release).len(), 1);
        let failed =
            r#"{"event":"call","name":"e","identity":"go-1","op":"get","ok":false,"ts":1}"#;
        assert_eq!(parse_line(failed).len(), 1);
        assert!(parse_line(r#"{"event":"leading","name":"e","identity":"go-1"}"#).is_empty());
        let observed =
            r#"{"event":"new_leader","name":"e","identity":"go-2","leader":"rust-1","ts":1}"#;
        let leader = Some("rust-1".to_owned());
        assert_eq!(parse_line(observed)[0].what, What::NewLeader { leader });
    }
}
