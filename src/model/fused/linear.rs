//! A fused linear layer, y = x Wᵀ (+ b), with a backward that computes exactly the gradients
//! its inputs need.
//!
//! Composed from candle ops, a linear layer is `x.matmul(W.t())` then a broadcast bias add:
//! the forward makes an extra pass (and buffer) for the bias; the backward accumulates the
//! matmul output's gradient into a zero-filled buffer, reduces the broadcast for db, computes
//! the weight gradient as (xᵀ g) and then adds its *transpose* into W's accumulator (a strided,
//! scalar pass over every weight), and computes dW even for frozen weights. Here the bias is
//! the GEMM's initial value, dW = gᵀ x is written in W's own layout, and dx, dW, db are each
//! computed only when that input is tracked by autograd.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::matmul::{matmul, threads, Gemm, View};
use super::slice;

/// Which gradients the backward computes (decided when the op is built, from which inputs
/// autograd tracks).
#[derive(Clone, Copy)]
pub(super) struct LinearOp {
    pub(super) dx: bool,
    pub(super) dw: bool,
    pub(super) db: bool,
}

/// (rows, in, out) from the layouts of x `[.., in]` and W `[out, in]`.
pub(super) fn dims(lx: &Layout, lw: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (out_dim, in_dim) = lw.shape().dims2()?;
    let n = lx.shape().elem_count();
    if lx.shape().dims().last() != Some(&in_dim) {
        candle_core::bail!(
            "linear: input {:?} does not end in the weight's input size {in_dim}",
            lx.shape()
        );
    }
    Ok((n / in_dim.max(1), in_dim, out_dim))
}

pub(super) fn out_shape(lx: &Layout, out_dim: usize) -> Shape {
    let mut d = lx.shape().dims().to_vec();
    if let Some(last) = d.last_mut() {
        *last = out_dim;
    }
    Shape::from(d)
}

/// The bias values, checked to match the weight's `out` outputs (`what` names the op).
pub(super) fn bias<'a>(
    sb: &'a CpuStorage,
    lb: &Layout,
    out: usize,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let b = slice(sb, lb, what)?;
    if b.len() != out {
        candle_core::bail!(
            "{what}: bias has {} values, the weight {out} outputs",
            b.len()
        );
    }
    Ok(b)
}

/// y = x Wᵀ + b: each output row starts as the bias, then the GEMM (`g`) accumulates onto it.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    (rows, in_dim, out_dim): (usize, usize, usize),
    g: Gemm,
) -> Vec<f32> {
    let mut y = match b {
        Some(b) => b.repeat(rows),
        None => vec![0f32; rows * out_dim],
    };
    matmul(
        &mut y,
        out_dim,
        b.is_some(),
        View::rows(x, rows, in_dim),
        View::rows(w, out_dim, in_dim).t(),
        g,
    );
    y
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, i, o) = dims(lx, lw)?;
        let y = forward(
            slice(sx, lx, "linear input")?,
            slice(sw, lw, "linear weight")?,
            None,
            (rows, i, o),
            threads(false),
        );
        Ok((CpuStorage::F32(y), out_shape(lx, o)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(x, w, grad)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear-bias"
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
        let b = bias(sb, lb, o, "linear")?;
        let y = forward(
            slice(sx, lx, "linear input")?,
            slice(sw, lw, "linear weight")?,
            Some(b),
            (rows, i, o),
            threads(false),
        );
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
        self.backward(x, w, grad)
    }
}

impl LinearOp {
    /// (dx, dW, db), each only if wanted; one kernel writes them into one flat buffer.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let flat = x.apply_op3_no_bwd(w, &grad, &LinearBwdOp(*self))?;
        self.split(&flat, x, w)
    }

    /// (dx, dW, db) out of the flat `[dx | dW | db]` a backward kernel wrote (the parts wanted).
    pub(super) fn split(
        &self,
        flat: &Tensor,
        x: &Tensor,
        w: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let out = Shape::from(w.dims()[0]);
        split3(
            flat,
            [(self.dx, x.shape()), (self.dw, w.shape()), (self.db, &out)],
        )
    }
}

