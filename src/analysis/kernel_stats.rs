//! Kernel statistics of Table 2 / Table 9 and Figures 2, 7, 8, 9 (docs/method.md §7.3): numerical rank, FN,
//! FT ratio, normalised singular-value spectra, block heat maps, and (an extra the paper does not
//! report, docs/method.md §14, check 3) kernel alignment.
//!
//! None of these is in the released code; the definitions are docs/method.md §7.3's:
//!
//! - **Rank**: numerical rank of the `N·C × N·C` train×train matrix ([`Kernel::flatten`]).
//!   INFERRED: a relative tolerance, because rank(P + F) < rank(F) in the tables (adding the
//!   dominant P raises σ_max). Reported twice (docs/method.md §13: "compute Rank/SVD in f64 but also report
//!   the f32 relative-tolerance rank for comparability"): #{σ_i > σ_max·max(m, n)·ε} with
//!   ε = ε_f64 ([`KernelStats::rank`]) and with ε = ε_f32 ([`KernelStats::rank_f32`], torch's
//!   `matrix_rank` default for a float32 matrix, which is what the authors' float32 kernels would
//!   give). Both use the f64 singular values.
//! - **FN**: `‖K‖_F` of the train×train matrix (Table 2 prints it in units of 10³).
//! - **FT Ratio**, quoting docs/method.md §7.3: "average over training samples x of
//!   ‖Σ_i F(x,x_i) δ_i‖₂ / ‖Σ_i (P(x,x_i)+F(x,x_i)) δ_i‖₂, with δ_i = e_{y_i} − softmax(f0(x_i))
//!   from the model at the start of the FT stage … sums over the (≤250) training subset. Can exceed
//!   1." See [`ft_ratio`] and [`softmax_residuals`].
//! - **Singular-value distribution**: singular values of the train×train matrix "each divided by
//!   its own maximum, plotted in descending order" ([`normalized_spectrum`]).
//! - **Heat maps**: "the trace (nuclear) norm of the C×C block K(x_i, x_j)"
//!   (`block_nuclear_norms`); here "trace norm" is the nuclear norm (sum of singular values),
//!   not the trace.
//!
//! All computations are in f64 with `faer`. Singular values come from faer's SVD, which
//! needs no symmetry: train×train kernels are symmetric, but nothing here relies on it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ntk::kernel::{frobenius, Kernel, KernelMatrix};

/// Machine epsilon of the f64 rank ([`KernelStats::rank`]).
pub(crate) const RANK_EPS_F64: f64 = f64::EPSILON;
/// Machine epsilon of the f32-comparable rank ([`KernelStats::rank_f32`]): `f32::EPSILON`
/// (2^−23) as f64.
pub(crate) const RANK_EPS_F32: f64 = f32::EPSILON as f64;

/// The per-kernel statistics of Table 2 (except FT ratio and accuracy) and Fig. 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelStats {
    /// Rows × columns of the matrix the statistics describe (`N·C × N·C` for a flattened
    /// train×train kernel).
    pub shape: [usize; 2],
    /// Numerical rank with the f64 tolerance `σ_max·max(m, n)·ε_f64`.
    pub rank: usize,
    /// Numerical rank with the f32 tolerance `σ_max·max(m, n)·ε_f32` (comparable with the paper).
    pub rank_f32: usize,
    /// FN, the Frobenius norm `‖K‖_F`.
    pub frobenius_norm: f64,
    /// σ_max, the largest singular value (the spectrum's normaliser).
    pub sigma_max: f64,
    /// `σ_i / σ_1`, descending, `min(m, n)` values in `[0, 1]`.
    pub spectrum: Vec<f64>,
}

