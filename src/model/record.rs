//! [`Recorder`]: what the empirical NTK (docs/method.md §13) needs from a forward pass — layer inputs and
//! handles on output gradients — collected without global hooks.
//!
//! A recorder travels through `forward` inside [`Mode::Record`](crate::model::Mode::Record),
//! which is evaluation mode (no dropout) plus the recorder. Each recording layer asks it whether
//! it is selected (by the [`TensorId`] of the layer's *key* parameter, see [`Site`]) and, if so,
//! registers a site:
//!
//! - a [`Linear`](crate::model::linear::Linear) stashes its input `X` `[rows, d_in]` and adds a zero `Var` "probe" `Z` of its
//!   output's shape to the output, `y = x Wᵀ (+ LoRA) + Z`. The value is unchanged (`+ 0` is
//!   exact), and after `s.backward()` the probe's gradient is `∂s/∂y`. The probe is needed
//!   because candle's backward drops the gradients of every non-variable node; a `Var` keeps its
//!   gradient in the `GradStore`. The bias is added after the probe, which does not change
//!   `∂s/∂y`.
//! - a [`LayerNorm`](crate::model::bert::LayerNorm) runs with fresh `Var` copies of γ and β, whose gradients are then the
//!   per-example gradients of the LayerNorm parameters (h values each, cheap to copy).
//! - MPNet's relative attention bias table runs as a fresh `Var` copy too (32 × heads values);
//! - the [`Embeddings`](crate::model::bert::Embeddings) put a probe on the sum word + position + token type (before the
//!   embedding LayerNorm) and record the three id sequences, so the gradient of any embedding
//!   row is the sum of the probe gradient over the tokens that use it.
//!
//! Probes are `Var`s, so every node downstream of a probe is tracked by autograd even when no
//! model parameter is a `Var`; nodes upstream of the lowest probe are not, so a backward pass
//! stops there. Without a recorder (`Mode::Eval`, `Mode::Train`) no layer does anything
//! different.

use std::cell::RefCell;
use std::collections::HashSet;

use candle_core::{Tensor, TensorId, Var};

use crate::error::Result;
use crate::model::lora::LoraAdapter;

/// One recorded place in the network, in forward order. Each is identified by the id of its
/// key parameter: the linear layer's `weight`, the LayerNorm's `weight` (γ), or the word
/// embedding table.
#[derive(Debug, Clone)]
pub enum Site {
    /// The summed embeddings (before the embedding LayerNorm).
    Embeddings {
        /// Id of `embeddings.word_embeddings.weight`.
        key: TensorId,
        /// Zero probe of shape `[b·l, h]`: its gradient is ∂s/∂(word + position + type).
        probe: Var,
        /// Row-major `[b·l]` token, position and token-type ids.
        input_ids: Vec<u32>,
        position_ids: Vec<u32>,
        token_type_ids: Vec<u32>,
    },
    /// A LayerNorm, run with these `Var` copies of γ and β.
    LayerNorm {
        /// Id of the LayerNorm's `weight` (γ) in the model.
        key: TensorId,
        weight: Var,
        bias: Var,
    },
    /// MPNet's relative attention bias table, run with this `Var` copy.
    RelativeBias {
        /// Id of `encoder.relative_attention_bias.weight` in the model.
        key: TensorId,
        weight: Var,
    },
    /// A dense layer `y = x Wᵀ (+ s·(x Aᵀ) Bᵀ) + b`.
    Linear {
        /// Id of the layer's `weight` in the model.
        key: TensorId,
        /// The input `X`, `[rows, d_in]` (rows = b·l, or b on the first-token path's last layer).
        input: Tensor,
        /// Zero probe of shape `[rows, d_out]`: its gradient is `G = ∂s/∂y`.
        probe: Var,
        /// The layer's LoRA adapter, if any (its factors enter the LoRA blocks).
        lora: Option<LoraAdapter>,
    },
}

impl Site {
    /// The id of the site's key parameter.
    pub fn key(&self) -> TensorId {
        match self {
            Site::Embeddings { key, .. }
            | Site::LayerNorm { key, .. }
            | Site::RelativeBias { key, .. }
            | Site::Linear { key, .. } => *key,
        }
    }
}

/// Collects [`Site`]s during one forward pass (see the module docs).
///
/// Interior mutability lets layers share `&Recorder` through `Mode::Record`; a recorder is
/// meant for one forward pass on one thread.
#[derive(Debug, Default)]
pub struct Recorder {
    keys: HashSet<TensorId>,
    sites: RefCell<Vec<Site>>,
}

