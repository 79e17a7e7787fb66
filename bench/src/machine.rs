//! The machine and the versions a run measured, for the report.

use std::process::Command;

/// Facts about the machine and the software under test.
#[derive(Clone, Debug)]
pub struct Machine {
    /// `(name, value)` pairs, in report order.
    pub facts: Vec<(&'static str, String)>,
}

impl Machine {
    /// Reads `/proc` and asks each program for its version.
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or("unknown".to_owned(), |kib| {
                format!("{:.1} GiB", kib as f64 / 1048576.0)
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".to_owned(), |text| text.trim().to_owned());
        let apiserver = lock_tests::servers::kube::kube_apiserver_binary();
        let facts = vec![
            ("CPU", format!("{cpu}, {cores} cores available")),
            ("memory", memory),
            ("kernel", format!("Linux {kernel}")),
            ("rustc", first_line("rustc", &["--version"])),
            ("redis-server", first_line("redis-server", &["--version"])),
            ("etcd", first_line("etcd", &["--version"])),
            (
                "kube-apiserver",
                first_line(&apiserver.display().to_string(), &["--version"]),
            ),
            ("go", first_line(lock_tests::go::go_command(), &["version"])),
            ("client-go", client_go_version()),
        ];
        Self { facts }
    }
}

/// The first line a program prints for `args`, or why there is none.
fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        Err(err) => format!("not run ({err})"),
    }
}

/// The client-go version `interop/go.mod` requires.
fn client_go_version() -> String {
    let go_mod = concat!(env!("CARGO_MANIFEST_DIR"), "/../interop/go.mod");
    std::fs::read_to_string(go_mod)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.trim().strip_prefix("k8s.io/client-go "))
        .map_or("unknown".to_owned(), |version| version.trim().to_owned())
}
