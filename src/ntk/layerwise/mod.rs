//! The FT-effective component F of the empirical NTK, exactly and layer by layer (docs/method.md §7.1,
//! §13): `F(x, x′)_{cc′} = Σ_θ ⟨∂s_c(x)/∂θ, ∂s_{c′}(x′)/∂θ⟩` with `s_c(x) = v_c·φ(x)` and V0 the
//! model's head (the head at the start of the method's gradient stage).
//!
//! For every example x (one unpadded sequence) the encoder runs forward once and then backward
//! once per logit c (C passes): on the training path's own backward
//! ([`crate::model::backprop`], which taps each selected layer's input and output gradient)
//! for the first-token path of the models it supports, else in [`Mode::Record`] on candle's
//! autograd, where the [`Recorder`]'s probes hand the same back. Per layer, the parameter
//! gradients factor into:
//!
//! - dense weight W (`y = x Wᵀ + b`): input X `[L, d_in]` and output gradient G_c `[L, d_out]`;
//!   `∂s_c/∂W = G_cᵀX`, so the block is `⟨G_cᵀX, G′_{c′}ᵀX′⟩_F`
//!   `= Σ_{t,s} (G_c G′_{c′}ᵀ)_{ts}(X X′ᵀ)_{ts}` ([`Contraction`] picks how);
//! - bias: `(Σ_t G_c,t)·(Σ_s G′_{c′},s)`;
//! - LayerNorm γ, β: their per-example gradients (h values each), dotted;
//! - word / position / token-type embeddings: with g the gradient w.r.t. the summed embeddings,
//!   the gradient of table row k is `Σ_{t: id_t = k} g_t`, so the block is the sum over token
//!   pairs with equal ids of `g_t·g′_s` (exact; REF subsamples 10% of the word table instead,
//!   docs/method.md §12, item 4);
//! - LoRA (`y += s·(x Aᵀ) Bᵀ`): `∂s_c/∂B = s·G_cᵀ(X Aᵀ)` and `∂s_c/∂A = s·(G_c B)ᵀX`, i.e. the
//!   weight formula with (X Aᵀ, G) or (X, G B). At initialisation B = 0, so the A block is 0.
//!
//! X and G are f32 (they come from the f32 forward and backward); every inner product and sum
//! over parameters is f64. Per example only activation-sized factors are kept, never a full
//! gradient; when the factors of all examples would exceed
//! [`EntkConfig::max_stored_bytes`], the encoder layers are split into groups and each group
//! gets its own pass over the examples. The symmetric case (`x2 = None`) computes the upper
//! triangle once and mirrors it, so the result is exactly symmetric.
//!
//! Verified against [`crate::ntk::reference`] (full flattened gradients) in `tests/it/ntk.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use candle_core::{DType, Tensor, TensorId};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::batch::{Encoded, TextTokenizer};
use crate::error::{Error, Result};
use crate::model::{Inputs, Mode, Pooling, Recorder, SequenceClassifier, Site};
use crate::ntk::config::{Contraction, ContractionPrecision, EntkConfig, ForwardPath, ParamSet};

mod blocks;
mod catalog;
mod contract;

use crate::ntk::kernel::Kernel;
use blocks::*;
use catalog::*;
pub use contract::GRAM_F32_SPAN;
use contract::*;
pub(crate) use contract::{gram, mirror_upper};

/// Parameter groups whose share of F is reported separately (the report's breakdown:
/// embeddings, attention Q/K/V/O, FFN, LayerNorm, biases, LoRA factors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamGroup {
    /// `embeddings.word_embeddings.weight`.
    WordEmbeddings,
    /// `embeddings.position_embeddings.weight`.
    PositionEmbeddings,
    /// `embeddings.token_type_embeddings.weight`.
    TokenTypeEmbeddings,
    /// MPNet's `encoder.relative_attention_bias.weight`.
    RelativeAttentionBias,
    /// `attention.self.query.weight` of every layer (MPNet: `attention.attn.q.weight`).
    Query,
    /// `attention.self.key.weight` (`attention.attn.k.weight`).
    Key,
    /// `attention.self.value.weight` (`attention.attn.v.weight`).
    Value,
    /// `attention.output.dense.weight` (`attention.attn.o.weight`).
    AttentionOutput,
    /// `intermediate.dense.weight` (FFN in).
    Intermediate,
    /// `output.dense.weight` (FFN out).
    Output,
    /// Every LayerNorm γ and β (embeddings and both per layer).
    LayerNorm,
    /// Every dense bias.
    Bias,
    /// LoRA `lora_A` factors.
    LoraA,
    /// LoRA `lora_B` factors.
    LoraB,
}

