//! Per-run evaluation metrics from logits and labels (docs/method.md §5, the reference's
//! `utils/custom_metric.py`), plus the reliability bins behind ECE/MCE (docs/method.md §5, §9).
//!
//! All inputs are plain host arrays: logits `z` row-major `[n, C]` and labels `y` in `0..C`.
//! Probabilities are `p = softmax(z)` per row; the prediction is `argmax_k z_ik`, ties going to
//! the lowest index (as `numpy.argmax`). Every metric is a fraction or a mean in natural units;
//! the paper's ×100 happens in `report`, never here.
//!
//! Definitional choices (all checked against scikit-learn 1.9.1 in the tests):
//! - macro-F1 is `sklearn.metrics.f1_score(average="macro")` with its default `labels`: the
//!   classes that occur in `y` or in the predictions. A class absent from both is left out of
//!   the mean (not counted as 0 or 1); a class that is only predicted, or only true, scores 0.
//! - MCC is `sklearn.metrics.matthews_corrcoef`: Gorodkin's multiclass R_K, 0 when its
//!   denominator is 0 (e.g. every prediction is the same class).
//! - Brier follows the reference: the mean over all `n·C` entries, so it is scikit-learn's
//!   multiclass `brier_score_loss` divided by `C`.
//! - Reliability bins are left-open, right-closed `(b/B, (b+1)/B]`, as in the reference; a
//!   confidence of exactly 0 (impossible for a softmax, possible for hand-made probabilities)
//!   goes into the first bin instead of being dropped.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Number of equal-width confidence bins for ECE/MCE. REF: 15 in `custom_metric.py`; PAPER: 15.
pub const ECE_BINS: usize = 15;

/// The per-run metrics of docs/method.md §5, all from one set of logits.
///
/// Fractions are in `[0, 1]`; NLL is in nats. Names differ from the reference's keys where noted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Number of examples `n`.
    pub n: usize,
    /// Fraction of examples whose argmax equals the label.
    pub accuracy: f64,
    /// Macro-averaged F1 over the classes present in labels or predictions (scikit-learn's
    /// `f1_score(average="macro")`).
    pub f1_macro: f64,
    /// Matthews correlation coefficient, multiclass R_K (scikit-learn's `matthews_corrcoef`),
    /// in `[-1, 1]`; 0 when undefined.
    pub mcc: f64,
    /// Mean cross-entropy `mean_i [logsumexp(z_i) - z_{i,y_i}]`, in nats.
    pub nll: f64,
    /// Mean over all `n·C` entries of `(p_ik - 1[k = y_i])²` (REF: divided by `C` as well).
    pub brier: f64,
    /// Expected calibration error over [`ECE_BINS`] equal-width confidence bins.
    pub ece: f64,
    /// Maximum calibration error: the largest `|conf_b - acc_b|` over non-empty bins.
    pub mce: f64,
    /// Mean confidence `mean_i max_k p_ik`.
    pub confidence: f64,
    /// Mean over examples of `‖z_i‖₂` (REF: `norm_l2`).
    pub logit_norm_l2: f64,
    /// Mean over examples of `‖z_i‖₁` (REF: `norm_l1`).
    pub logit_norm_l1: f64,
    /// Mean of all `n·C` logit entries (REF: `mean_logits`).
    pub mean_logit: f64,
}

/// One equal-width confidence bin of a reliability diagram.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityBin {
    /// Open lower edge `b/B`.
    pub lower: f64,
    /// Closed upper edge `(b+1)/B`.
    pub upper: f64,
    /// Number of examples whose confidence falls in the bin.
    pub count: usize,
    /// Mean confidence `conf_b` of those examples; 0 when `count == 0`.
    pub confidence: f64,
    /// Fraction `acc_b` of those examples predicted correctly; 0 when `count == 0`.
    pub accuracy: f64,
}

