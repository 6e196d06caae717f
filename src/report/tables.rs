//! The paper's tables from run records, each beside the paper's own values (docs/method.md §6–§10).
//!
//! Ours are means ± sample standard deviations over the seeds found (fractions shown in %);
//! the paper's are its printed values (5 seeds, roberta-base). A "–" means not measured / not
//! reported.

use std::collections::BTreeSet;

use crate::methods::{Method, RunConfig};
use crate::report::collect::{group, RunRecord, Stat};
use crate::report::paper::{self, CalibrationMetric, KernelKind, MeanStd};
use crate::report::render::table::{Fmt, Table, Value};

fn paper_value(m: Option<MeanStd>) -> Value {
    m.map_or(Value::Missing, |m| {
        Value::Stat(Stat {
            mean: m.mean,
            std: m.std,
            n: 5,
        })
    })
}

/// Variants in first-seen order, norm-sweep variants last (and only when `sweep`).
pub fn variants(runs: &[RunRecord], sweep: bool) -> Vec<String> {
    let mut seen = Vec::new();
    for r in runs {
        let is_sweep = r.variant.starts_with("kappa-");
        if is_sweep == sweep && !seen.contains(&r.variant) {
            seen.push(r.variant.clone());
        }
    }
    seen
}

/// Tasks in first-seen order.
pub fn tasks(runs: &[RunRecord]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in runs {
        if !seen.iter().any(|t| t == r.task()) {
            seen.push(r.task().to_string());
        }
    }
    seen
}

fn select<'a>(
    runs: &'a [RunRecord],
    variant: &str,
    task: &str,
    method: Method,
) -> Vec<&'a RunRecord> {
    runs.iter()
        .filter(|r| r.variant == variant && r.task() == task && r.method() == method)
        .collect()
}

fn stat<'a>(rs: &[&'a RunRecord], f: impl Fn(&'a RunRecord) -> Option<f64>) -> Value {
    Stat::of(rs.iter().filter_map(|r| f(r))).into()
}

/// The task's headline metric: MCC for CoLA (Table 8 prints MCC×100), else accuracy.
fn headline(r: &RunRecord) -> f64 {
    if r.task() == "cola" {
        r.metrics.test.mcc
    } else {
        r.metrics.test.accuracy
    }
}

/// Table 8 (and 10's ID column): test accuracy per method and task, ours beside the paper's.
pub fn accuracy(runs: &[RunRecord], variant: &str) -> Table {
    let tasks = tasks(runs);
    let mut cols: Vec<(String, Fmt)> = vec![("Method".into(), Fmt::Plain)];
    for t in &tasks {
        cols.push((format!("{t} (ours)"), Fmt::Pct));
        cols.push((format!("{t} (paper)"), Fmt::PaperPct));
    }
    let cols_ref: Vec<(&str, Fmt)> = cols.iter().map(|(n, f)| (n.as_str(), *f)).collect();
    let mut t = Table::new(
        &format!("table8-accuracy-{variant}"),
        &format!("Test accuracy (%), variant `{variant}` — Table 8 layout"),
        "Ours: mean ± std over seeds (CoLA: MCC×100). Paper: Table 8 (roberta-base, 5 seeds).",
        &cols_ref,
    );
    for m in Method::ALL {
        let mut row: Vec<Value> = vec![m.as_str().into()];
        let mut any = false;
        for task in &tasks {
            let rs = select(runs, variant, task, m);
            any |= !rs.is_empty();
            row.push(stat(&rs, |r| Some(headline(r))));
            row.push(paper_value(paper::accuracy(task, m.as_str())));
        }
        if any {
            t.push(row);
        }
    }
    t
}

