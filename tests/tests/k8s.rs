//! The Kubernetes backend against a real kube-apiserver (with its etcd): the whole conformance
//! suite for each kind of lock (Lease, ConfigMap, Endpoints).
//!
//! All tests in this file share one kube-apiserver ([`KubeApiServer::shared`]), started by the
//! first test that needs it; every case elects on a name of its own.
//!
//! [`KubeApiServer::shared`]: lock_tests::servers::kube::KubeApiServer::shared

#[path = "k8s/backend.rs"]
mod backend;

use backend::KubeBackend;
use lock_k8s::LockKind;

/// The conformance cases a Lease can run, on the backend `$backend`.
macro_rules! lease_cases {
    ($backend:expr) => {
        lock_core::conformance_suite!(@cases ($backend)
            lock_cases::get_on_fresh_name_is_none,
            lock_cases::every_record_field_round_trips,
            lock_cases::concurrent_creates_have_one_winner,
            lock_cases::concurrent_updates_of_one_version_have_one_winner,
            lock_cases::stale_version_is_rejected,
            elector_cases::single_candidate_leads,
            elector_cases::three_candidates_never_lead_together,
            elector_cases::graceful_release_hands_over_within_a_second,
            elector_cases::killed_leader_is_replaced_after_the_lease,
            elector_cases::unavailable_backend_makes_the_leader_step_down_first,
            elector_cases::fencing_tokens_increase_over_handovers,
            elector_cases::notifications_arrive_in_order,
            elector_cases::idle_standby_waits_on_hints,
        );
    };
}

/// Every case but `corrupt_value_is_reported_and_left_untouched`: a Lease cannot hold a value
/// that is not a record (the API server checks its schema, and rejects a negative duration or
/// transition count), so there is nothing corrupt to store; `lease_odd_values` below reads
/// the oddest Leases the server accepts instead.
mod lease {
    use super::*;
    lease_cases!(KubeBackend::start(LockKind::Lease));
}

/// The Lease cases again, with every lock of a case made from one `LeaseLocks`: their hints
/// come from one shared watch of the namespace's Leases.
mod lease_shared_watch {
    use super::*;
    lease_cases!(KubeBackend::start_with_shared_watch());
}

mod configmap {
    use super::*;
    lock_core::conformance_suite!(KubeBackend::start(LockKind::ConfigMap));
}

mod endpoints {
    use super::*;
    lock_core::conformance_suite!(KubeBackend::start(LockKind::Endpoints));
}

