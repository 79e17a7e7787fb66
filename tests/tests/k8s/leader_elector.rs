//! The demo as a drop-in for the old `k8s.gcr.io/leader-elector` sidecar: three instances run
//! with that sidecar's arguments (`--election=elect-nginx-deploy --http=...`), `--id` and the
//! kubeconfig of a service account bound only by the Role of `deploy/leader-elector/rbac.yaml`
//! (applied as it is). One leads, `GET /` names it on every instance, the record is where the
//! old image kept it (the Endpoints `elect-nginx-deploy` in namespace "default"), and CTRL+C on
//! the leader hands over to another.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ObjectMeta, PostParams};
use lock_core::{Lock, LockError};
use lock_k8s::{KubeLockOptions, LockKind, LEADER_ANNOTATION};
use lock_tests::demo::Demo;
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};
use tokio::time::Instant;

use super::backend::client_as;
use super::rbac::service_account_kubeconfig;

/// The old sidecar's election, as the seed's Deployment names it.
const ELECTION: &str = "elect-nginx-deploy";
/// Where the old image elected whatever its pod's namespace: "default".
const NAMESPACE: &str = "default";
/// The service account `deploy/leader-elector/rbac.yaml` binds: the namespace's `default`,
/// which the seed's pods run as.
const ACCOUNT: &str = "default";
/// Generous limits for a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);

/// The repository's `deploy/leader-elector/rbac.yaml`.
fn rbac_yaml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/leader-elector/rbac.yaml")
}

/// The documents of `deploy/leader-elector/rbac.yaml`: the Role and the RoleBinding.
fn leader_elector_rbac() -> (Role, RoleBinding) {
    let text = std::fs::read_to_string(rbac_yaml()).expect("read deploy/leader-elector/rbac.yaml");
    let (mut role, mut binding) = (None, None);
    for document in text.split("\n---\n") {
        let value: serde_json::Value = serde_yaml::from_str(document).expect("YAML");
        match value["kind"].as_str() {
            Some("Role") => role = Some(serde_json::from_value(value).expect("a Role")),
            Some("RoleBinding") => {
                binding = Some(serde_json::from_value(value).expect("a RoleBinding"))
            }
            other => panic!("deploy/leader-elector/rbac.yaml holds an unexpected {other:?}"),
        }
    }
    (role.expect("a Role"), binding.expect("a RoleBinding"))
}

#[test]
fn the_role_grants_only_the_endpoints_lock_on_its_one_object_in_default() {
    let (role, binding) = leader_elector_rbac();
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(binding.metadata.namespace.as_deref(), Some(NAMESPACE));
    let rules = role.rules.expect("rules");
    assert_eq!(rules.len(), 2, "{rules:?}");
    for rule in &rules {
        assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["endpoints".to_owned()][..])
        );
    }
    assert_eq!(rules[0].verbs, ["get", "list", "watch", "update"]);
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&[ELECTION.to_owned()][..])
    );
    assert_eq!(rules[1].verbs, ["create"]);
    assert_eq!(
        rules[1].resource_names, None,
        "a create has no name to check"
    );
    assert_eq!(binding.role_ref.kind, "Role", "nothing cluster-wide");
    let subjects = binding.subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, ACCOUNT);
}

/// Applies `deploy/leader-elector/rbac.yaml` as it is, with the service account it binds (a
/// cluster's controller manager makes every namespace's `default` one; the test server runs
/// none).
async fn apply_leader_elector_rbac(server: &KubeApiServer) {
    let client = client_as(server, ADMIN_USER).await;
    let params = PostParams::default();
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE);
    if accounts.get_opt(ACCOUNT).await.expect("read").is_none() {
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(ACCOUNT.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        accounts
            .create(&params, &account)
            .await
            .expect("service account");
    }
    let (role, binding) = leader_elector_rbac();
    Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .create(&params, &role)
        .await
        .expect("role");
    Api::<RoleBinding>::namespaced(client, NAMESPACE)
        .create(&params, &binding)
        .await
        .expect("role binding");
}

/// A demo started with the old sidecar's arguments, and the address its `GET /` answers on.
struct Sidecar {
    demo: Demo,
    base: String,
}

impl Sidecar {
    /// Starts `demo --election=elect-nginx-deploy --http=127.0.0.1:0 --id=ID --kubeconfig
    /// PATH` and waits for the address it prints on stderr.
    async fn start(id: &str, kubeconfig: &Path) -> Self {
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
        let id_arg = format!("--id={id}");
        let args = [
            "--election=elect-nginx-deploy",
            "--http=127.0.0.1:0",
            &id_arg,
            "--kubeconfig",
            kubeconfig,
        ];
        let demo = Demo::start_with(id, &args);
        let base = demo.http_base(STARTUP).await;
        Self { demo, base }
    }

