//! The end of every Transformer sub-block as one op: LayerNorm(dropout(y) + residual).
//!
//! Composed, that is a dropout multiply, a residual add and a LayerNorm: three passes and two
//! intermediate tensors forward, and backward three more passes plus a zero-filled gradient
//! accumulator for each intermediate. Here the forward is one pass per row; the backward
//! recomputes the row from y, the residual and the dropout mask, and writes dy, dresidual, dγ
//! and dβ in one more.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::math::simd;
use super::{ln_row_backward, ln_row_stats, slice, with_opt_values, with_values, ROWS_PER_TASK};

/// LayerNorm(y ⊙ keep + res) with γ and β stacked as one `[2h]` input (so that both reach
/// their `Var`s through the stack's backward).
#[derive(Clone)]
struct ResidualNormOp {
    eps: f32,
    /// Dropout keep-mask on y (0 or 1/(1-p)), shape of y.
    keep: Option<Tensor>,
}

/// z = y ⊙ keep + res for one row.
#[inline(always)]
fn residual_row(z: &mut [f32], y: &[f32], res: &[f32], keep: Option<&[f32]>) {
    match keep {
        Some(k) => {
            for (((z, y), r), k) in z.iter_mut().zip(y).zip(res).zip(k) {
                *z = y * k + r;
            }
        }
        None => {
            for ((z, y), r) in z.iter_mut().zip(y).zip(res) {
                *z = y + r;
            }
        }
    }
}

fn check(
    ly: &Layout,
    lr: &Layout,
    lgb: &Layout,
    keep: Option<&Tensor>,
) -> candle_core::Result<usize> {
    let h = lgb.shape().elem_count() / 2;
    if ly.shape() != lr.shape()
        || ly.shape().dims().last() != Some(&h)
        || keep.is_some_and(|k| k.elem_count() != ly.shape().elem_count())
    {
        candle_core::bail!(
            "residual layer norm: y {:?}, residual {:?}, γβ {:?}",
            ly.shape(),
            lr.shape(),
            lgb.shape()
        );
    }
    Ok(h)
}

impl CustomOp3 for ResidualNormOp {
    fn name(&self) -> &'static str {
        "fused-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        sy: &CpuStorage,
        ly: &Layout,
        sr: &CpuStorage,
        lr: &Layout,
        sgb: &CpuStorage,
        lgb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let h = check(ly, lr, lgb, self.keep.as_ref())?;
        let (y, res) = (
            slice(sy, ly, "sub-block output")?,
            slice(sr, lr, "residual")?,
        );
        let (g, b) = slice(sgb, lgb, "layer norm γβ")?.split_at(h);
        let out = with_opt_values(self.keep.as_ref(), "dropout mask", |keep| {
            forward(y, res, keep, g, b, self.eps)
        })?;
        Ok((CpuStorage::F32(out), ly.shape().clone()))
    }

    fn bwd(
        &self,
        y: &Tensor,
        res: &Tensor,
        gb: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = ResidualNormBwdOp {
            fwd: self.clone(),
            grad: grad.contiguous()?,
        };
        let flat = y.apply_op3_no_bwd(res, gb, &op)?;
        let n = y.elem_count();
        let dz = flat.narrow(0, 0, n)?.reshape(y.shape())?;
        let dgb = flat.narrow(0, n, gb.elem_count())?;
        let dy = match &self.keep {
            Some(_) => flat.narrow(0, n + gb.elem_count(), n)?.reshape(y.shape())?,
            None => dz.clone(),
        };
        Ok((Some(dy), Some(dz), Some(dgb)))
    }
}

/// Backward over (y, res, γβ) with the upstream gradient in the op: one flat output
/// `[dz | dγ | dβ | dy]`, where dz is the gradient of the residual sum (= dres) and dy = dz ⊙
/// keep is present only with a dropout mask (else dy = dz).
struct ResidualNormBwdOp {
    fwd: ResidualNormOp,
    grad: Tensor,
}

impl CustomOp3 for ResidualNormBwdOp {
    fn name(&self) -> &'static str {
        "fused-residual-layer-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        sy: &CpuStorage,
        ly: &Layout,
        sr: &CpuStorage,
        lr: &Layout,
        sgb: &CpuStorage,
        lgb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let keep_t = self.fwd.keep.as_ref();
        let h = check(ly, lr, lgb, keep_t)?;
        let (y, res) = (
            slice(sy, ly, "sub-block output")?,
            slice(sr, lr, "residual")?,
        );
        let g = &slice(sgb, lgb, "layer norm γβ")?[..h];
        let n = y.len();
        let total = n + 2 * h + if keep_t.is_some() { n } else { 0 };
        let mut out = vec![0f32; total];
        let (dz, rest) = out.split_at_mut(n);
        let (dgb, dy) = rest.split_at_mut(2 * h);
        let (dg, db) = dgb.split_at_mut(h);
        with_values(&self.grad, "residual layer norm gradient", |up| {
            with_opt_values(keep_t, "dropout mask", |keep| {
                backward(y, res, keep, g, self.fwd.eps, up, dz, dg, db)
            })
        })??;
        let chunk = h * ROWS_PER_TASK;
        if let Some(kt) = keep_t {
            with_values(kt, "dropout mask", |k| {
                dy.par_chunks_mut(chunk)
                    .zip(dz.par_chunks(chunk))
                    .zip(k.par_chunks(chunk))
                    .for_each(|((d, z), k)| {
                        for ((d, z), k) in d.iter_mut().zip(z).zip(k) {
                            *d = z * k;
                        }
                    })
            })?;
        }
        Ok((CpuStorage::F32(out), Shape::from(total)))
    }
}

