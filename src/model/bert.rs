//! BERT, RoBERTa and MPNet encoders (post-LayerNorm Transformer blocks), written for training.
//!
//! Ports `BertModel` / `RobertaModel` / `MPNetModel` of transformers 4.46 (`modeling_bert.py`,
//! `modeling_roberta.py`, `modeling_mpnet.py`, eager attention): absolute learned positions
//! (RoBERTa's and MPNet's are padding-aware and start at `pad_token_id + 1`), token-type
//! embeddings (not in MPNet), additive padding mask, MPNet's relative-position attention bias,
//! GELU (erf), real dropout in `Mode::Train`. Every op has a backward (see `ops`). Tensor names
//! are the checkpoint's, so HF files map onto the struct tree without a translation table.

use candle_core::{DType, Device, Shape, Tensor, Var};

use crate::error::{Error, Result};
use crate::model::config::{relative_bucket, Activation, Arch, EncoderConfig, RELATIVE_BUCKETS};
use crate::model::linear::Linear;
use crate::model::mode::Mode;
use crate::model::params::Params;
use crate::model::record::Recorder;
use crate::model::Inputs;
use crate::model::{fused, ops};

/// A LayerNorm's γ and β (`{name}.weight`, `{name}.bias`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    /// Loads `{name}.weight` and `{name}.bias`, both `[h]`.
    pub fn load(p: &Params, name: &str, h: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: p.get(&format!("{name}.weight"), &[h])?,
            bias: p.get(&format!("{name}.bias"), &[h])?,
            eps,
        })
    }

    /// Normalises the last dimension.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_recorded(xs, None)
    }

    /// [`LayerNorm::forward`]; a `recorder` that selects this LayerNorm gets `Var` copies of
    /// γ and β to run with (eNTK, see [`crate::model::record`]). Identical values either way.
    pub fn forward_recorded(&self, xs: &Tensor, recorder: Option<&Recorder>) -> Result<Tensor> {
        if let Some((weight, bias)) = recorder
            .map(|r| r.layer_norm(&self.weight, &self.bias))
            .transpose()?
            .flatten()
        {
            return ops::layer_norm(xs, &weight, &bias, self.eps);
        }
        ops::layer_norm(xs, &self.weight, &self.bias, self.eps)
    }

    /// LayerNorm(y ⊙ keep + residual), one fused op on CPU (see
    /// [`ops::residual_layer_norm`]); `keep` is the sub-block's dropout mask, if any. The
    /// recorder is treated as in [`LayerNorm::forward_recorded`].
    pub fn forward_residual(
        &self,
        y: &Tensor,
        residual: &Tensor,
        keep: Option<&Tensor>,
        recorder: Option<&Recorder>,
    ) -> Result<Tensor> {
        if let Some((weight, bias)) = recorder
            .map(|r| r.layer_norm(&self.weight, &self.bias))
            .transpose()?
            .flatten()
        {
            return ops::residual_layer_norm(y, residual, keep, &weight, &bias, self.eps);
        }
        ops::residual_layer_norm(y, residual, keep, &self.weight, &self.bias, self.eps)
    }
}

/// Word, position and token-type embeddings, summed, normalised and dropped out.
pub struct Embeddings {
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    /// `None` for MPNet, which has no token types.
    pub token_type_embeddings: Option<Tensor>,
    pub layer_norm: LayerNorm,
    arch: Arch,
    pad_token_id: u32,
    pub(crate) dropout: f64,
}

