//! The demo's etcd flags against a real etcd: the walkthrough a README shows (a user `elector`
//! whose role `elector` may read and write the keys under `leader-election/`, authentication
//! on, two instances that log in with `--etcd-user elector --etcd-password-file FILE`), a
//! wrong password that makes the demo give up (status 3), and client certificates over TLS.

use std::time::Duration;

use lock_tests::demo::Demo;
use lock_tests::servers::etcd::EtcdServer;

const STARTUP: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(60);

const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "4s",
    "--renew-deadline",
    "3s",
    "--retry-period",
    "500ms",
];

fn with_timings<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = TIMINGS.to_vec();
    all.extend_from_slice(extra);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demos_log_in_as_a_restricted_user_and_a_wrong_password_gives_up() {
    let server = EtcdServer::start();
    // The walkthrough, step by step, as etcdctl takes it.
    for step in [
        &["user", "add", "root", "--new-user-password=root-secret"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "elector"],
        &[
            "role",
            "grant-permission",
            "--prefix=true",
            "elector",
            "readwrite",
            "leader-election/",
        ],
        &["user", "add", "elector", "--new-user-password=el3ctor-pw"],
        &["user", "grant-role", "elector", "elector"],
        &["auth", "enable"],
    ] {
        server.etcdctl(step);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let password_file = dir.path().join("etcd-password");
    std::fs::write(&password_file, "el3ctor-pw\n").expect("the password file");
    let password_file = password_file.to_str().expect("a UTF-8 path");
    let endpoint = server.endpoint();
    let login = [
        "--backend",
        "etcd",
        "--etcd-endpoints",
        &endpoint,
        "--lock-name",
        "walkthrough",
        "--etcd-user",
        "elector",
        "--etcd-password-file",
        password_file,
    ];
    let mut a = Demo::start("a", &with_timings(&login));
    a.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let mut b = Demo::start("b", &with_timings(&login));
    b.wait_for("following a", STARTUP, |event| {
        event.event == "following" && event.leader.as_deref() == Some("a")
    })
    .await;

    let wrong_file = dir.path().join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password").expect("the wrong password file");
    let mut wrong_login = login;
    wrong_login[9] = wrong_file.to_str().expect("a UTF-8 path");
    let mut args = with_timings(&wrong_login);
    args.extend(["--give-up-after", "1s"]);
    let mut c = Demo::start("c", &args);
    let status = c.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(3), "{}", c.report());
    let stderr = c.stderr();
    let line = stderr
        .lines()
        .find(|line| line.starts_with("error: gave up after 1s: "))
        .unwrap_or_else(|| panic!("no give-up line\n{}", c.report()));
    assert!(
        line.contains("authentication failed for user elector"),
        "{line}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    for demo in [&a, &b] {
        demo.interrupt();
    }
    for demo in [&mut a, &mut b] {
        let status = demo.wait_exit(EXIT).await;
        assert!(status.success(), "{}", demo.report());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_log_in_over_tls_and_a_missing_file_is_a_usage_error() {
    let server = EtcdServer::start_tls();
    let certificates = server.certificates().expect("a TLS server's certificates");
    let (ca, cert, key) = (
        certificates.ca_cert.to_str().expect("a UTF-8 path"),
        certificates.client_cert.to_str().expect("a UTF-8 path"),
        certificates.client_key.to_str().expect("a UTF-8 path"),
    );
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let mut a = Demo::start(
        "a",
        &with_timings(&[
            "--backend",
            "etcd",
            "--etcd-endpoints",
            &endpoint,
            "--etcd-ca",
            ca,
            "--etcd-cert",
            cert,
            "--etcd-key",
            key,
        ]),
    );
    a.wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    a.interrupt();
    assert!(a.wait_exit(EXIT).await.success(), "{}", a.report());

    let mut missing = Demo::start(
        "b",
        &with_timings(&[
            "--backend",
            "etcd",
            "--etcd-endpoints",
            &endpoint,
            "--etcd-ca",
            ca,
            "--etcd-cert",
            "/no/such/client.pem",
            "--etcd-key",
            key,
        ]),
    );
    let status = missing.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(2), "{}", missing.report());
    assert!(
        missing
            .stderr()
            .contains("error: --etcd-cert /no/such/client.pem: no such file"),
        "{}",
        missing.report()
    );
}
