//! The [`Kernel`] type (an empirical NTK block tensor) and the pre-train-effective component
//! P of docs/method.md §7.1, Proposition 4.1: `P(x, x′) = (⟨φ0(x), φ0(x′)⟩ + 1)·I_C`.
//!
//! Layout (docs/method.md §7.2, REF `tom4649/lp-ft_ntk:training/kernel_trainer.py`): a kernel between `n1`
//! inputs x and `n2` inputs x′ with C logits is an f64 tensor of shape `[n1, C, n2, C]`, row-major,
//! whose entry `(i, c, j, c′)` is `K_{c c′}(x_i, x′_j)`. Its flattening is the
//! `[n1·C, n2·C]` matrix with row `i·C + c` and column `j·C + c′`; because the tensor is row-major
//! this is the same buffer read with a different shape, so flattening copies nothing but the
//! numbers into a [`KernelMatrix`].
//!
//! f64 throughout: REF stores P in float32; we accumulate the Gram matrix in f64 and
//! leave any narrowing to the caller that writes files.
//!
//! INFERRED: the bias contributes the `+ 1` (its gradient is the identity), exactly as in the
//! paper's decomposition; no scaling of the feature inner product is applied.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A dense row-major f64 matrix `[rows, cols]`: a flattened or logit-reduced [`Kernel`].
///
/// The fields are private so that `data.len() = rows · cols` always holds; serialises as
/// `{rows, cols, data}` (row-major; entry `(r, s)` is `data[r·cols + s]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelMatrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl KernelMatrix {
    /// Wraps a row-major buffer of shape `[rows, cols]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `data.len() != rows · cols`.
    pub fn new(data: Vec<f64>, rows: usize, cols: usize) -> Result<Self> {
        let expected = rows.checked_mul(cols).ok_or_else(|| Error::Shape {
            what: "kernel matrix",
            expected: "rows · cols to fit in usize".into(),
            found: format!("[{rows}, {cols}]"),
        })?;
        if data.len() != expected {
            return Err(Error::Shape {
                what: "kernel matrix",
                expected: format!("{expected} values ([{rows}, {cols}])"),
                found: format!("{}", data.len()),
            });
        }
        Ok(KernelMatrix { rows, cols, data })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The entries, row-major, `rows · cols` values; entry `(r, s)` is `data[r·cols + s]`.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The row-major buffer, for writing to a file.
    pub fn into_data(self) -> Vec<f64> {
        self.data
    }

    /// Entry `(r, s)`, or `None` out of range.
    pub fn get(&self, r: usize, s: usize) -> Option<f64> {
        if r < self.rows && s < self.cols {
            self.data.get(r * self.cols + s).copied()
        } else {
            None
        }
    }

    /// `‖K‖_F = (Σ_rs K_rs²)^½`, summed in f64.
    pub fn frobenius_norm(&self) -> f64 {
        frobenius(&self.data)
    }

    /// The same matrix as a `faer` matrix (copies).
    pub fn to_faer(&self) -> faer::Mat<f64> {
        faer::Mat::from_fn(self.rows, self.cols, |r, s| self.data[r * self.cols + s])
    }
}

/// How the C×C logit block of each input pair is turned into matrix entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogitReduction {
    /// Keep every logit pair: the `[n1·C, n2·C]` flattening (row `i·C + c`, column `j·C + c′`),
    /// which is what REF's kernel regression uses.
    #[default]
    Full,
    /// `[n1, n2]` with entry `(1/C)·Σ_c K_{cc}(x_i, x′_j)`: the **mean** of the diagonal of each
    /// C×C block, i.e. its trace divided by C.
    ///
    /// The name follows neural-tangents' `trace_axes`, which (despite the name) averages over the
    /// logit axis rather than summing. A literal trace would be C times larger, which changes
    /// norms but not ranks, spectra shapes or alignments. For P the result is exactly the scalar
    /// kernel `⟨φ0(x), φ0(x′)⟩ + 1`.
    TraceMean,
}

