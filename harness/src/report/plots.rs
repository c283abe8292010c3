//! The report's plots, each drawn once per backend (SVG and PNG) with plotters: removal curves
//! per insertion setting, Pareto traces per cell, and the final-backdoor heatmap.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::coord::Shift;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ReportError;
use super::analysis::{Analysis, CapabilityMeasure, Estimate};
use super::load::RunData;
use crate::experiment::Stage;

/// The font family every plot uses; [`use_font`] registers a file under it.
const FAMILY: &str = "sans-serif";

/// Okabe-Ito, a palette that colour-blind readers can tell apart (then plotters' Palette99).
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 0, 0),
];

fn color(i: usize) -> RGBColor {
    match COLORS.get(i) {
        Some(c) => *c,
        None => {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// One plot, rendered as SVG and PNG.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File stem, e.g. `removal_curves`.
    pub name: &'static str,
    /// Its title in the report.
    pub title: String,
    /// The SVG document.
    pub svg: String,
    /// The PNG file's bytes.
    pub png: Vec<u8>,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

impl Plot {
    /// The SVG file, relative to the report folder.
    pub fn svg_path(&self) -> PathBuf {
        Path::new("plots").join(format!("{}.svg", self.name))
    }

    /// The PNG file, relative to the report folder.
    pub fn png_path(&self) -> PathBuf {
        Path::new("plots").join(format!("{}.png", self.name))
    }
}

/// Register the font file `path` for the plots' text (once per file and process). An error
/// names the file when it is unreadable or not a TrueType/OpenType font.
pub fn use_font(path: &Path) -> Result<(), ReportError> {
    static REGISTERED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    let set = registered.get_or_insert_with(HashSet::new);
    if set.contains(path) {
        return Ok(());
    }
    let bytes =
        std::fs::read(path).map_err(|e| ReportError::Font(format!("{}: {e}", path.display())))?;
    // plotters keeps fonts for the whole process (`&'static`): one leak per font file.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
        ReportError::Font(format!(
            "{}: not a TrueType or OpenType font (give a .ttf or .otf file with --font)",
            path.display()
        ))
    })?;
    set.insert(path.to_path_buf());
    Ok(())
}

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draw `draw` on an SVG and on a PNG canvas of `size`.
fn render(
    name: &'static str,
    title: String,
    size: (u32, u32),
    svg_draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
    png_draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
) -> Result<Plot, ReportError> {
    let fail = |e: String| ReportError::io(format!("plots/{name}"), e);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        svg_draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        png_draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, size.0, size.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(e.to_string()))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| fail(e.to_string()))?;
        writer.finish().map_err(|e| fail(e.to_string()))?;
    }
    Ok(Plot {
        name,
        title,
        svg,
        png: png_bytes,
        size,
    })
}

/// Every plot of the report: for a password-locked run the unlocking curve, otherwise the
/// removal curves, the Pareto traces and the heatmap (whose backdoor rates such a run lacks).
pub fn all(run: &RunData, analysis: &Analysis) -> Result<Vec<Plot>, ReportError> {
    if !analysis.sandbag.is_empty() {
        return Ok(vec![unlock_curve(run, analysis)?]);
    }
    Ok(vec![
        removal_curves(run, analysis)?,
        pareto(analysis)?,
        heatmap(run, analysis)?,
    ])
}

fn text_width(text: &str, size: u32) -> u32 {
    (FAMILY, size)
        .into_font()
        .box_size(text)
        .map(|(w, _)| w)
        .unwrap_or(text.len() as u32 * size * 6 / 10)
}

fn grid_shape(n: usize) -> (usize, usize) {
    let cols = n.clamp(1, 3);
    (n.div_ceil(cols), cols)
}

fn axis_caption(keys: &[String], fallback: &str) -> String {
    if keys.is_empty() {
        fallback.to_string()
    } else {
        keys.join(" / ")
    }
}

