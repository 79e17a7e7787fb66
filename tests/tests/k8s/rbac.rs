//! RBAC: the Role in `deploy/rbac.yaml`, applied as it is, is enough to elect; a user without it
//! gets an error naming the user, the verb, the resource and the namespace.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ObjectMeta, PostParams};
use lock_core::testing::conformance::{releasing_config, unique_name, Candidate};
use lock_core::{Lock, LockError};
use lock_k8s::{KubeLockOptions, LockKind};
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};

use super::backend::{client_as, lock_as};

/// The repository's `deploy/rbac.yaml`.
fn rbac_yaml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml")
}

/// The documents of `deploy/rbac.yaml`: the ServiceAccount, the Role and the RoleBinding.
fn deploy_rbac() -> (ServiceAccount, Role, RoleBinding) {
    let text = std::fs::read_to_string(rbac_yaml()).expect("read deploy/rbac.yaml");
    let (mut account, mut role, mut binding) = (None, None, None);
    for document in text.split("\n---\n") {
        let value: serde_json::Value = serde_yaml::from_str(document).expect("YAML");
        match value["kind"].as_str() {
            Some("ServiceAccount") => account = serde_json::from_value(value).ok(),
            Some("Role") => role = serde_json::from_value(value).ok(),
            Some("RoleBinding") => binding = serde_json::from_value(value).ok(),
            other => panic!("deploy/rbac.yaml holds an unexpected {other:?}"),
        }
    }
    (
        account.expect("a ServiceAccount"),
        role.expect("a Role"),
        binding.expect("a RoleBinding"),
    )
}

/// Creates a namespace and applies `deploy/rbac.yaml` in it; returns the service account's
/// name.
async fn namespace_with_deploy_rbac(server: &KubeApiServer, namespace: &str) -> String {
    let client = client_as(server, ADMIN_USER).await;
    let params = PostParams::default();
    let namespaces = Api::<Namespace>::all(client.clone());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&params, &object)
        .await
        .expect("namespace");
    let (account, role, binding) = deploy_rbac();
    let account_name = account.metadata.name.clone().expect("a name");
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&params, &account)
        .await
        .expect("service account");
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&params, &role)
        .await
        .expect("role");
    Api::<RoleBinding>::namespaced(client, namespace)
        .create(&params, &binding)
        .await
        .expect("role binding");
    account_name
}

/// A kubeconfig (in the server's directory) that logs in with a token of the service account.
pub(super) async fn service_account_kubeconfig(
    server: &KubeApiServer,
    namespace: &str,
    account: &str,
) -> PathBuf {
    let client = client_as(server, ADMIN_USER).await;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client, namespace)
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .expect("a service account token")
        .status
        .and_then(|status| status.token)
        .expect("a token");
    let path = server
        .dir()
        .join(format!("kubeconfig-{namespace}-{account}.yaml"));
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context:\n    cluster: test\n    user: sa\ncurrent-context: sa\n",
        server.url(),
        server.ca_path().display()
    );
    std::fs::write(&path, config).expect("write the kubeconfig");
    path
}

async fn lock_with(
    kubeconfig: &Path,
    kind: LockKind,
    namespace: &str,
    name: &str,
) -> Arc<dyn Lock> {
    let options = KubeLockOptions::default()
        .with_namespace(namespace)
        .with_kubeconfig(kubeconfig);
    lock_k8s::connect(kind, name, options)
        .await
        .expect("a lock")
}