/// How far each method trained: epochs run, the training loss of the first and the last epoch,
/// the best epoch and its validation score. A method whose final training loss is still high
/// (e.g. LP-FT with its 10× smaller learning rate at few epochs) is undertrained, and its test
/// numbers say little about the method. Not in the paper.
pub fn training(runs: &[RunRecord], variant: &str, task: &str) -> Option<Table> {
    let mut t = Table::new(
        &format!("training-{task}-{variant}"),
        &format!("Training on {task}, variant `{variant}`"),
        "Mean ± std over seeds. Train loss: the mean cross-entropy over an epoch's batches \
         (dropout on), first and last epoch; best epoch: the one whose parameters were kept \
         (best validation score). Methods with a gradient stage only. Not in the paper.",
        &[
            ("Method", Fmt::Plain),
            ("Epochs", Fmt::Fixed(1)),
            ("Train loss, epoch 1", Fmt::Fixed(4)),
            ("Train loss, last epoch", Fmt::Fixed(4)),
            ("Best epoch", Fmt::Fixed(1)),
            ("Validation score at best", Fmt::Pct),
        ],
    );
    for m in Method::ALL.into_iter().filter(|m| m.has_gradient_stage()) {
        let rs: Vec<&RunRecord> = select(runs, variant, task, m)
            .into_iter()
            .filter(|r| !r.history.is_empty())
            .collect();
        if rs.is_empty() {
            continue;
        }
        t.push(vec![
            m.as_str().into(),
            stat(&rs, |r| Some(r.history.len() as f64)),
            stat(&rs, |r| r.history.first().map(|h| h.train_loss)),
            stat(&rs, |r| r.history.last().map(|h| h.train_loss)),
            stat(&rs, |r| r.metrics.best_epoch.map(|e| e as f64)),
            stat(&rs, |r| {
                let best = r.metrics.best_epoch?;
                let h = r.history.iter().find(|h| h.epoch == best)?;
                Some(if r.task() == "cola" {
                    h.validation.mcc
                } else {
                    h.validation.accuracy
                })
            }),
        ]);
    }
    (!t.is_empty()).then_some(t)
}

/// Out-of-distribution accuracy (Table 10 layout): ID test and every OOD set of the runs.
pub(crate) fn ood_accuracy(runs: &[RunRecord], variant: &str) -> Option<Table> {
    let names: BTreeSet<String> = runs
        .iter()
        .filter(|r| r.variant == variant)
        .flat_map(|r| r.ood.iter().map(|o| o.name.clone()))
        .collect();
    if names.is_empty() {
        return None;
    }
    let tasks: Vec<String> = tasks(runs)
        .into_iter()
        .filter(|t| {
            runs.iter()
                .any(|r| r.task() == t && r.variant == variant && !r.ood.is_empty())
        })
        .collect();
    let mut cols: Vec<(String, Fmt)> = vec![("Method".into(), Fmt::Plain)];
    for t in &tasks {
        cols.push((format!("{t} test (ID)"), Fmt::Pct));
    }
    for n in &names {
        cols.push((format!("{n} (OOD)"), Fmt::Pct));
        cols.push((format!("{n} paper (Amazon-trained)"), Fmt::PaperPct));
    }
    let cols_ref: Vec<(&str, Fmt)> = cols.iter().map(|(n, f)| (n.as_str(), *f)).collect();
    let mut t = Table::new(
        &format!("table10-ood-{variant}"),
        &format!("Out-of-distribution accuracy (%), variant `{variant}` — Table 10 layout"),
        "Ours: mean ± std over seeds. The paper trains on Amazon (BOSS) and evaluates on the \
         OOD sets; where it reports a set of the same name its value is shown for reference \
         only — a different training set.",
        &cols_ref,
    );
    for m in Method::ALL {
        let rs: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.variant == variant && r.method() == m && !r.ood.is_empty())
            .collect();
        if rs.is_empty() {
            continue;
        }
        let mut row: Vec<Value> = vec![m.as_str().into()];
        for task in &tasks {
            let x: Vec<&RunRecord> = rs.iter().copied().filter(|r| r.task() == task).collect();
            row.push(stat(&x, |r| Some(r.metrics.test.accuracy)));
        }
        for n in &names {
            row.push(stat(&rs, |r| {
                r.ood
                    .iter()
                    .find(|o| &o.name == n)
                    .map(|o| o.metrics.accuracy)
            }));
            row.push(paper_value(paper::accuracy_boss(n, m.as_str())));
        }
        t.push(row);
    }
    Some(t)
}

