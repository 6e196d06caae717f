//! Kernel logistic regression: the "Acc" columns of the paper's Table 2 / Table 9 (docs/method.md §7.2,
//! §12 item 2, §13).
//!
//! REF (`tom4649/lp-ft_ntk:training/kernel_trainer.py`): each kernel K ∈ {P, F, P + F} is
//! flattened to rows `(n, c)` (row `n·C + c`) and columns `(m, c′)`; the targets are the flattened
//! one-hot labels, `t[n·C + c] = 1[c = y_n]`; a scikit-learn
//! `LogisticRegressionCV(max_iter=10000, random_state=0)` is fitted with the train×train rows as
//! the design matrix and scored on the eval×train rows. PAPER: "We treated each output logit
//! independently … f(x) = Σ_{i=1}^{NC} α_i K(x, x_i) … solved using logistic regression with L2
//! regularization". So this is **one** binary problem over all `N·C` (sample, logit) rows, and the
//! reported accuracy is the binary accuracy over those `N·C` entries, not a class accuracy
//! (CB test accuracies are multiples of 1/168 = 1/(56·3)). [`KernelRegression`] also reports the
//! class accuracy (arg-max over each sample's C logit scores) as an extra, clearly named.
//!
//! Solver: [`crate::probe::cv::LogRegCvParams`] with its defaults (Cs = logspace(−4, 4, 10),
//! 5 stratified contiguous folds on the binary targets, accuracy, refit on all rows at the best C)
//! and `max_iter` 10 000, with [`SklearnCompat::V1_9`], which fits an ordinary binary (sigmoid) L2
//! logistic regression with an unpenalised intercept (docs/method.md §13). Why V1_9 and not the default
//! V1_0: REF leaves `multi_class` at `"auto"`, which for two target values is `"ovr"`, i.e. a
//! binomial fit, in every scikit-learn release. lpft's V1_0 reproduces the *multinomial* LP of
//! §2.1, whose two-class model is the symmetric softmax `[−w; w]` — for binary targets the same
//! predictions as a sigmoid fit with C doubled, so its CV would pick from a shifted grid. V1_0 is
//! therefore rejected here.
//!
//! Deviation (stopping rule only): REF's pinned scikit-learn 1.0.1 minimises the summed objective
//! `Σ CE + ‖w‖²/(2C)` and stops when its max-abs gradient is ≤ `tol`; V1_9 (scikit-learn 1.9.1,
//! i.e. the reference script run under the current release) minimises the same objective divided
//! by the number of rows, so with the same `tol` it stops earlier. The minimiser is identical.
//! To approximate 1.0.1's gradient test, set `cv.tol` to `1e-4 / (0.8·N·C)` (0.8·N·C ≈ the rows
//! of a CV training fold).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ntk::kernel::Kernel;
use crate::probe::cv::{LogRegCv, LogRegCvParams};
use crate::probe::logreg::{LogReg, SklearnCompat};

/// REF: `LogisticRegressionCV(max_iter=10000)` in the kernel trainer (the LP uses 5000).
pub(crate) const KERNEL_MAX_ITER: usize = 10_000;

/// Hyper-parameters of the kernel regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KernelRegressionParams {
    /// The cross-validated binary logistic regression. Default: [`LogRegCvParams::default`] with
    /// `max_iter` = [`KERNEL_MAX_ITER`] and `compat` = [`SklearnCompat::V1_9`] (see the module
    /// docs); [`SklearnCompat::V1_0`] is rejected.
    #[serde(default = "default_cv")]
    pub cv: LogRegCvParams,
}

fn default_cv() -> LogRegCvParams {
    LogRegCvParams {
        max_iter: KERNEL_MAX_ITER,
        compat: SklearnCompat::V1_9,
        ..LogRegCvParams::default()
    }
}

impl Default for KernelRegressionParams {
    fn default() -> Self {
        KernelRegressionParams { cv: default_cv() }
    }
}

/// A fitted kernel regression and its accuracies (fractions in `[0, 1]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRegression {
    /// Per-logit binary accuracy over the `N_train·C` train×train rows (the paper's "Acc" train
    /// number).
    pub train_accuracy: f64,
    /// Per-logit binary accuracy over the `N_eval·C` eval×train rows (the paper's "Acc" test
    /// number when the eval set is the test split).
    pub eval_accuracy: f64,
    /// Extra, not in the paper: class accuracy on the train set, predicting for sample n the
    /// logit c with the largest score `w·K_row(n, c) + b` (first arg-max on ties).
    pub train_class_accuracy: f64,
    /// Extra, not in the paper: class accuracy on the eval set (as `train_class_accuracy`).
    pub eval_class_accuracy: f64,
    /// The cross-validation result: chosen C, fold scores, and the refit model whose `coef` is
    /// the `α` of `f(x) = Σ_{i=1}^{NC} α_i K(x, x_i) + b` (length `N_train·C`).
    pub cv: LogRegCv,
}