/// Three gradients out of the flat buffer a backward kernel wrote them into, one after another:
/// each part that is on takes the next `shape.elem_count()` values, reshaped; a part that is
/// off takes nothing and is `None`.
pub(super) fn split3(
    flat: &Tensor,
    parts: [(bool, &Shape); 3],
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let mut off = 0;
    let mut take = |(on, shape): (bool, &Shape)| -> candle_core::Result<Option<Tensor>> {
        if !on {
            return Ok(None);
        }
        let n = shape.elem_count();
        let t = flat.narrow(0, off, n)?.reshape(shape)?;
        off += n;
        Ok(Some(t))
    };
    let [a, b, c] = parts;
    Ok((take(a)?, take(b)?, take(c)?))
}

/// The backward kernel over (x, W, g): one flat output `[dx | dW | db]` holding the parts the
/// op wants, in that order.
struct LinearBwdOp(LinearOp);

impl CustomOp3 for LinearBwdOp {
    fn name(&self) -> &'static str {
        "fused-linear-bwd"
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
        let x = slice(sx, lx, "linear input")?;
        let w = slice(sw, lw, "linear weight")?;
        let g = slice(sg, lg, "linear output gradient")?;
        if g.len() != rows * o {
            candle_core::bail!(
                "linear backward: gradient has {} values, expected {}",
                g.len(),
                rows * o
            );
        }
        let out = grads(self.0, x, w, g, rows, i, o);
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// `[dx | dW | db]` (the parts `want` asks for) of y = x Wᵀ + b from the output gradient g.
pub(super) fn grads(
    want: LinearOp,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    rows: usize,
    i: usize,
    o: usize,
) -> Vec<f32> {
    let n = want.dx as usize * rows * i + want.dw as usize * o * i + want.db as usize * o;
    let mut out = vec![0f32; n];
    let mut rest = out.as_mut_slice();
    let gv = View::rows(g, rows, o);
    if want.dx {
        // dx = g W: [rows, out] · [out, in].
        let (dx, r) = rest.split_at_mut(rows * i);
        matmul(dx, i, false, gv, View::rows(w, o, i), threads(false));
        rest = r;
    }
    if want.dw {
        // dW = gᵀ x: [out, rows] · [rows, in], in W's own [out, in] layout.
        let (dw, r) = rest.split_at_mut(o * i);
        matmul(dw, i, false, gv.t(), View::rows(x, rows, i), threads(false));
        rest = r;
    }
    if want.db {
        // db = column sums of g.
        for row in g.chunks(o) {
            for (d, v) in rest.iter_mut().zip(row) {
                *d += v;
            }
        }
    }
    out
}

/// Where [`backward_into`] writes the input gradient: overwritten, or added to what is there
/// (a tensor that feeds several layers, e.g. the hidden state into q, k and v).
pub(crate) enum Dx<'a> {
    Write(&'a mut [f32]),
    Add(&'a mut [f32]),
}

/// The gradients of y = x Wᵀ + b from the output gradient g, into the caller's buffers: dx
/// (written or accumulated by the GEMM's β), dW = gᵀ x and db (overwritten); each only where
/// given; the GEMMs as `gemm` says. Nothing is zero-filled.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_into(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    (rows, i, o): (usize, usize, usize),
    dx: Option<Dx>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    gemm: Gemm,
) {
    let gv = View::rows(g, rows, o);
    match dx {
        Some(Dx::Write(dx)) => matmul(dx, i, false, gv, View::rows(w, o, i), gemm),
        Some(Dx::Add(dx)) => matmul(dx, i, true, gv, View::rows(w, o, i), gemm),
        None => {}
    }
    if let Some(dw) = dw {
        matmul(dw, i, false, gv.t(), View::rows(x, rows, i), gemm);
    }
    if let Some(db) = db {
        db.fill(0.0);
        for row in g.chunks(o) {
            for (d, v) in db.iter_mut().zip(row) {
                *d += v;
            }
        }
    }
}

/// x Wᵀ (+ b) over the last dimension of `xs`. Shapes: `xs` `[.., in]`, `weight` `[out, in]`,
/// `bias` `[out]` → `[.., out]`. The backward computes only the gradients autograd needs: no
/// dW for a frozen weight (LoRA, the eNTK w.r.t. a subset), no dx for a constant input.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let xs = xs.contiguous()?;
    let weight = weight.contiguous()?;
    let op = LinearOp {
        dx: xs.track_op(),
        dw: weight.track_op(),
        db: bias.is_some_and(|b| b.track_op()),
    };
    let tracked = op.dx || op.dw || op.db;
    match bias {
        Some(b) => {
            let b = b.contiguous()?;
            if tracked {
                xs.apply_op3_arc(&weight, &b, std::sync::Arc::new(Box::new(op)))
            } else {
                xs.apply_op3_no_bwd(&weight, &b, &op)
            }
        }
        None if tracked => xs.apply_op2_arc(&weight, std::sync::Arc::new(Box::new(op))),
        None => xs.apply_op2_no_bwd(&weight, &op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::testing::{randn, rel, weighted_grads};
    use candle_core::Var;

    /// f32 GEMM against candle's f32 matmul: different blocking and summation order only.
    const REL_TOL: f32 = 1e-5;

    /// Values and every gradient against `x.matmul(W.t()) + b` composed from candle ops, for
    /// each combination of tracked inputs; untracked inputs must get no gradient; for 123 and 10
    /// rows (GEMM blocking differs).
    #[test]
    fn matches_composed_linear_values_and_gradients() {
        for lead in [[3, 41], [2, 5]] {
            check_against_composed(lead);
        }
    }

    fn check_against_composed(lead: [usize; 2]) {
        let (xt, wt, bt) = (
            randn(&[lead[0], lead[1], 20], 1, 1.0),
            randn(&[13, 20], 2, 1.0),
            randn(&[13], 3, 1.0),
        );
        let g = randn(&[lead[0], lead[1], 13], 4, 1.0);
        for (tx, tw, tb, with_bias) in [
            (true, true, true, true),
            (true, false, false, true),
            (false, true, true, true),
            (true, true, false, false),
            (true, false, false, false),
        ] {
            let var = |t: &Tensor, on: bool| -> (Tensor, Option<Var>) {
                if on {
                    let v = Var::from_tensor(t).unwrap();
                    (v.as_tensor().clone(), Some(v))
                } else {
                    (t.clone(), None)
                }
            };
            let (x, vx) = var(&xt, tx);
            let (w, vw) = var(&wt, tw);
            let (b, vb) = var(&bt, tb);
            let bias = with_bias.then_some(&b);
            let fused = linear(&x, &w, bias).unwrap();
            let mut plain = x.broadcast_matmul(&w.t().unwrap()).unwrap();
            if with_bias {
                plain = plain.broadcast_add(&b).unwrap();
            }
            let case = format!("{lead:?}: x {tx} w {tw} b {tb} bias {with_bias}");
            assert!(rel(&fused, &plain) < REL_TOL, "{case}: values");
            let gf = weighted_grads(&fused, &g);
            let gp = weighted_grads(&plain, &g);
            for (v, name) in [(&vx, "dx"), (&vw, "dW"), (&vb, "db")] {
                if let Some(v) = v {
                    if name == "db" && !with_bias {
                        continue;
                    }
                    let (a, p) = (
                        gf.get(v.as_tensor()).unwrap(),
                        gp.get(v.as_tensor()).unwrap(),
                    );
                    assert!(rel(a, p) < REL_TOL, "{case}: {name}");
                }
            }
            if !tw {
                assert!(gf.get(&w).is_none(), "{case}: a frozen W gets no gradient");
            }
        }
    }
}