/// Table 1 (features and classifier norm) for one task.
pub fn features(runs: &[RunRecord], variant: &str, task: &str) -> Option<Table> {
    let with: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.variant == variant && r.task() == task && r.analysis.is_some())
        .collect();
    if with.is_empty() {
        return None;
    }
    let split = with[0]
        .analysis
        .as_ref()
        .map_or("test", |a| a.split.as_str());
    let mut t = Table::new(
        &format!("table1-features-{task}-{variant}"),
        &format!("Feature statistics on {task} {split}, variant `{variant}` — Table 1 layout"),
        "CS(F): mean pairwise cosine similarity; Diff(F): mean ‖φ − φ0‖; FDR(F): tr(S_W⁺ S_B); \
         Norm(C): ‖V‖_F. Ours: mean ± std over seeds; paper: Table 1 (CB, RTE) or 11.",
        &[
            ("Method", Fmt::Plain),
            ("CS(F)", Fmt::Fixed(3)),
            ("CS paper", Fmt::Fixed(3)),
            ("Diff(F)", Fmt::Sci),
            ("Diff paper", Fmt::Sci),
            ("FDR(F)", Fmt::Sci),
            ("FDR paper", Fmt::Sci),
            ("Norm(C)", Fmt::Sci),
            ("Norm paper", Fmt::Sci),
        ],
    );
    let pf = |m: &str| paper::feature_stats(task, m);
    let p = pf("pretrained");
    t.push(vec![
        "Pre-trained".into(),
        stat(&with, |r| r.analysis.as_ref().map(|a| a.pretrained.cs)),
        p.map(|p| p.cs).into(),
        Value::Missing,
        Value::Missing,
        stat(&with, |r| r.analysis.as_ref().map(|a| a.pretrained.fdr)),
        p.map(|p| p.fdr).into(),
        stat(&with, |r| Some(r.metrics.initial_classifier_norm)),
        p.and_then(|p| p.norm).into(),
    ]);
    for m in Method::ALL {
        let rs: Vec<&RunRecord> = with.iter().copied().filter(|r| r.method() == m).collect();
        if rs.is_empty() {
            continue;
        }
        let p = pf(m.as_str());
        t.push(vec![
            m.as_str().into(),
            stat(&rs, |r| r.analysis.as_ref().map(|a| a.run.cs)),
            p.map(|p| p.cs).into(),
            stat(&rs, |r| r.analysis.as_ref().and_then(|a| a.run.diff)),
            p.and_then(|p| p.diff).into(),
            stat(&rs, |r| r.analysis.as_ref().map(|a| a.run.fdr)),
            p.map(|p| p.fdr).into(),
            stat(&rs, |r| r.analysis.as_ref().and_then(|a| a.run.norm)),
            p.and_then(|p| p.norm).into(),
        ]);
    }
    Some(t)
}

/// Table 13: ‖V‖_F after training per method (and at initialisation), ours and the paper's.
pub fn norms(runs: &[RunRecord], variant: &str, task: &str) -> Option<Table> {
    let rs: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.variant == variant && r.task() == task)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut t = Table::new(
        &format!("table13-norms-{task}-{variant}"),
        &format!("Classifier norm ‖V‖_F on {task}, variant `{variant}` — Table 13 layout"),
        "Init: the random N(0, 0.02²) head; the rest: after training. Ours: mean ± std over \
         seeds; paper: Table 13.",
        &[
            ("", Fmt::Plain),
            ("Init", Fmt::Sci),
            ("FT", Fmt::Sci),
            ("LoRA", Fmt::Sci),
            ("LP", Fmt::Sci),
            ("LP-FT", Fmt::Sci),
            ("LP-LoRA", Fmt::Sci),
        ],
    );
    let order = [
        Method::Ft,
        Method::Lora,
        Method::Lp,
        Method::LpFt,
        Method::LpLora,
    ];
    let mut ours: Vec<Value> = vec![
        "ours".into(),
        stat(&rs, |r| Some(r.metrics.initial_classifier_norm)),
    ];
    let mut theirs: Vec<Value> = vec![
        "paper".into(),
        paper::classifier_norm(task, "pretrained").into(),
    ];
    for m in order {
        let x: Vec<&RunRecord> = rs.iter().copied().filter(|r| r.method() == m).collect();
        ours.push(stat(&x, |r| Some(r.metrics.classifier_norm)));
        theirs.push(paper::classifier_norm(task, m.as_str()).into());
    }
    t.push(ours);
    t.push(theirs);
    Some(t)
}

