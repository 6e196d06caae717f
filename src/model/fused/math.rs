//! Branch-free f32 `exp` and `erf` that the compiler vectorises, and [`simd`], which runs a
//! kernel compiled for the widest vector instructions the CPU has (runtime detection).
//!
//! libm's scalar `erff`/`expf` were ~10% of a fine-tuning step (GELU forward and backward,
//! softmax); these keep f32 accuracy to a few ulp (tested against libm below).

pub(crate) use crate::simd::simd;

/// Independent partial sums in the reductions below: a plain `iter().sum()` over f32 is one
/// dependency chain (the compiler may not reorder float additions), one add per ~4 cycles; 16
/// lanes let it use whole vector registers. The summation order is fixed, so results are
/// deterministic (and differ from a sequential sum only by rounding).
const LANES: usize = 16;

/// Σ f(i) over `0..n`, in [`LANES`] interleaved partial sums.
#[inline(always)]
fn lane_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let full = n - n % LANES;
    for base in (0..full).step_by(LANES) {
        for (j, a) in acc.iter_mut().enumerate() {
            *a += f(base + j);
        }
    }
    let mut tail = 0f32;
    for i in full..n {
        tail += f(i);
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ x.
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    lane_sum(x.len(), |i| x[i])
}

/// Σ a·b (`a` and `b` of equal length).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let b = &b[..a.len()];
    lane_sum(a.len(), |i| a[i] * b[i])
}

/// Σ (x − c)².
#[inline(always)]
pub(crate) fn sum_sq_dev(x: &[f32], c: f32) -> f32 {
    lane_sum(x.len(), |i| (x[i] - c) * (x[i] - c))
}

/// max x (−∞ for an empty slice), in [`LANES`] partial maxima.
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.max(*v);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    acc.iter().fold(tail, |m, v| m.max(*v))
}

/// eˣ for f32: x = n ln 2 + r with |r| ≤ ln 2 / 2 (Cody–Waite: ln 2 split into a head exact in
/// a few bits and a tail), eʳ by its Taylor series to degree 7 (truncation < 2e-9 relative),
/// then scaled by 2ⁿ through the exponent bits. 0 below −87 (where eˣ leaves the normal range),
/// saturates at e⁸⁸.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4; // 355/512, exact
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − 355/512

    // Adding 1.5 · 2²³ rounds to the nearest integer (ties to even) for |v| < 2²²: the
    // fraction bits fall off the end of the f32.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    // n = round(xc / ln 2); its integer value sits in the low mantissa bits of `shifted`
    // (read with integer ops, which vectorise, unlike the saturating `f32 as i32`).
    let shifted = xc * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let ni = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// erf(x) for f32 as 1 − erfc(|x|) with the sign of x, erfc(z) = t · exp(−z² + P(t)),
/// t = 1/(1 + z/2) and P the degree-9 Chebyshev fit of Numerical Recipes (Press et al., 2nd
/// ed., §6.2, `erfcc`; fractional error < 1.2e-7 for all z ≥ 0).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, digit for digit
pub(crate) fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = 1.0 - t * exp(p - z * z);
    r.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// exp: relative error against libm's expf (a few ulp of f32).
    const EXP_REL_TOL: f32 = 4e-7;
    /// erf: absolute error against libm's erff (the fit's 1.2e-7 plus f32 rounding).
    const ERF_ABS_TOL: f32 = 3e-7;

    #[test]
    fn exp_matches_libm_over_the_range_used() {
        let mut worst = 0f32;
        for i in 0..=400_000 {
            let x = -87.0 + 175.0 * i as f32 / 400_000.0;
            let (a, b) = (exp(x), libm::expf(x));
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst < EXP_REL_TOL, "worst relative error {worst}");
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn reductions_match_sequential_ones() {
        for n in [0, 1, 15, 16, 17, 100, 384] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.5).collect();
            let s: f32 = x.iter().sum();
            let d: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let q: f32 = x.iter().map(|v| (v - 0.3) * (v - 0.3)).sum();
            // Exact: every value is a multiple of 1/16 with small sums.
            assert_eq!(sum(&x), s, "sum, n {n}");
            assert_eq!(dot(&x, &y), d, "dot, n {n}");
            assert!(
                (sum_sq_dev(&x, 0.3) - q).abs() <= 1e-4 * q.max(1.0),
                "sq dev, n {n}"
            );
            let m = x.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            assert_eq!(max(&x), m, "max, n {n}");
        }
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f32;
        for i in 0..=400_000 {
            let x = -8.0 + 16.0 * i as f32 / 400_000.0;
            worst = worst.max((erf(x) - libm::erff(x)).abs());
        }
        assert!(worst < ERF_ABS_TOL, "worst absolute error {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(30.0), 1.0);
        assert_eq!(erf(-30.0), -1.0);
    }
}
