//! The paper's figures from run records, as SVG (via [`crate::report::chart`]).

use crate::analysis::kernel_stats::singular_values;
use crate::error::Result;
use crate::methods::Method;
use crate::ntk::kernel::KernelMatrix;
use crate::report::chart::{self, Axis, BarChart, HeatMap, LineChart, Mark, Series};
use crate::report::collect::{RunRecord, Stat};
use crate::report::paper;
use crate::stages::kernels::read_f_train;

/// One SVG figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem (`fig2-spectra-cb-base`).
    pub id: String,
    pub caption: String,
    pub svg: String,
}

const W: u32 = 760;
const H: u32 = 460;

fn series(label: &str, points: Vec<(f64, f64)>, mark: Mark) -> Series {
    Series {
        label: label.to_string(),
        points,
        mark,
        error: None,
        dashed: false,
    }
}

fn chart(title: &str, x: &str, y: &str, xa: Axis, ya: Axis, s: Vec<Series>) -> LineChart {
    LineChart {
        title: title.to_string(),
        x_label: x.to_string(),
        y_label: y.to_string(),
        x_axis: xa,
        y_axis: ya,
        series: s,
        vlines: Vec::new(),
        width: W,
        height: H,
    }
}

fn runs_of<'a>(runs: &'a [RunRecord], variant: &str, task: &str) -> Vec<&'a RunRecord> {
    runs.iter()
        .filter(|r| r.variant == variant && r.task() == task)
        .collect()
}

/// Fig. 1a: LP ‖V‖_F and training accuracy against the L-BFGS iteration, one line per seed.
pub fn lp_path(runs: &[RunRecord], variant: &str, task: &str) -> Result<Vec<Figure>> {
    let rs: Vec<&RunRecord> = runs_of(runs, variant, task)
        .into_iter()
        .filter(|r| r.lp_path.is_some())
        .collect();
    if rs.is_empty() {
        return Ok(Vec::new());
    }
    let mut norm = Vec::new();
    let mut acc = Vec::new();
    for r in &rs {
        let Some(p) = &r.lp_path else { continue };
        let label = format!("seed {} (C = {:.3e})", r.config.seed, p.c);
        norm.push(series(
            &label,
            p.points
                .iter()
                .map(|q| (q.iteration as f64, q.classifier_norm))
                .collect(),
            Mark::Line,
        ));
        acc.push(series(
            &label,
            p.points
                .iter()
                .map(|q| (q.iteration as f64, q.train_accuracy))
                .collect(),
            Mark::Line,
        ));
    }
    Ok(vec![
        Figure {
            id: format!("fig1a-lp-norm-{task}-{variant}"),
            caption: format!(
                "Fig. 1a: LP classifier norm ‖V‖_F against the L-BFGS iteration on {task} \
                 (variant `{variant}`), refitting at the run's C."
            ),
            svg: chart::line_chart(&chart(
                &format!("LP on {task}: ‖V‖_F vs iterations"),
                "L-BFGS iteration",
                "‖V‖_F",
                Axis::Log,
                Axis::Linear,
                norm,
            ))?,
        },
        Figure {
            id: format!("fig1a-lp-acc-{task}-{variant}"),
            caption: format!(
                "Fig. 1a: LP training accuracy against the L-BFGS iteration on {task}."
            ),
            svg: chart::line_chart(&chart(
                &format!("LP on {task}: train accuracy vs iterations"),
                "L-BFGS iteration",
                "train accuracy",
                Axis::Log,
                Axis::Linear,
                acc,
            ))?,
        },
    ])
}

