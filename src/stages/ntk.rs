//! The eNTK of a run directory (`lpft ntk`, docs/method.md §7.2): P and F at the start of the run's
//! gradient stage, train×train and eval×train, written to `<run>/kernels/`.
//!
//! The model is rebuilt at θ0 from the run's `config.json` (the run's trained weights are not
//! used): the base checkpoint; the head V0 is the LP head `lp_head.safetensors` for LP-FT and
//! LP-LoRA (REF `--from_linearhead`: fitted on the full training split, binary halving
//! included), and for FT and LoRA the random head redrawn from the run's `model_seed`
//! (`head_init` stream, exactly as training drew it); LoRA adapters are redrawn from the
//! `lora_init` stream (B = 0). An LP run gives the kernels LP-FT would start from.
//!
//! Subsampling (deviation, documented): the **first** `max_examples` examples of the training
//! split and of the evaluation split, in split order. REF draws 250 at random without
//! replacement (numpy after `set_seed`) when a split is larger than 250; for CB (225 train /
//! 56 test) both give every example. The chosen indices are saved with the kernels.
//!
//! Files (f64 safetensors):
//! - `kernels/{P,F}_train_train.safetensors`, `kernels/{P,F}_<split>_train.safetensors`:
//!   tensor `kernel` `[n1, C, n2, C]` (entry `(i, c, j, c′)` = `K_{cc′}(x_i, x′_j)`, first set
//!   first: train×train, or eval×train), plus `indices1`/`indices2` (i64, the examples'
//!   positions in their split) and `labels1`/`labels2` (i64).
//! - `kernels/F_groups_train_train.safetensors`: F's train×train contribution of each
//!   parameter group ([`ParamGroup::as_str`] names), same layout; they sum to F.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::batch::TextTokenizer;
use crate::data::{Example, Split};
use crate::error::{Error, Result};
use crate::hub::models::{self, FetchOptions, ModelSource};
use crate::methods::config::{Method, RunConfig};
use crate::methods::lp;
use crate::model::{Checkpoint, ModelFiles, SequenceClassifier, Trainable};
use crate::ntk::config::{Contraction, ContractionPrecision, EntkConfig, ForwardPath, ParamSet};
use crate::ntk::kernel::{pretrain_kernel, Kernel};
use crate::ntk::layerwise::{self, EntkProgress, EntkResult, ParamGroup};
use crate::rundir::{self, read_config, read_tensors};

/// What `lpft ntk` computes for one run (a config we own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtkRunConfig {
    /// The evaluation split of the eval×train kernels (the paper's tables: test).
    pub split: Split,
    /// At most this many examples of the training split and of `split`: the first ones
    /// (REF/PAPER: 250, drawn at random; see the module docs).
    pub max_examples: usize,
    /// θ of F; `None`: [`ParamSet::Ft`] for LP, FT and LP-FT, [`ParamSet::Lora`] for LoRA and
    /// LP-LoRA.
    pub params: Option<ParamSet>,
    /// How weight blocks are contracted.
    #[serde(default)]
    pub contraction: Contraction,
    /// Bound on stored per-example factors (see [`EntkConfig::max_stored_bytes`]).
    pub max_stored_bytes: usize,
    /// Arithmetic of the materialised contraction (see [`EntkConfig::precision`]).
    #[serde(default, skip_serializing_if = "ContractionPrecision::is_f64")]
    pub precision: ContractionPrecision,
    /// Data directory overriding the run's (`None`: the run's, else the default search path).
    pub data_dir: Option<PathBuf>,
}

impl NtkRunConfig {
    /// The paper's settings: test split, 250 examples, θ from the method.
    pub fn paper_defaults() -> Self {
        Self {
            split: Split::Test,
            max_examples: 250,
            params: None,
            contraction: Contraction::default(),
            max_stored_bytes: EntkConfig::new(ParamSet::Ft).max_stored_bytes,
            precision: ContractionPrecision::F64,
            data_dir: None,
        }
    }

