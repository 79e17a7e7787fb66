//! One time-ordered feed of what every candidate did, whatever runs it: an elector in this
//! process, a child process of ours or client-go's elector in Go.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{BenchError, BenchResult};

/// What a candidate did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum What {
    /// Its term started.
    Leading,
    /// Its term ended because it was asked to stop (or its process was killed).
    Lost,
    /// Its term ended for any other reason: it could not renew in time, or someone else took
    /// the lock. Never expected in a benchmark.
    LostLease {
        /// Why, as the elector said.
        reason: String,
    },
    /// As leader, it renewed the lease; stamped when the successful write was sent.
    Renewed,
    /// It observed this holder (`None`: the lock is free).
    NewLeader {
        /// The holder it observed.
        leader: Option<String>,
    },
    /// It made one lock call (counted by client-go's reporting lock).
    Call {
        /// `get`, `create` or `update`.
        op: String,
    },
}

/// One thing one candidate did, and when (wall clock, nanoseconds since 1970).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The election it is about.
    pub election: String,
    /// The candidate.
    pub identity: String,
    /// What it did.
    #[serde(flatten)]
    pub what: What,
    /// When.
    pub at: i128,
}

/// Where candidates send their stamps.
pub type Sender = mpsc::UnboundedSender<Stamp>;

/// Every stamp so far, in arrival order.
pub struct Feed {
    receiver: mpsc::UnboundedReceiver<Stamp>,
    history: Vec<Stamp>,
}

/// A position in a feed's history: waits look at stamps from there on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark(usize);

impl Mark {
    /// The beginning of the feed.
    pub const START: Mark = Mark(0);
}

/// A new feed and the sender its candidates use.
pub fn feed() -> (Sender, Feed) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let feed = Feed {
        receiver,
        history: Vec::new(),
    };
    (sender, feed)
}

impl Feed {
    /// The position after everything that has arrived so far.
    pub fn mark(&mut self) -> Mark {
        self.catch_up();
        Mark(self.history.len())
    }

