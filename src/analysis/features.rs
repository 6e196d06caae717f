//! Feature and classifier statistics of Tables 1, 11, 12 and 13 (docs/method.md §6): CS(F), Diff(F),
//! FDR(F) and Norm(C).
//!
//! The paper gives only names ("cosine similarity between features", "difference in norms from
//! the pre-trained model", "Fisher's discriminant ratio", "norm"); the released code does not
//! compute them. The definitions below are docs/method.md §6's, which are INFERRED from the reported values:
//!
//! - CS(F): mean over unordered pairs `i < j` of `cos(φ(x_i), φ(x_j))` among the `n` features of
//!   one model. The diagonal `i = j` (always 1) is excluded, as "pairs i < j" in docs/method.md §6 says.
//! - Diff(F): `mean_i ‖φ_m(x_i) − φ_0(x_i)‖₂` (the reading docs/method.md §6 recommends, "norm of the feature
//!   difference"); the literal alternative `mean_i |‖φ_m(x_i)‖₂ − ‖φ_0(x_i)‖₂|` is
//!   `feature_norm_change`.
//! - FDR(F): `tr(S_W⁺ S_B)` with the un-normalised, count-weighted scatters
//!   `S_W = Σ_c Σ_{i∈c} (φ_i − μ_c)(φ_i − μ_c)ᵀ`, `S_B = Σ_c n_c (μ_c − μ)(μ_c − μ)ᵀ` and the
//!   Moore–Penrose pseudo-inverse. Dividing both by n (or both by anything) would not change the
//!   value; normalising only one of them would, so neither is normalised. INFERRED: the
//!   pseudo-inverse cut-off (see [`default_pinv_rtol`]); with `n ≲ d` the statistic is ill-posed
//!   and depends on it, so only trends are comparable with the paper (docs/method.md §6).
//! - Norm(C): `‖V‖_F` of the head weight `V [C, d]`, bias excluded.
//!
//! Everything is computed in f64 on row-major host buffers `[n, d]`; the split they
//! come from is the caller's choice (docs/method.md §6: the paper's values indicate the test split).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ntk::kernel::{dot, frobenius};

/// CS, Diff, FDR and Norm of one model on one split (docs/method.md §6, Table 1 columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// CS(F), mean pairwise cosine similarity among the features ([`cosine_similarity`]).
    pub cs: f64,
    /// Diff(F), mean feature change from the pre-trained backbone ([`feature_change`]); `None`
    /// where the backbone is the pre-trained one (the tables' "–" for Pre-trained and LP).
    pub diff: Option<f64>,
    /// FDR(F), Fisher's discriminant ratio ([`fisher_discriminant_ratio`]).
    pub fdr: f64,
    /// Norm(C) = ‖V‖_F ([`classifier_norm`]); `None` where no head is given.
    pub norm: Option<f64>,
}

impl FeatureStats {
    /// Computes all four statistics.
    ///
    /// `phi` `[n, d]` are the model's features, `labels` `[n]` (< `n_classes`) their classes;
    /// `phi_0` `[n, d]`, if given, the pre-trained features of the same inputs (for Diff); `head`,
    /// if given, `(V, C)` with `V` `[C, d]` row-major (for Norm).
    ///
    /// # Errors
    /// Those of the four statistics' functions.
    pub fn compute(
        phi: &[f64],
        n: usize,
        d: usize,
        labels: &[usize],
        n_classes: usize,
        phi_0: Option<&[f64]>,
        head: Option<(&[f64], usize)>,
    ) -> Result<Self> {
        Ok(FeatureStats {
            cs: cosine_similarity(phi, n, d)?,
            diff: phi_0.map(|p0| feature_change(phi, p0, n, d)).transpose()?,
            fdr: fisher_discriminant_ratio(phi, n, d, labels, n_classes)?,
            norm: head.map(|(v, c)| classifier_norm(v, c, d)).transpose()?,
        })
    }
}

