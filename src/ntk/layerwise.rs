//! The FT-effective component F of the empirical NTK, exactly and layer by layer (docs/method.md §7.1,
//! §13): `F(x, x′)_{cc′} = Σ_θ ⟨∂s_c(x)/∂θ, ∂s_{c′}(x′)/∂θ⟩` with `s_c(x) = v_c·φ(x)` and V0 the
//! model's head (the head at the start of the method's gradient stage).
//!
//! For every example x (one unpadded sequence) the encoder runs once in
//! [`Mode::Record`] and then backward once per logit c (C passes).
//! The [`Recorder`] hands back, per layer, what the parameter gradients factor into:
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
use crate::ntk::config::{Contraction, EntkConfig, ForwardPath, ParamSet};
use crate::ntk::kernel::Kernel;

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
    /// `attention.self.query.weight` of every layer.
    Query,
    /// `attention.self.key.weight`.
    Key,
    /// `attention.self.value.weight`.
    Value,
    /// `attention.output.dense.weight`.
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
            n if n.ends_with("attention.self.query.weight") => ParamGroup::Query,
            n if n.ends_with("attention.self.key.weight") => ParamGroup::Key,
            n if n.ends_with("attention.self.value.weight") => ParamGroup::Value,
            n if n.ends_with("attention.output.dense.weight") => ParamGroup::AttentionOutput,
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
// The parameter catalogue: which sites to record and which blocks each yields.

/// What a parameter is to its recording site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Weight,
    Bias,
    LoraA,
    LoraB,
    Gamma,
    Beta,
    Word,
    Position,
    TokenType,
}

/// A selected parameter: its report group and its role at the recording site.
#[derive(Debug, Clone)]
struct ParamInfo {
    group: ParamGroup,
    role: Role,
}

/// A recording site with selected parameters.
#[derive(Debug, Clone)]
struct SiteInfo {
    /// Name of the key parameter (for error messages).
    key_name: String,
    /// Indices into `Catalog::params`, in catalogue order.
    params: Vec<usize>,
    /// Pass unit: 0 = embeddings, l + 1 = encoder layer l.
    unit: usize,
    /// Stored bytes per token of one example (estimate, for the memory budget).
    bytes_per_token: usize,
}

struct Catalog {
    params: Vec<ParamInfo>,
    sites: HashMap<TensorId, SiteInfo>,
    units: usize,
    parameters: usize,
}

/// The key parameter name and role of a parameter name, and its pass unit.
fn classify(name: &str) -> Option<(String, Role, usize)> {
    let unit = if name.starts_with("embeddings.") {
        0
    } else {
        let rest = name.strip_prefix("encoder.layer.")?;
        let l: usize = rest.split('.').next()?.parse().ok()?;
        l + 1
    };
    let word = "embeddings.word_embeddings.weight".to_string();
    let (key, role) = match name {
        "embeddings.word_embeddings.weight" => (word, Role::Word),
        "embeddings.position_embeddings.weight" => (word, Role::Position),
        "embeddings.token_type_embeddings.weight" => (word, Role::TokenType),
        n if n.contains("LayerNorm.") => {
            let path = n.rsplit_once('.')?.0;
            let role = if n.ends_with(".weight") {
                Role::Gamma
            } else if n.ends_with(".bias") {
                Role::Beta
            } else {
                return None;
            };
            (format!("{path}.weight"), role)
        }
        n if n.ends_with(".lora_A.weight") => (
            format!("{}.weight", n.strip_suffix(".lora_A.weight")?),
            Role::LoraA,
        ),
        n if n.ends_with(".lora_B.weight") => (
            format!("{}.weight", n.strip_suffix(".lora_B.weight")?),
            Role::LoraB,
        ),
        n if n.ends_with(".bias") => (format!("{}.weight", n.strip_suffix(".bias")?), Role::Bias),
        n if n.ends_with(".weight") => (n.to_string(), Role::Weight),
        _ => return None,
    };
    Some((key, role, unit))
}

