//! SVG charts for the HTML report, drawn with `plotters`' SVG backend.
//!
//! Every chart is rendered into a `String` holding one standalone `<svg>` document. The output is
//! deterministic (the same input always gives the same bytes), text is emitted as `<text>`
//! elements (no font files are read: `plotters` runs with its built-in size estimate), and bad
//! input (NaN/∞ values, empty data, mismatched lengths) is reported as a [`PlotError`] instead of
//! a panic.

use std::fmt::Display;
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A chart could not be drawn: bad input or a drawing-backend failure.
#[derive(Debug, thiserror::Error)]
#[error("plot `{title}`: {reason}")]
pub struct PlotError {
    /// Title of the chart that failed.
    pub title: String,
    /// What went wrong.
    pub reason: String,
}

/// Result type of the plotting functions.
pub type PlotResult<T> = std::result::Result<T, PlotError>;

/// Scale of a numeric axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Linear scale.
    Linear,
    /// Base-10 logarithmic scale; non-positive values are skipped.
    Log,
}

/// How the points of a series are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Points joined by a line, no markers.
    Line,
    /// Markers only.
    Points,
    /// A line with a marker at every point.
    LinePoints,
}

/// One data series of a [`LineChart`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// `(x, y)` points, drawn in the given order.
    pub points: Vec<(f64, f64)>,
    /// How the points are drawn.
    pub mark: Mark,
    /// Optional ± error bar per point (same length as `points`).
    pub error: Option<Vec<f64>>,
    /// Draw the line dashed.
    pub dashed: bool,
}

/// A line / scatter chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title drawn above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Scale of the x axis.
    pub x_axis: Axis,
    /// Scale of the y axis.
    pub y_axis: Axis,
    /// The data series (colours from a fixed 8-colour palette, reused cyclically).
    pub series: Vec<Series>,
    /// Vertical reference lines (x, label), drawn dashed.
    pub vlines: Vec<(f64, String)>,
    /// Width of the SVG in pixels.
    pub width: u32,
    /// Height of the SVG in pixels.
    pub height: u32,
}

/// A bar chart with one bar (or a pair of bars) per category.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title drawn above the chart.
    pub title: String,
    /// Label of the value axis.
    pub y_label: String,
    /// Scale of the value axis.
    pub y_axis: Axis,
    /// (category, value) bars; optional second value per bar drawn as a paired bar (e.g. "paper").
    pub bars: Vec<(String, f64, Option<f64>)>,
    /// Legend labels of the first and (optional) second value of each bar.
    pub series_labels: (String, Option<String>),
    /// Width of the SVG in pixels.
    pub width: u32,
    /// Height of the SVG in pixels.
    pub height: u32,
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy)]
pub struct ReliabilityBin {
    /// Lower confidence bound of the bin, in `[0, 1]`.
    pub lower: f64,
    /// Upper confidence bound of the bin, in `[0, 1]`.
    pub upper: f64,
    /// Mean confidence of the samples in the bin.
    pub confidence: f64,
    /// Accuracy of the samples in the bin.
    pub accuracy: f64,
    /// Number of samples in the bin (empty bins are not drawn).
    pub count: usize,
}

/// Heat map of an n×n matrix (row-major `values`), with a colour bar; `groups` are boundaries
/// (indices) where class blocks start, drawn as lines; `log_scale` colours log10(value) (values
/// ≤ 0 drawn as the minimum colour).
#[derive(Debug, Clone)]
pub struct HeatMap {
    /// Title drawn above the map.
    pub title: String,
    /// Number of rows (= columns).
    pub n: usize,
    /// Row-major values, `n * n` of them; row 0 is drawn at the top.
    pub values: Vec<f64>,
    /// Indices where class blocks start; a line is drawn before row/column `g` for `0 < g < n`.
    pub groups: Vec<usize>,
    /// Colour by `log10(value)` instead of the value.
    pub log_scale: bool,
    /// Width of the SVG in pixels.
    pub width: u32,
    /// Height of the SVG in pixels.
    pub height: u32,
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const MIN_WIDTH: u32 = 200;
const MIN_HEIGHT: u32 = 150;
const MAX_SIDE: u32 = 20_000;

/// Series colours (matplotlib's "tab10", first eight).
static PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

static TEXT: RGBColor = RGBColor(34, 34, 34);
static GRID: RGBColor = RGBColor(220, 220, 220);
static LIGHT_GRID: RGBColor = RGBColor(242, 242, 242);
static REF_LINE: RGBColor = RGBColor(90, 90, 90);
static FRAME: RGBColor = RGBColor(120, 120, 120);
static ACC_BAR: RGBColor = RGBColor(31, 119, 180);
static GAP: RGBColor = RGBColor(214, 39, 40);

/// Viridis colour map anchors at 0, 1/8, ..., 1.
const VIRIDIS: [(f64, f64, f64); 9] = [
    (68.0, 1.0, 84.0),
    (71.0, 44.0, 122.0),
    (59.0, 81.0, 139.0),
    (44.0, 113.0, 142.0),
    (33.0, 144.0, 141.0),
    (39.0, 173.0, 129.0),
    (92.0, 200.0, 99.0),
    (170.0, 220.0, 50.0),
    (253.0, 231.0, 37.0),
];

fn fail(title: &str, reason: impl Display) -> PlotError {
    PlotError {
        title: title.to_string(),
        reason: reason.to_string(),
    }
}

/// Maps any displayable error into a [`PlotError`] for the given chart.
trait Ctx<T> {
    fn ctx(self, title: &str) -> PlotResult<T>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, title: &str) -> PlotResult<T> {
        self.map_err(|e| fail(title, format!("drawing failed: {e}")))
    }
}

fn check_size(title: &str, width: u32, height: u32) -> PlotResult<()> {
    if !(MIN_WIDTH..=MAX_SIDE).contains(&width) || !(MIN_HEIGHT..=MAX_SIDE).contains(&height) {
        return Err(fail(
            title,
            format!(
                "size {width}x{height} px is outside {MIN_WIDTH}..={MAX_SIDE} x \
                 {MIN_HEIGHT}..={MAX_SIDE}"
            ),
        ));
    }
    Ok(())
}

/// Creates the SVG document, lets `draw` fill it and returns the finished text.
fn render(
    title: &str,
    width: u32,
    height: u32,
    draw: impl FnOnce(&Root<'_>) -> PlotResult<()>,
) -> PlotResult<String> {
    check_size(title, width, height)?;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).ctx(title)?;
        draw(&root)?;
        root.present().ctx(title)?;
    }
    Ok(buf)
}

/// A text style of `px` pixels (plotters divides the nominal size by 1.24 in SVG output).
fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from(FontDesc::new(
        FontFamily::SansSerif,
        px * 1.24,
        FontStyle::Normal,
    ))
    .color(&TEXT)
}

fn anchored(style: TextStyle<'static>, h: HPos, v: VPos) -> TextStyle<'static> {
    style.pos(Pos::new(h, v))
}

/// Rough width in pixels of `text` at `px` pixels (sans-serif average glyph width ≈ 0.58 em).
fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * 0.58
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let keep = max_chars.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
}

