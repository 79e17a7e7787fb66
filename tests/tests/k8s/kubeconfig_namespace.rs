//! The demo's namespace without `--namespace`: the kubeconfig's current context's, as kubectl
//! uses it.

use std::time::Duration;

use lock_core::testing::conformance::unique_name;
use lock_tests::demo::Demo;
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};

const STARTUP: Duration = Duration::from_secs(60);

/// The admin's kubeconfig with its context's namespace set to `namespace`, written in `dir`.
fn kubeconfig_in(server: &KubeApiServer, namespace: &str, dir: &std::path::Path) -> String {
    let admin = std::fs::read_to_string(server.admin_kubeconfig()).expect("the kubeconfig");
    assert!(admin.contains("    namespace: default\n"), "{admin}");
    let text = admin.replace(
        "    namespace: default\n",
        &format!("    namespace: {namespace}\n"),
    );
    let path = dir.join(format!("kubeconfig-{namespace}.yaml"));
    std::fs::write(&path, text).expect("write the kubeconfig");
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn kubectl(server: &KubeApiServer, args: &[&str]) -> String {
    let output = server
        .kubectl(ADMIN_USER)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_namespace_the_kubeconfig_contexts_namespace_holds_the_lease() {
    let server = tokio::task::spawn_blocking(KubeApiServer::shared)
        .await
        .expect("start the test kube-apiserver");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let namespace = unique_name("ctx-ns");
    kubectl(server, &["create", "namespace", &namespace]);
    let kubeconfig = kubeconfig_in(server, &namespace, dir.path());
    let name = unique_name("ctx");
    let mut demo = Demo::start(
        "a",
        &[
            "--backend",
            "k8s",
            "--kubeconfig",
            &kubeconfig,
            "--lock-name",
            &name,
        ],
    );
    demo.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let holder = kubectl(
        server,
        &[
            "get",
            "lease",
            &name,
            "-n",
            &namespace,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert_eq!(holder, "a");
    demo.interrupt();
    assert!(demo.wait_exit(STARTUP).await.success(), "{}", demo.report());
}

/// A context whose namespace does not exist is a setup that retrying cannot fix: the demo says
/// so in one line naming the namespace and what to do, and gives up after --give-up-after
/// with status 3 instead of retrying for ever with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_does_not_exist_gives_up_with_status_3_and_says_so() {
    let server = tokio::task::spawn_blocking(KubeApiServer::shared)
        .await
        .expect("start the test kube-apiserver");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let namespace = unique_name("missing-ns");
    let kubeconfig = kubeconfig_in(server, &namespace, dir.path());
    let name = unique_name("ctx");
    let mut demo = Demo::start(
        "a",
        &[
            "--backend",
            "k8s",
            "--kubeconfig",
            &kubeconfig,
            "--lock-name",
            &name,
            "--give-up-after",
            "2s",
        ],
    );
    let status = demo.wait_exit(STARTUP).await;
    assert_eq!(status.code(), Some(3), "{}", demo.report());
    let stderr = demo.stderr();
    let gave_up: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(gave_up.len(), 1, "{}", demo.report());
    assert!(
        gave_up[0].starts_with("error: gave up after 2s: "),
        "{}",
        gave_up[0]
    );
    assert!(
        gave_up[0].contains(&format!(
            "namespace \"{namespace}\" does not exist: create it (`kubectl create namespace {namespace}`) or pass --namespace"
        )),
        "{}",
        gave_up[0]
    );
    assert!(!gave_up[0].contains("Status {"), "{}", gave_up[0]);
}
