//! The election record, in the JSON form client-go's `LeaderElectionRecord` uses.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a lock stores: who holds the leadership, for how long, and how often it changed hands.
///
/// The field names and encoding are client-go's (`holderIdentity`, `leaseDurationSeconds`,
/// `acquireTime`, `renewTime`, `leaderTransitions`, `strategy`, `preferredHolder`), so a record
/// a Go elector wrote into an annotation parses here and a record written here parses there.
/// Times are RFC 3339 in UTC, at whole seconds as Kubernetes' `metav1.Time` writes them, or with
/// microseconds (as `metav1.MicroTime` writes them) when the time has a fraction of a second:
/// this crate's elector puts a random fraction into `acquireTime` when it starts a term, so
/// that it can tell its own write from one by another process that uses the same identity.
/// Optional fields are omitted when empty.
///
/// An empty [`holder_identity`](Self::holder_identity) means the lock is free.
///
/// ```
/// use lock_core::LeaderElectionRecord;
///
/// let json = r#"{"holderIdentity":"a","leaseDurationSeconds":15,"leaderTransitions":3}"#;
/// let record: LeaderElectionRecord = serde_json::from_str(json).unwrap();
/// assert_eq!(record.holder_identity, "a");
/// assert!(!record.is_free());
/// assert_eq!(serde_json::to_string(&record).unwrap(), json);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct LeaderElectionRecord {
    /// Identity of the current holder; empty when nobody holds the lock.
    #[serde(default, deserialize_with = "null_as_default")]
    pub holder_identity: String,
    /// How long, in seconds, other candidates must wait after observing a change of this record
    /// before they may consider the lease expired.
    #[serde(default, deserialize_with = "null_as_default")]
    pub lease_duration_seconds: i32,
    /// When the current holder acquired the lock (informational: never used to judge expiry).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_seconds"
    )]
    pub acquire_time: Option<DateTime<Utc>>,
    /// When the current holder last renewed (informational: never used to judge expiry, because
    /// the writer's wall clock is not ours).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_seconds"
    )]
    pub renew_time: Option<DateTime<Utc>>,
    /// How many times the lock changed hands; this crate's elector bumps it on every new term,
    /// which makes it the fencing token.
    #[serde(default, deserialize_with = "null_as_default")]
    pub leader_transitions: i32,
    /// Coordinated leader election strategy (Kubernetes `CoordinatedLeaseStrategy`), when set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub strategy: Option<String>,
    /// The identity that a coordinated election would prefer as holder, when set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub preferred_holder: Option<String>,
}

impl LeaderElectionRecord {
    /// True when nobody holds the lock (the holder identity is empty).
    pub fn is_free(&self) -> bool {
        self.holder_identity.is_empty()
    }

    /// The holder's identity, or `None` when the lock is free.
    pub fn holder(&self) -> Option<&str> {
        (!self.is_free()).then_some(self.holder_identity.as_str())
    }

    /// The lease the holder claimed, as a duration (negative values count as zero).
    pub fn lease_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::try_from(self.lease_duration_seconds).unwrap_or(0))
    }

    /// Parses a record from the JSON that client-go writes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Serializes the record to client-go's JSON form.
    pub fn to_json(&self) -> String {
        // A struct of strings, integers and times always serializes.
        serde_json::to_string(self).expect("a LeaderElectionRecord always serializes")
    }
}

impl Serialize for LeaderElectionRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The derived (remote = "Self") implementation.
        LeaderElectionRecord::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for LeaderElectionRecord {
    /// Accepts only a JSON object, as Go's `encoding/json` does: serde's derived form would also
    /// take an array of the fields in order, and `[]` would then pass for a free record.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        LeaderElectionRecord::deserialize(serde_json::Value::Object(object))
            .map_err(serde::de::Error::custom)
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn empty_as_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|text| !text.is_empty()))
}

/// `metav1.Time`'s JSON form: RFC 3339, UTC, whole seconds; `null` for the zero time. A time with
/// a fraction of a second is written with microseconds (`metav1.MicroTime`'s form), which Go's
/// `time.Parse(time.RFC3339, …)` reads as well.
mod rfc3339_seconds {
    use super::*;

