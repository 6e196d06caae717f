//! Fused CPU kernels with hand-written backward passes.
//!
//! Composed from candle's ops, every elementwise step costs a full pass over memory, a fresh
//! buffer and a thread barrier, and its backward adds the step's gradient into a freshly zeroed
//! accumulator. These kernels do one pass per row block (rayon) and their backward is one more:
//!
//! - this module: LayerNorm, the softmax row kernel of the attention, bias + GELU;
//! - [`linear()`]: y = x Wᵀ + b with the bias as the GEMM's initial value and a backward that
//!   computes only the gradients autograd tracks (no dW for frozen weights);
//! - [`linear_gelu`]: the FFN's first layer and its GELU as one op (the pre-activation kept
//!   inside, never an autograd node);
//! - [`lora_linear`]: a linear layer and its LoRA adapter as one op (dx in one buffer, dA/dB from
//!   the rank-r products);
//! - [`attention()`]: multi-head attention over strided views of q, k, v (no head-split copies),
//!   probabilities recomputed in the backward;
//! - [`residual_layer_norm`]: LayerNorm(dropout(y) + residual), the end of every sub-block;
//! - `math`: vectorised `exp`/`erf` and the runtime dispatch to AVX-512/AVX2 (`simd`);
//! - `matmul`: a bounds-checked front end to the `gemm` crate's strided GEMM.
//!
//! Each is an exact re-implementation of a composed version in [`crate::model::ops`], which
//! stays the reference: the tests compare values and gradients of both. Non-CPU devices and
//! non-f32 tensors use the composed ops.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

pub(crate) mod attention;
mod ffn;
pub(crate) mod linear;
pub(crate) mod lora;
pub(crate) mod math;
pub(crate) mod matmul;
pub(crate) mod residual;

pub use attention::attention;
pub use ffn::linear_gelu;
pub use linear::linear;
pub use lora::lora_linear;
pub use matmul::Precision;
pub use residual::residual_layer_norm;

/// Rows per rayon task: large enough to amortise scheduling, small enough to balance 2+ cores.
const ROWS_PER_TASK: usize = 64;

pub(crate) fn slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 only");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: contiguous input only"),
    }
}

/// Runs `f` on the values of a contiguous f32 CPU tensor (a constant an op holds in its struct:
/// a mask, a dropout mask, an upstream gradient).
pub(crate) fn with_values<R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        candle_core::bail!("{what}: not on the CPU");
    };
    Ok(f(slice(s, l, what)?))
}

/// [`with_values`] for an optional tensor.
pub(crate) fn with_opt_values<R>(
    t: Option<&Tensor>,
    what: &str,
    f: impl FnOnce(Option<&[f32]>) -> R,
) -> candle_core::Result<R> {
    match t {
        Some(t) => with_values(t, what, |v| f(Some(v))),
        None => Ok(f(None)),
    }
}

/// Whether the fused kernels apply to `t` (f32 on the CPU).
pub fn applies(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

// ---------------------------------------------------------------- LayerNorm

struct LayerNormOp {
    eps: f32,
}

#[inline(always)]
fn ln_row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let h = x.len() as f32;
    let mean = math::sum(x) / h;
    let var = math::sum_sq_dev(x, mean) / h;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "layer norm input")?;
        let g = slice(s2, l2, "layer norm weight")?;
        let b = slice(s3, l3, "layer norm bias")?;
        let y = layer_norm_forward(x, g, b, self.eps);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.elem_count();
        let n = x.elem_count();
        let x = x.contiguous()?;
        let grad = grad.contiguous()?;
        let out = x.apply_op3_no_bwd(gamma, &grad, &LayerNormBwdOp { eps: self.eps })?;
        let dx = out.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgamma = out.narrow(0, n, h)?;
        let dbeta = out.narrow(0, n + h, h)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// LayerNorm backward of one row: input `x`, upstream `dy`, weight `g`; writes `dx` and adds