/// An NTK (or NTK component) between two sets of inputs, shape `[n1, C, n2, C]` (see the module
/// docs for the layout and its flattening).
///
/// `n1`, `n2` and `C` are all ≥ 1. A train×train kernel has `n1 = n2` and is symmetric under
/// `(i, c) ↔ (j, c′)`; an eval×train kernel has the eval set first, as in REF. The fields are
/// private so the shape always matches the buffer; files go through [`Kernel::into_parts`] and
/// [`Kernel::from_parts`].
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    data: Vec<f64>,
    n1: usize,
    n2: usize,
    c: usize,
}

impl Kernel {
    /// Builds a kernel from its row-major buffer and shape `[n1, C, n2, C]` (the inverse of
    /// [`Kernel::into_parts`], for loading from a file).
    ///
    /// # Errors
    /// [`Error::Shape`] if the two C dimensions differ, a dimension is 0, or
    /// `data.len() != n1·C·n2·C`.
    pub fn from_parts(data: Vec<f64>, shape: [usize; 4]) -> Result<Self> {
        let [n1, c, n2, c2] = shape;
        if c != c2 || n1 == 0 || n2 == 0 || c == 0 {
            return Err(Error::Shape {
                what: "kernel",
                expected: "[n1, C, n2, C] with every dimension ≥ 1".into(),
                found: format!("{shape:?}"),
            });
        }
        let len = n1
            .checked_mul(c)
            .and_then(|v| v.checked_mul(n2))
            .and_then(|v| v.checked_mul(c));
        if len != Some(data.len()) {
            return Err(Error::Shape {
                what: "kernel",
                expected: format!("n1·C·n2·C values for shape {shape:?}"),
                found: format!("{}", data.len()),
            });
        }
        Ok(Kernel { data, n1, n2, c })
    }

    /// Builds a kernel from its `[n1·C, n2·C]` flattening (row `i·C + c`, column `j·C + c′`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `c` is 0 or does not divide both dimensions.
    pub fn from_flat(m: KernelMatrix, c: usize) -> Result<Self> {
        if c == 0 || !m.rows.is_multiple_of(c) || !m.cols.is_multiple_of(c) {
            return Err(Error::Shape {
                what: "flattened kernel",
                expected: format!("[n1·C, n2·C] with C = {c}"),
                found: format!("[{}, {}]", m.rows, m.cols),
            });
        }
        Kernel::from_parts(m.data, [m.rows / c, c, m.cols / c, c])
    }

    /// The row-major buffer and shape `[n1, C, n2, C]`, for writing to a file.
    pub fn into_parts(self) -> (Vec<f64>, [usize; 4]) {
        let shape = self.shape();
        (self.data, shape)
    }

