//! A bounds-checked front end to the `gemm` crate's strided f32 GEMM, for the fused kernels
//! that multiply views of their inputs in place (a head's columns, a transpose) instead of
//! copying them into contiguous tensors first.
//!
//! With [`Precision::Bf16`] (`--precision bf16`, mixed-precision training) a GEMM takes bf16
//! operands and accumulates in f32: each operand is rounded to bf16 (round to nearest even)
//! and the f32 GEMM multiplies the rounded values. A product of two bf16 values is exact in
//! f32 (8 + 8 significant bits), so this computes what a bf16 × bf16 → f32 instruction
//! (AVX512_BF16's `vdpbf16ps`) computes, up to the order of the f32 sums. It is the portable
//! path: it buys bf16's numerics, not its speed (the rounding is an extra pass over both
//! operands). lpft has no `vdpbf16ps` kernel yet: no machine it was developed on has
//! AVX512_BF16, so such a kernel could not be tested.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A read-only matrix view: element (i, j) is `data[i · rs + j · cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// Panics when the view would address past the end of `data` (a bug in the caller's shape
    /// arithmetic, never a user error: shapes are checked before the kernels run).
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < data.len(),
            "matrix view {rows}×{cols} (strides {rs}, {cs}) exceeds {} values",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// A row-major `rows × cols` matrix at the start of `data`.
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// The operand precision of the GEMMs on the training path (the paper trains in fp32).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands (the default).
    #[default]
    Fp32,
    /// bf16 operands, f32 accumulation; weights, optimiser state, LayerNorm, softmax, GELU and
    /// the loss stay f32 (mixed precision, as `torch.autocast(dtype=torch.bfloat16)`).
    Bf16,
}

impl Precision {
    /// Whether this is the default (for `skip_serializing_if`, so that fp32 run configs keep
    /// the layout they had before the setting existed).
    pub fn is_default(&self) -> bool {
        *self == Precision::Fp32
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as an f32. NaN stays NaN.
#[inline]
pub(crate) fn round_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return x;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

/// How a GEMM runs: its threads and its operand precision.
#[derive(Clone, Copy)]
pub(crate) struct Gemm {
    par: gemm::Parallelism,
    precision: Precision,
}

impl Gemm {
    /// The same threads at `precision`.
    pub(crate) fn at(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }
}

/// How a GEMM may use threads: inside a kernel that is already parallel over rayon tasks, one
/// thread; otherwise the threads of the rayon pool it runs in (what `--threads` sets). Not
/// `candle_core::utils::get_num_threads`, which reads `/proc/cpuinfo` on every call (measured at
/// ~7% of an FT step). The GEMM splits its output, never a sum, so the thread count does not
/// change the result.
/// The result is an f32 GEMM; [`Gemm::at`] changes the precision.
pub(crate) fn threads(nested: bool) -> Gemm {
    let n = rayon::current_num_threads();
    let par = if nested || n <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(n)
    };
    Gemm {
        par,
        precision: Precision::Fp32,
    }
}

/// Values per rounding task: a weight or an activation matrix splits over the pool's threads, a
/// head's small operands inside attention stay on their own task.
const ROUND_CHUNK: usize = 1 << 15;

/// The view's values rounded to bf16, as a row-major contiguous matrix.
fn rounded(v: View) -> Vec<f32> {
    let mut out = vec![0f32; v.rows * v.cols];
    let fill = |(i, dst): (usize, &mut [f32])| {
        let row = &v.data[i * v.rs..];
        if v.cs == 1 {
            for (d, &x) in dst.iter_mut().zip(&row[..v.cols]) {
                *d = round_bf16(x);
            }
        } else {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = round_bf16(row[j * v.cs]);
            }
        }
    };
    if out.len() > ROUND_CHUNK {
        let rows_per_task = (ROUND_CHUNK / v.cols).max(1);
        out.par_chunks_mut(v.cols * rows_per_task)
            .enumerate()
            .for_each(|(t, block)| {
                for (r, dst) in block.chunks_mut(v.cols).enumerate() {
                    fill((t * rows_per_task + r, dst));
                }
            });
    } else {
        out.chunks_mut(v.cols).enumerate().for_each(fill);
    }
    out
}

