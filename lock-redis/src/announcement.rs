//! The announcement the script publishes on every write, read into a hint: the wire format of
//! change hints, shared by the hub (which decodes) and the script (which encodes).

use lock_core::backend::{Hint, Versioned};
use lock_core::LeaderElectionRecord;
use redis::Msg;
use serde::Deserialize;

/// What the script publishes on every write.
#[derive(Deserialize)]
struct Announcement {
    version: String,
    record: LeaderElectionRecord,
}

/// The hint a published message gives: the record it carries, or just "changed" when it
/// cannot be read (hints are never trusted for more than waking the elector up).
pub(crate) fn hint(message: &Msg) -> Hint {
    let announcement = serde_json::from_slice::<Announcement>(message.get_payload_bytes())
        .map_err(|err| err.to_string())
        .and_then(|announcement| {
            let counter = crate::counter::parse(&announcement.version)?;
            Ok(Versioned {
                record: announcement.record,
                version: crate::counter::version(counter),
            })
        });
    match announcement {
        Ok(versioned) => Hint::Record(versioned),
        Err(err) => {
            tracing::debug!(channel = %message.get_channel_name(), error = %err, "unreadable change announcement");
            Hint::Changed
        }
    }
}
