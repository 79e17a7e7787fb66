//! The plot of "how it scales": renew latency (p50 and p99) and CPU against the number of
//! elections, one line per backend, as a PNG beside the report.
//!
//! Drawn with plotters' bitmap backend. Its text needs a font: plotters' `ab_glyph` feature
//! takes one from bytes, read from the Debian package fonts-dejavu-core (scripts/test installs
//! it), so that nothing here depends on fontconfig or a system library at build time.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{BenchError, BenchResult};
use crate::scaling::{backends, Point};

/// Where the font comes from, and what installs it.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_PACKAGE: &str = "apt-get install fonts-dejavu-core";

const SIZE: (u32, u32) = (1200, 520);
const COLOURS: [RGBColor; 4] = [
    RGBColor(200, 40, 40),
    RGBColor(30, 110, 200),
    RGBColor(40, 150, 60),
    RGBColor(150, 80, 170),
];

/// The image's path for a report written to `report`: `BENCHMARKS.md` → `BENCHMARKS-scaling.png`
/// in the same directory.
pub fn path_beside(report: &Path) -> PathBuf {
    let stem = report
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "BENCHMARKS".to_owned());
    report.with_file_name(format!("{stem}-scaling.png"))
}

/// One of the plot's two panels: a solid line per backend, and a dashed one if given.
struct Panel {
    caption: &'static str,
    unit: &'static str,
    solid: fn(&Point) -> f64,
    dashed: Option<fn(&Point) -> f64>,
}

const PANELS: [Panel; 2] = [
    Panel {
        caption: "Renew latency (p50 dashed, p99 solid)",
        unit: "ms",
        solid: |p| p.renew_p99.as_secs_f64() * 1_000.0,
        dashed: Some(|p| p.renew_p50.as_secs_f64() * 1_000.0),
    },
    Panel {
        caption: "CPU of the one process",
        unit: "cores",
        solid: |p| p.cores,
        dashed: None,
    },
];

/// Draws `points` into a PNG at `path`.
pub fn draw(points: &[Point], path: &Path) -> BenchResult<()> {
    load_font()?;
    let fail = |err: String| BenchError::Setup(format!("plot {}: {err}", path.display()));
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|err| fail(err.to_string()))?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    for (area, panel) in [left, right].iter().zip(&PANELS) {
        draw_panel(area, points, panel).map_err(fail)?;
    }
    root.present().map_err(|err| fail(err.to_string()))
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    points: &[Point],
    panel: &Panel,
) -> Result<(), String> {
    let text = |err: &dyn std::fmt::Display| err.to_string();
    let elections = span(points.iter().map(|p| p.elections as f64));
    let values = span(
        points
            .iter()
            .flat_map(|p| [Some((panel.solid)(p)), panel.dashed.map(|pick| pick(p))])
            .flatten(),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(elections.log_scale(), values.log_scale())
        .map_err(|err| text(&err))?;
    chart
        .configure_mesh()
        .x_desc("elections in one process")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(panel.unit)
        .draw()
        .map_err(|err| text(&err))?;
    for (index, backend) in backends(points).iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let series = |pick: fn(&Point) -> f64| -> Vec<(f64, f64)> {
            points
                .iter()
                .filter(|p| p.backend == *backend)
                .map(|p| (p.elections as f64, pick(p)))
                .collect()
        };
        let solid = series(panel.solid);
        chart
            .draw_series(LineSeries::new(solid.clone(), colour.stroke_width(2)))
            .map_err(|err| text(&err))?
            .label(backend.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(solid.iter().map(|&at| Circle::new(at, 4, colour.filled())))
            .map_err(|err| text(&err))?;
        if let Some(pick) = panel.dashed {
            chart
                .draw_series(DashedLineSeries::new(
                    series(pick),
                    6,
                    4,
                    colour.stroke_width(1),
                ))
                .map_err(|err| text(&err))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|err| text(&err))
}

/// The range of `values` on a log axis, widened so that every point is inside and a single
/// value still makes a range.
fn span(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|value| *value > 0.0)
        .fold((f64::MAX, f64::MIN), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if low > high {
        return 0.001..1.0;
    }
    low / 2.0..high * 2.0
}

/// Registers the font the plot's text uses (once per process; registering again is harmless).
fn load_font() -> BenchResult<()> {
    let bytes = std::fs::read(FONT).map_err(|err| {
        BenchError::Setup(format!(
            "the plot needs the font {FONT} ({err}); install it with: {FONT_PACKAGE}"
        ))
    })?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| BenchError::Setup(format!("{FONT} is not a font plotters can read")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn point(backend: &str, elections: usize, p99_ms: u64, cores: f64) -> Point {
        Point {
            backend: backend.to_owned(),
            elections,
            held_for: Duration::from_secs(10),
            renew_p50: Duration::from_millis(p99_ms / 2),
            renew_p99: Duration::from_millis(p99_ms),
            cores,
            server_cores: cores / 2.0,
            peak_rss: elections as u64 * 4096,
            leases_lost: 0,
        }
    }

    #[test]
    fn draws_a_png_of_the_plot_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        let points = [
            point("redis", 1_000, 2, 0.01),
            point("redis", 100_000, 9, 0.4),
            point("etcd", 1_000, 3, 0.02),
            point("etcd", 10_000, 12, 0.1),
            // One size only: a line of one point still draws.
            point("k8s", 1_000, 20, 0.05),
        ];
        draw(&points, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        // The IHDR chunk: width and height, big-endian, after the signature and chunk header.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), SIZE);
    }

    #[test]
    fn the_image_lies_beside_the_report() {
        assert_eq!(
            path_beside(Path::new("/w/BENCHMARKS.md")),
            Path::new("/w/BENCHMARKS-scaling.png")
        );
        assert_eq!(
            path_beside(Path::new("target/bench/BENCHMARKS-quick.md")),
            Path::new("target/bench/BENCHMARKS-quick-scaling.png")
        );
    }
}
