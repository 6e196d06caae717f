//! A linear layer with a LoRA adapter as one op: y = x Wᵀ + b + s·(x Aᵀ) Bᵀ.
//!
//! Composed, the adapter is two matmuls, a scale and an add after the base layer: four more
//! autograd nodes per adapted layer, each of whose output gradients candle accumulates into a
//! freshly zeroed `[rows, out]` (or `[rows, r]`) buffer, and a second consumer of x whose
//! gradient is added into x's. Here one backward computes dx = g W + s·(g B) A (one buffer),
//! and dA, dB (and db) from the rank-r products; the frozen W gets no gradient.
//!
//! The op's third input packs the small tensors, `[b | A | B]` flattened (`b` only when the
//! layer has a bias), so that one candle op reaches all of them; `Tensor::cat`'s backward hands
//! each its part of the gradient.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::linear::{dims, forward, out_shape, split3};
use super::matmul::{matmul, threads, Gemm, View};
use super::slice;

#[derive(Clone, Copy)]
struct LoraLinearOp {
    rank: usize,
    scale: f32,
    has_bias: bool,
    /// Which gradients the backward computes: x, W, the packed `[b | A | B]`.
    dx: bool,
    dw: bool,
    dp: bool,
}

/// The packed small tensors, split: (bias, A `[r, in]`, B `[out, r]`).
struct Parts<'a> {
    b: Option<&'a [f32]>,
    a: &'a [f32],
    up: &'a [f32],
}

impl LoraLinearOp {
    fn parts<'a>(&self, p: &'a [f32], i: usize, o: usize) -> candle_core::Result<Parts<'a>> {
        let nb = if self.has_bias { o } else { 0 };
        let want = nb + self.rank * i + o * self.rank;
        if p.len() != want {
            candle_core::bail!(
                "lora linear: packed [b | A | B] has {} values, expected {want}",
                p.len()
            );
        }
        let (b, rest) = p.split_at(nb);
        let (a, up) = rest.split_at(self.rank * i);
        Ok(Parts {
            b: self.has_bias.then_some(b),
            a,
            up,
        })
    }

    /// s·(x Aᵀ) `[rows, r]`.
    fn low(&self, x: &[f32], a: &[f32], rows: usize, i: usize) -> Vec<f32> {
        let mut low = vec![0f32; rows * self.rank];
        matmul(
            &mut low,
            self.rank,
            false,
            View::rows(x, rows, i),
            View::rows(a, self.rank, i).t(),
            threads(false),
        );
        for v in &mut low {
            *v *= self.scale;
        }
        low
    }
}

impl CustomOp3 for LoraLinearOp {
    fn name(&self) -> &'static str {
        "fused-lora-linear"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, i, o) = dims(lx, lw)?;
        let x = slice(sx, lx, "lora linear input")?;
        let parts = self.parts(slice(sp, lp, "lora linear packed")?, i, o)?;
        let w = slice(sw, lw, "lora linear weight")?;
        let mut y = forward(x, w, parts.b, (rows, i, o), threads(false));
        let low = self.low(x, parts.a, rows, i);
        // y += s·(x Aᵀ) Bᵀ.
        matmul(
            &mut y,
            o,
            true,
            View::rows(&low, rows, self.rank),
            View::rows(parts.up, o, self.rank).t(),
            threads(false),
        );
        Ok((CpuStorage::F32(y), out_shape(lx, o)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let flat = x.apply_op3_no_bwd(w, p, &LoraLinearBwd { op: *self, grad })?;
        split3(
            &flat,
            [
                (self.dx, x.shape()),
                (self.dw, w.shape()),
                (self.dp, p.shape()),
            ],
        )
    }
}

/// The backward kernel over (x, W, packed) with the output gradient held in the struct; one
/// flat output `[dx | dW | d(b | A | B)]` with the parts the op wants.
struct LoraLinearBwd {
    op: LoraLinearOp,
    grad: Tensor,
}

