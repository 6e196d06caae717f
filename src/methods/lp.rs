//! The LP stage (docs/method.md §2.1): frozen eval-mode features of the training split, then L2
//! multinomial logistic regression (cross-validated like scikit-learn's `LogisticRegressionCV`,
//! or with a fixed C), installed into the head.
//!
//! REF: for a binary task the installed head is [−w/2; w/2], [−c/2; c/2] (half the logit gap
//! of scikit-learn's own model); see [`crate::probe::logreg::LogReg::head`].

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::methods::config::LpConfig;
use crate::model::SequenceClassifier;
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

pub use crate::probe::features::features_f64 as features;

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
pub(crate) fn install_head(
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

/// One point of the LP path: the probe after `iteration` L-BFGS iterations (docs/method.md §8.1).
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

/// Refits the probe at `c` from scratch on features `x` `[n, d]` and records every iterate
/// (INFERRED, docs/method.md §8.1: budgets 1, 2, … without warm start — the iterate after t iterations is
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
