//! How each kind of object holds the record: a Lease in its spec (as client-go's `LeaseLock`),
//! a ConfigMap or an Endpoints object in an annotation (as client-go's legacy locks).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use lock_core::backend::{Hint, Version, Versioned};
use lock_core::LeaderElectionRecord;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::LockKind;

/// The annotation in which client-go's ConfigMap and Endpoints locks keep the record as JSON.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Where a Lease keeps the record's preferred holder (a planned handover's request) besides
/// its spec. The API server drops the spec's `strategy` and `preferredHolder` unless its
/// CoordinatedLeaderElection feature gate is on, which it is not by default; a handover must
/// work on every cluster. The spec wins whenever it kept a strategy (the gate is on): then a
/// coordinator that clears the spec's preferred holder is not overruled by this annotation.
pub const PREFERRED_HOLDER_ANNOTATION: &str = "leader-election.rs/preferred-holder";

mod sealed {
    pub trait Sealed {}
    impl Sealed for k8s_openapi::api::coordination::v1::Lease {}
    impl Sealed for k8s_openapi::api::core::v1::ConfigMap {}
    impl Sealed for k8s_openapi::api::core::v1::Endpoints {}
}

/// A kind of Kubernetes object that can hold an election record: implemented for
/// [`Lease`], [`ConfigMap`] and [`Endpoints`] only.
pub trait LockObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// Which kind this is.
    const KIND: LockKind;

    /// The record the object holds. `Ok(None)` when the object holds none (an annotation kind
    /// without the annotation, a Lease without a spec or without a holder): that is no record,
    /// not a free one, so an elector that saw a record there waits a lease before it takes the
    /// lock. `Err` says why what it holds is not a record.
    fn record(&self) -> Result<Option<LeaderElectionRecord>, String>;

    /// Puts `record` into the object, leaving everything else in it as it was.
    fn set_record(&mut self, record: &LeaderElectionRecord);

    /// A new object called `name` in `namespace` holding `record`.
    fn with_record(namespace: &str, name: &str, record: &LeaderElectionRecord) -> Self;
}

fn metadata(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectMeta::default()
    }
}

impl LockObject for Lease {
    const KIND: LockKind = LockKind::Lease;

    /// A Lease holds a record when its spec names a holder, even an empty one (a released
    /// record: client-go writes `holderIdentity` always). A Lease without a spec, or whose spec
    /// lost its holder (emptied by hand, `kubectl patch`), holds none: reading it as a free
    /// record would let a standby take it at once while its leader still leads.
    fn record(&self) -> Result<Option<LeaderElectionRecord>, String> {
        let annotated = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(PREFERRED_HOLDER_ANNOTATION))
            .filter(|preferred| !preferred.is_empty());
        Ok(self
            .spec
            .as_ref()
            .filter(|spec| spec.holder_identity.is_some())
            .map(|spec| {
                let mut record = lease_spec_to_record(spec);
                if record.strategy.is_none() {
                    record.preferred_holder = annotated.cloned();
                }
                record
            }))
    }

    fn set_record(&mut self, record: &LeaderElectionRecord) {
        self.spec = Some(record_to_lease_spec(record));
        set_preferred_holder(&mut self.metadata, record);
    }

    fn with_record(namespace: &str, name: &str, record: &LeaderElectionRecord) -> Self {
        let mut metadata = metadata(namespace, name);
        set_preferred_holder(&mut metadata, record);
        Lease {
            metadata,
            spec: Some(record_to_lease_spec(record)),
        }
    }
}

/// Writes the record's preferred holder into [`PREFERRED_HOLDER_ANNOTATION`], or removes the
/// annotation when there is none.
fn set_preferred_holder(metadata: &mut ObjectMeta, record: &LeaderElectionRecord) {
    match record.preferred_holder.as_deref().filter(|p| !p.is_empty()) {
        Some(preferred) => {
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(PREFERRED_HOLDER_ANNOTATION.to_owned(), preferred.to_owned());
        }
        None => {
            if let Some(annotations) = metadata.annotations.as_mut() {
                annotations.remove(PREFERRED_HOLDER_ANNOTATION);
            }
        }
    }
}

/// client-go's `LeaseSpecToLeaderElectionRecord`: absent fields read as zero values.
pub(crate) fn lease_spec_to_record(spec: &LeaseSpec) -> LeaderElectionRecord {
    LeaderElectionRecord {
        holder_identity: spec.holder_identity.clone().unwrap_or_default(),
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or_default(),
        acquire_time: spec.acquire_time.as_ref().and_then(from_micro_time),
        renew_time: spec.renew_time.as_ref().and_then(from_micro_time),
        leader_transitions: spec.lease_transitions.unwrap_or_default(),
        strategy: spec.strategy.clone().filter(|text| !text.is_empty()),
        preferred_holder: spec
            .preferred_holder
            .clone()
            .filter(|text| !text.is_empty()),
    }
}

