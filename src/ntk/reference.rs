//! The slow exact eNTKs, kept next to the fast one for checking [`crate::ntk::layerwise`], and
//! for timing the paper code's way.
//!
//! - [`reference_kernel`]: full flattened per-example gradients of each logit and their Gram
//!   matrix. It materialises `n·C` gradients of every parameter, so use it on test fixtures
//!   only.
//!
//!   For each example x (batch 1, eval mode) and logit c, one backward pass of the logit
//!   `f_c(x) = v_c·φ(x) + b_c` gives `∂f_c(x)/∂θ` for every `Var` of the model; the selected
//!   ones are concatenated (in name order) into one f64 row, and `K = J1 J2ᵀ` in f64. For
//!   encoder parameters `∂f_c/∂θ = ∂s_c/∂θ` (the bias does not depend on θ), so with the
//!   encoder set this is F; with the head included it is the whole NTK `Θ = P + F` (docs/method.md §7.1,
//!   Prop. 4.1).
//! - [`jacobian_kernel`]: F the way the paper's code computes it (docs/method.md §7.2, REF
//!   `tom4649/lp-ft_ntk:training/kernel_trainer.py`): per example, the full Jacobian
//!   `J(x) = ∂φ(x)/∂θ` (`[h, P]`) by reverse mode, one backward pass per feature dimension
//!   (h passes, as `torch.autograd.functional.jacobian` does), contracted with V0 to the C
//!   rows `V0 J(x)`, then inner products `F = (V0 J)(V0 J′)ᵀ`. h/C times the backward passes of
//!   the layer-wise F; kept to measure that cost (`lpft bench --workload entk`) and to check
//!   that both ways give the same F.

use std::collections::BTreeMap;

use candle_core::{CpuStorage, DType, Storage, Tensor, Var};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{Inputs, Mode, SequenceClassifier};
use crate::ntk::config::ParamSet;
use crate::ntk::kernel::Kernel;
use crate::ntk::layerwise::{gram, mirror_upper};

/// The eNTK of the logits w.r.t. the parameters in `params` (and the head `classifier.*` too
/// when `include_head`), between `x1` and `x2` (`None`: `x2 = x1`), shape `[n1, C, n2, C]`.
///
/// `vars` are the model's trainable variables as returned by
/// [`SequenceClassifier::load`] (`LoadReport::vars`); every encoder parameter that `params`
/// selects must be among them (load with a [`crate::model::Trainable`] that covers θ).
///
/// # Errors
/// [`Error::InvalidArgument`] if a selected parameter is not a `Var`, or nothing is selected;
/// candle errors from the passes.
pub fn reference_kernel(
    model: &SequenceClassifier,
    vars: &BTreeMap<String, Var>,
    params: &ParamSet,
    include_head: bool,
    x1: &[Inputs],
    x2: Option<&[Inputs]>,
) -> Result<Kernel> {
    let chosen = select_vars(model, vars, params, include_head)?;
    let c = model.head.num_labels();
    let width: usize = chosen.iter().map(|v| v.elem_count()).sum();
    let jacobian = |set: &[Inputs]| -> Result<Vec<f64>> {
        let mut rows = Vec::with_capacity(set.len() * c * width);
        for inputs in set {
            let logits = model.forward(inputs, &mut Mode::Eval)?;
            for cc in 0..c {
                let grads = logits.narrow(1, cc, 1)?.sum_all()?.backward()?;
                for v in &chosen {
                    match grads.get(v.as_tensor()) {
                        Some(g) => {
                            rows.extend(g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
                        }
                        None => rows.extend(std::iter::repeat_n(0.0, v.elem_count())),
                    }
                }
            }
        }
        Ok(rows)
    };
    let j1 = jacobian(x1)?;
    let j2 = match x2 {
        Some(x2) => Some(jacobian(x2)?),
        None => None,
    };
    let (r1, j2) = (x1.len() * c, j2.as_deref().unwrap_or(&j1));
    let r2 = j2.len() / width;
    let mut data = vec![0.0; r1 * r2];
    for a in 0..r1 {
        let ra = &j1[a * width..(a + 1) * width];
        for b in 0..r2 {
            data[a * r2 + b] = crate::ntk::kernel::dot(ra, &j2[b * width..(b + 1) * width]);
        }
    }
    Kernel::from_parts(data, [x1.len(), c, r2 / c, c])
}

/// The `Var`s of θ (and of the head when `include_head`), in name order.
fn select_vars<'a>(
    model: &SequenceClassifier,
    vars: &'a BTreeMap<String, Var>,
    params: &ParamSet,
    include_head: bool,
) -> Result<Vec<&'a Var>> {
    for (name, _) in model.encoder.parameters() {
        if params.includes(&name) && !vars.contains_key(&name) {
            return Err(Error::InvalidArgument {
                field: "vars".into(),
                reason: format!("`{name}` is in θ but is not a Var of the model"),
            });
        }
    }
    let chosen: Vec<&Var> = vars
        .iter()
        .filter(|(n, _)| params.includes(n) || (include_head && n.starts_with("classifier.")))
        .map(|(_, v)| v)
        .collect();
    if chosen.is_empty() {
        return Err(Error::InvalidArgument {
            field: "params".into(),
            reason: "selects no variable".into(),
        });
    }
    Ok(chosen)
}