/// Fig. 1b: ‖V‖_F per epoch for the methods with a gradient stage (mean over seeds; epoch 0 =
/// the start of the stage), log scale.
pub(crate) fn epoch_norms(runs: &[RunRecord], variant: &str, task: &str) -> Result<Vec<Figure>> {
    let rs = runs_of(runs, variant, task);
    let mut s = Vec::new();
    for m in Method::ALL.into_iter().filter(|m| m.has_gradient_stage()) {
        let x: Vec<&&RunRecord> = rs.iter().filter(|r| r.method() == m).collect();
        let epochs = x.iter().map(|r| r.history.len()).max().unwrap_or(0);
        if epochs == 0 {
            continue;
        }
        let mut pts = Vec::new();
        let mut err = Vec::new();
        if let Some(st) = Stat::of(
            x.iter()
                .filter_map(|r| r.metrics.stage_start_classifier_norm),
        ) {
            pts.push((0.0, st.mean));
            err.push(st.std.unwrap_or(0.0));
        }
        for e in 0..epochs {
            if let Some(st) = Stat::of(
                x.iter()
                    .filter_map(|r| r.history.get(e).map(|h| h.classifier_norm)),
            ) {
                pts.push(((e + 1) as f64, st.mean));
                err.push(st.std.unwrap_or(0.0));
            }
        }
        let mut ser = series(m.as_str(), pts, Mark::LinePoints);
        ser.error = Some(err);
        s.push(ser);
    }
    if s.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Figure {
        id: format!("fig1b-epoch-norm-{task}-{variant}"),
        caption: format!(
            "Fig. 1b: ‖V‖_F during the gradient stage on {task} (variant `{variant}`), mean ± std \
             over seeds; epoch 0 is the head the stage starts from (random for FT/LoRA, the LP \
             head for LP-FT/LP-LoRA)."
        ),
        svg: chart::line_chart(&chart(
            &format!("Classifier norm per epoch on {task}"),
            "epoch",
            "‖V‖_F",
            Axis::Linear,
            Axis::Log,
            s,
        ))?,
    }])
}