impl CustomOp3 for LoraLinearBwd {
    fn name(&self) -> &'static str {
        "fused-lora-linear-bwd"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.op;
        let r = op.rank;
        let (rows, i, o) = dims(lx, lw)?;
        let x = slice(sx, lx, "lora linear input")?;
        let w = slice(sw, lw, "lora linear weight")?;
        let packed = slice(sp, lp, "lora linear packed")?;
        let parts = op.parts(packed, i, o)?;
        super::with_values(&self.grad, "lora linear output gradient", |g| {
            if g.len() != rows * o {
                candle_core::bail!(
                    "lora linear backward: gradient has {} values, expected {}",
                    g.len(),
                    rows * o
                );
            }
            let gv = View::rows(g, rows, o);
            let gb = low_rank_grad(g, parts.up, rows, o, r, op.scale, threads(false));
            let gbv = View::rows(&gb, rows, r);
            let n =
                op.dx as usize * rows * i + op.dw as usize * o * i + op.dp as usize * packed.len();
            let mut out = vec![0f32; n];
            let mut rest = out.as_mut_slice();
            if op.dx {
                // dx = g W + s·(g B) A.
                let (dx, tail) = rest.split_at_mut(rows * i);
                matmul(dx, i, false, gv, View::rows(w, o, i), threads(false));
                matmul(dx, i, true, gbv, View::rows(parts.a, r, i), threads(false));
                rest = tail;
            }
            if op.dw {
                // dW = gᵀ x.
                let (dw, tail) = rest.split_at_mut(o * i);
                matmul(dw, i, false, gv.t(), View::rows(x, rows, i), threads(false));
                rest = tail;
            }
            if op.dp {
                let (db, tail) = rest.split_at_mut(if op.has_bias { o } else { 0 });
                for row in g.chunks(o).filter(|_| op.has_bias) {
                    for (d, v) in db.iter_mut().zip(row) {
                        *d += v;
                    }
                }
                let (da, dup) = tail.split_at_mut(r * i);
                // dA = (s·g B)ᵀ x `[r, in]`.
                matmul(
                    da,
                    i,
                    false,
                    gbv.t(),
                    View::rows(x, rows, i),
                    threads(false),
                );
                // dB = gᵀ (s·x Aᵀ) `[out, r]`.
                let low = op.low(x, parts.a, rows, i);
                matmul(
                    dup,
                    r,
                    false,
                    gv.t(),
                    View::rows(&low, rows, r),
                    threads(false),
                );
            }
            Ok((CpuStorage::F32(out), Shape::from(n)))
        })?
    }
}

/// s·(g B) `[rows, r]` from the output gradient g `[rows, o]` and B `[o, r]`: the gradient
/// reaching an adapter's low-rank activations, from which dx (`+= · A`) and dA (`ᵀ x`) follow.
pub(crate) fn low_rank_grad(
    g: &[f32],
    b: &[f32],
    rows: usize,
    o: usize,
    r: usize,
    scale: f32,
    gemm: Gemm,
) -> Vec<f32> {
    let mut gb = vec![0f32; rows * r];
    let (gv, bv) = (View::rows(g, rows, o), View::rows(b, o, r));
    matmul(&mut gb, r, false, gv, bv, gemm);
    gb.iter_mut().for_each(|v| *v *= scale);
    gb
}