/// Table 2 (kernel statistics) for one task: P once, then F and P + F per method.
pub fn kernels(runs: &[RunRecord], variant: &str, task: &str) -> Option<Table> {
    let with: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.variant == variant && r.task() == task && r.ntk.is_some())
        .collect();
    if with.is_empty() {
        return None;
    }
    let n = with[0].ntk.as_ref().map_or(0, |k| k.n_train);
    let mut t = Table::new(
        &format!("table2-kernels-{task}-{variant}"),
        &format!("eNTK statistics on {task} ({n} train examples), variant `{variant}` — Table 2 layout"),
        "Rank: numerical rank with the float32 tolerance; FN: Frobenius norm of the train×train \
         kernel; Acc: per-logit kernel logistic regression accuracy (%) train/test; FT ratio: \
         docs/method.md §7.3. Ours: mean over the seeds with an eNTK; paper: Table 2 (CB) or 9 (250 examples). \
         At small N the Acc columns are unreliable: near-tied CV folds make the chosen C (and \
         the accuracy) jump with round-off.",
        &[
            ("Method", Fmt::Plain),
            ("Kernel", Fmt::Plain),
            ("Rank", Fmt::Fixed(0)),
            ("Rank paper", Fmt::Plain),
            ("FN", Fmt::Sci),
            ("FN paper", Fmt::Sci),
            ("Acc train", Fmt::Pct),
            ("Acc test", Fmt::Pct),
            ("Acc paper", Fmt::Plain),
            ("FT ratio", Fmt::Fixed(4)),
            ("FT ratio paper", Fmt::Fixed(4)),
        ],
    );
    let kstat = |rs: &[&RunRecord],
                 key: &str,
                 f: &dyn Fn(&crate::stages::kernels::KernelSummary) -> f64| {
        stat(rs, |r| {
            r.ntk.as_ref().and_then(|k| k.kernels.get(key)).map(f)
        })
    };
    let paper_row = |m: Option<&str>, kind: KernelKind| {
        let p = paper::kernel_stats(task, m, kind);
        (
            p.map_or(Value::Missing, |p| Value::Num(p.rank as f64)),
            p.map(|p| p.frobenius_norm).into(),
            p.map_or(Value::Missing, |p| {
                Value::Text(format!("{:.2}/{:.2}", p.acc_train, p.acc_test))
            }),
            p.and_then(|p| p.ft_ratio).into(),
        )
    };
    let (r0, f0, a0, _) = paper_row(Some("ft"), KernelKind::Pretrain);
    t.push(vec![
        "–".into(),
        "Pre-train E (P)".into(),
        kstat(&with, "P", &|k| k.stats.rank_f32 as f64),
        r0,
        kstat(&with, "P", &|k| k.stats.frobenius_norm),
        f0,
        kstat(&with, "P", &|k| k.regression.train),
        kstat(&with, "P", &|k| k.regression.eval),
        a0,
        Value::Missing,
        Value::Missing,
    ]);
    for m in Method::ALL.into_iter().filter(|m| m.has_gradient_stage()) {
        let rs: Vec<&RunRecord> = with.iter().copied().filter(|r| r.method() == m).collect();
        if rs.is_empty() {
            continue;
        }
        for (key, label, kind) in [
            ("F", "FT E (F)", KernelKind::Ft),
            ("P+F", "NTK (P + F)", KernelKind::Ntk),
        ] {
            let (rp, fp, ap, ratio_p) = paper_row(Some(m.as_str()), kind);
            t.push(vec![
                m.as_str().into(),
                label.into(),
                kstat(&rs, key, &|k| k.stats.rank_f32 as f64),
                rp,
                kstat(&rs, key, &|k| k.stats.frobenius_norm),
                fp,
                kstat(&rs, key, &|k| k.regression.train),
                kstat(&rs, key, &|k| k.regression.eval),
                ap,
                if key == "F" {
                    stat(&rs, |r| r.ntk.as_ref().and_then(|k| k.ft_ratio))
                } else {
                    Value::Missing
                },
                if key == "F" { ratio_p } else { Value::Missing },
            ]);
        }
    }
    Some(t)
}

