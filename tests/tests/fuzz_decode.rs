//! Every backend's decoding of stored bytes, fuzzed with proptest (issue 12): a lock file's
//! contents, a record's JSON as Redis and etcd store it, a ConfigMap's leader annotation, and a
//! Lease as the API server returns it. For each input:
//!
//! - nothing panics;
//! - what one backend accepts, every other accepts: a record decoded anywhere is written back
//!   as JSON that the shared decoder reads again, unchanged after the first pass;
//! - the backends that store the record's JSON agree with the shared decoder exactly: a lock
//!   file holding `{"version":N,"record":R}` and an annotation holding `R` are records exactly
//!   when `R` is one, and the same record.
//!
//! Inputs come from two kinds of generators: raw bytes, and JSON built from the record's own
//! field names with hostile values (out-of-range integers, floats, nulls, wrong types, leap
//! seconds, far years, duplicated keys), which reach deep into the decoders where random bytes
//! rarely do.
//!
//! `FUZZ_CASES=N` sets the executions per target (default: a quick run inside scripts/test);
//! `FUZZ_SEED=S` replays a run, whose seed is printed. The summary line reads
//! `fuzz: N executions over K targets, F failures`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use lock_core::{LeaderElectionRecord, Lock};
use lock_k8s::{LockObject, LEADER_ANNOTATION};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestCaseError, TestRunner};

/// Executions per target in a quick run.
const QUICK_CASES: u32 = 3_000;

/// JSON values that stress a decoder: edges of i32 and i64, floats, exponents past f64,
/// nulls, wrong types, and times at the edges of what RFC 3339, chrono and Go accept.
const HOSTILE: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "-1",
    "1",
    "15",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "9223372036854775807",
    "18446744073709551616",
    "1.5",
    "15.0",
    "1e3",
    "1e400",
    "-1e400",
    "\"\"",
    "\"a\"",
    "\"15\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "[]",
    "{}",
    "[1,2]",
    "{\"a\":1}",
    "\"2024-01-01T00:00:00Z\"",
    "\"2024-01-01T00:00:00.123456Z\"",
    "\"2024-01-01T00:00:00.123456789Z\"",
    "\"2024-01-01T00:00:00+14:00\"",
    "\"2024-01-01T00:00:00-23:59\"",
    "\"2016-12-31T23:59:60Z\"",
    "\"0000-01-01T00:00:00Z\"",
    "\"9999-12-31T23:59:59.999999999Z\"",
    "\"+275760-09-13T00:00:00Z\"",
    "\"-0001-01-01T00:00:00Z\"",
    "\"2024-02-30T00:00:00Z\"",
    "\"2024-01-01 00:00:00Z\"",
    "\"2024-01-01T00:00:00\"",
    "\"Coordinated\"",
];

/// The field names of a record (client-go's JSON) and of a Lease's spec.
const RECORD_FIELDS: &[&str] = &[
    "holderIdentity",
    "leaseDurationSeconds",
    "acquireTime",
    "renewTime",
    "leaderTransitions",
    "strategy",
    "preferredHolder",
];
const LEASE_FIELDS: &[&str] = &[
    "holderIdentity",
    "leaseDurationSeconds",
    "acquireTime",
    "renewTime",
    "leaseTransitions",
    "strategy",
    "preferredHolder",
];