/// Rank, FN and normalised spectrum of one matrix, e.g. `kernel.flatten()` of a train×train
/// kernel (docs/method.md §7.3).
///
/// # Errors
/// [`Error::NonFiniteKernel`] for a NaN/∞ entry; [`Error::ZeroNorm`] for an all-zero (or empty)
/// matrix, whose spectrum cannot be normalised; [`Error::DecompositionFailed`] if the SVD does
/// not converge.
pub(crate) fn kernel_stats(m: &KernelMatrix) -> Result<KernelStats> {
    let sv = singular_values(m)?;
    let spectrum = normalized_spectrum(&sv)?;
    Ok(KernelStats {
        shape: [m.rows(), m.cols()],
        rank: numerical_rank(&sv, m.rows(), m.cols(), RANK_EPS_F64),
        rank_f32: numerical_rank(&sv, m.rows(), m.cols(), RANK_EPS_F32),
        frobenius_norm: m.frobenius_norm(),
        sigma_max: sv.first().copied().unwrap_or(0.0),
        spectrum,
    })
}

/// The singular values of `m` (`[rows, cols]`), descending, `min(rows, cols)` values ≥ 0.
///
/// # Errors
/// [`Error::NonFiniteKernel`] for a NaN/∞ entry; [`Error::DecompositionFailed`] if faer's SVD
/// does not converge.
pub(crate) fn singular_values(m: &KernelMatrix) -> Result<Vec<f64>> {
    check_finite(m)?;
    let mut sv = m
        .to_faer()
        .singular_values()
        .map_err(|_| Error::DecompositionFailed {
            what: "kernel matrix",
            decomposition: "SVD",
        })?;
    // faer documents non-increasing order; sort anyway so callers may rely on it.
    sv.sort_by(|a, b| b.total_cmp(a));
    Ok(sv)
}

/// Numerical rank: the number of `σ_i > σ_max·max(rows, cols)·eps` (the LAPACK / NumPy / torch
/// `matrix_rank` rule); `sv` are the singular values of a `[rows, cols]` matrix in any order.
/// An all-zero matrix has rank 0.
pub(crate) fn numerical_rank(sv: &[f64], rows: usize, cols: usize, eps: f64) -> usize {
    let smax = sv.iter().fold(0.0f64, |m, &s| m.max(s));
    let tol = smax * rows.max(cols) as f64 * eps;
    sv.iter().filter(|&&s| s > tol).count()
}

/// The normalised spectrum `σ_i / σ_max`, sorted descending (Fig. 2 / Fig. 7).
///
/// # Errors
/// [`Error::ZeroNorm`] if `sv` is empty or all zero.
pub fn normalized_spectrum(sv: &[f64]) -> Result<Vec<f64>> {
    let smax = sv.iter().fold(0.0f64, |m, &s| m.max(s));
    if smax == 0.0 || !smax.is_finite() {
        return Err(Error::ZeroNorm {
            what: "singular values",
            index: None,
        });
    }
    let mut out: Vec<f64> = sv.iter().map(|s| s / smax).collect();
    out.sort_by(|a, b| b.total_cmp(a));
    Ok(out)
}

/// Kernel alignment `⟨A, B⟩_F / (‖A‖_F ‖B‖_F)` in [−1, 1] (extra, docs/method.md §14, check 3: Prop. 4.4
/// predicts ≈ 1 for F^LoRA against F^FT restricted to the adapted weights). `a` and `b` have the
/// same shape, e.g. both flattened `[N·C, N·C]`. Scale-invariant in each argument.
///
/// # Errors
/// [`Error::Shape`] if the shapes differ; [`Error::NonFiniteKernel`]; [`Error::ZeroNorm`] if either
/// matrix is zero.
pub(crate) fn kernel_alignment(a: &KernelMatrix, b: &KernelMatrix) -> Result<f64> {
    if (a.rows(), a.cols()) != (b.rows(), b.cols()) {
        return Err(Error::Shape {
            what: "kernel alignment",
            expected: format!("[{}, {}]", a.rows(), a.cols()),
            found: format!("[{}, {}]", b.rows(), b.cols()),
        });
    }
    check_finite(a)?;
    check_finite(b)?;
    let (na, nb) = (frobenius(a.data()), frobenius(b.data()));
    if na == 0.0 || nb == 0.0 {
        return Err(Error::ZeroNorm {
            what: "kernel alignment operand",
            index: None,
        });
    }
    // Normalise first so that kernels with FN ~ 1e7 cannot overflow the inner product.
    let s: f64 = a
        .data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x / na) * (y / nb))
        .sum();
    Ok(s.clamp(-1.0, 1.0))
}

