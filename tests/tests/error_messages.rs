//! Issue 16: errors that say what to change. Each case makes a real fault (a Redis URL that
//! cannot be read, a `rediss://` URL against a plain `redis-server`, a listener that answers
//! HTTP or random bytes, a lock file in a directory this user may not write, a path through a
//! file, a 5 MB value in an etcd key) and checks the whole line a user of the demo reads, as
//! well as the lock's own error where the library is the interface.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use lock_core::{Lock, LockError};
use lock_redis::{RedisLock, RedisLockOptions};
use lock_tests::demo::{run_demo, Demo};
use lock_tests::servers::etcd::EtcdServer;
use lock_tests::servers::redis::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Longest wait for a line the demo prints at its first lock call.
const PROMPTLY: Duration = Duration::from_secs(20);

/// The prefix of the warning the elector logs for a failed lock call.
const RETRYING: &str = "lock call failed; retrying";

/// Short timeouts, so that a handshake nobody answers fails quickly.
fn quick() -> RedisLockOptions {
    RedisLockOptions::default()
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
}

/// A TCP listener on a free loopback port that answers every connection with `answer` (after
/// reading what the client sent first) and closes it. Returns its `HOST:PORT`.
async fn answering(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buffer)).await;
                let _ = socket.write_all(answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    address
}

/// The error of connecting to a lock at `url` (which checks the connection) or, should that
/// pass, of a `get` on it.
async fn get_error(url: &str) -> LockError {
    let attempt = async {
        let lock = RedisLock::connect(url, "orders", quick()).await?;
        lock.get().await.map(drop)
    };
    tokio::time::timeout(PROMPTLY, attempt)
        .await
        .expect("answers in time")
        .expect_err("no Redis answered")
}

