//! The feed-forward block's first layer and its activation as one op: y = gelu(x Wᵀ + b).
//!
//! As a linear op followed by a bias+GELU op, the `[rows, f]` pre-activation is an autograd
//! node between them: candle accumulates its gradient into a freshly zeroed buffer (one
//! memset, one add over the block's widest tensor, per layer). Here the pre-activation is kept
//! inside the op (the linear + bias-GELU pair kept the same tensor alive for their backward),
//! and one backward turns g into dh = g ⊙ gelu′(h) and then dx, dW, db.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::linear::{bias, dims, forward, grads, out_shape, LinearOp};
use super::matmul::threads;
use super::{gelu, gelu_grad, math, slice, ROWS_PER_TASK};

struct LinearGeluOp {
    want: LinearOp,
    /// The pre-activation h = x Wᵀ + b, kept by the forward when a backward will need it.
    pre: OnceLock<Vec<f32>>,
    keep: bool,
}

impl CustomOp3 for LinearGeluOp {
    fn name(&self) -> &'static str {
        "fused-linear-gelu"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, i, o) = dims(lx, lw)?;
        let b = bias(sb, lb, o, "linear-gelu")?;
        let x = slice(sx, lx, "linear-gelu input")?;
        let h = forward(
            x,
            slice(sw, lw, "linear-gelu weight")?,
            Some(b),
            (rows, i, o),
            threads(false),
        );
        let mut y = vec![0f32; h.len()];
        y.par_chunks_mut(o * ROWS_PER_TASK)
            .zip(h.par_chunks(o * ROWS_PER_TASK))
            .for_each(|(yc, hc)| {
                math::simd(
                    #[inline(always)]
                    || {
                        for (y, h) in yc.iter_mut().zip(hc) {
                            *y = gelu(*h);
                        }
                    },
                )
            });
        if self.keep && self.pre.set(h).is_err() {
            candle_core::bail!("linear-gelu: forward ran twice on one op");
        }
        Ok((CpuStorage::F32(y), out_shape(lx, o)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(pre) = self.pre.get() else {
            candle_core::bail!("linear-gelu: backward without a kept pre-activation");
        };
        let grad = grad.contiguous()?;
        let flat = x.apply_op3_no_bwd(
            w,
            &grad,
            &LinearGeluBwd {
                want: self.want,
                pre,
            },
        )?;
        self.want.split(&flat, x, w)
    }
}

/// The backward kernel over (x, W, g): dh = g ⊙ gelu′(h), then `[dx | dW | db]` of the linear
/// layer from dh.
struct LinearGeluBwd<'a> {
    want: LinearOp,
    pre: &'a [f32],
}