/// Training and validation loss curves: from `log_history.jsonl` where a run has one (a point
/// every `logging_steps`/`eval_steps`), else from `history.jsonl` (each epoch's mean training
/// loss and its end-of-epoch validation loss). One line per method, the mean over seeds at each
/// point, so that an undertrained method shows as one.
pub(crate) fn loss_curves(runs: &[RunRecord], variant: &str, task: &str) -> Result<Vec<Figure>> {
    let rs = runs_of(runs, variant, task);
    let from_log =
        |r: &RunRecord, pick: &dyn Fn(&crate::methods::progress::LogEntry) -> Option<f64>| {
            r.log
                .iter()
                .filter_map(|e| pick(e).map(|y| (e.epoch, y)))
                .collect::<Vec<_>>()
        };
    let train = |r: &RunRecord| {
        let pts = from_log(r, &|e| e.loss);
        if pts.is_empty() {
            r.history
                .iter()
                .map(|h| (h.epoch as f64, h.train_loss))
                .collect()
        } else {
            pts
        }
    };
    let val = |r: &RunRecord| {
        let pts = from_log(r, &|e| e.eval_loss);
        if pts.is_empty() {
            r.history
                .iter()
                .map(|h| (h.epoch as f64, h.validation.nll))
                .collect()
        } else {
            pts
        }
    };
    let mut out = Vec::new();
    for (what, id, points) in [
        (
            "training loss",
            "train-loss",
            &train as &dyn Fn(&RunRecord) -> Vec<(f64, f64)>,
        ),
        ("validation loss", "val-loss", &val),
    ] {
        let mut s = Vec::new();
        for m in Method::ALL.into_iter().filter(|m| m.has_gradient_stage()) {
            // Mean over seeds at each x (epochs, exact to 1e-9).
            let mut at: std::collections::BTreeMap<i64, (f64, Vec<f64>)> = Default::default();
            for r in rs.iter().filter(|r| r.method() == m) {
                for (x, y) in points(r) {
                    at.entry((x * 1e9).round() as i64)
                        .or_insert((x, Vec::new()))
                        .1
                        .push(y);
                }
            }
            let pts: Vec<(f64, f64)> = at
                .values()
                .filter_map(|(x, ys)| Stat::of(ys.iter().copied()).map(|st| (*x, st.mean)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let mark = if pts.len() > 30 {
                Mark::Line
            } else {
                Mark::LinePoints
            };
            s.push(series(m.as_str(), pts, mark));
        }
        if s.is_empty() {
            continue;
        }
        out.push(Figure {
            id: format!("{id}-{task}-{variant}"),
            caption: format!(
                "The {what} of the gradient stage on {task} (variant `{variant}`), mean over \
                 seeds: every logged step where the runs have log_history.jsonl, else each \
                 epoch's {}.",
                if id == "train-loss" {
                    "mean training loss"
                } else {
                    "end-of-epoch validation cross-entropy"
                }
            ),
            svg: chart::line_chart(&chart(
                &format!("{} on {task}", capitalise(what)),
                "epoch",
                what,
                Axis::Linear,
                Axis::Linear,
                s,
            ))?,
        });
    }
    Ok(out)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// Fig. 1c: final ‖V‖_F per method, ours beside the paper's Table 13.
pub(crate) fn norm_bars(runs: &[RunRecord], variant: &str, task: &str) -> Result<Vec<Figure>> {
    let rs = runs_of(runs, variant, task);
    let mut bars = Vec::new();
    if let Some(st) = Stat::of(rs.iter().map(|r| r.metrics.initial_classifier_norm)) {
        bars.push((
            "init".to_string(),
            st.mean,
            paper::classifier_norm(task, "pretrained"),
        ));
    }
    for m in Method::ALL {
        if let Some(st) = Stat::of(
            rs.iter()
                .filter(|r| r.method() == m)
                .map(|r| r.metrics.classifier_norm),
        ) {
            bars.push((
                m.as_str().to_string(),
                st.mean,
                paper::classifier_norm(task, m.as_str()),
            ));
        }
    }
    if bars.is_empty() {
        return Ok(Vec::new());
    }
    let chart = BarChart {
        title: format!("‖V‖_F after training on {task}"),
        y_label: "‖V‖_F".into(),
        y_axis: Axis::Log,
        bars,
        series_labels: ("ours".into(), Some("paper (Table 13)".into())),
        width: W,
        height: H,
    };
    Ok(vec![Figure {
        id: format!("fig1c-norms-{task}-{variant}"),
        caption: format!(
            "Fig. 1c / Table 13: classifier norm after training on {task} (variant `{variant}`), \
             ours (mean over seeds) and the paper's (roberta-base)."
        ),
        svg: chart::bar_chart(&chart)?,
    }])
}

/// Fig. 2: normalised singular-value spectra of P and of F per method (first seed with an eNTK).
pub fn spectra(runs: &[RunRecord], variant: &str, task: &str) -> Result<Vec<Figure>> {
    let rs: Vec<&RunRecord> = runs_of(runs, variant, task)
        .into_iter()
        .filter(|r| r.ntk.is_some())
        .collect();
    let Some(first) = rs.first().and_then(|r| r.ntk.as_ref()) else {
        return Ok(Vec::new());
    };
    let to_pts = |sp: &[f64]| -> Vec<(f64, f64)> {
        sp.iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(i, v)| ((i + 1) as f64, *v))
            .collect()
    };
    let mut s = Vec::new();
    if let Some(p) = first.kernels.get("P") {
        let mut ser = series("Pre-train E (P)", to_pts(&p.stats.spectrum), Mark::Line);
        ser.dashed = true;
        s.push(ser);
    }
    for m in Method::ALL.into_iter().filter(|m| m.has_gradient_stage()) {
        if let Some(k) = rs
            .iter()
            .find(|r| r.method() == m)
            .and_then(|r| r.ntk.as_ref())
            .and_then(|k| k.kernels.get("F"))
        {
            s.push(series(
                &format!("FT E (F), {m}"),
                to_pts(&k.stats.spectrum),
                Mark::Line,
            ));
        }
    }
    Ok(vec![Figure {
        id: format!("fig2-spectra-{task}-{variant}"),
        caption: format!(
            "Fig. 2: singular values of the train×train kernels on {task} (variant `{variant}`, \
             {} examples), each divided by its largest; the paper's claim: LoRA's F has a \
             spectrum close to FT's.",
            first.n_train
        ),
        svg: chart::line_chart(&chart(
            &format!("Normalised kernel spectra on {task}"),
            "index",
            "σ_i / σ_1",
            Axis::Log,
            Axis::Log,
            s,
        ))?,
    }])
}

/// Fig. 3/11: Diff(F) against the head norm at the start of the gradient stage (norm sweep).
pub fn sweep(runs: &[RunRecord], task: &str) -> Result<Vec<Figure>> {
    let rs: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.task() == task && r.variant.starts_with("kappa-"))
        .collect();
    if rs.is_empty() {
        return Ok(Vec::new());
    }
    let mut s = Vec::new();
    let mut vlines = Vec::new();
    for m in Method::ALL {
        let kappas = crate::report::tables::sweep_kappas(&rs, m);
        let mut pts = Vec::new();
        let mut err = Vec::new();
        for k in &kappas {
            let x: Vec<&&RunRecord> = rs
                .iter()
                .filter(|r| r.method() == m && r.config.head_scale == *k)
                .collect();
            let norm = Stat::of(
                x.iter()
                    .filter_map(|r| r.metrics.stage_start_classifier_norm),
            );
            let diff = Stat::of(
                x.iter()
                    .filter_map(|r| r.analysis.as_ref().and_then(|a| a.run.diff)),
            );
            if let (Some(n), Some(d)) = (norm, diff) {
                pts.push((n.mean, d.mean));
                err.push(d.std.unwrap_or(0.0));
                if *k == 1.0 {
                    vlines.push((n.mean, format!("{m} unscaled")));
                }
            }
        }
        if !pts.is_empty() {
            let mut ser = series(m.as_str(), pts, Mark::LinePoints);
            ser.error = Some(err);
            s.push(ser);
        }
    }
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = chart(
        &format!("Feature change vs head norm on {task}"),
        "‖V‖_F at the start of the gradient stage",
        "Diff(F)",
        Axis::Log,
        Axis::Linear,
        s,
    );
    c.vlines = vlines;
    Ok(vec![Figure {
        id: format!("fig3-sweep-{task}"),
        caption: format!(
            "Fig. 3/11: feature change Diff(F) against the scaled head norm on {task}, mean ± std \
             over seeds; dashed lines: the unscaled norms."
        ),
        svg: chart::line_chart(&c)?,
    }])
}

/// Reliability diagrams before and after temperature scaling, per method (first seed).
pub fn reliability(runs: &[RunRecord], variant: &str, task: &str) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for m in Method::ALL {
        let Some(r) = runs_of(runs, variant, task)
            .into_iter()
            .find(|r| r.method() == m && r.calibration.is_some())
        else {
            continue;
        };
        let Some(c) = &r.calibration else { continue };
        let panels = vec![
            ("without TS".to_string(), c.reliability_before.clone()),
            (
                format!("with TS (T = {:.3})", c.temperature.t),
                c.reliability_after.clone(),
            ),
        ];
        out.push(Figure {
            id: format!("reliability-{task}-{variant}-{m}"),
            caption: format!(
                "Reliability diagram of {m} on {task} test (seed {}), 15 bins, before and after \
                 temperature scaling.",
                r.config.seed
            ),
            svg: chart::reliability_diagram(&format!("{m} on {task}"), &panels, W, H * 3 / 4)?,
        });
    }
    Ok(out)
}