/// Greedy word wrap to lines of at most `max_chars` characters (long words are split).
fn wrap(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(4);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > max_chars {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let rest = word.split_off(max_chars);
            lines.push(word.into_iter().collect());
            word = rest;
        }
        let word: String = word.into_iter().collect();
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > max_chars {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws the chart title centred at the top of `root`; returns the height it used.
fn draw_title(root: &Root<'_>, title: &str, width: u32) -> PlotResult<i32> {
    if title.trim().is_empty() {
        return Ok(8);
    }
    let style = anchored(font(17.0), HPos::Center, VPos::Top);
    let max_chars = ((f64::from(width) - 20.0) / (17.0 * 0.58)).max(8.0) as usize;
    let text = truncate_chars(title, max_chars);
    root.draw_text(&text, &style, (width as i32 / 2, 8))
        .ctx(title)?;
    Ok(34)
}

/// Formats a tick value compactly; `span` (the axis extent, or 0) sets the precision and
/// snaps values that are zero up to rounding error.
fn fmt_num(v: f64, span: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let span = span.abs();
    if v == 0.0 || (span > 0.0 && v.abs() < span * 1e-9) {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
            None => s,
        };
    }
    let mag = a.log10().floor() as i32;
    let mut decimals = 3 - mag;
    if span > 0.0 && span.is_finite() {
        decimals = decimals.max(1 - span.log10().floor() as i32);
    }
    let s = format!("{:.*}", decimals.clamp(0, 10) as usize, v);
    let s = trim_zeros(&s);
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// Formats a data value with about three significant digits.
fn fmt_val(v: f64) -> String {
    let a = v.abs();
    if v.is_finite() && (1e-3..1e5).contains(&a) {
        let mag = a.log10().floor() as i32;
        trim_zeros(&format!("{:.*}", (2 - mag).clamp(0, 10) as usize, v))
    } else {
        fmt_num(v, 0.0)
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// "Nice" ticks (1, 2, 5 × 10^k steps) covering `[lo, hi]`, at most about `max` of them.
fn nice_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) || max == 0 {
        return Vec::new();
    }
    let raw = span / max.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    if last < first || last - first > 1000 {
        return Vec::new();
    }
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Ticks of a log axis over `[lo, hi]` (both > 0): decades, else 1-2-5 multiples, else linear
/// nice ticks. With `minor`, the 2..9 multiples of each decade are added.
fn log_ticks(lo: f64, hi: f64, max: usize, minor: bool) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) || max == 0 {
        return Vec::new();
    }
    let e0 = lo.log10().ceil() as i32;
    let e1 = hi.log10().floor() as i32;
    let decades = if e1 >= e0 { (e1 - e0 + 1) as usize } else { 0 };
    if decades >= 2 {
        let step = decades.div_ceil(max.max(1)).max(1);
        let mut ticks: Vec<f64> = (e0..=e1).step_by(step).map(|e| 10f64.powi(e)).collect();
        if minor && step == 1 {
            for e in (e0 - 1)..=e1 {
                for m in 2..=9 {
                    let v = f64::from(m) * 10f64.powi(e);
                    if v >= lo && v <= hi {
                        ticks.push(v);
                    }
                }
            }
            ticks.sort_by(f64::total_cmp);
        }
        return ticks;
    }
    let mut ticks = Vec::new();
    for e in (e0 - 1)..=(e1 + 1) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
    }
    if ticks.len() >= 3 && ticks.len() <= max {
        return ticks;
    }
    nice_ticks(lo, hi, max.min(6))
}

/// A linear or log10 axis over `[lo, hi]` as one concrete `plotters` coordinate type.
#[derive(Clone)]
struct AxisCoord {
    scale: Axis,
    lo: f64,
    hi: f64,
    inner: RangedCoordf64,
}

impl AxisCoord {
    fn new(scale: Axis, lo: f64, hi: f64) -> Self {
        let inner = match scale {
            Axis::Linear => (lo..hi).into(),
            Axis::Log => (lo.log10()..hi.log10()).into(),
        };
        Self {
            scale,
            lo,
            hi,
            inner,
        }
    }

