//! Feature statistics of trained run directories (the paper's Table 1): reads each run, computes
//! the pre-trained and the run's features on a split, writes `analysis.json` into the run.
//!
//! The pipeline stage behind `lpft analyze` and `lpft reproduce`; it never retrains.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::analysis::features::FeatureStats;
use crate::data::Split;
use crate::error::Result;
use crate::methods::lp::features;
use crate::methods::Method;
use crate::model::{ModelFiles, ModelOptions, Pooling, SequenceClassifier};
use crate::rundir::{self, write_json};
use crate::stages::load::load_run;
use crate::stages::train::load_task;

/// `analysis.json`: the statistics of the pre-trained encoder and of the run on one split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunAnalysis {
    pub split: Split,
    /// The "Pre-trained" row: pre-trained features, randomly initialised head (Norm(C) = ‖V_init‖).
    pub pretrained: FeatureStats,
    /// The run's features and head.
    pub run: FeatureStats,
}

/// One row of the Table 1 layout.
#[derive(Debug, Clone)]
pub struct AnalysisRow {
    /// `None` for the "Pre-trained" row of a (model, task, split).
    pub run: Option<PathBuf>,
    pub method: Method,
    pub stats: FeatureStats,
}

/// Reads `analysis.json` of a run, if present.
pub(crate) fn read_analysis(dir: &Path) -> Result<Option<RunAnalysis>> {
    crate::fsutil::read_json_opt(&dir.join(rundir::ANALYSIS))
}

/// Computes CS(F), Diff(F), FDR(F) and Norm(C) of each run on `split`, writes its
/// `analysis.json`, and returns the rows in Table 1 order of appearance: one "Pre-trained" row per
/// (model, task) before the first run that uses it, then the run's row.
///
/// Pre-trained features are computed once per (model, task, split). Diff(F) is `None` for LP,
/// whose backbone is the pre-trained one. Norm(C) of the "Pre-trained" row is the run's initial
/// random head (`metrics.json`'s `initial_classifier_norm`).
pub fn analyze_runs(runs: &[PathBuf], split: Split) -> Result<Vec<AnalysisRow>> {
    analyze_runs_cached(runs, split, None)
}

/// [`analyze_runs`], with the pre-trained features kept in `cache` (a grid's
/// `<out>/cache/features/`) so that the cells of a grid, analysed one at a time, compute them
/// once per (model, task, split): the file is named by a hash of every input they depend on
/// (the model files' paths, sizes and modification times, the tokenisation, the split's
/// examples, the evaluation batch size and the thread count), so any change is a new entry.
pub fn analyze_runs_cached(
    runs: &[PathBuf],
    split: Split,
    cache: Option<&Path>,
) -> Result<Vec<AnalysisRow>> {
    let mut pretrained: BTreeMap<(String, String), (Vec<f64>, FeatureStats)> = BTreeMap::new();
    let mut rows: Vec<AnalysisRow> = Vec::new();
    for dir in runs {
        let trained = load_run(dir)?;
        let cfg = &trained.config;
        let task = load_task(cfg)?;
        let examples = task.split(split);
        let labels = crate::data::require_labels(examples, &format!("{} {split}", task.task))?;
        let enc = trained.tokenizer.encode_examples(examples)?;
        let n = enc.len();
        let d = trained.files.config.hidden_size;
        let c = task.labels.len();
        let key = (cfg.model.clone(), format!("{}/{}", cfg.task, split));
        if !pretrained.contains_key(&key) {
            let entry = match cache {
                Some(dir) => Some(features_cache_entry(dir, &trained.files, cfg, examples)?),
                None => None,
            };
            let cached = match &entry {
                Some(path) => read_cached_features(path, n, d),
                None => None,
            };
            let phi0 = match cached {
                Some(phi0) => phi0,
                None => {
                    let base = base_model(&trained.files, c)?;
                    let phi0 =
                        features(&base, &trained.tokenizer, &enc, cfg.train.eval_batch_size)?;
                    if let Some(path) = &entry {
                        write_cached_features(path, &phi0, n, d)?;
                    }
                    phi0
                }
            };
            let mut stats = FeatureStats::compute(&phi0, n, d, &labels, c, None, None)?;
            stats.norm = Some(trained.metrics.initial_classifier_norm);
            rows.push(AnalysisRow {
                run: None,
                method: Method::Lp,
                stats: stats.clone(),
            });
            pretrained.insert(key.clone(), (phi0, stats));
        }
        let (phi0, stats0) = &pretrained[&key];
        let mut stats0 = stats0.clone();
        stats0.norm = Some(trained.metrics.initial_classifier_norm);
        let phi = features(
            &trained.model,
            &trained.tokenizer,
            &enc,
            cfg.train.eval_batch_size,
        )?;
        let w: Vec<f64> = trained
            .model
            .head
            .weight
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let diff_base = (cfg.method != Method::Lp).then_some(phi0.as_slice());
        let stats = FeatureStats::compute(&phi, n, d, &labels, c, diff_base, Some((&w, c)))?;
        write_json(
            &dir.join(rundir::ANALYSIS),
            &RunAnalysis {
                split,
                pretrained: stats0,
                run: stats.clone(),
            },
        )?;
        rows.push(AnalysisRow {
            run: Some(dir.clone()),
            method: cfg.method,
            stats,
        });
    }
    Ok(rows)
}

