//! Bar charts: grouped bars, one or two per category.

use super::*;

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
