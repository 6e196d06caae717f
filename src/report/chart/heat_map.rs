//! Heat maps of square matrices with class-block boundaries and a colour bar.

use super::*;

/// Viridis colour at `t` in `[0, 1]` (plotters' colormap; a value that is not finite is 0).
pub(super) fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() { t } else { 0.0 };
    ViridisRGB::get_color(t.clamp(0.0, 1.0))
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
