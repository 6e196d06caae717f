//! The eNTK of a run and its Table 2 statistics: computes P and F at the start of the run's
//! gradient stage ([`crate::stages::ntk::compute_run`]), saves the kernels into `kernels/`, and
//! writes rank, FN, normalised spectrum, kernel-regression accuracy and FT ratio to
//! `kernels/ntk.json`; and LoRA's F against FT's F ([`align_runs`], `kernels/alignment.json`).
//!
//! The pipeline stage behind `lpft ntk`, `lpft ntk-align` and `lpft reproduce`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::analysis::kernel_stats::{
    ft_ratio, kernel_alignment, kernel_stats, softmax_residuals, KernelStats,
};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::ntk::kernel::{Kernel, KernelMatrix};
use crate::ntk::layerwise::{EntkProgress, ParamGroup};
use crate::ntk::regression::KernelRegressionParams;
use crate::ntk::ParamSet;
use crate::rundir::{self, write_json};
use crate::stages::ntk::{compute_run, save_kernels, NtkRunConfig, RunKernels};

/// Regression accuracies of one kernel (fractions in `[0, 1]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accuracies {
    /// Per-logit binary accuracy over N·C train rows (the paper's "Acc" train).
    pub train: f64,
    /// Per-logit binary accuracy over M·C eval rows (the paper's "Acc" test).
    pub eval: f64,
    /// Extra: class accuracy (arg-max over a sample's C rows).
    pub train_class: f64,
    pub eval_class: f64,
    /// The cross-validated inverse regularisation.
    pub best_c: f64,
}

/// Statistics of one kernel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelSummary {
    /// Rank (f64 and f32 tolerance), FN, σ_max and normalised spectrum of the train×train matrix.
    pub stats: KernelStats,
    pub regression: Accuracies,
}

/// `kernels/ntk.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NtkSummary {
    pub run: PathBuf,
    pub task: String,
    pub method: String,
    pub seed: u64,
    pub model_seed: u64,
    pub model: String,
    pub config: NtkRunConfig,
    pub params: ParamSet,
    /// Scalars in θ.
    pub parameters: usize,
    pub n_train: usize,
    pub n_eval: usize,
    pub n_logits: usize,
    /// ‖V0‖_F of the head the kernels are taken at.
    pub head_norm: f64,
    /// `P`, `F`, `P+F`.
    pub kernels: BTreeMap<String, KernelSummary>,
    /// Spec §7.3, from δ of the head V0 on the training examples; `None` if undefined.
    pub ft_ratio: Option<f64>,
    /// ‖F_g‖_F of each parameter group's train×train contribution.
    pub f_group_frobenius: BTreeMap<ParamGroup, f64>,
    pub features_seconds: f64,
    pub f_gradient_seconds: f64,
    pub f_contraction_seconds: f64,
    pub f_passes: usize,
    pub files: Vec<PathBuf>,
}

fn summarize(k: &RunKernels, train: &Kernel, eval: &Kernel) -> Result<KernelSummary> {
    let stats = kernel_stats(&train.flatten())?;
    let fit = KernelRegressionParams::default().fit(train, &k.y_train, eval, &k.y_eval)?;
    Ok(KernelSummary {
        stats,
        regression: Accuracies {
            train: fit.train_accuracy,
            eval: fit.eval_accuracy,
            train_class: fit.train_class_accuracy,
            eval_class: fit.eval_class_accuracy,
            best_c: fit.cv.best_c,
        },
    })
}

/// Computes the eNTK of the run in `dir`, saves the kernels into `dir/kernels/`, and writes and
/// returns the statistics (`kernels/ntk.json`). The returned split is the eval split used.
///
/// # Errors
/// Those of [`compute_run`], the statistics, and writing the files.
pub fn ntk_run(
    dir: &Path,
    cfg: &NtkRunConfig,
    progress: &mut dyn FnMut(&EntkProgress),
) -> Result<(NtkSummary, Split)> {
    let k = compute_run(dir, cfg, progress)?;
    let files = save_kernels(dir, &k)?;
    let pf_train = k.p_train.add(&k.f_train.kernel)?;
    let pf_eval = k.p_eval.add(&k.f_eval.kernel)?;
    let mut kernels = BTreeMap::new();
    kernels.insert("P".to_string(), summarize(&k, &k.p_train, &k.p_eval)?);
    kernels.insert(
        "F".to_string(),
        summarize(&k, &k.f_train.kernel, &k.f_eval.kernel)?,
    );
    kernels.insert("P+F".to_string(), summarize(&k, &pf_train, &pf_eval)?);
    let c = k.labels.len();
    let delta = softmax_residuals(&k.train_logits, &k.y_train, c)?;
    let ratio = ft_ratio(&k.p_train, &k.f_train.kernel, &delta)
        .map_err(|e| log::warn!("FT ratio undefined: {e}"))
        .ok();
    let summary = NtkSummary {
        run: dir.to_path_buf(),
        task: k.run.task.clone(),
        method: k.run.method.to_string(),
        seed: k.run.seed,
        model_seed: k.run.model_seed,
        model: k.run.model.clone(),
        config: cfg.clone(),
        params: k.entk.params.clone(),
        parameters: k.f_train.parameters,
        n_train: k.y_train.len(),
        n_eval: k.y_eval.len(),
        n_logits: c,
        head_norm: k.head_norm,
        kernels,
        ft_ratio: ratio,
        f_group_frobenius: k.f_train.group_norms(),
        features_seconds: k.feature_seconds,
        f_gradient_seconds: k.f_train.gradient_seconds,
        f_contraction_seconds: k.f_train.contraction_seconds,
        f_passes: k.f_train.passes,
        files,
    };
    write_json(&dir.join(rundir::NTK_SUMMARY), &summary)?;
    Ok((summary, k.split))
}

