//! RBAC of leader-for-life: the Role in `deploy/leader-for-life/rbac.yaml`, applied as it is,
//! is enough for our lock and for operator-lib's `Become` (without the optional node access).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::ResourceExt;
use lock_core::testing::conformance::unique_name;
use lock_core::{LifeLock, LockError};
use lock_k8s::{ForLifeLock, KubeLockOptions};
use lock_tests::operator_lib::GoBecome;
use lock_tests::servers::kube::ADMIN_USER;
use lock_tests::servers::kube_controller_manager::create_pod;

use super::backend::{client_as, KubeBackend};
use super::for_life_support::{Election, OUR_TAKEOVER, STAYS_WAITING};
use super::rbac::service_account_kubeconfig;

/// The documents of a YAML file of `deploy/leader-for-life/`.
fn documents(file: &str) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/leader-for-life")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("read the manifest");
    text.split("\n---\n")
        .map(|document| serde_yaml::from_str(document).expect("YAML"))
        .collect()
}

fn of_kind(documents: &[serde_json::Value], kind: &str) -> serde_json::Value {
    documents
        .iter()
        .find(|document| document["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .clone()
}

#[test]
fn the_role_grants_configmaps_and_pods_in_the_namespace_only() {
    let rbac = documents("rbac.yaml");
    let role: Role = serde_json::from_value(of_kind(&rbac, "Role")).expect("a Role");
    let rules = role.rules.expect("rules");
    let verbs = |resource: &str| {
        rules
            .iter()
            .find(|rule| rule.resources.as_deref() == Some(&[resource.to_owned()][..]))
            .map(|rule| rule.verbs.clone())
            .unwrap_or_default()
    };
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(
        verbs("configmaps"),
        ["get", "list", "watch", "create", "update", "delete"]
    );
    assert_eq!(verbs("pods"), ["get", "delete"]);
    let binding: RoleBinding =
        serde_json::from_value(of_kind(&rbac, "RoleBinding")).expect("a RoleBinding");
    assert_eq!(binding.role_ref.kind, "Role");
    let nodes = documents("node-readiness.yaml");
    let cluster_role = of_kind(&nodes, "ClusterRole");
    assert_eq!(
        cluster_role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_elects_for_life_with_exactly_its_role() {
    let server = KubeBackend::start(lock_k8s::LockKind::ConfigMap)
        .await
        .server;
    let admin = client_as(server, ADMIN_USER).await;
    let namespace = unique_name("life-rbac");
    let params = PostParams::default();
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .create(&params, &object)
        .await
        .expect("namespace");
    let rbac = documents("rbac.yaml");
    let account: ServiceAccount = serde_json::from_value(of_kind(&rbac, "ServiceAccount")).unwrap();
    let role: Role = serde_json::from_value(of_kind(&rbac, "Role")).unwrap();
    let binding: RoleBinding = serde_json::from_value(of_kind(&rbac, "RoleBinding")).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), &namespace)
        .create(&params, &account)
        .await
        .expect("service account");
    Api::<Role>::namespaced(admin.clone(), &namespace)
        .create(&params, &role)
        .await
        .expect("role");
    Api::<RoleBinding>::namespaced(admin.clone(), &namespace)
        .create(&params, &binding)
        .await
        .expect("role binding");
    let kubeconfig = service_account_kubeconfig(server, &namespace, &account.name_any()).await;
    let a: Pod = create_pod(&admin, &namespace, "operator-a").await;
    let b: Pod = create_pod(&admin, &namespace, "operator-b").await;
    let go_pod: Pod = create_pod(&admin, &namespace, "operator-go").await;

    let lock = || async {
        let options = KubeLockOptions::default()
            .with_namespace(&namespace)
            .with_kubeconfig(&kubeconfig);
        ForLifeLock::connect("operator-lock", options)
            .await
            .expect("a lock")
    };
    let first = Election::acquire(lock().await, &a)
        .held(OUR_TAKEOVER)
        .await
        .expect("a leads as the service account");
    let mut standby = Election::acquire(lock().await, &b);
    let mut go = GoBecome::start(&kubeconfig, &namespace, &go_pod.name_any(), "operator-lock");
    go.logged("Not the leader. Waiting.", Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("operator-lib, as the service account: {:?}", go.seen()));
    assert!(standby.held(STAYS_WAITING).await.is_none());
    assert_eq!(
        lock().await.holder().await.expect("holder"),
        Some(("operator-a".to_owned(), first.fencing_token))
    );
    first.release.release().await.expect("release");
    let second = standby
        .held(OUR_TAKEOVER)
        .await
        .expect("b leads after the release");
    assert!(second.fencing_token > first.fencing_token);
    go.kill().await;

    // Someone else's namespace is out of reach, and the error says where the Role is.
    let options = KubeLockOptions::default()
        .with_namespace("default")
        .with_kubeconfig(&kubeconfig);
    let elsewhere = ForLifeLock::connect("operator-lock", options)
        .await
        .expect("a lock");
    let err = elsewhere.holder().await.expect_err("no access to default");
    assert!(matches!(err, LockError::Forbidden { .. }), "{err}");
    assert!(
        err.to_string().contains("deploy/leader-for-life/rbac.yaml"),
        "{err}"
    );
}