/// The flattened one-hot targets `[n·C]`: `t[i·C + c] = 1[c = y_i]`, matching the row order of
/// [`Kernel::flatten`].
///
/// # Errors
/// [`Error::LabelOutOfRange`] if some `y_i ≥ c`.
pub(crate) fn logit_targets(y: &[usize], c: usize) -> Result<Vec<usize>> {
    let mut t = Vec::with_capacity(y.len() * c);
    for (index, &label) in y.iter().enumerate() {
        if label >= c {
            return Err(Error::LabelOutOfRange {
                index,
                label,
                n_classes: c,
            });
        }
        t.extend((0..c).map(|cc| usize::from(cc == label)));
    }
    Ok(t)
}

impl KernelRegressionParams {
    /// Checks the CV parameters and that `compat` is [`SklearnCompat::V1_9`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        self.cv.validate()?;
        if self.cv.compat != SklearnCompat::V1_9 {
            return Err(Error::InvalidArgument {
                field: "cv.compat".into(),
                reason: "kernel regression is a binomial (sigmoid) fit; only sklearn-1.9 \
                         provides it (sklearn-1.0 is the symmetric multinomial of the LP)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Fits on the train×train kernel and scores on it and on the eval×train kernel.
    ///
    /// `train` is `[N, C, N, C]` with labels `y_train` `[N]`; `eval` is `[M, C, N, C]` (eval set
    /// first, against the same N training inputs) with labels `y_eval` `[M]`; labels `< C`,
    /// `C ≥ 2`. Each kernel is used through [`Kernel::flatten`]: design matrix `[N·C, N·C]`,
    /// eval rows `[M·C, N·C]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the kernels do not fit together or the label counts differ;
    /// [`Error::LabelOutOfRange`]; [`Error::InvalidArgument`] for `C < 2` or bad parameters;
    /// those of [`LogRegCvParams::fit`] (e.g. [`Error::NonFiniteFeature`] for a NaN kernel entry,
    /// with `index`/`feature` = flattened row/column, or [`Error::TooFewForFolds`]).
    pub fn fit(
        &self,
        train: &Kernel,
        y_train: &[usize],
        eval: &Kernel,
        y_eval: &[usize],
    ) -> Result<KernelRegression> {
        self.validate()?;
        let [n, c, n_b, _] = train.shape();
        let [m, c_e, n_e, _] = eval.shape();
        if n != n_b {
            return Err(Error::Shape {
                what: "train×train kernel",
                expected: "[N, C, N, C]".into(),
                found: format!("{:?}", train.shape()),
            });
        }
        if c_e != c || n_e != n {
            return Err(Error::Shape {
                what: "eval×train kernel",
                expected: format!("[M, {c}, {n}, {c}]"),
                found: format!("{:?}", eval.shape()),
            });
        }
        if c < 2 {
            return Err(Error::InvalidArgument {
                field: "n_logits".into(),
                reason: format!("kernel regression needs C ≥ 2 logits, got {c}"),
            });
        }
        for (what, y, len) in [("train labels", y_train, n), ("eval labels", y_eval, m)] {
            if y.len() != len {
                return Err(Error::Shape {
                    what,
                    expected: format!("{len} values"),
                    found: format!("{}", y.len()),
                });
            }
        }
        let t_train = logit_targets(y_train, c)?;
        let t_eval = logit_targets(y_eval, c)?;
        // The `[n1, C, n2, C]` buffer is the row-major buffer of its flattening `[n1·C, n2·C]` (row `i·C + c`).
        let (x_train, x_eval) = (train.data(), eval.data());
        let cols = n * c;
        let cv = self.cv.fit(x_train, n * c, cols, &t_train, 2)?;
        let train_accuracy = cv.model.accuracy(x_train, n * c, &t_train)?;
        let eval_accuracy = cv.model.accuracy(x_eval, m * c, &t_eval)?;
        let train_class_accuracy = class_accuracy(&cv.model, x_train, n, c, y_train)?;
        let eval_class_accuracy = class_accuracy(&cv.model, x_eval, m, c, y_eval)?;
        Ok(KernelRegression {
            train_accuracy,
            eval_accuracy,
            train_class_accuracy,
            eval_class_accuracy,
            cv,
        })
    }
}

/// Class accuracy: for each of the `n` samples, the arg-max over its C rows of the binary score.
fn class_accuracy(model: &LogReg, x: &[f64], n: usize, c: usize, y: &[usize]) -> Result<f64> {
    // Two target classes: `decision` gives [0, d] per row (V1_9), so column 1 is the score.
    let z = model.decision(x, n * c)?;
    let mut hits = 0usize;
    for (i, &label) in y.iter().enumerate() {
        let mut best = 0;
        for cc in 1..c {
            if z[(i * c + cc) * 2 + 1] > z[(i * c + best) * 2 + 1] {
                best = cc;
            }
        }
        hits += usize::from(best == label);
    }
    Ok(hits as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntk::kernel::pretrain_kernel;

    /// Accuracies are ratios of small integers; only the division's rounding is allowed.
    const RATIO_TOL: f64 = 1e-12;

    /// Features of a clearly separable 3-class problem in 2-D: class k sits near the unit vector
    /// at angle 2πk/3, scaled by 3, with small hand-picked offsets.
    fn cluster_features(offsets: &[(f64, f64)], labels: &[usize]) -> Vec<f64> {
        let mut phi = Vec::new();
        for (&(dx, dy), &k) in offsets.iter().zip(labels) {
            let a = 2.0 * std::f64::consts::PI * k as f64 / 3.0;
            phi.push(3.0 * a.cos() + dx);
            phi.push(3.0 * a.sin() + dy);
        }
        phi
    }

    const TRAIN_OFFSETS: [(f64, f64); 12] = [
        (0.1, -0.2),
        (-0.3, 0.1),
        (0.2, 0.2),
        (0.0, -0.1),
        (-0.2, -0.3),
        (0.3, 0.0),
        (0.1, 0.3),
        (-0.1, 0.1),
        (0.2, -0.1),
        (-0.3, -0.2),
        (0.0, 0.2),
        (0.15, -0.25),
    ];
    const TRAIN_LABELS: [usize; 12] = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2];
    const EVAL_OFFSETS: [(f64, f64); 6] = [
        (0.2, 0.1),
        (-0.1, -0.2),
        (0.05, 0.25),
        (-0.25, 0.0),
        (0.1, -0.15),
        (0.0, 0.0),
    ];
    const EVAL_LABELS: [usize; 6] = [2, 0, 1, 1, 2, 0];

    #[test]
    fn targets_are_flattened_one_hot() {
        assert_eq!(
            logit_targets(&[2, 0], 3).expect("in range"),
            vec![0, 0, 1, 1, 0, 0]
        );
        assert!(logit_targets(&[3], 3).is_err());
    }

    #[test]
    fn separable_kernel_reaches_accuracy_one() {
        let c = 3;
        let phi = cluster_features(&TRAIN_OFFSETS, &TRAIN_LABELS);
        let phi_e = cluster_features(&EVAL_OFFSETS, &EVAL_LABELS);
        let n = TRAIN_LABELS.len();
        let m = EVAL_LABELS.len();
        let k_train = pretrain_kernel(&phi, n, None, n, 2, c).expect("valid");
        let k_eval = pretrain_kernel(&phi_e, m, Some(&phi), n, 2, c).expect("valid");
        let fit = KernelRegressionParams::default()
            .fit(&k_train, &TRAIN_LABELS, &k_eval, &EVAL_LABELS)
            .expect("fits");
        assert_eq!(fit.train_accuracy, 1.0);
        assert_eq!(fit.eval_accuracy, 1.0);
        assert_eq!(fit.train_class_accuracy, 1.0);
        assert_eq!(fit.eval_class_accuracy, 1.0);
        assert_eq!(fit.cv.model.coef.len(), n * c);
        assert_eq!(fit.cv.model.compat, SklearnCompat::V1_9);
    }

    #[test]
    fn accuracy_counts_logit_entries_not_samples() {
        // A kernel that carries no information (all zeros): every row scores the intercept
        // alone, which predicts the majority target 0, so the per-logit accuracy is (C−1)/C
        // while the class accuracy is that of always predicting logit 0.
        let (n, c) = (10, 3);
        let zero = Kernel::from_parts(vec![0.0; n * c * n * c], [n, c, n, c]).expect("valid");
        let y: Vec<usize> = (0..n).map(|i| i % c).collect();
        let fit = KernelRegressionParams::default()
            .fit(&zero, &y, &zero, &y)
            .expect("fits");
        assert!((fit.train_accuracy - 2.0 / 3.0).abs() < RATIO_TOL);
        assert!((fit.eval_accuracy - 2.0 / 3.0).abs() < RATIO_TOL);
        // y = 0 for samples 0, 3, 6, 9: 4 of 10.
        assert!((fit.train_class_accuracy - 0.4).abs() < RATIO_TOL);
    }

    #[test]
    fn rejects_mismatched_kernels_and_v1_0() {
        let phi = cluster_features(&TRAIN_OFFSETS, &TRAIN_LABELS);
        let k = pretrain_kernel(&phi, 12, None, 12, 2, 3).expect("valid");
        let k2 = pretrain_kernel(&phi, 12, None, 12, 2, 2).expect("valid");
        let params = KernelRegressionParams::default();
        assert!(params.fit(&k, &TRAIN_LABELS, &k2, &TRAIN_LABELS).is_err());
        assert!(params
            .fit(&k, &TRAIN_LABELS[..11], &k, &TRAIN_LABELS)
            .is_err());
        let mut v10 = KernelRegressionParams::default();
        v10.cv.compat = SklearnCompat::V1_0;
        assert!(matches!(
            v10.fit(&k, &TRAIN_LABELS, &k, &TRAIN_LABELS),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