/// Everything the pre-trained features of a split depend on (see [`analyze_runs_cached`]).
#[derive(Serialize)]
struct FeaturesKey<'a> {
    format: u32,
    weights: (String, u64, u128),
    config: (String, u64, u128),
    tokenizer: (String, u64, u128),
    tokenize: &'a crate::data::batch::TokenizeConfig,
    eval_batch_size: usize,
    threads: usize,
    /// sha256 of the split's examples.
    examples: String,
}

/// The cache file of the pre-trained features with these inputs.
fn features_cache_entry(
    dir: &Path,
    files: &ModelFiles,
    cfg: &crate::methods::RunConfig,
    examples: &[crate::data::Example],
) -> Result<PathBuf> {
    use crate::stages::train::file_stamp;
    use sha2::{Digest, Sha256};
    let json = |e: serde_json::Error| crate::error::Error::Json {
        path: dir.to_path_buf(),
        source: e,
    };
    let key = FeaturesKey {
        format: 1,
        weights: file_stamp(&files.weights)?,
        config: file_stamp(&files.weights.with_file_name("config.json"))?,
        tokenizer: file_stamp(&files.tokenizer)?,
        tokenize: &cfg.tokenize,
        eval_batch_size: cfg.train.eval_batch_size,
        threads: candle_core::utils::get_num_threads(),
        examples: crate::fsutil::to_hex(&Sha256::digest(
            serde_json::to_vec(examples).map_err(json)?,
        )),
    };
    let key = serde_json::to_string(&key).map_err(json)?;
    let digest = crate::fsutil::to_hex(&Sha256::digest(key.as_bytes()));
    Ok(dir.join(format!("phi0-{}.safetensors", &digest[..32])))
}

/// The cached features `[n, d]`, or `None` (absent, unreadable or of another shape: then they
/// are computed again and the entry replaced; a crash cannot leave a torn one, writes are atomic).
fn read_cached_features(path: &Path, n: usize, d: usize) -> Option<Vec<f64>> {
    if !path.exists() {
        return None;
    }
    let read = || -> Result<Vec<f64>> {
        let t = candle_core::safetensors::load(path, &Device::Cpu)?;
        let phi = t
            .get("features")
            .ok_or_else(|| crate::error::Error::Checkpoint {
                path: path.to_path_buf(),
                reason: "no `features` tensor".into(),
            })?;
        if phi.dims() != [n, d] {
            return Err(crate::error::Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("features of shape {:?}, expected [{n}, {d}]", phi.dims()),
            });
        }
        Ok(phi.flatten_all()?.to_vec1::<f64>()?)
    };
    match read() {
        Ok(phi) => Some(phi),
        Err(e) => {
            log::warn!("ignoring the features cache entry {}: {e}", path.display());
            None
        }
    }
}

fn write_cached_features(path: &Path, phi: &[f64], n: usize, d: usize) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| crate::error::Error::Write {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    let t = candle_core::Tensor::from_slice(phi, (n, d), &Device::Cpu)?;
    let map = std::collections::HashMap::from([("features".to_string(), t)]);
    crate::fsutil::save_tensors_with_metadata(&map, None, path)
}

/// The pre-trained encoder with a head of `c` labels (the head is not used by the features).
fn base_model(files: &ModelFiles, c: usize) -> Result<SequenceClassifier> {
    let opts = ModelOptions::frozen(c, Pooling::First);
    Ok(SequenceClassifier::build(files, &opts, &crate::device::current())?.0)
}