/// Fig. 8/9: heat maps of F's per-pair trace norm ‖F(x_i, x_j)‖_* (rows grouped by class).
pub(crate) fn heat_maps(runs: &[RunRecord], variant: &str, task: &str) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for m in Method::ALL.into_iter().filter(|m| m.has_gradient_stage()) {
        let Some(r) = runs_of(runs, variant, task)
            .into_iter()
            .find(|r| r.method() == m && r.ntk.is_some())
        else {
            continue;
        };
        let Ok((k, _)) = read_f_train(&r.dir) else {
            continue;
        };
        let Some(ntk) = &r.ntk else { continue };
        let (n, c) = (k.n1(), k.n_logits());
        let labels = read_labels(&r.dir).unwrap_or_else(|| vec![0; n]);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (labels.get(i).copied().unwrap_or(0), i));
        let mut values = vec![0.0; n * n];
        for (a, &i) in order.iter().enumerate() {
            for (b, &j) in order.iter().enumerate() {
                let mut block = Vec::with_capacity(c * c);
                for ci in 0..c {
                    for cj in 0..c {
                        block.push(k.get(i, ci, j, cj).unwrap_or(0.0));
                    }
                }
                let sv = singular_values(&KernelMatrix::new(block, c, c)?)?;
                values[a * n + b] = sv.iter().sum();
            }
        }
        let mut groups = Vec::new();
        for a in 1..n {
            if labels.get(order[a]) != labels.get(order[a - 1]) {
                groups.push(a);
            }
        }
        out.push(Figure {
            id: format!("heatmap-F-{task}-{variant}-{m}"),
            caption: format!(
                "Fig. 8/9: trace norm of each C×C block of F^{m} on {task} train×train ({} \
                 examples, seed {}), rows and columns grouped by class; log colour scale.",
                ntk.n_train, r.config.seed
            ),
            svg: chart::heat_map(&HeatMap {
                title: format!("F of {m} on {task}: ‖F(x_i, x_j)‖_*"),
                n,
                values,
                groups,
                log_scale: true,
                width: 560,
                height: 480,
            })?,
        });
    }
    Ok(out)
}

fn read_labels(dir: &std::path::Path) -> Option<Vec<usize>> {
    let file = dir.join("kernels/F_train_train.safetensors");
    let t = crate::stages::kernels::read_kernel_tensor(&file, "labels1").ok()?;
    let v: Vec<i64> = t.to_vec1().ok()?;
    Some(v.into_iter().map(|x| x.max(0) as usize).collect())
}