/// Computes every metric of docs/method.md §5 from logits and labels.
///
/// Shapes: `logits` row-major `[n, C]` with `n = labels.len()`, `labels` in `0..n_classes`.
///
/// # Errors
/// [`Error::NoExamples`] if `labels` is empty, [`Error::LogitsShape`] if
/// `logits.len() != n·C`, [`Error::LabelOutOfRange`] for a label `>= C`, and
/// [`Error::NonFiniteLogit`] (naming row and class) for a NaN or infinite logit.
pub fn compute(logits: &[f64], labels: &[usize], n_classes: usize) -> Result<Metrics> {
    check_inputs(logits, labels, n_classes)?;
    let n = labels.len();
    let c = n_classes;
    let nf = n as f64;

    let probs = softmax_rows(logits, c);
    let preds: Vec<usize> = logits.chunks_exact(c).map(argmax).collect();

    let mut correct = Vec::with_capacity(n);
    let mut conf = Vec::with_capacity(n);
    let (mut brier, mut l2, mut l1, mut logit_sum) = (0.0, 0.0, 0.0, 0.0);
    for (i, (&y, &pred)) in labels.iter().zip(&preds).enumerate() {
        let z = &logits[i * c..(i + 1) * c];
        let p = &probs[i * c..(i + 1) * c];
        correct.push(pred == y);
        // p[argmax z] is the row's largest probability because softmax is monotone.
        conf.push(p[pred]);
        for (k, &pk) in p.iter().enumerate() {
            let target = if k == y { 1.0 } else { 0.0 };
            brier += (pk - target) * (pk - target);
        }
        l2 += z.iter().map(|v| v * v).sum::<f64>().sqrt();
        l1 += z.iter().map(|v| v.abs()).sum::<f64>();
        logit_sum += z.iter().sum::<f64>();
    }

    let n_correct = correct.iter().filter(|&&ok| ok).count();
    let bins = bin_stats(&conf, &correct, ECE_BINS);
    let (ece, mce) = ece_mce(&bins);
    let cm = confusion(labels, &preds, c);
    Ok(Metrics {
        n,
        accuracy: n_correct as f64 / nf,
        f1_macro: f1_macro(&cm, c),
        mcc: mcc(&cm, c),
        nll: mean_nll(logits, labels, c),
        brier: brier / (nf * c as f64),
        ece,
        mce,
        confidence: conf.iter().sum::<f64>() / nf,
        logit_norm_l2: l2 / nf,
        logit_norm_l1: l1 / nf,
        mean_logit: logit_sum / (nf * c as f64),
    })
}

#[cfg(test)]
/// [`compute`] for f32 logits (the model's dtype): widens to f64 first, then computes in f64.
///
/// Shapes and errors as in [`compute`].
pub(crate) fn compute_f32(logits: &[f32], labels: &[usize], n_classes: usize) -> Result<Metrics> {
    let wide: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
    compute(&wide, labels, n_classes)
}

/// Row-wise softmax of row-major `[n, C]` logits, returned with the same shape.
///
/// Stable: each row subtracts its own maximum before `exp`. A row containing a non-finite
/// logit comes out as NaN; `n_classes == 0` gives an empty vector and a trailing partial row
/// is ignored.
pub fn softmax_rows(logits: &[f64], n_classes: usize) -> Vec<f64> {
    if n_classes == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(n_classes) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let start = out.len();
        let mut sum = 0.0;
        for &z in row {
            let e = (z - m).exp();
            sum += e;
            out.push(e);
        }
        for p in &mut out[start..] {
            *p /= sum;
        }
    }
    out
}

/// Reliability diagram: `bins` equal-width confidence bins `(b/B, (b+1)/B]` over
/// `conf_i = max_k p_ik`, with accuracy judged by `argmax_k p_ik` (ties to the lowest index).
///
/// Shapes: `probs` row-major `[n, C]` (typically [`softmax_rows`]), `labels` of length `n`.
/// Returns all `bins` bins, empty ones included (`count == 0`). The function does not fail:
/// inputs are expected to be validated already (as [`compute`] does); rows beyond the shorter
/// of `probs.len() / C` and `labels.len()` are ignored, a label `>= C` counts as wrong, and
/// `bins == 0` or `n_classes == 0` gives no bins or only empty bins.
pub fn reliability(
    probs: &[f64],
    labels: &[usize],
    n_classes: usize,
    bins: usize,
) -> Vec<ReliabilityBin> {
    let (mut conf, mut correct) = (Vec::new(), Vec::new());
    if n_classes > 0 {
        for (row, &y) in probs.chunks_exact(n_classes).zip(labels) {
            let pred = argmax(row);
            conf.push(row[pred]);
            correct.push(pred == y);
        }
    }
    bin_stats(&conf, &correct, bins)
}