/// The residuals δ_i = e_{y_i} − softmax(z_i) `[n, C]` of docs/method.md §7.1/§7.3 from the logits `z`
/// `[n, C]` of the model at the start of the FT stage (stable softmax: each row's own maximum is
/// subtracted). Rows sum to 0.
///
/// # Errors
/// [`Error::InvalidArgument`] if `c = 0`; [`Error::LogitsShape`] if `logits.len() ≠ n·C`
/// (`n = labels.len()`); [`Error::LabelOutOfRange`]; [`Error::NonFiniteLogit`].
pub fn softmax_residuals(logits: &[f64], labels: &[usize], c: usize) -> Result<Vec<f64>> {
    let n = labels.len();
    if c == 0 {
        return Err(Error::InvalidArgument {
            field: "n_classes".into(),
            reason: "need at least 1 class".into(),
        });
    }
    if Some(logits.len()) != n.checked_mul(c) {
        return Err(Error::LogitsShape {
            len: logits.len(),
            n,
            n_classes: c,
        });
    }
    let mut delta = vec![0.0; n * c];
    for (i, (z, &y)) in logits.chunks_exact(c).zip(labels).enumerate() {
        if y >= c {
            return Err(Error::LabelOutOfRange {
                index: i,
                label: y,
                n_classes: c,
            });
        }
        if let Some(class) = z.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteLogit {
                index: i,
                class,
                value: z[class],
            });
        }
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        let out = &mut delta[i * c..(i + 1) * c];
        for (k, (o, v)) in out.iter_mut().zip(z).enumerate() {
            *o = f64::from(u8::from(k == y)) - (v - m).exp() / s;
        }
    }
    Ok(delta)
}

/// FT ratio (docs/method.md §7.3): `(1/n1) Σ_x ‖Σ_i F(x, x_i) δ_i‖₂ / ‖Σ_i (P(x, x_i) + F(x, x_i)) δ_i‖₂`.
///
/// `p` and `f` are the P and F kernels `[n1, C, n2, C]` of the same inputs (the paper: both
/// train×train over the ≤ 250-example training subset, so `n1 = n2 = N`); `delta` is `[n2, C]`
/// (from [`softmax_residuals`]). The block product is `(K(x_n, ·) δ)_c =
/// Σ_i Σ_{c′} K[n, c, i, c′] δ_i[c′]`, i.e. the flattened matrix times the flattened δ. The ratio
/// measures how much of the one-step logit change of eq. (1) comes from F; it can exceed 1 when P
/// and F pull in opposite directions.
///
/// # Errors
/// [`Error::Shape`] if the kernels' shapes differ or `delta.len() ≠ n2·C`;
/// [`Error::NonFiniteKernel`]; [`Error::ZeroNorm`] (with the sample index) if some
/// `‖Σ_i (P + F)(x, x_i) δ_i‖₂ = 0`, where the ratio is undefined.
pub fn ft_ratio(p: &Kernel, f: &Kernel, delta: &[f64]) -> Result<f64> {
    if p.shape() != f.shape() {
        return Err(Error::Shape {
            what: "FT ratio kernels (P, F)",
            expected: format!("{:?}", p.shape()),
            found: format!("{:?}", f.shape()),
        });
    }
    let [n1, c, n2, _] = p.shape();
    if delta.len() != n2 * c {
        return Err(Error::Shape {
            what: "FT ratio residuals δ",
            expected: format!("[{n2}, {c}] = {} values", n2 * c),
            found: format!("{}", delta.len()),
        });
    }
    // The `[n1, C, n2, C]` buffers are the row-major flattenings `[n1·C, n2·C]`.
    let cols = n2 * c;
    let (pm, fm) = (p.data(), f.data());
    check_finite_flat(pm, cols)?;
    check_finite_flat(fm, cols)?;
    let mut total = 0.0;
    let mut uf = vec![0.0; c];
    let mut upf = vec![0.0; c];
    for n in 0..n1 {
        for cc in 0..c {
            let r = (n * c + cc) * cols;
            let fr = &fm[r..r + cols];
            let pr = &pm[r..r + cols];
            let (mut sf, mut sp) = (0.0, 0.0);
            for ((fv, pv), dv) in fr.iter().zip(pr).zip(delta) {
                sf += fv * dv;
                sp += pv * dv;
            }
            uf[cc] = sf;
            upf[cc] = sp + sf;
        }
        let den = frobenius(&upf);
        if den == 0.0 {
            return Err(Error::ZeroNorm {
                what: "FT ratio denominator ‖Σ_i (P + F)(x, x_i) δ_i‖",
                index: Some(n),
            });
        }
        total += frobenius(&uf) / den;
    }
    Ok(total / n1 as f64)
}