#[test]
fn the_deploy_role_grants_exactly_what_the_lock_needs() {
    let (_, role, binding) = deploy_rbac();
    let rules = role.rules.expect("rules");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(
        rule.api_groups.as_deref(),
        Some(&["coordination.k8s.io".to_owned()][..])
    );
    assert_eq!(rule.resources.as_deref(), Some(&["leases".to_owned()][..]));
    assert_eq!(rule.verbs, ["get", "list", "watch", "create", "update"]);
    assert_eq!(rule.resource_names, None);
    assert_eq!(binding.role_ref.kind, "Role", "nothing cluster-wide");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_service_account_elects_with_exactly_its_role() {
    let server = super::backend::KubeBackend::start(LockKind::Lease)
        .await
        .server;
    let namespace = unique_name("rbac");
    let account = namespace_with_deploy_rbac(server, &namespace).await;
    let kubeconfig = service_account_kubeconfig(server, &namespace, &account).await;
    let name = "leader-election-demo";

    let mut a = Candidate::start(
        lock_with(&kubeconfig, LockKind::Lease, &namespace, name).await,
        releasing_config("pod-a"),
        None,
    );
    let first = a.started(Duration::from_secs(15)).await;
    let mut b = Candidate::start(
        lock_with(&kubeconfig, LockKind::Lease, &namespace, name).await,
        releasing_config("pod-b"),
        None,
    );
    b.sees_leader("pod-a", Duration::from_secs(15)).await;
    a.stop().await;
    let second = b.started(Duration::from_secs(1)).await;
    assert!(second.fencing_token() > first.fencing_token());
    b.stop().await;

    // Nothing beyond leases: the same account may not use a ConfigMap lock.
    let map = lock_with(&kubeconfig, LockKind::ConfigMap, &namespace, name).await;
    let err = map.get().await.expect_err("no access to config maps");
    let message = err.to_string();
    assert!(matches!(err, LockError::Forbidden { .. }), "{message}");
    assert!(
        message.contains(&format!(
            "user system:serviceaccount:{namespace}:{account} cannot get configmaps in namespace {namespace}"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_the_role_gets_an_error_naming_verb_resource_and_namespace() {
    let server = super::backend::KubeBackend::start(LockKind::Lease)
        .await
        .server;
    let namespace = unique_name("rbac-denied");
    namespace_with_deploy_rbac(server, &namespace).await;
    let lock = lock_as(server, "bob", LockKind::Lease, &namespace, "orders").await;

    let err = lock.get().await.expect_err("bob may not read leases");
    let message = err.to_string();
    assert!(matches!(err, LockError::Forbidden { .. }), "{message}");
    // One line from the status's own words, never its Debug dump.
    assert!(!message.contains("Status {"), "{message}");
    assert!(!message.contains("ApiError"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains(
            "the API server said: leases.coordination.k8s.io \"orders\" is forbidden: User \"bob\" cannot get resource \"leases\""
        ),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "forbidden: user bob cannot get leases.coordination.k8s.io in namespace {namespace}"
        )),
        "{message}"
    );
    assert!(message.contains("deploy/"), "{message}");

    let record = lock_core::LeaderElectionRecord {
        holder_identity: "bob".into(),
        lease_duration_seconds: 15,
        ..Default::default()
    };
    let err = lock
        .create(&record)
        .await
        .expect_err("bob may not create leases");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "user bob cannot create leases.coordination.k8s.io in namespace {namespace}"
        )),
        "{message}"
    );
}

/// Issue 16: a namespace that does not exist is a setup to fix (`Misconfigured`, naming the
/// namespace and what to do), not a passing fault; the demo's warning says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_does_not_exist_is_misconfigured_and_named() {
    let server = super::backend::KubeBackend::start(LockKind::Lease)
        .await
        .server;
    let namespace = unique_name("absent");
    let lock = lock_as(server, ADMIN_USER, LockKind::Lease, &namespace, "orders").await;
    assert!(lock
        .get()
        .await
        .expect("a lease that is not there")
        .is_none());
    let record = lock_core::LeaderElectionRecord {
        holder_identity: "a".into(),
        lease_duration_seconds: 15,
        ..Default::default()
    };
    let err = lock
        .create(&record)
        .await
        .expect_err("no lease in a namespace that does not exist");
    let message = err.to_string();
    assert!(matches!(err, LockError::Misconfigured { .. }), "{message}");
    assert!(err.is_permanent());
    let expected = format!(
        "namespace \"{namespace}\" does not exist: create it (`kubectl create namespace \
         {namespace}`) or pass --namespace"
    );
    assert!(message.contains(&expected), "{message}");
    assert!(!message.contains("Status {"), "{message}");

    let kubeconfig = server.admin_kubeconfig();
    let demo = lock_tests::demo::Demo::start_with(
        "absent",
        &[
            "--instance",
            "a",
            "--backend",
            "k8s",
            "--namespace",
            &namespace,
            "--kubeconfig",
            kubeconfig.to_str().expect("a UTF-8 path"),
            "--lock-name",
            "orders",
        ],
    );
    let line = demo
        .stderr_line("lock call failed; retrying", Duration::from_secs(30))
        .await;
    assert!(line.contains(&expected), "{line}");
    assert!(!line.contains("unavailable"), "{line}");
}

/// Issue 16: a user the API server refuses gives up after --give-up-after with status 3 and
/// one line naming the verb, the resource and the namespace, not a retry loop with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_without_rbac_gives_up_with_status_3_naming_what_is_missing() {
    let server = super::backend::KubeBackend::start(LockKind::Lease)
        .await
        .server;
    let namespace = unique_name("rbac-give-up");
    namespace_with_deploy_rbac(server, &namespace).await;
    let kubeconfig = server.kubeconfig("bob");
    let mut demo = lock_tests::demo::Demo::start(
        "a",
        &[
            "--backend",
            "k8s",
            "--kubeconfig",
            kubeconfig.to_str().expect("a UTF-8 path"),
            "--namespace",
            &namespace,
            "--lock-name",
            "orders",
            "--give-up-after",
            "2s",
        ],
    );
    let status = demo.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(3), "{}", demo.report());
    let stderr = demo.stderr();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", demo.report());
    assert!(
        errors[0].starts_with("error: gave up after 2s: "),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains(&format!(
            "user bob cannot get leases.coordination.k8s.io in namespace {namespace}"
        )),
        "{}",
        errors[0]
    );
    assert!(!errors[0].contains("Status {"), "{}", errors[0]);
}