mod lease_values {
    use std::time::Duration;

    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, PostParams};
    use lock_core::backend::Version;
    use lock_core::testing::conformance::{config, unique_name, Backend, Candidate};
    use lock_core::{LeaderElectionRecord, LockError};
    use lock_tests::servers::kube::ADMIN_USER;

    use super::backend::{client_as, NAMESPACE};
    use super::*;

    /// What stands for the corrupt-value case on a Lease: the API server refuses what is not a
    /// record; the oddest Leases it accepts read without panic, as client-go reads them
    /// (absent fields are zero), and an elector takes such a Lease over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn odd_leases_read_as_client_go_reads_them_and_are_taken_over() {
        let backend = KubeBackend::start(LockKind::Lease).await;
        let name = unique_name("lease-odd");
        let client = client_as(backend.server, ADMIN_USER).await;
        let leases = Api::<Lease>::namespaced(client, NAMESPACE);

        // Not a record: refused by the server, so it never reaches a lock.
        let negative: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"holderIdentity": "x", "leaseDurationSeconds": -1, "leaseTransitions": -3},
        }))
        .unwrap();
        let refused = leases.create(&PostParams::default(), &negative).await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(status)) if status.code == 422),
            "{refused:?}"
        );

        // No spec at all: no record (see hole1_an_emptied_lease_is_no_record_and_create_writes_onto_it).
        backend.write_raw(&name, b"{}").await;
        let lock = backend.lock(&name).await;
        assert_eq!(lock.get().await.expect("get"), None);

        // A holder without a duration, extreme times, the largest transition count.
        let odd = serde_json::json!({
            "holderIdentity": "ghost",
            "leaseTransitions": i32::MAX,
            "acquireTime": "0001-01-01T00:00:00.000000Z",
            "renewTime": "9999-12-31T23:59:59.999999Z",
        });
        backend.write_raw(&name, odd.to_string().as_bytes()).await;
        // Go can write a renewTime that the Rust types cannot hold: Corrupt, not a panic, and
        // not overwritten.
        let got = lock.get().await;
        assert!(matches!(&got, Err(LockError::Corrupt { .. })), "{got:?}");
        let update = lock
            .update(&LeaderElectionRecord::default(), &Version::new("1"))
            .await;
        assert!(update.is_err(), "{update:?}");
        let stored: serde_json::Value =
            serde_json::from_slice(&backend.read_raw(&name).await.expect("a lease")).unwrap();
        assert_eq!(stored["renewTime"], odd["renewTime"], "{stored}");
        assert_eq!(stored["holderIdentity"], "ghost", "{stored}");

        let odd = serde_json::json!({
            "holderIdentity": "ghost",
            "leaseTransitions": i32::MAX,
            "acquireTime": "0001-01-02T00:00:00.000000Z",
            "renewTime": "9999-01-01T00:00:00.000000Z",
        });
        backend.write_raw(&name, odd.to_string().as_bytes()).await;
        let got = lock.get().await.expect("get").expect("a record");
        assert_eq!(got.record.holder_identity, "ghost");
        assert_eq!(got.record.lease_duration_seconds, 0);
        assert_eq!(got.record.leader_transitions, i32::MAX);
        assert!(got.record.acquire_time.is_some() && got.record.renew_time.is_some());

        // A ghost holder with a one-second lease is taken over, one transition later.
        let ghost = serde_json::json!({
            "holderIdentity": "ghost",
            "leaseDurationSeconds": 1,
            "leaseTransitions": 7,
        });
        backend.write_raw(&name, ghost.to_string().as_bytes()).await;
        let mut candidate = Candidate::start(backend.lock(&name).await, config("a"), None);
        let term = candidate.started(Duration::from_secs(15)).await;
        assert_eq!(term.fencing_token(), 8);
        let stored = lock.get().await.expect("get").expect("a record");
        assert_eq!(stored.record.holder_identity, "a");
        assert_eq!(stored.record.leader_transitions, 8);
        candidate.stop().await;
    }
}

mod annotation_locks {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::{ConfigMap, Endpoints};
    use kube::api::{Api, PostParams};
    use kube::Resource;
    use lock_core::testing::conformance::{releasing_config, unique_name, Backend, Candidate};
    use lock_k8s::LEADER_ANNOTATION;
    use lock_tests::servers::kube::ADMIN_USER;

    use super::backend::{client_as, NAMESPACE};
    use super::*;