impl ParamGroup {
    /// The group of the encoder parameter `name` (checkpoint name without prefix), or `None`
    /// for a name this module does not know.
    pub fn of(name: &str) -> Option<ParamGroup> {
        Some(match name {
            "embeddings.word_embeddings.weight" => ParamGroup::WordEmbeddings,
            "embeddings.position_embeddings.weight" => ParamGroup::PositionEmbeddings,
            "embeddings.token_type_embeddings.weight" => ParamGroup::TokenTypeEmbeddings,
            n if n.contains("LayerNorm.") => ParamGroup::LayerNorm,
            n if n.ends_with(".lora_A.weight") => ParamGroup::LoraA,
            n if n.ends_with(".lora_B.weight") => ParamGroup::LoraB,
            n if n.ends_with(".bias") => ParamGroup::Bias,
            "encoder.relative_attention_bias.weight" => ParamGroup::RelativeAttentionBias,
            n if n.ends_with("attention.self.query.weight") => ParamGroup::Query,
            n if n.ends_with("attention.self.key.weight") => ParamGroup::Key,
            n if n.ends_with("attention.self.value.weight") => ParamGroup::Value,
            n if n.ends_with("attention.output.dense.weight") => ParamGroup::AttentionOutput,
            n if n.ends_with("attention.attn.q.weight") => ParamGroup::Query,
            n if n.ends_with("attention.attn.k.weight") => ParamGroup::Key,
            n if n.ends_with("attention.attn.v.weight") => ParamGroup::Value,
            n if n.ends_with("attention.attn.o.weight") => ParamGroup::AttentionOutput,
            n if n.ends_with("intermediate.dense.weight") => ParamGroup::Intermediate,
            n if n.ends_with("output.dense.weight") => ParamGroup::Output,
            _ => return None,
        })
    }

    /// The kebab-case name used in files (`word-embeddings`, `query`, `lora-b`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ParamGroup::WordEmbeddings => "word-embeddings",
            ParamGroup::PositionEmbeddings => "position-embeddings",
            ParamGroup::TokenTypeEmbeddings => "token-type-embeddings",
            ParamGroup::RelativeAttentionBias => "relative-attention-bias",
            ParamGroup::Query => "query",
            ParamGroup::Key => "key",
            ParamGroup::Value => "value",
            ParamGroup::AttentionOutput => "attention-output",
            ParamGroup::Intermediate => "intermediate",
            ParamGroup::Output => "output",
            ParamGroup::LayerNorm => "layer-norm",
            ParamGroup::Bias => "bias",
            ParamGroup::LoraA => "lora-a",
            ParamGroup::LoraB => "lora-b",
        }
    }
}

/// F between two sets of inputs, with its split over parameter groups.
#[derive(Debug, Clone)]
pub struct EntkResult {
    /// F, shape `[n1, C, n2, C]` (layout: [`Kernel`]); `Σ groups`.
    pub kernel: Kernel,
    /// The contribution of each parameter group present in θ; they sum to `kernel`.
    pub groups: BTreeMap<ParamGroup, Kernel>,
    /// Number of scalar parameters in θ.
    pub parameters: usize,
    /// Passes over the examples (layer groups, see [`EntkConfig::max_stored_bytes`]).
    pub passes: usize,
    /// Wall seconds spent in forward and backward passes (shared jobs count once, in each).
    pub gradient_seconds: f64,
    /// Wall seconds spent contracting factors into kernels.
    pub contraction_seconds: f64,
    /// Whether the per-example passes ran on the own backward (else candle's autograd; see
    /// [`EntkConfig::autograd`]).
    pub own_backward: bool,
}

impl EntkResult {
    /// `‖F_g‖_F` per group (the report's per-group Frobenius contributions).
    pub fn group_norms(&self) -> BTreeMap<ParamGroup, f64> {
        self.groups
            .iter()
            .map(|(g, k)| (*g, k.frobenius_norm()))
            .collect()
    }
}

/// Progress of [`compute`] / [`compute_train_eval`], for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntkProgress {
    /// Pass `index` (0-based) of `count` over the examples begins.
    Pass { index: usize, count: usize },
    /// Gradients of `done` of `total` examples of this pass are recorded.
    Gradients { done: usize, total: usize },
    /// `done` of `total` parameter blocks of this pass are contracted.
    Contraction { done: usize, total: usize },
}