impl CustomOp3 for LinearGeluBwd<'_> {
    fn name(&self) -> &'static str {
        "fused-linear-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, i, o) = dims(lx, lw)?;
        let g = slice(sg, lg, "linear-gelu output gradient")?;
        if g.len() != rows * o || self.pre.len() != g.len() {
            candle_core::bail!(
                "linear-gelu backward: gradient has {} values, pre-activation {}, expected {}",
                g.len(),
                self.pre.len(),
                rows * o
            );
        }
        let mut dh = vec![0f32; g.len()];
        dh.par_chunks_mut(o * ROWS_PER_TASK)
            .zip(g.par_chunks(o * ROWS_PER_TASK))
            .zip(self.pre.par_chunks(o * ROWS_PER_TASK))
            .for_each(|((dc, gc), hc)| {
                math::simd(
                    #[inline(always)]
                    || {
                        for ((d, g), h) in dc.iter_mut().zip(gc).zip(hc) {
                            *d = g * gelu_grad(*h);
                        }
                    },
                )
            });
        let x = slice(sx, lx, "linear-gelu input")?;
        let w = slice(sw, lw, "linear-gelu weight")?;
        let out = grads(self.want, x, w, &dh, rows, i, o);
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// gelu_erf(x Wᵀ + b) over the last dimension of `xs` (shapes: `xs` `[.., in]`, `weight`
/// `[out, in]`, `bias` `[out]` → `[.., out]`); gradients as for [`super::linear()`].
pub fn linear_gelu(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let xs = xs.contiguous()?;
    let weight = weight.contiguous()?;
    let bias = bias.contiguous()?;
    let want = LinearOp {
        dx: xs.track_op(),
        dw: weight.track_op(),
        db: bias.track_op(),
    };
    let keep = want.dx || want.dw || want.db;
    let op = LinearGeluOp {
        want,
        pre: OnceLock::new(),
        keep,
    };
    if keep {
        xs.apply_op3_arc(&weight, &bias, std::sync::Arc::new(Box::new(op)))
    } else {
        xs.apply_op3_no_bwd(&weight, &bias, &op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::testing::{randn, rel, weighted_grads};
    use candle_core::Var;

    /// f32 GEMMs and our vectorised erf/exp against candle's matmul and libm-based gelu_erf.
    const REL_TOL: f32 = 1e-5;

    /// Values and every gradient against `gelu_erf(x Wᵀ + b)` composed from candle ops, with
    /// all inputs tracked and with a frozen weight and bias (which then get no gradient).
    #[test]
    fn matches_composed_linear_gelu_values_and_gradients() {
        for (lead, train_wb) in [([3, 41], true), ([2, 5], false)] {
            let xt = randn(&[lead[0], lead[1], 20], 1, 1.0);
            let (wt, bt) = (randn(&[13, 20], 2, 0.5), randn(&[13], 3, 1.0));
            let g = randn(&[lead[0], lead[1], 13], 4, 1.0);
            let var = |t: &Tensor| Var::from_tensor(t).unwrap();
            let (vx, vw, vb) = (var(&xt), var(&wt), var(&bt));
            let (w, b) = if train_wb {
                (vw.as_tensor().clone(), vb.as_tensor().clone())
            } else {
                (wt.clone(), bt.clone())
            };
            let x = vx.as_tensor();
            let fused = linear_gelu(x, &w, &b).unwrap();
            let plain = x
                .broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
                .gelu_erf()
                .unwrap();
            let case = format!("{lead:?} train W, b {train_wb}");
            assert!(rel(&fused, &plain) < REL_TOL, "{case}: values");
            let (gf, gp) = (weighted_grads(&fused, &g), weighted_grads(&plain, &g));
            let mut tracked = vec![(x, "dx")];
            if train_wb {
                tracked.extend([(vw.as_tensor(), "dW"), (vb.as_tensor(), "db")]);
            }
            for (t, name) in tracked {
                let (f, p) = (gf.get(t).unwrap(), gp.get(t).unwrap());
                assert!(rel(f, p) < REL_TOL, "{case}: {name}");
            }
            if !train_wb {
                assert!(
                    gf.get(&w).is_none() && gf.get(&b).is_none(),
                    "{case}: frozen"
                );
            }
        }
    }

    /// The whole FFN at MiniLM's widths (384 → 1536 → 384) on 80 rows, more than one 64-row
    /// slice per thread, so every slice of the parallel kernels runs: values and every gradient
    /// against candle's composed ops.
    #[test]
    fn minilm_width_ffn_matches_composed() {
        let (rows, h, f) = (80, 384, 1536);
        let var = |t: Tensor| Var::from_tensor(&t).unwrap();
        let x = var(randn(&[2, rows / 2, h], 11, 1.0));
        let (w1, b1) = (var(randn(&[f, h], 12, 0.05)), var(randn(&[f], 13, 0.1)));
        let (w2, b2) = (var(randn(&[h, f], 14, 0.03)), var(randn(&[h], 15, 0.1)));
        let g = randn(&[2, rows / 2, h], 16, 1.0);
        let t = |v: &Var| v.as_tensor().clone();
        let mid = linear_gelu(&t(&x), &t(&w1), &t(&b1)).unwrap();
        let fused = crate::model::fused::linear(&mid, &t(&w2), Some(&t(&b2))).unwrap();
        let plain_mid = t(&x)
            .broadcast_matmul(&t(&w1).t().unwrap())
            .unwrap()
            .broadcast_add(&t(&b1))
            .unwrap()
            .gelu_erf()
            .unwrap();
        let plain = plain_mid
            .broadcast_matmul(&t(&w2).t().unwrap())
            .unwrap()
            .broadcast_add(&t(&b2))
            .unwrap();
        assert!(rel(&fused, &plain) < WIDE_TOL, "values");
        let (gf, gp) = (weighted_grads(&fused, &g), weighted_grads(&plain, &g));
        for (v, name) in [
            (&x, "dx"),
            (&w1, "dW1"),
            (&b1, "db1"),
            (&w2, "dW2"),
            (&b2, "db2"),
        ] {
            let (a, b) = (
                gf.get(v.as_tensor()).unwrap(),
                gp.get(v.as_tensor()).unwrap(),
            );
            assert!(rel(a, b) < WIDE_TOL, "{name}: rel {}", rel(a, b));
        }
    }

    /// Sums of 384 and 1536 f32 products in different orders (blocked GEMM against candle's):
    /// relative differences of a few 1e-6.
    const WIDE_TOL: f32 = 2e-5;

    /// Without autograd (eval) the op keeps nothing and gives the same values.
    #[test]
    fn untracked_inputs_give_the_same_values() {
        let (x, w, b) = (
            randn(&[2, 7, 20], 5, 1.0),
            randn(&[13, 20], 6, 0.5),
            randn(&[13], 7, 1.0),
        );
        let y = linear_gelu(&x, &w, &b).unwrap();
        let plain = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .gelu_erf()
            .unwrap();
        assert!(rel(&y, &plain) < REL_TOL);
    }
}