#[cfg(test)]
/// Heat-map values (Fig. 8, 9): the nuclear ("trace") norm `Σ σ(B)` of each C×C block
/// `B_{c c′} = K[i, c, j, c′]`, as an `[n1, n2]` matrix. For P every block is `g·I_C`, whose
/// nuclear norm is `C·|g|`.
///
/// # Errors
/// [`Error::NonFiniteKernel`]; [`Error::DecompositionFailed`] if a block's SVD does not converge.
pub(crate) fn block_nuclear_norms(k: &Kernel) -> Result<KernelMatrix> {
    let [n1, c, n2, _] = k.shape();
    let data = k.data();
    check_finite_flat(data, n2 * c)?;
    let mut out = vec![0.0; n1 * n2];
    for i in 0..n1 {
        for j in 0..n2 {
            let block = faer::Mat::from_fn(c, c, |a, b| data[((i * c + a) * n2 + j) * c + b]);
            let sv = block
                .singular_values()
                .map_err(|_| Error::DecompositionFailed {
                    what: "kernel block",
                    decomposition: "SVD",
                })?;
            out[i * n2 + j] = sv.iter().sum();
        }
    }
    KernelMatrix::new(out, n1, n2)
}

fn check_finite(m: &KernelMatrix) -> Result<()> {
    check_finite_flat(m.data(), m.cols())
}

