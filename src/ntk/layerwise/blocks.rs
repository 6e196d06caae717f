//! Per-example gradient factors: the recorded inputs and output gradients of each site, turned into
//! the blocks the contraction takes.

use super::*;

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

/// Forward with a recorder for `keys`, C backward passes, and the blocks of the selected
/// parameters in recording order (each tagged with its catalogue index).
pub(super) fn example_blocks(
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
                Site::RelativeBias { weight, .. } => {
                    grads[k].push(host_f32(&grad(weight.as_tensor(), weight.as_tensor())?)?);
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
            Site::RelativeBias { weight, .. } => {
                let dim = weight.elem_count();
                for &p in &info.params {
                    if catalog.params[p].role != Role::RelativeBias {
                        return Err(site_mismatch(info));
                    }
                    let rows: Vec<f64> = g.iter().flatten().map(|&v| f64::from(v)).collect();
                    blocks.push((p, Block::Dense { rows, dim }));
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

pub(super) fn site_mismatch(info: &SiteInfo) -> Error {
    Error::InvalidArgument {
        field: "params".into(),
        reason: format!(
            "the layer recorded for `{}` does not hold the selected parameters",
            info.key_name
        ),
    }
}
