//! docker-compose.yml, the Dockerfile and .dockerignore, checked without Docker: the compose
//! file parses as YAML; Redis and etcd run official images with health checks; three demo
//! instances built from the Dockerfile elect on Redis by default and three more on etcd under
//! the `etcd` profile, each waiting for its store to be healthy and publishing its `--http`
//! port on a host port of its own; and every flag their commands use is one `demo --help` lists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lock_tests::demo::run_demo;
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package is inside the workspace")
        .to_path_buf()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name))
        .unwrap_or_else(|err| panic!("cannot read {name} at the repository root: {err}"))
}

/// The compose file with `<<:` merge keys applied, as Docker Compose applies them.
fn compose() -> Value {
    let mut compose: Value =
        serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    compose.apply_merge().expect("merge keys apply");
    compose
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list: {value:?}"))
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("a string: {item:?}"))
                .to_owned()
        })
        .collect()
}

/// The value after `flag` in `command`.
fn flag<'a>(command: &'a [String], flag: &str) -> Option<&'a str> {
    let at = command.iter().position(|arg| arg == flag)?;
    command.get(at + 1).map(String::as_str)
}

fn demo_services(compose: &Value) -> Vec<(String, Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (name.as_str().expect("a name").to_owned(), service.clone()))
        .filter(|(_, service)| service.get("build").is_some())
        .collect()
}

#[test]
fn stores_run_official_images_with_health_checks() {
    let compose = compose();
    let services = &compose["services"];
    let redis = &services["redis"];
    assert!(
        redis["image"]
            .as_str()
            .expect("an image")
            .starts_with("redis:"),
        "{redis:?}"
    );
    assert_eq!(
        strings(&redis["healthcheck"]["test"]),
        ["CMD", "redis-cli", "ping"]
    );
    assert!(redis.get("profiles").is_none(), "Redis runs by default");
    let etcd = &services["etcd"];
    assert!(
        etcd["image"]
            .as_str()
            .expect("an image")
            .starts_with("quay.io/coreos/etcd:v3."),
        "{etcd:?}"
    );
    let test = strings(&etcd["healthcheck"]["test"]);
    assert_eq!(test[..2], ["CMD", "etcdctl"]);
    assert!(test.ends_with(&["endpoint".to_owned(), "health".to_owned()]));
    assert_eq!(strings(&etcd["profiles"]), ["etcd"]);
    for store in [redis, etcd] {
        let check = &store["healthcheck"];
        for key in ["interval", "timeout", "retries"] {
            assert!(check.get(key).is_some(), "{key} in {check:?}");
        }
    }
}

#[test]
fn three_instances_per_store_each_on_its_own_host_port() {
    let compose = compose();
    let demos = demo_services(&compose);
    let mut host_ports = BTreeSet::new();
    let mut by_backend: Vec<(String, Vec<String>, u16)> = Vec::new();
    for (name, service) in &demos {
        assert_eq!(service["build"]["context"], ".", "{name}");
        assert_eq!(service["build"]["dockerfile"], "Dockerfile", "{name}");
        let command = strings(&service["command"]);
        assert_eq!(flag(&command, "--instance"), Some(name.as_str()), "{name}");
        let backend = flag(&command, "--backend").expect("--backend").to_owned();
        let http = flag(&command, "--http").expect("--http");
        assert_eq!(http, "0.0.0.0:8080", "{name}");
        let ports = strings(&service["ports"]);
        let [port] = &ports[..] else {
            panic!("{name}: one published port, not {ports:?}")
        };
        let (host, container) = port.split_once(':').expect("HOST:CONTAINER");
        assert_eq!(container, "8080", "{name}: the --http port is published");
        let host: u16 = host.parse().expect("a host port");
        assert!(host_ports.insert(host), "{name}: host port {host} is taken");
        let (store, url_flag, url) = match backend.as_str() {
            "redis" => ("redis", "--redis-url", "redis://redis:6379"),
            "etcd" => ("etcd", "--etcd-endpoints", "http://etcd:2379"),
            other => panic!("{name}: unexpected backend {other}"),
        };
        assert_eq!(flag(&command, url_flag), Some(url), "{name}");
        assert_eq!(
            service["depends_on"][store]["condition"], "service_healthy",
            "{name}"
        );
        match store {
            "redis" => assert!(service.get("profiles").is_none(), "{name} runs by default"),
            _ => assert_eq!(strings(&service["profiles"]), ["etcd"], "{name}"),
        }
        assert_eq!(flag(&command, "--lock-name"), Some("compose"), "{name}");
        by_backend.push((backend, command, host));
    }
    let ports_of = |backend: &str| -> Vec<u16> {
        let mut ports: Vec<u16> = by_backend
            .iter()
            .filter(|(b, _, _)| b == backend)
            .map(|(_, _, port)| *port)
            .collect();
        ports.sort_unstable();
        ports
    };
    assert_eq!(ports_of("redis"), [8081, 8082, 8083]);
    assert_eq!(ports_of("etcd"), [8091, 8092, 8093]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_in_the_compose_file_is_one_the_demo_accepts() {
    let help = run_demo(&["--help"], Duration::from_secs(60)).await;
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).expect("UTF-8 help");
    let compose = compose();
    let mut checked = BTreeSet::new();
    for (name, service) in demo_services(&compose) {
        for arg in strings(&service["command"]) {
            if arg.starts_with("--") {
                let listed = help
                    .lines()
                    .any(|line| line.trim_start().split([' ', ',', '=']).next() == Some(&arg));
                assert!(
                    listed,
                    "{name}: {arg} is not a flag of demo --help:\n{help}"
                );
                checked.insert(arg);
            }
        }
        // And the command as a whole is accepted: the demo rejects bad flags before any IO,
        // and --help after them ends the run at once.
        let mut args = strings(&service["command"]);
        args.push("--help".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run_demo(&args, Duration::from_secs(60)).await;
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(checked.contains("--http") && checked.contains("--backend"));
}

#[test]
fn the_image_is_multi_stage_and_runs_the_demo_unprivileged() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].contains("rust:") && stages[0].ends_with(" AS builder"));
    assert!(stages[1].contains("debian:") && stages[1].contains("-slim"));
    assert!(dockerfile.contains("cargo build --release --locked -p demo"));
    assert!(dockerfile.contains("COPY --from=builder"));
    let user = dockerfile
        .lines()
        .rfind(|line| line.starts_with("USER "))
        .expect("a USER line");
    assert!(
        !user.contains("root") && !user.contains(" 0"),
        "runs as an unprivileged user: {user}"
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/demo"]"#));
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|line| line.trim() == "target/"));
    assert!(ignore.lines().any(|line| line.trim() == ".git/"));
}