/// LoRA's F against FT's F (ours; the paper's only number is the FN ratio of Table 2).
pub fn alignment(runs: &[RunRecord], variant: &str, task: &str) -> Option<Table> {
    let rs: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.variant == variant && r.task() == task && r.alignment.is_some())
        .collect();
    if rs.is_empty() {
        return None;
    }
    let groups = rs[0]
        .alignment
        .as_ref()
        .map_or(String::new(), |a| a.groups.join("+"));
    let mut t = Table::new(
        &format!("alignment-{task}-{variant}"),
        &format!("LoRA's F against FT's F on {task}, variant `{variant}` (Prop. 4.4)"),
        &format!(
            "Kernel alignment ⟨A,B⟩/(‖A‖‖B‖) of F^LoRA with F^FT restricted to the adapted weights \
             ({groups}) and with all of F^FT, and their Frobenius-norm ratios. Not in the paper, \
             except ‖F^LoRA‖/‖F^FT‖ computed from Table 2's FN column."
        ),
        &[
            ("Statistic", Fmt::Plain),
            ("ours", Fmt::Sci),
            ("paper", Fmt::Sci),
        ],
    );
    let ratio_paper = match (
        paper::kernel_stats(task, Some("lora"), KernelKind::Ft),
        paper::kernel_stats(task, Some("ft"), KernelKind::Ft),
    ) {
        (Some(l), Some(f)) => Some(l.frobenius_norm / f.frobenius_norm),
        _ => None,
    };
    let a = |f: fn(&crate::stages::kernels::Alignment) -> f64| {
        stat(&rs, |r| r.alignment.as_ref().map(f))
    };
    t.push(vec![
        format!("alignment with F^FT ({groups})").into(),
        a(|x| x.alignment_restricted),
        Value::Missing,
    ]);
    t.push(vec![
        "alignment with all of F^FT".into(),
        a(|x| x.alignment_full),
        Value::Missing,
    ]);
    t.push(vec![
        format!("‖F^LoRA‖ / ‖F^FT ({groups})‖").into(),
        a(|x| x.norm_ratio_restricted),
        Value::Missing,
    ]);
    t.push(vec![
        "‖F^LoRA‖ / ‖F^FT‖".into(),
        a(|x| x.norm_ratio_full),
        ratio_paper.into(),
    ]);
    Some(t)
}