impl Catalog {
    fn new(model: &SequenceClassifier, set: &ParamSet) -> Result<Self> {
        let all = model.encoder.parameters();
        let by_name: HashMap<&str, &Tensor> = all.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let c = model.head.num_labels();
        let mut params = Vec::new();
        let mut sites: HashMap<TensorId, SiteInfo> = HashMap::new();
        let mut parameters = 0;
        let mut units = 0;
        for (name, t) in &all {
            if !set.includes(name) {
                continue;
            }
            let unsupported = || Error::InvalidArgument {
                field: "params".into(),
                reason: format!("the layer-wise eNTK does not know the parameter `{name}`"),
            };
            let (key_name, role, unit) = classify(name).ok_or_else(unsupported)?;
            let group = ParamGroup::of(name).ok_or_else(unsupported)?;
            let key = by_name.get(key_name.as_str()).ok_or_else(unsupported)?;
            let key_dims = key.dims().to_vec();
            let h = *key_dims.last().unwrap_or(&0);
            // Bytes stored per token: X and G (f32) for dense layers, plus X Aᵀ and G B for
            // LoRA; the aggregated f64 rows of each embedding table.
            let bytes = match role {
                Role::Word | Role::Position | Role::TokenType => 8 * c * h,
                Role::Gamma | Role::Beta => 0,
                Role::Weight | Role::Bias | Role::LoraA | Role::LoraB => {
                    let (d_out, d_in) = (key_dims[0], key_dims[1]);
                    let r = if matches!(role, Role::LoraA | Role::LoraB) {
                        t.dims()[0].min(t.dims()[1])
                    } else {
                        0
                    };
                    4 * (d_in + c * d_out + r * (1 + c))
                }
            };
            let site = sites.entry(key.id()).or_insert_with(|| SiteInfo {
                key_name: key_name.clone(),
                params: Vec::new(),
                unit,
                bytes_per_token: 0,
            });
            // X and G are shared by the blocks of one dense layer: count them once.
            site.bytes_per_token = site.bytes_per_token.max(bytes);
            site.params.push(params.len());
            params.push(ParamInfo { group, role });
            parameters += t.elem_count();
            units = units.max(unit + 1);
        }
        if params.is_empty() {
            return Err(Error::InvalidArgument {
                field: "params".into(),
                reason: format!("{set:?} selects no encoder parameter"),
            });
        }
        Ok(Self {
            params,
            sites,
            units,
            parameters,
        })
    }