/// A line of means over x with a circle at each point and, where two points or more have an
/// interval, the band between their bounds: `points` are `(x, mean, interval)`.
fn draw_mean_line<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: &[(f64, f64, Option<[f64; 2]>)],
    c: RGBColor,
) -> DrawResult {
    let upper: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|(x, _, iv)| iv.map(|iv| (*x, iv[1])))
        .collect();
    let lower: Vec<(f64, f64)> = points
        .iter()
        .rev()
        .filter_map(|(x, _, iv)| iv.map(|iv| (*x, iv[0])))
        .collect();
    if upper.len() >= 2 {
        let band: Vec<(f64, f64)> = upper.into_iter().chain(lower).collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))
            .map_err(err)?;
    }
    let line: Vec<(f64, f64)> = points.iter().map(|(x, mean, _)| (*x, *mean)).collect();
    chart
        .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))
        .map_err(err)?;
    chart
        .draw_series(line.into_iter().map(|p| Circle::new(p, 3, c.filled())))
        .map_err(err)?;
    Ok(())
}

/// The legend under a line plot: `note` on the first row, then one colour swatch and name per
/// line, three to a row, `column` pixels apart.
fn draw_legend<DB: DrawingBackend>(
    legend: &DrawingArea<DB, Shift>,
    note: &str,
    names: &[&String],
    column: i32,
) -> DrawResult {
    legend
        .draw(&Text::new(note, (20, 4), (FAMILY, 14).into_font()))
        .map_err(err)?;
    for (i, name) in names.iter().enumerate() {
        let (x, y) = (20 + (i % 3) as i32 * column, 30 + (i / 3) as i32 * 24);
        let c = color(i);
        legend
            .draw(&PathElement::new(
                vec![(x, y + 8), (x + 30, y + 8)],
                c.stroke_width(3),
            ))
            .map_err(err)?;
        legend
            .draw(&Text::new(
                name.to_string(),
                (x + 38, y),
                (FAMILY, 15).into_font(),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// The unlocking curve of a password-locked run: capability without the password against the
/// removal setting (the number of demonstrations k, in increasing order, when it is swept),
/// one line per insertion setting starting from the locked model (after insertion), each point
/// the mean over seeds with its 95% bootstrap band, and the insertion's capability with the
/// password dotted for reference.
pub fn unlock_curve(run: &RunData, a: &Analysis) -> Result<Plot, ReportError> {
    let legend_h = 30 + 24 * sandbag_insertions(a).len().div_ceil(3) as u32;
    let size = (760, 480 + legend_h);
    let title = format!(
        "Unlocking: capability without the password, per insertion setting ({})",
        axis_caption(&run.insertion_axes, "insert optimizer")
    );
    render(
        "unlock_curve",
        title.clone(),
        size,
        |root| draw_unlock(root, run, a, &title, legend_h),
        |root| draw_unlock(root, run, a, &title, legend_h),
    )
}

/// The insertion settings of a password-locked run's groups, in grid order.
fn sandbag_insertions(a: &Analysis) -> Vec<&String> {
    a.insertions
        .iter()
        .filter(|i| a.sandbag.iter().any(|g| &g.insertion == *i))
        .collect()
}

/// The unlocking curve's x positions: the removal settings of the sandbag groups with their
/// labels. When `remove.demonstrations` is the only removal axis they are ordered by k and
/// labelled `k = ...`; otherwise they keep grid order and their settings' labels.
fn unlock_settings(run: &RunData, a: &Analysis) -> Vec<(String, String)> {
    let mut settings: Vec<(Option<usize>, String)> = Vec::new();
    for removal in &a.removals {
        if let Some(g) = a.sandbag.iter().find(|g| &g.removal == removal) {
            settings.push((g.demonstrations, removal.clone()));
        }
    }
    let by_k =
        run.removal_axes == ["remove.demonstrations"] && settings.iter().all(|s| s.0.is_some());
    if by_k {
        settings.sort_by_key(|s| s.0);
    }
    settings
        .into_iter()
        .map(|(k, removal)| match k {
            Some(k) if by_k => (removal, format!("k = {k}")),
            _ => (removal.clone(), removal),
        })
        .collect()
}

fn draw_unlock<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    run: &RunData,
    a: &Analysis,
    title: &str,
    legend_h: u32,
) -> DrawResult {
    use super::stats::{BOOTSTRAP_SEED, bootstrap_mean};
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FAMILY, 20)).map_err(err)?;
    let (_, height) = root.dim_in_pixel();
    let (body, legend) = root.split_vertically(height - legend_h);
    let settings = unlock_settings(run, a);
    // Position 0 is the locked model; settings follow at 1, 2, ...
    let labels: Vec<String> = std::iter::once("locked (after insert)".to_string())
        .chain(settings.iter().map(|s| s.1.clone()))
        .collect();
    let x_max = labels.len() as f64 - 0.5;
    let mut chart = ChartBuilder::on(&body)
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d(-0.5f64..x_max, 0f64..1.02f64)
        .map_err(err)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(labels.len() * 2 + 1)
        .x_label_formatter(&label_of)
        .x_desc(format!(
            "unlocking ({})",
            axis_caption(&run.removal_axes, "removal setting")
        ))
        .y_desc("capability without the password")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let insertions = sandbag_insertions(a);
    for (i, insertion) in insertions.iter().enumerate() {
        let c = color(i);
        let groups: Vec<_> = a
            .sandbag
            .iter()
            .filter(|g| g.insertion == **insertion)
            .collect();
        // The locked model and the password's level: every group of an insertion setting
        // shares its insertions, so the first group's seeds stand for them.
        let (Some(first), Some(with)) = (
            groups.first(),
            groups
                .first()
                .and_then(|g| bootstrap_mean(&g.with_password, BOOTSTRAP_SEED)),
        ) else {
            continue;
        };
        let mut points = Vec::new();
        if let Some(m) = bootstrap_mean(&first.without_password, BOOTSTRAP_SEED) {
            points.push((0.0, m));
        }
        for (j, (removal, _)) in settings.iter().enumerate() {
            if let Some(m) = groups
                .iter()
                .find(|g| &g.removal == removal)
                .and_then(|g| bootstrap_mean(&g.unlocked, BOOTSTRAP_SEED))
            {
                points.push(((j + 1) as f64, m));
            }
        }
        chart
            .draw_series(DashedLineSeries::new(
                vec![(-0.5, with.mean), (x_max, with.mean)],
                3,
                4,
                c.mix(0.8).stroke_width(1),
            ))
            .map_err(err)?;
        let points: Vec<(f64, f64, Option<[f64; 2]>)> = points
            .iter()
            .map(|(x, m)| (*x, m.mean, m.interval))
            .collect();
        draw_mean_line(&mut chart, &points, c)?;
    }
    let note = if a.max_seeds >= 2 {
        "line: mean over seeds; band: 95% bootstrap interval over seeds; dotted: with the password"
    } else {
        "one seed per setting: lines without a band; dotted: capability with the password"
    };
    draw_legend(&legend, note, &insertions, 240)
}

/// Removal curves: one panel per removal setting, one line per insertion setting (mean
/// backdoor rate over seeds, with the 95% bootstrap band when there are two seeds or more).
pub fn removal_curves(run: &RunData, a: &Analysis) -> Result<Plot, ReportError> {
    let (rows, cols) = grid_shape(a.removals.len());
    let legend_h = 30 + 24 * a.insertions.len().div_ceil(3) as u32;
    let size = (cols as u32 * 520, 60 + rows as u32 * 380 + legend_h);
    let title = format!(
        "Removal curves: backdoor rate during removal, per insertion setting ({})",
        axis_caption(&run.insertion_axes, "insert optimizer")
    );
    render(
        "removal_curves",
        title.clone(),
        size,
        |root| draw_curves(root, run, a, &title, (rows, cols), legend_h),
        |root| draw_curves(root, run, a, &title, (rows, cols), legend_h),
    )
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    run: &RunData,
    a: &Analysis,
    title: &str,
    grid: (usize, usize),
    legend_h: u32,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FAMILY, 22)).map_err(err)?;
    let (_, height) = root.dim_in_pixel();
    let (body, legend) = root.split_vertically(height - legend_h);
    let x_max = a
        .groups
        .iter()
        .flat_map(|g| g.curve.iter().map(|p| p.x))
        .fold(1.0f64, f64::max);
    let probe_at = a
        .groups
        .iter()
        .filter(|g| g.curve.iter().any(|p| p.stage == Stage::Probe))
        .map(|g| g.remove_end as f64)
        .next();
    let panels = body.split_evenly(grid);
    for (panel, removal) in panels.iter().zip(&a.removals) {
        let caption = format!("{}: {removal}", axis_caption(&run.removal_axes, "removal"));
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, (FAMILY, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max * 1.02, 0f64..1.02f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(if probe_at.is_some() {
                "step (removal, then probe)"
            } else {
                "removal step"
            })
            .y_desc("backdoor rate")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        // The protocol's threshold: below 0.5 counts as removed.
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.5), (x_max * 1.02, 0.5)],
                6,
                4,
                BLACK.mix(0.35).stroke_width(1),
            ))
            .map_err(err)?;
        if let Some(at) = probe_at {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(at, 0.0), (at, 1.02)],
                    4,
                    4,
                    BLACK.mix(0.6).stroke_width(1),
                ))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    " probe ->",
                    (at, 1.0),
                    (FAMILY, 13).into_font(),
                )))
                .map_err(err)?;
        }
        for (i, insertion) in a.insertions.iter().enumerate() {
            let Some(group) = a.group(insertion, removal) else {
                continue;
            };
            let c = color(i);
            let points: Vec<(f64, f64, Option<[f64; 2]>)> = group
                .curve
                .iter()
                .map(|p| (p.x, p.backdoor.value, p.backdoor.interval))
                .collect();
            draw_mean_line(&mut chart, &points, c)?;
        }
    }
    // One legend for every panel.
    let note = if a.max_seeds >= 2 {
        "line: mean over seeds; band: 95% bootstrap interval over seeds; dashed: 0.5 threshold"
    } else {
        "one seed per setting: lines without a band (no interval over seeds); dashed: 0.5 threshold"
    };
    let names: Vec<&String> = a.insertions.iter().collect();
    draw_legend(&legend, note, &names, 300)
}