impl Embeddings {
    /// Loads `embeddings.*`.
    pub fn load(p: &Params, cfg: &EncoderConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: p.get("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?,
            position_embeddings: p.get(
                "embeddings.position_embeddings.weight",
                &[cfg.max_position_embeddings, h],
            )?,
            token_type_embeddings: match cfg.arch() {
                Arch::Mpnet => None,
                Arch::Bert | Arch::Roberta => Some(p.get(
                    "embeddings.token_type_embeddings.weight",
                    &[cfg.type_vocab_size, h],
                )?),
            },
            layer_norm: LayerNorm::load(p, "embeddings.LayerNorm", h, cfg.layer_norm_eps)?,
            arch: cfg.arch(),
            pad_token_id: cfg.pad_token_id,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// Position ids of a batch: BERT 0..L; RoBERTa and MPNet count non-pad tokens from
    /// `pad + 1` and give pad tokens `pad` (REF: `create_position_ids_from_input_ids`).
    pub fn position_ids(&self, inputs: &Inputs) -> Vec<u32> {
        let (b, l) = (inputs.batch, inputs.seq_len);
        match self.arch {
            Arch::Bert => (0..b).flat_map(|_| 0..l as u32).collect(),
            Arch::Roberta | Arch::Mpnet => {
                let pad = self.pad_token_id;
                let mut out = Vec::with_capacity(b * l);
                for row in inputs.input_ids.chunks(l) {
                    let mut count = 0;
                    for &id in row {
                        if id == pad {
                            out.push(pad);
                        } else {
                            count += 1;
                            out.push(pad + count);
                        }
                    }
                }
                out
            }
        }
    }

    /// Shapes: inputs `[b, l]` → `[b, l, h]`.
    pub fn forward(&self, inputs: &Inputs, mode: &mut Mode) -> Result<Tensor> {
        let dev = self.word_embeddings.device();
        let (b, l) = (inputs.batch, inputs.seq_len);
        let (vocab, h) = self.word_embeddings.dims2()?;
        let positions = self.position_ids(inputs);
        let max_pos = self.position_embeddings.dims2()?.0;
        check_ids("input_ids", &inputs.input_ids, vocab)?;
        check_ids("position ids (sequence too long)", &positions, max_pos)?;
        let ids = Tensor::from_slice(&inputs.input_ids, b * l, dev)?;
        let pos = Tensor::from_slice(&positions, b * l, dev)?;
        let mut xs = self
            .word_embeddings
            .index_select(&ids, 0)?
            .add(&self.position_embeddings.index_select(&pos, 0)?)?;
        if let Some(table) = &self.token_type_embeddings {
            check_ids("token_type_ids", &inputs.token_type_ids, table.dims2()?.0)?;
            let types = Tensor::from_slice(&inputs.token_type_ids, b * l, dev)?;
            xs = xs.add(&table.index_select(&types, 0)?)?;
        }
        let recorder = mode.recorder();
        if let Some(rec) = recorder {
            xs = rec.embeddings(
                &self.word_embeddings,
                xs,
                &inputs.input_ids,
                &positions,
                &inputs.token_type_ids,
            )?;
        }
        let xs = self
            .layer_norm
            .forward_recorded(&xs.reshape((b, l, h))?, recorder)?;
        mode.dropout(&xs, self.dropout)
    }
}

pub(crate) fn check_ids(what: &'static str, ids: &[u32], limit: usize) -> Result<()> {
    match ids.iter().find(|&&i| i as usize >= limit) {
        Some(bad) => Err(Error::Shape {
            what,
            expected: format!("ids < {limit}"),
            found: bad.to_string(),
        }),
        None => Ok(()),
    }
}

/// What attention adds to its scores: the padding mask and, in MPNet, the relative-position
/// bias.
pub struct ScoreBias {
    /// Additive padding mask `[b, 1, 1, l]`.
    pub mask: Tensor,
    /// MPNet's relative-position bias `[heads, lq, l]` for the query rows.
    pub position: Option<Tensor>,
}

impl ScoreBias {
    /// The bias of the first query row only (the first-token path's last layer).
    pub fn first_row(&self) -> Result<ScoreBias> {
        Ok(ScoreBias {
            mask: self.mask.clone(),
            position: match &self.position {
                Some(p) => Some(p.narrow(1, 0, 1)?.contiguous()?),
                None => None,
            },
        })
    }
}

/// Multi-head self-attention with its output projection and residual LayerNorm
/// (`attention.self.{query,key,value}`, `attention.output.{dense,LayerNorm}`; MPNet:
/// `attention.attn.{q,k,v,o}`, `attention.LayerNorm`).
pub struct Attention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub layer_norm: LayerNorm,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) attn_dropout: f64,
    pub(crate) hidden_dropout: f64,
}