/// Table 3/14 (calibration before and after temperature scaling) for one task.
pub fn calibration(runs: &[RunRecord], variant: &str, task: &str) -> Option<Table> {
    let with: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.variant == variant && r.task() == task && r.calibration.is_some())
        .collect();
    if with.is_empty() {
        return None;
    }
    let mut t = Table::new(
        &format!("table3-calibration-{task}-{variant}"),
        &format!("Calibration on {task} test, variant `{variant}` — Table 3 layout"),
        "ECE/MCE in % (15 bins), NLL in nats; w/ TS: logits / T with T fitted on validation NLL. \
         Imp. = w/o − w/ (positive = better). Paper: w/o → w/ (Imp.), Table 3/14/15.",
        &[
            ("Method", Fmt::Plain),
            ("T", Fmt::Fixed(3)),
            ("ECE w/o", Fmt::Pct),
            ("ECE w/", Fmt::Pct),
            ("ECE Imp.", Fmt::Pct),
            ("ECE paper", Fmt::Plain),
            ("MCE w/o", Fmt::Pct),
            ("MCE w/", Fmt::Pct),
            ("MCE Imp.", Fmt::Pct),
            ("MCE paper", Fmt::Plain),
            ("NLL w/o", Fmt::Fixed(3)),
            ("NLL w/", Fmt::Fixed(3)),
        ],
    );
    let paper_text = |m: Method, metric| {
        paper::calibration(task, m.as_str(), metric).map_or(Value::Missing, |c| {
            Value::Text(format!(
                "{:.2} → {:.2} ({:.2})",
                c.without_ts.mean, c.with_ts.mean, c.improvement
            ))
        })
    };
    for m in Method::ALL {
        let rs: Vec<&RunRecord> = with.iter().copied().filter(|r| r.method() == m).collect();
        if rs.is_empty() {
            continue;
        }
        let c = |f: fn(&crate::stages::calibrate::CalibrationReport) -> f64| {
            stat(&rs, |r| r.calibration.as_ref().map(f))
        };
        t.push(vec![
            m.as_str().into(),
            c(|x| x.temperature.t),
            c(|x| x.test_before.ece),
            c(|x| x.test_after.ece),
            c(|x| x.test_before.ece - x.test_after.ece),
            paper_text(m, CalibrationMetric::Ece),
            c(|x| x.test_before.mce),
            c(|x| x.test_after.mce),
            c(|x| x.test_before.mce - x.test_after.mce),
            paper_text(m, CalibrationMetric::Mce),
            c(|x| x.test_before.nll),
            c(|x| x.test_after.nll),
        ]);
    }
    Some(t)
}

/// The norm-scaling sweep (Fig. 3/11 data): per method and κ, the head norm at the start of the
/// gradient stage, at the end, Diff(F) and test accuracy.
pub fn norm_sweep(runs: &[RunRecord], task: &str) -> Option<Table> {
    let rs: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.task() == task && r.variant.starts_with("kappa-"))
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut t = Table::new(
        &format!("sweep-norm-{task}"),
        &format!("Norm-scaling sweep on {task} — data of Fig. 3/11"),
        "The head V is multiplied by κ right before the gradient stage. Ours: mean ± std over \
         seeds. The paper shows this only as a figure (Diff(F) falls almost monotonically as \
         the norm grows).",
        &[
            ("Method", Fmt::Plain),
            ("κ", Fmt::Plain),
            ("‖V‖ start", Fmt::Sci),
            ("‖V‖ end", Fmt::Sci),
            ("Diff(F)", Fmt::Sci),
            ("test acc", Fmt::Pct),
        ],
    );
    let groups = group(runs);
    for m in Method::ALL {
        for k in sweep_kappas(&rs, m) {
            let key = (
                crate::experiment::config::kappa_variant(k),
                task.to_string(),
                m,
            );
            let Some(x) = groups.get(&key) else { continue };
            t.push(vec![
                m.as_str().into(),
                Value::Num(k),
                stat(x, |r| r.metrics.stage_start_classifier_norm),
                stat(x, |r| Some(r.metrics.classifier_norm)),
                stat(x, |r| r.analysis.as_ref().and_then(|a| a.run.diff)),
                stat(x, |r| Some(r.metrics.test.accuracy)),
            ]);
        }
    }
    Some(t)
}