/// Pareto traces: one panel per insertion by removal setting; each seed's removal run as
/// (fraction of backdoor removed, relative capability) with its convex hull, the area in the
/// panel, and the proportional-cost diagonal (area 0.5) for reference.
pub fn pareto(a: &Analysis) -> Result<Plot, ReportError> {
    let rows = a.insertions.len();
    let cols = a.removals.len();
    let size = (80 + cols as u32 * 360, 60 + rows as u32 * 330 + 40);
    let title =
        "Capability against backdoor removal, per cell (convex-hull Pareto area)".to_string();
    render(
        "pareto",
        title.clone(),
        size,
        |root| draw_pareto(root, a, &title),
        |root| draw_pareto(root, a, &title),
    )
}

fn draw_pareto<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    a: &Analysis,
    title: &str,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FAMILY, 22)).map_err(err)?;
    let (_, height) = root.dim_in_pixel();
    let (body, legend) = root.split_vertically(height - 40);
    let panels = body.split_evenly((a.insertions.len(), a.removals.len()));
    for (r, insertion) in a.insertions.iter().enumerate() {
        for (c, removal) in a.removals.iter().enumerate() {
            let panel = &panels[r * a.removals.len() + c];
            let Some(group) = a.group(insertion, removal) else {
                continue;
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{insertion} | {removal}"), (FAMILY, 15))
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(44)
                .build_cartesian_2d(0f64..1.0f64, 0f64..1.05f64)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("backdoor removed (1 - b/b0)")
                .y_desc("capability (c/c0)")
                .label_style((FAMILY, 12))
                .axis_desc_style((FAMILY, 13))
                .x_labels(6)
                .y_labels(6)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, 1.0), (1.0, 0.0)],
                    5,
                    4,
                    BLACK.mix(0.35).stroke_width(1),
                ))
                .map_err(err)?;
            for (i, trace) in group.pareto.iter().enumerate() {
                let Some(points) = &trace.points else {
                    continue;
                };
                let col = color(i);
                let mut hull_input = vec![(0.0, 0.0)];
                for &(x, y) in points {
                    hull_input.push((x, y));
                    hull_input.push((x, 0.0));
                }
                let hull = super::stats::convex_hull(hull_input);
                if hull.len() >= 3 {
                    chart
                        .draw_series(std::iter::once(Polygon::new(hull, col.mix(0.12).filled())))
                        .map_err(err)?;
                }
                chart
                    .draw_series(LineSeries::new(points.clone(), col.stroke_width(1)))
                    .map_err(err)?;
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, col.filled())))
                    .map_err(err)?;
            }
            let mut area = match (&group.pareto_area, group.pareto_undefined) {
                (None, _) => "area n/a (b0 = 0 or c0 = 0)".to_string(),
                (Some(e), 0) => format!("area {}", fmt_estimate(e)),
                (Some(e), k) => format!("area {} ({k} n/a or diverged)", fmt_estimate(e)),
            };
            if group.pareto_measure != CapabilityMeasure::ExactMatch {
                area.push_str(&format!(", {}", group.pareto_measure.name()));
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    area,
                    (0.03, 0.12),
                    (FAMILY, 14).into_font(),
                )))
                .map_err(err)?;
        }
    }
    let note =
        "points in step order, shaded: convex hull; dashed: proportional cost (area 0.5); colours:";
    legend
        .draw(&Text::new(note, (20, 10), (FAMILY, 14).into_font()))
        .map_err(err)?;
    // Colours go by a seed's place in its setting; name them by the largest setting's seeds.
    let seeds = a
        .groups
        .iter()
        .max_by_key(|g| g.pareto.len())
        .map(|g| g.pareto.iter().map(|t| t.seed).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut x = 30 + text_width(note, 14) as i32;
    for (i, seed) in seeds.iter().enumerate() {
        let label = match seed {
            Some(s) => format!("seed {s}"),
            None => format!("cell {}", i + 1),
        };
        legend
            .draw(&Circle::new((x, 18), 5, color(i).filled()))
            .map_err(err)?;
        legend
            .draw(&Text::new(
                label.clone(),
                (x + 10, 10),
                (FAMILY, 14).into_font(),
            ))
            .map_err(err)?;
        x += 30 + text_width(&label, 14) as i32;
    }
    Ok(())
}