/// client-go's `LeaderElectionRecordToLeaseSpec`: holder, duration and transitions always
/// written, times when set, strategy and preferred holder only when not empty.
pub(crate) fn record_to_lease_spec(record: &LeaderElectionRecord) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(record.holder_identity.clone()),
        lease_duration_seconds: Some(record.lease_duration_seconds),
        acquire_time: record.acquire_time.and_then(to_micro_time),
        renew_time: record.renew_time.and_then(to_micro_time),
        lease_transitions: Some(record.leader_transitions),
        strategy: record.strategy.clone().filter(|text| !text.is_empty()),
        preferred_holder: record
            .preferred_holder
            .clone()
            .filter(|text| !text.is_empty()),
    }
}

/// A time as a `MicroTime` (the API server keeps microseconds); `None` outside the range
/// both sides can represent.
fn to_micro_time(time: DateTime<Utc>) -> Option<MicroTime> {
    let nanos = i32::try_from(time.timestamp_subsec_nanos()).ok()?;
    Timestamp::new(time.timestamp(), nanos).ok().map(MicroTime)
}

fn from_micro_time(time: &MicroTime) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(time.0.subsec_nanosecond()).ok()?;
    DateTime::from_timestamp(time.0.as_second(), nanos)
}

/// The record in the leader annotation of `annotations`.
fn annotation_record(
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Option<LeaderElectionRecord>, String> {
    let Some(json) = annotations.and_then(|annotations| annotations.get(LEADER_ANNOTATION)) else {
        return Ok(None);
    };
    LeaderElectionRecord::from_json(json.as_bytes())
        .map(Some)
        .map_err(|err| {
            format!("the annotation {LEADER_ANNOTATION} is not a leader election record: {err}")
        })
}

fn set_annotation(metadata: &mut ObjectMeta, record: &LeaderElectionRecord) {
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(LEADER_ANNOTATION.to_owned(), record.to_json());
}

fn annotated(namespace: &str, name: &str, record: &LeaderElectionRecord) -> ObjectMeta {
    let mut metadata = metadata(namespace, name);
    set_annotation(&mut metadata, record);
    metadata
}

impl LockObject for ConfigMap {
    const KIND: LockKind = LockKind::ConfigMap;

    fn record(&self) -> Result<Option<LeaderElectionRecord>, String> {
        annotation_record(self.metadata.annotations.as_ref())
    }

    fn set_record(&mut self, record: &LeaderElectionRecord) {
        set_annotation(&mut self.metadata, record);
    }

    fn with_record(namespace: &str, name: &str, record: &LeaderElectionRecord) -> Self {
        ConfigMap {
            metadata: annotated(namespace, name, record),
            ..ConfigMap::default()
        }
    }
}

impl LockObject for Endpoints {
    const KIND: LockKind = LockKind::Endpoints;

    fn record(&self) -> Result<Option<LeaderElectionRecord>, String> {
        annotation_record(self.metadata.annotations.as_ref())
    }

    fn set_record(&mut self, record: &LeaderElectionRecord) {
        set_annotation(&mut self.metadata, record);
    }

    fn with_record(namespace: &str, name: &str, record: &LeaderElectionRecord) -> Self {
        Endpoints {
            metadata: annotated(namespace, name, record),
            ..Endpoints::default()
        }
    }
}

/// An object's `resourceVersion` as a version.
pub(crate) fn version_of<K: Resource>(object: &K) -> Option<Version> {
    object
        .meta()
        .resource_version
        .as_deref()
        .filter(|token| !token.is_empty())
        .map(Version::new)
}

/// The hint a watch event carrying `object` gives: its record at its version, or just
/// "changed" when it holds none (or one that does not parse).
pub(crate) fn hint_of<K: LockObject>(object: &K) -> Hint {
    match (object.record(), version_of(object)) {
        (Ok(Some(record)), Some(version)) => Hint::Record(Versioned { record, version }),
        _ => Hint::Changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lease_spec_maps_like_client_go() {
        let record = LeaderElectionRecord {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()),
            renew_time: Some(Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap()),
            leader_transitions: 3,
            strategy: None,
            preferred_holder: None,
        };
        let spec = record_to_lease_spec(&record);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "acquireTime": "2024-01-02T03:04:05.000000Z",
                "renewTime": "2023-11-14T22:13:20.123456Z",
                "leaseTransitions": 3,
            })
        );
        assert_eq!(lease_spec_to_record(&spec), record);
    }

    #[test]
    fn a_lease_keeps_the_preferred_holder_in_an_annotation_where_the_spec_loses_it() {
        let record = LeaderElectionRecord {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            strategy: Some("example.com/handover".into()),
            preferred_holder: Some("b".into()),
            ..LeaderElectionRecord::default()
        };
        let mut lease = Lease::with_record("ns", "l", &record);
        assert_eq!(lease.record().unwrap().as_ref(), Some(&record));
        // A server without the CoordinatedLeaderElection gate drops both spec fields.
        let spec = lease.spec.as_mut().unwrap();
        spec.strategy = None;
        spec.preferred_holder = None;
        let read = lease.record().unwrap().unwrap();
        assert_eq!(read.preferred_holder.as_deref(), Some("b"));
        // With the gate on, a coordinator that keeps the strategy and clears the preferred
        // holder is believed over the annotation.
        let spec = lease.spec.as_mut().unwrap();
        spec.strategy = Some("OldestEmulationVersion".into());
        assert_eq!(lease.record().unwrap().unwrap().preferred_holder, None);
        // A record without a preferred holder removes the annotation.
        lease.set_record(&LeaderElectionRecord {
            preferred_holder: None,
            strategy: None,
            ..record
        });
        let annotations = lease.metadata.annotations.unwrap_or_default();
        assert!(!annotations.contains_key(PREFERRED_HOLDER_ANNOTATION));
    }

    #[test]
    fn odd_lease_values_do_not_panic() {
        let spec: LeaseSpec = serde_json::from_value(serde_json::json!({
            "leaseDurationSeconds": -5,
            "leaseTransitions": i32::MAX,
            "strategy": "",
            "acquireTime": "0001-01-01T00:00:00.000000Z",
            "renewTime": "9999-01-01T00:00:00.999999Z",
        }))
        .unwrap();
        let record = lease_spec_to_record(&spec);
        assert!(record.is_free());
        assert_eq!(record.lease_duration(), std::time::Duration::ZERO);
        assert_eq!(record.strategy, None);
        let empty = lease_spec_to_record(&LeaseSpec::default());
        assert_eq!(empty, LeaderElectionRecord::default());
    }

    /// Hole 1 (issue 11): a Lease without a spec or a holder is no record (an elector that saw
    /// one waits a lease), while a released record (an empty holder) is still a record.
    #[test]
    fn hole1_a_lease_without_spec_or_holder_holds_no_record() {
        let mut lease = Lease::default();
        assert_eq!(lease.record().unwrap(), None, "no spec");
        lease.spec = Some(LeaseSpec::default());
        assert_eq!(lease.record().unwrap(), None, "an empty spec");
        lease.spec = Some(LeaseSpec {
            lease_transitions: Some(4),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        });
        assert_eq!(lease.record().unwrap(), None, "a spec without a holder");
        let released = LeaderElectionRecord {
            lease_duration_seconds: 1,
            leader_transitions: 4,
            ..LeaderElectionRecord::default()
        };
        lease.set_record(&released);
        assert_eq!(lease.record().unwrap(), Some(released), "a released record");
    }

    /// Issue 11: the elector tells its own write from a twin's by acquireTime's microseconds,
    /// so a Lease's MicroTime keeps them both ways.
    #[test]
    fn acquire_time_microseconds_survive_the_lease_both_ways() {
        let record = LeaderElectionRecord {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap()),
            renew_time: Some(Utc.timestamp_opt(1_700_000_001, 1_000).unwrap()),
            ..LeaderElectionRecord::default()
        };
        let json = serde_json::to_value(record_to_lease_spec(&record)).unwrap();
        assert_eq!(json["acquireTime"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(json["renewTime"], "2023-11-14T22:13:21.000001Z");
        let spec: LeaseSpec = serde_json::from_value(json).unwrap();
        assert_eq!(lease_spec_to_record(&spec), record);
    }

    #[test]
    fn annotation_kinds_leave_the_rest_alone() {
        let mut map = ConfigMap::with_record("ns", "x", &LeaderElectionRecord::default());
        map.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("other".into(), "kept".into());
        map.data = Some([("k".to_owned(), "v".to_owned())].into());
        let record = LeaderElectionRecord {
            holder_identity: "b".into(),
            ..LeaderElectionRecord::default()
        };
        map.set_record(&record);
        assert_eq!(map.record().unwrap(), Some(record));
        assert_eq!(map.metadata.annotations.as_ref().unwrap()["other"], "kept");
        assert_eq!(map.data.as_ref().unwrap()["k"], "v");

        let mut bad = Endpoints::default();
        bad.metadata.annotations = Some([(LEADER_ANNOTATION.to_owned(), "{".to_owned())].into());
        assert!(bad.record().is_err());
        assert_eq!(Endpoints::default().record().unwrap(), None);
    }
}
