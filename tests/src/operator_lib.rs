//! operator-lib's leader-for-life (`leader.Become`, v0.17.0) as a process: `interop/operatorlib/`
//! built with Go, run as the operator in a given Pod, its JSON lines read as they come.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::go::go_operatorlib_binary;

/// One line of the program's output: `event` is `trying`, `log` (with `msg`, one of
/// operator-lib's log messages), `leader` or `error`.
#[derive(Clone, Debug)]
pub struct BecomeEvent {
    /// What happened.
    pub event: String,
    /// operator-lib's log message, for `log` lines; the error, for `error` lines.
    pub text: String,
    /// When, as read by the test (not the program's clock).
    pub at: Instant,
}

/// A running `leader.Become` of operator-lib. Killed when dropped.
#[derive(Debug)]
pub struct GoBecome {
    child: Child,
    events: mpsc::UnboundedReceiver<BecomeEvent>,
    seen: Vec<BecomeEvent>,
}

impl GoBecome {
    /// Runs `leader.Become(ctx, lock)` as the operator in the Pod `pod` of `namespace`
    /// (`POD_NAME`, `POD_NAMESPACE`), with the client of `kubeconfig`.
    ///
    /// # Panics
    /// When the program cannot be built or started.
    pub fn start(kubeconfig: &std::path::Path, namespace: &str, pod: &str, lock: &str) -> Self {
        let mut child = Command::new(go_operatorlib_binary())
            .arg(format!("-kubeconfig={}", kubeconfig.display()))
            .arg(format!("-name={lock}"))
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start interop/operatorlib");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
                let event = BecomeEvent {
                    event: text("event"),
                    text: if value["msg"].is_string() {
                        text("msg")
                    } else {
                        text("error")
                    },
                    at: Instant::now(),
                };
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            events,
            seen: Vec::new(),
        }
    }

    /// Waits up to `within` for the first line (from now on) for which `wanted` holds, and
    /// returns it; `None` when none came in time.
    ///
    /// # Panics
    /// When the program exits first, or reports an error.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        wanted: impl Fn(&BecomeEvent) -> bool,
    ) -> Option<BecomeEvent> {
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    self.seen.push(event.clone());
                    assert_ne!(event.event, "error", "leader.Become failed: {}", event.text);
                    if wanted(&event) {
                        return Some(event);
                    }
                }
                Ok(None) => panic!("interop/operatorlib exited; it said: {:?}", self.seen),
                Err(_) => return None,
            }
        }
    }

    /// Waits up to `within` for `leader.Become` to return (leading).
    pub async fn leading(&mut self, within: Duration) -> Option<BecomeEvent> {
        self.wait_for(within, |event| event.event == "leader").await
    }

    /// Waits up to `within` for operator-lib to log a message containing `text`.
    pub async fn logged(&mut self, text: &str, within: Duration) -> Option<BecomeEvent> {
        self.wait_for(within, |event| {
            event.event == "log" && event.text.contains(text)
        })
        .await
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[BecomeEvent] {
        &self.seen
    }

    /// Kills the process and waits until it is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