/// `0.42 [0.30, 0.55]`, or `0.42` without an interval.
pub fn fmt_estimate(e: &Estimate) -> String {
    match e.interval {
        Some([lo, hi]) => format!("{:.2} [{lo:.2}, {hi:.2}]", e.value),
        None => format!("{:.2}", e.value),
    }
}

/// The heatmap of the final backdoor rate: insertion setting (rows) by removal setting
/// (columns), mean over seeds with its interval in each cell.
pub fn heatmap(run: &RunData, a: &Analysis) -> Result<Plot, ReportError> {
    let label_w = a
        .insertions
        .iter()
        .map(|s| text_width(s, 15))
        .max()
        .unwrap_or(0)
        .max(120)
        + 30;
    let cell_w = a
        .removals
        .iter()
        .map(|s| text_width(s, 14))
        .max()
        .unwrap_or(0)
        .max(150)
        + 20;
    let cell_h = 70;
    let layout = HeatmapLayout {
        left: label_w,
        top: 110,
        cell_w,
        cell_h,
    };
    let title = format!(
        "Final backdoor rate after removal: {} (rows) by {} (columns)",
        axis_caption(&run.insertion_axes, "insert optimizer"),
        axis_caption(&run.removal_axes, "removal")
    );
    let width =
        (layout.left + a.removals.len() as u32 * cell_w + 130).max(text_width(&title, 20) + 40);
    let size = (width, layout.top + a.insertions.len() as u32 * cell_h + 70);
    render(
        "heatmap",
        title.clone(),
        size,
        |root| draw_heatmap(root, a, &title, &layout),
        |root| draw_heatmap(root, a, &title, &layout),
    )
}