impl Attention {
    /// Loads `{prefix}.attention.*`.
    pub fn load(p: &Params, prefix: &str, cfg: &EncoderConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let a = format!("{prefix}.attention");
        let [q, k, v, o, norm] = match cfg.arch() {
            Arch::Bert | Arch::Roberta => [
                "self.query",
                "self.key",
                "self.value",
                "output.dense",
                "output.LayerNorm",
            ],
            Arch::Mpnet => ["attn.q", "attn.k", "attn.v", "attn.o", "LayerNorm"],
        };
        Ok(Self {
            query: Linear::load(p, &format!("{a}.{q}"), h, h)?,
            key: Linear::load(p, &format!("{a}.{k}"), h, h)?,
            value: Linear::load(p, &format!("{a}.{v}"), h, h)?,
            output: Linear::load(p, &format!("{a}.{o}"), h, h)?,
            layer_norm: LayerNorm::load(p, &format!("{a}.{norm}"), h, cfg.layer_norm_eps)?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            attn_dropout: cfg.attention_probs_dropout_prob,
            hidden_dropout: cfg.hidden_dropout_prob,
        })
    }

    /// Shapes: `xs` `[b, l, h]` → `[b, l, h]`.
    pub fn forward(&self, xs: &Tensor, bias: &ScoreBias, mode: &mut Mode) -> Result<Tensor> {
        self.forward_queries(xs, xs, bias, mode)
    }

    /// Attention output for the query rows `xq` `[b, lq, h]` (a subset of the positions of `xs`,
    /// e.g. only the first token) over all keys and values of `xs` `[b, l, h]` → `[b, lq, h]`.
    pub fn forward_queries(
        &self,
        xs: &Tensor,
        xq: &Tensor,
        bias: &ScoreBias,
        mode: &mut Mode,
    ) -> Result<Tensor> {
        let (b, l, _) = xs.dims3()?;
        let lq = xq.dims3()?.1;
        let rec = mode.recorder();
        let q = self.query.forward_in(xq, mode)?;
        let k = self.key.forward_in(xs, mode)?;
        let v = self.value.forward_in(xs, mode)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let probs_shape = Shape::from((b, self.heads, lq, l));
        let keep = mode.dropout_mask(&probs_shape, q.device(), q.dtype(), self.attn_dropout)?;
        let ctx = ops::attention(
            &q,
            &k,
            &v,
            &bias.mask,
            bias.position.as_ref(),
            keep.as_ref(),
            self.heads,
            scale,
        )?;
        let out = self.output.forward_in(&ctx, mode)?;
        let keep =
            mode.dropout_mask(out.shape(), out.device(), out.dtype(), self.hidden_dropout)?;
        self.layer_norm
            .forward_residual(&out, xq, keep.as_ref(), rec)
    }
}

/// One Transformer block: attention, then the FFN (`intermediate.dense`, `output.dense`,
/// `output.LayerNorm`), each with a residual connection and post-LayerNorm.
pub struct Layer {
    pub attention: Attention,
    pub intermediate: Linear,
    pub output: Linear,
    pub layer_norm: LayerNorm,
    pub(crate) act: Activation,
    pub(crate) hidden_dropout: f64,
}