/// ECE and MCE from reliability bins, as `(ece, mce)`.
///
/// ECE = Σ_b (|B_b| / n)·|conf_b − acc_b| with `n` the total count; MCE = max_b |conf_b − acc_b|
/// over non-empty bins. Both are fractions in `[0, 1]`; `(0, 0)` when every bin is empty.
pub(crate) fn ece_mce(bins: &[ReliabilityBin]) -> (f64, f64) {
    let total: usize = bins.iter().map(|b| b.count).sum();
    if total == 0 {
        return (0.0, 0.0);
    }
    let (mut ece, mut mce) = (0.0, 0.0_f64);
    for b in bins.iter().filter(|b| b.count > 0) {
        let gap = (b.confidence - b.accuracy).abs();
        ece += b.count as f64 / total as f64 * gap;
        mce = mce.max(gap);
    }
    (ece, mce)
}

/// Checks the shared preconditions of [`compute`] and temperature fitting.
pub(crate) fn check_inputs(logits: &[f64], labels: &[usize], n_classes: usize) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::NoExamples);
    }
    if labels.len().checked_mul(n_classes) != Some(logits.len()) {
        return Err(Error::LogitsShape {
            len: logits.len(),
            n: labels.len(),
            n_classes,
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &y)| y >= n_classes) {
        return Err(Error::LabelOutOfRange {
            index,
            label,
            n_classes,
        });
    }
    if let Some((pos, &value)) = logits.iter().enumerate().find(|(_, z)| !z.is_finite()) {
        // n_classes > 0 here: a non-empty `labels` with n_classes == 0 failed the label check.
        return Err(Error::NonFiniteLogit {
            index: pos / n_classes,
            class: pos % n_classes,
            value,
        });
    }
    Ok(())
}

/// Mean cross-entropy of row-major `[n, C]` logits; stable (log-sum-exp with each row's max).
///
/// Inputs must have passed [`check_inputs`]. Shared with temperature scaling so that its
/// "NLL never rises" guarantee is measured by exactly the function [`compute`] uses.
pub(crate) fn mean_nll(logits: &[f64], labels: &[usize], n_classes: usize) -> f64 {
    if n_classes == 0 || labels.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for (row, &y) in logits.chunks_exact(n_classes).zip(labels) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&z| (z - m).exp()).sum();
        total += sum.ln() - (row.get(y).copied().unwrap_or(f64::NAN) - m);
    }
    total / labels.len() as f64
}

/// Index of the largest entry; ties go to the lowest index (as `numpy.argmax`).
pub(crate) fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = k;
        }
    }
    best
}

/// Index of the right-closed bin `(b/B, (b+1)/B]` holding `conf`; 0 for `conf <= 0`,
/// `B - 1` for `conf > 1`.
fn bin_index(conf: f64, bins: usize) -> usize {
    let nb = bins as f64;
    let last = bins.saturating_sub(1);
    // A first guess, then exact comparisons against the same edges `b / B` that
    // `ReliabilityBin` reports, so a confidence equal to an edge (2/15) lands in the bin it
    // closes, whatever `ceil` made of the rounding in `conf * B`.
    let mut b = ((conf * nb).ceil() as usize).saturating_sub(1).min(last);
    while b > 0 && conf <= b as f64 / nb {
        b -= 1;
    }
    while b < last && conf > (b + 1) as f64 / nb {
        b += 1;
    }
    b
}

/// Groups `(conf_i, correct_i)` pairs into `bins` equal-width bins.
fn bin_stats(conf: &[f64], correct: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    let nb = bins as f64;
    let mut out: Vec<ReliabilityBin> = (0..bins)
        .map(|b| ReliabilityBin {
            lower: b as f64 / nb,
            upper: (b + 1) as f64 / nb,
            count: 0,
            confidence: 0.0,
            accuracy: 0.0,
        })
        .collect();
    if bins == 0 {
        return out;
    }
    for (&c, &ok) in conf.iter().zip(correct) {
        let bin = &mut out[bin_index(c, bins)];
        bin.count += 1;
        bin.confidence += c;
        bin.accuracy += if ok { 1.0 } else { 0.0 };
    }
    for bin in out.iter_mut().filter(|b| b.count > 0) {
        bin.confidence /= bin.count as f64;
        bin.accuracy /= bin.count as f64;
    }
    out
}