    fn metadata(name: &str) -> kube::api::ObjectMeta {
        kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([("team".to_owned(), "orders".to_owned())])),
            annotations: Some(BTreeMap::from([(
                "example.com/note".to_owned(),
                "kept".to_owned(),
            )])),
            ..Default::default()
        }
    }

    /// Elects on `name` (which exists without the leader annotation): one candidate takes it,
    /// releases it and a second takes it; the second term's fencing token.
    async fn elect_twice(kind: LockKind, name: &str) -> u64 {
        let backend = KubeBackend::start(kind).await;
        let mut a = Candidate::start(backend.lock(name).await, releasing_config("a"), None);
        let first = a.started(Duration::from_secs(15)).await.fencing_token();
        let mut b = Candidate::start(backend.lock(name).await, releasing_config("b"), None);
        b.sees_leader("a", Duration::from_secs(15)).await;
        a.stop().await;
        let second = b.started(Duration::from_secs(5)).await.fencing_token();
        b.stop().await;
        assert!(second > first, "tokens {first} then {second}");
        second
    }

    /// The object kept what the locks do not own, and holds b's released record.
    fn assert_kept<K: Resource>(object: &K, token: u64) {
        let meta = object.meta();
        let annotations = meta.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["example.com/note"], "kept");
        let record =
            lock_core::LeaderElectionRecord::from_json(annotations[LEADER_ANNOTATION].as_bytes())
                .expect("a record in the annotation");
        assert!(record.is_free(), "b released it: {record:?}");
        assert_eq!(
            u64::try_from(record.leader_transitions).ok(),
            Some(token),
            "{record:?}"
        );
        assert_eq!(meta.labels.as_ref().expect("labels")["team"], "orders");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_config_map_keeps_its_data_labels_and_other_annotations() {
        let server = KubeBackend::start(LockKind::ConfigMap).await.server;
        let name = unique_name("configmap-kept");
        let maps = Api::<ConfigMap>::namespaced(client_as(server, ADMIN_USER).await, NAMESPACE);
        let map = ConfigMap {
            metadata: metadata(&name),
            data: Some(BTreeMap::from([("settings".to_owned(), "x=1".to_owned())])),
            ..ConfigMap::default()
        };
        maps.create(&PostParams::default(), &map)
            .await
            .expect("create");
        let token = elect_twice(LockKind::ConfigMap, &name).await;
        let map = maps.get(&name).await.expect("get");
        assert_kept(&map, token);
        assert_eq!(map.data.expect("data")["settings"], "x=1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoints_object_keeps_its_labels_and_other_annotations() {
        let server = KubeBackend::start(LockKind::Endpoints).await.server;
        let name = unique_name("endpoints-kept");
        let api = Api::<Endpoints>::namespaced(client_as(server, ADMIN_USER).await, NAMESPACE);
        let endpoints = Endpoints {
            metadata: metadata(&name),
            ..Endpoints::default()
        };
        api.create(&PostParams::default(), &endpoints)
            .await
            .expect("create");
        let token = elect_twice(LockKind::Endpoints, &name).await;
        assert_kept(&api.get(&name).await.expect("get"), token);
    }
}

#[path = "k8s/rbac.rs"]
mod rbac;

#[path = "k8s/shared_watch.rs"]
mod shared_watch;

#[path = "k8s/leader_elector.rs"]
mod leader_elector;

#[path = "k8s/interop.rs"]
mod interop;

#[path = "k8s/safety.rs"]
mod safety;

mod demo_processes {
    use lock_core::testing::conformance::unique_name;
    use lock_tests::failover::three_instances_hand_over_on_ctrl_c;
    use lock_tests::handover::handover_moves_leadership_to_the_named_instance;
    use lock_tests::servers::kube::KubeApiServer;

    use super::backend::NAMESPACE;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_handover_moves_leadership_among_three_processes_on_a_lease() {
        let server = tokio::task::spawn_blocking(KubeApiServer::shared)
            .await
            .expect("start the test kube-apiserver");
        let kubeconfig = server.admin_kubeconfig();
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
        let name = unique_name("handover");
        handover_moves_leadership_to_the_named_instance(&[
            "--backend",
            "k8s",
            "--lock-kind",
            "lease",
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            kubeconfig,
            "--lock-name",
            &name,
        ])
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_demo_processes_on_a_lease_hand_over_on_ctrl_c() {
        let server = tokio::task::spawn_blocking(KubeApiServer::shared)
            .await
            .expect("start the test kube-apiserver");
        let kubeconfig = server.admin_kubeconfig();
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
        let name = unique_name("demo");
        three_instances_hand_over_on_ctrl_c(&[
            "--backend",
            "k8s",
            "--lock-kind",
            "lease",
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            kubeconfig,
            "--lock-name",
            &name,
        ])
        .await;
    }
}

/// `deploy/sidecar.yaml`: its wiring, and two sidecars run with exactly its arguments against
/// the test kube-apiserver, queried the way its app container queries them.
mod sidecar_manifest {
    use std::path::Path;
    use std::process::Stdio;
    use std::time::Duration;

    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Container;
    use lock_core::testing::conformance::unique_name;
    use lock_tests::demo::demo_binary;
    use lock_tests::servers::kube::KubeApiServer;
    use lock_tests::servers::ports::free_loopback_port;
    use tokio::process::Command;

    use super::backend::NAMESPACE;

    fn manifest() -> Deployment {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sidecar.yaml");
        let text = std::fs::read_to_string(&path).expect("read deploy/sidecar.yaml");
        serde_yaml::from_str(&text).expect("deploy/sidecar.yaml is one Deployment")
    }