impl Recorder {
    /// A recorder that records the sites whose key parameter is one of `keys` (ids of a linear
    /// layer's `weight`, a LayerNorm's `weight`, or the word embedding table).
    pub fn new(keys: impl IntoIterator<Item = TensorId>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
            sites: RefCell::default(),
        }
    }

    /// Whether the site keyed by `key` is recorded.
    pub fn records(&self, key: &Tensor) -> bool {
        self.keys.contains(&key.id())
    }

    /// The sites recorded so far, in forward order; the recorder is left empty.
    pub fn take_sites(&self) -> Vec<Site> {
        std::mem::take(&mut *self.sites.borrow_mut())
    }

    /// Called by a [`Linear`](crate::model::linear::Linear) layer (its `weight` and LoRA
    /// adapter) with its 2-D input and its output before the bias: returns the output with a
    /// zero probe added when the layer is recorded, else `output` unchanged.
    pub(crate) fn linear(
        &self,
        weight: &Tensor,
        lora: Option<&LoraAdapter>,
        input: &Tensor,
        output: Tensor,
    ) -> Result<Tensor> {
        if !self.records(weight) {
            return Ok(output);
        }
        let probe = Var::zeros(output.shape(), output.dtype(), output.device())?;
        let out = output.add(probe.as_tensor())?;
        self.sites.borrow_mut().push(Site::Linear {
            key: weight.id(),
            input: input.detach(),
            probe,
            lora: lora.cloned(),
        });
        Ok(out)
    }

    /// Called by a [`LayerNorm`](crate::model::bert::LayerNorm) with its γ and β: `Var` copies
    /// of them to run with when it is recorded.
    pub(crate) fn layer_norm(
        &self,
        weight: &Tensor,
        bias: &Tensor,
    ) -> Result<Option<(Tensor, Tensor)>> {
        if !self.records(weight) {
            return Ok(None);
        }
        let w = Var::from_tensor(&weight.detach())?;
        let b = Var::from_tensor(&bias.detach())?;
        let out = (w.as_tensor().clone(), b.as_tensor().clone());
        self.sites.borrow_mut().push(Site::LayerNorm {
            key: weight.id(),
            weight: w,
            bias: b,
        });
        Ok(Some(out))
    }

    /// Called by the encoder with MPNet's relative attention bias table: a `Var` copy of it to
    /// run with when it is recorded.
    pub(crate) fn relative_bias(&self, table: &Tensor) -> Result<Option<Tensor>> {
        if !self.records(table) {
            return Ok(None);
        }
        let w = Var::from_tensor(&table.detach())?;
        let out = w.as_tensor().clone();
        self.sites.borrow_mut().push(Site::RelativeBias {
            key: table.id(),
            weight: w,
        });
        Ok(Some(out))
    }

    /// Called by [`Embeddings`](crate::model::bert::Embeddings) with the summed embeddings `[b·l, h]` and the ids that selected
    /// them: returns the sum with a zero probe added when the embeddings are recorded.
    pub(crate) fn embeddings(
        &self,
        word_embeddings: &Tensor,
        sum: Tensor,
        input_ids: &[u32],
        position_ids: &[u32],
        token_type_ids: &[u32],
    ) -> Result<Tensor> {
        if !self.records(word_embeddings) {
            return Ok(sum);
        }
        let probe = Var::zeros(sum.shape(), sum.dtype(), sum.device())?;
        let out = sum.add(probe.as_tensor())?;
        self.sites.borrow_mut().push(Site::Embeddings {
            key: word_embeddings.id(),
            probe,
            input_ids: input_ids.to_vec(),
            position_ids: position_ids.to_vec(),
            token_type_ids: token_type_ids.to_vec(),
        });
        Ok(out)
    }
}

/// A recorded site with its per-logit gradients, as host values: what the eNTK's gradient
/// blocks are made of, whichever backward produced them (autograd over a [`Recorder`]'s probes,
/// or [`crate::model::backprop::record_logit_grads`]). `grads[c]` belongs to logit c.
#[derive(Debug, Clone)]
pub(crate) enum Recorded {
    /// The summed embeddings: `grads[c]` is ∂s_c/∂(word + position + type), `[rows, h]`.
    Embeddings {
        key: TensorId,
        input_ids: Vec<u32>,
        position_ids: Vec<u32>,
        token_type_ids: Vec<u32>,
        grads: Vec<Vec<f32>>,
    },
    /// A LayerNorm: `grads[c]` is dγ followed by dβ.
    LayerNorm { key: TensorId, grads: Vec<Vec<f32>> },
    /// MPNet's relative attention bias table: `grads[c]` is the table's gradient.
    RelativeBias { key: TensorId, grads: Vec<Vec<f32>> },
    /// A dense layer: its input `x` `[rows, d_in]` and `grads[c]` = ∂s_c/∂y `[rows, d_out]`.
    Linear {
        key: TensorId,
        x: Vec<f32>,
        rows: usize,
        d_in: usize,
        grads: Vec<Vec<f32>>,
        lora: Option<HostLora>,
    },
}

impl Recorded {
    /// The id of the site's key parameter (as [`Site::key`]).
    pub(crate) fn key(&self) -> TensorId {
        match self {
            Recorded::Embeddings { key, .. }
            | Recorded::LayerNorm { key, .. }
            | Recorded::RelativeBias { key, .. }
            | Recorded::Linear { key, .. } => *key,
        }
    }
}

/// A LoRA adapter's factors as host values: A `[r, in]`, B `[out, r]`, scale s.
#[derive(Debug, Clone)]
pub(crate) struct HostLora {
    pub(crate) a: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) r: usize,
    pub(crate) scale: f64,
}
