//! The quick fault campaign (issue 12): on every backend, three real `demo` instances through
//! proxies, and every kind of fault that applies to the backend injected once, in a seeded
//! order (see [`lock_tests::campaign`]). Fails on any violation of the history's rules, with
//! the schedule's seed: `CAMPAIGN_SEED=N cargo test -p lock-tests --test fault_campaign`
//! replays it. `CAMPAIGN_FAULTS=N` injects N faults per backend instead of one of each kind.
//!
//! The full campaign (a thousand faults per backend, the figures of RELIABILITY.md) is
//! `scripts/reliability`.

use lock_tests::campaign::fault::FaultKind;
use lock_tests::campaign::stats::BackendFigures;
use lock_tests::campaign::target::TargetKind;
use lock_tests::campaign::Campaign;

/// One campaign at a time: each runs three processes on second-scale timings, and two at once
/// on a small machine would measure the machine's load rather than the elector.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn quick(target: TargetKind) {
    let _one = ONE_AT_A_TIME.lock().await;
    let kinds = FaultKind::ALL
        .into_iter()
        .filter(|kind| kind.applies_to(target))
        .count();
    let faults = std::env::var("CAMPAIGN_FAULTS")
        .ok()
        .map(|n| n.parse().expect("CAMPAIGN_FAULTS is a number"))
        .unwrap_or(kinds);
    let campaign = Campaign::new(target, faults);
    let reports = campaign.run().await;
    let figures = BackendFigures::of(&reports);
    let markdown = figures.markdown(target.name());
    eprintln!("{markdown}");
    write_section(target, campaign.seed, &markdown);
    for report in &reports {
        if let (Some(failure), true) = (&report.failure_report, report.violations.is_empty()) {
            eprintln!("{failure}");
        }
        for fault in report.injected.iter().filter(|f| !f.detail.is_empty()) {
            eprintln!("{} at {}: {}", fault.kind.name(), fault.at, fault.detail);
        }
        if let (Some(failure), false) = (&report.failure_report, report.violations.is_empty()) {
            panic!(
                "{}\n{}\n{failure}\nreplay with CAMPAIGN_SEED={}",
                report.summary(),
                report.violations.join("\n"),
                campaign.seed
            );
        }
    }
    assert_eq!(
        figures.faults(),
        faults,
        "every scheduled fault was injected"
    );
    for kind in FaultKind::ALL.into_iter().filter(|k| k.applies_to(target)) {
        if faults >= kinds {
            assert!(
                figures.by_kind.contains_key(&kind),
                "{} was not injected",
                kind.name()
            );
        }
    }
    assert!(figures.terms > 0, "some instance led");
    assert!(figures.beats > 0, "the leaders' commands ran");
}

/// Writes the backend's section of the report to `$RELIABILITY_OUT/campaign-<backend>.md`
/// (default `target/reliability/`), which `scripts/reliability` puts into RELIABILITY.md.
fn write_section(target: TargetKind, seed: u64, markdown: &str) {
    let dir = std::env::var_os("RELIABILITY_OUT").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/reliability"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("make the report directory");
    let path = dir.join(format!("campaign-{}.md", target.name()));
    let text = format!("{markdown}\nSeed: `CAMPAIGN_SEED={seed}`.\n");
    std::fs::write(&path, text).expect("write the campaign report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_file() {
    quick(TargetKind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_redis() {
    quick(TargetKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_etcd() {
    quick(TargetKind::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_k8s_lease() {
    quick(TargetKind::K8sLease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_k8s_configmap() {
    quick(TargetKind::K8sConfigMap).await;
}