    /// Checks the values once.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `max_examples = 0` or `split = train` (the train×train
    /// kernel is always computed).
    pub fn validate(&self) -> Result<()> {
        if self.max_examples == 0 {
            return Err(Error::InvalidArgument {
                field: "max_examples".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.split == Split::Train {
            return Err(Error::InvalidArgument {
                field: "split".into(),
                reason: "the evaluation split must be validation or test".into(),
            });
        }
        Ok(())
    }
}

/// The kernels of one run and what the statistics need besides them.
#[derive(Debug, Clone)]
pub struct RunKernels {
    /// The run's config.
    pub run: RunConfig,
    /// Class names (C = their count).
    pub labels: Vec<String>,
    /// The eNTK settings used (θ resolved).
    pub entk: EntkConfig,
    /// The evaluation split.
    pub split: Split,
    /// Positions of the kernels' examples in the training split and in `split`.
    pub train_indices: Vec<usize>,
    pub eval_indices: Vec<usize>,
    /// Their labels.
    pub y_train: Vec<usize>,
    pub y_eval: Vec<usize>,
    /// P train×train `[N, C, N, C]` and eval×train `[M, C, N, C]`.
    pub p_train: Kernel,
    pub p_eval: Kernel,
    /// F train×train and eval×train, with per-group contributions and timings.
    pub f_train: EntkResult,
    pub f_eval: EntkResult,
    /// Logits f0(x) = V0 φ0(x) + b0 of the training examples `[N, C]` (for δ of the FT ratio).
    pub train_logits: Vec<f64>,
    /// ‖V0‖_F.
    pub head_norm: f64,
    /// Wall seconds of the eval-mode features behind P.
    pub feature_seconds: f64,
}

fn labels_of(examples: &[Example], split: Split) -> Result<Vec<usize>> {
    examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.label.ok_or_else(|| Error::InvalidArgument {
                field: format!("{split} example {}", i + 1),
                reason: "has no label".into(),
            })
        })
        .collect()
}

/// Computes P and F of the run in `dir` (see the module docs). `progress` receives F's
/// progress; P (one batched forward per set) reports nothing.
///
/// # Errors
/// Reading the run (`config.json`, `lp_head.safetensors`), the model or the task; an
/// unlabelled example; those of [`layerwise::compute_train_eval`].
pub fn compute_run(
    dir: &Path,
    cfg: &NtkRunConfig,
    progress: &mut dyn FnMut(&EntkProgress),
) -> Result<RunKernels> {
    cfg.validate()?;
    let mut run = read_config(dir)?;
    if let Some(d) = &cfg.data_dir {
        run.data_dir = Some(d.clone());
    }
    let resolved = models::resolve(&ModelSource::parse(&run.model), &FetchOptions::default())?;
    let files = ModelFiles::open(&resolved.dir)?;
    let arch = files.config.arch();
    let mut ckpt = Checkpoint::load(&files.weights, arch, &crate::device::current())?;
    if run.method.has_lp() {
        ckpt.overlay(read_tensors(&dir.join(rundir::LP_HEAD))?, arch)?;
    }
    let task = crate::stages::train::load_task(&run)?;
    let opts = run.model_options(task.labels.len(), Trainable::None);
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts)?;
    if run.method.has_lp() {
        if let Some(name) = report.created.iter().find(|n| n.starts_with("classifier.")) {
            return Err(Error::MissingTensor {
                path: dir.join(rundir::LP_HEAD),
                name: name.clone(),
            });
        }
    }
    let tok = TextTokenizer::for_model(&files, run.tokenize)?;

    let take = |s: Split| -> &[Example] {
        let all = task.split(s);
        &all[..all.len().min(cfg.max_examples)]
    };
    let (train, eval) = (take(Split::Train), take(cfg.split));
    if train.is_empty() || eval.is_empty() {
        return Err(Error::InvalidArgument {
            field: "split".into(),
            reason: format!(
                "{} has {} training and {} {} examples",
                task.task,
                train.len(),
                eval.len(),
                cfg.split
            ),
        });
    }
    let (y_train, y_eval) = (labels_of(train, Split::Train)?, labels_of(eval, cfg.split)?);
    let encode = |ex: &[Example]| tok.encode_examples(ex);
    let (enc_train, enc_eval) = (encode(train)?, encode(eval)?);

