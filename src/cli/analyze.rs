//! `lpft analyze --runs DIR.. --split test`: feature statistics of trained runs against the
//! pre-trained encoder (the paper's Table 1: CS(F), Diff(F), FDR(F), Norm(C)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::Device;
use clap::Args;
use serde::Serialize;

use lpft::analysis::features::FeatureStats;
use lpft::data::Split;
use lpft::methods::load::load_run;
use lpft::methods::lp::features;
use lpft::methods::run::{load_task, write_json};
use lpft::methods::Method;
use lpft::model::{ModelFiles, ModelOptions, SequenceClassifier, Trainable};

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Run directories, or directories searched for finished runs (holding metrics.json).
    #[arg(long, required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Split whose features are analysed.
    #[arg(long, short = 's', default_value = "test")]
    pub split: Split,
}

/// Finished run directories under `root` (itself included), sorted.
pub fn find_runs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if root.join("metrics.json").exists() {
        out.push(root.to_path_buf());
        return out;
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            out.extend(find_runs(&d));
        }
    }
    out
}

#[derive(Serialize)]
struct Analysis {
    split: Split,
    pretrained: FeatureStats,
    run: FeatureStats,
}

/// One row of Table 1: a run (or the pre-trained encoder) and its statistics.
pub struct Row {
    /// The run directory, or `None` for the pre-trained encoder.
    pub run: Option<PathBuf>,
    pub method: Method,
    pub stats: FeatureStats,
}

/// Feature statistics of `runs` on `split` against the pre-trained encoder; writes each run's
/// `analysis.json`. A pre-trained row precedes the first run of each (model, task).
pub fn analyze_runs(runs: &[PathBuf], split: Split) -> anyhow::Result<Vec<Row>> {
    // Pre-trained features are shared by every run on the same (model, task, split).
    let mut pretrained: BTreeMap<(String, String), (Vec<f64>, FeatureStats)> = BTreeMap::new();
    let mut rows: Vec<Row> = Vec::new();
    for dir in runs {
        let trained = load_run(dir).with_context(|| format!("loading {}", dir.display()))?;
        let cfg = &trained.config;
        let task = load_task(cfg)?;
        let examples = task.split(split);
        let labels: Vec<usize> = examples.iter().map(|e| e.label.unwrap_or(0)).collect();
        let texts: Vec<(&str, Option<&str>)> = examples
            .iter()
            .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
            .collect();
        let enc = trained.tokenizer.encode(&texts)?;
        let n = enc.len();
        let d = trained.files.config.hidden_size;
        let c = task.labels.len();
        let key = (cfg.model.clone(), format!("{}/{}", cfg.task, split));
        if !pretrained.contains_key(&key) {
            let base = base_model(&trained.files, c)?;
            let phi0 = features(&base, &trained.tokenizer, &enc, cfg.train.eval_batch_size)?;
            let stats = FeatureStats::compute(&phi0, n, d, &labels, c, None, None)?;
            rows.push(Row {
                run: None,
                method: Method::Lp,
                stats: stats.clone(),
            });
            pretrained.insert(key.clone(), (phi0, stats));
        }
        let (phi0, stats0) = &pretrained[&key];
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
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let diff_base = (cfg.method != Method::Lp).then_some(phi0.as_slice());
        let stats = FeatureStats::compute(&phi, n, d, &labels, c, diff_base, Some((&w, c)))?;
        write_json(
            &dir.join("analysis.json"),
            &Analysis {
                split,
                pretrained: stats0.clone(),
                run: stats.clone(),
            },
        )?;
        rows.push(Row {
            run: Some(dir.clone()),
            method: cfg.method,
            stats,
        });
    }
    Ok(rows)
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let runs: Vec<PathBuf> = args.runs.iter().flat_map(|r| find_runs(r)).collect();
    anyhow::ensure!(
        !runs.is_empty(),
        "no finished runs (metrics.json) under {:?}",
        args.runs
    );
    let rows = analyze_runs(&runs, args.split)?;
    println!(
        "Table 1 layout ({} split): feature statistics and classifier norm",
        args.split
    );
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "run", "method", "CS(F)", "Diff(F)", "FDR(F)", "Norm(C)"
    );
    let fmt = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
    for row in &rows {
        let (name, m) = match &row.run {
            Some(dir) => (dir.display().to_string(), row.method.to_string()),
            None => ("Pre-trained".to_string(), "–".to_string()),
        };
        let s = &row.stats;
        println!(
            "{:<44} {:>8} {:>10.4} {:>10} {:>10.4} {:>10}",
            name,
            m,
            s.cs,
            fmt(s.diff),
            s.fdr,
            fmt(s.norm)
        );
    }
    Ok(())
}

fn base_model(files: &ModelFiles, c: usize) -> anyhow::Result<SequenceClassifier> {
    let ckpt = files.checkpoint(&Device::Cpu)?;
    let opts = ModelOptions {
        num_labels: c,
        pooling: lpft::model::Pooling::First,
        trainable: Trainable::None,
        model_seed: 0,
        lora: None,
    };
    Ok(SequenceClassifier::load(&ckpt, &files.config, &opts)?.0)
}
