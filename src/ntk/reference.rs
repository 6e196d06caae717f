//! The slow exact eNTK for tiny models: full flattened per-example gradients and their Gram
//! matrix. The check for [`crate::ntk::layerwise`] (STYLE §8: ship the slow reference next to
//! the fast one); it materialises `n·C` gradients of every parameter, so use it on test fixtures
//! only.
//!
//! For each example x (batch 1, eval mode) and logit c, one backward pass of the logit
//! `f_c(x) = v_c·φ(x) + b_c` gives `∂f_c(x)/∂θ` for every `Var` of the model; the selected ones
//! are concatenated (in name order) into one f64 row, and `K = J1 J2ᵀ` in f64. For encoder
//! parameters `∂f_c/∂θ = ∂s_c/∂θ` (the bias does not depend on θ), so with the encoder set this
//! is F; with the head included it is the whole NTK `Θ = P + F` (spec §7.1, Prop. 4.1).

use std::collections::BTreeMap;

use candle_core::{DType, Var};

use crate::error::{Error, Result};
use crate::model::{Inputs, Mode, SequenceClassifier};
use crate::ntk::config::ParamSet;
use crate::ntk::kernel::Kernel;

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