    /// The first stamp at or after `from` that `matches`, waiting up to `within` for it.
    /// `what` names it in the timeout error.
    pub async fn wait(
        &mut self,
        from: Mark,
        within: Duration,
        what: &str,
        matches: impl Fn(&Stamp) -> bool,
    ) -> BenchResult<Stamp> {
        let deadline = Instant::now() + within;
        let mut next = from.0;
        loop {
            if let Some(offset) = self.history[next.min(self.history.len())..]
                .iter()
                .position(&matches)
            {
                return Ok(self.history[next + offset].clone());
            }
            next = self.history.len();
            match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                Ok(Some(stamp)) => self.history.push(stamp),
                Ok(None) => {
                    return Err(BenchError::Timeout(format!(
                        "{what}: every candidate is gone"
                    )))
                }
                Err(_) => return Err(BenchError::Timeout(format!("no {what} within {within:?}"))),
            }
        }
    }

    /// The stamps from `from` on that `matches` (after taking in what has arrived).
    pub fn since(&mut self, from: Mark, matches: impl Fn(&Stamp) -> bool) -> Vec<Stamp> {
        self.catch_up();
        self.history[from.0.min(self.history.len())..]
            .iter()
            .filter(|stamp| matches(stamp))
            .cloned()
            .collect()
    }

    /// The stamps that arrived since `cursor`, which moves past them.
    pub fn advance(&mut self, cursor: &mut Mark) -> Vec<Stamp> {
        self.catch_up();
        let new = self.history[cursor.0.min(self.history.len())..].to_vec();
        cursor.0 = self.history.len();
        new
    }

    /// Takes in what has arrived so far without waiting.
    pub fn catch_up(&mut self) {
        while let Ok(stamp) = self.receiver.try_recv() {
            self.history.push(stamp);
        }
    }

    /// Checks the run: no two terms of one election overlapped (every `Leading` of a candidate
    /// comes after the end of the term before it, on the wall clock; terms still running count
    /// as lasting forever), no lease was lost, and exactly `expected_terms` terms started.
    pub fn check(&mut self, expected_terms: usize) -> BenchResult<()> {
        self.catch_up();
        if let Some(lost) = self
            .history
            .iter()
            .find(|stamp| matches!(stamp.what, What::LostLease { .. }))
        {
            return Err(BenchError::Safety(format!(
                "{} lost its lease in election {}: {:?}",
                lost.identity, lost.election, lost.what
            )));
        }
        let mut terms: Vec<(&str, &str, i128, i128)> = Vec::new();
        for (index, stamp) in self.history.iter().enumerate() {
            if stamp.what != What::Leading {
                continue;
            }
            let end = self.history[index + 1..]
                .iter()
                .find(|later| {
                    later.what == What::Lost
                        && later.identity == stamp.identity
                        && later.election == stamp.election
                })
                .map_or(i128::MAX, |lost| lost.at);
            terms.push((&stamp.election, &stamp.identity, stamp.at, end));
        }
        terms.sort_by_key(|term| (term.0, term.2));
        for pair in terms.windows(2) {
            let (first, second) = (pair[0], pair[1]);
            if first.0 == second.0 && second.2 < first.3 {
                return Err(BenchError::Safety(format!(
                    "election {}: {} started leading while {} still led",
                    first.0, second.1, first.1
                )));
            }
        }
        if terms.len() != expected_terms {
            let started: Vec<String> = terms
                .iter()
                .map(|(election, identity, start, _)| format!("{identity}@{election}@{start}"))
                .collect();
            return Err(BenchError::Safety(format!(
                "{} terms started, expected {expected_terms}: {}",
                terms.len(),
                started.join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(identity: &str, what: What, at: i128) -> Stamp {
        Stamp {
            election: "e".to_owned(),
            identity: identity.to_owned(),
            what,
            at,
        }
    }

    #[tokio::test]
    async fn wait_finds_later_stamps_and_keeps_history() {
        let (sender, mut feed) = feed();
        sender.send(stamp("a", What::Renewed, 1)).unwrap();
        sender.send(stamp("b", What::Leading, 2)).unwrap();
        let start = Mark(0);
        let found = feed
            .wait(start, Duration::from_secs(1), "leading", |s| {
                s.what == What::Leading
            })
            .await
            .unwrap();
        assert_eq!(found.identity, "b");
        // Earlier stamps stay visible to later waits from the same mark.
        let renewed = feed
            .wait(start, Duration::from_secs(1), "renew", |s| {
                s.what == What::Renewed
            })
            .await
            .unwrap();
        assert_eq!(renewed.identity, "a");
        let later = feed.mark();
        let missing = feed
            .wait(later, Duration::from_millis(10), "renew", |s| {
                s.what == What::Renewed
            })
            .await;
        assert!(matches!(missing, Err(BenchError::Timeout(_))));
        assert_eq!(feed.since(start, |s| s.identity == "a").len(), 1);
    }

    #[tokio::test]
    async fn overlapping_terms_are_reported() {
        let (sender, mut feed) = feed();
        sender.send(stamp("a", What::Leading, 1)).unwrap();
        sender.send(stamp("a", What::Lost, 5)).unwrap();
        sender.send(stamp("b", What::Leading, 6)).unwrap();
        assert!(feed.check(2).is_ok());
        assert!(matches!(feed.check(3), Err(BenchError::Safety(_))));
        sender.send(stamp("c", What::Leading, 7)).unwrap();
        assert!(matches!(feed.check(3), Err(BenchError::Safety(_))));
    }

    #[tokio::test]
    async fn a_lost_lease_voids_the_run() {
        let (sender, mut feed) = feed();
        sender.send(stamp("a", What::Leading, 1)).unwrap();
        let lost = What::LostLease {
            reason: "RenewDeadlineExceeded".to_owned(),
        };
        sender.send(stamp("a", lost, 5)).unwrap();
        assert!(matches!(feed.check(1), Err(BenchError::Safety(_))));
    }

    #[test]
    fn stamps_read_the_json_lines_children_print() {
        let line = r#"{"election":"e","identity":"go-1","event":"call","op":"update","at":7}"#;
        let parsed: Stamp = serde_json::from_str(line).unwrap();
        assert_eq!(
            parsed.what,
            What::Call {
                op: "update".to_owned()
            }
        );
    }
}