/// One unpadded example per [`Inputs`] (batch 1), as the layer-wise eNTK takes them.
pub fn single_inputs(tokenizer: &TextTokenizer, encoded: &[Encoded]) -> Vec<Inputs> {
    encoded.iter().map(|e| tokenizer.batch(&[e])).collect()
}

/// Splits a (padded) batch into unpadded single examples: row i keeps its leading tokens with
/// mask 1.
///
/// # Errors
/// [`Error::Shape`] if the batch is inconsistent ([`Inputs::check`]).
pub fn split_batch(inputs: &Inputs) -> Result<Vec<Inputs>> {
    inputs.check()?;
    let l = inputs.seq_len;
    Ok((0..inputs.batch)
        .map(|i| {
            let row = i * l..(i + 1) * l;
            let len = inputs.attention_mask[row.clone()]
                .iter()
                .filter(|&&m| m != 0)
                .count();
            let take = |v: &[u32]| v[row.start..row.start + len].to_vec();
            Inputs {
                input_ids: take(&inputs.input_ids),
                token_type_ids: take(&inputs.token_type_ids),
                attention_mask: vec![1; len],
                batch: 1,
                seq_len: len,
            }
        })
        .collect())
}

/// F between `x1` and `x2` (`[n1, C, n2, C]`), or the symmetric train×train F of `x1` when
/// `x2` is `None` (computed once, exactly symmetric). Each [`Inputs`] is one example
/// (batch 1; see [`single_inputs`], [`split_batch`]); padding inside an example is allowed but
/// only costs time. C is the model's number of labels and V0 its head.
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad config, a θ with no parameter, an encoder parameter this
/// module does not know, or an input with batch ≠ 1; [`Error::Shape`] for empty or
/// inconsistent inputs; candle errors from the forward and backward passes.
pub fn compute(
    cfg: &EntkConfig,
    model: &SequenceClassifier,
    x1: &[Inputs],
    x2: Option<&[Inputs]>,
    progress: &mut dyn FnMut(&EntkProgress),
) -> Result<EntkResult> {
    let mut out = match x2 {
        None => run(cfg, model, &[x1], &[(0, None)], progress)?,
        Some(x2) => run(cfg, model, &[x1, x2], &[(0, Some(1))], progress)?,
    };
    Ok(out.remove(0))
}

/// The two kernels of an NTK analysis with one set of per-example gradients: the symmetric
/// train×train F (`[N, C, N, C]`) and the eval×train F (`[M, C, N, C]`, eval first as in REF).
///
/// # Errors
/// As [`compute`].
pub fn compute_train_eval(
    cfg: &EntkConfig,
    model: &SequenceClassifier,
    train: &[Inputs],
    eval: &[Inputs],
    progress: &mut dyn FnMut(&EntkProgress),
) -> Result<(EntkResult, EntkResult)> {
    let mut out = run(
        cfg,
        model,
        &[train, eval],
        &[(0, None), (1, Some(0))],
        progress,
    )?;
    let eval_train = out.pop().expect("two jobs");
    let train_train = out.pop().expect("two jobs");
    Ok((train_train, eval_train))
}

// ------------------------------------------------------------------------------------------
// The driver.