/// Confusion matrix `[C, C]`, row = true class, column = predicted class; entries outside
/// `0..C` are skipped.
fn confusion(labels: &[usize], preds: &[usize], n_classes: usize) -> Vec<u64> {
    let mut cm = vec![0u64; n_classes * n_classes];
    for (&y, &p) in labels.iter().zip(preds) {
        if y < n_classes && p < n_classes {
            cm[y * n_classes + p] += 1;
        }
    }
    cm
}

/// Row sums (true counts) and column sums (predicted counts) of a `[C, C]` confusion matrix.
fn marginals(cm: &[u64], n_classes: usize) -> (Vec<u64>, Vec<u64>) {
    let mut t = vec![0u64; n_classes];
    let mut p = vec![0u64; n_classes];
    for i in 0..n_classes {
        for j in 0..n_classes {
            t[i] += cm[i * n_classes + j];
            p[j] += cm[i * n_classes + j];
        }
    }
    (t, p)
}

/// Macro-F1 as scikit-learn's default: the mean of `2·tp / (true_k + pred_k)` over classes
/// with `true_k + pred_k > 0`; 0 if there are none.
fn f1_macro(cm: &[u64], n_classes: usize) -> f64 {
    let (t, p) = marginals(cm, n_classes);
    let (mut sum, mut classes) = (0.0, 0usize);
    for k in 0..n_classes {
        let denom = t[k] + p[k];
        if denom > 0 {
            sum += 2.0 * cm[k * n_classes + k] as f64 / denom as f64;
            classes += 1;
        }
    }
    if classes == 0 {
        0.0
    } else {
        sum / classes as f64
    }
}