/// `dst ← a · b` (or `dst ← dst + a · b` when `accumulate`), where `dst` is `a.rows × b.cols`
/// with row stride `dst_rs` and column stride 1; at `g`'s precision.
pub(crate) fn matmul(dst: &mut [f32], dst_rs: usize, accumulate: bool, a: View, b: View, g: Gemm) {
    assert_eq!(a.cols, b.rows, "GEMM inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "GEMM destination {m}×{n} (row stride {dst_rs}) exceeds {} values",
        dst.len()
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    let (ra, rb);
    let (a, b) = match g.precision {
        Precision::Fp32 => (a, b),
        Precision::Bf16 => {
            ra = rounded(a);
            rb = rounded(b);
            (View::rows(&ra, m, k), View::rows(&rb, k, n))
        }
    };
    // SAFETY: the asserts above (and in `View::new`) guarantee every index the strides address
    // lies inside its slice; `dst` is a unique borrow, so it aliases neither `a` nor `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            g.par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive triple loop: the reference.
    fn naive(a: View, b: View) -> Vec<f32> {
        let mut out = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|p| a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn strided_views_and_accumulation_match_a_naive_product() {
        let a: Vec<f32> = (0..5 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..7 * 4).map(|i| (i as f32 * 0.11).cos()).collect();
        // a as 5×7, b read transposed from a 4×7 buffer.
        let (va, vb) = (View::rows(&a, 5, 7), View::rows(&b, 4, 7).t());
        let want = naive(va, vb);
        // Write into the middle columns of a wider destination, twice with accumulation.
        let mut dst = [1f32; 5 * 9];
        matmul(&mut dst[2..], 9, false, va, vb, threads(false));
        matmul(&mut dst[2..], 9, true, va, vb, threads(true));
        for i in 0..5 {
            assert_eq!(
                dst[i * 9..i * 9 + 2],
                [1.0, 1.0],
                "columns left of the block kept"
            );
            for j in 0..4 {
                let got = dst[i * 9 + 2 + j];
                assert!((got - 2.0 * want[i * 4 + j]).abs() < 1e-5, "({i}, {j})");
            }
            assert_eq!(dst[i * 9 + 6..i * 9 + 9], [1.0; 3], "columns right kept");
        }
    }

    /// bf16 rounding is candle's (the `half` crate's round-to-nearest-even) on values of every
    /// magnitude, ties included, and exact values stay.
    #[test]
    fn bf16_rounding_is_round_to_nearest_even() {
        use candle_core::{DType, Device, Tensor};
        // Ties: 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷ (→ 1, even); 1 + 3·2⁻⁸ between
        // 1 + 2⁻⁷ and 1 + 2⁻⁶ (→ 1 + 2⁻⁶, even).
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        assert_eq!(round_bf16(-0.15625), -0.15625, "exact in bf16");
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        let xs: Vec<f32> = (0..20_000)
            .map(|i| {
                let u = ((i as f32) * 0.618_034).fract() - 0.5;
                u * 10f32.powi(i % 17 - 8)
            })
            .collect();
        let want = Tensor::new(xs.as_slice(), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (x, w) in xs.iter().zip(&want) {
            assert_eq!(round_bf16(*x).to_bits(), w.to_bits(), "{x}");
        }
    }

    /// Rounding a view splits large ones over tasks: every element lands in its place, for a
    /// transposed view and one past the task size.
    #[test]
    fn rounding_large_and_strided_views_keeps_every_element_in_place() {
        let (r, c) = (300, 211);
        let data: Vec<f32> = (0..r * c).map(|i| (i as f32 * 0.013).sin() * 3.7).collect();
        for v in [View::rows(&data, r, c), View::rows(&data, r, c).t()] {
            assert!(v.rows * v.cols > ROUND_CHUNK);
            let got = rounded(v);
            for i in 0..v.rows {
                for j in 0..v.cols {
                    let want = round_bf16(v.data[i * v.rs + j * v.cs]);
                    assert_eq!(got[i * v.cols + j].to_bits(), want.to_bits(), "({i}, {j})");
                }
            }
        }
    }

    /// A bf16 GEMM is the exact product of the rounded operands up to f32 summation (products
    /// of bf16 values are exact in f32), for strided views too; and it is not the f32 GEMM.
    #[test]
    fn bf16_gemm_multiplies_the_rounded_operands() {
        /// f32 sums of 7 exact products: a few units in the last place of the largest term.
        const SUM_TOL: f64 = 1e-6;
        let a: Vec<f32> = (0..5 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..7 * 4).map(|i| (i as f32 * 0.11).cos()).collect();
        let (va, vb) = (View::rows(&a, 5, 7), View::rows(&b, 4, 7).t());
        let ra: Vec<f32> = a.iter().map(|&x| round_bf16(x)).collect();
        let rb: Vec<f32> = b.iter().map(|&x| round_bf16(x)).collect();
        let (wa, wb) = (View::rows(&ra, 5, 7), View::rows(&rb, 4, 7).t());
        let mut got = vec![0f32; 5 * 4];
        let mut f32_result = vec![0f32; 5 * 4];
        matmul(
            &mut got,
            4,
            false,
            va,
            vb,
            threads(false).at(Precision::Bf16),
        );
        matmul(&mut f32_result, 4, false, va, vb, threads(false));
        let mut largest_gap = 0f64;
        for i in 0..5 {
            for j in 0..4 {
                let exact: f64 = (0..7)
                    .map(|p| f64::from(wa.data[i * 7 + p]) * f64::from(wb.data[j * 7 + p]))
                    .sum();
                let g = f64::from(got[i * 4 + j]);
                assert!((g - exact).abs() < SUM_TOL, "({i}, {j}): {g} vs {exact}");
                largest_gap = largest_gap.max((g - f64::from(f32_result[i * 4 + j])).abs());
            }
        }
        // bf16 keeps 8 significant bits: operands move by up to 2⁻⁹ relative, products by
        // about 1e-3 of their size; the f32 GEMM must differ by far more than round-off.
        assert!(
            largest_gap > 1e-4,
            "bf16 GEMM equals the f32 one: {largest_gap}"
        );
    }
}
