//! A small chart library for the HTML report: SVG line, bar, reliability and heat-map charts
//! drawn with `plotters`' SVG backend, and what they share (ticks, a log axis, text wrapping,
//! colours).
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

mod bar;
mod heat_map;
mod line;
mod reliability;

pub use bar::bar_chart;
pub use heat_map::heat_map;
pub use line::line_chart;
pub use reliability::reliability_diagram;

pub use crate::error::PlotError;

/// Result type of the plotting functions.
pub(crate) type PlotResult<T> = std::result::Result<T, PlotError>;

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

/// One bin of a reliability diagram: calibration's own bins, drawn as they are.
pub use crate::calibration::metrics::ReliabilityBin;

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

    /// Each of the 4 points with a positive error gets an error bar (plotters' `ErrorBar`: the
    /// same number of SVG elements per bar).
    #[test]
    fn error_bars_are_drawn_per_point() {
        let elements = |svg: &str| svg.matches("<line").count() + svg.matches("<polyline").count();
        let with = line_chart(&sample_line()).unwrap();
        let mut plain = sample_line();
        plain.series[0].error = None;
        let without = line_chart(&plain).unwrap();
        let extra = elements(&with) - elements(&without);
        assert!(extra > 0 && extra % 4 == 0, "{extra} extra elements");
    }

    /// The heat maps' colormap is matplotlib's viridis, from dark purple to yellow.
    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        use super::heat_map::viridis;
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(254, 232, 37));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
        assert_eq!(viridis(2.0), viridis(1.0));
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
