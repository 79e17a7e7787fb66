//! Samples `is_leader()` of several candidates to catch two leaders at the same time.

use std::time::Duration;

use crate::ElectorHandle;
use tokio::time::Instant;

/// What sampling the candidates' `is_leader()` found.
#[derive(Clone, Debug, Default)]
pub struct LeaderSamples {
    /// How many rounds were taken (each round reads every handle once).
    pub rounds: usize,
    /// Rounds that proved two candidates led at the same instant (see [`sample_leaders`]).
    pub overlaps: Vec<String>,
    /// For each round, the identities that led, in round order.
    pub leaders: Vec<Vec<String>>,
}

impl LeaderSamples {
    /// The rounds after the first one in which somebody led.
    pub fn after_first_leader(&self) -> &[Vec<String>] {
        let first = self
            .leaders
            .iter()
            .position(|round| !round.is_empty())
            .unwrap_or(self.leaders.len());
        &self.leaders[first..]
    }
}

/// One round: for each handle, the fencing token of its term if it leads right now.
fn round(handles: &[ElectorHandle]) -> Vec<Option<u64>> {
    handles
        .iter()
        .map(|handle| {
            handle
                .leadership()
                .filter(|term| term.is_leader())
                .map(|term| term.fencing_token())
        })
        .collect()
}

/// Reads `is_leader()` of every handle every `every` for `duration`.
///
/// The handles are read one after the other, so one round alone cannot prove an overlap (a
/// handover may fall between two reads). Two rounds can: a term that leads in two rounds led
/// all the time in between, so two candidates that both lead, with the same term, in two
/// consecutive rounds were leaders at the same instant. That is what `overlaps` reports.
pub async fn sample_leaders(
    handles: &[ElectorHandle],
    duration: Duration,
    every: Duration,
) -> LeaderSamples {
    let end = Instant::now() + duration;
    let mut samples = LeaderSamples::default();
    let mut previous = round(handles);
    while Instant::now() < end {
        tokio::time::sleep(every).await;
        let current = round(handles);
        let both: Vec<String> = handles
            .iter()
            .zip(previous.iter().zip(&current))
            .filter(|(_, (before, now))| before.is_some() && before == now)
            .map(|(handle, (_, now))| format!("{} (token {})", handle.identity(), now.unwrap_or(0)))
            .collect();
        if both.len() > 1 {
            samples
                .overlaps
                .push(format!("round {}: {}", samples.rounds, both.join(" and ")));
        }
        samples.leaders.push(
            handles
                .iter()
                .zip(&current)
                .filter(|(_, token)| token.is_some())
                .map(|(handle, _)| handle.identity().to_owned())
                .collect(),
        );
        samples.rounds += 1;
        previous = current;
    }
    samples
}
