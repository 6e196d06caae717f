//! `Linear`: y = x Wᵀ + b with Hugging Face's `[out, in]` weight layout.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::fused;
use crate::model::lora::LoraAdapter;
use crate::model::params::Params;
use crate::model::record::Recorder;

/// A dense layer, optionally with a LoRA adapter. Shapes: `weight` `[out, in]`, `bias` `[out]`;
/// input `[.., in]` → `[.., out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    /// Loads `{name}.weight` `[out, in]` and `{name}.bias` `[out]`, and the adapter
    /// `{name}.lora_A.weight` / `{name}.lora_B.weight` when the loading's LoRA config targets
    /// this module (from the checkpoint if there, else freshly initialised).
    pub fn load(p: &Params, name: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight: p.get(&format!("{name}.weight"), &[out_dim, in_dim])?,
            bias: Some(p.get(&format!("{name}.bias"), &[out_dim])?),
            lora: p.lora_adapter(name, in_dim, out_dim)?,
        })
    }

    /// Input and output sizes.
    pub fn dims(&self) -> (usize, usize) {
        let d = self.weight.dims();
        (d[1], d[0])
    }

    /// Applies the layer to the last dimension of `xs`, reporting to `recorder` when there is one
    /// (the eNTK, see [`crate::model::record`]; `mode.recorder()` in a forward pass); identical
    /// values either way.
    pub fn forward(&self, xs: &Tensor, recorder: Option<&Recorder>) -> Result<Tensor> {
        self.apply(xs, recorder, true)
    }

    /// x Wᵀ (+ the LoRA update), without the bias, for callers that fuse the bias into the next
    /// op; a `recorder` gets the input and a zero probe on the output (whose gradient is then
    /// the output gradient).
    pub fn forward_without_bias(&self, xs: &Tensor, recorder: Option<&Recorder>) -> Result<Tensor> {
        self.apply(xs, recorder, false)
    }

    fn apply(&self, xs: &Tensor, recorder: Option<&Recorder>, with_bias: bool) -> Result<Tensor> {
        let (in_dim, out_dim) = self.dims();
        let dims = xs.dims().to_vec();
        if dims.last() != Some(&in_dim) {
            return Err(Error::Shape {
                what: "Linear input",
                expected: format!("[.., {in_dim}]"),
                found: format!("{dims:?}"),
            });
        }
        let bias = self.bias.as_ref().filter(|_| with_bias);
        // The fused ops compute only the gradients autograd needs (no dW for a frozen weight)
        // and take any number of leading dimensions.
        let fused = |xs: &Tensor| -> Result<Tensor> {
            Ok(match &self.lora {
                // The adapter inside the same op (see `fused::lora_linear`).
                Some(l) => fused::lora_linear(xs, &self.weight, bias, &l.a, &l.b, l.scale)?,
                None => fused::linear(xs, &self.weight, bias)?,
            })
        };
        if recorder.is_none() && fused::applies(xs) {
            // No reshapes around it: each would be one more autograd node whose gradient
            // candle accumulates into a freshly zeroed activation-sized buffer.
            return fused(xs);
        }
        let rows: usize = dims[..dims.len() - 1].iter().product();
        // One 2-D GEMM over all rows: cheaper than a broadcast batched matmul, whose backward
        // would also sum the broadcast weight gradient.
        let flat = xs.reshape((rows, in_dim))?;
        let mut ys = if fused::applies(&flat) {
            fused(&flat)?
        } else {
            let mut ys = flat.matmul(&self.weight.t()?)?;
            if let Some(b) = bias {
                ys = ys.broadcast_add(b)?;
            }
            if let Some(lora) = &self.lora {
                ys = ys.add(&lora.forward(&flat)?)?;
            }
            ys
        };
        if let Some(rec) = recorder {
            ys = rec.linear(&self.weight, self.lora.as_ref(), &flat, ys)?;
        }
        let mut out_shape = dims;
        *out_shape.last_mut().expect("checked non-empty above") = out_dim;
        Ok(ys.reshape(out_shape)?)
    }
}
