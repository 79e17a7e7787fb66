//! Electors on the backend, in real time: leading, handing over, failing, notifying, waiting.
//!
//! Every case takes the backend and an election name no other case uses, gives each candidate
//! a lock handle of its own (as separate processes would have) and uses a 4 s
//! [lease](super::LEASE), a 3 s [renew deadline](super::RENEW_DEADLINE) and a 2 s
//! [retry period](super::RETRY_PERIOD). Every wait is bounded, and every candidate is stopped
//! before the case returns.

mod faults;
mod handover;
mod hints;
mod leading;
mod notifications;

use std::time::Duration;

pub use faults::unavailable_backend_makes_the_leader_step_down_first;
pub use handover::{
    fencing_tokens_increase_over_handovers, graceful_release_hands_over_within_a_second,
    killed_leader_is_replaced_after_the_lease,
};
pub use hints::idle_standby_waits_on_hints;
pub use leading::{single_candidate_leads, three_candidates_never_lead_together};
pub use notifications::notifications_arrive_in_order;

/// How long a free lock may take to be taken by a candidate that stands by.
const TAKE_LIMIT: Duration = Duration::from_secs(5);