impl Layer {
    /// Loads `encoder.layer.{index}.*`.
    pub fn load(p: &Params, index: usize, cfg: &EncoderConfig) -> Result<Self> {
        let prefix = format!("encoder.layer.{index}");
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: Attention::load(p, &prefix, cfg)?,
            intermediate: Linear::load(p, &format!("{prefix}.intermediate.dense"), h, f)?,
            output: Linear::load(p, &format!("{prefix}.output.dense"), f, h)?,
            layer_norm: LayerNorm::load(
                p,
                &format!("{prefix}.output.LayerNorm"),
                h,
                cfg.layer_norm_eps,
            )?,
            act: cfg.activation(),
            hidden_dropout: cfg.hidden_dropout_prob,
        })
    }

    /// Shapes: `xs` `[b, l, h]` → `[b, l, h]`.
    pub fn forward(&self, xs: &Tensor, bias: &ScoreBias, mode: &mut Mode) -> Result<Tensor> {
        self.forward_queries(xs, xs, bias, mode)
    }

    /// The block's output at the query rows `xq` only (see [`Attention::forward_queries`]):
    /// every op after attention is row-wise, so the rows are exactly those of the full output.
    pub fn forward_queries(
        &self,
        xs: &Tensor,
        xq: &Tensor,
        bias: &ScoreBias,
        mode: &mut Mode,
    ) -> Result<Tensor> {
        let attn = self.attention.forward_queries(xs, xq, bias, mode)?;
        let rec = mode.recorder();
        let dense = &self.intermediate;
        let inter = match &dense.bias {
            // One op for the layer and its activation (see `fused::linear_gelu`) where nothing
            // needs the pre-activation: no recorder, no adapter on this layer.
            Some(b)
                if self.act == Activation::Gelu
                    && rec.is_none()
                    && dense.lora.is_none()
                    && fused::applies(&attn) =>
            {
                fused::linear_gelu(&attn, &dense.weight, b)?
            }
            Some(b) => ops::bias_activation(
                &self.intermediate.forward_without_bias_in(&attn, mode)?,
                b,
                self.act,
            )?,
            None => ops::activation(&self.intermediate.forward_in(&attn, mode)?, self.act)?,
        };
        let out = self.output.forward_in(&inter, mode)?;
        let keep =
            mode.dropout_mask(out.shape(), out.device(), out.dtype(), self.hidden_dropout)?;
        self.layer_norm
            .forward_residual(&out, &attn, keep.as_ref(), rec)
    }
}

/// The encoder: embeddings and `num_hidden_layers` blocks. The pooler is not part of it (the
/// paper's head reads the final hidden state directly).
pub struct Encoder {
    pub embeddings: Embeddings,
    pub layers: Vec<Layer>,
    /// MPNet's relative attention bias table `encoder.relative_attention_bias.weight`
    /// `[buckets, heads]`, shared by every layer.
    pub relative_attention_bias: Option<Tensor>,
    cfg: EncoderConfig,
    /// Every parameter with its checkpoint name, as the layers loaded them.
    params: Vec<(String, Tensor)>,
}

impl Encoder {
    /// Loads every encoder tensor from `p`.
    pub fn load(p: &Params, cfg: &EncoderConfig) -> Result<Self> {
        let embeddings = Embeddings::load(p, cfg)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(p, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        let relative_attention_bias = match cfg.arch() {
            Arch::Mpnet => Some(p.get(
                "encoder.relative_attention_bias.weight",
                &[cfg.relative_attention_num_buckets, cfg.num_attention_heads],
            )?),
            Arch::Bert | Arch::Roberta => None,
        };
        let params = p
            .loaded()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("classifier."))
            .collect();
        Ok(Self {
            embeddings,
            layers,
            relative_attention_bias,
            cfg: cfg.clone(),
            params,
        })
    }

