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