/// Wall time per method (from `manifest.json`).
pub(crate) fn runtimes(runs: &[RunRecord]) -> Table {
    let mut t = Table::new(
        "runtime",
        "Wall time per run",
        "Training, evaluation and saving (not the later analyses), seconds; threads from the \
         run's manifest.",
        &[
            ("Variant", Fmt::Plain),
            ("Task", Fmt::Plain),
            ("Method", Fmt::Plain),
            ("Runs", Fmt::Plain),
            ("Epochs", Fmt::Plain),
            ("Wall s", Fmt::Fixed(1)),
            ("Threads", Fmt::Plain),
        ],
    );
    for ((variant, task, method), rs) in group(runs) {
        t.push(vec![
            variant.into(),
            task.into(),
            method.as_str().into(),
            Value::Num(rs.len() as f64),
            if method.has_gradient_stage() {
                Value::Num(rs[0].config.train.epochs as f64)
            } else {
                Value::Missing
            },
            stat(&rs, |r| r.manifest.as_ref().map(|m| m.wall_seconds)),
            rs[0].manifest.as_ref().map(|m| m.threads as f64).into(),
        ]);
    }
    t
}

/// Plain-language list of the settings that differ from the paper's (docs/method.md §3, §7, §10).
pub fn differences(runs: &[RunRecord]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in runs {
        let c = &r.config;
        out.insert(format!(
            "Encoder: `{}` (the paper: roberta-base, 125M parameters).",
            c.model
        ));
        let paper = RunConfig::paper_defaults(&c.task, c.method, &c.model, c.seed);
        if c.method.has_gradient_stage() {
            if c.train.epochs != paper.train.epochs {
                out.insert(format!(
                    "{}: {} epochs (the paper: {}).",
                    c.task, c.train.epochs, paper.train.epochs
                ));
            }
            if c.train.batch_size != paper.train.batch_size || c.train.lr != paper.train.lr {
                out.insert(format!(
                    "{} {}: batch {} lr {:e} (Table 6: batch {} lr {:e}).",
                    c.task,
                    c.method,
                    c.train.batch_size,
                    c.train.lr,
                    paper.train.batch_size,
                    paper.train.lr
                ));
            }
        }
        if c.method.has_gradient_stage() && c.train.precision != paper.train.precision {
            out.insert(
                "bf16 mixed-precision training steps (`--precision bf16`; the paper: fp32).".into(),
            );
        }
        if let Some(k) = c.max_train_samples {
            out.insert(format!("{}: first {k} training examples only.", c.task));
        }
        // The paper's OOD models (arXiv 2405.16747, Table 10) are trained on Amazon (BOSS); a grid's
        // `[[ood]]` sets are evaluated with models trained on its own task.
        if !r.ood.is_empty() && c.task != "amazon" {
            out.insert(format!(
                "{}: the out-of-distribution sets are evaluated with models trained on {}; the \
                 paper's Table 10 models were trained on Amazon (BOSS), so its OOD values are \
                 for reference only.",
                c.task, c.task
            ));
        }
        if let (Some(cc), true) = (c.lp.c, c.method.has_lp()) {
            out.insert(format!(
                "Variant `{}`: LP with a fixed C = {cc} instead of cross-validation.",
                r.variant
            ));
        }
        if c.tokenize.padding != crate::data::batch::Padding::Fixed {
            out.insert(
                "Dynamic padding with length-bucketed batches (the reference pads to 128; the \
                 logits are the same, only padding work differs)."
                    .into(),
            );
        }
        if let Some(n) = &r.ntk {
            if n.n_train < 250 {
                out.insert(format!(
                    "{}: eNTK on the first {} training / {} test examples (the paper: 250 drawn at random).",
                    c.task, n.n_train, n.n_eval
                ));
            }
        }
    }
    let seeds: BTreeSet<u64> = runs.iter().map(|r| r.config.seed).collect();
    if seeds.len() < 5 {
        out.insert(format!(
            "{} seed(s) ({}) instead of the paper's 5.",
            seeds.len(),
            seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.into_iter().collect()
}

/// The distinct head scales κ of `method`'s runs among `rs`, ascending.
pub(crate) fn sweep_kappas(rs: &[&RunRecord], method: Method) -> Vec<f64> {
    let mut kappas: Vec<f64> = rs
        .iter()
        .filter(|r| r.method() == method)
        .map(|r| r.config.head_scale)
        .collect();
    kappas.sort_by(f64::total_cmp);
    kappas.dedup();
    kappas
}
