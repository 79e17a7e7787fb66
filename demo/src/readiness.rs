//! Readiness-gated candidacy: with `--ready-url` or `--ready-command`, this instance competes
//! only while the check passes. The check runs every `--ready-period`; the elector follows its
//! verdicts through a watch channel ([`lock_core::LeaderElector::with_readiness`]), and a leader
//! that turns unready hands over unless `--on-unready keep-leading`.
//!
//! Until the first check passes the instance counts as not ready: an instance still warming
//! up must not win the election just because it started first.

use std::process::Stdio;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::printable::printable;

/// What decides readiness.
#[derive(Clone, Debug)]
pub enum Check {
    /// `GET URL` answers 2xx (plain http; a probe endpoint on this machine or in this pod).
    Url(reqwest::Url),
    /// `sh -c COMMAND` exits 0.
    Command(String),
}

impl Check {
    /// The check the flags ask for, if any; an error message naming the flag when the URL is
    /// not a plain http URL.
    pub fn from_flags(url: Option<&str>, command: Option<&str>) -> Result<Option<Self>, String> {
        match (url, command) {
            (Some(url), _) => {
                let parsed = reqwest::Url::parse(url).map_err(|err| {
                    format!("--ready-url {url:?} is not a URL ({err}); write it as http://HOST:PORT/PATH")
                })?;
                if parsed.scheme() != "http" {
                    return Err(format!(
                        "--ready-url {url:?}: only http:// URLs are supported (a readiness \
                         endpoint on this machine or in this pod); use --ready-command with \
                         curl for anything else"
                    ));
                }
                Ok(Some(Self::Url(parsed)))
            }
            (None, Some(command)) => Ok(Some(Self::Command(command.to_owned()))),
            (None, None) => Ok(None),
        }
    }

    /// Runs the check once, within `timeout`: `Ok(())` when ready, else why not.
    async fn run(&self, client: &reqwest::Client, timeout: Duration) -> Result<(), String> {
        match self {
            Self::Url(url) => {
                let response = client
                    .get(url.clone())
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|err| format!("GET {url}: {err}"))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("GET {url} answered {status}"))
                }
            }
            Self::Command(command) => {
                let mut child = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|err| format!("cannot run sh -c {command:?}: {err}"))?;
                match tokio::time::timeout(timeout, child.wait()).await {
                    Ok(Ok(status)) if status.success() => Ok(()),
                    Ok(Ok(status)) => Err(format!("{command:?} exited with {status}")),
                    Ok(Err(err)) => Err(format!("waiting for {command:?}: {err}")),
                    Err(_) => Err(format!("{command:?} did not finish within {timeout:?}")),
                }
            }
        }
    }
}

/// Runs `check` every `period` until `cancel`, publishing each verdict on the returned channel
/// (which starts at `false`). Each run may take up to `period`; changes are logged.
pub fn spawn(check: Check, period: Duration, cancel: CancellationToken) -> watch::Receiver<bool> {
    let (ready, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let verdict = check.run(&client, period).await;
            let now_ready = verdict.is_ok();
            let was_ready = ready.send_replace(now_ready);
            match verdict {
                Ok(()) if !was_ready => tracing::info!("ready: competing in the election"),
                Err(why) if was_ready => {
                    tracing::warn!(reason = %printable(&why), "not ready any more")
                }
                Err(why) => tracing::debug!(reason = %printable(&why), "not ready"),
                Ok(()) => {}
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert!(matches!(
            Check::from_flags(Some("http://127.0.0.1:8080/ready"), None),
            Ok(Some(Check::Url(_)))
        ));
        let err = Check::from_flags(Some("https://x/ready"), None).unwrap_err();
        assert!(
            err.contains("--ready-url") && err.contains("http://"),
            "{err}"
        );
        let err = Check::from_flags(Some("localhost:8080"), None).unwrap_err();
        assert!(err.contains("--ready-url"), "{err}");
        assert!(matches!(
            Check::from_flags(None, Some("test -f /tmp/warm")),
            Ok(Some(Check::Command(_)))
        ));
        assert!(matches!(Check::from_flags(None, None), Ok(None)));
    }

    #[tokio::test]
    async fn a_command_decides_by_its_exit_status() {
        let client = reqwest::Client::new();
        let limit = Duration::from_secs(5);
        assert!(Check::Command("true".into())
            .run(&client, limit)
            .await
            .is_ok());
        let err = Check::Command("exit 3".into())
            .run(&client, limit)
            .await
            .unwrap_err();
        assert!(err.contains("exit status: 3"), "{err}");
        let err = Check::Command("sleep 5".into())
            .run(&client, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
    }
}