    /// The `name` of `GET /`, as the old sidecar answered it; `None` when it does not answer.
    async fn leader(&self, client: &reqwest::Client) -> Option<String> {
        let response = client.get(format!("{}/", self.base)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: serde_json::Value = response.json().await.ok()?;
        let object = body.as_object()?;
        assert_eq!(object.len(), 1, "GET / answers only the name: {body}");
        object["name"].as_str().map(str::to_owned)
    }
}

/// Waits until every sidecar's `GET /` names the same leader, one of them; returns its index.
async fn agreed_leader(sidecars: &[&Sidecar], client: &reqwest::Client) -> usize {
    let deadline = Instant::now() + STARTUP;
    loop {
        let mut names = Vec::new();
        for sidecar in sidecars {
            names.push(sidecar.leader(client).await);
        }
        if let Some(Some(first)) = names.first() {
            let leader = sidecars.iter().position(|s| s.demo.name() == first);
            if let Some(leader) = leader {
                if names.iter().all(|name| name.as_deref() == Some(first)) {
                    return leader;
                }
            }
        }
        if Instant::now() > deadline {
            let reports: Vec<String> = sidecars.iter().map(|s| s.demo.report()).collect();
            panic!(
                "the sidecars do not agree on a leader within {STARTUP:?}: {names:?}\n{}",
                reports.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The record in the Endpoints object's leader annotation.
async fn stored_record(server: &KubeApiServer) -> serde_json::Value {
    let client = client_as(server, ADMIN_USER).await;
    let endpoints = Api::<Endpoints>::namespaced(client, NAMESPACE)
        .get(ELECTION)
        .await
        .expect("the Endpoints elect-nginx-deploy in namespace default");
    assert_eq!(endpoints.metadata.name.as_deref(), Some(ELECTION));
    assert_eq!(endpoints.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        LEADER_ANNOTATION,
        "control-plane.alpha.kubernetes.io/leader"
    );
    let annotation = endpoints
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(LEADER_ANNOTATION))
        .expect("the leader annotation");
    serde_json::from_str(annotation).expect("the annotation is a JSON record")
}

/// What the service account may not do: the Role covers one Endpoints object, nothing else.
async fn assert_nothing_beyond_the_role(kubeconfig: &Path) {
    for (kind, name) in [
        (LockKind::Endpoints, "another-election"),
        (LockKind::Lease, ELECTION),
        (LockKind::ConfigMap, ELECTION),
    ] {
        let options = KubeLockOptions::default()
            .with_namespace(NAMESPACE)
            .with_kubeconfig(kubeconfig);
        let lock = lock_k8s::connect(kind, name, options)
            .await
            .expect("a lock");
        let err = lock.get().await.expect_err("not granted");
        assert!(
            matches!(err, LockError::Forbidden { .. }),
            "{kind} {name}: {err}"
        );
        assert!(
            err.to_string()
                .contains("user system:serviceaccount:default:default cannot get"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_sidecars_arguments_elect_on_its_endpoints_with_a_least_privilege_role() {
    let server = tokio::task::spawn_blocking(KubeApiServer::shared)
        .await
        .expect("start the test kube-apiserver");
    apply_leader_elector_rbac(server).await;
    let kubeconfig = service_account_kubeconfig(server, NAMESPACE, ACCOUNT).await;
    assert_nothing_beyond_the_role(&kubeconfig).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let mut sidecars = Vec::new();
    for id in ["nginx-deploy-a", "nginx-deploy-b", "nginx-deploy-c"] {
        sidecars.push(Sidecar::start(id, &kubeconfig).await);
    }
    let all: Vec<&Sidecar> = sidecars.iter().collect();
    let first = agreed_leader(&all, &client).await;
    let first_name = sidecars[first].demo.name().to_owned();
    let record = stored_record(server).await;
    assert_eq!(record["holderIdentity"], first_name.as_str(), "{record}");
    assert_eq!(
        record["leaseDurationSeconds"], 10,
        "the old --ttl default: {record}"
    );

    // CTRL+C on the leader: it releases, and another instance takes over.
    let mut old = sidecars.remove(first);
    old.demo.interrupt();
    let status = old.demo.wait_exit(EXIT).await;
    assert!(status.success(), "{status}\n{}", old.demo.report());
    let rest: Vec<&Sidecar> = sidecars.iter().collect();
    let second = agreed_leader(&rest, &client).await;
    let second_name = sidecars[second].demo.name().to_owned();
    assert_ne!(second_name, first_name);
    let record = stored_record(server).await;
    assert_eq!(record["holderIdentity"], second_name.as_str(), "{record}");
    assert!(
        record["leaderTransitions"].as_u64() > Some(0),
        "a new holder: {record}"
    );

    // The Role was enough for everything the lock did, its watch included.
    for sidecar in sidecars.iter_mut() {
        sidecar.demo.interrupt();
        let status = sidecar.demo.wait_exit(EXIT).await;
        assert!(status.success(), "{status}\n{}", sidecar.demo.report());
    }
    for sidecar in sidecars.iter().chain([&old]) {
        let stderr = sidecar.demo.stderr().to_lowercase();
        assert!(
            !stderr.contains("forbidden") && !stderr.contains("watch failed"),
            "{}",
            sidecar.demo.report()
        );
    }
}
