//! Multi-head scaled dot-product attention as one op over the projected q, k, v, with a
//! hand-written backward.
//!
//! Composed from candle ops, attention splits q, k, v into heads (reshape, transpose and a
//! contiguous copy each), runs two batched matmuls with a softmax and a dropout between, and
//! merges the heads back (another copy); the backward repeats every copy and accumulates each
//! intermediate's gradient into a zero-filled buffer. Here each batch element is one rayon task
//! that reads its heads as strided views of q, k, v, keeps the `lq × l` score matrix of one
//! head in a scratch buffer, and writes the context straight into the `[b, lq, h]` output. The
//! backward recomputes the probabilities (two small GEMMs per head, cheaper than storing
//! `b · heads · lq · l` values and accumulating their gradient) and writes dq, dk, dv the same
//! way.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::math::{dot, simd};
use super::matmul::{matmul, threads, Gemm, Precision, View};
use super::{biased_softmax_row, slice, with_opt_values, with_values};

/// Shapes and constants of one attention call.
#[derive(Clone)]
struct AttentionOp {
    heads: usize,
    scale: f32,
    /// Additive key mask, `b · l` values.
    mask: Tensor,
    /// MPNet's relative-position bias, `heads · lq · l` values shared by the batch (a constant
    /// here: when it needs a gradient, `ops::attention` composes instead).
    position: Option<Tensor>,
    /// Dropout keep-mask on the probabilities (0 or 1/(1-p)), `b · heads · lq · l` values.
    keep: Option<Tensor>,
}

/// (b, lq, l, h) from q `[b, lq, h]`, k and v `[b, l, h]`.
fn dims(lq: &Layout, lk: &Layout, lv: &Layout, heads: usize) -> candle_core::Result<[usize; 4]> {
    let (b, nq, h) = lq.shape().dims3()?;
    let (bk, l, hk) = lk.shape().dims3()?;
    if (bk, hk) != (b, h) || lv.shape() != lk.shape() || heads == 0 || h % heads != 0 {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} with {heads} heads",
            lq.shape(),
            lk.shape(),
            lv.shape()
        );
    }
    Ok([b, nq, l, h])
}

/// One head's probabilities into `p` (`nq × l`): softmax(scale · q kᵀ + bias + mask) per row;
/// `bias` is the head's `nq × l` position bias, if any.
#[inline(always)]
fn probabilities(
    p: &mut [f32],
    (q, k): (View, View),
    scale: f32,
    bias: Option<&[f32]>,
    mask: &[f32],
    g: Gemm,
) {
    let l = mask.len();
    matmul(p, l, false, q, k.t(), g);
    for (r, row) in p.chunks_mut(l).enumerate() {
        biased_softmax_row(row, scale, bias.map(|b| &b[r * l..(r + 1) * l]), mask);
    }
}

/// The head's slice of the position bias `[heads, nq, l]`.
fn head_bias(position: Option<&[f32]>, head: usize, n: usize) -> Option<&[f32]> {
    position.map(|p| &p[head * n..(head + 1) * n])
}

impl AttentionOp {
    fn check_constants(&self, [b, nq, l, _]: [usize; 4]) -> candle_core::Result<()> {
        if self.mask.elem_count() != b * l {
            candle_core::bail!(
                "attention mask has {} values, expected {}",
                self.mask.elem_count(),
                b * l
            );
        }
        if let Some(k) = &self.keep {
            if k.elem_count() != b * self.heads * nq * l {
                candle_core::bail!("attention dropout mask has {} values", k.elem_count());
            }
        }
        if let Some(p) = &self.position {
            if p.elem_count() != self.heads * nq * l {
                candle_core::bail!("attention position bias has {} values", p.elem_count());
            }
        }
        Ok(())
    }
}

