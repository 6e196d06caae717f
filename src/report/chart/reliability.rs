//! Reliability diagrams: accuracy per confidence bin beside perfect calibration, with the ECE of each panel.

use super::*;

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

/// Expected calibration error of the bins (calibration's own formula), if any bin is filled.
fn ece(bins: &[ReliabilityBin]) -> Option<f64> {
    let total: usize = bins.iter().map(|b| b.count).sum();
    (total > 0).then(|| crate::calibration::metrics::ece_mce(bins).0)
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