    fn container<'a>(deployment: &'a Deployment, name: &str) -> &'a Container {
        let spec = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref());
        spec.expect("a pod spec")
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("a container named {name}"))
    }

    fn pod_name_from_downward_api(container: &Container) -> bool {
        container.env.iter().flatten().any(|var| {
            var.name == "POD_NAME"
                && var
                    .value_from
                    .as_ref()
                    .and_then(|from| from.field_ref.as_ref())
                    .is_some_and(|field| field.field_path == "metadata.name")
        })
    }

    #[test]
    fn the_app_reads_the_sidecar_the_probe_checks_its_health_and_rbac_yaml_covers_it() {
        let deployment = manifest();
        let pod = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(pod.containers.len(), 2);
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("leader-election-demo"),
            "the ServiceAccount of deploy/rbac.yaml"
        );
        let elector = container(&deployment, "leader-elector");
        let args = elector.args.clone().unwrap_or_default();
        assert!(args.contains(&"--backend=k8s".to_owned()), "{args:?}");
        assert!(args.contains(&"--http=0.0.0.0:4040".to_owned()), "{args:?}");
        let probe = elector.liveness_probe.as_ref().expect("a liveness probe");
        let http = probe.http_get.as_ref().expect("an HTTP liveness probe");
        assert_eq!(http.path.as_deref(), Some("/healthz"));
        let port = &elector.ports.as_ref().expect("ports")[0];
        assert_eq!(port.container_port, 4040);
        let app = container(&deployment, "app");
        let script = app.command.clone().unwrap_or_default().join(" ");
        assert!(script.contains("http://127.0.0.1:4040/"), "{script}");
        assert!(pod_name_from_downward_api(elector));
        assert!(pod_name_from_downward_api(app));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_sidecars_with_the_manifests_arguments_agree_on_one_leader() {
        let server = tokio::task::spawn_blocking(KubeApiServer::shared)
            .await
            .expect("start the test kube-apiserver");
        let deployment = manifest();
        let name = unique_name("sidecar");
        let mut pods = Vec::new();
        for pod in ["my-app-a", "my-app-b"] {
            let port = free_loopback_port();
            let args: Vec<String> = container(&deployment, "leader-elector")
                .args
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|arg| match arg.split_once('=') {
                    Some(("--http", _)) => format!("--http=127.0.0.1:{port}"),
                    Some(("--lock-name", _)) => format!("--lock-name={name}"),
                    _ => arg,
                })
                .collect();
            let child = Command::new(demo_binary())
                .args(&args)
                .arg(format!("--namespace={NAMESPACE}"))
                .arg("--kubeconfig")
                .arg(server.admin_kubeconfig())
                .env("POD_NAME", pod)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start the sidecar");
            pods.push((pod, port, child));
        }
        let client = reqwest::Client::new();
        let leader_seen_by = |port: u16| {
            let client = client.clone();
            async move {
                let url = format!("http://127.0.0.1:{port}/");
                let response = client.get(url).send().await.ok()?;
                let body: serde_json::Value = response.json().await.ok()?;
                body["name"].as_str().map(str::to_owned)
            }
        };
        let agreed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let a = leader_seen_by(pods[0].1).await;
                let b = leader_seen_by(pods[1].1).await;
                if let (Some(a), Some(b)) = (a, b) {
                    if a == b && !a.is_empty() {
                        return a;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("both sidecars name the same leader within 30 s");
        assert!(
            ["my-app-a", "my-app-b"].contains(&agreed.as_str()),
            "{agreed}"
        );
        for (_, port, _) in &pods {
            let health = client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .expect("GET /healthz");
            assert_eq!(health.status(), 200);
        }
    }
}

#[path = "k8s/for_life_support.rs"]
mod for_life_support;

#[path = "k8s/for_life.rs"]
mod for_life;

#[path = "k8s/for_life_clearing.rs"]
mod for_life_clearing;

#[path = "k8s/for_life_rbac.rs"]
mod for_life_rbac;

#[path = "k8s/for_life_demo.rs"]
mod for_life_demo;

#[path = "k8s/kubeconfig_namespace.rs"]
mod kubeconfig_namespace;