    /// Extent used to choose tick label precision (0 for log axes: precision per value).
    fn label_span(&self) -> f64 {
        match self.scale {
            Axis::Linear => self.hi - self.lo,
            Axis::Log => 0.0,
        }
    }
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        match self.scale {
            Axis::Linear => self.inner.map(value, limit),
            Axis::Log => {
                let v = if *value > 0.0 { *value } else { self.lo };
                self.inner.map(&v.log10(), limit)
            }
        }
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match self.scale {
            Axis::Linear => self.inner.key_points(hint),
            Axis::Log => log_ticks(
                self.lo,
                self.hi,
                hint.max_num_points(),
                hint.weight().allow_light_points(),
            ),
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// Running min/max of the values that will be plotted.
#[derive(Default)]
struct Extent {
    range: Option<(f64, f64)>,
}

impl Extent {
    fn add(&mut self, v: f64) {
        self.range = Some(match self.range {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }
}

/// Pads a data range by 5 % on each side (in log space for log axes).
fn padded_range(title: &str, what: &str, lo: f64, hi: f64, scale: Axis) -> PlotResult<(f64, f64)> {
    let (a, b) = match scale {
        Axis::Linear => {
            let span = hi - lo;
            let pad = if span > 0.0 {
                span * 0.05
            } else if lo == 0.0 {
                1.0
            } else {
                lo.abs() * 0.1
            };
            (lo - pad, hi + pad)
        }
        Axis::Log => {
            let (l, h) = (lo.log10(), hi.log10());
            let pad = if h > l { (h - l) * 0.05 } else { 0.3 };
            (10f64.powf(l - pad), 10f64.powf(h + pad))
        }
    };
    let ok = a.is_finite()
        && b.is_finite()
        && a < b
        && (b - a).is_finite()
        && (scale == Axis::Linear || a > 0.0);
    if ok {
        Ok((a, b))
    } else {
        Err(fail(
            title,
            format!("{what} range [{lo:?}, {hi:?}] is too extreme to plot"),
        ))
    }
}

fn y_label_area(coord: &AxisCoord, has_desc: bool) -> u32 {
    let span = coord.label_span();
    let widest = coord
        .key_points(10usize)
        .iter()
        .map(|v| text_width(&fmt_num(*v, span), 12.0))
        .fold(0.0, f64::max);
    let desc = if has_desc { 24.0 } else { 4.0 };
    (widest + 14.0 + desc).clamp(40.0, 140.0) as u32
}

fn series_color(i: usize) -> &'static RGBColor {
    &PALETTE[i % PALETTE.len()]
}

/// Draws a short legend sample (line / dashed line / marker) from `x` to `x + 28` at height `y`.
fn legend_sample(
    area: &Root<'_>,
    title: &str,
    (x, y): (i32, i32),
    color: &RGBColor,
    mark: Mark,
    dashed: bool,
) -> PlotResult<()> {
    let stroke = color.stroke_width(2);
    if mark != Mark::Points {
        if dashed {
            for k in 0..3 {
                let x0 = x + k * 10;
                area.draw(&PathElement::new(vec![(x0, y), (x0 + 6, y)], stroke))
                    .ctx(title)?;
            }
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 28, y)], stroke))
                .ctx(title)?;
        }
    }
    if mark != Mark::Line {
        area.draw(&Circle::new((x + 14, y), 3, color.filled()))
            .ctx(title)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Line chart
// ---------------------------------------------------------------------------------------------

/// A point kept for drawing: `(x, y, error)`.
type Kept = (f64, f64, Option<f64>);

fn validate_line_chart(chart: &LineChart) -> PlotResult<()> {
    let t = chart.title.as_str();
    if chart.series.is_empty() {
        return Err(fail(t, "no series to plot"));
    }
    for s in &chart.series {
        let bad = s
            .points
            .iter()
            .enumerate()
            .find(|(_, p)| !p.0.is_finite() || !p.1.is_finite());
        if let Some((i, p)) = bad {
            return Err(fail(
                t,
                format!(
                    "series `{}` has a non-finite point at index {i}: ({:?}, {:?})",
                    s.label, p.0, p.1
                ),
            ));
        }
        if let Some(err) = &s.error {
            if err.len() != s.points.len() {
                return Err(fail(
                    t,
                    format!(
                        "series `{}` has {} error values for {} points",
                        s.label,
                        err.len(),
                        s.points.len()
                    ),
                ));
            }
            if let Some((i, e)) = err
                .iter()
                .enumerate()
                .find(|(_, e)| !(e.is_finite() && **e >= 0.0))
            {
                return Err(fail(
                    t,
                    format!(
                        "series `{}` has an invalid error bar at index {i}: {e:?} (must be finite and \
                         ≥ 0)",
                        s.label
                    ),
                ));
            }
        }
    }
    if let Some((x, label)) = chart.vlines.iter().find(|(x, _)| !x.is_finite()) {
        return Err(fail(
            t,
            format!("vertical line `{label}` is at non-finite x = {x:?}"),
        ));
    }
    Ok(())
}

/// Splits a series into runs of points that can be drawn on the chosen axes.
fn kept_runs(chart: &LineChart, s: &Series) -> Vec<Vec<Kept>> {
    let mut runs: Vec<Vec<Kept>> = Vec::new();
    let mut run: Vec<Kept> = Vec::new();
    for (i, &(x, y)) in s.points.iter().enumerate() {
        let ok =
            (chart.x_axis == Axis::Linear || x > 0.0) && (chart.y_axis == Axis::Linear || y > 0.0);
        if ok {
            let e = s.error.as_ref().and_then(|e| e.get(i).copied());
            run.push((x, y, e));
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// Renders a line/scatter chart with a legend. Ranges come from the data (with a small margin);
/// log axes skip non-positive values (and error if nothing positive is left).
pub fn line_chart(chart: &LineChart) -> PlotResult<String> {
    let t = chart.title.as_str();
    check_size(t, chart.width, chart.height)?;
    validate_line_chart(chart)?;

    let runs: Vec<Vec<Vec<Kept>>> = chart.series.iter().map(|s| kept_runs(chart, s)).collect();
    let mut xs = Extent::default();
    let mut ys = Extent::default();
    for &(x, y, e) in runs.iter().flatten().flatten() {
        xs.add(x);
        ys.add(y);
        if let Some(e) = e {
            ys.add(y + e);
            if chart.y_axis == Axis::Linear || y - e > 0.0 {
                ys.add(y - e);
            }
        }
    }
    let (Some((x_lo, x_hi)), Some((y_lo, y_hi))) = (xs.range, ys.range) else {
        let why = if chart.x_axis == Axis::Log || chart.y_axis == Axis::Log {
            "no plottable points (log axes skip non-positive values)"
        } else {
            "no points in any series"
        };
        return Err(fail(t, why));
    };
    let (mut x_lo, mut x_hi) = (x_lo, x_hi);
    for (x, _) in &chart.vlines {
        if chart.x_axis == Axis::Linear || *x > 0.0 {
            x_lo = x_lo.min(*x);
            x_hi = x_hi.max(*x);
        }
    }
    let (x_lo, x_hi) = padded_range(t, "x", x_lo, x_hi, chart.x_axis)?;
    let (y_lo, y_hi) = padded_range(t, "y", y_lo, y_hi, chart.y_axis)?;
    let x_coord = AxisCoord::new(chart.x_axis, x_lo, x_hi);
    let y_coord = AxisCoord::new(chart.y_axis, y_lo, y_hi);

    render(t, chart.width, chart.height, |root| {
        let (w, h) = (chart.width as i32, chart.height as i32);
        let title_h = draw_title(root, t, chart.width)?;

        // Legend column on the right, sized to the labels.
        let longest = chart
            .series
            .iter()
            .map(|s| text_width(&s.label, 13.0))
            .fold(0.0, f64::max);
        let legend_w = (longest + 56.0).min(f64::from(w) * 0.35).max(60.0) as i32;
        let (_, body) = root.split_vertically(title_h);
        let (plot, legend) = body.split_horizontally(w - legend_w);

        let x_span = x_coord.label_span();
        let y_span = y_coord.label_span();
        let x_fmt = move |v: &f64| fmt_num(*v, x_span);
        let y_fmt = move |v: &f64| fmt_num(*v, y_span);
        let ylw = y_label_area(&y_coord, !chart.y_label.is_empty());
        let mut cc = ChartBuilder::on(&plot)
            .margin_top(8)
            .margin_right(12)
            .margin_left(6)
            .margin_bottom(6)
            .x_label_area_size(if chart.x_label.is_empty() { 26 } else { 48 })
            .y_label_area_size(ylw)
            .build_cartesian_2d(x_coord.clone(), y_coord.clone())
            .ctx(t)?;
        cc.configure_mesh()
            .x_desc(chart.x_label.as_str())
            .y_desc(chart.y_label.as_str())
            .label_style(font(12.0))
            .axis_desc_style(font(14.0))
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .bold_line_style(GRID)
            .light_line_style(LIGHT_GRID)
            .max_light_lines(4)
            .axis_style(FRAME)
            .draw()
            .ctx(t)?;

        // Reference lines first, so data is drawn over them (labels come last).
        for (x, _) in &chart.vlines {
            if chart.x_axis == Axis::Log && *x <= 0.0 {
                continue;
            }
            cc.draw_series(DashedLineSeries::new(
                vec![(*x, y_lo), (*x, y_hi)],
                6,
                4,
                REF_LINE.stroke_width(1),
            ))
            .ctx(t)?;
        }

        for (i, (s, s_runs)) in chart.series.iter().zip(&runs).enumerate() {
            let color = series_color(i);
            let stroke = color.stroke_width(2);
            for run in s_runs {
                let pts: Vec<(f64, f64)> = run.iter().map(|&(x, y, _)| (x, y)).collect();
                if s.mark != Mark::Points {
                    if s.dashed {
                        cc.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, stroke))
                            .ctx(t)?;
                    } else {
                        cc.draw_series(LineSeries::new(pts.clone(), stroke))
                            .ctx(t)?;
                    }
                }
                if s.mark != Mark::Line {
                    let r = if s.mark == Mark::Points { 4 } else { 3 };
                    cc.draw_series(pts.iter().map(|&p| Circle::new(p, r, color.filled())))
                        .ctx(t)?;
                }
                let bar_style = color.stroke_width(1);
                for &(x, y, e) in run {
                    let Some(e) = e.filter(|e| *e > 0.0) else {
                        continue;
                    };
                    let lower = if chart.y_axis == Axis::Log && y - e <= 0.0 {
                        y_lo
                    } else {
                        y - e
                    };
                    let upper = y + e;
                    cc.draw_series(std::iter::once(PathElement::new(
                        vec![(x, lower), (x, upper)],
                        bar_style,
                    )))
                    .ctx(t)?;
                    for end in [lower, upper] {
                        cc.draw_series(std::iter::once(
                            EmptyElement::at((x, end))
                                + PathElement::new(vec![(-4, 0), (4, 0)], bar_style),
                        ))
                        .ctx(t)?;
                    }
                }
            }
        }

        // Reference line labels last, on a translucent backdrop so they stay legible.
        for (x, label) in &chart.vlines {
            if label.is_empty() || (chart.x_axis == Axis::Log && *x <= 0.0) {
                continue;
            }
            let (px, py) = cc.backend_coord(&(*x, y_hi));
            let max_chars = ((f64::from(h) * 0.5) / (11.0 * 0.58)) as usize;
            let text = truncate_chars(label, max_chars);
            let len = text_width(&text, 11.0) as i32;
            root.draw(&Rectangle::new(
                [(px + 2, py + 2), (px + 16, py + 8 + len)],
                WHITE.mix(0.8).filled(),
            ))
            .ctx(t)?;
            let style = TextStyle::from(
                FontDesc::new(FontFamily::SansSerif, 11.0 * 1.24, FontStyle::Normal)
                    .transform(FontTransform::Rotate90),
            )
            .color(&REF_LINE)
            .pos(Pos::new(HPos::Left, VPos::Bottom));
            root.draw_text(&text, &style, (px + 3, py + 4)).ctx(t)?;
        }

        // Legend.
        let label_px = 13.0;
        let max_chars = ((f64::from(legend_w) - 50.0) / (label_px * 0.58)).max(4.0) as usize;
        let line_h = 17;
        let mut y = 18;
        let legend_h = h - title_h;
        for (i, s) in chart.series.iter().enumerate() {
            let lines = wrap(&s.label, max_chars);
            if y + line_h * lines.len() as i32 > legend_h - 4 {
                let more = chart.series.len() - i;
                legend
                    .draw_text(
                        &format!("… {more} more"),
                        &anchored(font(12.0), HPos::Left, VPos::Center),
                        (8, y),
                    )
                    .ctx(t)?;
                break;
            }
            legend_sample(&legend, t, (4, y), series_color(i), s.mark, s.dashed)?;
            for (k, line) in lines.iter().enumerate() {
                legend
                    .draw_text(
                        line,
                        &anchored(font(label_px), HPos::Left, VPos::Center),
                        (40, y + k as i32 * line_h),
                    )
                    .ctx(t)?;
            }
            y += line_h * lines.len() as i32 + 6;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Bar chart
// ---------------------------------------------------------------------------------------------

/// Renders a bar chart: one bar per category, or a pair when a second value is given (second
/// bar in the second palette colour). On a log axis non-positive bars are left out (error if none
/// is positive). Values are printed above bars when they fit.
pub fn bar_chart(chart: &BarChart) -> PlotResult<String> {
    let t = chart.title.as_str();
    check_size(t, chart.width, chart.height)?;
    if chart.bars.is_empty() {
        return Err(fail(t, "no bars to plot"));
    }
    for (cat, a, b) in &chart.bars {
        if !a.is_finite() {
            return Err(fail(t, format!("bar `{cat}` has non-finite value {a:?}")));
        }
        if let Some(b) = b.filter(|b| !b.is_finite()) {
            return Err(fail(
                t,
                format!("bar `{cat}` has non-finite second value {b:?}"),
            ));
        }
    }
    let log = chart.y_axis == Axis::Log;
    let values: Vec<f64> = chart
        .bars
        .iter()
        .flat_map(|(_, a, b)| std::iter::once(*a).chain(*b))
        .filter(|v| !log || *v > 0.0)
        .collect();
    let mut ext = Extent::default();
    values.iter().for_each(|v| ext.add(*v));
    let Some((lo, hi)) = ext.range else {
        return Err(fail(t, "no positive values for the log axis"));
    };
    let (y_lo, y_hi) = if log {
        let (l, h) = (lo.log10(), hi.log10());
        let pad = ((h - l) * 0.08).max(0.15);
        let (a, b) = (10f64.powf(l - pad), 10f64.powf(h + pad));
        if !(a > 0.0 && b.is_finite() && a < b) {
            return Err(fail(
                t,
                format!("value range [{lo:?}, {hi:?}] is too extreme to plot"),
            ));
        }
        (a, b)
    } else {
        let (l, h) = (lo.min(0.0), hi.max(0.0));
        let span = if h > l { h - l } else { 1.0 };
        let (a, b) = (
            if l < 0.0 { l - span * 0.08 } else { 0.0 },
            if h > 0.0 || l == h {
                h + span * 0.08
            } else {
                0.0
            },
        );
        if !(a.is_finite() && b.is_finite() && a < b && (b - a).is_finite()) {
            return Err(fail(
                t,
                format!("value range [{lo:?}, {hi:?}] is too extreme to plot"),
            ));
        }
        (a, b)
    };
    let y_coord = AxisCoord::new(chart.y_axis, y_lo, y_hi);
    let n = chart.bars.len();
    let paired = chart.bars.iter().any(|(_, _, b)| b.is_some());
    let base = if log { y_lo } else { 0.0 };

    render(t, chart.width, chart.height, |root| {
        let (w, h) = (chart.width as i32, chart.height as i32);
        let mut top = draw_title(root, t, chart.width)?;

        // Legend row under the title.
        let mut entries: Vec<(&str, &RGBColor)> = Vec::new();
        if !chart.series_labels.0.is_empty() {
            entries.push((chart.series_labels.0.as_str(), series_color(0)));
        }
        if paired {
            if let Some(second) = &chart.series_labels.1 {
                entries.push((second.as_str(), series_color(1)));
            }
        }
        if !entries.is_empty() {
            let widths: Vec<i32> = entries
                .iter()
                .map(|(l, _)| text_width(l, 13.0) as i32 + 40)
                .collect();
            let mut x = ((w - widths.iter().sum::<i32>()) / 2).max(6);
            let y = top + 8;
            for ((label, color), lw) in entries.iter().zip(&widths) {
                root.draw(&Rectangle::new(
                    [(x, y - 6), (x + 14, y + 6)],
                    color.filled(),
                ))
                .ctx(t)?;
                root.draw_text(
                    label,
                    &anchored(font(13.0), HPos::Left, VPos::Center),
                    (x + 20, y),
                )
                .ctx(t)?;
                x += lw;
            }
            top += 22;
        }

        // Category labels: horizontal when they fit their slot, else rotated.
        let ylw = y_label_area(&y_coord, !chart.y_label.is_empty());
        let plot_w = f64::from(w - ylw as i32 - 24).max(10.0);
        let slot = plot_w / n as f64;
        let label_px = 12.0;
        let widest = chart
            .bars
            .iter()
            .map(|(c, _, _)| text_width(c, label_px))
            .fold(0.0, f64::max);
        let rotate = widest > slot * 0.95;
        let max_label_h = f64::from(h) * 0.35;
        let xla = if rotate {
            (widest + 14.0).min(max_label_h) as u32
        } else {
            28
        };
        let max_chars = ((f64::from(xla) - 14.0) / (label_px * 0.58)).max(3.0) as usize;

        let (_, body) = root.split_vertically(top);
        let x_coord = AxisCoord::new(Axis::Linear, 0.0, n as f64);
        let y_span = y_coord.label_span();
        let y_fmt = move |v: &f64| fmt_num(*v, y_span);
        let mut cc = ChartBuilder::on(&body)
            .margin_top(8)
            .margin_right(16)
            .margin_left(6)
            .margin_bottom(4)
            .x_label_area_size(xla)
            .y_label_area_size(ylw)
            .build_cartesian_2d(x_coord, y_coord.clone())
            .ctx(t)?;
        cc.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(8)
            .y_desc(chart.y_label.as_str())
            .label_style(font(12.0))
            .axis_desc_style(font(14.0))
            .y_label_formatter(&y_fmt)
            .bold_line_style(GRID)
            .light_line_style(LIGHT_GRID)
            .max_light_lines(4)
            .axis_style(FRAME)
            .draw()
            .ctx(t)?;

        if !log && y_lo < 0.0 {
            cc.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (n as f64, 0.0)],
                FRAME.stroke_width(1),
            )))
            .ctx(t)?;
        }
        let (first_w, second_off) = if paired { (0.38, 0.52) } else { (0.7, 0.0) };
        let first_off = if paired { 0.1 } else { 0.15 };
        let value_px = 11.0;
        for (i, (cat, a, b)) in chart.bars.iter().enumerate() {
            let x = i as f64;
            let mut draw_bar = |x0: f64, v: f64, color: &RGBColor| -> PlotResult<()> {
                if log && v <= 0.0 {
                    return Ok(());
                }
                let x1 = x0 + first_w;
                cc.draw_series(std::iter::once(Rectangle::new(
                    [(x0, base), (x1, v)],
                    color.filled(),
                )))
                .ctx(t)?;
                let label = fmt_val(v);
                let (px0, py) = cc.backend_coord(&(x0, v));
                let (px1, _) = cc.backend_coord(&(x1, v));
                if text_width(&label, value_px) <= f64::from(px1 - px0) + 6.0 {
                    let (v_pos, dy) = if v >= 0.0 || log {
                        (VPos::Bottom, -3)
                    } else {
                        (VPos::Top, 3)
                    };
                    root.draw_text(
                        &label,
                        &anchored(font(value_px), HPos::Center, v_pos),
                        ((px0 + px1) / 2, py + dy),
                    )
                    .ctx(t)?;
                }
                Ok(())
            };
            draw_bar(x + first_off, *a, series_color(0))?;
            if let Some(b) = b {
                draw_bar(x + second_off, *b, series_color(1))?;
            }
            let (cx, cy) = cc.backend_coord(&(x + 0.5, y_lo));
            if rotate {
                let style = TextStyle::from(
                    FontDesc::new(FontFamily::SansSerif, label_px * 1.24, FontStyle::Normal)
                        .transform(FontTransform::Rotate270),
                )
                .color(&TEXT)
                .pos(Pos::new(HPos::Right, VPos::Center));
                root.draw_text(&truncate_chars(cat, max_chars), &style, (cx, cy + 6))
                    .ctx(t)?;
            } else {
                root.draw_text(
                    cat,
                    &anchored(font(label_px), HPos::Center, VPos::Top),
                    (cx, cy + 6),
                )
                .ctx(t)?;
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Reliability diagram
// ---------------------------------------------------------------------------------------------

fn validate_bins(title: &str, panel: &str, bins: &[ReliabilityBin]) -> PlotResult<()> {
    const TOL: f64 = 1e-6;
    for (i, b) in bins.iter().enumerate() {
        let fields = [
            ("lower", b.lower),
            ("upper", b.upper),
            ("confidence", b.confidence),
            ("accuracy", b.accuracy),
        ];
        for (name, v) in fields {
            if !v.is_finite() {
                return Err(fail(
                    title,
                    format!("panel `{panel}` bin {i}: {name} is non-finite ({v:?})"),
                ));
            }
            if !(-TOL..=1.0 + TOL).contains(&v) {
                return Err(fail(
                    title,
                    format!("panel `{panel}` bin {i}: {name} = {v:?} is outside [0, 1]"),
                ));
            }
        }
        if b.lower > b.upper {
            return Err(fail(
                title,
                format!(
                    "panel `{panel}` bin {i}: lower {:?} > upper {:?}",
                    b.lower, b.upper
                ),
            ));
        }
    }
    Ok(())
}

/// Expected calibration error of the bins (count-weighted mean |accuracy − confidence|).
fn ece(bins: &[ReliabilityBin]) -> Option<f64> {
    let total: usize = bins.iter().map(|b| b.count).sum();
    (total > 0).then(|| {
        bins.iter()
            .map(|b| b.count as f64 * (b.accuracy - b.confidence).abs())
            .sum::<f64>()
            / total as f64
    })
}

/// Reliability diagram(s): one panel per (panel title, bins), side by side in one SVG; bars =
/// accuracy per bin (empty bins skipped), a diagonal for perfect calibration, gap to confidence
/// shaded, and the bin counts visible (printed above each bar; bar opacity also grows with the
/// count). Each panel title is followed by the panel's ECE.
pub fn reliability_diagram(
    title: &str,
    panels: &[(String, Vec<ReliabilityBin>)],
    width: u32,
    height: u32,
) -> PlotResult<String> {
    check_size(title, width, height)?;
    if panels.is_empty() {
        return Err(fail(title, "no panels to plot"));
    }
    for (name, bins) in panels {
        validate_bins(title, name, bins)?;
    }
    let clamp = |v: f64| v.clamp(0.0, 1.0);

    render(title, width, height, |root| {
        let w = width as i32;
        let mut top = draw_title(root, title, width)?;

        // Shared legend row.
        let y = top + 8;
        let items: [(&str, u8); 3] = [
            ("accuracy", 0),
            ("gap to confidence", 1),
            ("perfect calibration", 2),
        ];
        let note = "numbers: samples per bin";
        let total_w: i32 = items
            .iter()
            .map(|(l, _)| text_width(l, 12.0) as i32 + 36)
            .sum::<i32>()
            + text_width(note, 11.0) as i32;
        let mut x = ((w - total_w) / 2).max(6);
        for (label, kind) in items {
            match kind {
                0 => root
                    .draw(&Rectangle::new(
                        [(x, y - 6), (x + 14, y + 6)],
                        ACC_BAR.mix(0.8).filled(),
                    ))
                    .ctx(title)?,
                1 => root
                    .draw(&Rectangle::new(
                        [(x, y - 6), (x + 14, y + 6)],
                        GAP.mix(0.3).filled(),
                    ))
                    .ctx(title)?,
                _ => {
                    for k in 0..2 {
                        let x0 = x + k * 9;
                        root.draw(&PathElement::new(
                            vec![(x0, y), (x0 + 5, y)],
                            REF_LINE.stroke_width(2),
                        ))
                        .ctx(title)?;
                    }
                }
            }
            root.draw_text(
                label,
                &anchored(font(12.0), HPos::Left, VPos::Center),
                (x + 20, y),
            )
            .ctx(title)?;
            x += text_width(label, 12.0) as i32 + 36;
        }
        root.draw_text(
            note,
            &anchored(font(11.0), HPos::Left, VPos::Center),
            (x, y),
        )
        .ctx(title)?;
        top += 22;

        let (_, body) = root.split_vertically(top);
        let cells = body.split_evenly((1, panels.len()));
        let y_fmt = |v: &f64| {
            if *v > 1.0 + 1e-9 {
                String::new()
            } else {
                fmt_num(*v, 1.0)
            }
        };
        let x_fmt = |v: &f64| fmt_num(*v, 1.0);
        for ((name, bins), cell) in panels.iter().zip(&cells) {
            let caption = match ece(bins) {
                Some(e) => format!("{name} (ECE {:.2}%)", e * 100.0),
                None => format!("{name} (no samples)"),
            };
            let (cell_w, _) = cell.dim_in_pixel();
            let max_chars = ((f64::from(cell_w) - 10.0) / (14.0 * 0.58)).max(6.0) as usize;
            let mut cc = ChartBuilder::on(cell)
                .caption(truncate_chars(&caption, max_chars), font(14.0))
                .margin(8)
                .x_label_area_size(42)
                .y_label_area_size(54)
                .build_cartesian_2d(
                    AxisCoord::new(Axis::Linear, 0.0, 1.0),
                    AxisCoord::new(Axis::Linear, 0.0, 1.12),
                )
                .ctx(title)?;
            cc.configure_mesh()
                .x_desc("confidence")
                .y_desc("accuracy")
                .label_style(font(12.0))
                .axis_desc_style(font(13.0))
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .bold_line_style(GRID)
                .light_line_style(LIGHT_GRID)
                .max_light_lines(1)
                .axis_style(FRAME)
                .draw()
                .ctx(title)?;

            let max_count = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
            for b in bins.iter().filter(|b| b.count > 0) {
                let (lo, hi) = (clamp(b.lower), clamp(b.upper));
                let (acc, conf) = (clamp(b.accuracy), clamp(b.confidence));
                let alpha = 0.3 + 0.6 * (b.count as f64 / max_count as f64);
                cc.draw_series([
                    Rectangle::new([(lo, 0.0), (hi, acc)], ACC_BAR.mix(alpha).filled()),
                    Rectangle::new([(lo, 0.0), (hi, acc)], ACC_BAR.stroke_width(1)),
                    Rectangle::new(
                        [(lo, acc.min(conf)), (hi, acc.max(conf))],
                        GAP.mix(0.3).filled(),
                    ),
                    Rectangle::new(
                        [(lo, acc.min(conf)), (hi, acc.max(conf))],
                        GAP.mix(0.7).stroke_width(1),
                    ),
                ])
                .ctx(title)?;
                let label = b.count.to_string();
                let (px0, py) = cc.backend_coord(&(lo, acc.max(conf)));
                let (px1, _) = cc.backend_coord(&(hi, acc.max(conf)));
                let cx = (px0 + px1) / 2;
                let count_px = 10.0;
                if text_width(&label, count_px) <= f64::from(px1 - px0) {
                    root.draw_text(
                        &label,
                        &anchored(font(count_px), HPos::Center, VPos::Bottom),
                        (cx, py - 2),
                    )
                    .ctx(title)?;
                } else {
                    let style = TextStyle::from(
                        FontDesc::new(FontFamily::SansSerif, count_px * 1.24, FontStyle::Normal)
                            .transform(FontTransform::Rotate270),
                    )
                    .color(&TEXT)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                    root.draw_text(&label, &style, (cx, py - 3)).ctx(title)?;
                }
            }
            cc.draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                6,
                4,
                REF_LINE.stroke_width(2),
            ))
            .ctx(title)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Heat map
// ---------------------------------------------------------------------------------------------

/// Viridis colour at `t` in `[0, 1]`.
fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (VIRIDIS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round().clamp(0.0, 255.0) as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Heat map of an n×n matrix (row-major `values`), with a colour bar; `groups` are boundaries
/// (indices) where class blocks start, drawn as lines; `log_scale` colours log10(value) (values
/// ≤ 0 drawn as the minimum colour). Row 0 is at the top; cell values are printed when the
/// matrix is small enough for them to fit.
pub fn heat_map(map: &HeatMap) -> PlotResult<String> {
    let t = map.title.as_str();
    check_size(t, map.width, map.height)?;
    let n = map.n;
    if n == 0 {
        return Err(fail(t, "matrix is empty (n = 0)"));
    }
    if n.checked_mul(n) != Some(map.values.len()) {
        return Err(fail(
            t,
            format!("matrix has {} values, expected {n}×{n}", map.values.len()),
        ));
    }
    if let Some((i, v)) = map.values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(fail(
            t,
            format!(
                "matrix has non-finite value {v:?} at row {}, column {}",
                i / n,
                i % n
            ),
        ));
    }
    if let Some(g) = map.groups.iter().find(|g| **g > n) {
        return Err(fail(
            t,
            format!("group boundary {g} is beyond the matrix size {n}"),
        ));
    }
    // Colour domain: values, or log10 of the positive values.
    let domain: Vec<f64> = if map.log_scale {
        map.values
            .iter()
            .filter(|v| **v > 0.0)
            .map(|v| v.log10())
            .collect()
    } else {
        map.values.clone()
    };
    let mut ext = Extent::default();
    domain.iter().for_each(|v| ext.add(*v));
    let Some((d_lo, d_hi)) = ext.range else {
        return Err(fail(
            t,
            "log colour scale needs at least one positive value",
        ));
    };
    let (d_lo, d_hi) = if d_hi > d_lo {
        (d_lo, d_hi)
    } else if map.log_scale {
        (d_lo - 0.5, d_hi + 0.5)
    } else {
        let pad = if d_lo == 0.0 { 1.0 } else { d_lo.abs() * 0.1 };
        (d_lo - pad, d_hi + pad)
    };
    if !(d_hi - d_lo).is_finite() {
        return Err(fail(t, "matrix value range is too extreme to plot"));
    }
    let frac = |v: f64| -> f64 {
        let d = if map.log_scale {
            if v > 0.0 {
                v.log10()
            } else {
                d_lo
            }
        } else {
            v
        };
        (d - d_lo) / (d_hi - d_lo)
    };

    render(t, map.width, map.height, |root| {
        let (w, h) = (map.width as i32, map.height as i32);
        let title_h = draw_title(root, t, map.width)?;
        let idx_px = 11.0;
        let digits = (n - 1).to_string().len();
        let left = (digits as f64 * idx_px * 0.6) as i32 + 14;
        let bottom = 24;
        let colorbar_w = 96;
        let side = (w - left - colorbar_w - 16)
            .min(h - title_h - bottom - 12)
            .max(10);
        let x0 = ((w - (left + side + colorbar_w)) / 2).max(0) + left;
        let y0 = title_h + 6;
        let edge = |i: usize, origin: i32| -> i32 {
            origin + ((i as f64) * f64::from(side) / n as f64).round() as i32
        };

        // Cells, merging horizontal runs of identical colour.
        for r in 0..n {
            let row = &map.values[r * n..(r + 1) * n];
            let mut c = 0;
            while c < n {
                let color = viridis(frac(row[c]));
                let mut end = c + 1;
                while end < n && viridis(frac(row[end])) == color {
                    end += 1;
                }
                root.draw(&Rectangle::new(
                    [(edge(c, x0), edge(r, y0)), (edge(end, x0), edge(r + 1, y0))],
                    color.filled(),
                ))
                .ctx(t)?;
                c = end;
            }
        }

        // Cell values when they fit.
        let cell = f64::from(side) / n as f64;
        if n <= 12 && cell >= 26.0 {
            let px = (cell / 3.6).min(13.0);
            for r in 0..n {
                for c in 0..n {
                    let v = map.values[r * n + c];
                    let label = fmt_val(v);
                    if text_width(&label, px) > cell - 4.0 {
                        continue;
                    }
                    let bg = viridis(frac(v));
                    let luma =
                        0.299 * f64::from(bg.0) + 0.587 * f64::from(bg.1) + 0.114 * f64::from(bg.2);
                    let fg: &'static RGBColor = if luma > 140.0 { &BLACK } else { &WHITE };
                    let style = TextStyle::from(FontDesc::new(
                        FontFamily::SansSerif,
                        px * 1.24,
                        FontStyle::Normal,
                    ))
                    .color(fg)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                    let cx = (edge(c, x0) + edge(c + 1, x0)) / 2;
                    let cy = (edge(r, y0) + edge(r + 1, y0)) / 2;
                    root.draw_text(&label, &style, (cx, cy)).ctx(t)?;
                }
            }
        }

        // Frame and group boundaries.
        root.draw(&Rectangle::new(
            [(x0, y0), (edge(n, x0), edge(n, y0))],
            FRAME.stroke_width(1),
        ))
        .ctx(t)?;
        let mut groups: Vec<usize> = map
            .groups
            .iter()
            .copied()
            .filter(|g| *g > 0 && *g < n)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for (width, color) in [(3, &BLACK), (1, &WHITE)] {
            for &g in &groups {
                let (gx, gy) = (edge(g, x0), edge(g, y0));
                root.draw(&PathElement::new(
                    vec![(gx, y0), (gx, edge(n, y0))],
                    color.stroke_width(width),
                ))
                .ctx(t)?;
                root.draw(&PathElement::new(
                    vec![(x0, gy), (edge(n, x0), gy)],
                    color.stroke_width(width),
                ))
                .ctx(t)?;
            }
        }

        // Index labels every `step` cells.
        let min_gap = (digits as f64 * idx_px * 0.6 + 8.0).max(16.0);
        let step = [
            1usize, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000,
        ]
        .into_iter()
        .find(|s| *s as f64 * cell >= min_gap)
        .unwrap_or(n.max(1));
        for i in (0..n).step_by(step) {
            let label = i.to_string();
            let cx = (edge(i, x0) + edge(i + 1, x0)) / 2;
            root.draw_text(
                &label,
                &anchored(font(idx_px), HPos::Center, VPos::Top),
                (cx, edge(n, y0) + 5),
            )
            .ctx(t)?;
            let cy = (edge(i, y0) + edge(i + 1, y0)) / 2;
            root.draw_text(
                &label,
                &anchored(font(idx_px), HPos::Right, VPos::Center),
                (x0 - 5, cy),
            )
            .ctx(t)?;
        }

        // Colour bar.
        let cb_x = edge(n, x0) + 18;
        let cb_w = 16;
        let cb_bottom = edge(n, y0);
        let slices = 64;
        for k in 0..slices {
            let ya =
                cb_bottom - (f64::from(k) * f64::from(side) / f64::from(slices)).round() as i32;
            let yb =
                cb_bottom - (f64::from(k + 1) * f64::from(side) / f64::from(slices)).round() as i32;
            let color = viridis((f64::from(k) + 0.5) / f64::from(slices));
            root.draw(&Rectangle::new(
                [(cb_x, yb), (cb_x + cb_w, ya)],
                color.filled(),
            ))
            .ctx(t)?;
        }
        root.draw(&Rectangle::new(
            [(cb_x, y0), (cb_x + cb_w, cb_bottom)],
            FRAME.stroke_width(1),
        ))
        .ctx(t)?;
        let max_ticks = ((f64::from(side) / 28.0) as usize).clamp(2, 8);
        // (position in the colour domain, label)
        let ticks: Vec<(f64, String)> = if map.log_scale {
            let (lo, hi) = (10f64.powf(d_lo), 10f64.powf(d_hi));
            log_ticks(lo, hi, max_ticks, false)
                .into_iter()
                .map(|v| (v.log10(), fmt_num(v, 0.0)))
                .collect()
        } else {
            nice_ticks(d_lo, d_hi, max_ticks)
                .into_iter()
                .map(|v| (v, fmt_num(v, d_hi - d_lo)))
                .collect()
        };
        for (d, label) in ticks {
            let f = (d - d_lo) / (d_hi - d_lo);
            if !(-1e-9..=1.0 + 1e-9).contains(&f) {
                continue;
            }
            let ty = cb_bottom - (f * f64::from(side)).round() as i32;
            root.draw(&PathElement::new(
                vec![(cb_x + cb_w, ty), (cb_x + cb_w + 4, ty)],
                FRAME.stroke_width(1),
            ))
            .ctx(t)?;
            root.draw_text(
                &label,
                &anchored(font(11.0), HPos::Left, VPos::Center),
                (cb_x + cb_w + 7, ty),
            )
            .ctx(t)?;
        }
        if map.log_scale {
            root.draw_text(
                "log scale",
                &anchored(font(10.0), HPos::Left, VPos::Top),
                (cb_x - 4, cb_bottom + 5),
            )
            .ctx(t)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.to_string(),
            points,
            mark: Mark::LinePoints,
            error: None,
            dashed: false,
        }
    }

    fn line(series: Vec<Series>) -> LineChart {
        LineChart {
            title: "Loss".to_string(),
            x_label: "step".to_string(),
            y_label: "loss".to_string(),
            x_axis: Axis::Linear,
            y_axis: Axis::Linear,
            series,
            vlines: vec![(2.0, "switch to FT".to_string())],
            width: 640,
            height: 400,
        }
    }

    fn sample_line() -> LineChart {
        let mut ft = series(
            "fine-tuning",
            vec![(0.0, 1.0), (1.0, 0.6), (2.0, 0.4), (3.0, 0.3)],
        );
        ft.error = Some(vec![0.1, 0.05, 0.05, 0.02]);
        let mut lp = series(
            "LP-FT",
            vec![(0.0, 0.9), (1.0, 0.5), (2.0, 0.35), (3.0, 0.25)],
        );
        lp.dashed = true;
        line(vec![ft, lp])
    }

    #[test]
    fn line_chart_is_svg_with_labels() {
        let svg = line_chart(&sample_line()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for label in [
            "fine-tuning",
            "LP-FT",
            "Loss",
            "step",
            "loss",
            "switch to FT",
        ] {
            assert!(svg.contains(label), "missing {label}");
        }
    }

    #[test]
    fn line_chart_is_deterministic() {
        let chart = sample_line();
        assert_eq!(line_chart(&chart).unwrap(), line_chart(&chart).unwrap());
        let b = BarChart {
            title: "acc".to_string(),
            y_label: "accuracy".to_string(),
            y_axis: Axis::Linear,
            bars: vec![
                ("LP".to_string(), 0.8, Some(0.81)),
                ("FT".to_string(), 0.85, None),
            ],
            series_labels: ("ours".to_string(), Some("paper".to_string())),
            width: 500,
            height: 360,
        };
        assert_eq!(bar_chart(&b).unwrap(), bar_chart(&b).unwrap());
    }

    #[test]
    fn nan_is_rejected_with_series_name() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let chart = line(vec![
                series("good", vec![(0.0, 1.0)]),
                series("bad", vec![(1.0, bad)]),
            ]);
            let err = line_chart(&chart).unwrap_err();
            assert!(err.to_string().contains("`bad`"), "{err}");
            assert_eq!(err.title, "Loss");
        }
        let mut chart = line(vec![series("errs", vec![(0.0, 1.0)])]);
        chart.series[0].error = Some(vec![f64::NAN]);
        assert!(line_chart(&chart).unwrap_err().reason.contains("errs"));
        let mut chart = line(vec![series("v", vec![(0.0, 1.0)])]);
        chart.vlines = vec![(f64::NAN, "ref".to_string())];
        assert!(line_chart(&chart).unwrap_err().reason.contains("ref"));
    }

    #[test]
    fn empty_and_bad_input_are_errors() {
        assert!(line_chart(&line(vec![])).is_err());
        assert!(line_chart(&line(vec![series("empty", vec![])])).is_err());
        let mut mismatched = series("m", vec![(0.0, 1.0), (1.0, 2.0)]);
        mismatched.error = Some(vec![0.1]);
        assert!(line_chart(&line(vec![mismatched])).is_err());
        let huge = series("huge", vec![(0.0, -1e308), (1.0, 1e308)]);
        assert!(line_chart(&line(vec![huge])).is_err());
        let mut tiny = sample_line();
        tiny.width = 10;
        assert!(line_chart(&tiny).is_err());
    }

    #[test]
    fn log_axis_skips_non_positive_values() {
        let mut chart = line(vec![
            series(
                "lr sweep",
                vec![
                    (0.0, 1.0),
                    (1e-5, 0.5),
                    (1e-4, 0.0),
                    (1e-3, -2.0),
                    (1e-2, 0.3),
                ],
            ),
            series("const", vec![(1e-5, 2.0), (1e-2, 2.0)]),
        ]);
        chart.x_axis = Axis::Log;
        chart.y_axis = Axis::Log;
        chart.vlines = vec![(0.0, "zero".to_string()), (1e-3, "chosen".to_string())];
        let svg = line_chart(&chart).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("lr sweep") && svg.contains("chosen"));
        assert!(!svg.contains(">zero<") && !svg.contains("zero\n"));

        let mut none_left = line(vec![series("neg", vec![(1.0, -1.0), (2.0, 0.0)])]);
        none_left.y_axis = Axis::Log;
        let err = line_chart(&none_left).unwrap_err();
        assert!(err.reason.contains("log"), "{err}");
    }

    #[test]
    fn single_point_and_constant_series_render() {
        let svg = line_chart(&line(vec![series("one", vec![(5.0, 5.0)])])).unwrap();
        assert!(svg.contains("one"));
        let mut c = line(vec![series("flat", vec![(1.0, 3.0), (10.0, 3.0)])]);
        c.y_axis = Axis::Log;
        assert!(line_chart(&c).is_ok());
    }

    #[test]
    fn bar_chart_checks() {
        let mut b = BarChart {
            title: "ECE".to_string(),
            y_label: "ECE".to_string(),
            y_axis: Axis::Log,
            bars: vec![
                ("a very long method name".to_string(), 0.02, Some(0.03)),
                ("zero".to_string(), 0.0, Some(0.01)),
            ],
            series_labels: ("ours".to_string(), Some("paper".to_string())),
            width: 400,
            height: 300,
        };
        let svg = bar_chart(&b).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("paper") && svg.contains("ours"));
        b.bars[0].1 = f64::NAN;
        assert!(bar_chart(&b)
            .unwrap_err()
            .reason
            .contains("a very long method name"));
        b.bars.clear();
        assert!(bar_chart(&b).is_err());
    }

    fn bins() -> Vec<ReliabilityBin> {
        (0..10)
            .map(|i| {
                let lower = f64::from(i) / 10.0;
                ReliabilityBin {
                    lower,
                    upper: lower + 0.1,
                    confidence: lower + 0.05,
                    accuracy: (lower + 0.05) * 0.8,
                    count: if i == 3 { 0 } else { (i as usize + 1) * 17 },
                }
            })
            .collect()
    }

    /// The trimmed contents of every `<text>` element of an SVG.
    fn text_nodes(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    #[test]
    fn reliability_diagram_renders_panels_and_counts() {
        let panels = vec![("FT".to_string(), bins()), ("LP-FT".to_string(), bins())];
        let svg = reliability_diagram("Calibration", &panels, 900, 420).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("FT (ECE") && svg.contains("LP-FT (ECE"));
        // Each non-empty bin is labelled with its count, as a text node of its own, once per
        // panel; the empty bin gets no bar and no label.
        // (Axis ticks are 0 … 1, so the labels are the integer text nodes above 1.)
        let labels: Vec<usize> = text_nodes(&svg)
            .iter()
            .filter_map(|t| t.parse().ok())
            .filter(|&n: &usize| n > 1)
            .collect();
        let per_panel: Vec<usize> = bins().iter().map(|b| b.count).filter(|&c| c > 0).collect();
        assert_eq!(labels, [per_panel.clone(), per_panel].concat());
        assert_eq!(
            svg,
            reliability_diagram("Calibration", &panels, 900, 420).unwrap()
        );
        let mut bad = bins();
        bad[2].accuracy = f64::NAN;
        let err =
            reliability_diagram("Calibration", &[("X".to_string(), bad)], 600, 400).unwrap_err();
        assert!(err.reason.contains("`X`"), "{err}");
        assert!(reliability_diagram("Calibration", &[], 600, 400).is_err());
    }

    #[test]
    fn heat_map_3x3_with_groups() {
        let map = HeatMap {
            title: "NTK blocks".to_string(),
            n: 3,
            values: vec![1.0, 0.5, 0.0, 0.5, 1.0, 0.2, 0.0, 0.2, 1.0],
            groups: vec![0, 2, 3],
            log_scale: false,
            width: 400,
            height: 320,
        };
        let svg = heat_map(&map).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("NTK blocks"));
        assert_eq!(svg, heat_map(&map).unwrap());
        // One boundary inside the matrix (at 2; 0 and 3 are its edges): a black and a white
        // line, each vertical and horizontal.
        let no_groups = heat_map(&HeatMap {
            groups: vec![],
            ..map.clone()
        })
        .unwrap();
        assert_eq!(
            svg.matches("<polyline").count(),
            no_groups.matches("<polyline").count() + 4
        );
        for v in ["0.5", "0.2"] {
            assert!(svg.contains(v), "cell value {v} not printed");
        }

        let log = HeatMap {
            log_scale: true,
            ..map.clone()
        };
        assert!(heat_map(&log).is_ok());
        let all_zero = HeatMap {
            values: vec![0.0; 9],
            ..log.clone()
        };
        assert!(heat_map(&all_zero).is_err());
        let nan = HeatMap {
            values: vec![1.0, f64::NAN, 0.0, 0.5, 1.0, 0.2, 0.0, 0.2, 1.0],
            ..map.clone()
        };
        let err = heat_map(&nan).unwrap_err();
        assert!(
            err.title == "NTK blocks" && err.reason.contains("row 0, column 1"),
            "{err}"
        );
        let short = HeatMap {
            values: vec![1.0; 8],
            ..map.clone()
        };
        assert!(heat_map(&short).is_err());
        let bad_group = HeatMap {
            groups: vec![4],
            ..map
        };
        assert!(heat_map(&bad_group).is_err());
    }

    /// Awkward inputs must give an `Ok` SVG or a `PlotError`, never a panic.
    #[test]
    fn awkward_inputs_do_not_panic() {
        let specials = [
            0.0,
            -0.0,
            1e-300,
            -1e-300,
            1e300,
            -1e300,
            5e-324,
            1.0,
            -1.0,
            123456789.0,
            0.5,
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..150 {
            let mut pick = || specials[(next() % specials.len() as u64) as usize];
            let n_series = 1 + case % 11;
            let series: Vec<Series> = (0..n_series)
                .map(|k| Series {
                    label: format!("series {k} <&> with a label long enough to need wrapping"),
                    points: (0..(case % 5)).map(|_| (pick(), pick())).collect(),
                    mark: [Mark::Line, Mark::Points, Mark::LinePoints][k % 3],
                    error: None,
                    dashed: k % 2 == 1,
                })
                .collect();
            let axes = [Axis::Linear, Axis::Log];
            let chart = LineChart {
                title: "t".repeat(case % 90),
                x_label: String::new(),
                y_label: "y".repeat(case % 40),
                x_axis: axes[case % 2],
                y_axis: axes[(case / 2) % 2],
                series,
                vlines: vec![(pick(), "v".to_string())],
                width: 200 + (case as u32 % 3) * 300,
                height: 150 + (case as u32 % 4) * 100,
            };
            if let Ok(svg) = line_chart(&chart) {
                assert!(svg.starts_with("<svg") && !svg.contains("<&>"));
            }
            let bars = BarChart {
                title: "b".to_string(),
                y_label: String::new(),
                y_axis: axes[case % 2],
                bars: (0..(1 + case % 40))
                    .map(|i| (format!("category {i}"), pick(), (i % 2 == 0).then_some(1.0)))
                    .collect(),
                series_labels: (String::new(), None),
                width: 200,
                height: 150,
            };
            let _ = bar_chart(&bars);
            let n = 1 + case % 4;
            let map = HeatMap {
                title: "h".to_string(),
                n,
                values: (0..n * n).map(|_| pick()).collect(),
                groups: vec![0, n / 2, n],
                log_scale: case % 2 == 0,
                width: 200,
                height: 150,
            };
            let _ = heat_map(&map);
        }
        let empty_bins = vec![ReliabilityBin {
            lower: 0.0,
            upper: 1.0,
            confidence: 0.5,
            accuracy: 0.5,
            count: 0,
        }];
        let panels = vec![
            ("empty".to_string(), empty_bins),
            ("none".to_string(), vec![]),
        ];
        assert!(reliability_diagram("r", &panels, 200, 150).is_ok());
    }

    #[test]
    fn tick_formatting() {
        assert_eq!(fmt_num(0.30000000000000004, 1.0), "0.3");
        assert_eq!(fmt_num(1e-17, 1.0), "0");
        assert_eq!(fmt_num(1e-4, 0.0), "1e-4");
        assert_eq!(fmt_num(250000.0, 0.0), "2.5e5");
        assert_eq!(fmt_num(1000.25, 0.5), "1000.25");
        assert_eq!(fmt_val(0.123456), "0.123");
        assert_eq!(fmt_val(85.26), "85.3");
        assert_eq!(log_ticks(1e-5, 1e-1, 10, false).len(), 5);
        assert!(!log_ticks(0.3, 0.8, 10, false).is_empty());
    }
}