    /// Groups of units, one per pass, each within `budget` bytes for `tokens` total tokens.
    fn passes(&self, tokens: usize, budget: usize) -> Vec<HashSet<TensorId>> {
        let mut per_unit = vec![0usize; self.units];
        for s in self.sites.values() {
            per_unit[s.unit] += s.bytes_per_token * tokens;
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut used = 0usize;
        for (u, &bytes) in per_unit.iter().enumerate() {
            if bytes == 0 && !self.sites.values().any(|s| s.unit == u) {
                continue;
            }
            match groups.last_mut() {
                Some(g) if used + bytes <= budget => {
                    g.push(u);
                    used += bytes;
                }
                _ => {
                    groups.push(vec![u]);
                    used = bytes;
                }
            }
        }
        groups
            .into_iter()
            .map(|units| {
                self.sites
                    .iter()
                    .filter(|(_, s)| units.contains(&s.unit))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .collect()
    }
}

// ------------------------------------------------------------------------------------------
// Per-example factors.

/// The gradient factors of one parameter for one example, for all C logits.
#[derive(Debug, Clone)]
enum Block {
    /// The per-logit gradients themselves, `[C, dim]` (biases, LayerNorm).
    Dense { rows: Vec<f64>, dim: usize },
    /// Embedding-table rows: sorted distinct `ids` and their per-logit gradients `[k, C, h]`.
    Sparse {
        ids: Vec<u32>,
        vals: Vec<f64>,
        h: usize,
    },
    /// `scale·Σ_t g_{c,t} x_tᵀ` with `x` `[rows, dx]` and `g` `[C, rows, dg]` (f32).
    Outer {
        x: Arc<Vec<f32>>,
        g: Arc<Vec<f32>>,
        rows: usize,
        dx: usize,
        dg: usize,
        scale: f64,
    },
}

/// The per-logit head rows `v_c` `[1, h]` (detached: the head is not in θ).
fn head_rows(model: &SequenceClassifier) -> Result<Vec<Tensor>> {
    let v = model.head.weight.detach();
    (0..model.head.num_labels())
        .map(|c| Ok(v.narrow(0, c, 1)?))
        .collect()
}

/// φ(x) `[1, h]` along `path`.
fn features(
    model: &SequenceClassifier,
    inputs: &Inputs,
    path: ForwardPath,
    mode: &mut Mode,
) -> Result<Tensor> {
    match (model.pooling, path) {
        (Pooling::First, ForwardPath::FirstToken) => model.encoder.forward_first(inputs, mode),
        (pooling, _) => {
            let hidden = model.encoder.forward(inputs, mode)?;
            pooling.apply(&hidden, inputs)
        }
    }
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Sums the rows of `g` `[C, rows, h]` by id: sorted distinct ids and `[k, C, h]` sums.
fn aggregate_rows(ids: &[u32], g: &[f32], c: usize, h: usize) -> Block {
    let rows = ids.len();
    let mut distinct: Vec<u32> = ids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut vals = vec![0f64; distinct.len() * c * h];
    for (t, id) in ids.iter().enumerate() {
        let k = distinct.binary_search(id).expect("id listed above");
        for cc in 0..c {
            let src = &g[(cc * rows + t) * h..(cc * rows + t + 1) * h];
            let dst = &mut vals[(k * c + cc) * h..(k * c + cc + 1) * h];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += f64::from(*s);
            }
        }
    }
    Block::Sparse {
        ids: distinct,
        vals,
        h,
    }
}

/// Forward with a recorder for `keys`, C backward passes, and the blocks of the selected
/// parameters in recording order (each tagged with its catalogue index).
fn example_blocks(
    cfg: &EntkConfig,
    model: &SequenceClassifier,
    catalog: &Catalog,
    keys: &HashSet<TensorId>,
    heads: &[Tensor],
    inputs: &Inputs,
) -> Result<Vec<(usize, Block)>> {
    let rec = Recorder::new(keys.iter().copied());
    let phi = features(model, inputs, cfg.path, &mut Mode::Record(&rec))?;
    let sites = rec.take_sites();
    let c = heads.len();
    // Per site and logit: the probe gradient (LayerNorm: γ then β), f32 on the host.
    let mut grads: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(c); sites.len()];
    // LoRA G·B per site and logit (only where lora_A is selected).
    let mut gb: Vec<Vec<f32>> = vec![Vec::new(); sites.len()];
    let needs = |site: &Site, role: Role| {
        catalog.sites[&site.key()]
            .params
            .iter()
            .any(|&p| catalog.params[p].role == role)
    };
    for v in heads {
        let s = phi.broadcast_mul(v)?.sum_all()?;
        let store = s.backward()?;
        for (k, site) in sites.iter().enumerate() {
            let grad = |t: &Tensor, like: &Tensor| -> Result<Tensor> {
                match store.get(t) {
                    Some(g) => Ok(g.clone()),
                    // Not reached by this logit (cannot happen for φ's own layers, but an
                    // unreachable site has zero gradient by definition).
                    None => Ok(like.zeros_like()?),
                }
            };
            match site {
                Site::Embeddings { probe, .. } => {
                    grads[k].push(host_f32(&grad(probe.as_tensor(), probe.as_tensor())?)?);
                }
                Site::LayerNorm { weight, bias, .. } => {
                    let mut gw = host_f32(&grad(weight.as_tensor(), weight.as_tensor())?)?;
                    gw.extend(host_f32(&grad(bias.as_tensor(), bias.as_tensor())?)?);
                    grads[k].push(gw);
                }
                Site::Linear { probe, lora, .. } => {
                    let g = grad(probe.as_tensor(), probe.as_tensor())?;
                    if let (Some(lora), true) = (lora, needs(site, Role::LoraA)) {
                        gb[k].extend(host_f32(&g.matmul(&lora.b.detach())?)?);
                    }
                    grads[k].push(host_f32(&g)?);
                }
            }
        }
    }
    let mut blocks = Vec::new();
    for (k, site) in sites.iter().enumerate() {
        let info = catalog
            .sites
            .get(&site.key())
            .expect("the recorder only records catalogued keys");
        let g = &grads[k];
        match site {
            Site::Embeddings {
                input_ids,
                position_ids,
                token_type_ids,
                ..
            } => {
                let h = g[0].len() / input_ids.len();
                let flat: Vec<f32> = g.concat();
                for &p in &info.params {
                    let ids = match catalog.params[p].role {
                        Role::Word => input_ids,
                        Role::Position => position_ids,
                        Role::TokenType => token_type_ids,
                        _ => return Err(site_mismatch(info)),
                    };
                    blocks.push((p, aggregate_rows(ids, &flat, c, h)));
                }
            }
            Site::LayerNorm { weight, .. } => {
                let h = weight.elem_count();
                for &p in &info.params {
                    let offset = match catalog.params[p].role {
                        Role::Gamma => 0,
                        Role::Beta => h,
                        _ => return Err(site_mismatch(info)),
                    };
                    let rows: Vec<f64> = g
                        .iter()
                        .flat_map(|gc| gc[offset..offset + h].iter().map(|&v| f64::from(v)))
                        .collect();
                    blocks.push((p, Block::Dense { rows, dim: h }));
                }
            }
            Site::Linear { input, lora, .. } => {
                let (rows, d_in) = input.dims2()?;
                let d_out = g[0].len() / rows.max(1);
                let x = Arc::new(host_f32(input)?);
                let gg = Arc::new(g.concat());
                for &p in &info.params {
                    let block = match (catalog.params[p].role, lora) {
                        (Role::Weight, _) => Block::Outer {
                            x: x.clone(),
                            g: gg.clone(),
                            rows,
                            dx: d_in,
                            dg: d_out,
                            scale: 1.0,
                        },
                        (Role::Bias, _) => {
                            let mut sums = vec![0f64; c * d_out];
                            for (cc, gc) in g.iter().enumerate() {
                                let dst = &mut sums[cc * d_out..(cc + 1) * d_out];
                                for row in gc.chunks_exact(d_out) {
                                    for (d, v) in dst.iter_mut().zip(row) {
                                        *d += f64::from(*v);
                                    }
                                }
                            }
                            Block::Dense {
                                rows: sums,
                                dim: d_out,
                            }
                        }
                        (Role::LoraA, Some(lora)) => Block::Outer {
                            x: x.clone(),
                            g: Arc::new(std::mem::take(&mut gb[k])),
                            rows,
                            dx: d_in,
                            dg: lora.a.dims()[0],
                            scale: lora.scale,
                        },
                        (Role::LoraB, Some(lora)) => {
                            let u = input.matmul(&lora.a.detach().t()?)?;
                            Block::Outer {
                                x: Arc::new(host_f32(&u)?),
                                g: gg.clone(),
                                rows,
                                dx: lora.a.dims()[0],
                                dg: d_out,
                                scale: lora.scale,
                            }
                        }
                        _ => return Err(site_mismatch(info)),
                    };
                    blocks.push((p, block));
                }
            }
        }
    }
    Ok(blocks)
}

fn site_mismatch(info: &SiteInfo) -> Error {
    Error::InvalidArgument {
        field: "params".into(),
        reason: format!(
            "the layer recorded for `{}` does not hold the selected parameters",
            info.key_name
        ),
    }
}

// ------------------------------------------------------------------------------------------
// Contraction.

/// A kernel to fill: rows from set `.0`, columns from set `.1` (`None`: `.0` itself, symmetric).
type Job = (usize, Option<usize>);

/// Values of a materialised weight-gradient slice kept at once per set (f64): 128 MiB.
const MATERIALIZE_ELEMS: usize = 1 << 24;

/// Columns per block of the blocked Gram product: 4096 measured fastest for 192 rows on 2
/// AVX-512 cores (a 192 × 590k Gram in 0.27 s symmetric, 0.39 s full).
const GRAM_BLOCK: usize = 4096;
/// Column blocks per parallel task: small enough that a materialised slice (≥ 20k columns)
/// still splits into several tasks. The task sums are added in task order, so the result does
/// not depend on the thread count or on scheduling.
const GRAM_BLOCKS_PER_TASK: usize = 2;

/// Adds one parameter's kernel `K[(i,c), (j,c′)]` for every job into `outs[job]`
/// (`[n1·C, n2·C]`); the blocks of set s are `sets[s]`, one per example. Per-set work (gathering,
/// materialising gradient slices) is done once for all jobs. In a symmetric job only pairs
/// j ≥ i (and the upper triangle of Gram products) are filled.
fn contract_block(
    sets: &[Vec<&Block>],
    jobs: &[Job],
    c: usize,
    contraction: Contraction,
    outs: &mut [&mut [f64]],
    scratch: &mut Scratch,
) -> Result<()> {
    let used: Vec<usize> = {
        let mut u: Vec<usize> = jobs
            .iter()
            .flat_map(|&(a, b)| [Some(a), b])
            .flatten()
            .collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    let first = match used.first().and_then(|&s| sets[s].first()) {
        Some(b) => *b,
        None => return Ok(()),
    };
    match first {
        Block::Dense { dim, .. } => {
            let mut gathered: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            for &s in &used {
                let mut m = Vec::with_capacity(sets[s].len() * c * dim);
                for blk in &sets[s] {
                    match blk {
                        Block::Dense { rows, .. } => m.extend_from_slice(rows),
                        _ => return Err(inconsistent()),
                    }
                }
                gathered.insert(s, m);
            }
            for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
                let b = s2.map(|s| gathered[&s].as_slice());
                gram(out, &gathered[&s1], b, sets[s1].len() * c, *dim);
            }
        }
        Block::Sparse { .. } => {
            for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
                let a = sparse_refs(&sets[s1])?;
                let b = s2.map(|s| sparse_refs(&sets[s])).transpose()?;
                contract_sparse(&a, b.as_deref(), c, out);
            }
        }
        Block::Outer { dx, dg, .. } => {
            let (dx, dg) = (*dx, *dg);
            let mut refs: BTreeMap<usize, Vec<OuterRef>> = BTreeMap::new();
            for &s in &used {
                let r = outer_refs(&sets[s])?;
                if r.iter().any(|o| o.dx != dx || o.dg != dg) {
                    return Err(inconsistent());
                }
                refs.insert(s, r);
            }
            let rows = |s: usize| -> f64 { refs[&s].iter().map(|o| o.rows as f64).sum() };
            let strategy = match contraction {
                Contraction::Auto => {
                    // Multiply-adds of each way (symmetric jobs count half their pairs in both).
                    let (cf, dxf, dgf) = (c as f64, dx as f64, dg as f64);
                    let form: f64 = used.iter().map(|&s| rows(s) * cf * dxf * dgf).sum();
                    let (mut gram_cost, mut pair_cost) = (0.0, 0.0);
                    for &(s1, s2) in jobs {
                        let n1 = refs[&s1].len() as f64;
                        let n2 = s2.map_or(n1, |s| refs[&s].len() as f64);
                        let (r1, r2) = (rows(s1), s2.map_or(rows(s1), rows));
                        let half = if s2.is_none() { 0.5 } else { 1.0 };
                        gram_cost += half * n1 * n2 * cf * cf * dxf * dgf;
                        pair_cost += half * r1 * r2 * (dxf + cf * cf * dgf);
                    }
                    if pair_cost < form + gram_cost {
                        Contraction::TokenPairs
                    } else {
                        Contraction::Materialize
                    }
                }
                s => s,
            };
            match strategy {
                Contraction::TokenPairs => contract_pairs(&refs, jobs, c, outs),
                _ => contract_materialized(&refs, jobs, c, outs, scratch),
            }
        }
    }
    Ok(())
}

fn outer_refs<'a>(blocks: &[&'a Block]) -> Result<Vec<OuterRef<'a>>> {
    blocks
        .iter()
        .map(|blk| match blk {
            Block::Outer {
                x,
                g,
                rows,
                dx,
                dg,
                scale,
            } => Ok(OuterRef {
                x,
                g,
                rows: *rows,
                dx: *dx,
                dg: *dg,
                scale: *scale,
            }),
            _ => Err(inconsistent()),
        })
        .collect()
}

