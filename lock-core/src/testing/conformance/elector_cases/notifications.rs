//! The events a leader and a follower see, in order, and the state channel agreeing with them.

use std::sync::Arc;

use crate::{ElectionEvent, Leadership, RunOutcome, StopReason};

use super::TAKE_LIMIT;
use crate::testing::conformance::{releasing_config, Backend, Candidate};

/// The event, in a form that compares: the term's fencing token instead of the term.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    NewLeader(Option<String>),
    Started(u64),
    Stopped(u64, StopReason),
    Released(u64),
    HandedBack(u64),
}

fn seen(events: &[ElectionEvent]) -> Vec<Seen> {
    events
        .iter()
        .map(|event| match event {
            ElectionEvent::NewLeader(leader) => Seen::NewLeader(leader.clone()),
            ElectionEvent::StartedLeading(term) => Seen::Started(term.fencing_token()),
            ElectionEvent::StoppedLeading {
                fencing_token,
                reason,
            } => Seen::Stopped(*fencing_token, reason.clone()),
            ElectionEvent::Released { fencing_token } => Seen::Released(*fencing_token),
            ElectionEvent::HandedBack { fencing_token } => Seen::HandedBack(*fencing_token),
        })
        .collect()
}

fn leader(identity: &str) -> Seen {
    Seen::NewLeader(Some(identity.to_owned()))
}

/// Reads events until `StartedLeading`, returning all of them and the term.
async fn events_until_started(candidate: &mut Candidate) -> (Vec<ElectionEvent>, Leadership) {
    let mut events = Vec::new();
    loop {
        let event = candidate.next_event(TAKE_LIMIT, "StartedLeading").await;
        let started = match &event {
            ElectionEvent::StartedLeading(term) => Some(term.clone()),
            _ => None,
        };
        events.push(event);
        if let Some(term) = started {
            return (events, term);
        }
    }
}

/// Checks that the state channel says `candidate` leads in `term`, under `leader`.
fn assert_state(candidate: &Candidate, term: Option<&Leadership>, leader: Option<&str>) {
    let state = candidate.handle().state();
    let state = state.borrow();
    assert_eq!(
        state.leadership.as_ref(),
        term,
        "{}: the state channel's leadership agrees with the events",
        candidate.identity()
    );
    assert_eq!(
        state.leader.as_deref(),
        leader,
        "{}: the state channel's leader agrees with the events",
        candidate.identity()
    );
}

/// Case 13: A leader sees NewLeader(itself), StartedLeading, StoppedLeading(Cancelled), Released; a
/// follower sees NewLeader(the leader) first and StartedLeading after it takes over; the state
/// channel agrees all along.
pub async fn notifications_arrive_in_order(backend: Arc<dyn Backend>, name: &str) {
    let mut first = Candidate::start(backend.lock(name).await, releasing_config("first"), None);
    let (events, first_term) = events_until_started(&mut first).await;
    let token = first_term.fencing_token();
    assert_eq!(seen(&events), [leader("first"), Seen::Started(token)]);
    assert_state(&first, Some(&first_term), Some("first"));

    let mut second = Candidate::start(backend.lock(name).await, releasing_config("second"), None);
    let event = second.next_event(TAKE_LIMIT, "NewLeader(first)").await;
    assert_eq!(
        seen(&[event]),
        [leader("first")],
        "a follower first learns who leads"
    );
    assert_state(&second, None, Some("first"));

    assert_eq!(first.stop().await, RunOutcome::Cancelled { released: true });
    assert_eq!(
        seen(&first.pending_events()),
        [
            Seen::Stopped(token, StopReason::Cancelled),
            Seen::Released(token),
        ],
        "the leader's events after it was cancelled"
    );
    assert_state(&first, None, None);
    assert!(!first_term.is_leader());

    let (events, second_term) = events_until_started(&mut second).await;
    let second_token = second_term.fencing_token();
    assert!(second_token > token);
    assert_eq!(
        seen(&events),
        [
            Seen::NewLeader(None),
            leader("second"),
            Seen::Started(second_token)
        ],
        "the follower's events as it takes over the released lock"
    );
    assert_state(&second, Some(&second_term), Some("second"));
    assert!(second.handle().is_leader());

    assert_eq!(
        second.stop().await,
        RunOutcome::Cancelled { released: true }
    );
    assert_eq!(
        seen(&second.pending_events()),
        [
            Seen::Stopped(second_token, StopReason::Cancelled),
            Seen::Released(second_token),
        ]
    );
    assert_state(&second, None, None);
}