/// this row's terms to `dg` and `db`. `xhat` is scratch of the row's length.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn ln_row_backward(
    x: &[f32],
    dy: &[f32],
    g: &[f32],
    eps: f32,
    xhat: &mut [f32],
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
) {
    let h = x.len();
    let (mean, rstd) = ln_row_stats(x, eps);
    for i in 0..h {
        xhat[i] = (x[i] - mean) * rstd;
        dg[i] += dy[i] * xhat[i];
        db[i] += dy[i];
    }
    // Σ dy·γ and Σ dy·γ·x̂, with dx̂ = dy·γ written into dx first as scratch.
    for i in 0..h {
        dx[i] = dy[i] * g[i];
    }
    let (s1, s2) = (math::sum(dx), math::dot(dx, xhat));
    let (m1, m2) = (s1 / h as f32, s2 / h as f32);
    for i in 0..h {
        dx[i] = rstd * (dy[i] * g[i] - m1 - xhat[i] * m2);
    }
}

/// Backward of LayerNorm: one flat output `[dx (n) | dγ (h) | dβ (h)]`.
struct LayerNormBwdOp {
    eps: f32,
}

impl CustomOp3 for LayerNormBwdOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "layer norm input")?;
        let g = slice(s2, l2, "layer norm weight")?;
        let dy = slice(s3, l3, "layer norm grad")?;
        let (h, n) = (g.len(), x.len());
        let mut out = vec![0f32; n + 2 * h];
        let (dx, rest) = out.split_at_mut(n);
        let (dgamma, dbeta) = rest.split_at_mut(h);
        layer_norm_backward(x, g, dy, self.eps, dx, dgamma, dbeta);
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * h)))
    }
}

/// LayerNorm over rows of `h = g.len()` values (the kernel of [`layer_norm`]).
pub(crate) fn layer_norm_forward(x: &[f32], g: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let h = g.len();
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(h * ROWS_PER_TASK)
        .zip(x.par_chunks(h * ROWS_PER_TASK))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_mut(h).zip(xc.chunks(h)) {
                let (mean, rstd) = ln_row_stats(xr, eps);
                for i in 0..h {
                    yr[i] = (xr[i] - mean) * rstd * g[i] + b[i];
                }
            }
        });
    y
}

/// The backward of [`layer_norm_forward`]: writes dx and overwrites dγ, dβ (per-task partial
/// sums reduced in a fixed order).
pub(crate) fn layer_norm_backward(
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let h = g.len();
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(h * ROWS_PER_TASK)
        .zip(x.par_chunks(h * ROWS_PER_TASK))
        .zip(dy.par_chunks(h * ROWS_PER_TASK))
        .map(|((dxc, xc), dyc)| {
            let mut dg = vec![0f32; h];
            let mut db = vec![0f32; h];
            let mut xhat = vec![0f32; h];
            for ((dxr, xr), dyr) in dxc.chunks_mut(h).zip(xc.chunks(h)).zip(dyc.chunks(h)) {
                ln_row_backward(xr, dyr, g, eps, &mut xhat, dxr, &mut dg, &mut db);
            }
            (dg, db)
        })
        .collect();
    dgamma.fill(0.0);
    dbeta.fill(0.0);
    for (dg, db) in &partials {
        for i in 0..h {
            dgamma[i] += dg[i];
            dbeta[i] += db[i];
        }
    }
}

/// LayerNorm over the last dimension (fused on CPU; see [`crate::model::ops::layer_norm`]).
pub(crate) fn layer_norm(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let xs = xs.contiguous()?;
    xs.apply_op3_arc(
        gamma,
        beta,
        std::sync::Arc::new(Box::new(LayerNormOp { eps: eps as f32 })),
    )
}

// ------------------------------------------------------- masked, scaled softmax

