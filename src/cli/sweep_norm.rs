//! `lpft sweep-norm`: the norm-scaling experiment (docs/method.md §8.2, the paper's Fig. 3/11): the head is
//! multiplied by κ right before the gradient stage, and the feature change Diff(F) is recorded
//! against the resulting head norm.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use lpft::data::Split;
use lpft::methods::RunConfig;
use lpft::rundir::{read_metrics, run_dir, write_json};
use lpft::stages::train::{self, RunOptions};

use super::analyze::analyze_runs;
use super::train::{BarObserver, TrainArgs};

#[derive(Args, Debug)]
pub struct SweepNormArgs {
    /// Scales κ applied to the head V before the gradient stage.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,1,2,5,10,50,100")]
    pub kappas: Vec<f64>,
    /// Split on which Diff(F) is measured.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Training settings (method defaults to lp-ft); runs go to <out>/kappa-<κ>/...
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Serialize)]
struct SweepRow {
    kappa: f64,
    run: PathBuf,
    /// ‖V‖_F right after scaling, at the start of the gradient stage.
    start_norm: Option<f64>,
    /// ‖V‖_F of the kept (best-validation) head.
    final_norm: f64,
    /// Diff(F) on the split against the pre-trained encoder.
    feature_change: Option<f64>,
    test_accuracy: f64,
}

pub fn run(mut args: SweepNormArgs) -> anyhow::Result<()> {
    if args.train.method.is_none() && args.train.config.is_none() {
        args.train.method = Some(lpft::methods::Method::LpFt);
    }
    let base = RunConfig::try_from(&args.train)?;
    anyhow::ensure!(
        base.method.has_gradient_stage(),
        "sweep-norm needs a method with a gradient stage"
    );
    let mut dirs = Vec::new();
    for &kappa in &args.kappas {
        let mut cfg = base.clone();
        cfg.head_scale = kappa;
        cfg.validate()?;
        let root = args.train.out.join(format!("kappa-{kappa}"));
        let dir = run_dir(&root, &cfg);
        if dir.join("metrics.json").exists() && !args.train.overwrite {
            eprintln!("κ = {kappa}: finished run found at {}", dir.display());
        } else {
            eprintln!("κ = {kappa}");
            let opts = RunOptions {
                resume: true,
                overwrite: args.train.overwrite,
                lp_cache: None,
            };
            train::run(&cfg, &root, &opts, &mut BarObserver::new())?;
        }
        dirs.push((kappa, dir));
    }
    let paths: Vec<PathBuf> = dirs.iter().map(|(_, d)| d.clone()).collect();
    let rows = analyze_runs(&paths, args.split)?;
    let mut out = Vec::new();
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>10}",
        "kappa", "‖V‖ start", "‖V‖ final", "Diff(F)", "test acc"
    );
    for (kappa, dir) in &dirs {
        let m = read_metrics(dir)?;
        let stats = rows
            .iter()
            .find(|r| r.run.as_ref() == Some(dir))
            .map(|r| r.stats.clone());
        let row = SweepRow {
            kappa: *kappa,
            run: dir.clone(),
            start_norm: m.stage_start_classifier_norm,
            final_norm: m.classifier_norm,
            feature_change: stats.and_then(|s| s.diff),
            test_accuracy: m.test.accuracy,
        };
        println!(
            "{:>8} {:>12.4} {:>12.4} {:>12.4} {:>10.4}",
            row.kappa,
            row.start_norm.unwrap_or(f64::NAN),
            row.final_norm,
            row.feature_change.unwrap_or(f64::NAN),
            row.test_accuracy
        );
        out.push(row);
    }
    let path = args.train.out.join("sweep-norm.json");
    write_json(&path, &out)?;
    println!("wrote {}", path.display());
    Ok(())
}