/// Borrowed [`Block::Sparse`]: ids, values `[k, C, h]`, h.
type SparseRef<'a> = (&'a [u32], &'a [f64], usize);

fn sparse_refs<'a>(blocks: &[&'a Block]) -> Result<Vec<SparseRef<'a>>> {
    blocks
        .iter()
        .map(|blk| match blk {
            Block::Sparse { ids, vals, h } => Ok((ids.as_slice(), vals.as_slice(), *h)),
            _ => Err(inconsistent()),
        })
        .collect()
}

fn inconsistent() -> Error {
    Error::Shape {
        what: "eNTK parameter block",
        expected: "the same kind and shape of factors for every example".into(),
        found: "a different one".into(),
    }
}

/// `out += A Bᵀ` with A `[ra, k]`, B `[rb, k]` row-major; B = None means B = A, and then only the
/// upper triangle of `out` (square) is updated. Blocked over k: each task sums
/// [`GRAM_BLOCKS_PER_TASK`] column blocks sequentially and the task sums are added in order
/// (deterministic).
pub(crate) fn gram(out: &mut [f64], a: &[f64], b: Option<&[f64]>, ra: usize, k: usize) {
    if ra == 0 || k == 0 {
        return;
    }
    let rb = b.map_or(ra, |b| b.len() / k);
    let blocks: Vec<usize> = (0..k.div_ceil(GRAM_BLOCK)).collect();
    let partial: Vec<Vec<f64>> = blocks
        .par_chunks(GRAM_BLOCKS_PER_TASK)
        .map(|task| {
            let mut acc = vec![0.0; ra * rb];
            for &blk in task {
                let k0 = blk * GRAM_BLOCK;
                let w = GRAM_BLOCK.min(k - k0);
                let am = MatRef::from_row_major_slice_with_stride(&a[k0..], ra, w, k);
                let om = MatMut::from_row_major_slice_mut(&mut acc, ra, rb);
                match b {
                    Some(b) => {
                        let bm = MatRef::from_row_major_slice_with_stride(&b[k0..], rb, w, k);
                        matmul(om, Accum::Add, am, bm.transpose(), 1.0, Par::Seq);
                    }
                    None => triangular::matmul(
                        om,
                        BlockStructure::TriangularUpper,
                        Accum::Add,
                        am,
                        BlockStructure::Rectangular,
                        am.transpose(),
                        BlockStructure::Rectangular,
                        1.0,
                        Par::Seq,
                    ),
                }
            }
            acc
        })
        .collect();
    for p in &partial {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// Embedding blocks: `Σ_{common ids} ⟨row_c(x), row_{c′}(x′)⟩` by a merge of the sorted ids.
fn contract_sparse(a: &[SparseRef], b: Option<&[SparseRef]>, c: usize, out: &mut [f64]) {
    let sym = b.is_none();
    let sb = b.unwrap_or(a);
    let nb = sb.len();
    out.par_chunks_mut(c * nb * c)
        .enumerate()
        .for_each(|(i, dst)| {
            let (ids_i, vals_i, h) = a[i];
            let start = if sym { i } else { 0 };
            for (j, &(ids_j, vals_j, _)) in sb.iter().enumerate().skip(start) {
                let (mut p, mut q) = (0, 0);
                while p < ids_i.len() && q < ids_j.len() {
                    match ids_i[p].cmp(&ids_j[q]) {
                        std::cmp::Ordering::Less => p += 1,
                        std::cmp::Ordering::Greater => q += 1,
                        std::cmp::Ordering::Equal => {
                            for ca in 0..c {
                                let ra = &vals_i[(p * c + ca) * h..(p * c + ca + 1) * h];
                                for cb in 0..c {
                                    let rb = &vals_j[(q * c + cb) * h..(q * c + cb + 1) * h];
                                    dst[ca * nb * c + j * c + cb] +=
                                        crate::ntk::kernel::dot(ra, rb);
                                }
                            }
                            p += 1;
                            q += 1;
                        }
                    }
                }
            }
        });
}

/// A borrowed [`Block::Outer`].
#[derive(Clone, Copy)]
struct OuterRef<'a> {
    x: &'a [f32],
    g: &'a [f32],
    rows: usize,
    dx: usize,
    dg: usize,
    scale: f64,
}

/// Buffers reused across parameter blocks: a materialised slice is up to 128 MiB per set, and
/// fresh buffers that size would each be mapped and page-faulted anew.
#[derive(Default)]
struct Scratch {
    slices: BTreeMap<usize, Vec<f64>>,
}

/// Forms the gradient rows `scale·g_c[:, o0..o0+w]ᵀ x` (`[w, dx]` each, row-major) of every
/// (example, logit) into `out`: `[n·C, w·dx]`.
fn materialize(o: &[OuterRef], c: usize, o0: usize, w: usize, out: &mut Vec<f64>) {
    let dx = o[0].dx;
    // Every value is overwritten below; resizing within capacity does not allocate.
    out.resize(o.len() * c * w * dx, 0.0);
    out.par_chunks_mut(c * w * dx)
        .zip(o.par_iter())
        .for_each(|(dst, e)| {
            let x: Vec<f64> = e.x.iter().map(|&v| f64::from(v)).collect();
            let xm = MatRef::from_row_major_slice(&x, e.rows, dx);
            // All C logits in one product: [rows, C·w] with column block c = g_c[:, o0..o0+w],
            // so that (·)ᵀx is [C·w, dx] = the C destination rows back to back.
            let mut gall = vec![0f64; e.rows * c * w];
            for (t, dst_t) in gall.chunks_exact_mut(c * w).enumerate() {
                for (cc, d) in dst_t.chunks_exact_mut(w).enumerate() {
                    let row = (cc * e.rows + t) * e.dg + o0;
                    for (a, &v) in d.iter_mut().zip(&e.g[row..row + w]) {
                        *a = f64::from(v);
                    }
                }
            }
            let gm = MatRef::from_row_major_slice(&gall, e.rows, c * w);
            let om = MatMut::from_row_major_slice_mut(dst, c * w, dx);
            matmul(om, Accum::Replace, gm.transpose(), xm, e.scale, Par::Seq);
        });
}

/// Weight blocks through materialised per-example gradients, a slice of output rows at a time;
/// each set's slice is formed once for all jobs.
fn contract_materialized(
    refs: &BTreeMap<usize, Vec<OuterRef>>,
    jobs: &[Job],
    c: usize,
    outs: &mut [&mut [f64]],
    scratch: &mut Scratch,
) {
    let first = refs.values().next().expect("at least one set")[0];
    let (dx, dg) = (first.dx, first.dg);
    let n_max = refs.values().map(Vec::len).max().unwrap_or(1);
    let w = (MATERIALIZE_ELEMS / (n_max * c * dx).max(1)).clamp(1, dg);
    let mut o0 = 0;
    while o0 < dg {
        let width = w.min(dg - o0);
        for (&s, o) in refs {
            materialize(o, c, o0, width, scratch.slices.entry(s).or_default());
        }
        let j = &scratch.slices;
        for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
            let b = s2.map(|s| j[&s].as_slice());
            gram(out, &j[&s1], b, refs[&s1].len() * c, width * dx);
        }
        o0 += width;
    }
}