/// CS(F): the mean over the `n(n−1)/2` unordered pairs `i < j` of
/// `⟨φ_i, φ_j⟩ / (‖φ_i‖ ‖φ_j‖)`; `phi` is `[n, d]` row-major. In [−1, 1].
///
/// Computed in O(n·d) as `(‖Σ_i u_i‖² − Σ_i ‖u_i‖²) / (n(n−1))` with `u_i = φ_i/‖φ_i‖`, which
/// equals the pairwise mean (the cross terms of the squared sum are each pair twice); the
/// absolute rounding error is about `n·ε`, negligible for the split sizes of the paper.
///
/// # Errors
/// [`Error::Shape`] if `phi.len() != n·d` or `d = 0`; [`Error::InvalidArgument`] if `n < 2`;
/// [`Error::NonFiniteFeature`]; [`Error::ZeroNorm`] for an all-zero feature vector (its cosine is
/// undefined).
pub fn cosine_similarity(phi: &[f64], n: usize, d: usize) -> Result<f64> {
    check_features("phi", phi, n, d)?;
    if n < 2 {
        return Err(Error::InvalidArgument {
            field: "phi".into(),
            reason: format!("cosine similarity needs at least 2 features, got {n}"),
        });
    }
    let mut sum = vec![0.0; d];
    let mut sq = 0.0;
    for (i, row) in phi.chunks_exact(d).enumerate() {
        let norm = frobenius(row);
        if norm == 0.0 {
            return Err(Error::ZeroNorm {
                what: "feature vector",
                index: Some(i),
            });
        }
        let mut own = 0.0;
        for (s, v) in sum.iter_mut().zip(row) {
            let u = v / norm;
            *s += u;
            own += u * u;
        }
        sq += own;
    }
    let total = dot(&sum, &sum);
    let pairs = n as f64 * (n as f64 - 1.0);
    Ok(((total - sq) / pairs).clamp(-1.0, 1.0))
}

/// Diff(F): `(1/n) Σ_i ‖φ_m(x_i) − φ_0(x_i)‖₂`, the mean Euclidean norm of the per-input feature
/// change; `phi_m` (fine-tuned) and `phi_0` (pre-trained) are `[n, d]` with the same input order.
///
/// # Errors
/// [`Error::Shape`] for wrong lengths or `d = 0`; [`Error::InvalidArgument`] if `n = 0`;
/// [`Error::NonFiniteFeature`].
pub fn feature_change(phi_m: &[f64], phi_0: &[f64], n: usize, d: usize) -> Result<f64> {
    check_pair(phi_m, phi_0, n, d)?;
    let mut diff = vec![0.0; d];
    let mut total = 0.0;
    for (a, b) in phi_m.chunks_exact(d).zip(phi_0.chunks_exact(d)) {
        for ((o, x), y) in diff.iter_mut().zip(a).zip(b) {
            *o = x - y;
        }
        total += frobenius(&diff);
    }
    Ok(total / n as f64)
}

#[cfg(test)]
/// The literal alternative reading of Diff(F) ("difference in norms", docs/method.md §6):
/// `(1/n) Σ_i |‖φ_m(x_i)‖₂ − ‖φ_0(x_i)‖₂|`. Shapes as [`feature_change`]; never larger than it
/// (reverse triangle inequality).
///
/// # Errors
/// As [`feature_change`].
pub(crate) fn feature_norm_change(phi_m: &[f64], phi_0: &[f64], n: usize, d: usize) -> Result<f64> {
    check_pair(phi_m, phi_0, n, d)?;
    let total: f64 = phi_m
        .chunks_exact(d)
        .zip(phi_0.chunks_exact(d))
        .map(|(a, b)| (frobenius(a) - frobenius(b)).abs())
        .sum();
    Ok(total / n as f64)
}

/// The default relative cut-off of FDR's pseudo-inverse for feature dimension `d`: `d·ε_f64`.
///
/// An eigenvalue λ_k of the `d×d` matrix `S_W` is inverted iff `λ_k > rtol·λ_max`. `d·ε` is the
/// LAPACK / `torch.linalg.pinv` / array-API convention `max(M, N)·ε` for `S_W`; `numpy.linalg.pinv`'s
/// own default is the fixed `1e-15`. INFERRED: which one the authors used is unknown; both agree
/// whenever `S_W`'s spectrum has a clear gap, and when `n ≲ d` neither makes the value robust.
pub fn default_pinv_rtol(d: usize) -> f64 {
    d as f64 * f64::EPSILON
}

