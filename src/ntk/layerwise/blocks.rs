//! Per-example gradient factors: the recorded inputs and output gradients of each site, turned into
//! the blocks the contraction takes.

use super::*;
use crate::model::backprop::{record_logit_grads, Backprop};
use crate::model::fused::matmul;
use crate::model::record::{HostLora, Recorded};

/// The gradient factors of one parameter for one example, for all C logits.
#[derive(Debug, Clone)]
pub(super) enum Block {
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
pub(super) fn head_rows(model: &SequenceClassifier) -> Result<Vec<Tensor>> {
    let v = model.head.weight.detach();
    (0..model.head.num_labels())
        .map(|c| Ok(v.narrow(0, c, 1)?))
        .collect()
}

/// φ(x) `[1, h]` along `path`.
pub(super) fn features(
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

pub(super) fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Sums the rows of `g` `[C, rows, h]` by id: sorted distinct ids and `[k, C, h]` sums.
pub(super) fn aggregate_rows(ids: &[u32], g: &[f32], c: usize, h: usize) -> Block {
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

/// The blocks of the selected parameters for one example, in recording order (each tagged
/// with its catalogue index): one forward and C backward passes, on the own backward
/// ([`record_logit_grads`]) where it applies — the first-token path of a model
/// [`Backprop::supports`], unless [`EntkConfig::autograd`] asks for the reference — else on
/// candle's autograd over a [`Recorder`]'s probes.
pub(super) fn example_blocks(
    cfg: &EntkConfig,
    model: &SequenceClassifier,
    catalog: &Catalog,
    keys: &HashSet<TensorId>,
    heads: &[Tensor],
    inputs: &Inputs,
) -> Result<Vec<(usize, Block)>> {
    let recorded = if own_backward(cfg, model) {
        record_logit_grads(model, inputs, keys)?
    } else {
        record_autograd(cfg, model, keys, heads, inputs)?
    };
    blocks_of(catalog, recorded, heads.len())
}

/// Whether the per-example passes run on the own backward (see [`example_blocks`]).
pub(super) fn own_backward(cfg: &EntkConfig, model: &SequenceClassifier) -> bool {
    !cfg.autograd && cfg.path == ForwardPath::FirstToken && Backprop::supports(model)
}

/// Forward with a recorder for `keys` and C autograd backward passes: the recorded sites with
/// their per-logit gradients, in forward order.
fn record_autograd(
    cfg: &EntkConfig,
    model: &SequenceClassifier,
    keys: &HashSet<TensorId>,
    heads: &[Tensor],
    inputs: &Inputs,
) -> Result<Vec<Recorded>> {
    let rec = Recorder::new(keys.iter().copied());
    let phi = features(model, inputs, cfg.path, &mut Mode::Record(&rec))?;
    let sites = rec.take_sites();
    // Per site and logit: the probe gradient (LayerNorm: γ then β), f32 on the host.
    let mut grads: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(heads.len()); sites.len()];
    for v in heads {
        let s = phi.broadcast_mul(v)?.sum_all()?;
        let store = s.backward()?;
        // A site this logit does not reach (cannot happen for φ's own layers) has zero
        // gradient by definition.
        let grad = |t: &Tensor| -> Result<Vec<f32>> {
            match store.get(t) {
                Some(g) => host_f32(g),
                None => host_f32(&t.zeros_like()?),
            }
        };
        for (k, site) in sites.iter().enumerate() {
            let g = match site {
                Site::Embeddings { probe, .. } => grad(probe.as_tensor())?,
                Site::RelativeBias { weight, .. } => grad(weight.as_tensor())?,
                Site::LayerNorm { weight, bias, .. } => {
                    let mut gw = grad(weight.as_tensor())?;
                    gw.extend(grad(bias.as_tensor())?);
                    gw
                }
                Site::Linear { probe, .. } => grad(probe.as_tensor())?,
            };
            grads[k].push(g);
        }
    }
    sites
        .into_iter()
        .zip(grads)
        .map(|(site, grads)| {
            Ok(match site {
                Site::Embeddings {
                    key,
                    input_ids,
                    position_ids,
                    token_type_ids,
                    ..
                } => Recorded::Embeddings {
                    key,
                    input_ids,
                    position_ids,
                    token_type_ids,
                    grads,
                },
                Site::RelativeBias { key, .. } => Recorded::RelativeBias { key, grads },
                Site::LayerNorm { key, .. } => Recorded::LayerNorm { key, grads },
                Site::Linear {
                    key, input, lora, ..
                } => {
                    let (rows, d_in) = input.dims2()?;
                    let lora = match lora {
                        Some(ad) => Some(HostLora {
                            a: host_f32(&ad.a)?,
                            b: host_f32(&ad.b)?,
                            r: ad.a.dims()[0],
                            scale: ad.scale,
                        }),
                        None => None,
                    };
                    Recorded::Linear {
                        key,
                        x: host_f32(&input)?,
                        rows,
                        d_in,
                        grads,
                        lora,
                    }
                }
            })
        })
        .collect()
}

/// `[rows, k] · [k, n]` row-major, f32.
fn host_matmul(a: &[f32], b: &[f32], rows: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * n];
    matmul::matmul(
        &mut out,
        n,
        false,
        matmul::View::rows(a, rows, k),
        matmul::View::rows(b, k, n),
        matmul::threads(false),
    );
    out
}

/// The gradient blocks of the catalogued parameters of each recorded site, in recording order.
fn blocks_of(catalog: &Catalog, recorded: Vec<Recorded>, c: usize) -> Result<Vec<(usize, Block)>> {
    let mut blocks = Vec::new();
    for site in recorded {
        let info = catalog
            .sites
            .get(&site.key())
            .expect("only catalogued keys are recorded");
        let needs = |role: Role| info.params.iter().any(|&p| catalog.params[p].role == role);
        match site {
            Recorded::Embeddings {
                input_ids,
                position_ids,
                token_type_ids,
                grads,
                ..
            } => {
                let h = grads[0].len() / input_ids.len();
                let flat: Vec<f32> = grads.concat();
                for &p in &info.params {
                    let ids = match catalog.params[p].role {
                        Role::Word => &input_ids,
                        Role::Position => &position_ids,
                        Role::TokenType => &token_type_ids,
                        _ => return Err(site_mismatch(info)),
                    };
                    blocks.push((p, aggregate_rows(ids, &flat, c, h)));
                }
            }
            Recorded::RelativeBias { grads, .. } => {
                let dim = grads[0].len();
                for &p in &info.params {
                    if catalog.params[p].role != Role::RelativeBias {
                        return Err(site_mismatch(info));
                    }
                    let rows: Vec<f64> = grads.iter().flatten().map(|&v| f64::from(v)).collect();
                    blocks.push((p, Block::Dense { rows, dim }));
                }
            }
            Recorded::LayerNorm { grads, .. } => {
                let h = grads[0].len() / 2;
                for &p in &info.params {
                    let offset = match catalog.params[p].role {
                        Role::Gamma => 0,
                        Role::Beta => h,
                        _ => return Err(site_mismatch(info)),
                    };
                    let rows: Vec<f64> = grads
                        .iter()
                        .flat_map(|gc| gc[offset..offset + h].iter().map(|&v| f64::from(v)))
                        .collect();
                    blocks.push((p, Block::Dense { rows, dim: h }));
                }
            }
            Recorded::Linear {
                x,
                rows,
                d_in,
                grads,
                lora,
                ..
            } => {
                let d_out = grads[0].len() / rows.max(1);
                // LoRA: G_c·B `[rows, r]` per logit (for lora_A) and X·Aᵀ (for lora_B).
                let gb = match (&lora, needs(Role::LoraA)) {
                    (Some(ad), true) => grads
                        .iter()
                        .flat_map(|g| host_matmul(g, &ad.b, rows, d_out, ad.r))
                        .collect(),
                    _ => Vec::new(),
                };
                let xa = match (&lora, needs(Role::LoraB)) {
                    (Some(ad), true) => {
                        let at = matmul::View::rows(&ad.a, ad.r, d_in).t();
                        let mut u = vec![0f32; rows * ad.r];
                        let xv = matmul::View::rows(&x, rows, d_in);
                        matmul::matmul(&mut u, ad.r, false, xv, at, matmul::threads(false));
                        u
                    }
                    _ => Vec::new(),
                };
                let x = Arc::new(x);
                let gg = Arc::new(grads.concat());
                let (mut gb, mut xa) = (Some(gb), Some(xa));
                for &p in &info.params {
                    let block = match (catalog.params[p].role, &lora) {
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
                            for (cc, gc) in grads.iter().enumerate() {
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
                        (Role::LoraA, Some(ad)) => Block::Outer {
                            x: x.clone(),
                            g: Arc::new(gb.take().unwrap_or_default()),
                            rows,
                            dx: d_in,
                            dg: ad.r,
                            scale: ad.scale,
                        },
                        (Role::LoraB, Some(ad)) => Block::Outer {
                            x: Arc::new(xa.take().unwrap_or_default()),
                            g: gg.clone(),
                            rows,
                            dx: ad.r,
                            dg: d_out,
                            scale: ad.scale,
                        },
                        _ => return Err(site_mismatch(info)),
                    };
                    blocks.push((p, block));
                }
            }
        }
    }
    Ok(blocks)
}

pub(super) fn site_mismatch(info: &SiteInfo) -> Error {
    Error::InvalidArgument {
        field: "params".into(),
        reason: format!(
            "the layer recorded for `{}` does not hold the selected parameters",
            info.key_name
        ),
    }
}
