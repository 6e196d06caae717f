//! `Linear`: y = x Wᵀ + b with Hugging Face's `[out, in]` weight layout.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::fused;
use crate::model::lora::LoraAdapter;
use crate::model::mode::Mode;
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

    /// [`Linear::forward`] in `mode`: while training, an adapter with dropout (peft's
    /// `lora_dropout`) sees its input through a fresh inverted-dropout mask drawn from the
    /// mode's stream, y = x Wᵀ + b + s·((x ⊙ m) Aᵀ) Bᵀ; otherwise exactly
    /// `forward(xs, mode.recorder())`.
    pub fn forward_in(&self, xs: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        self.apply_in(xs, mode, true)
    }

    /// [`Linear::forward_without_bias`] in `mode` (see [`Linear::forward_in`]).
    pub fn forward_without_bias_in(&self, xs: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        self.apply_in(xs, mode, false)
    }

    fn apply_in(&self, xs: &Tensor, mode: &mut Mode, with_bias: bool) -> Result<Tensor> {
        let Some(lora) = self.lora.as_ref().filter(|l| l.dropout > 0.0) else {
            return self.apply(xs, mode.recorder(), with_bias);
        };
        let Some(keep) = mode.dropout_mask(xs.shape(), xs.device(), xs.dtype(), lora.dropout)?
        else {
            // Not training: dropout is the identity.
            return self.apply(xs, mode.recorder(), with_bias);
        };
        // The frozen layer on x, the adapter on x ⊙ m, composed (candle's autograd gives the
        // gradients; the training path's own backward does not take this case).
        let frozen = Linear {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            lora: None,
        };
        let ys = frozen.apply(xs, None, with_bias)?;
        let (in_dim, _) = self.dims();
        let rows = xs.elem_count() / in_dim;
        let update = lora.forward(&xs.mul(&keep)?.reshape((rows, in_dim))?)?;
        Ok(ys.add(&update.reshape(ys.shape())?)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        let v = crate::rng::uniform_vec(&mut ChaCha8Rng::seed_from_u64(seed), n, -1.0, 1.0);
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// f32 sums in another order: a few ulps of values of size ~10.
    const TOL: f32 = 1e-5;

    /// LoRA dropout as peft's: in training the adapter sees x ⊙ m (m the mask the mode's stream
    /// gives next), the frozen layer sees x; in evaluation nothing changes.
    #[test]
    fn lora_dropout_masks_only_the_adapter_input_in_training() {
        let (rows, i, o, r) = (6, 16, 12, 4);
        let layer = Linear {
            weight: random(&[o, i], 1),
            bias: Some(random(&[o], 2)),
            lora: Some(LoraAdapter {
                a: random(&[r, i], 3),
                b: random(&[o, r], 4),
                scale: 2.0,
                dropout: 0.3,
            }),
        };
        let x = random(&[2, rows / 2, i], 5);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let got = layer
            .forward_in(&x, &mut Mode::Train { rng: &mut rng })
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let m = Mode::Train { rng: &mut rng }
            .dropout_mask(x.shape(), x.device(), DType::F32, 0.3)
            .unwrap()
            .unwrap();
        let zeros = m
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .filter(|v| **v == 0.0)
            .count();
        assert!(zeros > 0 && zeros < x.elem_count(), "{zeros} zeros");
        let lora = layer.lora.as_ref().unwrap();
        let flat = |t: &Tensor| t.reshape((rows, i)).unwrap();
        let want = flat(&x)
            .matmul(&layer.weight.t().unwrap())
            .unwrap()
            .broadcast_add(layer.bias.as_ref().unwrap())
            .unwrap()
            .add(&lora.forward(&flat(&x.mul(&m).unwrap())).unwrap())
            .unwrap();
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            a.flatten_all()
                .unwrap()
                .sub(&b.flatten_all().unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert!(diff(&got, &want) < TOL, "{}", diff(&got, &want));
        // Unmasked, the output differs: the mask reached the adapter.
        let plain = layer.forward(&x, None).unwrap();
        assert!(diff(&got, &plain) > 1e-2);
        // Evaluation: no mask.
        let eval = layer.forward_in(&x, &mut Mode::Eval).unwrap();
        assert!(diff(&eval, &plain) == 0.0);
    }
}