    /// Shape `[n1, C, n2, C]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n1, self.c, self.n2, self.c]
    }

    /// Number of first inputs `n1`.
    pub fn n1(&self) -> usize {
        self.n1
    }

    /// Number of second inputs `n2`.
    pub fn n2(&self) -> usize {
        self.n2
    }

    /// Number of logits C.
    pub fn n_logits(&self) -> usize {
        self.c
    }

    /// The row-major buffer, `n1·C·n2·C` values (also the flattening's row-major buffer).
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// Entry `K_{c c′}(x_i, x′_j)` at `(i, c, j, c′)`, or `None` out of range.
    pub fn get(&self, i: usize, c: usize, j: usize, c2: usize) -> Option<f64> {
        if i < self.n1 && j < self.n2 && c < self.c && c2 < self.c {
            self.data
                .get(((i * self.c + c) * self.n2 + j) * self.c + c2)
                .copied()
        } else {
            None
        }
    }

    /// The `[n1·C, n2·C]` matrix with row `i·C + c` and column `j·C + c′` (docs/method.md §7.2: the design
    /// matrix of the kernel regression). Same buffer, so this only copies.
    pub fn flatten(&self) -> KernelMatrix {
        KernelMatrix {
            rows: self.n1 * self.c,
            cols: self.n2 * self.c,
            data: self.data.clone(),
        }
    }

    /// The kernel as a matrix under `reduction`: [`LogitReduction::Full`] gives
    /// [`Kernel::flatten`] (`[n1·C, n2·C]`), [`LogitReduction::TraceMean`] the `[n1, n2]` mean
    /// of each block's diagonal.
    pub fn logit_reduction(&self, reduction: LogitReduction) -> KernelMatrix {
        match reduction {
            LogitReduction::Full => self.flatten(),
            LogitReduction::TraceMean => {
                let (n1, n2, c) = (self.n1, self.n2, self.c);
                let mut data = vec![0.0; n1 * n2];
                for i in 0..n1 {
                    for j in 0..n2 {
                        let mut s = 0.0;
                        for cc in 0..c {
                            s += self.data[((i * c + cc) * n2 + j) * c + cc];
                        }
                        data[i * n2 + j] = s / c as f64;
                    }
                }
                KernelMatrix {
                    rows: n1,
                    cols: n2,
                    data,
                }
            }
        }
    }

    /// The elementwise sum `self + other`, e.g. the NTK `P + F` of Proposition 4.1.
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ.
    pub fn add(&self, other: &Kernel) -> Result<Kernel> {
        if self.shape() != other.shape() {
            return Err(Error::Shape {
                what: "kernel sum",
                expected: format!("{:?}", self.shape()),
                found: format!("{:?}", other.shape()),
            });
        }
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| a + b)
            .collect();
        Ok(Kernel { data, ..*self })
    }

    /// The kernel multiplied by `factor` (e.g. κ² for a head scaled by κ).
    pub fn scale(&self, factor: f64) -> Kernel {
        Kernel {
            data: self.data.iter().map(|v| v * factor).collect(),
            ..*self
        }
    }

    /// `‖K‖_F` over all `n1·C·n2·C` entries (docs/method.md §7.3 "FN" for a train×train kernel).
    pub fn frobenius_norm(&self) -> f64 {
        frobenius(&self.data)
    }
}

/// The pre-train-effective component P (docs/method.md §7.1 Prop. 4.1, §13):
/// `P(x_i, x′_j) = (⟨φ0(x_i), φ0(x′_j)⟩ + 1)·I_C`, shape `[n1, C, n2, C]`.
///
/// `phi1` is `[n1, d]` row-major (the eval-mode pre-trained features φ0 of the first set).
/// `phi2 = Some(..)` is `[n2, d]`; `None` is the symmetric case x′ = x (then `n2` must equal `n1`),
/// where each Gram entry is computed once and mirrored, so the result is exactly symmetric.
/// Off-diagonal logit pairs are exactly 0.
///
/// # Errors
/// [`Error::Shape`] for lengths that do not match `[n1, d]` / `[n2, d]`, `n2 ≠ n1` when
/// `phi2` is `None`, or a zero dimension; [`Error::NonFiniteFeature`] for NaN/∞ features.
pub fn pretrain_kernel(
    phi1: &[f64],
    n1: usize,
    phi2: Option<&[f64]>,
    n2: usize,
    d: usize,
    c: usize,
) -> Result<Kernel> {
    if n1 == 0 || n2 == 0 || d == 0 || c == 0 {
        return Err(Error::Shape {
            what: "pretrain kernel inputs",
            expected: "n1, n2, d, C ≥ 1".into(),
            found: format!("n1 = {n1}, n2 = {n2}, d = {d}, C = {c}"),
        });
    }
    check_features("phi1", phi1, n1, d)?;
    if let Some(p2) = phi2 {
        check_features("phi2", p2, n2, d)?;
    } else if n2 != n1 {
        return Err(Error::Shape {
            what: "pretrain kernel (symmetric case)",
            expected: format!("n2 = n1 = {n1}"),
            found: format!("{n2}"),
        });
    }
    let mut gram = vec![0.0; n1 * n2];
    match phi2 {
        None => {
            for i in 0..n1 {
                let a = &phi1[i * d..(i + 1) * d];
                for j in i..n1 {
                    let v = dot(a, &phi1[j * d..(j + 1) * d]) + 1.0;
                    gram[i * n1 + j] = v;
                    gram[j * n1 + i] = v;
                }
            }
        }
        Some(p2) => {
            for i in 0..n1 {
                let a = &phi1[i * d..(i + 1) * d];
                for j in 0..n2 {
                    gram[i * n2 + j] = dot(a, &p2[j * d..(j + 1) * d]) + 1.0;
                }
            }
        }
    }
    let mut data = vec![0.0; n1 * c * n2 * c];
    for i in 0..n1 {
        for j in 0..n2 {
            let g = gram[i * n2 + j];
            for cc in 0..c {
                data[((i * c + cc) * n2 + j) * c + cc] = g;
            }
        }
    }
    Ok(Kernel { data, n1, n2, c })
}

