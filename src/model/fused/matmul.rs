//! A bounds-checked front end to the `gemm` crate's strided f32 GEMM, for the fused kernels
//! that multiply views of their inputs in place (a head's columns, a transpose) instead of
//! copying them into contiguous tensors first.

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

/// How a GEMM may use threads: inside a kernel that is already parallel over rayon tasks, one
/// thread; otherwise the threads of the rayon pool it runs in (what `--threads` sets). Not
/// `candle_core::utils::get_num_threads`, which reads `/proc/cpuinfo` on every call (measured at
/// ~7% of an FT step). The GEMM splits its output, never a sum, so the thread count does not
/// change the result.
pub(crate) fn threads(nested: bool) -> gemm::Parallelism {
    let n = rayon::current_num_threads();
    if nested || n <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(n)
    }
}

/// `dst ← a · b` (or `dst ← dst + a · b` when `accumulate`), where `dst` is `a.rows × b.cols`
/// with row stride `dst_rs` and column stride 1.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    par: gemm::Parallelism,
) {
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
            par,
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
}
