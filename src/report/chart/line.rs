//! Line charts: series of points, linear or log axes, error bars, legends.

use super::*;

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
                    cc.draw_series(std::iter::once(ErrorBar::new_vertical(
                        x, lower, y, upper, bar_style, 8,
                    )))
                    .ctx(t)?;
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