/// LayerNorm(y ⊙ keep + res) over rows of `h = g.len()` values: the kernel of
/// [`residual_layer_norm`], and of the training path's own backward.
pub(crate) fn forward(
    y: &[f32],
    res: &[f32],
    keep: Option<&[f32]>,
    g: &[f32],
    b: &[f32],
    eps: f32,
) -> Vec<f32> {
    let h = g.len();
    let mut out = vec![0f32; y.len()];
    let chunk = h * ROWS_PER_TASK;
    out.par_chunks_mut(chunk).enumerate().for_each(|(t, oc)| {
        simd(
            #[inline(always)]
            || {
                for (r, orow) in oc.chunks_mut(h).enumerate() {
                    let at = t * chunk + r * h;
                    let k = keep.map(|k| &k[at..at + h]);
                    residual_row(orow, &y[at..at + h], &res[at..at + h], k);
                    let (mean, rstd) = ln_row_stats(orow, eps);
                    for ((o, g), b) in orow.iter_mut().zip(g).zip(b) {
                        *o = (*o - mean) * rstd * g + b;
                    }
                }
            },
        )
    });
    out
}

/// The backward of [`forward`] from the upstream gradient `up`: writes dz (the gradient of
/// the sum, which is the residual's; y's is dz ⊙ keep) and overwrites dγ, dβ (per-task partial
/// sums reduced in a fixed order).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    y: &[f32],
    res: &[f32],
    keep: Option<&[f32]>,
    g: &[f32],
    eps: f32,
    up: &[f32],
    dz: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
) {
    let h = g.len();
    let chunk = h * ROWS_PER_TASK;
    let partials: Vec<Vec<f32>> = dz
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(t, dzc)| {
            simd(
                #[inline(always)]
                || {
                    // [dγ | dβ] partial sums of this task.
                    let mut acc = vec![0f32; 2 * h];
                    let (mut z, mut xhat) = (vec![0f32; h], vec![0f32; h]);
                    for (r, dzr) in dzc.chunks_mut(h).enumerate() {
                        let at = t * chunk + r * h;
                        let k = keep.map(|k| &k[at..at + h]);
                        residual_row(&mut z, &y[at..at + h], &res[at..at + h], k);
                        let (pg, pb) = acc.split_at_mut(h);
                        let u = &up[at..at + h];
                        ln_row_backward(&z, u, g, eps, &mut xhat, dzr, pg, pb);
                    }
                    acc
                },
            )
        })
        .collect();
    dg.fill(0.0);
    db.fill(0.0);
    for p in &partials {
        let (pg, pb) = p.split_at(h);
        dg.iter_mut().zip(pg).for_each(|(d, v)| *d += v);
        db.iter_mut().zip(pb).for_each(|(d, v)| *d += v);
    }
}

/// LayerNorm(y ⊙ keep + residual) over the last dimension. Shapes: `y`, `residual` and `keep`
/// (optional dropout mask, 0 or 1/(1-p)) `[.., h]`; `gamma`, `beta` `[h]`.
pub fn residual_layer_norm(
    y: &Tensor,
    residual: &Tensor,
    keep: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let op = ResidualNormOp {
        eps: eps as f32,
        keep: keep.map(|k| k.contiguous()).transpose()?,
    };
    let (y, residual) = (y.contiguous()?, residual.contiguous()?);
    let gb = Tensor::cat(&[gamma, beta], 0)?;
    if y.track_op() || residual.track_op() || gb.track_op() {
        y.apply_op3_arc(&residual, &gb, std::sync::Arc::new(Box::new(op)))
    } else {
        y.apply_op3_no_bwd(&residual, &gb, &op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::testing::{randn, rel, weighted_grads};
    use crate::model::ops::residual_layer_norm_composed;
    use candle_core::{DType, Var};

    /// f32 kernels against f32 composed ops: different summation orders only.
    const REL_TOL: f32 = 1e-5;

    /// Values and dy, dres, dγ, dβ against dropout-multiply, add and LayerNorm composed from
    /// candle ops; more rows than one task, with and without a dropout mask.
    #[test]
    fn matches_composed_values_and_gradients() {
        let shape = [3, 50, 24];
        for dropout in [false, true] {
            let y = Var::from_tensor(&randn(&shape, 1, 2.0)).unwrap();
            let r = Var::from_tensor(&randn(&shape, 2, 1.0)).unwrap();
            let g = Var::from_tensor(&(randn(&[24], 3, 0.2) + 1.0).unwrap()).unwrap();
            let b = Var::from_tensor(&randn(&[24], 4, 0.1)).unwrap();
            let w = randn(&shape, 5, 1.0);
            let keep = dropout.then(|| {
                let u = randn(&shape, 6, 1.0);
                (u.ge(-1.0).unwrap().to_dtype(DType::F32).unwrap() * 1.25).unwrap()
            });
            let args = (y.as_tensor(), r.as_tensor(), g.as_tensor(), b.as_tensor());
            let fused =
                residual_layer_norm(args.0, args.1, keep.as_ref(), args.2, args.3, 1e-5).unwrap();
            let plain =
                residual_layer_norm_composed(args.0, args.1, keep.as_ref(), args.2, args.3, 1e-5)
                    .unwrap();
            assert!(rel(&fused, &plain) < REL_TOL, "dropout {dropout}: values");
            let gf = weighted_grads(&fused, &w);
            let gp = weighted_grads(&plain, &w);
            for (v, name) in [(&y, "dy"), (&r, "dres"), (&g, "dgamma"), (&b, "dbeta")] {
                let (a, p) = (
                    gf.get(v.as_tensor()).unwrap(),
                    gp.get(v.as_tensor()).unwrap(),
                );
                assert!(
                    rel(a, p) < REL_TOL,
                    "dropout {dropout}: {name} rel {}",
                    rel(a, p)
                );
            }
        }
    }
}