/// FDR(F) = `tr(S_W⁺ S_B)` (see the module docs for `S_W`, `S_B`), with the pseudo-inverse cut-off
/// [`default_pinv_rtol`]`(d)`. `phi` is `[n, d]`, `labels` `[n]` with values `< n_classes`.
///
/// Scale-invariant (`φ ↦ aφ` leaves it unchanged) and ≥ 0. Classes without examples contribute
/// to neither scatter. If `S_W = 0` (e.g. one example per class) its pseudo-inverse is 0 and so is
/// the FDR.
///
/// # Errors
/// As [`fisher_discriminant_ratio_with_rtol`].
pub fn fisher_discriminant_ratio(
    phi: &[f64],
    n: usize,
    d: usize,
    labels: &[usize],
    n_classes: usize,
) -> Result<f64> {
    fisher_discriminant_ratio_with_rtol(phi, n, d, labels, n_classes, default_pinv_rtol(d))
}

/// [`fisher_discriminant_ratio`] with an explicit relative cut-off `rtol ≥ 0` on the eigenvalues
/// of `S_W` (λ_k is inverted iff `λ_k > rtol·λ_max`).
///
/// Method: `S_W = X_cᵀ X_c` where `X_c` `[n, d]` holds the within-class-centred features, so with
/// the thin SVD `X_c = U Σ Vᵀ` (faer), `λ_k = σ_k²` and
/// `tr(S_W⁺ S_B) = Σ_{k: λ_k > rtol·λ_1} Σ_c n_c (v_kᵀ(μ_c − μ))² / λ_k`. Working from `X_c`
/// never forms `S_W` (which would square the condition number) and leaves the exact null space of
/// `S_W` (dimension ≥ d − (n − #classes)) out of the inverse instead of inverting rounding noise;
/// in exact arithmetic it equals `numpy.linalg.pinv(S_W, rtol=rtol)` applied to `S_B`.
///
/// # Errors
/// [`Error::Shape`] for wrong lengths or `d = 0`; [`Error::InvalidArgument`] if `n = 0` or `rtol`
/// is negative or NaN; [`Error::LabelOutOfRange`]; [`Error::NonFiniteFeature`];
/// [`Error::DecompositionFailed`] if the SVD does not converge.
pub fn fisher_discriminant_ratio_with_rtol(
    phi: &[f64],
    n: usize,
    d: usize,
    labels: &[usize],
    n_classes: usize,
    rtol: f64,
) -> Result<f64> {
    check_features("phi", phi, n, d)?;
    if n == 0 {
        return Err(no_examples("phi"));
    }
    if labels.len() != n {
        return Err(Error::Shape {
            what: "labels",
            expected: format!("{n} values"),
            found: format!("{}", labels.len()),
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        return Err(Error::LabelOutOfRange {
            index,
            label,
            n_classes,
        });
    }
    if rtol.is_nan() || rtol < 0.0 {
        return Err(Error::InvalidArgument {
            field: "rtol".into(),
            reason: format!("must be >= 0, got {rtol}"),
        });
    }
    // Class means μ_c (for n_c > 0) and the overall mean μ.
    let mut counts = vec![0usize; n_classes];
    let mut means = vec![0.0; n_classes * d];
    let mut mu = vec![0.0; d];
    for (row, &l) in phi.chunks_exact(d).zip(labels) {
        counts[l] += 1;
        for ((m, o), v) in means[l * d..(l + 1) * d]
            .iter_mut()
            .zip(mu.iter_mut())
            .zip(row)
        {
            *m += v;
            *o += v;
        }
    }
    for (c, &nc) in counts.iter().enumerate() {
        if nc > 0 {
            for m in &mut means[c * d..(c + 1) * d] {
                *m /= nc as f64;
            }
        }
    }
    for o in &mut mu {
        *o /= n as f64;
    }
    let xc = faer::Mat::from_fn(n, d, |i, j| phi[i * d + j] - means[labels[i] * d + j]);
    let svd = xc.thin_svd().map_err(|_| Error::DecompositionFailed {
        what: "within-class scatter (FDR)",
        decomposition: "SVD",
    })?;
    let s = svd.S().column_vector();
    let v = svd.V();
    let k = s.nrows();
    let lambda_max = (0..k).map(|i| s[i] * s[i]).fold(0.0f64, f64::max);
    if lambda_max == 0.0 {
        return Ok(0.0);
    }
    let cutoff = rtol * lambda_max;
    let mut fdr = 0.0;
    for kk in 0..k {
        let lambda = s[kk] * s[kk];
        if lambda <= cutoff {
            continue;
        }
        let mut between = 0.0;
        for (c, &nc) in counts.iter().enumerate() {
            if nc == 0 {
                continue;
            }
            let mut proj = 0.0;
            for j in 0..d {
                proj += v[(j, kk)] * (means[c * d + j] - mu[j]);
            }
            between += nc as f64 * proj * proj;
        }
        fdr += between / lambda;
    }
    Ok(fdr)
}

/// Norm(C) = `‖V‖_F`, the Frobenius norm of the head weight `v` `[c, d]` row-major (bias
/// excluded; docs/method.md §6 — matches the N(0, 0.02²) initial values of Table 1).
///
/// # Errors
/// [`Error::Shape`] if `v.len() != c·d`; [`Error::NonFiniteFeature`] for a NaN/∞ weight (row =
/// logit, feature = column).
pub fn classifier_norm(v: &[f64], c: usize, d: usize) -> Result<f64> {
    check_features("classifier weight V", v, c, d)?;
    Ok(frobenius(v))
}

fn no_examples(field: &str) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        reason: "need at least one example".into(),
    }
}