/// Weight blocks over token pairs: `scale·scale′·Σ_{t,s} (G_c G′_{c′}ᵀ)_{ts}(X X′ᵀ)_{ts}`.
fn contract_pairs(
    refs: &BTreeMap<usize, Vec<OuterRef>>,
    jobs: &[Job],
    c: usize,
    outs: &mut [&mut [f64]],
) {
    // Widened (f64) x and g of every example, once per set.
    type Widened = Vec<(Vec<f64>, Vec<f64>)>;
    let wide: BTreeMap<usize, Widened> = refs
        .iter()
        .map(|(&s, o)| {
            let w = o
                .par_iter()
                .map(|e| {
                    (
                        e.x.iter().map(|&v| f64::from(v)).collect(),
                        e.g.iter().map(|&v| f64::from(v)).collect(),
                    )
                })
                .collect();
            (s, w)
        })
        .collect();
    for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
        let (a, wa) = (&refs[&s1], &wide[&s1]);
        let sb = s2.unwrap_or(s1);
        let (b, wb) = (&refs[&sb], &wide[&sb]);
        let sym = s2.is_none();
        let nb = b.len();
        let (dx, dg) = (a[0].dx, a[0].dg);
        out.par_chunks_mut(c * nb * c)
            .enumerate()
            .for_each(|(i, dst)| {
                let (ei, (xi, gi)) = (&a[i], &wa[i]);
                let xim = MatRef::from_row_major_slice(xi, ei.rows, dx);
                let gim = MatRef::from_row_major_slice(gi, c * ei.rows, dg);
                let start = if sym { i } else { 0 };
                for j in start..nb {
                    let (ej, (xj, gj)) = (&b[j], &wb[j]);
                    let xjm = MatRef::from_row_major_slice(xj, ej.rows, dx);
                    let gjm = MatRef::from_row_major_slice(gj, c * ej.rows, dg);
                    let mut s = vec![0f64; ei.rows * ej.rows];
                    matmul(
                        MatMut::from_row_major_slice_mut(&mut s, ei.rows, ej.rows),
                        Accum::Replace,
                        xim,
                        xjm.transpose(),
                        1.0,
                        Par::Seq,
                    );
                    let mut gg = vec![0f64; c * ei.rows * c * ej.rows];
                    matmul(
                        MatMut::from_row_major_slice_mut(&mut gg, c * ei.rows, c * ej.rows),
                        Accum::Replace,
                        gim,
                        gjm.transpose(),
                        1.0,
                        Par::Seq,
                    );
                    let cols = c * ej.rows;
                    for ca in 0..c {
                        for cb in 0..c {
                            let mut acc = 0.0;
                            for t in 0..ei.rows {
                                let grow =
                                    &gg[(ca * ei.rows + t) * cols + cb * ej.rows..][..ej.rows];
                                let srow = &s[t * ej.rows..(t + 1) * ej.rows];
                                acc += crate::ntk::kernel::dot(grow, srow);
                            }
                            dst[ca * nb * c + j * c + cb] += ei.scale * ej.scale * acc;
                        }
                    }
                }
            });
    }
}

/// Copies the upper triangle of a square row-major matrix onto its lower triangle.
pub(crate) fn mirror_upper(m: &mut [f64], n: usize) {
    for r in 1..n {
        for s in 0..r {
            m[r * n + s] = m[s * n + r];
        }
    }
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
            contract_block(&per_set, jobs, c, cfg.contraction, &mut outs, &mut scratch)?;
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
        for strategy in [Contraction::Materialize, Contraction::TokenPairs] {
            for sym in [true, false] {
                let mut out = vec![0.0; n * c * n * c];
                let sets = vec![refs.clone(), refs.clone()];
                let job = if sym { (0, None) } else { (0, Some(1)) };
                let mut scratch = Scratch::default();
                contract_block(&sets, &[job], c, strategy, &mut [&mut out], &mut scratch).unwrap();
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
                                    (got - want).abs() <= TOL * want.abs().max(1.0),
                                    "{strategy:?} sym={sym} ({i},{ca},{j},{cb}): {got} vs {want}"
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