/// Checks a feature buffer `[n, d]`: length and finiteness.
fn check_features(what: &'static str, phi: &[f64], n: usize, d: usize) -> Result<()> {
    if Some(phi.len()) != n.checked_mul(d) {
        return Err(Error::Shape {
            what,
            expected: format!("[{n}, {d}] = {} values", n.saturating_mul(d)),
            found: format!("{}", phi.len()),
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

pub(crate) use crate::linalg::{dot, frobenius};

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums of a handful of exact small numbers: only rounding of the last bit is allowed.
    const EXACT_TOL: f64 = 1e-12;

    /// Φ for the 3×2 example: rows φ(x_0) = (1, 0), φ(x_1) = (0, 2), φ(x_2) = (1, 1).
    const PHI: [f64; 6] = [1.0, 0.0, 0.0, 2.0, 1.0, 1.0];

    #[test]
    fn pretrain_kernel_by_hand_3x2() {
        // ΦΦᵀ + 1 by hand: ⟨φ0,φ0⟩ = 1, ⟨φ0,φ1⟩ = 0, ⟨φ0,φ2⟩ = 1, ⟨φ1,φ1⟩ = 4, ⟨φ1,φ2⟩ = 2,
        // ⟨φ2,φ2⟩ = 2, so
        //   G = [[2, 1, 2],
        //        [1, 5, 3],
        //        [2, 3, 3]]
        // and P = G ⊗ I_2: entry (i, c, j, c′) = G[i][j]·1[c = c′].
        let g = [[2.0, 1.0, 2.0], [1.0, 5.0, 3.0], [2.0, 3.0, 3.0]];
        let p = pretrain_kernel(&PHI, 3, None, 3, 2, 2).expect("valid");
        assert_eq!(p.shape(), [3, 2, 3, 2]);
        for (i, gi) in g.iter().enumerate() {
            for (j, &gij) in gi.iter().enumerate() {
                for c in 0..2 {
                    for c2 in 0..2 {
                        let want = if c == c2 { gij } else { 0.0 };
                        assert_eq!(p.get(i, c, j, c2), Some(want), "({i},{c},{j},{c2})");
                    }
                }
            }
        }
        // The flattened 6×6 matrix row by row (row i·C + c): the Kronecker product G ⊗ I_2.
        #[rustfmt::skip]
        let flat = [
            2.0, 0.0, 1.0, 0.0, 2.0, 0.0,
            0.0, 2.0, 0.0, 1.0, 0.0, 2.0,
            1.0, 0.0, 5.0, 0.0, 3.0, 0.0,
            0.0, 1.0, 0.0, 5.0, 0.0, 3.0,
            2.0, 0.0, 3.0, 0.0, 3.0, 0.0,
            0.0, 2.0, 0.0, 3.0, 0.0, 3.0,
        ];
        let m = p.flatten();
        assert_eq!((m.rows(), m.cols()), (6, 6));
        assert_eq!(m.data(), flat);
    }

    #[test]
    fn pretrain_kernel_asymmetric_matches_symmetric() {
        let sym = pretrain_kernel(&PHI, 3, None, 3, 2, 3).expect("valid");
        let asym = pretrain_kernel(&PHI, 3, Some(&PHI), 3, 2, 3).expect("valid");
        assert_eq!(sym, asym);
        // eval×train: 1 eval point (2, −1) against the 3 train points; ⟨·,φ⟩ + 1 = 3, −1, 2.
        let e = pretrain_kernel(&[2.0, -1.0], 1, Some(&PHI), 3, 2, 2).expect("valid");
        assert_eq!(e.shape(), [1, 2, 3, 2]);
        let tm = e.logit_reduction(LogitReduction::TraceMean);
        assert_eq!((tm.rows(), tm.cols()), (1, 3));
        assert_eq!(tm.data(), [3.0, -1.0, 2.0]);
    }

    #[test]
    fn pretrain_kernel_rejects_bad_shapes() {
        assert!(pretrain_kernel(&PHI, 3, None, 2, 2, 2).is_err());
        assert!(pretrain_kernel(&PHI, 2, None, 2, 2, 2).is_err());
        assert!(pretrain_kernel(&PHI, 3, Some(&PHI[..4]), 3, 2, 2).is_err());
        assert!(pretrain_kernel(&[f64::NAN, 0.0], 1, None, 1, 2, 2).is_err());
    }

    /// A kernel whose every entry encodes its own index: value = 1000 i + 100 c + 10 j + c′.
    fn indexed(n1: usize, n2: usize, c: usize) -> Kernel {
        let mut data = Vec::new();
        for i in 0..n1 {
            for a in 0..c {
                for j in 0..n2 {
                    for b in 0..c {
                        data.push((1000 * i + 100 * a + 10 * j + b) as f64);
                    }
                }
            }
        }
        Kernel::from_parts(data, [n1, c, n2, c]).expect("valid")
    }

    #[test]
    fn layout_and_flatten_round_trip() {
        let k = indexed(2, 3, 2);
        assert_eq!(k.get(1, 0, 2, 1), Some(1021.0));
        assert_eq!(k.get(2, 0, 0, 0), None);
        let m = k.flatten();
        assert_eq!((m.rows(), m.cols()), (4, 6));
        // Row i·C + c, column j·C + c′.
        for i in 0..2 {
            for a in 0..2 {
                for j in 0..3 {
                    for b in 0..2 {
                        assert_eq!(m.get(i * 2 + a, j * 2 + b), k.get(i, a, j, b));
                    }
                }
            }
        }
        let back = Kernel::from_flat(m, 2).expect("divisible");
        assert_eq!(back, k);
        let (data, shape) = back.into_parts();
        assert_eq!(shape, [2, 2, 3, 2]);
        assert_eq!(Kernel::from_parts(data, shape).expect("valid"), k);
        assert!(Kernel::from_flat(KernelMatrix::new(vec![0.0; 6], 2, 3).unwrap(), 2).is_err());
        assert!(Kernel::from_parts(vec![0.0; 8], [2, 2, 1, 1]).is_err());
        assert!(Kernel::from_parts(vec![0.0; 7], [2, 2, 1, 2]).is_err());
    }

    #[test]
    fn trace_mean_reduction() {
        let k = indexed(2, 3, 2);
        let r = k.logit_reduction(LogitReduction::TraceMean);
        assert_eq!((r.rows(), r.cols()), (2, 3));
        for i in 0..2 {
            for j in 0..3 {
                // mean over c of (1000 i + 100 c + 10 j + c) = 1000 i + 10 j + 101·(0 + 1)/2.
                let want = (1000 * i + 10 * j) as f64 + 50.5;
                assert_eq!(r.get(i, j), Some(want));
            }
        }
        assert_eq!(k.logit_reduction(LogitReduction::Full), k.flatten());
    }

    #[test]
    fn add_scale_norm() {
        let p = pretrain_kernel(&PHI, 3, None, 3, 2, 2).expect("valid");
        let s = p.add(&p.scale(2.0)).expect("same shape");
        assert_eq!(s, p.scale(3.0));
        // ‖G ⊗ I_2‖_F² = 2·‖G‖_F² = 2·(4 + 1 + 4 + 1 + 25 + 9 + 4 + 9 + 9) = 132.
        assert!((p.frobenius_norm() - 132f64.sqrt()).abs() < EXACT_TOL);
        assert!((p.flatten().frobenius_norm() - 132f64.sqrt()).abs() < EXACT_TOL);
        let other = pretrain_kernel(&PHI, 3, None, 3, 2, 3).expect("valid");
        assert!(p.add(&other).is_err());
        assert_eq!(frobenius(&[0.0, 0.0]), 0.0);
        // Squaring 3e200 would overflow; the rescaled sum does not.
        assert!((frobenius(&[3e200, 4e200]) / 5e200 - 1.0).abs() < EXACT_TOL);
    }
}
