//! "How it scales": the runs of scenario 4 at every size (the smaller ones of the plan's
//! `scaling_elections` and the large ones), side by side per backend, as a table and a short
//! paragraph computed from the figures, and as the points of the plot (see `plot`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::scenario::many::ManyReport;
use crate::stats::millis;

/// One run of many elections, as the plot and the table show it.
#[derive(Clone, Debug)]
pub struct Point {
    /// The backend's name.
    pub backend: String,
    /// Elections held by the one process.
    pub elections: usize,
    /// How long they were held and measured.
    pub held_for: Duration,
    /// Median renew latency.
    pub renew_p50: Duration,
    /// 99th percentile renew latency.
    pub renew_p99: Duration,
    /// The process' CPU, in cores.
    pub cores: f64,
    /// The server's CPU, in cores.
    pub server_cores: f64,
    /// The process' peak resident memory, in bytes.
    pub peak_rss: u64,
    /// Terms lost.
    pub leases_lost: u64,
}

impl Point {
    fn of(report: &ManyReport) -> Self {
        Self {
            backend: report.backend.clone(),
            elections: report.elections,
            held_for: report.held_for,
            renew_p50: report.renew_p50,
            renew_p99: report.renew_p99,
            cores: report.cores,
            server_cores: report.server_cores,
            peak_rss: report.peak_rss,
            leases_lost: report.leases_lost,
        }
    }

    /// CPU for every thousand elections held.
    fn cores_per_thousand(&self) -> f64 {
        self.cores * 1_000.0 / self.elections.max(1) as f64
    }
}

/// The points of `reports`, by backend (in first-seen order), then by size.
pub fn points<'a>(reports: impl IntoIterator<Item = &'a ManyReport>) -> Vec<Point> {
    let mut points: Vec<Point> = reports.into_iter().map(Point::of).collect();
    let order = backends(&points);
    points.sort_by_key(|point| {
        let rank = order.iter().position(|name| *name == point.backend);
        (rank, point.elections)
    });
    points
}

/// Writes the "how it scales" section: a paragraph per backend with more than one size, the
/// table of every point, and the plot.
pub fn section(out: &mut String, points: &[Point], image: &str) {
    let _ = writeln!(
        out,
        "### How it scales\n\nScenario 4 at several sizes (the smaller ones held for a shorter \
         window, same timings), one process and one shared client each time. The figures below, \
         and the plot, come from the same run.\n"
    );
    for backend in backends(points) {
        let sizes: Vec<&Point> = points.iter().filter(|p| p.backend == backend).collect();
        let (Some(small), Some(large)) = (sizes.first(), sizes.last()) else {
            continue;
        };
        if sizes.len() < 2 {
            continue;
        }
        let growth = large.elections as f64 / small.elections.max(1) as f64;
        let per_election = large.cores_per_thousand() / small.cores_per_thousand().max(1e-9);
        let _ = writeln!(
            out,
            "- **{backend}**, {} to {} elections ({growth:.0}×): CPU {:.3} → {:.3} cores \
             ({:.4} → {:.4} cores per 1,000 elections, ×{:.2}), renew p99 {} → {}, peak \
             memory {:.1} → {:.1} KB an election{}.",
            small.elections,
            large.elections,
            small.cores,
            large.cores,
            small.cores_per_thousand(),
            large.cores_per_thousand(),
            per_election,
            millis(small.renew_p99),
            millis(large.renew_p99),
            kb_per_election(small),
            kb_per_election(large),
            if large.leases_lost + small.leases_lost == 0 {
                "; no lease lost"
            } else {
                "; leases were lost (see the table)"
            }
        );
    }
    let _ = writeln!(
        out,
        "\nEvery leader renews once per retry period, so the process' work is its renews: CPU \
         follows the number of elections, and the cost of one election (cores per 1,000) is \
         what the shared client and watch keep down. Renew latency is the server's answer time, \
         so compare it with the server's CPU.\n"
    );
    let _ = writeln!(
        out,
        "| backend | elections | held for | renew p50 | renew p99 | CPU (cores) | server CPU | peak RSS | leases lost |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for point in points {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} s | {} | {} | {:.3} | {:.3} | {:.0} MB | {} |",
            point.backend,
            point.elections,
            point.held_for.as_secs_f64(),
            millis(point.renew_p50),
            millis(point.renew_p99),
            point.cores,
            point.server_cores,
            point.peak_rss as f64 / 1_048_576.0,
            point.leases_lost
        );
    }
    let _ = writeln!(
        out,
        "\n![Renew latency and CPU against the number of elections]({image})\n"
    );
}

/// The backends of `points`, in their order.
pub fn backends(points: &[Point]) -> Vec<String> {
    points.iter().fold(Vec::new(), |mut seen, point| {
        if !seen.contains(&point.backend) {
            seen.push(point.backend.clone());
        }
        seen
    })
}

fn kb_per_election(point: &Point) -> f64 {
    point.peak_rss as f64 / point.elections.max(1) as f64 / 1024.0
}