/// In place: row ← softmax(scale · row + bias + mask), summed in that order (as transformers'
/// MPNet adds its position bias, then the mask).
#[inline(always)]
pub(crate) fn biased_softmax_row(row: &mut [f32], scale: f32, bias: Option<&[f32]>, mask: &[f32]) {
    match bias {
        Some(bias) => {
            for ((v, b), m) in row.iter_mut().zip(bias).zip(mask) {
                *v = *v * scale + b + m;
            }
        }
        None => {
            for (v, m) in row.iter_mut().zip(mask) {
                *v = *v * scale + m;
            }
        }
    }
    let max = math::max(row);
    for v in row.iter_mut() {
        *v = math::exp(*v - max);
    }
    let inv = 1.0 / math::sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

// ---------------------------------------------------------------- bias + GELU

const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + math::erf(x * INV_SQRT2))
}

#[inline(always)]
pub(crate) fn gelu_grad(x: f32) -> f32 {
    0.5 * (1.0 + math::erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * math::exp(-0.5 * x * x)
}

/// (gelu(x), gelu′(x)) with one erf: the values of [`gelu`] and [`gelu_grad`], bit for bit.
#[inline(always)]
pub(crate) fn gelu_and_grad(x: f32) -> (f32, f32) {
    let e = 1.0 + math::erf(x * INV_SQRT2);
    (
        0.5 * x * e,
        0.5 * e + x * INV_SQRT_2PI * math::exp(-0.5 * x * x),
    )
}

/// gelu_erf(x + bias) over the last dim; `bias` `[f]`.
struct BiasGeluOp;

impl CustomOp2 for BiasGeluOp {
    fn name(&self) -> &'static str {
        "fused-bias-gelu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "gelu input")?;
        let b = slice(s2, l2, "gelu bias")?;
        let f = b.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(f * ROWS_PER_TASK)
            .zip(x.par_chunks(f * ROWS_PER_TASK))
            .for_each(|(yc, xc)| {
                math::simd(
                    #[inline(always)]
                    || {
                        for (yr, xr) in yc.chunks_mut(f).zip(xc.chunks(f)) {
                            for ((y, x), b) in yr.iter_mut().zip(xr).zip(b) {
                                *y = gelu(x + b);
                            }
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let f = bias.elem_count();
        let x = x.contiguous()?;
        let grad = grad.contiguous()?;
        let out = x.apply_op3_no_bwd(bias, &grad, &BiasGeluBwdOp)?;
        let dx = out.narrow(0, 0, n)?.reshape(x.shape())?;
        let db = out.narrow(0, n, f)?;
        Ok((Some(dx), Some(db)))
    }
}

/// Backward of bias+GELU: one flat output `[dx (n) | dbias (f)]`.
struct BiasGeluBwdOp;

impl CustomOp3 for BiasGeluBwdOp {
    fn name(&self) -> &'static str {
        "fused-bias-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "gelu input")?;
        let b = slice(s2, l2, "gelu bias")?;
        let g = slice(s3, l3, "gelu grad")?;
        let f = b.len();
        let n = x.len();
        let mut out = vec![0f32; n + f];
        let (dx, dbias) = out.split_at_mut(n);
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(f * ROWS_PER_TASK)
            .zip(x.par_chunks(f * ROWS_PER_TASK))
            .zip(g.par_chunks(f * ROWS_PER_TASK))
            .map(|((dc, xc), gc)| {
                let mut db = vec![0f32; f];
                math::simd(
                    #[inline(always)]
                    || {
                        for ((dr, xr), gr) in dc.chunks_mut(f).zip(xc.chunks(f)).zip(gc.chunks(f)) {
                            for ((d, s), (x, (g, b))) in dr
                                .iter_mut()
                                .zip(&mut db)
                                .zip(xr.iter().zip(gr.iter().zip(b)))
                            {
                                *d = g * gelu_grad(x + b);
                                *s += *d;
                            }
                        }
                    },
                );
                db
            })
            .collect();
        for db in &partials {
            for i in 0..f {
                dbias[i] += db[i];
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(n + f)))
    }
}

/// gelu_erf(xs + bias) over the last dim. Shapes: `xs` `[.., f]`, `bias` `[f]`.
pub(crate) fn bias_gelu(xs: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let xs = xs.contiguous()?;
    xs.apply_op2_arc(bias, std::sync::Arc::new(Box::new(BiasGeluOp)))
}

/// Helpers of the kernels' tests.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor};

    use crate::rng::{normal_vec, Streams};

    /// A tensor of N(0, std²) values drawn from `seed`.
    pub(crate) fn randn(shape: &[usize], seed: u64, std: f32) -> Tensor {
        let n = shape.iter().product();
        let v = normal_vec(&mut Streams::new(seed).get("t"), n, 0.0, std);
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Gradients of Σ (t ⊙ w): a fixed random cotangent for comparing backward passes.
    pub(crate) fn weighted_grads(t: &Tensor, w: &Tensor) -> candle_core::backprop::GradStore {
        t.mul(w).unwrap().sum_all().unwrap().backward().unwrap()
    }

    /// Relative L2 distance ‖a − b‖ / ‖b‖.
    pub(crate) fn rel(a: &Tensor, b: &Tensor) -> f32 {
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let num: f32 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt();
        let den: f32 = b.iter().map(|y| y * y).sum::<f32>().sqrt();
        num / den.max(1e-12)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{randn, rel, weighted_grads};
    use super::*;
    use crate::model::ops;
    use candle_core::Var;

    /// f32 kernels against f32 composed ops: different summation orders only.
    const VALUE_TOL: f32 = 1e-5;
    /// Relative L2 error of gradients (f32 on both sides).
    const GRAD_REL_TOL: f32 = 1e-5;

    fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        let r = rel(a, b);
        assert!(r <= tol, "{what}: relative error {r}");
    }

    #[test]
    fn layer_norm_matches_composed_forward_and_backward() {
        let x = Var::from_tensor(&randn(&[3, 70, 48], 1, 2.0)).unwrap();
        let g = Var::from_tensor(&(randn(&[48], 2, 0.2) + 1.0).unwrap()).unwrap();
        let b = Var::from_tensor(&randn(&[48], 3, 0.1)).unwrap();
        let w = randn(&[3, 70, 48], 4, 1.0);
        let fused = layer_norm(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5).unwrap();
        let composed =
            ops::layer_norm_composed(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5).unwrap();
        close(&fused, &composed, VALUE_TOL, "layer norm values");
        let gf = weighted_grads(&fused, &w);
        let gc = weighted_grads(&composed, &w);
        for (v, name) in [(&x, "dx"), (&g, "dgamma"), (&b, "dbeta")] {
            close(
                gf.get(v.as_tensor()).unwrap(),
                gc.get(v.as_tensor()).unwrap(),
                GRAD_REL_TOL,
                name,
            );
        }
    }

    #[test]
    fn bias_gelu_matches_composed_forward_and_backward() {
        let x = Var::from_tensor(&randn(&[130, 37], 7, 2.0)).unwrap();
        let b = Var::from_tensor(&randn(&[37], 8, 0.5)).unwrap();
        let w = randn(&[130, 37], 9, 1.0);
        let fused = bias_gelu(x.as_tensor(), b.as_tensor()).unwrap();
        let composed = x
            .as_tensor()
            .broadcast_add(b.as_tensor())
            .unwrap()
            .gelu_erf()
            .unwrap();
        close(&fused, &composed, VALUE_TOL, "gelu values");
        let gf = weighted_grads(&fused, &w);
        let gc = weighted_grads(&composed, &w);
        // candle's composed GELU backward uses 1/√(2π) rounded to 6 digits (0.398942).
        close(
            gf.get(x.as_tensor()).unwrap(),
            gc.get(x.as_tensor()).unwrap(),
            1e-5,
            "dx",
        );
        close(
            gf.get(b.as_tensor()).unwrap(),
            gc.get(b.as_tensor()).unwrap(),
            1e-5,
            "dbias",
        );
    }
}