/// x Wᵀ + b + scale·(x Aᵀ) Bᵀ over the last dimension of `xs` (shapes: `xs` `[.., in]`, `weight`
/// `[out, in]`, `bias` `[out]`, `a` `[r, in]`, `b_up` `[out, r]`). Gradients as for
/// [`super::linear()`], plus dA and dB (and db) when the adapter is tracked.
pub fn lora_linear(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    a: &Tensor,
    b_up: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let xs = xs.contiguous()?;
    let weight = weight.contiguous()?;
    let mut parts = Vec::with_capacity(3);
    if let Some(b) = bias {
        parts.push(b.flatten_all()?);
    }
    parts.push(a.flatten_all()?);
    parts.push(b_up.flatten_all()?);
    let packed = Tensor::cat(&parts, 0)?;
    let op = LoraLinearOp {
        rank: a.dim(0)?,
        scale: scale as f32,
        has_bias: bias.is_some(),
        dx: xs.track_op(),
        dw: weight.track_op(),
        dp: packed.track_op(),
    };
    if op.dx || op.dw || op.dp {
        xs.apply_op3_arc(&weight, &packed, std::sync::Arc::new(Box::new(op)))
    } else {
        xs.apply_op3_no_bwd(&weight, &packed, &op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::testing::{randn, rel, weighted_grads};
    use candle_core::Var;

    /// f32 GEMMs against candle's: different blocking and summation order only.
    const REL_TOL: f32 = 1e-5;

    /// LoRA training's own case: the input and the base layer are frozen (untracked), only A
    /// and B are; their gradients match the composed layer's and no dx is computed.
    #[test]
    fn untracked_input_gives_the_adapter_gradients() {
        let (rows, in_dim, out_dim, r, s) = (90, 24, 16, 4, 2.0);
        let x = randn(&[rows, in_dim], 21, 1.0);
        let (w, b) = (
            randn(&[out_dim, in_dim], 22, 1.0),
            randn(&[out_dim], 23, 1.0),
        );
        let va = Var::from_tensor(&randn(&[r, in_dim], 24, 1.0)).unwrap();
        let vu = Var::from_tensor(&randn(&[out_dim, r], 25, 1.0)).unwrap();
        let g = randn(&[rows, out_dim], 26, 1.0);
        let (a, u) = (va.as_tensor(), vu.as_tensor());
        let fused = lora_linear(&x, &w, Some(&b), a, u, s).unwrap();
        let low = x.matmul(&a.t().unwrap()).unwrap();
        let plain = (x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            + (low.matmul(&u.t().unwrap()).unwrap() * s).unwrap())
        .unwrap();
        assert!(rel(&fused, &plain) < REL_TOL, "values");
        let (gf, gp) = (weighted_grads(&fused, &g), weighted_grads(&plain, &g));
        for (t, name) in [(a, "dA"), (u, "dB")] {
            let (f, p) = (gf.get(t).unwrap(), gp.get(t).unwrap());
            assert!(rel(f, p) < REL_TOL, "{name}: rel {}", rel(f, p));
        }
        assert!(gf.get(&x).is_none(), "an untracked input gets no gradient");
    }

    /// Values and gradients (x, A, B, and W, b when tracked) against the composed layer
    /// `x Wᵀ + b + s·(x Aᵀ) Bᵀ`; a frozen W or b gets no gradient.
    #[test]
    fn matches_composed_lora_linear_values_and_gradients() {
        for (rows, train_base, with_bias) in
            [(123, false, true), (10, true, true), (70, false, false)]
        {
            let (in_dim, out_dim, r, s) = (20, 13, 3, 2.5);
            let xt = randn(&[rows, in_dim], 1, 1.0);
            let wt = randn(&[out_dim, in_dim], 2, 1.0);
            let bt = randn(&[out_dim], 3, 1.0);
            let at = randn(&[r, in_dim], 4, 1.0);
            let ut = randn(&[out_dim, r], 5, 1.0);
            let g = randn(&[rows, out_dim], 6, 1.0);
            let var = |t: &Tensor| Var::from_tensor(t).unwrap();
            let (vx, va, vu) = (var(&xt), var(&at), var(&ut));
            let (vw, vb) = (var(&wt), var(&bt));
            let (w, b) = if train_base {
                (vw.as_tensor().clone(), vb.as_tensor().clone())
            } else {
                (wt.clone(), bt.clone())
            };
            let (x, a, u) = (vx.as_tensor(), va.as_tensor(), vu.as_tensor());
            let bias = with_bias.then_some(&b);
            let fused = lora_linear(x, &w, bias, a, u, s).unwrap();
            let mut plain = x.matmul(&w.t().unwrap()).unwrap();
            if with_bias {
                plain = plain.broadcast_add(&b).unwrap();
            }
            let low = x.matmul(&a.t().unwrap()).unwrap();
            plain = (plain + (low.matmul(&u.t().unwrap()).unwrap() * s).unwrap()).unwrap();
            let case = format!("rows {rows} base {train_base} bias {with_bias}");
            assert!(rel(&fused, &plain) < REL_TOL, "{case}: values");
            let (gf, gp) = (weighted_grads(&fused, &g), weighted_grads(&plain, &g));
            let mut tracked = vec![(x, "dx"), (a, "dA"), (u, "dB")];
            if train_base {
                tracked.push((vw.as_tensor(), "dW"));
                if with_bias {
                    tracked.push((vb.as_tensor(), "db"));
                }
            }
            for (t, name) in tracked {
                let (f, p) = (gf.get(t).unwrap(), gp.get(t).unwrap());
                assert!(rel(f, p) < REL_TOL, "{case}: {name}");
            }
            if !train_base {
                assert!(gf.get(&w).is_none(), "{case}: a frozen W gets no gradient");
            }
        }
    }
}
