//! Small f64 vector helpers shared by the probe, the kernels and the analyses, and the f32 → f64
//! boundary of the host-side statistics.
//!
//! Results depend on summation order in the last bits, and some callers reproduce another
//! library's loops bit for bit, so each order is its own function.

/// Σ a·b in f64 with four interleaved accumulators (vectorisable; the order differs from BLAS
/// either way). `b` must be at least as long as `a`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, ra) = a.split_at(a.len() - a.len() % 4);
    let (cb, rb) = b[..a.len()].split_at(ca.len());
    for (p, q) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
        for j in 0..4 {
            acc[j] += p[j] * q[j];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (p, q) in ra.iter().zip(rb) {
        s += p * q;
    }
    s
}

/// Σ a·b in f64 summed strictly in index order: the order of L-BFGS-B's own loops, which the
/// probe's two-loop recursion follows so that its iterates match scikit-learn's.
pub(crate) fn dot_in_order(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

/// `(Σ v²)^½`, with the entries rescaled by their max-abs so that huge values (a kernel's FN
/// ~ 1e7) and tiny ones (LoRA's F) neither overflow nor underflow.
pub(crate) fn frobenius(v: &[f64]) -> f64 {
    let m = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if m == 0.0 || !m.is_finite() {
        return m;
    }
    let s: f64 = v.iter().map(|x| (x / m) * (x / m)).sum();
    m * s.sqrt()
}

/// An f32 buffer (a tensor's values) as f64, for the host-side statistics.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_agree_with_the_definition() {
        let a: Vec<f64> = (0..11).map(|i| f64::from(i) * 0.5 - 2.0).collect();
        let b: Vec<f64> = (0..11).map(|i| 1.0 / (f64::from(i) + 1.0)).collect();
        let want: f64 = (0..11).map(|i| a[i] * b[i]).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-12);
        assert_eq!(dot_in_order(&a, &b), want);
        assert_eq!(frobenius(&[3.0, 4.0]), 5.0);
        assert_eq!(frobenius(&[0.0, 0.0]), 0.0);
        assert!((frobenius(&[1e200, 1e200]) - 1e200 * 2f64.sqrt()).abs() < 1e186);
        assert_eq!(to_f64(&[1.5f32]), vec![1.5f64]);
    }
}