/// Computes the kernels `jobs` = (first set, second set or `None` for symmetric) over `sets`.
fn run(
    cfg: &EntkConfig,
    model: &SequenceClassifier,
    sets: &[&[Inputs]],
    jobs: &[Job],
    progress: &mut dyn FnMut(&EntkProgress),
) -> Result<Vec<EntkResult>> {
    cfg.validate()?;
    for set in sets {
        if set.is_empty() {
            return Err(Error::Shape {
                what: "eNTK inputs",
                expected: "at least one example".into(),
                found: "none".into(),
            });
        }
        for inputs in *set {
            inputs.check()?;
            if inputs.batch != 1 {
                return Err(Error::InvalidArgument {
                    field: "inputs".into(),
                    reason: format!(
                        "the layer-wise eNTK takes one example per Inputs, got a batch of {}",
                        inputs.batch
                    ),
                });
            }
        }
    }
    let catalog = Catalog::new(model, &cfg.params)?;
    let heads = head_rows(model)?;
    let c = heads.len();
    let tokens: usize = sets.iter().flat_map(|s| s.iter()).map(|i| i.seq_len).sum();
    let passes = catalog.passes(tokens, cfg.max_stored_bytes);
    let size = |s: usize| sets[s].len() * c;
    // Per job, per group: the [n1·C, n2·C] accumulator.
    let mut acc: Vec<BTreeMap<ParamGroup, Vec<f64>>> = vec![BTreeMap::new(); jobs.len()];
    let (mut grad_secs, mut contract_secs) = (0.0, 0.0);
    let mut scratch = Scratch::default();
    for (index, keys) in passes.iter().enumerate() {
        progress(&EntkProgress::Pass {
            index,
            count: passes.len(),
        });
        let started = std::time::Instant::now();
        let total: usize = sets.iter().map(|s| s.len()).sum();
        let mut done = 0;
        let mut blocks: Vec<Vec<Vec<(usize, Block)>>> = Vec::with_capacity(sets.len());
        for set in sets {
            let mut per_set = Vec::with_capacity(set.len());
            for inputs in *set {
                per_set.push(example_blocks(cfg, model, &catalog, keys, &heads, inputs)?);
                done += 1;
                progress(&EntkProgress::Gradients { done, total });
            }
            blocks.push(per_set);
        }
        grad_secs += started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        // Every example records the same parameters in the same order.
        let order: Vec<usize> = blocks[0][0].iter().map(|(p, _)| *p).collect();
        for per_set in &blocks {
            for ex in per_set {
                if ex.len() != order.len() || ex.iter().zip(&order).any(|((p, _), q)| p != q) {
                    return Err(inconsistent());
                }
            }
        }
        for (k, &p) in order.iter().enumerate() {
            let group = catalog.params[p].group;
            let per_set: Vec<Vec<&Block>> = blocks
                .iter()
                .map(|set| set.iter().map(|ex| &ex[k].1).collect())
                .collect();
            let mut outs: Vec<&mut [f64]> = Vec::with_capacity(jobs.len());
            for (groups, &(s1, s2)) in acc.iter_mut().zip(jobs) {
                let len = size(s1) * size(s2.unwrap_or(s1));
                outs.push(groups.entry(group).or_insert_with(|| vec![0.0; len]));
            }
            let t0 = std::time::Instant::now();
            contract_block(
                &per_set,
                jobs,
                c,
                cfg.contraction,
                cfg.precision,
                &mut outs,
                &mut scratch,
            )?;
            log::debug!(
                "eNTK block {k} ({}): {:.3} s",
                group.as_str(),
                t0.elapsed().as_secs_f64()
            );
            progress(&EntkProgress::Contraction {
                done: k + 1,
                total: order.len(),
            });
        }
        contract_secs += started.elapsed().as_secs_f64();
    }
    let mut results = Vec::with_capacity(jobs.len());
    for (groups, &(s1, s2)) in acc.into_iter().zip(jobs) {
        let (n1, n2) = (sets[s1].len(), sets[s2.unwrap_or(s1)].len());
        let mut total = vec![0.0; n1 * c * n2 * c];
        let mut kernels = BTreeMap::new();
        for (group, mut data) in groups {
            if s2.is_none() {
                mirror_upper(&mut data, n1 * c);
            }
            for (t, v) in total.iter_mut().zip(&data) {
                *t += v;
            }
            kernels.insert(group, Kernel::from_parts(data, [n1, c, n2, c])?);
        }
        results.push(EntkResult {
            kernel: Kernel::from_parts(total, [n1, c, n2, c])?,
            groups: kernels,
            parameters: catalog.parameters,
            passes: passes.len(),
            gradient_seconds: grad_secs,
            contraction_seconds: contract_secs,
            own_backward: own_backward(cfg, model),
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_sites_and_groups() {
        let q = "encoder.layer.3.attention.self.query.weight";
        assert_eq!(classify(q), Some((q.to_string(), Role::Weight, 4)));
        assert_eq!(
            classify("encoder.layer.0.attention.self.value.lora_B.weight"),
            Some((
                "encoder.layer.0.attention.self.value.weight".to_string(),
                Role::LoraB,
                1
            ))
        );
        assert_eq!(
            classify("encoder.layer.1.output.LayerNorm.bias"),
            Some((
                "encoder.layer.1.output.LayerNorm.weight".to_string(),
                Role::Beta,
                2
            ))
        );
        assert_eq!(
            classify("embeddings.position_embeddings.weight"),
            Some((
                "embeddings.word_embeddings.weight".to_string(),
                Role::Position,
                0
            ))
        );
        assert_eq!(classify("pooler.dense.weight"), None);
        assert_eq!(ParamGroup::of(q), Some(ParamGroup::Query));
        assert_eq!(
            ParamGroup::of("encoder.layer.0.output.dense.weight"),
            Some(ParamGroup::Output)
        );
        assert_eq!(
            ParamGroup::of("encoder.layer.0.attention.output.dense.weight"),
            Some(ParamGroup::AttentionOutput)
        );
        assert_eq!(
            ParamGroup::of("encoder.layer.0.attention.output.LayerNorm.bias"),
            Some(ParamGroup::LayerNorm)
        );
        assert_eq!(ParamGroup::of("encoder.rel_attn_bias.weight"), None);
    }

    /// Random f32 factors from a fixed stream.
    fn factors(rows: usize, dx: usize, dg: usize, c: usize, seed: u64) -> Block {
        let mut rng = crate::rng::Streams::new(seed).get("test");
        let x = crate::rng::normal_vec(&mut rng, rows * dx, 0.0, 1.0);
        let g = crate::rng::normal_vec(&mut rng, c * rows * dg, 0.0, 1.0);
        Block::Outer {
            x: Arc::new(x),
            g: Arc::new(g),
            rows,
            dx,
            dg,
            scale: 0.5,
        }
    }

    /// The two weight contractions and an explicit sum agree.
    #[test]
    fn materialized_and_token_pairs_agree_with_explicit_gradients() {
        // f64 sums of ~50 products of O(1) numbers: round-off ~1e-14 relative.
        const TOL: f64 = 1e-12;
        // The same sums in f32 (unit round-off 6e-8, ~50 terms and a few cancelling signs).
        const TOL_F32: f64 = 1e-5;
        let c = 2;
        let blocks: Vec<Block> = [(3, 11), (1, 12), (4, 13)]
            .iter()
            .map(|&(rows, seed)| factors(rows, 5, 4, c, seed))
            .collect();
        let refs: Vec<&Block> = blocks.iter().collect();
        let explicit = |blk: &Block| -> Vec<Vec<f64>> {
            let Block::Outer {
                x,
                g,
                rows,
                dx,
                dg,
                scale,
            } = blk
            else {
                unreachable!()
            };
            (0..c)
                .map(|cc| {
                    let mut w = vec![0.0; dg * dx];
                    for t in 0..*rows {
                        for o in 0..*dg {
                            for k in 0..*dx {
                                w[o * dx + k] += scale
                                    * f64::from(g[(cc * rows + t) * dg + o])
                                    * f64::from(x[t * dx + k]);
                            }
                        }
                    }
                    w
                })
                .collect()
        };
        let grads: Vec<Vec<Vec<f64>>> = blocks.iter().map(explicit).collect();
        let n = blocks.len();
        let ways = [
            (Contraction::Materialize, ContractionPrecision::F64, TOL),
            (Contraction::Materialize, ContractionPrecision::F32, TOL_F32),
            (Contraction::TokenPairs, ContractionPrecision::F64, TOL),
        ];
        for (strategy, precision, tol) in ways {
            for sym in [true, false] {
                let mut out = vec![0.0; n * c * n * c];
                let sets = vec![refs.clone(), refs.clone()];
                let job = if sym { (0, None) } else { (0, Some(1)) };
                let mut scratch = Scratch::default();
                let mut outs = [out.as_mut_slice()];
                contract_block(
                    &sets,
                    &[job],
                    c,
                    strategy,
                    precision,
                    &mut outs,
                    &mut scratch,
                )
                .unwrap();
                if sym {
                    mirror_upper(&mut out, n * c);
                }
                for i in 0..n {
                    for ca in 0..c {
                        for j in 0..n {
                            for cb in 0..c {
                                let want = crate::ntk::kernel::dot(&grads[i][ca], &grads[j][cb]);
                                let got = out[(i * c + ca) * n * c + j * c + cb];
                                assert!(
                                    (got - want).abs() <= tol * want.abs().max(1.0),
                                    "{strategy:?} {precision:?} sym={sym} ({i},{ca},{j},{cb}): \
                                     {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn embedding_rows_aggregate_by_id() {
        // ids [5, 2, 5], C = 1, h = 2: row 5 = g0 + g2, row 2 = g1.
        let g = [1.0f32, 2.0, 10.0, 20.0, 100.0, 200.0];
        let Block::Sparse { ids, vals, h } = aggregate_rows(&[5, 2, 5], &g, 1, 2) else {
            unreachable!()
        };
        assert_eq!((ids, h), (vec![2, 5], 2));
        assert_eq!(vals, vec![10.0, 20.0, 101.0, 202.0]);
    }
}