/// Checks `[n, d]` length, `d ≥ 1` and finiteness.
fn check_features(what: &'static str, phi: &[f64], n: usize, d: usize) -> Result<()> {
    if d == 0 || Some(phi.len()) != n.checked_mul(d) {
        return Err(Error::Shape {
            what,
            expected: format!("[{n}, {d}] with d ≥ 1"),
            found: format!("{} values", phi.len()),
        });
    }
    if let Some(pos) = phi.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFiniteFeature {
            index: pos / d,
            feature: pos % d,
            value: phi[pos],
        });
    }
    Ok(())
}

fn check_pair(phi_m: &[f64], phi_0: &[f64], n: usize, d: usize) -> Result<()> {
    check_features("phi_m", phi_m, n, d)?;
    check_features("phi_0", phi_0, n, d)?;
    if n == 0 {
        return Err(no_examples("phi_m"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results of a few dozen f64 operations on O(1) numbers.
    const TOL: f64 = 1e-12;
    /// FDR against numpy: both sides solve the same 2×2 / 5×5 problems in f64 but factorise
    /// differently (numpy: pinv of S_W via LAPACK SVD; here: SVD of X_c).
    const FDR_RTOL: f64 = 1e-9;

    /// Brute-force CS over pairs i < j, the definition itself.
    fn cs_pairs(phi: &[f64], n: usize, d: usize) -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (&phi[i * d..(i + 1) * d], &phi[j * d..(j + 1) * d]);
                s += dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt());
            }
        }
        s / (n * (n - 1) / 2) as f64
    }

    #[test]
    fn cs_identical_and_orthogonal() {
        let same = [1.0, 2.0, -3.0, 1.0, 2.0, -3.0, 2.0, 4.0, -6.0];
        assert!((cosine_similarity(&same, 3, 3).unwrap() - 1.0).abs() < TOL);
        let orth = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0];
        assert!(cosine_similarity(&orth, 3, 3).unwrap().abs() < TOL);
        // Opposite pair: −1.
        assert!((cosine_similarity(&[1.0, 1.0, -2.0, -2.0], 2, 2).unwrap() + 1.0).abs() < TOL);
    }

    #[test]
    fn cs_matches_pairwise_definition() {
        // Pairs: (0,1) cos = 0, (0,2) 1/√2, (1,2) 1/√2 → mean √2/3.
        let phi = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let want = 2f64.sqrt() / 3.0;
        assert!((cosine_similarity(&phi, 3, 2).unwrap() - want).abs() < TOL);
        let phi = [
            0.3, -1.2, 2.0, 0.5, 1.1, 0.4, -0.7, 0.0, 2.2, 0.9, 0.1, -0.3, -1.0, -1.0, 0.5,
        ];
        assert!((cosine_similarity(&phi, 5, 3).unwrap() - cs_pairs(&phi, 5, 3)).abs() < TOL);
    }

    #[test]
    fn cs_rejects_bad_input() {
        assert!(matches!(
            cosine_similarity(&[1.0, 0.0, 0.0, 0.0], 2, 2),
            Err(Error::ZeroNorm { index: Some(1), .. })
        ));
        assert!(cosine_similarity(&[1.0, 0.0], 1, 2).is_err());
        assert!(cosine_similarity(&[1.0, 0.0, 1.0], 2, 2).is_err());
        assert!(cosine_similarity(&[1.0, f64::NAN, 1.0, 0.0], 2, 2).is_err());
    }

    #[test]
    fn diff_of_shifted_set_is_shift_norm() {
        let phi0 = [0.5, -1.0, 2.0, 3.0, 0.0, 0.0, -4.0, 1.5, 7.0];
        let shift = [3.0, 0.0, -4.0];
        let phim: Vec<f64> = phi0
            .chunks_exact(3)
            .flat_map(|r| r.iter().zip(&shift).map(|(a, b)| a + b))
            .collect();
        assert!((feature_change(&phim, &phi0, 3, 3).unwrap() - 5.0).abs() < TOL);
        assert_eq!(feature_change(&phi0, &phi0, 3, 3).unwrap(), 0.0);
        // Norm-difference reading: |‖φ_m‖ − ‖φ_0‖| per row, ≤ Diff.
        let alt = feature_norm_change(&phim, &phi0, 3, 3).unwrap();
        assert!(alt <= 5.0 + TOL);
        // Row 1: φ_0 = (3, 0, 0) → φ_m = (6, 0, −4): ‖·‖ 3 → √52.
        let want1 = 52f64.sqrt() - 3.0;
        let only1 = feature_norm_change(&phim[3..6], &phi0[3..6], 1, 3).unwrap();
        assert!((only1 - want1).abs() < TOL);
        assert!(feature_change(&phim, &phi0[..6], 3, 3).is_err());
        assert!(feature_change(&[], &[], 0, 3).is_err());
    }

    /// Two well-separated 2-D Gaussians, 6 points each, generated and rounded to 2 decimals with
    /// numpy 2.4.6 (Python 3); the reference value is computed independently with an explicit
    /// S_W, S_B and `np.linalg.pinv`. The computation:
    ///
    /// ```text
    /// import numpy as np
    /// rng = np.random.default_rng(7)
    /// a = np.round(rng.normal([0, 0], [1.0, 0.5], size=(6, 2)), 2)
    /// b = np.round(rng.normal([6, 3], [1.0, 0.5], size=(6, 2)), 2)
    /// X = np.vstack([a, b]); y = [0]*6 + [1]*6
    /// fdr(X, y) = np.trace(np.linalg.pinv(Sw, rtol=1e-10) @ Sb)
    ///   with Sw = Σ_c (Xc − mc)ᵀ(Xc − mc), Sb = Σ_c n_c (mc − μ)(mc − μ)ᵀ
    /// -> 22.620986415796942
    /// ```
    // 3.14 below is a data point, not π.
    #[allow(clippy::approx_constant)]
    #[rustfmt::skip]
    const X2: [f64; 24] = [
        0.0, 0.15, -0.27, -0.45, -0.45, -0.5, 0.06, 0.67, -0.49, -0.31, 0.49, 0.18,
        6.11, 2.53, 5.97, 3.35, 4.66, 2.77, 4.1, 2.36, 4.16, 2.88, 4.73, 3.14,
    ];
    const Y2: [usize; 12] = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
    const FDR2_NUMPY: f64 = 22.620986415796942;

    /// A singular case: n = 6 examples in 2 classes in d = 5, so rank S_W = n − 2 = 4 < d and the
    /// pseudo-inverse matters. Same script, continuing the same generator:
    ///
    /// ```text
    /// Z = np.round(rng.normal(size=(6, 5)), 2); z = [0, 1, 0, 1, 0, 1]
    /// fdr(Z, z) -> 1.7320374096367601
    /// ```
    /// (numpy's rtol 1e-10 vs our default 5·ε: S_W's non-zero eigenvalues are O(1) and its null
    /// eigenvalue is 0 up to rounding (≲ 1e-15 in numpy's S_W, ≲ 1e-30 as σ² here), so any
    /// cut-off in between gives the same value.)
    #[rustfmt::skip]
    const X5: [f64; 30] = [
        0.16, -0.19, -2.52, -0.54, -0.05,
        0.11, -1.53, -0.48, -0.98, -0.81,
        1.06, -0.81, -0.03, 0.88, -0.58,
        -0.11, 0.11, 0.06, -1.23, 0.08,
        1.36, -1.55, 0.86, 0.12, -0.64,
        2.0, 0.76, -1.2, 0.07, 0.58,
    ];
    const Y5: [usize; 6] = [0, 1, 0, 1, 0, 1];
    const FDR5_NUMPY: f64 = 1.7320374096367601;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    #[test]
    fn fdr_matches_numpy_two_gaussians() {
        let f = fisher_discriminant_ratio(&X2, 12, 2, &Y2, 2).unwrap();
        assert!(rel(f, FDR2_NUMPY) < FDR_RTOL, "{f} vs {FDR2_NUMPY}");
    }

    #[test]
    fn fdr_matches_numpy_pinv_when_singular() {
        let f = fisher_discriminant_ratio(&X5, 6, 5, &Y5, 2).unwrap();
        assert!(rel(f, FDR5_NUMPY) < FDR_RTOL, "{f} vs {FDR5_NUMPY}");
    }

    #[test]
    fn fdr_ignores_zero_padding_in_wide_case() {
        // Padding X2 with 14 zero columns gives n = 12 < d = 16; the pseudo-inverse ignores the
        // null directions, so the value is unchanged.
        let d = 16;
        let padded: Vec<f64> = X2
            .chunks_exact(2)
            .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, d - 2)))
            .collect();
        let f = fisher_discriminant_ratio(&padded, 12, d, &Y2, 2).unwrap();
        assert!(rel(f, FDR2_NUMPY) < FDR_RTOL, "{f} vs {FDR2_NUMPY}");
    }

    #[test]
    fn fdr_one_dimensional_by_hand() {
        // Class 0: {0, 2} (mean 1), class 1: {4, 6} (mean 5), overall mean 3.
        // S_W = 1 + 1 + 1 + 1 = 4; S_B = 2·4 + 2·4 = 16; FDR = 16/4 = 4.
        let f = fisher_discriminant_ratio(&[0.0, 2.0, 4.0, 6.0], 4, 1, &[0, 0, 1, 1], 2).unwrap();
        assert!((f - 4.0).abs() < TOL);
        // An unused third class changes nothing.
        let f3 = fisher_discriminant_ratio(&[0.0, 2.0, 4.0, 6.0], 4, 1, &[0, 0, 1, 1], 3).unwrap();
        assert!((f3 - 4.0).abs() < TOL);
    }

    #[test]
    fn fdr_is_scale_invariant_and_handles_degenerate_cases() {
        let scaled: Vec<f64> = X2.iter().map(|v| v * 1e3).collect();
        let f = fisher_discriminant_ratio(&scaled, 12, 2, &Y2, 2).unwrap();
        assert!(rel(f, FDR2_NUMPY) < FDR_RTOL);
        // One example per class: S_W = 0, pseudo-inverse 0, FDR 0.
        assert_eq!(
            fisher_discriminant_ratio(&[1.0, 2.0, 3.0, 4.0], 2, 2, &[0, 1], 2).unwrap(),
            0.0
        );
        assert!(matches!(
            fisher_discriminant_ratio(&X2, 12, 2, &[2; 12], 2),
            Err(Error::LabelOutOfRange { .. })
        ));
        assert!(fisher_discriminant_ratio(&X2, 12, 2, &Y2[..11], 2).is_err());
        assert!(fisher_discriminant_ratio_with_rtol(&X2, 12, 2, &Y2, 2, f64::NAN).is_err());
    }

    #[test]
    fn norm_and_feature_stats() {
        // ‖[[3, 0], [0, 4]]‖_F = 5.
        assert!((classifier_norm(&[3.0, 0.0, 0.0, 4.0], 2, 2).unwrap() - 5.0).abs() < TOL);
        assert!(classifier_norm(&[3.0, 0.0, 0.0], 2, 2).is_err());
        let v = [3.0, 0.0, 0.0, 4.0];
        let st =
            FeatureStats::compute(&X2, 12, 2, &Y2, 2, Some(&X2), Some((&v, 2))).expect("valid");
        assert_eq!(st.diff, Some(0.0));
        assert!((st.norm.unwrap() - 5.0).abs() < TOL);
        assert!(rel(st.fdr, FDR2_NUMPY) < FDR_RTOL);
        assert!((st.cs - cs_pairs(&X2, 12, 2)).abs() < TOL);
        let json = serde_json::to_string(&st).expect("serialisable");
        let back: FeatureStats = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, st);
        let bare = FeatureStats::compute(&X2, 12, 2, &Y2, 2, None, None).expect("valid");
        assert_eq!((bare.diff, bare.norm), (None, None));
    }
}