/// F computed the paper code's way by [`jacobian_kernel`], with what it cost.
#[derive(Debug, Clone)]
pub struct JacobianKernel {
    /// F, shape `[n1, C, n2, C]` (layout: [`Kernel`]).
    pub kernel: Kernel,
    /// Number of scalar parameters P in θ.
    pub parameters: usize,
    /// Backward passes per example: one per feature dimension, h.
    pub backward_passes_per_example: usize,
    /// Wall seconds of the forward and backward passes.
    pub backward_seconds: f64,
    /// Wall seconds spent contracting each Jacobian row with V0 (copying the gradient to the
    /// host and adding `v_{c,d}·∂φ_d/∂θ` to each of the C rows).
    pub contraction_seconds: f64,
    /// Wall seconds of the inner products of the contracted rows ([`gram_rows`]).
    pub gram_seconds: f64,
}

/// F between `x1` and `x2` (`None`: `x2 = x1`, symmetric), shape `[n1, C, n2, C]`, computed the
/// way the paper's code does (docs/method.md §7.2): for each example (batch 1, eval mode) one forward
/// pass and h backward passes, pass d giving the Jacobian row `∂φ_d(x)/∂θ` over all of θ;
/// the rows are contracted with V0 as they arrive, a few at a time
/// (`(V0 J)_c += Σ_d v_{c,d}·∂φ_d/∂θ`, f64), and
/// `F = (V0 J1)(V0 J2)ᵀ` in f64. V0 is the model's head; θ the encoder parameters `params`
/// selects (the head is never in θ; its part is P).
///
/// Memory: [`JACOBIAN_BLOCK`] Jacobian rows `[P]` (f32) at a time and the contracted rows of
/// all examples, `(n1 + n2)·C·P` f64 — never the full Jacobian `[h, P]` itself (for MiniLM 384 × 22.6M f32 =
/// 35 GB per example). REF takes `torch.autograd.functional.jacobian` per parameter group
/// (14 groups for a 6-layer encoder), which holds one group's `[h, P_g]` Jacobian and repeats
/// the h passes for every group; one set of h passes for all of θ, as here, is the cheaper
/// end of that way.
///
/// `vars` are the model's trainable variables ([`SequenceClassifier::load`]'s
/// `LoadReport::vars`); every encoder parameter in θ must be among them. `progress` receives
/// (examples done, total).
///
/// # Errors
/// [`Error::InvalidArgument`] if a selected parameter is not a `Var`, nothing is selected, or
/// an input is not a single example; [`Error::Shape`] for empty inputs; candle errors from the
/// passes.
pub fn jacobian_kernel(
    model: &SequenceClassifier,
    vars: &BTreeMap<String, Var>,
    params: &ParamSet,
    x1: &[Inputs],
    x2: Option<&[Inputs]>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<JacobianKernel> {
    for set in std::iter::once(x1).chain(x2) {
        if set.is_empty() {
            return Err(Error::Shape {
                what: "eNTK inputs",
                expected: "at least one example".into(),
                found: "none".into(),
            });
        }
        for inputs in set {
            inputs.check()?;
            if inputs.batch != 1 {
                return Err(Error::InvalidArgument {
                    field: "inputs".into(),
                    reason: format!("one example per Inputs, got a batch of {}", inputs.batch),
                });
            }
        }
    }
    let chosen = select_vars(model, vars, params, false)?;
    let width: usize = chosen.iter().map(|v| v.elem_count()).sum();
    let (c, h) = model.head.weight.dims2()?;
    let v0: Vec<f64> = model
        .head
        .weight
        .detach()
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    let total = x1.len() + x2.map_or(0, <[Inputs]>::len);
    let (mut backward_seconds, mut contraction_seconds, mut done) = (0.0, 0.0, 0);
    // Rows d0..d0 + JACOBIAN_BLOCK of one example's Jacobian J(x), `[JACOBIAN_BLOCK, P]`.
    let mut block = vec![0f32; JACOBIAN_BLOCK.min(h) * width];
    let mut contracted = |set: &[Inputs]| -> Result<Vec<f64>> {
        let mut rows = vec![0f64; set.len() * c * width];
        for (inputs, ex_rows) in set.iter().zip(rows.chunks_exact_mut(c * width)) {
            let started = std::time::Instant::now();
            let phi = model.features(inputs, &mut Mode::Eval)?;
            let (_, dim) = phi.dims2()?;
            if dim != h {
                return Err(Error::Shape {
                    what: "features",
                    expected: format!("[1, {h}] (the head's width)"),
                    found: format!("{:?}", phi.dims()),
                });
            }
            backward_seconds += started.elapsed().as_secs_f64();
            for d0 in (0..h).step_by(JACOBIAN_BLOCK) {
                let b = JACOBIAN_BLOCK.min(h - d0);
                for (r, row) in block.chunks_exact_mut(width).take(b).enumerate() {
                    let started = std::time::Instant::now();
                    let grads = phi.narrow(1, d0 + r, 1)?.sum_all()?.backward()?;
                    backward_seconds += started.elapsed().as_secs_f64();
                    let started = std::time::Instant::now();
                    let mut offset = 0;
                    for v in &chosen {
                        let dst = &mut row[offset..offset + v.elem_count()];
                        match grads.get(v.as_tensor()) {
                            Some(g) => copy_f32(g, dst)?,
                            None => dst.fill(0.0),
                        }
                        offset += v.elem_count();
                    }
                    contraction_seconds += started.elapsed().as_secs_f64();
                }
                let started = std::time::Instant::now();
                add_contracted(ex_rows, &block[..b * width], width, &v0, h, d0);
                contraction_seconds += started.elapsed().as_secs_f64();
            }
            done += 1;
            progress(done, total);
        }
        Ok(rows)
    };
    let j1 = contracted(x1)?;
    let j2 = x2.map(&mut contracted).transpose()?;
    let started = std::time::Instant::now();
    let data = gram_rows(&j1, j2.as_deref(), width);
    let gram_seconds = started.elapsed().as_secs_f64();
    let n2 = x2.map_or(x1.len(), <[Inputs]>::len);
    Ok(JacobianKernel {
        kernel: Kernel::from_parts(data, [x1.len(), c, n2, c])?,
        parameters: width,
        backward_passes_per_example: h,
        backward_seconds,
        contraction_seconds,
        gram_seconds,
    })
}

/// Jacobian rows `∂φ_d/∂θ` held at once and contracted with V0 together: reading a block of
/// rows once per update of the C f64 rows keeps the contraction's memory traffic near one
/// write and one read of each gradient (REF holds a parameter group's whole `[h, P_g]` and
/// multiplies it by V0). 8 rows of MiniLM's 22.6M parameters are 720 MB (f32).
pub const JACOBIAN_BLOCK: usize = 8;

/// Columns per parallel task of [`add_contracted`]: its C f64 destination slices (3 × 32 KiB)
/// stay in cache while the block's rows are added.
const COLUMN_CHUNK: usize = 1 << 12;

/// `rows[c] += Σ_r v0[c, d0 + r]·block[r]` for the Jacobian rows `block` `[b, width]` (f32) and
/// the contracted rows `rows` `[C, width]` (f64), V0 `[C, h]` row-major. Each value is summed
/// in a fixed order (r ascending), whatever the thread count.
fn add_contracted(rows: &mut [f64], block: &[f32], width: usize, v0: &[f64], h: usize, d0: usize) {
    let b = block.len() / width;
    let mut tasks: Vec<Vec<&mut [f64]>> = (0..width.div_ceil(COLUMN_CHUNK))
        .map(|_| Vec::new())
        .collect();
    for row in rows.chunks_exact_mut(width) {
        for (task, chunk) in tasks.iter_mut().zip(row.chunks_mut(COLUMN_CHUNK)) {
            task.push(chunk);
        }
    }
    tasks.into_par_iter().enumerate().for_each(|(i, dsts)| {
        let p0 = i * COLUMN_CHUNK;
        for (cc, dst) in dsts.into_iter().enumerate() {
            for r in 0..b {
                let w = v0[cc * h + d0 + r];
                let src = &block[r * width + p0..][..dst.len()];
                for (a, &s) in dst.iter_mut().zip(src) {
                    *a += w * f64::from(s);
                }
            }
        }
    });
}

/// Copies the values of `t` (any shape, f32 or not) into `dst` (`t.elem_count()` values):
/// straight from the storage when `t` is a contiguous f32 CPU tensor, else through a
/// conversion.
fn copy_f32(t: &Tensor, dst: &mut [f32]) -> Result<()> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            if b - a == dst.len() {
                dst.copy_from_slice(&v[a..b]);
                return Ok(());
            }
        }
    }
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if v.len() != dst.len() {
        return Err(Error::Shape {
            what: "parameter gradient",
            expected: format!("{} values", dst.len()),
            found: v.len().to_string(),
        });
    }
    dst.copy_from_slice(&v);
    Ok(())
}

/// Inner products of row-major f64 rows: `A Bᵀ` (`[ra, rb]`) for A `[ra, width]`, B
/// `[rb, width]`, or the symmetric `A Aᵀ` when `b` is `None` (upper triangle computed,
/// mirrored). Blocked over columns and summed in a fixed order, so the result does not depend
/// on the thread count. Also what the benchmark times on a column slice to measure the Gram of
/// many examples without holding their rows.
pub fn gram_rows(a: &[f64], b: Option<&[f64]>, width: usize) -> Vec<f64> {
    let ra = a.len().checked_div(width).unwrap_or(0);
    let rb = b.map_or(ra, |b| b.len().checked_div(width).unwrap_or(0));
    let mut out = vec![0.0; ra * rb];
    gram(&mut out, a, b, ra, width);
    if b.is_none() {
        mirror_upper(&mut out, ra);
    }
    out
}