/// Reads `kernels/ntk.json` of a run, if present.
pub(crate) fn read_ntk(dir: &Path) -> Result<Option<NtkSummary>> {
    crate::fsutil::read_json_opt(&dir.join(rundir::NTK_SUMMARY))
}

/// `kernels/alignment.json`: LoRA's F against FT's F (Prop. 4.4; ours, not the paper's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alignment {
    pub lora: PathBuf,
    pub ft: PathBuf,
    /// FT's parameter groups F^FT was restricted to (the adapted weights).
    pub groups: Vec<String>,
    /// ⟨F^LoRA, F^FT_groups⟩_F / (‖·‖ ‖·‖).
    pub alignment_restricted: f64,
    /// ⟨F^LoRA, F^FT⟩_F / (‖·‖ ‖·‖).
    pub alignment_full: f64,
    /// ‖F^LoRA‖_F / ‖F^FT_groups‖_F.
    pub norm_ratio_restricted: f64,
    /// ‖F^LoRA‖_F / ‖F^FT‖_F.
    pub norm_ratio_full: f64,
}

/// Reads one tensor of a safetensors file written by [`save_kernels`].
pub(crate) fn read_kernel_tensor(path: &Path, name: &str) -> Result<Tensor> {
    let t = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
        if path.exists() {
            Error::from(e)
        } else {
            Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no kernel file (compute the run's eNTK first)",
                ),
            )
        }
    })?;
    t.get(name).cloned().ok_or_else(|| Error::MissingTensor {
        path: path.to_path_buf(),
        name: name.to_string(),
    })
}

/// A `[n1, C, n2, C]` kernel tensor as a [`Kernel`].
pub(crate) fn kernel_from_tensor(t: &Tensor) -> Result<Kernel> {
    let dims = t.dims();
    if dims.len() != 4 {
        return Err(Error::InvalidArgument {
            field: "kernel".into(),
            reason: format!("a kernel has 4 dimensions, found {dims:?}"),
        });
    }
    let data: Vec<f64> = t
        .to_dtype(candle_core::DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    Kernel::from_parts(data, [dims[0], dims[1], dims[2], dims[3]])
}

/// The saved train×train F of a run (`kernels/F_train_train.safetensors`) and its example
/// indices.
pub(crate) fn read_f_train(dir: &Path) -> Result<(Kernel, Vec<i64>)> {
    let file = dir.join("kernels/F_train_train.safetensors");
    let k = kernel_from_tensor(&read_kernel_tensor(&file, "kernel")?)?;
    let idx: Vec<i64> = read_kernel_tensor(&file, "indices1")?.to_vec1()?;
    Ok((k, idx))
}

/// Alignment and norm ratio of the LoRA run's F with the FT run's F restricted to `groups`
/// (and with all of F^FT). Both runs need their eNTK on the same examples; writes
/// `kernels/alignment.json` into the LoRA run.
///
/// # Errors
/// Missing kernel files or groups; the two kernels on different examples.
pub fn align_runs(lora: &Path, ft: &Path, groups: &[String]) -> Result<Alignment> {
    let (f_lora, idx_lora) = read_f_train(lora)?;
    let (f_ft, idx_ft) = read_f_train(ft)?;
    if idx_lora != idx_ft {
        return Err(Error::InvalidArgument {
            field: "runs".into(),
            reason: format!(
                "{} and {} have kernels on different examples",
                lora.display(),
                ft.display()
            ),
        });
    }
    let groups_file = ft.join("kernels/F_groups_train_train.safetensors");
    let mut restricted: Option<Kernel> = None;
    for g in groups {
        let k = kernel_from_tensor(&read_kernel_tensor(&groups_file, g)?)?;
        restricted = Some(match restricted {
            Some(r) => r.add(&k)?,
            None => k,
        });
    }
    let restricted: KernelMatrix = restricted
        .ok_or_else(|| Error::InvalidArgument {
            field: "groups".into(),
            reason: "name at least one parameter group".into(),
        })?
        .flatten();
    let (f_lora, f_ft) = (f_lora.flatten(), f_ft.flatten());
    let a = Alignment {
        lora: lora.to_path_buf(),
        ft: ft.to_path_buf(),
        groups: groups.to_vec(),
        alignment_restricted: kernel_alignment(&f_lora, &restricted)?,
        alignment_full: kernel_alignment(&f_lora, &f_ft)?,
        norm_ratio_restricted: f_lora.frobenius_norm() / restricted.frobenius_norm(),
        norm_ratio_full: f_lora.frobenius_norm() / f_ft.frobenius_norm(),
    };
    write_json(&lora.join(rundir::ALIGNMENT), &a)?;
    Ok(a)
}
