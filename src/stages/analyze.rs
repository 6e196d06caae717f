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
            let base = base_model(&trained.files, c)?;
            let phi0 = features(&base, &trained.tokenizer, &enc, cfg.train.eval_batch_size)?;
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

/// The pre-trained encoder with a head of `c` labels (the head is not used by the features).
fn base_model(files: &ModelFiles, c: usize) -> Result<SequenceClassifier> {
    let opts = ModelOptions::frozen(c, Pooling::First);
    Ok(SequenceClassifier::build(files, &opts, &Device::Cpu)?.0)
}
