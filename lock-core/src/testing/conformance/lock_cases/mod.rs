//! The lock contract: reads, creates, compare-and-swap updates and corrupt values.
//!
//! Every case takes the backend and an election name no other case uses.

mod corrupt;
mod races;
mod round_trip;
mod versions;

use crate::LeaderElectionRecord;
use chrono::{TimeZone, Utc};

pub use corrupt::corrupt_value_is_reported_and_left_untouched;
pub use races::{
    concurrent_creates_have_one_winner, concurrent_updates_of_one_version_have_one_winner,
};
pub use round_trip::{every_record_field_round_trips, get_on_fresh_name_is_none};
pub use versions::stale_version_is_rejected;

/// A record with every field set, times at whole seconds; `n` varies every field.
pub(super) fn full_record(n: u32) -> LeaderElectionRecord {
    let n = i32::try_from(n).expect("small numbers");
    LeaderElectionRecord {
        holder_identity: format!("holder-{n}"),
        lease_duration_seconds: 10 + n,
        acquire_time: Some(
            Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 0).unwrap()
                + chrono::Duration::seconds(n.into()),
        ),
        renew_time: Some(
            Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 1).unwrap()
                + chrono::Duration::seconds((2 * n).into()),
        ),
        leader_transitions: 5 + n,
        // Domain-prefixed, as Kubernetes requires of strategies it does not define itself.
        strategy: Some(format!("example.com/strategy-{n}")),
        preferred_holder: Some(format!("preferred-{n}")),
    }
}