const HTTP_ANSWER: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Bytes no Redis server sends (fixed, so that a failure can be replayed).
const RANDOM_BYTES: &[u8] = b"\x8f\x03\xd1\x7a\x00\xfe\x91\x42\x13\x37\xc0\xde\r\n\x99";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_http_or_random_bytes_is_not_taken_for_redis() {
    for answer in [HTTP_ANSWER, RANDOM_BYTES] {
        let address = answering(answer).await;
        let err = get_error(&format!("redis://{address}")).await;
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "the server at {address} did not answer as Redis (parse error"
            )),
            "{message}"
        );
        assert!(
            message.contains(
                "is it a Redis server? check the host and port in the URL; if it is a Redis \
                 server with TLS, write rediss://"
            ),
            "{message}"
        );
        assert!(!message.contains("Unexpected `"), "{message}");
        assert!(!message.contains("ParseError"), "{message}");
        assert!(err.is_retryable(), "{err:?}");
    }
    // Over TLS the same listener fails the handshake.
    let address = answering(HTTP_ANSWER).await;
    let message = get_error(&format!("rediss://{address}")).await.to_string();
    assert!(
        message.contains(&format!("the server at {address} did not answer TLS")),
        "{message}"
    );
    assert!(
        message.contains("a rediss:// URL needs a TLS port"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_against_a_plain_server_says_it_needs_tls() {
    let server = RedisServer::start();
    let address = format!("127.0.0.1:{}", server.port());
    let message = get_error(&format!("rediss://{address}")).await.to_string();
    assert!(
        message.contains(&format!(
            "is the server at {address} a Redis server with TLS?"
        )) || message.contains(&format!(
            "the server at {address} did not complete a TLS handshake"
        )),
        "{message}"
    );
    assert!(
        message.contains(
            "a rediss:// URL needs a TLS port (tls-port); for a plain Redis server write redis://"
        ),
        "{message}"
    );

    // The demo's warning says the same, on one line.
    let demo = Demo::start_with(
        "tls",
        &[
            "--instance",
            "a",
            "--backend",
            "redis",
            "--redis-url",
            &format!("rediss://{address}"),
        ],
    );
    let line = demo.stderr_line(RETRYING, PROMPTLY).await;
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains(
            "a rediss:// URL needs a TLS port (tls-port); for a plain Redis server write redis://"
        ),
        "{line}"
    );
    assert!(!line.ends_with("timed out"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_names_a_server_that_answers_http() {
    let address = answering(HTTP_ANSWER).await;
    let demo = Demo::start_with(
        "http",
        &[
            "--instance",
            "a",
            "--backend",
            "redis",
            "--redis-url",
            &format!("redis://{address}"),
        ],
    );
    let line = demo.stderr_line(RETRYING, PROMPTLY).await;
    assert!(
        line.contains(&format!("the server at {address} did not answer as Redis")),
        "{line}"
    );
    assert!(line.contains("is it a Redis server?"), "{line}");
    assert!(!demo.stderr().contains("Unexpected `"), "{}", demo.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_redis_url_is_echoed_without_its_password_and_with_the_expected_form() {
    for (url, shown, why) in [
        (
            "redis://app:s3cret@cache:notaport",
            "redis://app:***@cache:notaport",
            "Redis URL did not parse",
        ),
        (
            "redis://app:s3cret@cache:6379/abc",
            "redis://app:***@cache:6379/abc",
            "Invalid database number",
        ),
    ] {
        let output = run_demo(
            &["--instance", "a", "--backend", "redis", "--redis-url", url],
            PROMPTLY,
        )
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "error: invalid configuration: invalid Redis URL `{shown}`: {why}; expected \
                 redis://[USER:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS)"
            ),
            "{url}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
        assert!(!stderr.contains("InvalidClientConfig"), "{stderr}");
    }
}

/// The user the demo runs as in the permission tests: `nobody` on most systems.
const NOBODY: u32 = 65534;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_file_in_a_directory_this_user_may_not_write_names_the_file_and_the_user() {
    // Root-owned, world-readable, not writable by others: uid 65534 may look but not create.
    let top = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = top.path().join("locked");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let lock_file = dir.join("leader.json");

    let demo = Demo::start_as_user(
        "nobody",
        NOBODY,
        &[
            "--instance",
            "a",
            "--lock-file",
            lock_file.to_str().expect("a UTF-8 path"),
        ],
    );
    let line = demo.stderr_line(RETRYING, PROMPTLY).await;
    let user = match nix::unistd::User::from_uid(NOBODY.into()) {
        Ok(Some(user)) => format!("{} (uid {NOBODY})", user.name),
        _ => format!("uid {NOBODY}"),
    };
    assert!(
        line.ends_with(&format!(
            "permission denied: cannot create {}.lock as user {user}: make the directory {} \
             writable for this user, or choose another lock file (--lock-file)",
            lock_file.display(),
            dir.display()
        )),
        "{line}"
    );
    assert!(!lock_file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_file_under_a_plain_file_is_misconfigured_and_names_it() {
    let top = tempfile::tempdir().expect("a temporary directory");
    let file = top.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let lock_file = file.join("sub").join("leader.json");

    // The library's kind: permanent, not a passing fault.
    let lock = lock_file::FileLock::new(&lock_file);
    let err = lock
        .create(&lock_core::LeaderElectionRecord {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            ..Default::default()
        })
        .await
        .expect_err("no directory can be made under a file");
    assert!(matches!(err, LockError::Misconfigured { .. }), "{err:?}");
    assert!(err.is_permanent());

    let demo = Demo::start_with(
        "under-a-file",
        &[
            "--instance",
            "a",
            "--lock-file",
            lock_file.to_str().expect("a UTF-8 path"),
        ],
    );
    let line = demo.stderr_line(RETRYING, PROMPTLY).await;
    assert!(
        line.ends_with(&format!(
            "cannot resolve the path {}: {} is not a directory: choose another lock file \
             (--lock-file)",
            lock_file.display(),
            file.display()
        )),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5mb_value_in_the_etcd_key_is_reported_with_what_to_do() {
    const BIG: usize = 5 * 1024 * 1024;
    let server = EtcdServer::builder()
        .max_request_bytes(u32::try_from(BIG * 2).unwrap())
        .start();
    let key = "leader-election/huge";
    let mut raw = tokio::time::timeout(
        PROMPTLY,
        etcd_client::Client::connect([server.endpoint()], None),
    )
    .await
    .expect("connect in time")
    .expect("a raw client");
    tokio::time::timeout(PROMPTLY, raw.put(key, vec![b'x'; BIG], None))
        .await
        .expect("put in time")
        .expect("put 5 MB");

    let demo = Demo::start_with(
        "huge",
        &[
            "--instance",
            "a",
            "--backend",
            "etcd",
            "--etcd-endpoints",
            &server.endpoint(),
            "--lock-name",
            "huge",
        ],
    );
    let line = demo.stderr_line(RETRYING, PROMPTLY).await;
    // Reported as an error the user sees, not a retry logged at debug.
    assert!(
        line.contains(" ERROR ") || line.contains(" WARN "),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "the key {key} holds a value too large to be a leader election record: it exceeds \
             the client's gRPC message limit ("
        )),
        "{line}"
    );
    assert!(line.contains("the limit is 4194304 bytes"), "{line}");
    assert!(
        line.contains(&format!(
            "inspect it with `etcdctl get {key} --print-value-only | head -c 300`, then delete \
             it with `etcdctl del {key}`"
        )),
        "{line}"
    );
    assert!(line.contains("it was left untouched"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_url_against_a_tls_server_says_to_write_rediss() {
    let server = RedisServer::start_tls();
    let url = server.url().replacen("rediss://", "redis://", 1);
    let address = format!("127.0.0.1:{}", server.port());
    let message = get_error(&url).await.to_string();
    assert!(
        message.contains(&format!(
            "(the server at {address} closed the connection: if it is a Redis server with TLS, \
             write rediss://)"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_cannot_be_reached_is_one_line_with_the_cause() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: \
             https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  \
             user:\n    token: abc\ncontexts:\n- name: c\n  context:\n    cluster: t\n    user: \
             u\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let options = lock_k8s::KubeLockOptions::default()
        .with_namespace("team")
        .with_kubeconfig(&kubeconfig);
    let attempt = async {
        let lock = lock_k8s::connect(lock_k8s::LockKind::Lease, "orders", options).await?;
        lock.get().await.map(drop)
    };
    let err = tokio::time::timeout(PROMPTLY, attempt)
        .await
        .expect("answers in time")
        .expect_err("nothing listens");
    let message = err.to_string();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        message.contains("is unavailable: cannot reach the API server: "),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert!(
        message.ends_with(
            "check the server address in the kubeconfig (--kubeconfig) and that the API server \
             is running"
        ),
        "{message}"
    );
    assert!(!message.contains("ServiceError"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}
