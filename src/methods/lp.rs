//! The LP stage (spec §2.1): frozen eval-mode features of the training split, then L2
//! multinomial logistic regression (cross-validated like scikit-learn's `LogisticRegressionCV`,
//! or with a fixed C), installed into the head.
//!
//! REF: for a binary task the installed head is [−w/2; w/2], [−c/2; c/2] (half the logit gap
//! of scikit-learn's own model); see [`crate::probe::logreg::LogReg::head`].

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::batch::{length_bucketed, Encoded, TextTokenizer};
use crate::error::Result;
use crate::methods::config::LpConfig;
use crate::model::{Mode, SequenceClassifier};
use crate::probe::cv::LogRegCvParams;
use crate::probe::logreg::{LogReg, LogRegParams};

/// What the LP stage found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LpSummary {
    /// The C used (chosen by CV, or fixed).
    pub c: f64,
    /// Whether C was cross-validated.
    pub cross_validated: bool,
    /// Mean CV accuracy per candidate C (empty for a fixed C).
    pub cv_mean_accuracy: Vec<f64>,
    pub cs: Vec<f64>,
    /// L-BFGS iterations of the final fit, and whether it converged.
    pub n_iter: usize,
    pub converged: bool,
    /// Training accuracy of the fitted model.
    pub train_accuracy: f64,
    /// ‖V‖_F of the installed head (after the binary halving), and of the random head before.
    pub head_norm: f64,
    pub random_head_norm: f64,
    /// Whether the binary halving was applied.
    pub binary_halving: bool,
}

/// Eval-mode features `[n, h]` of `encoded` (f64, row-major), in input order.
pub fn features(
    model: &SequenceClassifier,
    tokenizer: &TextTokenizer,
    encoded: &[Encoded],
    batch_size: usize,
) -> Result<Vec<f64>> {
    let h = model.encoder.config().hidden_size;
    let mut out = vec![0f64; encoded.len() * h];
    let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
    for idx in length_bucketed(&lengths, batch_size) {
        let rows: Vec<&Encoded> = idx.iter().map(|&i| &encoded[i]).collect();
        let inputs = tokenizer.batch(&rows);
        let f = model
            .features(&inputs, &mut Mode::Eval)?
            .detach()
            .to_dtype(DType::F64)?;
        let f: Vec<Vec<f64>> = f.to_vec2()?;
        for (row, &i) in f.iter().zip(&idx) {
            out[i * h..(i + 1) * h].copy_from_slice(row);
        }
    }
    Ok(out)
}

/// Fits the probe on features `x` `[n, d]` with labels `y`. Returns the model, the C used, and
/// the mean CV accuracy per candidate C when C was cross-validated.
pub fn fit_probe(
    cfg: &LpConfig,
    x: &[f64],
    n: usize,
    d: usize,
    y: &[usize],
    n_classes: usize,
) -> Result<(LogReg, f64, Option<Vec<f64>>)> {
    match cfg.c {
        Some(c) => {
            let params = LogRegParams {
                c,
                tol: cfg.tol,
                max_iter: cfg.max_iter,
                compat: cfg.compat,
            };
            Ok((params.fit(x, n, d, y, n_classes)?, c, None))
        }
        None => {
            let params = LogRegCvParams {
                cs: cfg.cs.clone(),
                folds: cfg.folds,
                tol: cfg.tol,
                max_iter: cfg.max_iter,
                compat: cfg.compat,
            };
            let cv = params.fit(x, n, d, y, n_classes)?;
            let k = cv.scores.first().map_or(0, Vec::len);
            let mean: Vec<f64> = (0..k)
                .map(|j| cv.scores.iter().map(|f| f[j]).sum::<f64>() / cv.scores.len() as f64)
                .collect();
            Ok((cv.model, cv.best_c, Some(mean)))
        }
    }
}

/// Installs the probe's head (`LogReg::head`, with the binary halving) into `model`.
/// Works whether the head is trainable (`Var`s are set in place) or frozen (replaced).
pub fn install_head(
    model: &mut SequenceClassifier,
    vars: &std::collections::BTreeMap<String, candle_core::Var>,
    probe: &LogReg,
) -> Result<()> {
    let (w, b) = probe.head();
    let c = model.head.num_labels();
    let d = model.head.weight.dims()[1];
    let dev = model.head.weight.device().clone();
    let w = Tensor::from_vec(
        w.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (c, d),
        &dev,
    )?;
    let b = Tensor::from_vec(b.iter().map(|&v| v as f32).collect::<Vec<_>>(), c, &dev)?;
    match (vars.get("classifier.weight"), vars.get("classifier.bias")) {
        (Some(vw), Some(vb)) => {
            vw.set(&w)?;
            vb.set(&b)?;
        }
        _ => {
            model.head.weight = w;
            model.head.bias = b;
        }
    }
    Ok(())
}