/// Multi-head attention over row-major `q` `[b, nq, h]`, `k`, `v` `[b, l, h]` with the additive
/// `mask` `[b, l]`, the position bias `position` `[heads, nq, l]` and the probabilities' dropout
/// mask `keep` `[b, heads, nq, l]`: the context `[b, nq, h]`, its four GEMMs per head at
/// `precision`. The kernel of [`attention`], and of the training path's own backward.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    position: Option<&[f32]>,
    keep_vals: Option<&[f32]>,
    [_, nq, l, h]: [usize; 4],
    heads: usize,
    scale: f32,
    precision: Precision,
) -> Vec<f32> {
    let hd = h / heads;
    let g = threads(true).at(precision);
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(nq * h).enumerate().for_each(|(bi, ob)| {
        simd(
            #[inline(always)]
            || {
                let mut p = vec![0f32; nq * l];
                let (qb, kb, vb) = (&q[bi * nq * h..], &k[bi * l * h..], &v[bi * l * h..]);
                for head in 0..heads {
                    let c = head * hd;
                    let qh = View::new(&qb[c..], nq, hd, h, 1);
                    let kh = View::new(&kb[c..], l, hd, h, 1);
                    let bias = head_bias(position, head, nq * l);
                    let m = &mask[bi * l..(bi + 1) * l];
                    probabilities(&mut p, (qh, kh), scale, bias, m, g);
                    if let Some(keep) = keep_vals {
                        let kp = &keep[(bi * heads + head) * nq * l..][..nq * l];
                        p.iter_mut().zip(kp).for_each(|(a, m)| *a *= m);
                    }
                    let vh = View::new(&vb[c..], l, hd, h, 1);
                    matmul(&mut ob[c..], h, false, View::rows(&p, nq, l), vh, g);
                }
            },
        )
    });
    out
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims(lq, lk, lv, self.heads)?;
        self.check_constants(d)?;
        let (q, k, v) = (
            slice(sq, lq, "q")?,
            slice(sk, lk, "k")?,
            slice(sv, lv, "v")?,
        );
        let out = with_values(&self.mask, "attention mask", |mask| {
            with_opt_values(self.position.as_ref(), "attention position bias", |pos| {
                with_opt_values(self.keep.as_ref(), "attention dropout mask", |keep| {
                    forward(
                        q,
                        k,
                        v,
                        mask,
                        pos,
                        keep,
                        d,
                        self.heads,
                        self.scale,
                        Precision::Fp32,
                    )
                })
            })
        })???;
        Ok((CpuStorage::F32(out), lq.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = AttentionBwdOp {
            fwd: self.clone(),
            grad: grad.contiguous()?,
        };
        let flat = q.apply_op3_no_bwd(k, v, &op)?;
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let dq = flat.narrow(0, 0, nq)?.reshape(q.shape())?;
        let dk = flat.narrow(0, nq, nk)?.reshape(k.shape())?;
        let dv = flat.narrow(0, nq + nk, nk)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// The backward kernel over (q, k, v) with the upstream gradient held in the op: one flat
/// output `[dq | dk | dv]`.
struct AttentionBwdOp {
    fwd: AttentionOp,
    grad: Tensor,
}

impl CustomOp3 for AttentionBwdOp {
    fn name(&self) -> &'static str {
        "fused-attention-bwd"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let f = &self.fwd;
        let d = dims(lq, lk, lv, f.heads)?;
        f.check_constants(d)?;
        let (q, k, v) = (
            slice(sq, lq, "q")?,
            slice(sk, lk, "k")?,
            slice(sv, lv, "v")?,
        );
        if self.grad.elem_count() != q.len() {
            candle_core::bail!(
                "attention backward: gradient has {} values",
                self.grad.elem_count()
            );
        }
        let mut out = vec![0f32; q.len() + 2 * k.len()];
        let (dq, rest) = out.split_at_mut(q.len());
        let (dk, dv) = rest.split_at_mut(k.len());
        with_values(&f.mask, "attention mask", |mask| {
            with_opt_values(f.position.as_ref(), "attention position bias", |pos| {
                with_opt_values(f.keep.as_ref(), "attention dropout mask", |keep| {
                    with_values(&self.grad, "attention gradient", |g| {
                        let (inputs, grads) = ([q, k, v, g], [dq, dk, dv]);
                        let (heads, scale, fp32) = (f.heads, f.scale, Precision::Fp32);
                        backward(inputs, mask, pos, keep, d, heads, scale, grads, None, fp32)
                    })
                })
            })
        })????;
        Ok((CpuStorage::F32(out), Shape::from(q.len() + 2 * k.len())))
    }
}

/// The backward of [`forward`]: from `[q, k, v, g]` (g the context's gradient) writes
/// `[dq, dk, dv]`, and with `dposition` adds the position bias's gradient `[heads, nq, l]`
/// (summed over the batch) to it; the probabilities are recomputed per head, never stored.
/// Every GEMM at `precision`, the forward's included.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    [q, k, v, g]: [&[f32]; 4],
    mask: &[f32],
    position: Option<&[f32]>,
    keep_vals: Option<&[f32]>,
    [b, nq, l, h]: [usize; 4],
    heads: usize,
    scale: f32,
    [dq, dk, dv]: [&mut [f32]; 3],
    dposition: Option<&mut [f32]>,
    precision: Precision,
) {
    let hd = h / heads;
    let gemm = threads(true).at(precision);
    // Per batch element, the score gradients the position bias collects (summed below in batch
    // order, so the result does not depend on the thread count).
    let want = dposition.is_some();
    let stride = if want { heads * nq * l } else { 1 };
    let mut partial = vec![0f32; b * stride];
    dq.par_chunks_mut(nq * h)
        .zip(dk.par_chunks_mut(l * h))
        .zip(dv.par_chunks_mut(l * h))
        .zip(partial.par_chunks_mut(stride))
        .enumerate()
        .for_each(|(bi, (((dqb, dkb), dvb), dpb))| {
            let mut dpb = want.then_some(dpb);
            simd(
                #[inline(always)]
                || {
                    let mut p = vec![0f32; nq * l];
                    let mut pd = vec![0f32; nq * l];
                    let mut dp = vec![0f32; nq * l];
                    let (qb, kb, vb) = (&q[bi * nq * h..], &k[bi * l * h..], &v[bi * l * h..]);
                    let gb = &g[bi * nq * h..];
                    for head in 0..heads {
                        let c = head * hd;
                        let qh = View::new(&qb[c..], nq, hd, h, 1);
                        let kh = View::new(&kb[c..], l, hd, h, 1);
                        let vh = View::new(&vb[c..], l, hd, h, 1);
                        let gh = View::new(&gb[c..], nq, hd, h, 1);
                        let bias = head_bias(position, head, nq * l);
                        let m = &mask[bi * l..(bi + 1) * l];
                        probabilities(&mut p, (qh, kh), scale, bias, m, gemm);
                        let kp =
                            keep_vals.map(|keep| &keep[(bi * heads + head) * nq * l..][..nq * l]);
                        let used: &[f32] = match kp {
                            Some(kp) => {
                                pd.iter_mut()
                                    .zip(&p)
                                    .zip(kp)
                                    .for_each(|((d, a), m)| *d = a * m);
                                &pd
                            }
                            None => &p,
                        };
                        let pv = View::rows(used, nq, l);
                        matmul(&mut dvb[c..], h, false, pv.t(), gh, gemm);
                        matmul(&mut dp, l, false, gh, vh.t(), gemm);
                        if let Some(kp) = kp {
                            dp.iter_mut().zip(kp).for_each(|(d, m)| *d *= m);
                        }
                        match dpb.as_deref_mut() {
                            // d(score) = p ⊙ (dp − Σ p dp) is the position bias's gradient;
                            // scaled, that of q kᵀ.
                            Some(dpb) => {
                                let dpos = &mut dpb[head * nq * l..(head + 1) * nq * l];
                                for ((dr, pr), gr) in
                                    dp.chunks_mut(l).zip(p.chunks(l)).zip(dpos.chunks_mut(l))
                                {
                                    let s = dot(dr, pr);
                                    for ((a, b), d) in dr.iter_mut().zip(pr).zip(gr) {
                                        let t = b * (*a - s);
                                        *d = t;
                                        *a = scale * t;
                                    }
                                }
                            }
                            None => {
                                for (dr, pr) in dp.chunks_mut(l).zip(p.chunks(l)) {
                                    let s = dot(dr, pr);
                                    for (a, b) in dr.iter_mut().zip(pr) {
                                        *a = scale * b * (*a - s);
                                    }
                                }
                            }
                        }
                        let ds = View::rows(&dp, nq, l);
                        matmul(&mut dqb[c..], h, false, ds, kh, gemm);
                        matmul(&mut dkb[c..], h, false, ds.t(), qh, gemm);
                    }
                },
            )
        });
    if let Some(dpos) = dposition {
        for part in partial.chunks(stride) {
            dpos.iter_mut().zip(part).for_each(|(d, p)| *d += p);
        }
    }
}

/// Multi-head attention of the queries `q` `[b, lq, h]` over keys `k` and values `v`
/// `[b, l, h]`: per head, softmax(scale · q kᵀ + position + mask) (⊙ keep) v, heads
/// concatenated → `[b, lq, h]`. `mask` is additive over keys (`b · l` values, e.g.
/// `[b, 1, 1, l]`); `position` MPNet's relative-position bias `[heads, lq, l]`; `keep` is an
/// optional dropout mask on the probabilities, `[b, heads, lq, l]`, already scaled by 1/(1-p).
/// All three are constants (no gradient).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    position: Option<&Tensor>,
    keep: Option<&Tensor>,
    heads: usize,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let op = AttentionOp {
        heads,
        scale: scale as f32,
        mask: mask.contiguous()?,
        position: position.map(|t| t.contiguous()).transpose()?,
        keep: keep.map(|t| t.contiguous()).transpose()?,
    };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    if q.track_op() || k.track_op() || v.track_op() {
        q.apply_op3_arc(&k, &v, std::sync::Arc::new(Box::new(op)))
    } else {
        q.apply_op3_no_bwd(&k, &v, &op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::testing::{randn, rel, weighted_grads};
    use crate::model::ops::attention_composed;
    use candle_core::{Device, Var};

    /// f32 kernels against f32 composed ops: different summation orders only.
    const REL_TOL: f32 = 1e-5;

    /// Values and dq, dk, dv against the composed reference: all queries and the first one
    /// only, with padded keys, with and without a dropout mask, with and without a position
    /// bias.
    #[test]
    fn matches_composed_attention_values_and_gradients() {
        let (b, l, heads, hd) = (3, 9, 4, 5);
        let h = heads * hd;
        let mask = padding_mask(b, l);
        for lq in [l, 1] {
            for dropout in [false, true] {
                for with_position in [false, true] {
                    let q = Var::from_tensor(&randn(&[b, lq, h], 1, 1.0)).unwrap();
                    let k = Var::from_tensor(&randn(&[b, l, h], 2, 1.0)).unwrap();
                    let v = Var::from_tensor(&randn(&[b, l, h], 3, 1.0)).unwrap();
                    let g = randn(&[b, lq, h], 4, 1.0);
                    let keep = dropout.then(|| keep_mask(&[b, heads, lq, l]));
                    let position = with_position.then(|| randn(&[heads, lq, l], 6, 1.0));
                    let args = (q.as_tensor(), k.as_tensor(), v.as_tensor());
                    let (pos, keep) = (position.as_ref(), keep.as_ref());
                    let fused =
                        attention(args.0, args.1, args.2, &mask, pos, keep, heads, 0.4).unwrap();
                    let plain =
                        attention_composed(args.0, args.1, args.2, &mask, pos, keep, heads, 0.4)
                            .unwrap();
                    let case = format!("lq {lq}, dropout {dropout}, position {with_position}");
                    assert!(rel(&fused, &plain) < REL_TOL, "{case}: values");
                    let gf = weighted_grads(&fused, &g);
                    let gp = weighted_grads(&plain, &g);
                    for (t, name) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
                        let (a, p) = (
                            gf.get(t.as_tensor()).unwrap(),
                            gp.get(t.as_tensor()).unwrap(),
                        );
                        assert!(rel(a, p) < REL_TOL, "{case}: {name} rel {}", rel(a, p));
                    }
                }
            }
        }
    }

    /// The slice kernel's position-bias gradient (summed over the batch) against autograd
    /// through the composed op, with dropout, for all queries and the first one.
    #[test]
    fn position_bias_gradient_matches_composed() {
        let (b, l, heads, hd) = (3, 7, 2, 4);
        let h = heads * hd;
        let mask = padding_mask(b, l);
        for lq in [l, 1] {
            let q = randn(&[b, lq, h], 11, 1.0);
            let k = randn(&[b, l, h], 12, 1.0);
            let v = randn(&[b, l, h], 13, 1.0);
            let g = randn(&[b, lq, h], 14, 1.0);
            let keep = keep_mask(&[b, heads, lq, l]);
            let position = Var::from_tensor(&randn(&[heads, lq, l], 15, 1.0)).unwrap();
            let plain = attention_composed(
                &q,
                &k,
                &v,
                &mask,
                Some(position.as_tensor()),
                Some(&keep),
                heads,
                0.3,
            )
            .unwrap();
            let want = weighted_grads(&plain, &g);
            let want = want.get(position.as_tensor()).unwrap();
            let vals = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (qv, kv, vv, gv) = (vals(&q), vals(&k), vals(&v), vals(&g));
            let (mut dq, mut dk, mut dv) = (
                vec![0f32; qv.len()],
                vec![0f32; kv.len()],
                vec![0f32; kv.len()],
            );
            let mut dpos = vec![0f32; heads * lq * l];
            backward(
                [&qv, &kv, &vv, &gv],
                &vals(&mask),
                Some(&vals(position.as_tensor())),
                Some(&vals(&keep)),
                [b, lq, l, h],
                heads,
                0.3,
                [&mut dq, &mut dk, &mut dv],
                Some(&mut dpos),
                Precision::Fp32,
            );
            let got = Tensor::from_vec(dpos, (heads, lq, l), &Device::Cpu).unwrap();
            assert!(
                rel(&got, want) < REL_TOL,
                "lq {lq}: rel {}",
                rel(&got, want)
            );
        }
    }

    /// Batch element 1 has its last 3 keys padded, element 2 its last one.
    fn padding_mask(b: usize, l: usize) -> Tensor {
        let mut m = vec![0f32; b * l];
        for j in l - 3..l {
            m[l + j] = f32::MIN;
        }
        m[2 * l + l - 1] = f32::MIN;
        Tensor::from_vec(m, (b, 1, 1, l), &Device::Cpu).unwrap()
    }

    /// A dropout keep-mask (0 or 1.25, about 16% zeros).
    fn keep_mask(shape: &[usize]) -> Tensor {
        let u = randn(shape, 5, 1.0);
        (u.ge(-1.0)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            * 1.25)
            .unwrap()
    }
}
