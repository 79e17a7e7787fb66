//! Prometheus metrics of one instance, in the text format of `GET /metrics`: client-go's
//! `leader_election_master_status` gauge and `leader_election_slowpath_total` counter, and
//! counters and a histogram for holder changes, renew latency and renew failures. Every metric
//! carries the label `name`: the election's name (`--lock-name`, or the lock file's path).

use lock_core::{ElectionEvent, RenewOutcome, RenewReport};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The metrics of one elector, updated by its event and renew callbacks.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    master_status: Gauge,
    transitions: Counter,
    renew_duration: Histogram,
    renew_failures: Counter,
    slowpath: Counter,
}

impl Metrics {
    /// Fresh metrics for the election named `lock`, all zero.
    pub fn new(lock: &str) -> Self {
        let mut registry = Registry::default();
        let sub = registry.sub_registry_with_label(("name".into(), lock.to_owned().into()));
        let master_status = Gauge::default();
        sub.register(
            "leader_election_master_status",
            "1 while this instance leads (a term that is valid by the clock), 0 otherwise",
            master_status.clone(),
        );
        let transitions = Counter::default();
        sub.register(
            "leader_election_transitions",
            "Changes of the lock's holder this instance observed, the first holder it saw included",
            transitions.clone(),
        );
        // 1 ms to about 16 s: a renew must answer within the renew deadline.
        let renew_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        sub.register(
            "leader_election_renew_duration_seconds",
            "Time each renew attempt of this instance took while leading, on either path",
            renew_duration.clone(),
        );
        let renew_failures = Counter::default();
        sub.register(
            "leader_election_renew_failures",
            "Renew attempts of this instance that failed (retried until the renew deadline)",
            renew_failures.clone(),
        );
        let slowpath = Counter::default();
        sub.register(
            "leader_election_slowpath",
            "Renewals that needed a read after a conflict (client-go's slow path)",
            slowpath.clone(),
        );
        Self {
            registry,
            master_status,
            transitions,
            renew_duration,
            renew_failures,
            slowpath,
        }
    }

    /// Notes an election event: a term started or stopped, or the holder changed.
    pub fn observe_event(&self, event: &ElectionEvent) {
        match event {
            ElectionEvent::NewLeader(Some(_)) => {
                self.transitions.inc();
            }
            ElectionEvent::StartedLeading(_) => {
                self.master_status.set(1);
            }
            ElectionEvent::StoppedLeading { .. } => {
                self.master_status.set(0);
            }
            ElectionEvent::NewLeader(None)
            | ElectionEvent::Released { .. }
            | ElectionEvent::HandedBack { .. } => {}
        }
    }

    /// Notes one renew attempt.
    pub fn observe_renew(&self, report: &RenewReport) {
        self.renew_duration.observe(report.latency.as_secs_f64());
        match &report.outcome {
            RenewOutcome::Renewed { slow_path: true } => {
                self.slowpath.inc();
            }
            RenewOutcome::Failed { .. } => {
                self.renew_failures.inc();
            }
            _ => {}
        }
    }

    /// The metrics in the text format, with the gauge set from `is_leader` (asked of the clock
    /// at the time of the scrape, so it is never stale).
    pub fn encode(&self, is_leader: bool) -> String {
        self.master_status.set(i64::from(is_leader));
        let mut text = String::new();
        // Writing into a String cannot fail.
        encode(&mut text, &self.registry).expect("metrics encode into a string");
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_metric_is_labelled_with_the_lock_and_counts() {
        let metrics = Metrics::new("file:/tmp/x.json");
        metrics.observe_event(&ElectionEvent::NewLeader(Some("a".into())));
        metrics.observe_event(&ElectionEvent::NewLeader(None));
        metrics.observe_event(&ElectionEvent::NewLeader(Some("b".into())));
        metrics.observe_renew(&RenewReport {
            fencing_token: 1,
            latency: Duration::from_millis(3),
            outcome: RenewOutcome::Renewed { slow_path: true },
        });
        metrics.observe_renew(&RenewReport {
            fencing_token: 1,
            latency: Duration::from_millis(30),
            outcome: RenewOutcome::Failed {
                error: "down".into(),
            },
        });
        let text = metrics.encode(true);
        for line in [
            r#"leader_election_master_status{name="file:/tmp/x.json"} 1"#,
            r#"leader_election_transitions_total{name="file:/tmp/x.json"} 2"#,
            r#"leader_election_slowpath_total{name="file:/tmp/x.json"} 1"#,
            r#"leader_election_renew_failures_total{name="file:/tmp/x.json"} 1"#,
            r#"leader_election_renew_duration_seconds_count{name="file:/tmp/x.json"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains(
            r#"leader_election_renew_duration_seconds_sum{name="file:/tmp/x.json"} 0.033"#
        ));
        assert!(metrics
            .encode(false)
            .contains(r#"master_status{name="file:/tmp/x.json"} 0"#));
    }
}