/// Checks a row-major buffer with `cols` columns for NaN/∞, reporting (row, column).
fn check_finite_flat(data: &[f64], cols: usize) -> Result<()> {
    if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
        let cols = cols.max(1);
        return Err(Error::NonFiniteKernel {
            row: pos / cols,
            col: pos % cols,
            value: data[pos],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntk::kernel::pretrain_kernel;

    /// Results of SVDs and sums of a few f64 terms of size O(1–100).
    const TOL: f64 = 1e-10;

    fn mat(rows: usize, cols: usize, data: &[f64]) -> KernelMatrix {
        KernelMatrix::new(data.to_vec(), rows, cols).expect("shape")
    }

    #[test]
    fn rank_of_known_rank_two_matrix() {
        // G = φφᵀ + 1 for the 1-D features φ = (1, 2, 3, 5): G = [φ, 1][φ, 1]ᵀ, rank 2.
        let phi = [1.0, 2.0, 3.0, 5.0];
        let p = pretrain_kernel(&phi, 4, None, 4, 1, 1).expect("valid");
        let st = kernel_stats(&p.flatten()).expect("stats");
        assert_eq!((st.rank, st.rank_f32), (2, 2));
        assert_eq!(st.shape, [4, 4]);
        // P = G ⊗ I_3 has rank 2·3 = 6.
        let p3 = pretrain_kernel(&phi, 4, None, 4, 1, 3).expect("valid");
        let st3 = kernel_stats(&p3.flatten()).expect("stats");
        assert_eq!((st3.rank, st3.rank_f32), (6, 6));
        // Two explicit outer products in 5×5: u = (1,2,0,−1,3), v = (0,1,1,1,−2).
        let (u, v) = ([1.0, 2.0, 0.0, -1.0, 3.0], [0.0, 1.0, 1.0, 1.0, -2.0]);
        let m: Vec<f64> = (0..25)
            .map(|k| u[k / 5] * u[k % 5] + 2.0 * v[k / 5] * v[k % 5])
            .collect();
        assert_eq!(kernel_stats(&mat(5, 5, &m)).unwrap().rank, 2);
    }

    #[test]
    fn f32_rank_drops_tiny_singular_values() {
        // σ = (1, 1e-10): above 2·ε_f64·1 ≈ 4.4e-16, below 2·ε_f32 ≈ 2.4e-7.
        let st = kernel_stats(&mat(2, 2, &[1.0, 0.0, 0.0, 1e-10])).unwrap();
        assert_eq!((st.rank, st.rank_f32), (2, 1));
        assert_eq!(numerical_rank(&[0.0, 0.0], 2, 2, RANK_EPS_F64), 0);
    }

    #[test]
    fn spectrum_is_normalised_and_descending() {
        // Singular values of diag(1, −4, 2) are 4, 2, 1.
        let m = mat(3, 3, &[1.0, 0.0, 0.0, 0.0, -4.0, 0.0, 0.0, 0.0, 2.0]);
        let st = kernel_stats(&m).unwrap();
        assert!((st.sigma_max - 4.0).abs() < TOL);
        let want = [1.0, 0.5, 0.25];
        for (s, w) in st.spectrum.iter().zip(want) {
            assert!((s - w).abs() < TOL, "{:?}", st.spectrum);
        }
        // FN of diag(1, −4, 2) = √21.
        assert!((st.frobenius_norm - 21f64.sqrt()).abs() < TOL);
        assert_eq!(
            normalized_spectrum(&[1.0, 3.0]).unwrap(),
            vec![1.0, 1.0 / 3.0]
        );
        assert!(normalized_spectrum(&[0.0]).is_err());
        assert!(kernel_stats(&mat(2, 2, &[0.0; 4])).is_err());
        assert!(matches!(
            kernel_stats(&mat(1, 2, &[1.0, f64::NAN])),
            Err(Error::NonFiniteKernel { row: 0, col: 1, .. })
        ));
    }

    #[test]
    fn alignment() {
        let a = mat(2, 2, &[2.0, 1.0, 1.0, 3.0]);
        let a2 = mat(2, 2, &[4.0, 2.0, 2.0, 6.0]);
        assert!((kernel_alignment(&a, &a2).unwrap() - 1.0).abs() < TOL);
        let neg = mat(2, 2, &[-2.0, -1.0, -1.0, -3.0]);
        assert!((kernel_alignment(&a, &neg).unwrap() + 1.0).abs() < TOL);
        let e1 = mat(2, 2, &[1.0, 0.0, 0.0, 0.0]);
        let e2 = mat(2, 2, &[0.0, 0.0, 0.0, 1.0]);
        assert_eq!(kernel_alignment(&e1, &e2).unwrap(), 0.0);
        // ⟨a, e1⟩ / (‖a‖ ‖e1‖) = 2 / √15.
        assert!((kernel_alignment(&a, &e1).unwrap() - 2.0 / 15f64.sqrt()).abs() < TOL);
        assert!(kernel_alignment(&a, &mat(1, 4, &[2.0, 1.0, 1.0, 3.0])).is_err());
        assert!(kernel_alignment(&a, &mat(2, 2, &[0.0; 4])).is_err());
    }

    #[test]
    fn residuals() {
        let d = softmax_residuals(&[0.0, 0.0, 1000.0, 0.0], &[0, 0], 2).unwrap();
        let want = [0.5, -0.5, 0.0, 0.0];
        for (x, w) in d.iter().zip(want) {
            assert!((x - w).abs() < TOL, "{d:?}");
        }
        assert!(softmax_residuals(&[0.0, 0.0], &[2], 2).is_err());
        assert!(softmax_residuals(&[0.0, 0.0, 0.0], &[0], 2).is_err());
        assert!(softmax_residuals(&[0.0, f64::INFINITY], &[0], 2).is_err());
    }

    /// Kernels over 2 inputs with C = 2 whose cross-input blocks are 0, from per-input blocks.
    fn block_diag(blocks: [[f64; 4]; 2]) -> Kernel {
        let mut data = vec![0.0; 16];
        for (n, b) in blocks.iter().enumerate() {
            for a in 0..2 {
                for c in 0..2 {
                    data[((n * 2 + a) * 2 + n) * 2 + c] = b[a * 2 + c];
                }
            }
        }
        Kernel::from_parts(data, [2, 2, 2, 2]).expect("valid")
    }

    #[test]
    fn ft_ratio_by_hand() {
        // Input 0: P block 2·I, F block diag(1, 3), δ_0 = (0.5, −0.5):
        //   Fδ = (0.5, −1.5), ‖·‖² = 2.5; (P + F)δ = (1.5, −2.5), ‖·‖² = 8.5 → ratio √(5/17).
        // Input 1: P block 3·I, F block 0, δ_1 = (−0.2, 0.2): ratio 0.
        // Mean over the two inputs: √(5/17)/2.
        let p = block_diag([[2.0, 0.0, 0.0, 2.0], [3.0, 0.0, 0.0, 3.0]]);
        let f = block_diag([[1.0, 0.0, 0.0, 3.0], [0.0; 4]]);
        let delta = [0.5, -0.5, -0.2, 0.2];
        let r = ft_ratio(&p, &f, &delta).unwrap();
        assert!((r - (5.0f64 / 17.0).sqrt() / 2.0).abs() < TOL);
        // F alone: ratio 1; F = P: ratio 1/2.
        let zero = block_diag([[0.0; 4], [0.0; 4]]);
        assert!((ft_ratio(&zero, &p, &delta).unwrap() - 1.0).abs() < TOL);
        assert!((ft_ratio(&p, &p, &delta).unwrap() - 0.5).abs() < TOL);
        assert!(matches!(
            ft_ratio(&zero, &zero, &delta),
            Err(Error::ZeroNorm { index: Some(0), .. })
        ));
        assert!(ft_ratio(&p, &f, &delta[..3]).is_err());
    }

    #[test]
    fn nuclear_norm_heat_map() {
        // Input 0's block diag(3, −4) → 7; P-style block 3·I → 6; zero cross blocks → 0.
        let k = block_diag([[3.0, 0.0, 0.0, -4.0], [3.0, 0.0, 0.0, 3.0]]);
        let h = block_nuclear_norms(&k).unwrap();
        assert_eq!((h.rows(), h.cols()), (2, 2));
        let want = [7.0, 0.0, 0.0, 6.0];
        for (x, w) in h.data().iter().zip(want) {
            assert!((x - w).abs() < TOL, "{:?}", h.data());
        }
        // [[1, 1], [1, 1]] has singular values 2, 0.
        let ones = Kernel::from_parts(vec![1.0; 4], [1, 2, 1, 2]).unwrap();
        assert!((block_nuclear_norms(&ones).unwrap().data()[0] - 2.0).abs() < TOL);
    }
}