    /// The configuration the encoder was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.embeddings.word_embeddings.device()
    }

    /// Final hidden states. Shapes: inputs `[b, l]` → `[b, l, h]`.
    pub fn forward(&self, inputs: &Inputs, mode: &mut Mode) -> Result<Tensor> {
        inputs.check()?;
        let mut xs = self.embeddings.forward(inputs, mode)?;
        let bias = self.score_bias(inputs, mode)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &bias, mode)?;
        }
        Ok(xs)
    }

    /// The padding mask and (MPNet) the relative-position bias of a batch, computed once for
    /// every layer (REF: `MPNetEncoder.compute_position_bias`). A recorder that selects the
    /// bias table gets a `Var` copy of it to run with (eNTK).
    fn score_bias(&self, inputs: &Inputs, mode: &Mode) -> Result<ScoreBias> {
        let mask = additive_mask(
            inputs,
            self.device(),
            self.embeddings.word_embeddings.dtype(),
        )?;
        let Some(table) = &self.relative_attention_bias else {
            return Ok(ScoreBias {
                mask,
                position: None,
            });
        };
        // Under a recorder the bias is always tracked (a `Var` copy, recorded or not), so that
        // attention runs the same composed arithmetic in every eNTK pass, whichever sites the
        // pass records.
        let table = match mode.recorder() {
            Some(rec) => match rec.relative_bias(table)? {
                Some(var) => var,
                None => Var::from_tensor(&table.detach())?.as_tensor().clone(),
            },
            None => table.clone(),
        };
        let l = inputs.seq_len;
        let heads = table.dims2()?.1;
        let buckets = relative_buckets(l);
        let idx = Tensor::from_vec(buckets, l * l, table.device())?;
        let position = table
            .index_select(&idx, 0)?
            .t()?
            .reshape((heads, l, l))?
            .contiguous()?;
        Ok(ScoreBias {
            mask,
            position: Some(position),
        })
    }

    /// The first token's final hidden state only. Shapes: inputs `[b, l]` → `[b, h]`.
    ///
    /// Exactly the first row of [`Encoder::forward`]: the last layer computes its query,
    /// attention output, FFN and LayerNorms for that row only (keys and values still see every
    /// token), which saves most of the last layer's work. With dropout the masks of the skipped
    /// rows are not drawn, so a train-mode run draws different (equally distributed) masks.
    pub fn forward_first(&self, inputs: &Inputs, mode: &mut Mode) -> Result<Tensor> {
        inputs.check()?;
        let mut xs = self.embeddings.forward(inputs, mode)?;
        let (last, rest) = match self.layers.split_last() {
            Some(split) => split,
            None => return Ok(xs.narrow(1, 0, 1)?.squeeze(1)?),
        };
        let bias = self.score_bias(inputs, mode)?;
        for layer in rest {
            xs = layer.forward(&xs, &bias, mode)?;
        }
        let first = xs.narrow(1, 0, 1)?.contiguous()?;
        Ok(last
            .forward_queries(&xs, &first, &bias.first_row()?, mode)?
            .squeeze(1)?)
    }
}

/// MPNet's bucket of every (query i, key j) pair of a length-`l` sequence, row-major `[l, l]`.
pub fn relative_buckets(l: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(l * l);
    for i in 0..l as i64 {
        for j in 0..l as i64 {
            let bucket = relative_bucket(j - i);
            debug_assert!(bucket < RELATIVE_BUCKETS);
            out.push(bucket as u32);
        }
    }
    out
}

/// Additive attention mask `[b, 1, 1, l]` in the weights' `dtype`: 0 for tokens, the most
/// negative f32 for padding (REF: transformers' extended attention mask uses
/// `finfo(dtype).min`; f32's minimum is as good as any in f64, where it still underflows exp).
pub(crate) fn additive_mask(inputs: &Inputs, dev: &Device, dtype: DType) -> Result<Tensor> {
    let vals: Vec<f32> = inputs
        .attention_mask
        .iter()
        .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(vals, (inputs.batch, 1, 1, inputs.seq_len), dev)?.to_dtype(dtype)?)
}

impl Encoder {
    /// Every encoder parameter with its checkpoint name (prefix stripped), in module order: the
    /// names the layers loaded them by (the one spelling of the tensor-name tree, shared by the
    /// export, the eNTK's catalogue and `inspect`). The tensors are the layers' own (same ids,
    /// and a trained `Var`'s current values).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }
}