/// One point of the LP path: the probe after `iteration` L-BFGS iterations (spec §8.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LpPathPoint {
    pub iteration: usize,
    /// ‖V‖_F of the installed head (after the binary halving), bias excluded.
    pub classifier_norm: f64,
    /// ‖b‖₂ of the installed head.
    pub bias_norm: f64,
    pub train_accuracy: f64,
}

/// `lp-path.json`: LP classifier norm and training accuracy against the iteration budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LpPath {
    /// The C of the fit.
    pub c: f64,
    /// Iterations until convergence (or the budget).
    pub n_iter: usize,
    pub converged: bool,
    pub points: Vec<LpPathPoint>,
}

/// The file [`lp_path_of_run`] writes into an LP run directory.
pub const LP_PATH_FILE: &str = "lp-path.json";

/// Refits the probe at `c` from scratch on features `x` `[n, d]` and records every iterate
/// (INFERRED, spec §8.1: budgets 1, 2, … without warm start — the iterate after t iterations is
/// exactly the fit with `max_iter = t`).
///
/// # Errors
/// Those of the logistic regression.
#[allow(clippy::too_many_arguments)]
pub fn lp_path(
    cfg: &LpConfig,
    c: f64,
    x: &[f64],
    n: usize,
    d: usize,
    y: &[usize],
    n_classes: usize,
    max_iter: usize,
) -> Result<LpPath> {
    let params = LogRegParams {
        c,
        tol: cfg.tol,
        max_iter,
        compat: cfg.compat,
    };
    let mut points = Vec::new();
    let mut record = |m: &LogReg| {
        let (w, b) = m.head();
        let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        let bias_norm = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        let train_accuracy = m.accuracy(x, n, y).unwrap_or(f64::NAN);
        points.push(LpPathPoint {
            iteration: m.n_iter,
            classifier_norm: norm,
            bias_norm,
            train_accuracy,
        });
    };
    let fit = params.fit_observed(x, n, d, y, n_classes, None, &mut record)?;
    Ok(LpPath {
        c,
        n_iter: fit.n_iter,
        converged: fit.converged,
        points,
    })
}

/// The LP path of a finished run with an LP stage, at the run's C, on its training split (all of
/// it, as the LP stage saw it); written to `lp-path.json` in the run.
///
/// # Errors
/// [`crate::Error::InvalidArgument`] for a run without an LP stage; loading and fitting errors.
pub fn lp_path_of_run(dir: &std::path::Path) -> Result<LpPath> {
    let trained = crate::methods::load::load_run(dir)?;
    let cfg = &trained.config;
    let lp = trained
        .metrics
        .lp
        .as_ref()
        .ok_or_else(|| crate::Error::InvalidArgument {
            field: "run".into(),
            reason: format!("{} has no LP stage", dir.display()),
        })?;
    let task = crate::methods::run::load_task(cfg)?;
    let y = crate::data::require_labels(&task.train, &format!("{} train", task.task))?;
    let texts: Vec<(&str, Option<&str>)> = task
        .train
        .iter()
        .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
        .collect();
    let enc = trained.tokenizer.encode(&texts)?;
    // The run's model has the pre-trained encoder for LP; for LP-FT / LP-LoRA the encoder was
    // trained afterwards, so take the features from the pre-trained checkpoint.
    let base = if cfg.method == crate::methods::Method::Lp {
        None
    } else {
        let ckpt = trained.files.checkpoint(&candle_core::Device::Cpu)?;
        let opts = crate::model::ModelOptions {
            num_labels: task.labels.len(),
            pooling: cfg.pooling,
            trainable: crate::model::Trainable::None,
            model_seed: 0,
            lora: None,
        };
        Some(SequenceClassifier::load(&ckpt, &trained.files.config, &opts)?.0)
    };
    let model = base.as_ref().unwrap_or(&trained.model);
    let d = trained.files.config.hidden_size;
    let x = features(model, &trained.tokenizer, &enc, cfg.train.eval_batch_size)?;
    let path = lp_path(
        &cfg.lp,
        lp.c,
        &x,
        y.len(),
        d,
        &y,
        task.labels.len(),
        cfg.lp.max_iter,
    )?;
    crate::methods::run::write_json(&dir.join(LP_PATH_FILE), &path)?;
    Ok(path)
}