    // P from eval-mode features φ0 (the same model, so the same pooling and head-free φ).
    let started = std::time::Instant::now();
    let h = files.config.hidden_size;
    let c = task.labels.len();
    let bs = run.train.eval_batch_size;
    let phi_train = lp::features(&model, &tok, &enc_train, bs)?;
    let phi_eval = lp::features(&model, &tok, &enc_eval, bs)?;
    let feature_seconds = started.elapsed().as_secs_f64();
    let (n, m) = (train.len(), eval.len());
    let p_train = pretrain_kernel(&phi_train, n, None, n, h, c)?;
    let p_eval = pretrain_kernel(&phi_eval, m, Some(&phi_train), n, h, c)?;
    let v0: Vec<f64> = model
        .head
        .weight
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    let b0: Vec<f64> = model.head.bias.to_dtype(DType::F64)?.to_vec1()?;
    let mut train_logits = vec![0.0; n * c];
    for i in 0..n {
        let phi = &phi_train[i * h..(i + 1) * h];
        for cc in 0..c {
            train_logits[i * c + cc] =
                crate::ntk::kernel::dot(phi, &v0[cc * h..(cc + 1) * h]) + b0[cc];
        }
    }

    let params = cfg.params.clone().unwrap_or(match run.method {
        Method::Lora | Method::LpLora => ParamSet::Lora,
        Method::Lp | Method::Ft | Method::LpFt => ParamSet::Ft,
    });
    let entk = EntkConfig {
        params,
        contraction: cfg.contraction,
        path: ForwardPath::FirstToken,
        max_stored_bytes: cfg.max_stored_bytes,
        autograd: false,
        precision: cfg.precision,
    };
    let x_train = layerwise::single_inputs(&tok, &enc_train);
    let x_eval = layerwise::single_inputs(&tok, &enc_eval);
    let (f_train, f_eval) =
        layerwise::compute_train_eval(&entk, &model, &x_train, &x_eval, progress)?;
    Ok(RunKernels {
        head_norm: model.head.norm()?,
        run,
        labels: task.labels.clone(),
        entk,
        split: cfg.split,
        train_indices: (0..n).collect(),
        eval_indices: (0..m).collect(),
        y_train,
        y_eval,
        p_train,
        p_eval,
        f_train,
        f_eval,
        train_logits,
        feature_seconds,
    })
}

fn f64_tensor(k: &Kernel) -> Result<Tensor> {
    let (data, shape) = k.clone().into_parts();
    Ok(Tensor::from_vec(data, shape.to_vec(), &Device::Cpu)?)
}

fn i64_tensor(v: &[usize]) -> Result<Tensor> {
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    let n = v.len();
    Ok(Tensor::from_vec(v, n, &Device::Cpu)?)
}

/// Writes the kernel files of the module docs under `dir/kernels/` and returns their paths.
///
/// # Errors
/// [`Error::Write`] (and candle errors) when a file cannot be written.
pub(crate) fn save_kernels(dir: &Path, k: &RunKernels) -> Result<Vec<PathBuf>> {
    let out = dir.join(rundir::KERNELS_DIR);
    let mut written = Vec::new();
    let split = k.split.as_str();
    let files: [(String, &Kernel, bool); 4] = [
        ("P_train_train".into(), &k.p_train, true),
        ("F_train_train".into(), &k.f_train.kernel, true),
        (format!("P_{split}_train"), &k.p_eval, false),
        (format!("F_{split}_train"), &k.f_eval.kernel, false),
    ];
    for (name, kernel, train_train) in files {
        let (idx1, y1) = if train_train {
            (&k.train_indices, &k.y_train)
        } else {
            (&k.eval_indices, &k.y_eval)
        };
        let map = HashMap::from([
            ("kernel".to_string(), f64_tensor(kernel)?),
            ("indices1".to_string(), i64_tensor(idx1)?),
            ("labels1".to_string(), i64_tensor(y1)?),
            ("indices2".to_string(), i64_tensor(&k.train_indices)?),
            ("labels2".to_string(), i64_tensor(&k.y_train)?),
        ]);
        let path = out.join(format!("{name}.safetensors"));
        crate::fsutil::save_tensors_atomic(&map, &path)?;
        written.push(path);
    }
    let groups: HashMap<String, Tensor> = k
        .f_train
        .groups
        .iter()
        .map(|(g, kernel): (&ParamGroup, &Kernel)| {
            Ok((g.as_str().to_string(), f64_tensor(kernel)?))
        })
        .collect::<Result<_>>()?;
    let path = out.join("F_groups_train_train.safetensors");
    crate::fsutil::save_tensors_atomic(&groups, &path)?;
    written.push(path);
    Ok(written)
}
