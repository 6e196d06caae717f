//! Differentiable building blocks composed from candle ops that have a backward.
//!
//! candle-nn 0.11's fused `LayerNorm` and `softmax_last_dim` have no backward: a model built from
//! them trains only its head, silently. Everything here is composed from ops whose gradients
//! candle implements, and the gradient tests check that every parameter receives one.

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::model::config::Activation;
use crate::model::fused;

/// LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) · γ + β (biased variance).
/// Shapes: `xs` `[.., h]`, `gamma`/`beta` `[h]`. Uses the fused CPU kernel where it applies.
pub(crate) fn layer_norm(xs: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    if fused::applies(xs) {
        return Ok(fused::layer_norm(xs, gamma, beta, eps)?);
    }
    layer_norm_composed(xs, gamma, beta, eps)
}

/// LayerNorm(y ⊙ keep + residual): the end of a Transformer sub-block (dropout, residual,
/// post-LayerNorm). `keep` is an optional dropout mask (0 or 1/(1-p)) of y's shape. Fused on
/// CPU.
pub fn residual_layer_norm(
    y: &Tensor,
    residual: &Tensor,
    keep: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    if fused::applies(y) {
        return Ok(fused::residual_layer_norm(
            y, residual, keep, gamma, beta, eps,
        )?);
    }
    residual_layer_norm_composed(y, residual, keep, gamma, beta, eps)
}

/// The composed reference of [`residual_layer_norm`] (any device).
pub(crate) fn residual_layer_norm_composed(
    y: &Tensor,
    residual: &Tensor,
    keep: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let y = match keep {
        Some(k) => y.mul(k)?,
        None => y.clone(),
    };
    layer_norm_composed(&y.add(residual)?, gamma, beta, eps)
}

/// The composed reference LayerNorm (any device).
pub(crate) fn layer_norm_composed(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let mean = xs.mean_keepdim(D::Minus1)?;
    let centred = xs.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Softmax over the last dimension. The row maximum is subtracted for stability and detached:
/// softmax is invariant to the shift, so the gradient is unchanged and needs no max backward.
pub(crate) fn softmax_last(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let exp = xs.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    Ok(exp.broadcast_div(&sum)?)
}

/// Log-softmax over the last dimension (stable: subtracts each row's own maximum).
pub(crate) fn log_softmax_last(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let shifted = xs.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Multi-head attention of queries `q` `[b, lq, h]` over keys `k` and values `v` `[b, l, h]`
/// with `heads` heads: per head softmax(scale · q kᵀ + position + mask) (⊙ keep) v, heads
/// concatenated → `[b, lq, h]`. `mask` is additive `[b, 1, 1, l]`; `position` MPNet's
/// relative-position bias `[heads, lq, l]`, shared by the batch; `keep` an optional dropout
/// mask on the probabilities `[b, heads, lq, l]` (0 or 1/(1-p)). Fused on CPU, unless the
/// position bias needs a gradient through autograd (then composed).
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
) -> Result<Tensor> {
    if fused::applies(q) && !position.is_some_and(Tensor::track_op) {
        return Ok(fused::attention(
            q, k, v, mask, position, keep, heads, scale,
        )?);
    }
    attention_composed(q, k, v, mask, position, keep, heads, scale)
}

/// The composed reference of [`attention`] (any device): split heads, two batched matmuls.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    position: Option<&Tensor>,
    keep: Option<&Tensor>,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let (b, lq, h) = q.dims3()?;
    let split = |t: &Tensor| -> Result<Tensor> {
        let len = t.dims3()?.1;
        Ok(t.reshape((b, len, heads, h / heads))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    // Plain tensor ops throughout (never the fused softmax row kernel), so that this is an
    // independent reference for the fused attention op and the path off the CPU.
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(position) = position {
        scores = scores.broadcast_add(&position.unsqueeze(0)?)?;
    }
    let mut probs = softmax_last(&scores.broadcast_add(mask)?)?;
    if let Some(keep) = keep {
        probs = probs.mul(keep)?;
    }
    Ok(probs
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, lq, h))?)
}

/// activation(xs + bias) over the last dimension (fused on CPU for GELU).
pub(crate) fn bias_activation(xs: &Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
    if act == Activation::Gelu && fused::applies(xs) {
        return Ok(fused::bias_gelu(xs, bias)?);
    }
    activation(&xs.broadcast_add(bias)?, act)
}

/// The FFN activation: GELU (erf form), GELU (tanh form) or ReLU.
pub(crate) fn activation(xs: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::GeluNew => xs.gelu()?,
        Activation::Relu => xs.relu()?,
        Activation::Gelu => xs.gelu_erf()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// f32 round-off on values of order 1.
    const TOL: f32 = 1e-5;

    #[test]
    fn softmax_rows_sum_to_one_and_backward_reaches_input() {
        let x = Var::from_tensor(
            &Tensor::new(
                &[[1.0f32, 2.0, 3.0], [1000.0, 1000.0, -1000.0]],
                &Device::Cpu,
            )
            .unwrap(),
        )
        .unwrap();
        let p = softmax_last(x.as_tensor()).unwrap();
        let sums: Vec<f32> = p.sum(1).unwrap().to_vec1().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < TOL));
        let w = Tensor::new(&[[1.0f32, 0.0, 0.0], [1.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let g = p.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let gx: Vec<Vec<f32>> = g.get(x.as_tensor()).unwrap().to_vec2().unwrap();
        // d p0 / d x0 = p0 (1 - p0); d p0 / d x1 = -p0 p1.
        let pv: Vec<Vec<f32>> = p.to_vec2().unwrap();
        assert!((gx[0][0] - pv[0][0] * (1.0 - pv[0][0])).abs() < TOL);
        assert!((gx[0][1] + pv[0][0] * pv[0][1]).abs() < TOL);
    }

    #[test]
    fn layer_norm_normalises_and_gamma_gets_gradient() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1.0f32, 2.0, 3.0, 6.0]], &dev).unwrap();
        let g = Var::ones(4, DType::F32, &dev).unwrap();
        let b = Var::zeros(4, DType::F32, &dev).unwrap();
        let y = layer_norm(&x, g.as_tensor(), b.as_tensor(), 1e-12).unwrap();
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let mean: f32 = v.iter().sum::<f32>() / 4.0;
        let var: f32 = v.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < TOL && (var - 1.0).abs() < 1e-4);
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(g.as_tensor()).is_some());
        assert!(grads.get(b.as_tensor()).is_some());
    }
}