/// A JSON value: hostile, any string, or any integer.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(HOSTILE).prop_map(str::to_owned),
        2 => any::<String>().prop_map(|text| serde_json::to_string(&text).unwrap()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

/// A JSON object over `fields` (and a stranger), keys possibly repeated, values from
/// [`value`]; sometimes cut short or with a byte flipped, to reach the error paths.
fn object(fields: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        9 => proptest::sample::select(fields).prop_map(str::to_owned),
        1 => "[a-zA-Z]{0,12}",
    ];
    let members = proptest::collection::vec((key, value()), 0..9);
    (members, 0..20u8, any::<usize>(), any::<u8>()).prop_map(|(members, damage, at, byte)| {
        let body: Vec<String> = members
            .iter()
            .map(|(key, value)| format!("{}:{value}", serde_json::to_string(key).unwrap()))
            .collect();
        let mut bytes = format!("{{{}}}", body.join(",")).into_bytes();
        match damage {
            0 => bytes.truncate(at % (bytes.len() + 1)),
            1 => {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            _ => {}
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Record JSON, or raw bytes.
fn record_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => object(RECORD_FIELDS).prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..96),
    ]
}

/// What a record decoded by any backend must satisfy: its JSON reads back (so any other
/// backend takes it), and a second pass changes nothing.
fn check_portable(record: &LeaderElectionRecord, source: &str) -> Result<(), TestCaseError> {
    let json = record.to_json();
    let again = LeaderElectionRecord::from_json(json.as_bytes()).map_err(|err| {
        TestCaseError::fail(format!(
            "{source} accepted a record whose JSON {json} the shared decoder rejects: {err}"
        ))
    })?;
    let twice = LeaderElectionRecord::from_json(again.to_json().as_bytes())
        .map_err(|err| TestCaseError::fail(format!("second pass of {json}: {err}")))?;
    prop_assert_eq!(&again, &twice, "{} changes on a second pass", json);
    Ok(())
}

/// `record` written as a Lease, serialized, decoded and read again.
fn lease_round_trip(record: &LeaderElectionRecord) -> Result<LeaderElectionRecord, TestCaseError> {
    let lease = Lease::with_record("default", "x", record);
    let json = serde_json::to_string(&lease).unwrap();
    let decoded: Lease =
        serde_json::from_str(&json).map_err(|err| TestCaseError::fail(format!("{json}: {err}")))?;
    decoded
        .record()
        .map_err(TestCaseError::fail)?
        .ok_or_else(|| TestCaseError::fail(format!("{json} holds no record")))
}

/// The targets: name and one execution on generated bytes.
struct Fuzz {
    config: Config,
    seed: u64,
    executions: Arc<AtomicU64>,
    targets: u32,
    failures: Vec<String>,
}

impl Fuzz {
    fn new() -> Self {
        let cases = std::env::var("FUZZ_CASES")
            .ok()
            .map_or(QUICK_CASES, |n| n.parse().expect("FUZZ_CASES is a number"));
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .map_or_else(rand::random, |seed| {
                seed.parse().expect("FUZZ_SEED is a number")
            });
        eprintln!("fuzz: seed {seed} (FUZZ_SEED={seed} replays it), {cases} cases per target");
        let config = Config {
            cases,
            failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
            max_shrink_iters: 10_000,
            ..Config::default()
        };
        Self {
            config,
            seed,
            executions: Arc::new(AtomicU64::new(0)),
            targets: 0,
            failures: Vec::new(),
        }
    }

    fn run<S: Strategy>(
        &mut self,
        name: &str,
        strategy: &S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        self.targets += 1;
        // A runner per target, seeded from the run's seed and the target's number, so that
        // each target replays alone.
        let mut runner = TestRunner::new(Config {
            rng_seed: RngSeed::Fixed(self.seed.wrapping_add(u64::from(self.targets))),
            ..self.config.clone()
        });
        let executions = self.executions.clone();
        let result = runner.run(strategy, |input| {
            executions.fetch_add(1, Ordering::Relaxed);
            test(input)
        });
        if let Err(err) = result {
            self.failures.push(format!("{name}: {err}"));
        }
    }
}

#[test]
fn every_backends_decoder_survives_hostile_bytes_and_agrees_with_the_others() {
    let mut fuzz = Fuzz::new();

    // Redis and etcd store the record's JSON as it is: the shared decoder is theirs.
    fuzz.run("record JSON (Redis, etcd)", &record_bytes(), |bytes| {
        if let Ok(record) = LeaderElectionRecord::from_json(&bytes) {
            check_portable(&record, "the shared decoder")?;
        }
        Ok(())
    });

    // The leader annotation of a ConfigMap (and Endpoints): the same JSON in a string.
    fuzz.run("ConfigMap annotation", &record_bytes(), |bytes| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let map = ConfigMap {
            metadata: kube::api::ObjectMeta {
                annotations: Some(BTreeMap::from([(LEADER_ANNOTATION.to_owned(), text.clone())])),
                ..Default::default()
            },
            ..Default::default()
        };
        let shared = LeaderElectionRecord::from_json(text.as_bytes());
        match (map.record(), shared) {
            (Ok(Some(record)), Ok(expected)) => {
                prop_assert_eq!(&record, &expected);
                check_portable(&record, "the annotation")?;
            }
            (Err(_), Err(_)) => {}
            (mine, shared) => {
                return Err(TestCaseError::fail(format!(
                    "the annotation and the shared decoder disagree on {text:?}: {mine:?} vs {shared:?}"
                )))
            }
        }
        Ok(())
    });

    // A Lease as the API server returns it: typed fields, decoded by k8s-openapi, then read.
    let lease = object(LEASE_FIELDS).prop_map(|spec| {
        format!(r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"x"}},"spec":{spec}}}"#)
    });
    fuzz.run("Lease", &lease, |json| {
        let Ok(lease) = serde_json::from_str::<Lease>(&json) else {
            return Ok(());
        };
        if let Ok(Some(record)) = lease.record() {
            check_portable(&record, "the Lease")?;
            // Written back as a Lease and read again: the same holder, lease and token (times
            // keep microseconds, the API server's precision), and no change on a second pass.
            let once = lease_round_trip(&record)?;
            prop_assert_eq!(&once.holder_identity, &record.holder_identity);
            prop_assert_eq!(once.lease_duration_seconds, record.lease_duration_seconds);
            prop_assert_eq!(once.leader_transitions, record.leader_transitions);
            let twice = lease_round_trip(&once)?;
            prop_assert_eq!(&once, &twice);
        }
        Ok(())
    });

    // A lock file: `{"version":N,"record":R}` (and damaged forms of it), read by the file
    // lock itself from a real file.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("fuzz.json");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let file_lock = lock_file::FileLock::new(&path);
    let version = prop_oneof![
        proptest::sample::select(HOSTILE).prop_map(str::to_owned),
        any::<u64>().prop_map(|n| n.to_string()),
    ];
    let contents = (
        version,
        object(RECORD_FIELDS),
        0..8u8,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(version, record, shape, raw)| match shape {
            0 => raw,
            1 => format!(r#"{{"record":{record}}}"#).into_bytes(),
            2 => format!(r#"[{version},{record}]"#).into_bytes(),
            _ => format!(r#"{{"version":{version},"record":{record}}}"#).into_bytes(),
        });
    fuzz.run("lock file", &contents, |bytes| {
        std::fs::write(&path, &bytes).unwrap();
        let read = runtime.block_on(file_lock.get());
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(Some(versioned)) = read {
            check_portable(&versioned.record, "the file lock")?;
            // The record part, alone, is a record to the shared decoder.
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
                TestCaseError::fail(format!("the file lock took {text:?}, not JSON: {err}"))
            })?;
            let record = value
                .get("record")
                .map(ToString::to_string)
                .unwrap_or_default();
            let shared = LeaderElectionRecord::from_json(record.as_bytes()).map_err(|err| {
                TestCaseError::fail(format!(
                    "the file lock took {text:?}; its record {record} is not one: {err}"
                ))
            })?;
            prop_assert_eq!(&shared, &versioned.record);
        }
        Ok(())
    });

    let executions = fuzz.executions.load(Ordering::Relaxed);
    println!(
        "fuzz: {executions} executions over {} targets, {} failures",
        fuzz.targets,
        fuzz.failures.len()
    );
    assert!(
        fuzz.failures.is_empty(),
        "decoders failed:\n{}",
        fuzz.failures.join("\n")
    );
}