    pub fn serialize<S: Serializer>(
        time: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => {
                let format = if time.timestamp_subsec_nanos() == 0 {
                    SecondsFormat::Secs
                } else {
                    SecondsFormat::Micros
                };
                serializer.serialize_str(&time.to_rfc3339_opts(format, true))
            }
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if text.is_empty() {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(&text)
            .map(|time| Some(time.with_timezone(&Utc)))
            .map_err(|err| {
                serde::de::Error::custom(format!("invalid RFC 3339 time {text:?}: {err}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Written by a real client-go elector into an Endpoints annotation.
    const CLIENT_GO_ANNOTATION: &str = r#"{"holderIdentity":"elasticsearch-operator-cb4bbc85f-wnjx4","leaseDurationSeconds":15,"acquireTime":"2022-12-19T08:22:42Z","renewTime":"2023-01-31T11:53:01Z","leaderTransitions":0}"#;

    #[test]
    fn client_go_annotation_round_trips_to_equal_json() {
        let record = LeaderElectionRecord::from_json(CLIENT_GO_ANNOTATION.as_bytes()).unwrap();
        assert_eq!(
            record.holder_identity,
            "elasticsearch-operator-cb4bbc85f-wnjx4"
        );
        assert_eq!(record.lease_duration_seconds, 15);
        assert_eq!(
            record.acquire_time,
            Some(Utc.with_ymd_and_hms(2022, 12, 19, 8, 22, 42).unwrap())
        );
        assert_eq!(
            record.renew_time,
            Some(Utc.with_ymd_and_hms(2023, 1, 31, 11, 53, 1).unwrap())
        );
        assert_eq!(record.leader_transitions, 0);
        let again = record.to_json();
        assert_eq!(again, CLIENT_GO_ANNOTATION);
        let a: serde_json::Value = serde_json::from_str(&again).unwrap();
        let b: serde_json::Value = serde_json::from_str(CLIENT_GO_ANNOTATION).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn every_field_round_trips() {
        let record = LeaderElectionRecord {
            holder_identity: "b".into(),
            lease_duration_seconds: 7,
            acquire_time: Some(Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap()),
            renew_time: Some(Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 1).unwrap()),
            leader_transitions: 42,
            strategy: Some("OldestEmulationVersion".into()),
            preferred_holder: Some("c".into()),
        };
        let json = record.to_json();
        assert_eq!(
            json,
            r#"{"holderIdentity":"b","leaseDurationSeconds":7,"acquireTime":"2024-02-29T23:59:59Z","renewTime":"2024-03-01T00:00:01Z","leaderTransitions":42,"strategy":"OldestEmulationVersion","preferredHolder":"c"}"#
        );
        assert_eq!(
            LeaderElectionRecord::from_json(json.as_bytes()).unwrap(),
            record
        );
    }

    #[test]
    fn go_zero_values_parse() {
        // A released record as client-go writes it, and Go's zero time as null.
        let json = r#"{"holderIdentity":"","leaseDurationSeconds":1,"acquireTime":null,"renewTime":"2023-01-31T11:53:01.123456Z","leaderTransitions":5,"strategy":"","preferredHolder":""}"#;
        let record = LeaderElectionRecord::from_json(json.as_bytes()).unwrap();
        assert!(record.is_free());
        assert_eq!(record.holder(), None);
        assert_eq!(record.acquire_time, None);
        assert_eq!(record.leader_transitions, 5);
        assert_eq!(record.strategy, None);
        assert_eq!(record.preferred_holder, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_default() {
        assert!(LeaderElectionRecord::from_json(b"hello").is_err());
        assert!(LeaderElectionRecord::from_json(b"[1,2]").is_err());
        assert!(LeaderElectionRecord::from_json(b"[]").is_err());
        assert!(LeaderElectionRecord::from_json(br#"["a",15]"#).is_err());
        assert!(LeaderElectionRecord::from_json(b"null").is_err());
        assert!(LeaderElectionRecord::from_json(br#"{"renewTime":"yesterday"}"#).is_err());
        assert!(LeaderElectionRecord::from_json(br#"{"leaseDurationSeconds":"15"}"#).is_err());
    }
}
