//! The paper's classification head: logits = V · dropout(φ(x)) + b.
//!
//! PAPER/REF: φ(x) is the final hidden state of the first token (`<s>` / `[CLS]`); no pooler, no
//! dense+tanh layer. V ~ N(0, 0.02²) (`initializer_range`), b = 0 when the checkpoint has no head.
//! Mean pooling over non-pad tokens is offered as an option (MiniLM and MPNet were trained as
//! mean-pooled sentence embedders).

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::mode::Mode;
use crate::model::params::Params;
use crate::model::Inputs;

/// How φ(x) is read from the final hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The first token's state (the paper's head).
    #[default]
    #[value(alias = "cls")]
    First,
    /// The mean of the non-pad tokens' states.
    Mean,
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "first" | "cls" => Ok(Pooling::First),
            "mean" => Ok(Pooling::Mean),
            other => Err(Error::InvalidArgument {
                field: "pooling".into(),
                reason: format!("`{other}` is not one of first, mean"),
            }),
        }
    }
}

impl Pooling {
    /// φ(x). Shapes: `hidden` `[b, l, h]` → `[b, h]`.
    pub fn apply(self, hidden: &Tensor, inputs: &Inputs) -> Result<Tensor> {
        let (b, l, h) = hidden.dims3()?;
        match self {
            Pooling::First => Ok(hidden.narrow(1, 0, 1)?.reshape((b, h))?),
            Pooling::Mean => {
                let m: Vec<f32> = inputs.attention_mask.iter().map(|&x| x as f32).collect();
                let mask =
                    Tensor::from_vec(m, (b, l, 1), hidden.device())?.to_dtype(hidden.dtype())?;
                let count = mask.sum(1)?; // [b, 1]
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // [b, h]
                Ok(summed.broadcast_div(&count)?)
            }
        }
    }
}

/// Linear head `classifier.weight` V `[C, h]` and `classifier.bias` b `[C]`.
#[derive(Debug, Clone)]
pub struct Head {
    pub weight: Tensor,
    pub bias: Tensor,
    pub(crate) dropout: f64,
}

impl Head {
    /// Loads `classifier.*` from the checkpoint if present there with shape `[C, h]`, else draws
    /// V ~ N(0, init_std²) from `rng` and sets b = 0.
    pub fn load(
        p: &Params,
        num_labels: usize,
        hidden: usize,
        init_std: f64,
        dropout: f64,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<Self> {
        let dev = p.device().clone();
        let weight = p.get_or_init("classifier.weight", &[num_labels, hidden], || {
            let v = crate::rng::normal_vec(rng, num_labels * hidden, 0.0, init_std as f32);
            Ok(Tensor::from_vec(v, (num_labels, hidden), &dev)?)
        })?;
        let bias = p.get_or_init("classifier.bias", &[num_labels], || {
            Ok(Tensor::zeros(num_labels, DType::F32, &dev)?)
        })?;
        Ok(Self {
            weight,
            bias,
            dropout,
        })
    }

    /// Number of classes C.
    pub fn num_labels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Logits. Shapes: `features` `[b, h]` → `[b, C]`.
    pub fn forward(&self, features: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let xs = mode.dropout(features, self.dropout)?;
        Ok(xs.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }

    /// ‖V‖_F, the paper's Norm(C) (bias excluded).
    pub fn norm(&self) -> Result<f64> {
        Ok(self
            .weight
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .sqrt()?
            .to_scalar::<f64>()?)
    }
}
