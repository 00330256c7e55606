//! `report.svg`: four panels over the run's time axis, drawn with `plotters`: each answered call's
//! wait, the calls waiting and in conversation, each conversation's one-way latency p99, and the
//! server's CPU.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::report::Report;

/// Draws the report's chart into `path`.
pub fn draw(path: &Path, report: &Report) -> Result<()> {
    let root = SVGBackend::new(path, (960, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
    let panels = root.split_evenly((4, 1));
    let t_max = report
        .timeline
        .last()
        .map(|p| p.t_s)
        .unwrap_or(1.0)
        .max(report.points.waits.last().map_or(0.0, |p| p.0))
        .max(1.0);

    let waits: Vec<(f64, f64)> = report.points.waits.clone();
    points_panel(
        &panels[0],
        "Wait of each answered call (s)",
        t_max,
        &waits,
        &BLUE,
    )?;

    let waiting: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|p| (p.t_s, p.waiting as f64))
        .collect();
    let talking: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|p| (p.t_s, p.in_conversation as f64))
        .collect();
    lines_panel(
        &panels[1],
        "Calls waiting and in conversation",
        t_max,
        &[
            ("in conversation", &talking, &GREEN),
            ("waiting", &waiting, &RED),
        ],
    )?;

    points_panel(
        &panels[2],
        "One-way latency p99 of each conversation (ms)",
        t_max,
        &report.points.latencies,
        &MAGENTA,
    )?;

    let cpu: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .filter_map(|p| Some((p.t_s, p.server_cpu_pct?)))
        .collect();
    lines_panel(
        &panels[3],
        "Server CPU (% of one core)",
        t_max,
        &[("server CPU", &cpu, &BLACK)],
    )?;
    root.present().map_err(|e| anyhow!("chart: {e}"))?;
    Ok(())
}

fn y_max(series: &[&[(f64, f64)]]) -> f64 {
    let m = series
        .iter()
        .flat_map(|s| s.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    if m <= 0.0 {
        1.0
    } else {
        m * 1.1
    }
}

/// A panel's axes: time on x, 0 to `y_top` on y, with its grid drawn.
fn frame<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    t_max: f64,
    y_top: f64,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..y_top)
        .map_err(|e| anyhow!("chart: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("s since the start")
        .draw()
        .map_err(|e| anyhow!("chart: {e}"))?;
    Ok(chart)
}

fn points_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    t_max: f64,
    points: &[(f64, f64)],
    color: &RGBColor,
) -> Result<()> {
    let mut chart = frame(area, title, t_max, y_max(&[points]))?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )
        .map_err(|e| anyhow!("chart: {e}"))?;
    Ok(())
}

/// One line of a panel: its legend, its points and its colour.
type Series<'a> = (&'a str, &'a [(f64, f64)], &'a RGBColor);

fn lines_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    t_max: f64,
    series: &[Series<'_>],
) -> Result<()> {
    let all: Vec<&[(f64, f64)]> = series.iter().map(|s| s.1).collect();
    let mut chart = frame(area, title, t_max, y_max(&all))?;
    for (name, points, color) in series {
        let color = **color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow!("chart: {e}"))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("chart: {e}"))?;
    }
    Ok(())
}