/// Multiclass MCC (Gorodkin's R_K) as scikit-learn computes it; 0 when the denominator is 0.
fn mcc(cm: &[u64], n_classes: usize) -> f64 {
    let (t, p) = marginals(cm, n_classes);
    // Exact integer covariances: the differences below cancel heavily, and i128 cannot
    // overflow for any n that fits in memory.
    let n: i128 = t.iter().map(|&v| i128::from(v)).sum();
    let n_correct: i128 = (0..n_classes)
        .map(|k| i128::from(cm[k * n_classes + k]))
        .sum();
    let dot = |a: &[u64], b: &[u64]| -> i128 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| i128::from(x) * i128::from(y))
            .sum()
    };
    let cov_tp = n_correct * n - dot(&t, &p);
    let cov_pp = n * n - dot(&p, &p);
    let cov_tt = n * n - dot(&t, &t);
    if cov_pp == 0 || cov_tt == 0 {
        return 0.0;
    }
    cov_tp as f64 / ((cov_pp as f64).sqrt() * (cov_tt as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agreement with scikit-learn's float64 results (summation order differs).
    const SKLEARN_TOL: f64 = 1e-12;
    /// Hand-computed values with a few decimal operations.
    const HAND_TOL: f64 = 1e-12;
    /// Relative error of a JSON round trip (serde_json's default float parser is not exact).
    const JSON_TOL: f64 = 1e-15;

    // Cross-check against scikit-learn 1.9.1 / numpy 2.4.6, run with
    // `/tmp/fixenv/bin/python xcheck.py`, where xcheck.py is:
    //
    //   import numpy as np
    //   from sklearn.metrics import (f1_score, matthews_corrcoef, log_loss,
    //                                brier_score_loss, accuracy_score)
    //   y_true = [0,0,0,0,1,1,1,1,1,2,2,2,2,2,2]
    //   y_pred = [0,0,1,2,1,1,1,0,2,2,2,2,1,0,2]
    //   print(f1_score(y_true, y_pred, average="macro"), matthews_corrcoef(y_true, y_pred))
    //   yt = [0,1,2,0,1,2]; yp = [0,2,1,0,1,2]          # C = 4, class 3 absent
    //   print(f1_score(yt, yp, average="macro"),
    //         f1_score(yt, yp, average="macro", labels=[0,1,2,3], zero_division=0),
    //         matthews_corrcoef(yt, yp))
    //   yt = [0,0,1,1,1]; yp = [0,2,1,1,0]              # class 2 only predicted
    //   print(f1_score(yt, yp, average="macro"), matthews_corrcoef(yt, yp))
    //   print(matthews_corrcoef([0,1,2,1], [1,1,1,1]))
    //   z = np.array([[2.0,0.5,-1.0],[0.1,0.3,0.2],[-1.5,2.5,0.0],
    //                 [1.0,1.0,0.0],[0.0,-2.0,3.0],[4.0,-1.0,1.0]])
    //   y = np.array([0,2,1,1,2,2])
    //   p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    //   pred = z.argmax(1)
    //   print(accuracy_score(y, pred), f1_score(y, pred, average="macro"),
    //         matthews_corrcoef(y, pred))
    //   print(log_loss(y, p, labels=[0,1,2]), brier_score_loss(y, p, labels=[0,1,2]) / 3)
    //   print(p.max(1).mean(), np.linalg.norm(z, axis=1).mean(), np.abs(z).sum(1).mean(),
    //         z.mean())
    const CM3_TRUE: [usize; 15] = [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2];
    const CM3_PRED: [usize; 15] = [0, 0, 1, 2, 1, 1, 1, 0, 2, 2, 2, 2, 1, 0, 2];
    const SK_CM3_F1: f64 = 0.5888888888888889;
    const SK_CM3_MCC: f64 = 0.3918918918918919;
    const SK_ABSENT_F1: f64 = 0.6666666666666666;
    const SK_ABSENT_F1_ALL_LABELS: f64 = 0.5;
    const SK_ABSENT_MCC: f64 = 0.5;
    const SK_PRED_ONLY_F1: f64 = 0.43333333333333335;
    const SK_PRED_ONLY_MCC: f64 = 0.36084391824351614;
    #[rustfmt::skip]
    const Z6: [f64; 18] = [
        2.0, 0.5, -1.0,
        0.1, 0.3, 0.2,
        -1.5, 2.5, 0.0,
        1.0, 1.0, 0.0,
        0.0, -2.0, 3.0,
        4.0, -1.0, 1.0,
    ];
    const Y6: [usize; 6] = [0, 2, 1, 1, 2, 2];
    const SK_Z6_ACC: f64 = 0.5;
    const SK_Z6_F1: f64 = 0.5;
    const SK_Z6_MCC: f64 = 0.36363636363636365;
    const SK_Z6_NLL: f64 = 0.9018156248522216;
    const SK_Z6_BRIER_OVER_C: f64 = 0.17270535290114755;
    const NP_Z6_CONF: f64 = 0.7294732338860032;
    const NP_Z6_L2: f64 = 2.473889176422389;
    const NP_Z6_L1: f64 = 3.516666666666667;
    const NP_Z6_MEAN: f64 = 0.5611111111111111;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn f1_mcc(y: &[usize], pred: &[usize], c: usize) -> (f64, f64) {
        let cm = confusion(y, pred, c);
        (f1_macro(&cm, c), mcc(&cm, c))
    }

    /// Logits that make `pred` the argmax of each row.
    fn onehot_logits(pred: &[usize], c: usize) -> Vec<f64> {
        let mut z = vec![0.0; pred.len() * c];
        for (i, &p) in pred.iter().enumerate() {
            z[i * c + p] = 1.0;
        }
        z
    }

    #[test]
    fn f1_and_mcc_match_sklearn_on_3_class_confusion() {
        let (f1, m) = f1_mcc(&CM3_TRUE, &CM3_PRED, 3);
        assert!(close(f1, SK_CM3_F1, SKLEARN_TOL), "{f1} vs {SK_CM3_F1}");
        assert!(close(m, SK_CM3_MCC, SKLEARN_TOL), "{m} vs {SK_CM3_MCC}");
        // Same through `compute`.
        let got = compute(&onehot_logits(&CM3_PRED, 3), &CM3_TRUE, 3).unwrap();
        assert!(close(got.f1_macro, SK_CM3_F1, SKLEARN_TOL));
        assert!(close(got.mcc, SK_CM3_MCC, SKLEARN_TOL));
        assert!(close(got.accuracy, 9.0 / 15.0, HAND_TOL));
    }

    #[test]
    fn f1_leaves_out_classes_absent_from_labels_and_predictions() {
        let (f1, m) = f1_mcc(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 1, 2], 4);
        assert!(close(f1, SK_ABSENT_F1, SKLEARN_TOL), "{f1}");
        // Counting class 3 as 0 would give sklearn's labels=range(4) value instead.
        assert!(!close(f1, SK_ABSENT_F1_ALL_LABELS, 1e-3));
        assert!(close(m, SK_ABSENT_MCC, SKLEARN_TOL), "{m}");
    }

    #[test]
    fn f1_counts_a_class_that_is_only_predicted_as_zero() {
        let (f1, m) = f1_mcc(&[0, 0, 1, 1, 1], &[0, 2, 1, 1, 0], 3);
        assert!(close(f1, SK_PRED_ONLY_F1, SKLEARN_TOL), "{f1}");
        assert!(close(m, SK_PRED_ONLY_MCC, SKLEARN_TOL), "{m}");
    }

    #[test]
    fn mcc_is_zero_for_a_constant_predictor() {
        let (_, m) = f1_mcc(&[0, 1, 2, 1], &[1, 1, 1, 1], 3);
        assert_eq!(m, 0.0);
        let (_, m) = f1_mcc(&[1, 1, 1], &[1, 1, 1], 3);
        assert_eq!(m, 0.0);
    }

    #[test]
    fn compute_matches_sklearn_and_numpy_on_small_logits() {
        let m = compute(&Z6, &Y6, 3).unwrap();
        assert_eq!(m.n, 6);
        assert!(close(m.accuracy, SK_Z6_ACC, SKLEARN_TOL));
        assert!(close(m.f1_macro, SK_Z6_F1, SKLEARN_TOL));
        assert!(close(m.mcc, SK_Z6_MCC, SKLEARN_TOL), "{}", m.mcc);
        assert!(close(m.nll, SK_Z6_NLL, SKLEARN_TOL), "{}", m.nll);
        assert!(
            close(m.brier, SK_Z6_BRIER_OVER_C, SKLEARN_TOL),
            "{}",
            m.brier
        );
        assert!(close(m.confidence, NP_Z6_CONF, SKLEARN_TOL));
        assert!(close(m.logit_norm_l2, NP_Z6_L2, SKLEARN_TOL));
        assert!(close(m.logit_norm_l1, NP_Z6_L1, SKLEARN_TOL));
        assert!(close(m.mean_logit, NP_Z6_MEAN, SKLEARN_TOL));
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_index() {
        assert_eq!(argmax(&[1.0, 1.0, 0.0]), 0);
        assert_eq!(argmax(&[0.0, 2.0, 2.0]), 1);
        // Row 3 of Z6 is [1, 1, 0] with label 1: predicted 0, so wrong (as numpy.argmax).
        let m = compute(&Z6[9..12], &[1], 3).unwrap();
        assert_eq!(m.accuracy, 0.0);
        let m = compute(&Z6[9..12], &[0], 3).unwrap();
        assert_eq!(m.accuracy, 1.0);
    }

    #[test]
    fn softmax_rows_is_stable_and_normalised() {
        let p = softmax_rows(&[1e4, -1e4, 0.0, 1000.0, 1000.0, 1000.0], 3);
        assert_eq!(p.len(), 6);
        assert!(p.iter().all(|v| v.is_finite()));
        assert_eq!(&p[..3], &[1.0, 0.0, 0.0]);
        for v in &p[3..] {
            assert!(close(*v, 1.0 / 3.0, HAND_TOL));
        }
        assert!(softmax_rows(&[1.0, 2.0], 0).is_empty());
    }

    #[test]
    fn nll_is_stable_for_huge_logits() {
        let z = [1e4, -1e4, 1e4, -1e4, -1e4, 1e4];
        let m = compute(&z, &[0, 1, 1], 2).unwrap();
        // Rows: right with margin 2e4 (loss 0), wrong by 2e4 (loss 2e4), right (loss 0).
        assert!(m.nll.is_finite());
        assert!(close(m.nll, 2e4 / 3.0, 1e-9), "{}", m.nll);
        assert!(close(m.brier, (2.0 / 3.0) / 2.0, HAND_TOL), "{}", m.brier);
    }

    #[test]
    fn brier_of_perfect_and_uniform_predictors() {
        // exp(-1e4) underflows to 0, so the probabilities are exactly one-hot.
        let perfect = compute(&[1e4, 0.0, 0.0, 0.0, 0.0, 1e4], &[0, 2], 3).unwrap();
        assert_eq!(perfect.brier, 0.0);
        assert_eq!(perfect.nll, 0.0);
        assert_eq!(perfect.accuracy, 1.0);
        // Uniform over C: per row (1 - 1/C)² + (C-1)/C² = (C-1)/C, then / C.
        for c in [2usize, 3, 5] {
            let n = 4;
            let labels: Vec<usize> = (0..n).map(|i| i % c).collect();
            let m = compute(&vec![0.0; n * c], &labels, c).unwrap();
            let cf = c as f64;
            assert!(close(m.brier, (cf - 1.0) / (cf * cf), HAND_TOL), "C={c}");
            assert!(close(m.nll, cf.ln(), HAND_TOL));
            assert!(close(m.confidence, 1.0 / cf, HAND_TOL));
        }
    }

    #[test]
    fn logit_norms_and_mean() {
        let m = compute(&[3.0, -4.0, 0.0, 1.0], &[0, 1], 2).unwrap();
        assert!(close(m.logit_norm_l2, (5.0 + 1.0) / 2.0, HAND_TOL));
        assert!(close(m.logit_norm_l1, (7.0 + 1.0) / 2.0, HAND_TOL));
        assert!(close(m.mean_logit, 0.0, HAND_TOL));
    }

    #[test]
    fn bins_are_right_closed() {
        let b = ECE_BINS;
        assert_eq!(bin_index(0.0, b), 0, "confidence 0 goes in the first bin");
        assert_eq!(bin_index(1.0 / 15.0, b), 0);
        assert_eq!(bin_index(2.0 / 15.0, b), 1, "2/15 closes bin 1");
        assert_eq!(bin_index(2.0 / 15.0 + 1e-15, b), 2);
        assert_eq!(bin_index(0.6, b), 8, "0.6 = 9/15 closes bin 8");
        assert_eq!(bin_index(1.0, b), 14);
        assert_eq!(bin_index(1.5, b), 14);
        assert_eq!(bin_index(-0.1, b), 0);
        for k in 1..=15 {
            assert_eq!(bin_index(k as f64 / 15.0, b), k - 1, "edge {k}/15");
        }
    }

    #[test]
    fn ece_and_mce_on_hand_built_bins() {
        #[rustfmt::skip]
        let probs = [
            0.95, 0.05, // conf 0.95, correct      -> bin 14
            0.05, 0.95, // conf 0.95, wrong        -> bin 14
            0.6, 0.4,   // conf 0.6 = 9/15, right  -> bin 8 (edge)
            0.38, 0.62, // conf 0.62, wrong        -> bin 9
            0.3, 0.7,   // conf 0.7, correct       -> bin 10
        ];
        let labels = [0, 0, 0, 0, 1];
        let bins = reliability(&probs, &labels, 2, ECE_BINS);
        assert_eq!(bins.len(), ECE_BINS);
        let counts: Vec<usize> = bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 2]);
        assert!(close(bins[14].confidence, 0.95, HAND_TOL));
        assert!(close(bins[14].accuracy, 0.5, HAND_TOL));
        assert_eq!(bins[3].confidence, 0.0, "empty bins report 0");
        assert!(close(bins[8].lower, 8.0 / 15.0, 0.0) && close(bins[8].upper, 0.6, 0.0));
        // ECE = 2/5·0.45 + 1/5·0.4 + 1/5·0.62 + 1/5·0.3; putting 0.6 in bin 9 would give 0.284.
        let (ece, mce) = ece_mce(&bins);
        assert!(close(ece, 0.444, HAND_TOL), "{ece}");
        assert!(close(mce, 0.62, HAND_TOL), "{mce}");
        // Same numbers through `compute`, from logits ln p.
        let logits: Vec<f64> = probs.iter().map(|p| p.ln()).collect();
        let m = compute(&logits, &labels, 2).unwrap();
        assert!(close(m.ece, 0.444, HAND_TOL), "{}", m.ece);
        assert!(close(m.mce, 0.62, HAND_TOL), "{}", m.mce);
    }

    #[test]
    fn confidence_on_the_2_over_15_edge_lands_in_bin_1() {
        // Eight classes so that a top probability of 2/15 is possible: 2/15 + 7·13/105 = 1.
        let mut row = vec![13.0 / 105.0; 8];
        row[3] = 2.0 / 15.0;
        let bins = reliability(&row, &[3], 8, ECE_BINS);
        assert_eq!(bins[1].count, 1);
        assert_eq!(bins[2].count, 0);
        let (ece, mce) = ece_mce(&bins);
        assert!(close(ece, 1.0 - 2.0 / 15.0, HAND_TOL) && close(mce, ece, 0.0));
    }

    #[test]
    fn empty_bins_do_not_count() {
        // Every example in one bin: ECE = MCE = that bin's gap, whatever the 14 empty bins.
        let bins = reliability(&[0.9, 0.1, 0.9, 0.1], &[0, 1], 2, ECE_BINS);
        let (ece, mce) = ece_mce(&bins);
        assert!(close(ece, 0.4, HAND_TOL) && close(mce, 0.4, HAND_TOL));
        assert_eq!(ece_mce(&reliability(&[], &[], 2, ECE_BINS)), (0.0, 0.0));
        assert!(reliability(&[0.9, 0.1], &[0], 2, 0).is_empty());
    }

    #[test]
    fn invalid_inputs_are_rejected_by_name() {
        assert!(matches!(compute(&[], &[], 2), Err(Error::NoExamples)));
        assert!(matches!(
            compute(&[0.0; 5], &[0, 1], 3),
            Err(Error::LogitsShape {
                len: 5,
                n: 2,
                n_classes: 3
            })
        ));
        assert!(matches!(
            compute(&[0.0; 6], &[0, 3], 3),
            Err(Error::LabelOutOfRange {
                index: 1,
                label: 3,
                n_classes: 3
            })
        ));
        assert!(matches!(
            compute(&[], &[0], 0),
            Err(Error::LabelOutOfRange { index: 0, .. })
        ));
        let mut z = [0.0; 6];
        z[5] = f64::NAN;
        match compute(&z, &[0, 1], 3) {
            Err(Error::NonFiniteLogit {
                index,
                class,
                value,
            }) => {
                assert_eq!((index, class), (1, 2));
                assert!(value.is_nan());
            }
            other => panic!("expected NonFiniteLogit, got {other:?}"),
        }
        z[5] = 0.0;
        z[1] = f64::NEG_INFINITY;
        let err = compute(&z, &[0, 1], 3).unwrap_err();
        assert!(matches!(
            err,
            Error::NonFiniteLogit {
                index: 0,
                class: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("[0, 1]"), "{err}");
        assert!(matches!(
            compute_f32(&[0.0, f32::INFINITY], &[0], 2),
            Err(Error::NonFiniteLogit {
                index: 0,
                class: 1,
                ..
            })
        ));
    }

    #[test]
    fn f32_convenience_equals_f64_path() {
        let z32: Vec<f32> = Z6.iter().map(|&v| v as f32).collect();
        let z64: Vec<f64> = z32.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(
            compute_f32(&z32, &Y6, 3).unwrap(),
            compute(&z64, &Y6, 3).unwrap()
        );
    }

    #[test]
    fn metrics_roundtrip_through_json() {
        let m = compute(&Z6, &Y6, 3).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back: Metrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back.n, m.n);
        // serde_json without its `float_roundtrip` feature may parse the last bit differently.
        let pairs = [
            (back.accuracy, m.accuracy),
            (back.f1_macro, m.f1_macro),
            (back.mcc, m.mcc),
            (back.nll, m.nll),
            (back.brier, m.brier),
            (back.ece, m.ece),
            (back.mce, m.mce),
            (back.confidence, m.confidence),
            (back.logit_norm_l2, m.logit_norm_l2),
            (back.logit_norm_l1, m.logit_norm_l1),
            (back.mean_logit, m.mean_logit),
        ];
        for (a, b) in pairs {
            assert!(close(a, b, JSON_TOL * b.abs()), "{a} vs {b}");
        }
    }
}