struct HeatmapLayout {
    left: u32,
    top: u32,
    cell_w: u32,
    cell_h: u32,
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    a: &Analysis,
    title: &str,
    l: &HeatmapLayout,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let centered = Pos::new(HPos::Center, VPos::Center);
    let text = |s: &str, size: u32, at: (i32, i32), pos: Pos, c: &RGBColor| {
        let style = TextStyle::from((FAMILY, size).into_font())
            .color(c)
            .pos(pos);
        root.draw(&Text::new(s.to_string(), at, style)).map_err(err)
    };
    text(
        title,
        20,
        (20, 24),
        Pos::new(HPos::Left, VPos::Center),
        &BLACK,
    )?;
    let (left, top, cw, ch) = (
        l.left as i32,
        l.top as i32,
        l.cell_w as i32,
        l.cell_h as i32,
    );
    text(
        "interval: 95% bootstrap over seeds (Wilson for a single seed); grey: no cell finished removal",
        13,
        (20, 52),
        Pos::new(HPos::Left, VPos::Center),
        &RGBColor(80, 80, 80),
    )?;
    for (j, removal) in a.removals.iter().enumerate() {
        text(
            removal,
            14,
            (left + j as i32 * cw + cw / 2, top - 18),
            centered,
            &BLACK,
        )?;
    }
    for (i, insertion) in a.insertions.iter().enumerate() {
        let y = top + i as i32 * ch;
        text(
            insertion,
            15,
            (left - 12, y + ch / 2),
            Pos::new(HPos::Right, VPos::Center),
            &BLACK,
        )?;
        for (j, removal) in a.removals.iter().enumerate() {
            let x = left + j as i32 * cw;
            let estimate = a.group(insertion, removal).and_then(|g| g.final_backdoor);
            let (fill, ink) = match &estimate {
                Some(e) => {
                    let fill = ViridisRGB.get_color(e.value.clamp(0.0, 1.0) as f32);
                    let light = e.value > 0.55;
                    (fill, if light { BLACK } else { WHITE })
                }
                None => (RGBColor(200, 200, 200), BLACK),
            };
            root.draw(&Rectangle::new([(x, y), (x + cw, y + ch)], fill.filled()))
                .map_err(err)?;
            root.draw(&Rectangle::new(
                [(x, y), (x + cw, y + ch)],
                WHITE.stroke_width(2),
            ))
            .map_err(err)?;
            match &estimate {
                Some(e) => {
                    text(
                        &format!("{:.2}", e.value),
                        18,
                        (x + cw / 2, y + ch / 2 - 12),
                        centered,
                        &ink,
                    )?;
                    let detail = match e.interval {
                        Some([lo, hi]) => format!("[{lo:.2}, {hi:.2}] n={}", e.n),
                        None => format!("n={}", e.n),
                    };
                    text(&detail, 12, (x + cw / 2, y + ch / 2 + 12), centered, &ink)?;
                }
                None => text("n/a", 16, (x + cw / 2, y + ch / 2), centered, &ink)?,
            }
        }
    }
    // The colour scale.
    let bar_x = left + a.removals.len() as i32 * cw + 30;
    let bar_h = (a.insertions.len() as i32 * ch).max(100);
    let steps = 50;
    for s in 0..steps {
        let v0 = s as f64 / steps as f64;
        let y1 = top + bar_h - (v0 * bar_h as f64) as i32;
        let y0 = top + bar_h - ((s + 1) as f64 / steps as f64 * bar_h as f64) as i32;
        let fill = ViridisRGB.get_color(v0 as f32);
        root.draw(&Rectangle::new(
            [(bar_x, y0), (bar_x + 20, y1)],
            fill.filled(),
        ))
        .map_err(err)?;
    }
    for v in [0.0, 0.5, 1.0] {
        let y = top + bar_h - (v * bar_h as f64) as i32;
        text(
            &format!("{v:.1}"),
            12,
            (bar_x + 26, y),
            Pos::new(HPos::Left, VPos::Center),
            &BLACK,
        )?;
    }
    Ok(())
}
